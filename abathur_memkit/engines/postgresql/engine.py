"""The PostgreSQL engine: a pool of psycopg connections behind ``engines.interface.Engine``.

A service's function runs whole on one pooled connection, in a worker thread:
one thread hop per transaction however many statements it runs, as on the
SQLite engine, and a service's function stays synchronous, the same code on
both engines. A read or write given as ``Statements`` skips the hop: it is
sent from the event loop on an async connection (``loop_statements``), all its
statements in one round trip. Otherwise a write's statements are pipelined:
each waits for the server only when its rows or its row count are read, so a
write costs a round trip per result it reads, plus its COMMIT. Connections are
read-only by default (``default_transaction_read_only``): a read that tries to
write fails, and ``write`` opens its transaction ``READ WRITE`` (a write of one
statement sent from the event loop goes on a connection set to read-write,
alone or group-committed with others: see ``loop_statements``).

``write`` runs ``fn`` in one transaction. A serialization failure or a
deadlock rolls it back and runs ``fn`` again (bounded, with jitter), and so
does a connection lost before COMMIT; ``fn`` must therefore only act through
its connection. A connection lost during COMMIT is reported, never retried:
the write may have been applied. Driver errors reach the caller as
``MemkitError`` subclasses (a constraint or a bad value: ``InvalidInputError``),
the transaction rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from ...errors import InvalidInputError, MemkitError, SchemaError
from ...inputs import require_bool, require_int, require_text, show
from ..interface import CallObserver, Connection, Params, Statements
from . import schema
from .connection import SESSION_SETTINGS, PgConnection, PgCursor, Row, configure, row_factory
from .errors import RETRY, conflicts, lost_during_commit, retry_delay, translate
from .loop_statements import LoopStatements

if TYPE_CHECKING:
    from types import TracebackType

    from ..interface import Engine

__all__ = ["ISOLATION_LEVELS", "PostgreSQLEngine", "plan_rows"]

T = TypeVar("T")

#: The isolation levels ``write`` can run at.
ISOLATION_LEVELS = ("read committed", "repeatable read", "serializable")

# The notice COMMIT gets when no transaction is open.
_NO_TRANSACTION = "25P01"



class PostgreSQLEngine:
    """One PostgreSQL database, named by a DSN: ``await engine.initialize()``."""

    #: The engine's SQL dialect.
    dialect = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 8,
        read_only: bool = False,
        migrate: bool = True,
        isolation: str = "read committed",
        retries: int = 5,
        timeout: float = 30.0,
        observer: CallObserver | None = None,
        group_commit: bool = True,
    ) -> None:
        #: The DSN as given (``postgresql://user@host/db`` or ``key=value`` pairs).
        self.path = require_text(dsn, "dsn", max_length=None)
        try:
            self._where = _display(self.path)
        except psycopg.ProgrammingError as exc:
            raise InvalidInputError(f"Invalid dsn: {exc}") from exc
        self.pool_size = require_int(pool_size, "pool_size", minimum=1)
        if isolation not in ISOLATION_LEVELS:
            expected = ", ".join(ISOLATION_LEVELS)
            raise InvalidInputError(f"Invalid isolation: {show(isolation)} (expected {expected})")
        self.isolation = isolation
        self._begin_write = f"BEGIN ISOLATION LEVEL {isolation.upper()} READ WRITE"
        #: How many times a write is run again after a serialization failure,
        #: a deadlock or a lost connection.
        self.retries = require_int(retries, "retries", minimum=0)
        self.timeout = float(timeout)
        #: Writes refused, no migration.
        self.read_only = bool(read_only)
        #: Whether writes of one statement that arrive together share one
        #: transaction (see ``loop_statements``).
        self.group_commit = require_bool(group_commit, "group_commit")
        self._migrate = bool(migrate) and not self.read_only
        self._pool: ConnectionPool[psycopg.Connection[Row]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Statements reads and writes from the event loop (loop_statements): no thread hop.
        self._loop: LoopStatements | None = None
        self._init_lock = asyncio.Lock()
        #: Told of every read and write and how long it took (e.g. latency metrics).
        self.observer = observer

    def __repr__(self) -> str:
        return f"PostgreSQLEngine({self._where!r})"

    async def __aenter__(self) -> PostgreSQLEngine:
        await self.initialize()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- lifecycle ---------------------------------------------------------

    async def initialize(self) -> list[int]:
        """Connect, migrate (unless read-only or ``migrate=False``) and open the pool."""
        async with self._init_lock:
            if self._pool is not None:
                return []
            applied = await asyncio.to_thread(self._prepare_schema)
            self._pool = await asyncio.to_thread(self._open_pool)
            self._executor = ThreadPoolExecutor(self.pool_size, thread_name_prefix="memkit-pg")
            self._loop = LoopStatements(self.path, size=self.pool_size, timeout=self.timeout,
                                        retries=self.retries, where=self._where,
                                        isolation=self.isolation)
            return applied

    def _prepare_schema(self) -> list[int]:
        try:
            with psycopg.connect(self.path, autocommit=True,
                                 connect_timeout=max(1, round(self.timeout))) as raw:
                if self._migrate:
                    return schema.migrate(raw)
                found = schema.current_version(raw)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        if found != schema.schema_version():
            raise SchemaError(
                f"{self._where} is not an up-to-date memkit database (schema version {found}, "
                f"expected {schema.schema_version()}); open it with migrate=True"
            )
        return []

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[Row]]:
        pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            self.path,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True, "row_factory": row_factory, "cursor_factory": PgCursor},
            configure=_configure,
            timeout=self.timeout,
            name="memkit",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=self.timeout)
        except PoolTimeout as exc:
            pool.close()
            raise MemkitError(f"cannot connect to {self._where}: {exc}") from exc
        return pool

    async def close(self) -> None:
        """Let the calls already running finish, then close every connection."""
        if self.observer is not None and self._pool is not None and not self.read_only:
            await self.observer.flush(self)
        if self._loop is not None:
            await self._loop.drained()  # the writes queued for a group commit first
        pool, executor, loop = self._pool, self._executor, self._loop
        self._pool = self._executor = self._loop = None
        if loop is not None:
            loop.close()
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        if pool is not None:
            await asyncio.to_thread(pool.close)

    # -- Store -------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """Run ``fn(conn)`` on a pooled connection; ``snapshot`` runs it in one
        ``REPEATABLE READ`` read-only transaction, so every statement sees the
        same committed state."""
        _require_callable(fn)
        started = time.perf_counter()
        if isinstance(fn, Statements) and (loop := self._on_this_loop()) is not None:
            result = cast(T, await loop.read(fn, snapshot))
        else:
            result = await self._submit(self._read_call, fn, snapshot)
        if self.observer is not None:
            await self.observer.record(self, fn, started)
        return result

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction: commit when it returns, roll back if it raises."""
        _require_callable(fn)
        if self.read_only:
            raise MemkitError(f"{self._where} is open read-only: writes are not allowed")
        started = time.perf_counter()
        if isinstance(fn, Statements) and (loop := self._on_this_loop()) is not None:
            result = cast(T, await loop.write(fn, self._begin_write, group=self.group_commit))
        else:
            result = await self._submit(self._write_call, fn)
        if self.observer is not None:
            await self.observer.record(self, fn, started)
        return result

    def _on_this_loop(self) -> LoopStatements | None:
        """The event-loop path, if it serves the running loop."""
        loop = self._loop
        return loop if loop is not None and loop.serves(asyncio.get_running_loop()) else None

    async def _submit(self, call: Callable[..., T], *args: Any) -> T:
        pool, executor = self._pool, self._executor
        if pool is None or executor is None:
            raise MemkitError("the engine is not initialized: await engine.initialize() first")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(call, pool, *args))

    def _read_call(
        self, pool: ConnectionPool[psycopg.Connection[Row]], fn: Callable[[Connection], T],
        snapshot: bool,
    ) -> T:
        return self._attempts(pool, lambda raw: _in_read(raw, fn, snapshot))

    def _write_call(
        self, pool: ConnectionPool[psycopg.Connection[Row]], fn: Callable[[Connection], T]
    ) -> T:
        try:
            return self._attempts(pool, lambda raw: self._in_write(raw, fn, pipelined=True))
        except InvalidInputError as exc:
            if not isinstance(exc.__cause__, pg_errors.SyntaxError):
                raise
        # Also what a script of several statements gets in a pipeline: run it
        # again without one (a real syntax error fails again, as itself).
        return self._attempts(pool, lambda raw: self._in_write(raw, fn, pipelined=False))

    def _attempts(
        self, pool: ConnectionPool[psycopg.Connection[Row]],
        txn: Callable[[psycopg.Connection[Row]], T],
    ) -> T:
        """Run ``txn`` on a pooled connection, again after a conflict or a lost connection."""
        for attempt in range(self.retries + 1):
            try:
                raw = pool.getconn()
            except PoolTimeout as exc:
                raise self._error(exc) from exc
            try:
                return txn(raw)
            except RETRY as exc:
                if attempt == self.retries:
                    raise conflicts(self._where, attempt + 1, exc) from exc
            except psycopg.Error as exc:
                if not (raw.broken and attempt < self.retries):  # lost, not closed by us
                    raise self._error(exc) from exc
            finally:
                pool.putconn(raw)
            time.sleep(retry_delay(attempt))
        raise AssertionError("unreachable")

    def _in_write(self, raw: psycopg.Connection[Row], fn: Callable[[Connection], T],
                  *, pipelined: bool) -> T:
        # Pipelined, BEGIN goes with fn's first statement, a statement whose
        # result fn never reads goes with the next one it does, and COMMIT with
        # the last: an error surfaces where fn next reads, or at COMMIT.
        ended: list[str] = []

        def notice(diagnostic: psycopg.errors.Diagnostic) -> None:
            if diagnostic.sqlstate == _NO_TRANSACTION:
                ended.append(str(diagnostic.message_primary))

        committing = False
        raw.add_notice_handler(notice)
        try:
            with raw.pipeline() if pipelined else contextlib.nullcontext():
                raw.execute(self._begin_write)
                result = fn(PgConnection(raw))
                if raw.info.transaction_status == pq.TransactionStatus.INERROR:
                    raise pg_errors.PipelineAborted("the transaction is aborted")
                committing = True
                raw.execute("COMMIT")
        except pg_errors.PipelineAborted as exc:
            _recover(raw, pipelined, exc)
            raise MemkitError(
                "a statement of this write failed and the write function carried on; "
                "PostgreSQL rolled the whole transaction back"
            ) from exc
        except psycopg.OperationalError as exc:
            if committing and _lost(raw):
                raise lost_during_commit(self._where) from exc
            _recover(raw, pipelined, exc)
            raise
        except BaseException as exc:
            _recover(raw, pipelined, exc)
            raise
        finally:
            raw.remove_notice_handler(notice)
        if ended:
            raise MemkitError(
                "a write function ended its own transaction (COMMIT or ROLLBACK inside write): "
                "what it ran after that was committed statement by statement"
            )
        return result

    def _error(self, exc: Exception) -> MemkitError:
        return translate(exc, self._where, self.timeout)

    # -- schema and maintenance -------------------------------------------

    async def schema_version(self) -> int:
        """The version of the newest migration applied."""
        return await self.read(lambda conn: schema.current_version(conn))

    async def integrity_check(self) -> list[str]:
        """``["ok"]`` when the database is sound, else one line per problem.

        PostgreSQL checks its own pages; what can go wrong in a memkit
        database is a missing table, an index left invalid (a failed
        ``CREATE INDEX CONCURRENTLY``) or a constraint added ``NOT VALID``.
        With the ``amcheck`` extension installed, every B-tree index is
        verified too.
        """
        return await self.read(_problems, snapshot=True) or ["ok"]

    async def query_plan(self, sql: str, params: Params = ()) -> list[tuple[int, int, str]]:
        """The plan of ``sql`` from ``EXPLAIN (FORMAT JSON)``, as ``(id, parent, detail)`` rows.

        ``detail`` reads as in PostgreSQL's text plans: ``Index Scan using
        idx_x on t``, ``Bitmap Index Scan on idx_x``, ``Seq Scan on t``, with
        the index condition, if any, after it: ``(Index Cond: (id = 1))``.
        """
        require_text(sql, "sql", max_length=None)
        return await self.read(lambda conn: plan_rows(conn, sql, params))


