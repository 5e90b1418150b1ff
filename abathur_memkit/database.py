"""The async ``Database``: connections, PRAGMAs, migrations and maintenance.

One writer connection per ``Database``; file databases get reader connections
too, so reads go on while a write transaction is open (WAL). Each aiosqlite
connection owns a worker thread. A whole transaction runs as one function in
the writer's thread (``write``), so statements of concurrent asyncio tasks can
never interleave inside another task's transaction, and a write costs one
thread hop instead of one per statement.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from . import schema
from .driver import Driver, load_extension, select_driver
from .errors import DatabaseFileError, InvalidInputError, MemkitError
from .inputs import require_bool, require_int, show
from .metrics import LatencyRecorder

if TYPE_CHECKING:
    from types import TracebackType

    from .agents import AgentService
    from .audit import AuditService
    from .checkpoints import CheckpointService
    from .documents import DocumentIndexService
    from .embeddings import Embedder
    from .memory import MemoryService
    from .metrics import MetricsService
    from .search import SearchService
    from .sessions import SessionService
    from .tasks import TaskService

__all__ = ["PRAGMAS", "Database"]

T = TypeVar("T")

#: Set on every connection memkit opens (journal_mode only on file databases).
PRAGMAS = {
    "busy_timeout": 5000,
    "journal_mode": "wal",
    "synchronous": 1,  # NORMAL
    "foreign_keys": 1,
    "wal_autocheckpoint": 1000,
}

#: Bytes the WAL file is truncated back to after a checkpoint.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

# How long write() keeps retrying BEGIN IMMEDIATE when another process holds
# the write lock past busy_timeout; callers should not see "database is locked".
_LOCK_RETRY_SECONDS = 60.0


class Database:
    """An abathur-memkit database: ``async with Database("agents.db") as db: ...``."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        driver: str | None = None,
        readers: int = 2,
        extensions: Sequence[str] = (),
        embedder: str | Embedder | None = None,
        vector_backend: str = "vec",
        record_metrics: bool = False,
    ) -> None:
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise InvalidInputError(f"Database path must be a str or os.PathLike, not {path!r}")
        self.path = os.fspath(path)
        if not self.path:
            raise InvalidInputError("Database path is empty; use ':memory:' for a memory database")
        if "\x00" in self.path:
            raise InvalidInputError("Database path contains a NUL character")
        if driver is not None and not isinstance(driver, str):
            raise InvalidInputError(f"Invalid driver: {show(driver)} (expected a name or None)")
        if isinstance(extensions, str | bytes) or not isinstance(extensions, Sequence):
            raise InvalidInputError(
                f"Invalid extensions: {show(extensions)} (expected a list of names, e.g. ['vec'])"
            )
        readers = require_int(readers, "readers", minimum=0)
        self.in_memory = self.path == ":memory:"
        self.driver: Driver = select_driver(driver)
        if vector_backend not in ("vec", "vss"):
            raise InvalidInputError(
                f"Invalid vector_backend: {vector_backend!r} (choose 'vec' or 'vss')"
            )
        self.vector_backend = vector_backend
        # Vector search needs its extension on every connection, readers included.
        if embedder is not None and vector_backend not in extensions:
            extensions = (*extensions, vector_backend)
        self.extensions = tuple(extensions)
        self._embedder_spec = embedder
        self._embedder: Embedder | None = None
        self._n_readers = 0 if self.in_memory else max(1, readers)
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._readers_lock = asyncio.Lock()
        # Hooks to install on every connection, including readers opened later.
        self._trace: Callable[[str], object] | None = None
        self._progress: tuple[Callable[[], int], int] | None = None
        self._next_reader = itertools.count()
        self._init_lock = asyncio.Lock()
        self._services: dict[str, Any] = {}
        # Per-operation latency samples for the metrics table, buffered.
        record = require_bool(record_metrics, "record_metrics")
        self._latency = LatencyRecorder() if record else None

    def __repr__(self) -> str:
        return f"<Database {self.path!r} driver={self.driver.name}>"

    # -- services (created on first use, one each per Database) --------------

    def _service(self, module: str, name: str) -> Any:
        service = self._services.get(name)
        if service is None:
            import importlib

            cls = getattr(importlib.import_module(f"{__package__}.{module}"), name)
            service = self._services[name] = cls(self)
        return service

    @property
    def sessions(self) -> SessionService:
        return self._service("sessions", "SessionService")  # type: ignore[no-any-return]

    @property
    def memory(self) -> MemoryService:
        return self._service("memory", "MemoryService")  # type: ignore[no-any-return]

    @property
    def tasks(self) -> TaskService:
        return self._service("tasks", "TaskService")  # type: ignore[no-any-return]

    @property
    def agents(self) -> AgentService:
        return self._service("agents", "AgentService")  # type: ignore[no-any-return]

    @property
    def checkpoints(self) -> CheckpointService:
        return self._service("checkpoints", "CheckpointService")  # type: ignore[no-any-return]

    @property
    def audit(self) -> AuditService:
        return self._service("audit", "AuditService")  # type: ignore[no-any-return]

    @property
    def documents(self) -> DocumentIndexService:
        return self._service("documents", "DocumentIndexService")  # type: ignore[no-any-return]

    @property
    def search(self) -> SearchService:
        return self._service("search", "SearchService")  # type: ignore[no-any-return]

    @property
    def has_embedder(self) -> bool:
        """Whether ``Database(..., embedder=...)`` configured one (nothing is loaded)."""
        return self._embedder_spec is not None

    @property
    def embedder(self) -> Embedder:
        """The embedder named by ``Database(..., embedder=...)``, created on first use."""
        if self._embedder is None:
            if self._embedder_spec is None:
                raise MemkitError(
                    "no embedder configured: use Database(path, embedder='default') "
                    "(offline MiniLM), 'ollama', 'hashing' or an Embedder instance"
                )
            from .embeddings import get_embedder

            self._embedder = get_embedder(self._embedder_spec)
        return self._embedder

    @property
    def metrics(self) -> MetricsService:
        return self._service("metrics", "MetricsService")  # type: ignore[no-any-return]

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Database:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def initialize(self) -> list[int]:
        """Open, configure and migrate; return the schema versions applied.

        Idempotent: a second call (or another process) applies nothing.
        """
        async with self._init_lock:
            if self._writer is None and not self.in_memory:
                parent = Path(self.path).parent
                if not parent.is_dir():
                    raise DatabaseFileError(
                        f"cannot create {self.path}: directory {parent} does not exist"
                    )
            try:
                applied: list[int]
                if self._writer is None:
                    # Open and migrate in one thread hop; a bad file fails here,
                    # before aiosqlite (which leaves a stray future behind when
                    # its connector raises) is involved.
                    raw, applied = await asyncio.to_thread(self._open_and_migrate)
                    self._writer = await aiosqlite.Connection(lambda: raw, iter_chunk_size=64)
                else:
                    applied = await self._call(
                        self._writer, schema.migrate, self._writer_conn(), self._memory_connection
                    )
            except BaseException:
                await self.close()
                raise
            return applied

    async def close(self) -> None:
        """Close every connection; the Database can be initialized again."""
        if self._latency is not None and self._writer is not None:
            await self._latency.flush(self)
        connections = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers, self._writer = [], None
        for conn in connections:
            await conn.close()

    def _memory_connection(self) -> sqlite3.Connection:
        return self.driver.connect(":memory:")

    def _open(self) -> sqlite3.Connection:
        """Open one configured connection (runs in the connection's thread)."""
        try:
            conn = self.driver.connect(self.path)
        except Exception as exc:
            raise DatabaseFileError(f"cannot open {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {PRAGMAS['busy_timeout']}")
            if not self.in_memory:
                # Switching to WAL needs an exclusive lock and, unlike most
                # statements, does not always wait on busy_timeout.
                mode = _retry_locked(lambda: _use_wal(conn), self.driver.module.OperationalError)
                if str(mode).lower() != "wal":
                    raise DatabaseFileError(f"{self.path}: cannot use WAL (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous = {PRAGMAS['synchronous']}")
            conn.execute(f"PRAGMA foreign_keys = {PRAGMAS['foreign_keys']}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {PRAGMAS['wal_autocheckpoint']}")
            # A long read can hold off checkpoints and grow the WAL to hundreds of MB;
            # without a limit the file never shrinks back after it.
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            for name in self.extensions:
                load_extension(conn, name)
        except (self.driver.module.DatabaseError, UnicodeDecodeError) as exc:
            # UnicodeDecodeError: a damaged schema whose error text is not UTF-8.
            conn.close()
            raise DatabaseFileError(
                f"{self.path} is not a usable SQLite database: {exc}"
            ) from exc
        except BaseException:
            conn.close()
            raise
        conn.row_factory = self.driver.module.Row
        if self._trace is not None:
            conn.set_trace_callback(self._trace)
        if self._progress is not None:
            conn.set_progress_handler(*self._progress)
        return conn

    def _open_and_migrate(self) -> tuple[sqlite3.Connection, list[int]]:
        conn = self._open()
        try:
            return conn, schema.migrate(conn, self._memory_connection)
        except BaseException:
            conn.close()
            raise

    async def _connect(self) -> aiosqlite.Connection:
        # Readers open after the writer has proved the file, on aiosqlite's thread.
        return await aiosqlite.Connection(self._open, iter_chunk_size=64)

    # -- running code on a connection's thread -------------------------------

    def _writer_conn(self) -> Any:
        if self._writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        return self._writer._conn

    async def _call(
        self, conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any
    ) -> T:
        # aiosqlite runs queued functions one by one on the connection's
        # thread; queueing a whole function is the one-hop path.
        try:
            result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
        except self.driver.module.DatabaseError as exc:
            # Corruption can surface at any read, long after the file opened.
            if _is_corrupt(exc):
                raise DatabaseFileError(
                    f"{self.path} is not a usable SQLite database: {exc}"
                ) from exc
            if "Could not decode to UTF-8" in str(exc):
                raise DatabaseFileError(_NOT_UTF8.format(self.path, exc)) from exc
            raise
        except UnicodeDecodeError as exc:
            raise DatabaseFileError(_NOT_UTF8.format(self.path, exc)) from exc
        return result

    async def _reader(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        if self._n_readers == 0:
            return self._writer
        if not self._readers:
            # Opened on the first read, not in initialize(): a database that
            # only writes (or a test fixture) never pays for them.
            async with self._readers_lock:
                if not self._readers:
                    opened = await asyncio.gather(
                        *(self._connect() for _ in range(self._n_readers))
                    )
                    self._readers = list(opened)
        return self._readers[next(self._next_reader) % len(self._readers)]

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """Run ``fn(conn)`` on a reader connection's thread and return its result.

        With ``snapshot=True`` it runs inside one read transaction, so every
        statement sees the same committed state.
        """
        reader = await self._reader()
        started = time.perf_counter()
        if not snapshot:
            result = await self._call(reader, fn, reader._conn)
        else:
            result = await self._call(reader, _in_read_txn, reader._conn, fn)
        if self._latency is not None:
            await self._latency.record(self, fn, started)
        return result

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction on the writer.

        Commits when ``fn`` returns, rolls back when it raises (any exception),
        and passes the exception on. Constraint failures that ``fn`` did not
        catch become ``InvalidInputError``. This is the one transaction helper
        every service uses.
        """
        writer = self._writer
        if writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        started = time.perf_counter()
        result: T = await self._call(writer, self._in_write_txn, writer._conn, fn)
        if self._latency is not None:
            await self._latency.record(self, fn, started)
        return result

    def _in_write_txn(self, conn: Any, fn: Callable[[Any], T]) -> T:
        _begin_immediate(conn, self.driver.module.OperationalError)
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except self.driver.module.IntegrityError as exc:
            _rollback(conn)
            raise InvalidInputError(f"Rejected by a database constraint: {exc}") from exc
        except BaseException:
            _rollback(conn)
            raise
        return result

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a query on a reader; rows as plain dicts."""
        return await self.read(lambda conn: [dict(r) for r in conn.execute(sql, params)])

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        def one(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(sql, params).fetchone()
            return dict(row) if row is not None else None

        return await self.read(one)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; return rows changed."""
        return await self.write(lambda conn: int(conn.execute(sql, params).rowcount))

    async def _each_connection(self, fn: Callable[[aiosqlite.Connection], Awaitable[None]]) -> None:
        for conn in [*([self._writer] if self._writer else []), *self._readers]:
            await fn(conn)

    async def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """Install a trace callback (called with each SQL text) on every connection."""
        self._trace = callback
        await self._each_connection(
            lambda c: c.set_trace_callback(callback)  # type: ignore[arg-type]
        )

    async def set_progress_handler(self, handler: Callable[[], int] | None, n: int) -> None:
        """Install a progress handler (every ``n`` VM steps) on every connection."""
        self._progress = None if handler is None else (handler, n)
        await self._each_connection(
            lambda c: c.set_progress_handler(handler, n)  # type: ignore[arg-type]
        )

    # -- inspection ----------------------------------------------------------

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row["user_version"]) if row else 0

    async def pragmas(self) -> dict[str, Any]:
        """The PRAGMAs of SPEC §2 as a reader connection sees them."""

        def read(conn: Any) -> dict[str, Any]:
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in PRAGMAS}

        return await self.read(read)

    async def explain_query_plan(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        """``EXPLAIN QUERY PLAN`` details, indented two spaces per tree level."""
        rows = await self.query_plan(sql, params)
        depth: dict[int, int] = {0: -1}
        lines = []
        for node, parent, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        return lines

    async def query_plan(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[int, int, str]]:
        """Raw ``EXPLAIN QUERY PLAN`` rows as ``(id, parent, detail)``."""
        rows = await self.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
        return [(int(r["id"]), int(r["parent"]), str(r["detail"])) for r in rows]

    async def validate_foreign_keys(self) -> list[dict[str, Any]]:
        """``PRAGMA foreign_key_check``: one dict per violation (empty when sound)."""
        return await self.fetchall("PRAGMA foreign_key_check")

    async def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check``: ``["ok"]`` when the file is sound."""
        rows = await self.read(lambda conn: conn.execute("PRAGMA integrity_check").fetchall())
        return [str(r[0]) for r in rows]

    async def get_index_usage(self) -> dict[str, Any]:
        """The explicit (named) indexes: count, names, and names per table."""
        rows = await self.fetchall(
            "SELECT name, tbl_name, sql FROM sqlite_master "
            "WHERE type = 'index' AND sql IS NOT NULL ORDER BY tbl_name, name"
        )
        by_table: dict[str, list[str]] = {}
        for row in rows:
            by_table.setdefault(row["tbl_name"], []).append(row["name"])
        return {
            "index_count": len(rows),
            "indexes": [r["name"] for r in rows],
            "by_table": by_table,
            "partial": [r["name"] for r in rows if " WHERE " in r["sql"].upper()],
        }

    async def validate(self) -> dict[str, Any]:
        """The seeds' checks as a JSON-serializable report: ``{"ok", "checks"}``."""
        from .validation import run_checks

        return await run_checks(self)

    # -- maintenance ---------------------------------------------------------

    async def checkpoint(self, mode: str = "TRUNCATE") -> dict[str, int]:
        """Checkpoint the WAL into the database file."""
        modes = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")
        if not isinstance(mode, str) or mode.upper() not in modes:
            raise InvalidInputError(
                f"Invalid checkpoint mode: {show(mode)} (expected one of {', '.join(modes)})"
            )
        mode = mode.upper()
        writer = self._writer
        if writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        row = await self._call(
            writer, lambda c: c.execute(f"PRAGMA wal_checkpoint({mode})").fetchone(), writer._conn
        )
        return {"busy": int(row[0]), "log_frames": int(row[1]), "checkpointed": int(row[2])}

    async def analyze(self) -> None:
        """Refresh the query planner's statistics (``ANALYZE``)."""
        await self.write(lambda conn: conn.execute("ANALYZE"))

    async def vacuum(self) -> None:
        """Rebuild the file, returning free pages to the filesystem."""
        writer = self._writer
        if writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        await self._call(writer, lambda c: c.execute("VACUUM"), writer._conn)

    async def backup(
        self,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Callable[[int, int, int], object] | None = None,
    ) -> Path:
        """Copy the database to ``dest`` with SQLite's online backup API.

        The copy is one consistent snapshot even while writers run: it is taken
        in a single step inside one read transaction of a reader connection.
        """
        target = Path(os.fspath(dest))
        if not self.in_memory and target.resolve() == Path(self.path).resolve():
            raise InvalidInputError(f"Backup destination is the database itself: {target}")
        if target.exists() and target.stat().st_size > 0 and not overwrite:
            raise InvalidInputError(f"Backup destination exists: {target} (pass overwrite=True)")
        if not target.parent.is_dir():
            raise InvalidInputError(f"Backup directory does not exist: {target.parent}")

        def copy(conn: Any) -> None:
            dst = self.driver.connect(str(target))
            try:
                conn.backup(dst, pages=-1, progress=progress)
            finally:
                dst.close()

        reader = await self._reader()
        await self._call(reader, copy, reader._conn)
        return target


def _retry_locked(fn: Callable[[], T], operational_error: type[Exception]) -> T:
    """Run ``fn``, retried with jitter while another connection holds a lock."""
    deadline = time.monotonic() + _LOCK_RETRY_SECONDS
    while True:
        try:
            return fn()
        except operational_error as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise MemkitError(
                    f"could not take the lock in {_LOCK_RETRY_SECONDS:.0f} s: {exc}"
                ) from exc
            time.sleep(random.uniform(0.001, 0.02))


def _use_wal(conn: Any) -> str:
    """Switch to WAL unless the file is in WAL already (reading is ~4x cheaper)."""
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    if mode.lower() == "wal":
        return mode
    return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])


_NOT_UTF8 = "{} holds text that is not UTF-8 (damaged, or written by another tool): {}"

# SQLITE_CORRUPT and SQLITE_NOTADB (primary result codes).
_CORRUPT_CODES = (11, 26)


def _is_corrupt(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _CORRUPT_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _begin_immediate(conn: Any, operational_error: type[Exception]) -> None:
    _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"), operational_error)


def _rollback(conn: Any) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _in_read_txn(conn: Any, fn: Callable[[Any], T]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")
