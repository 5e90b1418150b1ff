"""Grow a database to a target size and measure lookups at 10k rows and at full size.

``run_capacity`` fills a new database with memories through the public batch
API (``MemoryService.add_memories``: one transaction per batch, each row with
its audit row, exactly what an application's bulk import does), measures
``get_memory`` lookups of random keys once the first 10,000 rows are in, keeps
a copy of the database as it is then, inserts until the file reaches the
target size, and finally measures the 10k-row copy and the full database in
interleaved rounds (so machine noise hits both alike). The target of issue 7:
lookup p50 at full size ≤ 1.5 × p50 at 10k rows.

Two timings are reported for each size: ``api`` (``await get_memory(...)``,
what a caller waits, including the hop to the reader thread) and ``sql`` (the
lookup query alone, timed inside the reader thread: B-tree depth and page
cache effects without the constant hop). Lookups run with a warm OS page
cache, as on a server that has been up for a while.

The report also times the scope-wide queries (``SCOPE_QUERIES``) on both
databases, lists the full file's bytes by table and index (``dbstat``), and,
with ``max_seconds``, stops growing early and measures the file reached,
saying the target was not reached.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from .. import memory
from ..database import Database
from ..engines.interface import Connection
from ..errors import InvalidInputError
from ..memory import MemoryItem
from ..stats import quantile

__all__ = ["CapacityConfig", "ProgressBar", "parse_size", "run_capacity"]

#: The issue's target: p50 at full size over p50 at 10k rows.
MAX_P50_RATIO = 1.5

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}

_WORDS = ("agent", "memory", "session", "task", "plan", "result", "vector", "index", "user",
          "project", "design", "review", "token", "context", "summary", "swarm", "queue")


def parse_size(text: str | int) -> int:
    """``"1GB"`` → 10**9, ``"512MiB"`` → 512 * 2**20, ``"2.5 GB"``, or a byte count."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else ""
        if not match or unit not in _UNITS:
            raise InvalidInputError(
                f"Invalid size: {text!r} (e.g. 1GB, 500MB, 2GiB or a byte count)")
        size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise InvalidInputError(f"Invalid size: {text!r} (must be positive)")
    return size


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


class ProgressBar:
    """A dependency-free progress bar on stderr (a line per 10% when not a terminal)."""

    def __init__(self, total: float, label: str = "", stream: TextIO | None = None,
                 fmt: Callable[[float], str] = _human) -> None:
        self.total = max(total, 1.0)
        self.label = label
        self.stream = stream or sys.stderr
        self.fmt = fmt
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self.last_decile = -1

    def update(self, done: float, extra: str = "") -> None:
        share = min(done / self.total, 1.0)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / share - elapsed if share > 0 else 0.0
        text = (f"{self.label} {share * 100:5.1f}% {self.fmt(done)}/{self.fmt(self.total)}"
                f"{'  ' + extra if extra else ''}  {elapsed:.0f}s elapsed, ETA {eta:.0f}s")
        if self.tty:
            width = 30
            filled = int(share * width)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
        else:
            decile = int(share * 10)
            if decile == self.last_decile:
                return
            self.last_decile = decile
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class CapacityConfig:
    """What ``run_capacity`` builds and measures."""

    size: int = 10**9
    """target size of the database file in bytes (default 1 GB)"""
    baseline_rows: int = 10_000
    value_bytes: int = 1000
    """approximate JSON size of each memory's value"""
    batch: int = 5000
    """memories per add_memories transaction"""
    samples: int = 2000
    """timed lookups at each size (after warm-up)"""
    namespaces: int = 1000
    seed: int = 0
    max_seconds: float | None = None
    """stop growing once the run has taken this many seconds and measure the file
    reached (the report then says ``target_reached: false``)"""
    scope_rounds: int = 20
    """timed rounds of each scope-wide query at each size"""


def _ident(i: int, namespaces: int) -> tuple[str, str]:
    return f"user:u{i % namespaces}:notes", f"k{i:09d}"


def _texts(config: CapacityConfig, rng: random.Random, count: int = 512) -> list[str]:
    """A pool of word salads of about ``value_bytes`` each (generating one per row is slow)."""
    pool = []
    for _ in range(count):
        words: list[str] = []
        length = 0
        while length < config.value_bytes:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        pool.append(" ".join(words))
    return pool