def plan_rows(conn: Connection, sql: str, params: Params = ()) -> list[tuple[int, int, str]]:
    """``EXPLAIN (FORMAT JSON)`` of ``sql`` on ``conn``, flattened to ``(id, parent, detail)``."""
    text = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
    plan = (json.loads(text) if isinstance(text, str) else text)[0]["Plan"]
    rows: list[tuple[int, int, str]] = []
    stack: list[tuple[dict[str, Any], int]] = [(plan, 0)]
    while stack:
        node, parent = stack.pop()
        rows.append((len(rows) + 1, parent, _detail(node)))
        node_id = len(rows)
        stack.extend((child, node_id) for child in reversed(node.get("Plans", [])))
    return rows


def _detail(node: dict[str, Any]) -> str:
    kind = str(node["Node Type"])
    index, relation = node.get("Index Name"), node.get("Relation Name")
    # Without a condition an index scan reads every entry (an ORDER BY or a
    # count): the condition tells a search from a walk of the whole index.
    cond = f" (Index Cond: {node['Index Cond']})" if node.get("Index Cond") else ""
    if kind == "Bitmap Index Scan":
        return f"{kind} on {index}{cond}"
    text = kind
    if index:
        text += f" using {index}"
    if relation:
        text += f" on {relation}"
    return text + cond


