"""``memkit bench postgres``: memkit, raw psycopg and the peers on one PostgreSQL server.

One run, one server (a DSN, or a pgserver this starts), one new database per
system, dropped at the end: raw psycopg (a bare versioned key-value table and
an audit table, async connections), memkit (``Database(dsn)``), LangGraph's
``AsyncPostgresStore`` and Google ADK's ``DatabaseSessionService`` (SQLAlchemy
on asyncpg). Each round calls every system's operation ``block`` times in a
row (20 by default), in turn, so all see the machine at the same moments.

Calls in a row, not one each: when the server's CPU has sat idle for a few
milliseconds (as it does during a peer's slow call), this VM takes ~0.3-0.6 ms
to wake it, and a call after another system's paid that on each round trip
(memkit's ``append_event`` p50 1.48 ms one call per round, 0.94 ms in rows of
20; ADK's 8.8 and 9.1 ms). The round trip of ``SELECT 1`` back to back and
after 8 ms idle is printed with each commit baseline; ``block=1`` gives the
one-call-per-round figures.

The client process is pinned to one CPU and, when the server runs on this
machine (the pid of our backend is a local ``postgres`` process), the
postmaster and its children to the other CPUs: new backends inherit the
postmaster's affinity. Both come back as they were at the end.

This VM sometimes slows every durable commit to ~4 ms for minutes, so the
latency of a one-row autocommit INSERT (``synchronous_commit = on``) is
measured at the start and at the end and printed with the figures.

A row that fails is skipped with its reason, never given a number: memkit's
rows say "not yet on PostgreSQL" while a service is not ported, the peers'
rows name the extra when it is missing. A KNN benchmark can join the run
through ``knn`` (see ``KnnBench``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import tempfile
import time
import urllib.parse
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, MemkitError, MissingExtraError
from ..extras import missing_modules
from . import Report, Result, target_lines
from .peers import PeerSizes, _adk_event, _event, _langgraph_puts, _memory, _rounds
from .writers import _load

__all__ = ["PG_PEERS_EXTRA", "KnnBench", "PostgresResult", "PostgresSizes", "knn_bench",
           "knn_targets", "local_server", "run_postgres", "server_pids"]

PG_PEERS_EXTRA = "pip install 'abathur-memkit[peers-postgres]'"
NOT_PORTED = "not yet on PostgreSQL"

#: A KNN benchmark run beside the others: gets the DSN of a new database on
#: the same server and a progress callback; returns its results and targets
#: ``(name, goal, measured, met)``.
KnnBench = Callable[[str, Callable[[str], None]],
                    Awaitable[tuple[list[Result], list[tuple[str, str, str, bool | None]]]]]

RAW_SCHEMA = (
    "CREATE TABLE kv (namespace text NOT NULL, key text NOT NULL, version integer NOT NULL, "
    "value jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (namespace, key, version))",
    "CREATE TABLE kv_audit (id bigserial PRIMARY KEY, namespace text NOT NULL, "
    "key text NOT NULL, version integer NOT NULL, action text NOT NULL, "
    "at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE commits (n bigint NOT NULL)",
)
RAW_GET_LATEST = ("SELECT value FROM kv WHERE namespace = %s AND key = %s "
                  "ORDER BY version DESC LIMIT 1")
RAW_PUT = ("INSERT INTO kv (namespace, key, version, value) "
           "SELECT %s, %s, coalesce(max(version), 0) + 1, %s FROM kv "
           "WHERE namespace = %s AND key = %s RETURNING version")
RAW_AUDIT = "INSERT INTO kv_audit (namespace, key, version, action) VALUES (%s, %s, %s, 'add')"
RAW_COPY = "COPY kv (namespace, key, version, value) FROM STDIN"
COMMIT = "INSERT INTO commits (n) VALUES (%s)"
#: The pause before the second round-trip probe, about one of ADK's calls.
IDLE_MS = 8

SYSTEMS = ("raw", "memkit", "langgraph", "adk")
Op = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class PostgresSizes(PeerSizes):
    """The peers' workload, plus the concurrent writers and the commit baselines."""

    writes: int = 2_000  # per system in each concurrent-writers run
    writers: int = 8
    commits: int = 300  # one-row commits in each baseline
    block: int = 20  # calls of one operation in a row, per round

    def __post_init__(self) -> None:
        if self.sessions < 2 or self.writers < 2:
            raise InvalidInputError("the postgres benchmark needs sessions >= 2 (one takes "
                                    "the appends) and writers >= 2")
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 1:
            raise InvalidInputError(f"block must be an int >= 1, got {self.block!r}")

    @classmethod
    def quick(cls) -> PostgresSizes:
        peers = PeerSizes.quick()
        return cls(**{f.name: getattr(peers, f.name) for f in fields(PeerSizes)},
                   writes=80, commits=20, block=5)


