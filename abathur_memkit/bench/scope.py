"""``memkit bench scope``: scope-wide memory queries, the heads table vs the old queries.

Builds ``memories`` keys (100,000 by default) with the batch insert, spread over
user, app, project and session namespaces two and three segments deep, then
gives 5 % of them a second version, soft-deletes 2 % and restores a quarter of
those. Each query runs through ``search_memories`` / ``list_namespaces`` and,
in the same run, as the query memkit used before ``memory_heads`` (the latest
live version found among every version); both must return the same rows.

The write cost of the heads triggers is measured the same way: ``add_memory``
on this database against a copy of the schema without those triggers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..baselines import (
    HEAD_TRIGGERS,
    LEGACY_LIST_NAMESPACES,
    LEGACY_SEARCH_ALL,
    LEGACY_SEARCH_PREFIX,
    PLAIN_HEADS_FILL,
    PLAIN_NEW_VERSION,
    PLAIN_RESTORE,
    PLAIN_SOFT_DELETE,
)
from ..database import Database
from ..engines.interface import Connection
from ..memory import MemoryItem, _fetch
from ..namespaces import prefix_bounds
from ..values import timestamp
from . import Report, Result, one_cpu

__all__ = ["LEGACY_LIST_NAMESPACES", "LEGACY_SEARCH_ALL", "LEGACY_SEARCH_PREFIX",
           "ScopeSizes", "legacy_list_namespaces", "legacy_search", "run_scope"]

P50_TARGET_MS = 20.0  # at 100,000 memories; 1.5x that above


async def legacy_search(db: Database, prefix: str, memory_type: str | None = None,
                        limit: int = 50) -> list[dict[str, Any]]:
    """``search_memories`` as it was before memory_heads (the benchmark's baseline)."""
    bounds = prefix_bounds(prefix)
    params: tuple[Any, ...]
    if bounds is None:
        sql, params = LEGACY_SEARCH_ALL, (memory_type, memory_type, limit)
    else:
        sql, params = LEGACY_SEARCH_PREFIX, (*bounds, memory_type, memory_type, limit)
    return await db.read(lambda conn: _fetch(conn, sql, params))


async def legacy_list_namespaces(db: Database, prefix: str = "") -> list[str]:
    """``list_namespaces`` as it was before memory_heads."""
    bounds = prefix_bounds(prefix)

    def walk(conn: Connection) -> list[str]:
        start = bounds[0] if bounds else ""
        names = [r[0] for r in conn.execute(LEGACY_LIST_NAMESPACES, (start,))]
        if bounds is None:
            return names
        exact, low, high = bounds
        return [n for n in names if n == exact or low <= n < high]

    return await db.read(walk)


@dataclass(frozen=True)
class ScopeSizes:
    memories: int = 100_000
    users: int = 1_000
    rounds: int = 100
    legacy_rounds: int = 7
    write_rounds: int = 1_000
    batch: int = 10_000

    @classmethod
    def quick(cls) -> ScopeSizes:
        return cls(memories=2_000, users=20, rounds=10, legacy_rounds=3, write_rounds=50,
                   batch=500)


@dataclass
class ScopeResult:
    report: Report
    rows: list[tuple[str, Result, Result]]
    write: list[Result]
    target_ms: float
    build_seconds: float

    @property
    def missed(self) -> list[str]:
        return [name for name, new, _ in self.rows if new.p50_ms > self.target_ms]

    def table(self) -> str:
        lines = [f"{'query':<34} {'new p50':>9} {'new p99':>9} {'old p50':>9} {'old p99':>9} "
                 f"{'speed-up':>9}  target    met"]
        for name, new, old in self.rows:
            speedup = old.p50_ms / new.p50_ms if new.p50_ms else float("inf")
            met = "yes" if new.p50_ms <= self.target_ms else "NO"
            lines.append(f"{name:<34} {new.p50_ms:>9.3f} {new.stats.p99_ms:>9.3f} "
                         f"{old.p50_ms:>9.3f} {old.stats.p99_ms:>9.3f} {speedup:>8.1f}x  "
                         f"<= {self.target_ms:g} ms {met}")
        ours, base = self.write
        lines.append("")
        lines.append(f"single write (add_memory + audit) p50 {ours.p50_ms:.4f} ms with the heads "
                     f"triggers, {base.p50_ms:.4f} ms without: ratio {ours.extra['ratio']:.2f}")
        lines.append("(times in ms; old = the same query before memory_heads, same run, "
                     f"same file; build {self.build_seconds:.0f} s)")
        return "\n".join(lines)


def _namespaces(users: int) -> list[str]:
    names = [f"user:u{u}:{leaf}" for u in range(users) for leaf in ("notes", "prefs")]
    names += [f"user:u{u}" for u in range(users)]
    names += [f"app:a{a}:config" for a in range(10)]
    names += [f"project:p{p}" for p in range(max(1, users // 10))]
    names += [f"session:s{s}" for s in range(users)]
    return names


async def _build(db: Database, sizes: ScopeSizes, rng: random.Random,
                 say: Callable[[str], None]) -> None:
    names = _namespaces(sizes.users)
    # Most keys under user:, as in a swarm where each user has many agents' notes.
    weights = [8 if n.startswith("user:") else 1 for n in names]
    chosen = rng.choices(names, weights, k=sizes.memories)
    items = [MemoryItem(ns, f"k{i}", {"note": f"memory {i}", "n": i},
                        "episodic" if i % 3 == 0 else "semantic")
             for i, ns in enumerate(chosen)]
    for start in range(0, len(items), sizes.batch):
        await db.memory.add_memories(items[start:start + sizes.batch], "system")
        if start // sizes.batch % 10 == 9:
            say(f"{start + sizes.batch:,} memories")
    # Versions, deletes and restores by plain SQL in one transaction (fast); the
    # heads triggers see them like any write.
    total = sizes.memories
    later = timestamp()
    updated = [(later, i + 1) for i in rng.sample(range(total), total // 20)]
    deleted = rng.sample(range(1, total + 1), total // 50)

    def churn(conn: Connection) -> None:
        conn.executemany(PLAIN_NEW_VERSION, updated)
        conn.executemany(PLAIN_SOFT_DELETE, [(later, i) for i in deleted])
        conn.executemany(PLAIN_RESTORE, [(timestamp(), i) for i in deleted[: len(deleted) // 4]])

    await db.write(churn)


async def _time(fn: Callable[[], Awaitable[Any]], rounds: int) -> list[int]:
    await fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        await fn()
        samples.append(time.perf_counter_ns() - start)
    return samples


Query = tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]


def _queries(db: Database) -> list[Query]:
    """(name, the service call, the same call with the old query)."""
    prefixes = ("", "user", "user:u1", "user:u1:notes")
    searches: list[tuple[str, str, str | None, int]] = [(f"{p!r}", p, None, 50) for p in prefixes]
    searches += [("'user', episodic", "user", "episodic", 50),
                 ("'project', 500", "project", None, 500)]
    queries: list[Query] = [
        (f"search_memories({name})",
         partial(db.memory.search_memories, prefix, kind, limit),
         partial(legacy_search, db, prefix, kind, limit))
        for name, prefix, kind, limit in searches
    ]
    queries += [
        (f"list_namespaces({prefix!r})", partial(db.memory.list_namespaces, prefix),
         partial(legacy_list_namespaces, db, prefix))
        for prefix in prefixes
    ]
    return queries


async def _write_cost(db: Database, rounds: int) -> list[Result]:
    """add_memory with and without the heads triggers on this database, same run.

    Blocks of writes alternate with the triggers dropped and recreated, so both
    sides see the same file at the same size; the heads of the keys written
    without them are filled in afterwards.
    """
    marks = ", ".join("?" * len(HEAD_TRIGGERS))
    saved = await db.fetchall(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})",
        HEAD_TRIGGERS)
    counter = iter(range(10**9))
    samples: dict[bool, list[int]] = {True: [], False: []}
    block = max(10, rounds // 20)
    for n in range(0, 2 * rounds, block):
        heads = n // block % 2 == 0
        for _ in range(block):
            i = next(counter)
            start = time.perf_counter_ns()
            await db.memory.add_memory(f"app:bench:w{i % 50}", f"key{i}", {"n": i},
                                       "semantic", "agent:bench")
            samples[heads].append(time.perf_counter_ns() - start)
        for row in saved:
            await db.execute(f"DROP TRIGGER {row['name']}" if heads else row["sql"])
    if len(samples[True]) > len(samples[False]):
        for row in saved:
            await db.execute(row["sql"])
    await db.execute(PLAIN_HEADS_FILL, ("app:bench:", "app:bench;"))
    ours = Result.from_samples("add_memory_with_heads", samples[True][block:])
    base = Result.from_samples("add_memory_without_heads", samples[False][block:])
    ours.compare_latency(base, target=1.25)
    return [ours, base]


async def run_scope(path: str | Path, sizes: ScopeSizes | None = None, *,
                    progress: Callable[[str], None] | None = None, seed: int = 7,
                    pin: bool = True) -> ScopeResult:
    """Build the database at ``path`` (replaced if present) and time the scope queries."""
    sizes = sizes or ScopeSizes()
    say = progress or (lambda _message: None)
    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    report = Report("scope", str(path))
    target = P50_TARGET_MS * (1.0 if sizes.memories <= 100_000 else 1.5)
    with one_cpu(pin) as cpu:
        if cpu is not None:
            say(f"pinned to CPU {cpu}")
        async with Database(path) as db:
            say(f"building {sizes.memories:,} memories with add_memories")
            start = time.perf_counter()
            await _build(db, sizes, random.Random(seed), say)
            build_seconds = time.perf_counter() - start
            rows = []
            for name, new, old in _queries(db):
                if await new() != await old():
                    raise AssertionError(f"{name}: the heads query and the old query differ")
                say(name)
                new_result = Result.from_samples(name, await _time(new, sizes.rounds))
                old_result = Result.from_samples(f"{name} old",
                                                 await _time(old, sizes.legacy_rounds))
                new_result.compare_latency(old_result, target=1.0)
                new_result.extra.update(target_ms=target, met_target=new_result.p50_ms <= target)
                report.add([new_result, old_result])
                rows.append((name, new_result, old_result))
            say("single write with and without the heads triggers")
            write = await _write_cost(db, sizes.write_rounds)
            report.add(write)
    return ScopeResult(report, rows, write, target, build_seconds)