def _problems(conn: Connection) -> list[str]:
    problems = [f"table {name} is missing" for name in schema.tables()
                if conn.execute("SELECT to_regclass(?)", (name,)).fetchone()[0] is None]
    problems += [
        f"index {r[0]} is not valid: REINDEX INDEX {r[0]}"
        for r in conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace"
        )
    ]
    problems += [
        f"constraint {r[0]} on {r[1]} is not validated"
        for r in conn.execute(
            "SELECT conname, conrelid::regclass::text FROM pg_constraint "
            "WHERE NOT convalidated AND connamespace = current_schema()::regnamespace"
        )
    ]
    amcheck = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone()
    if amcheck:
        problems += _btree_problems(conn)
    return problems


def _btree_problems(conn: Connection) -> list[str]:
    problems = []
    indexes = conn.execute(
        "SELECT c.oid, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND i.indisvalid "
        "AND c.relnamespace = current_schema()::regnamespace"
    ).fetchall()
    for oid, name in indexes:
        try:
            conn.execute("SELECT bt_index_check(?::regclass)", (oid,))
        except psycopg.errors.IndexCorrupted as exc:
            problems.append(f"index {name}: {exc}")
    return problems


def _configure(raw: psycopg.Connection[Any]) -> None:
    """Set up a new pooled connection (once per connection)."""
    configure(raw)
    raw.execute(SESSION_SETTINGS)
    row = raw.execute("SELECT to_regtype('vector') IS NOT NULL").fetchone()
    if row is not None and row[0]:
        from pgvector.psycopg import register_vector

        register_vector(raw)