@dataclass
class PostgresResult:
    report: Report
    rows: list[tuple[str, str, Result]]  # system, operation, result
    skipped: list[tuple[str, str, str]]  # system, operation, reason
    targets: list[tuple[str, str, str, bool | None]]
    commits: dict[str, Result]  # "start"/"end": the durable-commit baseline
    # "start"/"end": SELECT 1's round trip, back to back and after 8 ms idle
    round_trips: dict[str, tuple[Result, Result]]
    pinning: str
    versions: dict[str, str]
    copy_rate: float = 0.0
    load: str = ""
    block: int = 1

    @property
    def missed(self) -> bool:
        return any(met is False for *_, met in self.targets)

    def table(self) -> str:
        lines = [_commit_line("start", self.commits["start"]),
                 _round_trip_line("start", *self.round_trips["start"]), "",
                 f"{'system':<10} {'operation':<36} {'p50':>10} {'rate':>12}"]
        entries: list[tuple[str, str, Result | str]] = [*self.rows, *self.skipped]
        order = [*SYSTEMS, "pgvector"]
        entries.sort(key=lambda entry: order.index(entry[0]))  # stable: same run order
        said = ""
        for system, operation, outcome in entries:
            row = f"{system:<10} {operation:<36} "
            if isinstance(outcome, str):
                row += "skipped (as above)" if outcome == said else f"skipped: {outcome}"
                said = outcome
            else:
                p50 = "" if outcome.count else f"{outcome.p50_ms * 1000:.0f}µs"
                row += f"{p50:>10} {outcome.ops:>10,.0f}/s"
            lines.append(row)
            if (system, operation) == ("raw", "get_latest") and self.copy_rate:
                lines.append(f"{'raw':<10} {'COPY (the fill)':<36} {'':>10} "
                             f"{self.copy_rate:>10,.0f}/s")
        lines += ["", *target_lines(self.targets), "",
                  _commit_line("end", self.commits["end"]),
                  _round_trip_line("end", *self.round_trips["end"]), f"pinning: {self.pinning}",
                  f"load average (1/5/15 min): {self.load}",
                  "versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
                  f"p50 per call; each round calls each operation {self.block} times in a "
                  "row, the systems in turn; a rate of a latency row is 1 / its mean."]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        document = self.report.to_json()
        document.update(
            targets=[{"name": n, "goal": g, "measured": m, "met": ok}
                     for n, g, m, ok in self.targets],
            skipped=[{"system": s, "operation": o, "reason": r} for s, o, r in self.skipped],
            commit_baseline={when: {"p50_ms": r.p50_ms, "mean_ms": r.stats.mean_ms}
                             for when, r in self.commits.items()},
            round_trip={when: {"back_to_back_p50_ms": near.p50_ms,
                               "after_idle_p50_ms": idle.p50_ms, "idle_ms": IDLE_MS}
                        for when, (near, idle) in self.round_trips.items()},
            block=self.block,
            copy_rows_per_s=self.copy_rate, pinning=self.pinning, load_average=self.load,
            versions=self.versions)
        return document


def _commit_line(when: str, result: Result) -> str:
    return (f"durable commit baseline ({when}): p50 {result.p50_ms:.3f} ms, mean "
            f"{result.stats.mean_ms:.3f} ms over {len(result.samples_ns)} one-row commits")