def _items(start: int, count: int, config: CapacityConfig, pool: list[str]) -> list[MemoryItem]:
    items = []
    for i in range(start, start + count):
        ns, key = _ident(i, config.namespaces)
        items.append(MemoryItem(ns, key, {"i": i, "text": pool[(i * 7919) % len(pool)]},
                                ("semantic", "episodic", "procedural")[i % 3]))
    return items


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p50, p95, p99 = (quantile(ordered, q, presorted=True) for q in (0.5, 0.95, 0.99))
    return {"p50_us": round(p50 * 1e6, 2),
            "p95_us": round(p95 * 1e6, 2), "p99_us": round(p99 * 1e6, 2),
            "mean_us": round(statistics.fmean(ordered) * 1e6, 2), "n": len(ordered)}


class Samples:
    """Lookup times (seconds) of one database, API and SQL-only."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.api: list[float] = []
        self.sql: list[float] = []

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "api": _percentiles(self.api), "sql": _percentiles(self.sql)}


async def measure_lookups(db: Database, into: Samples, count: int, namespaces: int,
                          rng: random.Random, *, warm: int = 0) -> None:
    """Time ``count`` ``get_memory`` calls of random existing keys (and the bare query)."""
    picks = [_ident(rng.randrange(into.rows), namespaces) for _ in range(count)]
    for ns, key in [_ident(rng.randrange(into.rows), namespaces) for _ in range(warm)]:
        await db.memory.get_memory(ns, key)
    for ns, key in picks:
        start = time.perf_counter()
        found = await db.memory.get_memory(ns, key)
        into.api.append(time.perf_counter() - start)
        if found is None:
            raise AssertionError(f"capacity: {ns}:{key} is missing")

    def timed(conn: Connection) -> list[float]:
        out = []
        for ns, key in picks:
            start = time.perf_counter()
            memory.latest_row(conn, ns, key)
            out.append(time.perf_counter() - start)
        return out

    into.sql += await db.read(timed)


async def compare(small: Database, small_rows: int, big: Database, big_rows: int,
                  config: CapacityConfig, rng: random.Random, rounds: int = 10
                  ) -> tuple[Samples, Samples]:
    """Interleaved rounds on both databases, so both see the same machine noise."""
    a, b = Samples(small_rows), Samples(big_rows)
    per_round = max(1, config.samples // rounds)
    warm = min(500, small_rows)
    for i in range(rounds):
        await measure_lookups(small, a, per_round, config.namespaces, rng,
                              warm=warm if i == 0 else 0)
        await measure_lookups(big, b, per_round, config.namespaces, rng,
                              warm=warm if i == 0 else 0)
    return a, b


#: Queries over a whole scope (or everything), answered from the per-key heads.
SCOPE_QUERIES: dict[str, Callable[[Database], Awaitable[object]]] = {
    'search_memories("")': lambda db: db.memory.search_memories(""),
    'search_memories("user")': lambda db: db.memory.search_memories("user"),
    'list_namespaces("")': lambda db: db.memory.list_namespaces(""),
}


async def compare_scope_queries(small: Database, big: Database, rounds: int
                                ) -> dict[str, dict[str, dict[str, float]]]:
    """p50 (and more) of each scope-wide query on both databases, interleaved."""
    times: dict[str, tuple[list[float], list[float]]] = {
        name: ([], []) for name in SCOPE_QUERIES}
    for i in range(rounds + 1):
        for name, query in SCOPE_QUERIES.items():
            for db, into in ((small, times[name][0]), (big, times[name][1])):
                start = time.perf_counter()
                await query(db)
                if i > 0:  # round 0 warms the caches
                    into.append(time.perf_counter() - start)
    return {name: {"baseline": _percentiles(a), "full": _percentiles(b)}
            for name, (a, b) in times.items()}


async def file_size_by_btree(db: Database) -> list[dict[str, Any]] | None:
    """Bytes of every table and index of the file (``dbstat``), biggest first."""
    from ..analysis.storage import btree_sizes

    btrees = await db.read(btree_sizes)
    if btrees is None:
        return None
    ordered = sorted(btrees, key=lambda b: (-b.bytes, b.name))
    return [{"name": b.name, "type": b.type, "table": b.table, "kind": b.kind,
             "role": b.role, "bytes": b.bytes} for b in ordered]


async def _file_size(db: Database) -> int:
    from ..analysis.storage import page_totals

    return (await db.read(page_totals))["bytes"]


async def run_capacity(
    path: str | os.PathLike[str],
    config: CapacityConfig | None = None,
    *,
    progress: Callable[[str], object] | None = None,
    bar: bool = True,
) -> dict[str, Any]:
    """Build a database of ``config.size`` bytes at ``path`` (a new file) and measure it."""
    config = config or CapacityConfig()
    say = progress or (lambda _m: None)
    target = Path(os.fspath(path))
    if target.exists() and target.stat().st_size > 0:
        raise InvalidInputError(f"{target} exists; capacity runs build a new database")
    rng = random.Random(config.seed)
    pool = _texts(config, rng)
    timings: dict[str, Any] = {}
    started = time.perf_counter()
    async with Database(target) as db:
        rows = 0
        insert_seconds = 0.0

        async def grow(until_rows: int | None, until_bytes: int | None,
                       meter: ProgressBar | None, deadline: float | None = None) -> None:
            nonlocal rows, insert_seconds
            while deadline is None or time.perf_counter() < deadline:
                count = config.batch if until_rows is None else min(config.batch,
                                                                     until_rows - rows)
                if count <= 0:
                    return
                items = _items(rows, count, config, pool)
                t0 = time.perf_counter()
                await db.memory.add_memories(items, "capacity", "task:capacity")
                insert_seconds += time.perf_counter() - t0
                rows += count
                if until_bytes is not None:
                    size = await _file_size(db)
                    if meter is not None:
                        meter.update(size, f"{rows:,} rows, "
                                     f"{rows / max(insert_seconds, 1e-9):,.0f} rows/s")
                    if size >= until_bytes:
                        return

        say(f"inserting the first {config.baseline_rows:,} rows")
        await grow(config.baseline_rows, None, None)
        await db.checkpoint()
        await db.analyze()
        baseline_rows = rows
        at_baseline = Samples(rows)
        say(f"measuring {config.samples} lookups at {rows:,} rows")
        await measure_lookups(db, at_baseline, config.samples, config.namespaces, rng, warm=500)
        timings["baseline_while_growing"] = at_baseline.summary()
        scratch = Path(tempfile.mkdtemp(prefix="memkit-capacity-"))
        try:
            # A copy of the database as it is at baseline_rows, measured again at the
            # end, interleaved with the full one: both then see the same machine noise.
            baseline_copy = await db.backup(scratch / "baseline.db")
            baseline_bytes = await _file_size(db)
            say(f"growing to {_human(config.size)} with add_memories batches of "
                f"{config.batch:,}")
            meter = ProgressBar(config.size, "grow") if bar else None
            deadline = (None if config.max_seconds is None
                        else started + config.max_seconds)
            await grow(None, config.size, meter, deadline)
            grow_seconds = time.perf_counter() - started
            if meter is not None:
                meter.update(await _file_size(db), f"{rows:,} rows")
                meter.close()
            await db.checkpoint()
            await db.analyze()
            say(f"measuring {config.samples} lookups each at {baseline_rows:,} and "
                f"{rows:,} rows, interleaved")
            async with Database(baseline_copy) as small:
                base, full = await compare(small, baseline_rows, db, rows, config, rng)
                say(f"timing scope-wide queries, {config.scope_rounds} rounds at each size")
                scope_queries = await compare_scope_queries(small, db, config.scope_rounds)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        timings["baseline"] = {**base.summary(), "file_bytes": baseline_bytes}
        timings["full"] = {**full.summary(), "file_bytes": await _file_size(db)}
        say("file size by table and index (dbstat)")
        btrees = await file_size_by_btree(db)
        say("integrity_check of the full database")
        integrity = await db.integrity_check()
    ratio_api = timings["full"]["api"]["p50_us"] / timings["baseline"]["api"]["p50_us"]
    ratio_sql = timings["full"]["sql"]["p50_us"] / timings["baseline"]["sql"]["p50_us"]
    reached = timings["full"]["file_bytes"] >= config.size
    return {
        "ok": reached and ratio_api <= MAX_P50_RATIO and integrity == ["ok"],
        "path": str(target),
        "config": asdict(config),
        "rows": rows,
        "file_bytes": timings["full"]["file_bytes"],
        "target_reached": reached,
        "build_seconds": round(grow_seconds, 1),
        "insert_rows_per_second": round(rows / insert_seconds, 1) if insert_seconds else None,
        "baseline": timings["baseline"],
        "full": timings["full"],
        "baseline_while_growing": timings["baseline_while_growing"],
        "p50_ratio_api": round(ratio_api, 3),
        "p50_ratio_sql": round(ratio_sql, 3),
        "max_p50_ratio": MAX_P50_RATIO,
        "scope_queries": scope_queries,
        "btrees": btrees,
        "integrity_check": integrity,
        "seconds": round(time.perf_counter() - started, 1),
    }