def _in_read(raw: psycopg.Connection[Row], fn: Callable[[Connection], T], snapshot: bool) -> T:
    if snapshot:
        raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        return fn(PgConnection(raw))
    finally:
        # Ends the snapshot (or a transaction fn began): a read has nothing to commit.
        _rollback(raw)


def _rollback(raw: psycopg.Connection[Any]) -> None:
    if _lost(raw) or raw.info.transaction_status == pq.TransactionStatus.IDLE:
        return
    raw.execute("ROLLBACK")


def _recover(raw: psycopg.Connection[Any], pipelined: bool, exc: BaseException) -> None:
    """Roll back a failed write; close the connection if the server failed a pipeline.

    Statements queued behind the one that failed were skipped, the PREPARE of
    one among them too, which psycopg may have recorded as done: the pool
    replaces the connection rather than let a later write meet that name.
    """
    if pipelined and isinstance(exc, psycopg.Error) and not _lost(raw):
        raw.close()
        return
    _rollback(raw)


def _lost(raw: psycopg.Connection[Any]) -> bool:
    return raw.closed or raw.broken


def _display(dsn: str) -> str:
    """The DSN without its password, for messages."""
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    return make_conninfo("", **params)


def _require_callable(fn: object) -> None:
    if not callable(fn):
        raise InvalidInputError(f"Expected a function of the connection, got {show(fn)}")


if TYPE_CHECKING:

    def _is_an_engine(engine: PostgreSQLEngine) -> Engine:
        return engine  # mypy checks the class against the Protocol here