def _round_trip_line(when: str, near: Result, idle: Result) -> str:
    return (f"round trip of SELECT 1 ({when}): p50 {near.p50_ms * 1000:.0f} µs back to back, "
            f"{idle.p50_ms * 1000:.0f} µs after {IDLE_MS} ms idle")


def knn_bench(n: int = 100_000, dims: int = 768) -> KnnBench:
    """``bench/pgvector.py``'s ``run_pgvector`` at ``n`` x ``dims``, for ``--knn``.

    Looked up when called, so a run on an install without it skips the KNN
    rows with the reason instead of failing. It runs its own event loop, so
    it runs in a worker thread (which inherits the client's CPU).
    """

    async def run(dsn: str, say: Callable[[str], None]
                  ) -> tuple[list[Result], list[tuple[str, str, str, bool | None]]]:
        try:
            module = importlib.import_module(f"{__package__}.pgvector")
        except ModuleNotFoundError as exc:
            raise LookupError(f"no KNN benchmark here ({exc})") from None
        report = await asyncio.to_thread(module.run_pgvector, dsn, n, dims, progress=say)
        return [], knn_targets(report)

    return run


def knn_targets(report: Any) -> list[tuple[str, str, str, bool | None]]:
    """The KNN targets from a ``PgVectorReport``: p50 against raw pgvector, recall."""
    size = f"{report.n:,} x {report.dims}"
    ratio = report.memkit_p50_ms / report.raw_p50_ms if report.raw_p50_ms else float("inf")
    return [
        (f"KNN p50 / raw pgvector HNSW, {size}", "<= 1.2",
         f"{ratio:.2f}x ({report.memkit_p50_ms:.2f} / {report.raw_p50_ms:.2f} ms)",
         ratio <= 1.2),
        (f"KNN recall@{report.k}, ef_search {report.ef_search}", ">= 0.95",
         f"{report.memkit_recall:.3f} (raw {report.raw_recall:.3f})",
         report.memkit_recall >= 0.95),
    ]


#: The peer each module of the ``peers-postgres`` extra serves.
_PEER_OF = {"langgraph.store.postgres": "langgraph", "google.adk.sessions": "adk",
            "sqlalchemy": "adk", "asyncpg": "adk"}


def missing_peer_modules() -> dict[str, list[str]]:
    """Per peer, the modules it needs that cannot be imported here."""
    missing: dict[str, list[str]] = {}
    for module in missing_modules("peers-postgres"):
        missing.setdefault(_PEER_OF[module], []).append(module)
    return missing


# -- the server, its databases and the pinning ---------------------------------


@contextmanager
def local_server() -> Iterator[str]:
    """A pgserver PostgreSQL in a temporary folder, for a run given no DSN."""
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError as exc:
        raise MissingExtraError(
            f"memkit bench postgres without --dsn starts pgserver, which is missing "
            f"({exc}): pip install pgserver, or pass --dsn") from None
    with tempfile.TemporaryDirectory(prefix="memkit-bench-pg-") as tmp:
        server = get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


def database_uri(server: str, name: str) -> str:
    """The server's URI naming another database."""
    parts = urllib.parse.urlsplit(server)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def _databases(server: str, systems: list[str]) -> AsyncIterator[dict[str, str]]:
    """One new database per system on ``server``, dropped on exit."""
    import psycopg

    prefix = f"memkit_bench_{uuid.uuid4().hex[:8]}"
    names = {system: f"{prefix}_{system}" for system in systems}
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as admin:
        try:
            for name in names.values():
                try:
                    await admin.execute(f'CREATE DATABASE "{name}"')
                except psycopg.Error as exc:
                    raise MemkitError(
                        f"memkit bench postgres could not create its database {name}: {exc} "
                        f"(it needs a user allowed to CREATE DATABASE)") from None
            yield {system: database_uri(server, name) for system, name in names.items()}
        finally:
            for name in names.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    # The command name (field 2) may hold spaces: the fields after its ")" are plain.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def server_pids(backend_pid: int) -> list[int]:
    """The local postmaster and its children, found from one backend's pid; [] if not here."""
    if not _comm(backend_pid).startswith("postgres"):
        return []
    postmaster = _parent(backend_pid)
    if not _comm(postmaster).startswith("postgres"):
        return []
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _parent(int(entry.name)) == postmaster:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return [postmaster, *children]


