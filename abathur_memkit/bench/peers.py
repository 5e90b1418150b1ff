"""``memkit bench peers``: one workload through memkit and its peers, in one run.

The same memory and session operations go through raw ``sqlite3``, raw
``aiosqlite``, LangGraph's ``AsyncSqliteStore`` (memories), Google ADK's
``DatabaseSessionService`` on SQLite (sessions) and memkit, each on its own
file in one directory. Every round calls each system once, in turn, so all
see the machine at the same moment; the process is pinned to one CPU as in
``bench core``. Needs the ``peers`` extra.

The raw sides use a minimal schema (a key-value table and an events table,
no versions, no audit) on memkit's driver: the floor SQLite sets on this
machine. LangGraph and ADK open their files themselves (aiosqlite over the
standard ``sqlite3``).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from ..database import Database
from ..engines.sqlite.driver import select_driver
from ..engines.sqlite.engine import PRAGMAS
from ..values import timestamp
from . import Report, Result, one_cpu

__all__ = ["PEERS_EXTRA", "PeerSizes", "missing_peers", "peer_versions", "run_peers"]

PEERS_EXTRA = "pip install 'abathur-memkit[peers]'"
# The modules the peers need: LangGraph's SQLite store, ADK and its SQLAlchemy.
_PEER_MODULES = ("langgraph.store.sqlite", "google.adk.sessions", "sqlalchemy")
SYSTEMS = ("sqlite3", "aiosqlite", "langgraph", "adk", "memkit")

RAW_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (namespace TEXT NOT NULL, key TEXT NOT NULL, "
    "value TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (namespace, key))",
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (session_id TEXT NOT NULL, seq INTEGER NOT NULL, "
    "event TEXT NOT NULL, PRIMARY KEY (session_id, seq))",
)
RAW_GET = "SELECT value FROM kv WHERE namespace = ? AND key = ?"
RAW_PUT = "INSERT OR REPLACE INTO kv (namespace, key, value, updated_at) VALUES (?, ?, ?, ?)"
RAW_SEARCH = (
    "SELECT namespace, key, value FROM kv WHERE namespace >= ? AND namespace < ? "
    "ORDER BY updated_at DESC LIMIT 10"
)
RAW_SESSION = "SELECT state FROM sessions WHERE id = ?"
RAW_EVENTS = "SELECT event FROM events WHERE session_id = ? ORDER BY seq"
RAW_APPEND = (
    "INSERT INTO events (session_id, seq, event) SELECT ?1, coalesce(max(seq), 0) + 1, ?2 "
    "FROM events WHERE session_id = ?1"
)


def missing_peers() -> list[str]:
    """The peer modules that cannot be imported here."""
    missing = []
    for name in _PEER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(name)
    return missing


@dataclass(frozen=True)
class PeerSizes:
    memories: int = 2_000
    users: int = 20
    sessions: int = 50
    events_per_session: int = 20
    rounds: int = 500
    warmup: int = 50

    @classmethod
    def quick(cls) -> PeerSizes:
        return cls(memories=100, users=5, sessions=5, events_per_session=5, rounds=20,
                   warmup=3)


Op = Callable[[], Awaitable[Any]]


def peer_versions() -> dict[str, str]:
    """The versions measured, for the output."""
    from importlib.metadata import PackageNotFoundError, version

    driver = select_driver()
    found = {f"SQLite (raw and memkit, {driver.name})": driver.sqlite_version,
             "SQLite (LangGraph and ADK, sqlite3)": sqlite3.sqlite_version}
    for name in ("aiosqlite", "langgraph-checkpoint-sqlite", "google-adk", "sqlalchemy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


@dataclass
class PeersResult:
    report: Report
    # operation -> system -> result
    table_rows: dict[str, dict[str, Result]]
    versions: dict[str, str]

    def table(self) -> str:
        head = f"{'operation':<22}" + "".join(f"{s:>11}" for s in SYSTEMS)
        head += "   memkit vs aiosqlite   peer vs memkit"
        lines = [head]
        for op, by_system in self.table_rows.items():
            row = f"{op:<22}"
            for system in SYSTEMS:
                result = by_system.get(system)
                row += f"{result.p50_ms * 1000:>9.0f}µs" if result else f"{'-':>11}"
            memkit = by_system["memkit"]
            row += f"   {memkit.p50_ms / by_system['aiosqlite'].p50_ms:>17.2f}x"
            peer = by_system.get("langgraph") or by_system.get("adk")
            if peer is not None:
                row += f"   {peer.p50_ms / memkit.p50_ms:>12.2f}x"
            lines.append(row)
        lines.append("")
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        lines.append("p50 per call, same run, one CPU; 'peer vs memkit' > 1 means the peer "
                     "(LangGraph for memories, ADK for sessions) is slower.")
        return "\n".join(lines)


async def _rounds(ops: dict[str, Op], rounds: int, warmup: int,
                  block: int = 1) -> dict[str, Result]:
    """``rounds`` calls of each op, ``block`` in a row, the ops in turn; per-call
    latencies after the warm-up."""
    for _ in range(warmup):
        for op in ops.values():
            await op()
    gc.collect()
    samples: dict[str, list[int]] = {name: [] for name in ops}
    clock = time.perf_counter_ns
    for done in range(0, rounds, block):
        for name, op in ops.items():
            for _ in range(min(block, rounds - done)):
                start = clock()
                await op()
                samples[name].append(clock() - start)
    return {name: Result.from_samples(name, values) for name, values in samples.items()}


def _connect_raw(path: Path) -> sqlite3.Connection:
    """A raw connection through memkit's driver (the same SQLite build), same PRAGMAs."""
    conn = select_driver().connect(str(path))
    for name, value in PRAGMAS.items():
        conn.execute(f"PRAGMA {name} = {value}")
    return conn


