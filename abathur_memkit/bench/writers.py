"""``memkit bench writers``: 50 concurrent writers with group commit vs one writer.

In one run, on one file database, pinned to one CPU like ``bench core``:

- one writer awaiting its writes in sequence (the serial rate);
- 50 asyncio writers at once, group commit on (the default);
- the same 50 writers with ``group_commit`` off (each write its own transaction);
- per-await latency of a single writer, group commit on vs off, alternating;
- the floor: as many new memory rows (with what their triggers add) and their
  audit rows, put in by a raw connection, ``writers`` per transaction, each
  table's rows in one ``executemany`` or ``INSERT … SELECT`` (memkit's batch
  insert's statements): no Python per write, no reads, no savepoints. No group
  commit can spend less CPU per write, so the floor's CPU per write bounds what
  the targets can ask of this machine. (Its rate is not a bound: its connection
  runs its own checkpoints, fsyncs and all, where memkit's writer leaves them
  to a thread of their own.)

Every write is an ``add_memory`` or ``update_memory`` with its audit row. The
throughput modes run in chunks interleaved round by round, so each sees the
same file size and the same moments of a shared machine; the spread of the
per-round rates and the load average are printed as the noise, and so is the
process CPU time per write of each mode, which a busy machine disturbs less.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

from ..database import Database
from ..memory import AUDIT_FOR_RANGE
from ..memory import INSERT as INSERT_MEMORY
from ..values import timestamp
from . import Report, Result, measure_pair, one_cpu, target_lines
from .peers import _connect_raw

__all__ = ["WritersReport", "WritersSizes", "run_writers"]

#: Writes per second that 50 concurrent writers must reach with group commit.
TARGET_WRITES_PER_SECOND = 12_000
#: Their rate over the serial rate.
TARGET_RATIO = 4.0
#: Single-writer p50 with group commit over the p50 without it.
TARGET_SINGLE_P50 = 1.1


@dataclass(frozen=True)
class WritersSizes:
    writers: int = 50
    chunk: int = 2_000
    """writes per mode per round"""
    rounds: int = 5
    latency_rounds: int = 2_000
    warmup: int = 200

    @classmethod
    def quick(cls) -> WritersSizes:
        return cls(chunk=500, rounds=2, latency_rounds=200, warmup=20)


@dataclass
class WritersReport:
    report: Report
    lines: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, str, bool]] = field(default_factory=list)

    def table(self) -> str:
        return "\n".join([self.report.table(), "", *self.lines, "",
                          *target_lines(self.targets)])

    @property
    def missed(self) -> list[str]:
        return [name for name, _, _, met in self.targets if not met]


class _Workload:
    """Adds and updates memories, each writer in its own namespace."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.counter = itertools.count()
        self.live: dict[int, list[str]] = {}

    async def write(self, writer: int, add: bool | None = None) -> None:
        """Add a key or update one (every other write, unless ``add`` says which)."""
        n = next(self.counter)
        namespace, live = f"app:bench:w{writer}", self.live.setdefault(writer, [])
        if add is None:
            add = n % 2 == 0
        if add or not live:
            key = f"key{n}"
            await self.db.memory.add_memory(namespace, key, {"n": n}, "semantic", "agent:bench")
            live.append(key)
        else:
            await self.db.memory.update_memory(namespace, live.pop(), {"n": n}, "agent:bench")

    async def serial(self, count: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(count):
            await self.write(0)
        return time.perf_counter_ns() - start

    async def concurrent(self, writers: int, count: int) -> int:
        async def writer(w: int) -> None:
            for _ in range(count // writers):
                await self.write(w)

        start = time.perf_counter_ns()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        return time.perf_counter_ns() - start


class _Floor:
    """The floor's rows, ``group`` per transaction, on a raw connection of its own."""

    def __init__(self, conn: sqlite3.Connection, group: int) -> None:
        self.conn = conn
        self.group = group
        self.counter = itertools.count()

    def run(self, count: int) -> int:
        conn, start = self.conn, time.perf_counter_ns()
        for done in range(0, count, self.group):
            now = timestamp()
            rows = [(f"app:bench:floor{n % self.group}", f"key{n}", f'{{"n":{n}}}', "semantic",
                     1, "{}", "agent:bench", "agent:bench", now, now)
                    for n in itertools.islice(self.counter, min(self.group, count - done))]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_MEMORY, rows)
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.execute(AUDIT_FOR_RANGE, (None, last - len(rows) + 1, last))
            conn.execute("COMMIT")
        return time.perf_counter_ns() - start


async def run_writers(
    path: str | Path,
    sizes: WritersSizes | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    pin: bool = True,
) -> WritersReport:
    """Run the writers benchmark on a new database at ``path`` (replaced if present)."""
    with one_cpu(pin) as cpu:
        if cpu is not None and progress is not None:
            progress(f"pinned to CPU {cpu}")
        return await _run_writers(Path(path), sizes or WritersSizes(), progress)


async def _run_writers(
    path: Path, sizes: WritersSizes, progress: Callable[[str], None] | None
) -> WritersReport:
    say = progress or (lambda _m: None)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    out = WritersReport(Report("writers", str(path)))
    load_before = _load()
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(Database(path))
        floor = _Floor(stack.enter_context(closing(_connect_raw(path))), sizes.writers)
        work = _Workload(db)
        concurrent = sizes.chunk - sizes.chunk % sizes.writers

        async def floor_run() -> int:
            return floor.run(concurrent)

        modes: dict[str, tuple[bool, Callable[[], Awaitable[int]]]] = {
            "serial_writes": (True, lambda: work.serial(sizes.chunk)),
            f"writers_{sizes.writers}_group_commit":
                (True, lambda: work.concurrent(sizes.writers, concurrent)),
            f"writers_{sizes.writers}_no_group_commit":
                (False, lambda: work.concurrent(sizes.writers, concurrent)),
            f"floor_raw_batches_of_{sizes.writers}": (True, floor_run),
        }
        samples: dict[str, list[int]] = {name: [] for name in modes}
        say(f"warm-up, then {sizes.rounds} rounds of {sizes.chunk:,} writes per mode")
        await work.serial(sizes.warmup)
        cpu_ns = dict.fromkeys(modes, 0)
        for r in range(sizes.rounds):
            for name, (group_commit, run) in modes.items():
                db.group_commit = group_commit
                cpu_start = time.process_time_ns()
                samples[name].append(await run())
                cpu_ns[name] += time.process_time_ns() - cpu_start
            say(f"round {r + 1}/{sizes.rounds} done")
        say(f"single-writer latency, group commit on vs off, {sizes.latency_rounds:,} each")
        latency = await _single_writer(db, work, sizes)
        db.group_commit = True
    serial, grouped, ungrouped, floored = (
        Result(name, samples[name], count=concurrent if i else sizes.chunk)
        for i, name in enumerate(modes))
    for result in (serial, grouped, ungrouped, floored):
        result.extra["cpu_us_per_write"] = cpu_ns[result.name] / 1e3 / (
            result.count * len(result.samples_ns))
    grouped.compare_rate(serial, target=TARGET_RATIO)
    vs_ungrouped = grouped.ops / ungrouped.ops if ungrouped.ops else 0.0
    grouped.extra.update(writes_per_second=grouped.ops, vs_no_group_commit=vs_ungrouped)
    floored.extra.update(writes_per_second=floored.ops, vs_serial=floored.ops / serial.ops)
    out.report.add([serial, grouped, ungrouped, floored, *latency])
    out.lines = [*_noise(samples, [serial, grouped, ungrouped, floored], load_before),
                 f"{grouped.name} vs {ungrouped.name}: {vs_ungrouped:.2f}x",
                 *_floor_lines(serial, grouped, floored)]
    out.targets = _targets(serial, grouped, latency[0])
    return out


def _floor_lines(serial: Result, grouped: Result, floored: Result) -> list[str]:
    """What the targets allow per write, against what the floor's rows cost."""
    need_ratio = 1e6 / (TARGET_RATIO * serial.ops) if serial.ops else 0.0
    need_rate = 1e6 / TARGET_WRITES_PER_SECOND
    return [
        f"floor: the same rows by raw batches {floored.ops:,.0f} writes/s "
        f"({floored.ops / serial.ops:.2f}x serial), CPU "
        f"{floored.extra['cpu_us_per_write']:.1f} µs per write; group commit reaches "
        f"{grouped.ops / floored.ops:.2f}x the floor's rate",
        f"on one CPU, {TARGET_RATIO:g}x serial allows {need_ratio:.0f} µs of CPU per write "
        f"and {TARGET_WRITES_PER_SECOND:,}/s allows {need_rate:.0f} µs",
    ]


async def _single_writer(db: Database, work: _Workload, sizes: WritersSizes) -> list[Result]:
    # Each side alternates adds and updates on its own count: on the shared
    # count, paired call by call, one side only added and the other only updated.
    turns = {True: itertools.count(), False: itertools.count()}

    async def write(group_commit: bool) -> None:
        db.group_commit = group_commit
        await work.write(0, add=next(turns[group_commit]) % 2 == 0)

    async def grouped() -> None:
        await write(True)

    async def alone() -> None:
        await write(False)

    return await measure_pair("single_writer_group_commit", grouped,
                              "single_writer_no_group_commit", alone, sizes.latency_rounds,
                              sizes.warmup, target=TARGET_SINGLE_P50)


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _noise(samples: dict[str, list[int]], results: list[Result], load_before: str) -> list[str]:
    lines = []
    for result in results:
        per_round = [result.count / (ns / 1e9) for ns in samples[result.name]]
        lines.append(f"{result.name:<34} per round {min(per_round):>8,.0f} .. "
                     f"{max(per_round):>8,.0f} writes/s, CPU "
                     f"{result.extra['cpu_us_per_write']:>6.1f} µs per write")
    lines.append(f"load average (1/5/15 min) before {load_before}, after {_load()} "
                 f"on {os.cpu_count()} CPUs")
    return lines


def _targets(serial: Result, grouped: Result,
             single: Result) -> list[tuple[str, str, str, bool]]:
    ratio = grouped.ops / serial.ops if serial.ops else 0.0
    return [
        (f"{grouped.name} vs serial", f">= {TARGET_RATIO:g}x",
         f"{ratio:.2f}x ({grouped.ops:,.0f} vs {serial.ops:,.0f}/s)", ratio >= TARGET_RATIO),
        (f"{grouped.name} with audit", f">= {TARGET_WRITES_PER_SECOND:,} writes/s",
         f"{grouped.ops:,.0f} writes/s", grouped.ops >= TARGET_WRITES_PER_SECOND),
        ("single-writer p50 vs group_commit=False", f"<= {TARGET_SINGLE_P50:g}x",
         f"{single.extra['ratio']:.3f}x", bool(single.extra["met"])),
    ]