@contextmanager
def _pinned(enabled: bool, server: list[int]) -> Iterator[str]:
    """Pin this thread (and threads it starts) and the server apart; say what was done."""
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield "off"
        return
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        yield f"not pinned: this process may use only CPU {min(before)}"
        return
    client = max(before)
    others = before - {client}
    saved: dict[int, set[int]] = {}
    for pid in server:
        try:
            saved[pid] = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, others)
        except (ProcessLookupError, PermissionError):
            saved.pop(pid, None)
    os.sched_setaffinity(0, {client})
    cpus = ",".join(map(str, sorted(others)))
    if saved:
        said = (f"client on CPU {client} (os.sched_setaffinity); the postmaster and its "
                f"{len(saved) - 1} children on CPU {cpus} (their pids from /proc, new "
                f"backends inherit it)")
    else:
        said = f"client on CPU {client}; server not a local process here: not pinned"
    try:
        yield said
    finally:
        os.sched_setaffinity(0, before)
        for pid, cpus_before in saved.items():
            with suppress(ProcessLookupError):
                os.sched_setaffinity(pid, cpus_before)


# -- the systems ---------------------------------------------------------------


@dataclass
class _Run:
    sizes: PostgresSizes
    say: Callable[[str], None]
    dsns: dict[str, str]
    stack: AsyncExitStack
    report: Report = field(default_factory=lambda: Report("postgres", "postgresql"))
    rows: list[tuple[str, str, Result]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    raw: Any = None  # psycopg.AsyncConnection
    db: Any = None  # memkit Database, when it filled
    store: Any = None  # langgraph AsyncPostgresStore
    adk: Any = None  # google.adk DatabaseSessionService
    adk_sessions: list[Any] = field(default_factory=list)
    copy_rate: float = 0.0

    def skip(self, system: str, operations: tuple[str, ...], reason: str) -> None:
        self.skipped.extend((system, op, reason) for op in operations)

    def add(self, system: str, operation: str, result: Result) -> None:
        result.name = f"{system}: {operation}"
        self.rows.append((system, operation, result))
        self.report.add([result])


def _memkit_ops(writers: int) -> tuple[str, ...]:
    return ("get_memory", "add_memory (+ audit)", "add_memory (+ audit), 1 writer",
            f"add_memory (+ audit), {writers} writers", "create_session", "append_event",
            "get_session")


LANGGRAPH_OPS = ("aget", "aput", "asearch (prefix, limit 10)")
ADK_OPS = ("create_session", "append_event", "get_session")


def _reason(system: str, exc: BaseException) -> str:
    said = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return f"{NOT_PORTED} ({said})" if system == "memkit" else said


async def _open_raw(run: _Run) -> None:
    import psycopg

    run.raw = await psycopg.AsyncConnection.connect(run.dsns["raw"], autocommit=True)
    run.stack.push_async_callback(run.raw.close)
    for ddl in RAW_SCHEMA:
        await run.raw.execute(ddl)
    rows = [(ns, key, 1, json.dumps(value)) for ns, key, value in _memories(run.sizes)]
    start = time.perf_counter_ns()
    async with run.raw.cursor() as cur, cur.copy(RAW_COPY) as copy:
        for row in rows:
            await copy.write_row(row)
    run.copy_rate = len(rows) / ((time.perf_counter_ns() - start) / 1e9)
    await run.raw.execute("ANALYZE")


def _memories(sizes: PostgresSizes) -> list[tuple[str, str, dict[str, Any]]]:
    return [_memory(i, sizes.users) for i in range(sizes.memories)]


async def _open_memkit(run: _Run) -> None:
    from ..database import Database
    from ..memory import MemoryItem

    ops = _memkit_ops(run.sizes.writers)
    try:
        db = await run.stack.enter_async_context(Database(run.dsns["memkit"]))
        await db.memory.add_memories(
            [MemoryItem(ns, key, value) for ns, key, value in _memories(run.sizes)], "system")
        for n in range(run.sizes.sessions):
            await db.sessions.create_session(f"s{n}", app_name="bench", user_id="u")
            for e in range(run.sizes.events_per_session):
                await db.sessions.append_event(f"s{n}", _event(e), state_delta={"turn": e})
        ns, key, _ = _memory(0, run.sizes.users)
        if await db.memory.get_memory(ns, key) is None:
            raise LookupError(f"get_memory({ns!r}, {key!r}) found no memory after the fill")
    except Exception as exc:
        run.skip("memkit", ops, _reason("memkit", exc))
        return
    run.db = db


async def _open_langgraph(run: _Run, missing: list[str] | None) -> None:
    if missing:
        run.skip("langgraph", LANGGRAPH_OPS, f"{', '.join(missing)} missing: {PG_PEERS_EXTRA}")
        return
    from langgraph.store.postgres.aio import AsyncPostgresStore

    try:
        store = await run.stack.enter_async_context(
            AsyncPostgresStore.from_conn_string(run.dsns["langgraph"]))
        await store.setup()
        await store.abatch(_langgraph_puts(_memories(run.sizes)))
    except Exception as exc:
        run.skip("langgraph", LANGGRAPH_OPS, _reason("langgraph", exc))
        return
    run.store = store


def adk_url(dsn: str) -> str:
    """SQLAlchemy's URL for ``dsn`` on asyncpg (ADK's engine is async)."""
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


async def _open_adk(run: _Run, missing: list[str] | None) -> None:
    if missing:
        run.skip("adk", ADK_OPS, f"{', '.join(missing)} missing: {PG_PEERS_EXTRA}")
        return
    from google.adk.sessions import DatabaseSessionService

    try:
        adk = DatabaseSessionService(adk_url(run.dsns["adk"]))
        run.stack.push_async_callback(adk.db_engine.dispose)
        for n in range(run.sizes.sessions):
            session = await adk.create_session(app_name="bench", user_id="u",
                                               session_id=f"s{n}")
            for e in range(run.sizes.events_per_session):
                await adk.append_event(session, _adk_event(e))
            run.adk_sessions.append(session)
    except Exception as exc:
        run.skip("adk", ADK_OPS, _reason("adk", exc))
        return
    run.adk = adk


# -- the measurements ------------------------------------------------------------


async def _commit_baseline(dsn: str, commits: int) -> Result:
    """Per-commit latency of a one-row autocommit INSERT, durable (synchronous_commit on)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SET synchronous_commit = on")
        samples = []
        for n in range(commits):
            start = time.perf_counter_ns()
            await conn.execute(COMMIT, (n,))
            samples.append(time.perf_counter_ns() - start)
    return Result.from_samples("durable commit", samples, unit="commit")


async def _round_trips(dsn: str, count: int) -> tuple[Result, Result]:
    """SELECT 1's round trip right after another, and after ``IDLE_MS`` of idling."""
    import psycopg

    near: list[int] = []
    idle: list[int] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT 1")
        for _ in range(count):
            for samples in (near, idle):
                if samples is idle:
                    time.sleep(IDLE_MS / 1000)  # the whole process idle, as during I/O
                start = time.perf_counter_ns()
                await conn.execute("SELECT 1")
                samples.append(time.perf_counter_ns() - start)
    return (Result.from_samples("round trip, back to back", near),
            Result.from_samples(f"round trip, after {IDLE_MS} ms idle", idle))


async def _interleaved(run: _Run, ops: dict[tuple[str, str], Op]) -> None:
    """Each op once per round, in turn (as ``bench peers``); an op that fails is skipped."""
    working: dict[str, Op] = {}
    for (system, operation), op in ops.items():
        try:
            await op()
        except Exception as exc:
            run.skip(system, (operation,), _reason(system, exc))
        else:
            working[f"{system}\0{operation}"] = op
    if not working:
        return
    results = await _rounds(working, run.sizes.rounds, run.sizes.warmup, run.sizes.block)
    for name, result in results.items():
        system, _, operation = name.partition("\0")
        run.add(system, operation, result)


def _picker(run: _Run, seed: int = 7) -> Callable[[], tuple[str, str]]:
    import random

    rng = random.Random(seed)

    def pick() -> tuple[str, str]:
        ns, key, _ = _memory(rng.randrange(run.sizes.memories), run.sizes.users)
        return ns, key

    return pick


async def _raw_write(conn: Any, ns: str, key: str, value: dict[str, Any]) -> None:
    """The raw write transaction: the next version of a key and its audit row."""
    from psycopg.types.json import Jsonb

    async with conn.transaction():
        cur = await conn.execute(RAW_PUT, (ns, key, Jsonb(value), ns, key))
        row = await cur.fetchone()
        await conn.execute(RAW_AUDIT, (ns, key, row[0]))


def _fresh(prefix: str) -> Callable[[], tuple[str, str, dict[str, Any]]]:
    counter = iter(range(10**9))

    def fresh() -> tuple[str, str, dict[str, Any]]:
        n = next(counter)
        return f"user:u{n % 20}:{prefix}", f"w{n}", {"note": "new", "n": n}

    return fresh


async def _memory_ops(run: _Run) -> None:
    pick = _picker(run)
    fresh = {system: _fresh(system) for system in SYSTEMS}
    ops: dict[tuple[str, str], Op] = {}

    async def raw_get() -> Any:
        cur = await run.raw.execute(RAW_GET_LATEST, pick())
        return await cur.fetchone()

    async def raw_put() -> None:
        await _raw_write(run.raw, *fresh["raw"]())

    ops[("raw", "get_latest")] = raw_get
    ops[("raw", "write transaction (+ audit)")] = raw_put
    if run.db is not None:
        async def memkit_get() -> Any:
            return await run.db.memory.get_memory(*pick())

        async def memkit_put() -> Any:
            ns, key, value = fresh["memkit"]()
            return await run.db.memory.add_memory(ns, key, value, "semantic", "agent:bench")

        ops[("memkit", "get_memory")] = memkit_get
        ops[("memkit", "add_memory (+ audit)")] = memkit_put
    if run.store is not None:
        async def langgraph_get() -> Any:
            ns, key = pick()
            return await run.store.aget(tuple(ns.split(":")), key)

        async def langgraph_put() -> Any:
            ns, key, value = fresh["langgraph"]()
            return await run.store.aput(tuple(ns.split(":")), key, value, index=False)

        async def langgraph_search() -> Any:
            ns, _ = pick()
            return await run.store.asearch(tuple(ns.split(":")[:2]), limit=10)

        ops[("langgraph", "aget")] = langgraph_get
        ops[("langgraph", "aput")] = langgraph_put
        ops[("langgraph", "asearch (prefix, limit 10)")] = langgraph_search
    await _interleaved(run, ops)


async def _session_ops(run: _Run) -> None:
    import random

    rng = random.Random(11)
    # Events are appended to s0, so the sessions read keep their size.
    sessions = run.sizes.sessions
    created = iter(range(10**9))
    appends = iter(range(10**9))
    ops: dict[tuple[str, str], Op] = {}
    if run.db is not None:
        ops[("memkit", "create_session")] = lambda: run.db.sessions.create_session(
            f"new{next(created)}", app_name="bench", user_id="u")
        async def memkit_append() -> Any:
            n = next(appends)
            return await run.db.sessions.append_event("s0", _event(n), state_delta={"turn": n})

        ops[("memkit", "append_event")] = memkit_append
        ops[("memkit", "get_session")] = lambda: run.db.sessions.get_session(
            f"s{rng.randrange(1, sessions)}")
    if run.adk is not None:
        ops[("adk", "create_session")] = lambda: run.adk.create_session(
            app_name="bench", user_id="u", session_id=f"new{next(created)}")
        ops[("adk", "append_event")] = lambda: run.adk.append_event(
            run.adk_sessions[0], _adk_event(next(appends)))
        ops[("adk", "get_session")] = lambda: run.adk.get_session(
            app_name="bench", user_id="u", session_id=f"s{rng.randrange(1, sessions)}")
    await _interleaved(run, ops)


async def _writers(run: _Run) -> None:
    """The same writes from 1 and from N concurrent writers, raw and memkit, in turn."""
    import psycopg

    sizes = run.sizes
    conns = [await psycopg.AsyncConnection.connect(run.dsns["raw"], autocommit=True)
             for _ in range(sizes.writers)]
    for conn in conns:
        run.stack.push_async_callback(conn.close)
    fresh = {"raw": _fresh("raw-writers"), "memkit": _fresh("memkit-writers")}

    def raw_writer(i: int) -> Op:
        return lambda: _raw_write(conns[i], *fresh["raw"]())

    def memkit_writer(_i: int) -> Op:
        async def write() -> Any:
            ns, key, value = fresh["memkit"]()
            return await run.db.memory.add_memory(ns, key, value, "semantic", "agent:bench")

        return write

    sides: dict[str, Callable[[int], Op]] = {"raw": raw_writer}
    if run.db is not None:
        sides["memkit"] = memkit_writer
    label = {"raw": "write transaction (+ audit)", "memkit": "add_memory (+ audit)"}
    for count in (1, sizes.writers):
        totals: dict[str, list[int]] = {side: [] for side in sides}
        per_round = max(count, sizes.writes // 4 // count * count)
        for _ in range(4):  # rounds, the sides in turn
            for side, writer in list(sides.items()):
                try:
                    totals[side].append(await _timed_writers(writer, count, per_round))
                except Exception as exc:
                    run.skip(side, (f"{label[side]}, {count} writers",), _reason(side, exc))
                    del sides[side]
        for side, samples in totals.items():
            if side in sides:
                name = f"{label[side]}, {count} writer{'s' if count > 1 else ''}"
                run.add(side, name, Result(name, samples, count=per_round,
                                           extra={"unit": f"{per_round} writes"}))


async def _timed_writers(writer: Callable[[int], Op], count: int, writes: int) -> int:
    async def one(i: int) -> None:
        op = writer(i)
        for _ in range(writes // count):
            await op()

    start = time.perf_counter_ns()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter_ns() - start


async def _knn(run: _Run, knn: KnnBench) -> list[tuple[str, str, str, bool | None]]:
    try:
        results, targets = await knn(run.dsns["knn"], run.say)
    except Exception as exc:
        run.skip("pgvector", ("KNN",), _reason("pgvector", exc))
        return []
    for result in results:
        run.add("pgvector", result.name, result)
    return targets


# -- the targets ------------------------------------------------------------------


def _targets(run: _Run, writers: int, writers_only: bool = False
             ) -> list[tuple[str, str, str, bool | None]]:
    found = {(system, op): result for system, op, result in run.rows}

    def ratio(name: str, goal: str, top: tuple[str, str], bottom: tuple[str, str],
              limit: float, at_most: bool) -> tuple[str, str, str, bool | None]:
        a, b = found.get(top), found.get(bottom)
        if a is None or b is None:
            return name, goal, "not measured", None
        value = a.p50_ms / b.p50_ms
        return name, goal, f"{value:.2f}x", value <= limit if at_most else value >= limit

    rate = found.get(("memkit", f"add_memory (+ audit), {writers} writers"))
    raw = found.get(("raw", f"write transaction (+ audit), {writers} writers"))
    write = (f"memory writes with audit, {writers} writers", ">= 2,000/s",
             (f"{rate.ops:,.0f}/s" + (f" ({rate.ops / raw.ops:.2f}x raw's {raw.ops:,.0f}/s)"
                                      if raw else "")) if rate else "not measured",
             rate.ops >= 2_000 if rate else None)
    if writers_only:
        return [write]
    return [
        ratio("get_memory / raw psycopg get_latest, p50", "<= 1.5",
              ("memkit", "get_memory"), ("raw", "get_latest"), 1.5, True),
        ratio("LangGraph aget / get_memory, p50", ">= 2.5",
              ("langgraph", "aget"), ("memkit", "get_memory"), 2.5, False),
        write,
        ratio("ADK append_event / memkit's, p50", ">= 10",
              ("adk", "append_event"), ("memkit", "append_event"), 10, False),
        ratio("ADK get_session / memkit's, p50", ">= 10",
              ("adk", "get_session"), ("memkit", "get_session"), 10, False),
    ]


def _versions(server_version: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"PostgreSQL": server_version}
    for name in ("psycopg", "langgraph-checkpoint-postgres", "google-adk", "sqlalchemy",
                 "asyncpg"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


async def run_postgres(
    server: str,
    sizes: PostgresSizes | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    pin: bool = True,
    knn: KnnBench | None = None,
    writers_only: bool = False,
) -> PostgresResult:
    """Run every system against ``server`` (a ``postgresql://`` URI allowed to CREATE DATABASE).

    ``writers_only``: raw psycopg and memkit, filled as usual, then only their
    concurrent writers (no peers, no single calls; ``knn`` must be None).
    """
    import psycopg

    if not server.startswith(("postgresql://", "postgres://")):
        raise InvalidInputError(f"--dsn must be a postgresql:// URI, not {server!r}")
    sizes = sizes or PostgresSizes()
    say = progress or (lambda _message: None)
    missing = missing_peer_modules()
    # Creating and dropping a database costs ~0.5 s here: none for a peer that cannot run.
    if writers_only and knn is not None:
        raise InvalidInputError("--writers-only runs no KNN benchmark: drop --knn or "
                                "--writers-only")
    systems = (["raw", "memkit"] if writers_only
               else [s for s in SYSTEMS if s not in missing] + (["knn"] if knn else []))
    async with _databases(server, systems) as dsns, AsyncExitStack() as stack:
        async with await psycopg.AsyncConnection.connect(dsns["raw"]) as probe:
            # Found while this backend lives: its parent is the postmaster.
            pids = server_pids(probe.info.backend_pid) if pin else []
            server_version = probe.info.parameter_status("server_version") or "?"
        run = _Run(sizes, say, dsns, stack)
        load_before = _load()
        with _pinned(pin, pids) as pinning:
            say(f"pinning: {pinning}")
            commits, trips, knn_targets = await _measure(run, missing, knn, writers_only)
        await stack.aclose()
    for when, result in commits.items():
        result.name = f"durable commit baseline ({when})"
        run.report.add([result])
    return PostgresResult(run.report, run.rows, run.skipped,
                          _targets(run, sizes.writers, writers_only) + knn_targets, commits,
                          trips, pinning,
                          _versions(server_version), run.copy_rate,
                          load=f"before {load_before}, after {_load()} on "
                               f"{os.cpu_count()} CPUs", block=sizes.block)


async def _measure(run: _Run, missing: dict[str, list[str]], knn: KnnBench | None,
                   writers_only: bool = False,
                   ) -> tuple[dict[str, Result], dict[str, tuple[Result, Result]],
                              list[tuple[str, str, str, bool | None]]]:
    """Every system in turn, between the two baselines (commits, round trips)."""
    sizes, say = run.sizes, run.say
    await _open_raw(run)
    start = await _commit_baseline(run.dsns["raw"], sizes.commits)
    say(_commit_line("start", start))
    trips = {"start": await _round_trips(run.dsns["raw"], sizes.commits)}
    say(_round_trip_line("start", *trips["start"]))
    say(f"filling {sizes.memories:,} memories and {sizes.sessions} sessions of "
        f"{sizes.events_per_session} events in each system")
    await _open_memkit(run)
    if not writers_only:
        await _open_langgraph(run, missing.get("langgraph"))
        await _open_adk(run, missing.get("adk"))
        say("point reads, single writes, prefix search")
        await _memory_ops(run)
        say("sessions: create, append, read")
        await _session_ops(run)
    say(f"1 and {sizes.writers} concurrent writers")
    await _writers(run)
    knn_targets = []
    if knn is not None:
        say("KNN")
        knn_targets = await _knn(run, knn)
    end = await _commit_baseline(run.dsns["raw"], sizes.commits)
    trips["end"] = await _round_trips(run.dsns["raw"], sizes.commits)
    return {"start": start, "end": end}, trips, knn_targets