async def run_peers(directory: str | Path, sizes: PeerSizes | None = None, *,
                    progress: Callable[[str], None] | None = None, seed: int = 7,
                    pin: bool = True) -> PeersResult:
    """Run the workload through every system, each on a new file in ``directory``."""
    sizes = sizes or PeerSizes()
    say = progress or (lambda _message: None)
    with one_cpu(pin) as cpu:
        if cpu is not None:
            say(f"pinned to CPU {cpu}")
        async with AsyncExitStack() as stack:
            systems = await _open(stack, Path(directory), sizes, say)
            return await _measure(systems, sizes, random.Random(seed), say)


@dataclass
class _Systems:
    raw_sync: sqlite3.Connection
    raw_async: aiosqlite.Connection
    store: Any  # langgraph AsyncSqliteStore
    adk: Any  # google.adk DatabaseSessionService
    db: Database
    adk_sessions: list[Any]


async def _open(stack: AsyncExitStack, directory: Path, sizes: PeerSizes,
                say: Callable[[str], None]) -> _Systems:
    from google.adk.sessions import DatabaseSessionService
    from langgraph.store.sqlite.aio import AsyncSqliteStore
    from sqlalchemy import event

    for name in ("raw3.db", "rawaio.db", "langgraph.db", "adk.db", "memkit.db"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{directory / name}{suffix}").unlink(missing_ok=True)
    raw_sync = _connect_raw(directory / "raw3.db")
    stack.callback(raw_sync.close)
    for ddl in RAW_SCHEMA:
        raw_sync.execute(ddl)
    raw_async = await aiosqlite.Connection(lambda: _connect_raw(directory / "rawaio.db"),
                                           iter_chunk_size=64)
    stack.push_async_callback(raw_async.close)
    for ddl in RAW_SCHEMA:
        await raw_async.execute(ddl)
    store_conn = await aiosqlite.connect(directory / "langgraph.db", isolation_level=None)
    stack.push_async_callback(store_conn.close)
    # The peers get memkit's PRAGMAs too (WAL, synchronous=NORMAL): their
    # defaults would sync the disk on every commit, which is not their code's cost.
    for name, value in PRAGMAS.items():
        await store_conn.execute(f"PRAGMA {name} = {value}")
    store = AsyncSqliteStore(store_conn)
    await store.setup()
    adk = DatabaseSessionService(f"sqlite+aiosqlite:///{directory / 'adk.db'}")
    engine = adk.db_engine
    stack.push_async_callback(engine.dispose)
    event.listen(engine.sync_engine, "connect", _set_pragmas)
    db = await stack.enter_async_context(Database(directory / "memkit.db"))
    systems = _Systems(raw_sync, raw_async, store, adk, db, [])
    say(f"filling: {sizes.memories:,} memories and {sizes.sessions} sessions of "
        f"{sizes.events_per_session} events in each system")
    await _fill(systems, sizes)
    return systems


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for name, value in PRAGMAS.items():
        cursor.execute(f"PRAGMA {name} = {value}")
    cursor.close()


def _memory(i: int, users: int) -> tuple[str, str, dict[str, Any]]:
    return f"user:u{i % users}:notes", f"k{i}", {"note": f"memory {i}", "n": i}


def _event(n: int) -> dict[str, Any]:
    return {"event_type": "message", "actor": "user", "content": f"turn {n}"}


async def _fill(s: _Systems, sizes: PeerSizes) -> None:
    from ..memory import MemoryItem

    rows = [_memory(i, sizes.users) for i in range(sizes.memories)]
    now = timestamp()
    raw_rows = [(ns, key, json.dumps(value), now) for ns, key, value in rows]
    s.raw_sync.execute("BEGIN")
    s.raw_sync.executemany(RAW_PUT, raw_rows)
    s.raw_sync.execute("COMMIT")
    await s.raw_async.execute("BEGIN")
    await s.raw_async.executemany(RAW_PUT, raw_rows)
    await s.raw_async.execute("COMMIT")
    await s.store.abatch(_langgraph_puts(rows))
    await s.db.memory.add_memories([MemoryItem(ns, key, value) for ns, key, value in rows],
                                   "system")
    for n in range(sizes.sessions):
        sid = f"s{n}"
        events = [json.dumps(_event(e)) for e in range(sizes.events_per_session)]
        s.raw_sync.execute("INSERT INTO sessions VALUES (?, '{}')", (sid,))
        await s.raw_async.execute("INSERT INTO sessions VALUES (?, '{}')", (sid,))
        for text in events:
            s.raw_sync.execute(RAW_APPEND, (sid, text))
            await s.raw_async.execute(RAW_APPEND, (sid, text))
        session = await s.adk.create_session(app_name="bench", user_id="u", session_id=sid)
        await s.db.sessions.create_session(sid, app_name="bench", user_id="u")
        for e in range(sizes.events_per_session):
            await s.adk.append_event(session, _adk_event(e))
            await s.db.sessions.append_event(sid, _event(e), state_delta={"turn": e})
        s.adk_sessions.append(session)


def _langgraph_puts(rows: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    from langgraph.store.base import PutOp

    return [PutOp(tuple(ns.split(":")), key, value, index=False) for ns, key, value in rows]


def _adk_event(n: int) -> Any:
    from google.adk.events import Event, EventActions
    from google.genai import types

    return Event(author="user", invocation_id=f"inv{n}",
                 content=types.Content(role="user", parts=[types.Part(text=f"turn {n}")]),
                 actions=EventActions(state_delta={"turn": n}))


async def _measure(s: _Systems, sizes: PeerSizes, rng: random.Random,
                   say: Callable[[str], None]) -> PeersResult:
    report = Report("peers", str(s.db.path))
    table: dict[str, dict[str, Result]] = {}

    def pick() -> tuple[str, str]:
        ns, key, _ = _memory(rng.randrange(sizes.memories), sizes.users)
        return ns, key

    def user() -> tuple[str, tuple[str, ...]]:
        name = f"user:u{rng.randrange(sizes.users)}"
        return name, tuple(name.split(":"))

    async def raw_async_get() -> Any:
        return await s.raw_async.execute_fetchall(RAW_GET, pick())

    async def raw_sync_get() -> Any:
        return s.raw_sync.execute(RAW_GET, pick()).fetchall()

    async def langgraph_get() -> Any:
        ns, key = pick()
        return await s.store.aget(tuple(ns.split(":")), key)

    async def memkit_get() -> Any:
        return await s.db.memory.get_memory(*pick())

    counter = iter(range(10**9))

    def fresh() -> tuple[str, str, dict[str, Any]]:
        n = next(counter)
        return f"user:u{n % sizes.users}:new", f"w{n}", {"note": "new", "n": n}

    async def raw_sync_put() -> None:
        ns, key, value = fresh()
        s.raw_sync.execute(RAW_PUT, (ns, key, json.dumps(value), timestamp()))

    async def raw_async_put() -> None:
        ns, key, value = fresh()
        await s.raw_async.execute_insert(RAW_PUT, (ns, key, json.dumps(value), timestamp()))

    async def langgraph_put() -> None:
        ns, key, value = fresh()
        await s.store.aput(tuple(ns.split(":")), key, value, index=False)

    async def memkit_put() -> None:
        ns, key, value = fresh()
        await s.db.memory.add_memory(ns, key, value, "semantic", "agent:bench")

    async def raw_sync_search() -> Any:
        name, _ = user()
        return s.raw_sync.execute(RAW_SEARCH, (name + ":", name + ";")).fetchall()

    async def raw_async_search() -> Any:
        name, _ = user()
        return await s.raw_async.execute_fetchall(RAW_SEARCH, (name + ":", name + ";"))

    async def langgraph_search() -> Any:
        _, prefix = user()
        return await s.store.asearch(prefix, limit=10)

    async def memkit_search() -> Any:
        name, _ = user()
        return await s.db.memory.search_memories(name, limit=10)

    def session_id() -> str:
        return f"s{rng.randrange(sizes.sessions)}"

    async def raw_sync_session() -> Any:
        sid = session_id()
        return (s.raw_sync.execute(RAW_SESSION, (sid,)).fetchone(),
                s.raw_sync.execute(RAW_EVENTS, (sid,)).fetchall())

    async def raw_async_session() -> Any:
        sid = session_id()
        return (await s.raw_async.execute_fetchall(RAW_SESSION, (sid,)),
                await s.raw_async.execute_fetchall(RAW_EVENTS, (sid,)))

    async def adk_session() -> Any:
        return await s.adk.get_session(app_name="bench", user_id="u", session_id=session_id())

    async def memkit_session() -> Any:
        return await s.db.sessions.get_session(session_id())

    appends = iter(range(10**9))

    async def raw_sync_append() -> None:
        s.raw_sync.execute(RAW_APPEND, ("s0", json.dumps(_event(next(appends)))))

    async def raw_async_append() -> None:
        await s.raw_async.execute(RAW_APPEND, ("s0", json.dumps(_event(next(appends)))))

    async def adk_append() -> None:
        await s.adk.append_event(s.adk_sessions[0], _adk_event(next(appends)))

    async def memkit_append() -> None:
        n = next(appends)
        await s.db.sessions.append_event("s0", _event(n), state_delta={"turn": n})

    workload: dict[str, dict[str, Op]] = {
        "get_memory": {"sqlite3": raw_sync_get, "aiosqlite": raw_async_get,
                       "langgraph": langgraph_get, "memkit": memkit_get},
        "put_memory": {"sqlite3": raw_sync_put, "aiosqlite": raw_async_put,
                       "langgraph": langgraph_put, "memkit": memkit_put},
        "search_user_prefix": {"sqlite3": raw_sync_search, "aiosqlite": raw_async_search,
                               "langgraph": langgraph_search, "memkit": memkit_search},
        "get_session": {"sqlite3": raw_sync_session, "aiosqlite": raw_async_session,
                        "adk": adk_session, "memkit": memkit_session},
        "append_event": {"sqlite3": raw_sync_append, "aiosqlite": raw_async_append,
                         "adk": adk_append, "memkit": memkit_append},
    }
    for op, ops in workload.items():
        say(op)
        results = await _rounds(ops, sizes.rounds, sizes.warmup)
        memkit = results["memkit"]
        for system, result in results.items():
            result.name = f"{op}:{system}"
            if system != "memkit":
                result.extra.update(baseline=f"{op}:memkit",
                                    ratio=result.p50_ms / memkit.p50_ms, ratio_of="p50")
        report.add(list(results.values()))
        table[op] = results
    return PeersResult(report, table, peer_versions())
