"""``memkit bench core``: the services beside raw aiosqlite on the same file.

Builds a database of 10,000 memories in 100 namespaces and 300 sessions, then
times individual awaits of each operation, alternating with the same
operation written as plain SQL on a raw ``aiosqlite`` connection to the same
file (same driver, same PRAGMAs), so both see the same machine at the same
moment. Reports p50/p99 and the ratio to the raw baseline.

The raw side uses aiosqlite's fastest forms, one thread hop each
(``execute_fetchall``, ``execute_insert`` in autocommit), so the ratios are
not flattered by a slower baseline idiom.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from .. import memory, sessions
from ..baselines import PLAIN_DELETE_RANGE, PLAIN_RANGE, PLAIN_SESSION
from ..database import Database
from ..engines.sqlite.engine import PRAGMAS
from ..memory import GET_LATEST, MemoryItem
from ..values import timestamp
from . import Report, Result, measure_pair, one_cpu

__all__ = ["CoreSizes", "run_core"]


@dataclass(frozen=True)
class CoreSizes:
    memories: int = 10_000
    namespaces: int = 100
    sessions: int = 300
    events_per_session: int = 20
    rounds: int = 2_000
    warmup: int = 200
    long_session_events: int = 5_000
    append_sessions: int = 50
    init_runs: int = 20

    @classmethod
    def quick(cls) -> CoreSizes:
        return cls(memories=1_000, namespaces=10, sessions=30, rounds=200, warmup=20,
                   long_session_events=500, append_sessions=10, init_runs=3)


async def _raw_connection(db: Database) -> aiosqlite.Connection:
    def open_raw() -> Any:
        conn = db.driver.connect(db.path)
        for name, value in PRAGMAS.items():
            conn.execute(f"PRAGMA {name} = {value}")
        return conn

    return await aiosqlite.Connection(open_raw, iter_chunk_size=64)


def _say(progress: Callable[[str], None] | None, message: str) -> None:
    if progress is not None:
        progress(message)


async def run_core(
    path: str | Path,
    sizes: CoreSizes | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    seed: int = 7,
    pin: bool = True,
) -> Report:
    """Run the core benchmark on a new database at ``path`` (replaced if present).

    With ``pin`` (the default) it runs on one CPU: see ``bench.one_cpu``.
    """
    with one_cpu(pin) as cpu:
        if cpu is not None:
            _say(progress, f"pinned to CPU {cpu}")
        return await _run_core(path, sizes, progress, seed)


async def _run_core(
    path: str | Path,
    sizes: CoreSizes | None,
    progress: Callable[[str], None] | None,
    seed: int,
) -> Report:
    sizes = sizes or CoreSizes()
    rng = random.Random(seed)
    path = Path(path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    report = Report("core", str(path))

    report.add(await _initialize_times(path.parent, sizes.init_runs))

    async with Database(path) as db:
        raw = await _raw_connection(db)
        try:
            _say(progress, f"batch insert: {sizes.memories:,} memories, "
                           f"ours and raw executemany")
            report.add(await _batch_insert(db, raw, sizes))
            _say(progress, f"{sizes.sessions} sessions with {sizes.events_per_session} events")
            await _build_sessions(db, sizes)
            names = [f"user:u{n}:notes" for n in range(sizes.namespaces)]
            keys_per_ns = sizes.memories // sizes.namespaces

            def pick() -> tuple[str, str]:
                return rng.choice(names), f"k{rng.randrange(keys_per_ns)}"

            _say(progress, "get_memory vs raw lookup")
            report.add(await _reads(db, raw, sizes, pick))
            _say(progress, "get_session vs raw single-row lookup")
            report.add(await _sessions(db, raw, sizes, rng))
            _say(progress, "prefix search vs raw range query")
            report.add(await _prefix(db, raw, sizes, rng, names))
            _say(progress, "add_memory / update_memory vs raw write transaction")
            report.add(await _writes(db, raw, sizes))
            _say(progress, f"append_event at #10 and at #{sizes.long_session_events:,}")
            report.add(await _appends(db, raw, sizes))
        finally:
            await raw.close()
    return report


async def _initialize_times(directory: Path, runs: int) -> list[Result]:
    samples = []
    for i in range(runs + 1):
        target = directory / f".memkit-bench-init-{i}.db"
        start = time.perf_counter_ns()
        db = Database(target)
        await db.initialize()
        samples.append(time.perf_counter_ns() - start)
        await db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
    return [Result.from_samples("initialize_new_file", samples[1:], unit="call")]


async def _batch_insert(db: Database, conn: aiosqlite.Connection,
                        sizes: CoreSizes) -> list[Result]:
    per_ns = sizes.memories // sizes.namespaces
    items = [MemoryItem(f"user:u{n}:notes", f"k{k}", {"note": f"memory {n}/{k}", "n": k},
                        "semantic" if k % 3 else "episodic")
             for n in range(sizes.namespaces) for k in range(per_ns)]
    now = timestamp()
    raw_rows = [(f"project:raw{n}", f"k{k}", '{"note": "raw"}', "semantic", 1, "{}",
                 "bench", "bench", now, now)
                for n in range(sizes.namespaces) for k in range(per_ns)]

    start = time.perf_counter_ns()
    await conn.execute("BEGIN IMMEDIATE")
    await conn.executemany(memory.INSERT, raw_rows)
    await conn.commit()
    raw_ns = time.perf_counter_ns() - start

    start = time.perf_counter_ns()
    await db.memory.add_memories(items, "system", task_id="task:bench")
    ours_ns = time.perf_counter_ns() - start

    # Keep the dataset at exactly the requested size (raw rows have no audit).
    await db.execute(PLAIN_DELETE_RANGE, ("project:raw", "project:raw~"))
    ours = Result.throughput("add_memories_batch", len(items), ours_ns)
    base = Result.throughput("raw_executemany", len(raw_rows), raw_ns)
    ours.compare_rate(base, target=0.5)
    return [ours, base]


async def _build_sessions(db: Database, sizes: CoreSizes) -> None:
    for s in range(sizes.sessions):
        sid = f"s{s}"
        await db.sessions.create_session(sid, app_name="abathur", user_id=f"u{s % 100}",
                                         project_id=f"p{s % 10}")
        for e in range(sizes.events_per_session):
            await db.sessions.append_event(
                sid, {"event_type": "message", "actor": "user", "content": f"turn {e}"},
                state_delta={"turn": e},
            )


async def _reads(db: Database, raw: aiosqlite.Connection, sizes: CoreSizes,
                 pick: Callable[[], tuple[str, str]]) -> list[Result]:
    async def ours() -> None:
        await db.memory.get_memory(*pick())

    async def baseline() -> None:
        await raw.execute_fetchall(GET_LATEST, pick())

    return await measure_pair("get_memory", ours, "raw_lookup", baseline, sizes.rounds,
                              sizes.warmup, target=1.5)


async def _sessions(db: Database, raw: aiosqlite.Connection, sizes: CoreSizes,
                    rng: random.Random) -> list[Result]:
    async def ours() -> None:
        await db.sessions.get_session(f"s{rng.randrange(sizes.sessions)}")

    async def baseline() -> None:
        await raw.execute_fetchall(PLAIN_SESSION, (f"s{rng.randrange(sizes.sessions)}",))

    return await measure_pair("get_session_20_events", ours, "raw_session_row", baseline,
                              sizes.rounds, sizes.warmup, target=2.5)


async def _prefix(db: Database, raw: aiosqlite.Connection, sizes: CoreSizes,
                  rng: random.Random, names: list[str]) -> list[Result]:
    per_ns = sizes.memories // sizes.namespaces

    async def ours() -> None:
        rows = await db.memory.search_memories(rng.choice(names), limit=per_ns)
        assert len(rows) == per_ns

    async def baseline() -> None:
        name = rng.choice(names)
        await raw.execute_fetchall(PLAIN_RANGE, (name, name + ";"))

    return await measure_pair(f"search_prefix_{per_ns}_rows", ours, "raw_range_query", baseline,
                              max(200, sizes.rounds // 4), sizes.warmup // 4, target=2.0)


async def _writes(db: Database, raw: aiosqlite.Connection, sizes: CoreSizes) -> list[Result]:
    counter = iter(range(10**9))
    live: list[tuple[str, str]] = []

    async def ours() -> None:
        n = next(counter)
        if n % 2 == 0 or not live:
            ns, key = f"app:bench:w{n % 50}", f"key{n}"
            await db.memory.add_memory(ns, key, {"n": n}, "semantic", "agent:bench")
            live.append((ns, key))
        else:
            ns, key = live.pop()
            await db.memory.update_memory(ns, key, {"n": n}, "agent:bench")

    async def baseline() -> None:
        n = next(counter)
        now = timestamp()
        # One statement in autocommit mode: its own transaction, in one thread hop.
        await raw.execute_insert(memory.INSERT, (f"project:rawwrite{n % 50}", f"key{n}",
                                              '{"n": 1}', "semantic", 1, "{}", "bench", "bench",
                                              now, now))

    results = await measure_pair("add_update_memory_with_audit", ours, "raw_write_txn",
                                 baseline, sizes.rounds, sizes.warmup, target=3.0)
    ours_result = results[0]
    ours_result.extra["writes_per_second"] = ours_result.ops
    ours_result.extra["target_writes_per_second"] = 5_000
    ours_result.extra["met_writes_per_second"] = ours_result.ops >= 5_000
    return results


async def _appends(db: Database, raw: aiosqlite.Connection, sizes: CoreSizes) -> list[Result]:
    long_n, count = sizes.long_session_events, sizes.append_sessions
    now = timestamp()
    for s in range(count):
        await db.sessions.create_session(f"short{s}", app_name="bench", user_id="u")
        await db.sessions.create_session(f"long{s}", app_name="bench", user_id="u")
    # Pre-fill by plain inserts (fast); the measured appends go through the service.
    await raw.execute("BEGIN IMMEDIATE")
    for s in range(count):
        await raw.executemany(sessions.INSERT_EVENT, [(f"short{s}", i, '{"e": 1}', now)
                                                      for i in range(1, 10)])
        await raw.executemany(sessions.INSERT_EVENT, [(f"long{s}", i, '{"e": 1}', now)
                                                      for i in range(1, long_n)])
    await raw.commit()
    short_ids = iter([f"short{s}" for s in range(count)])
    long_ids = iter([f"long{s}" for s in range(count)])
    event = {"event_type": "message", "actor": "agent", "content": "x" * 200}

    async def at_long() -> None:
        await db.sessions.append_event(next(long_ids), event, state_delta={"k": 1})

    async def at_ten() -> None:
        await db.sessions.append_event(next(short_ids), event, state_delta={"k": 1})

    return await measure_pair(f"append_event_at_{long_n}", at_long, "append_event_at_10",
                              at_ten, count, 0, target=1.5)

