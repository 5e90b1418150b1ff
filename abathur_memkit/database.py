"""``Database``: the one object an application holds.

It builds the engine and the services once, with their settings (embedder,
vector backend, write policy, latency metrics), and hands each service the
engine as a ``Store``. Everything else is a delegation: connections,
transactions and maintenance are the engine's, the seed API is the services'.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from . import rows
from .agents import AgentService
from .audit import AuditService
from .checkpoints import CheckpointService
from .engines.interface import AsyncOpen, Connection
from .engines.sqlite import validation
from .engines.sqlite.driver import Driver
from .engines.sqlite.engine import SQLiteEngine
from .errors import InvalidInputError, MemkitError
from .extras import require_extra
from .inputs import DEFAULT_VECTOR_BACKEND, require_bool, require_vector_backend
from .memory import MemoryService
from .metrics import LatencyRecorder, MetricsService
from .namespaces import WritePolicy
from .search.settings import SearchSettings
from .sessions import SessionService
from .tasks import TaskService

if TYPE_CHECKING:

    import aiosqlite

    from .embeddings import Embedder
    from .engines.postgresql import PostgreSQLEngine
    from .search import SearchService
    from .search.documents import DocumentIndexService

__all__ = ["Database"]

T = TypeVar("T")


class Database(AsyncOpen):
    """An abathur-memkit database: ``async with Database("agents.db") as db: ...``."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        driver: str | None = None,
        readers: int = 2,
        extensions: Sequence[str] = (),
        embedder: str | Embedder | None = None,
        vector_backend: str | None = None,
        read_only: bool = False,
        migrate: bool = True,
        write_policy: bool = False,
        group_commit: bool = True,
        record_metrics: bool = False,
    ) -> None:
        #: Whether ``db.memory`` enforces the write policy (see ``WritePolicy``).
        self.write_policy = require_bool(write_policy, "write_policy")
        record = require_bool(record_metrics, "record_metrics")
        observer = LatencyRecorder() if record else None
        self._engine: SQLiteEngine | PostgreSQLEngine
        _refuse_keyword_dsn(path)
        if is_dsn(path):
            self._engine = _postgresql(path, driver=driver, extensions=extensions,
                                       read_only=read_only, migrate=migrate,
                                       group_commit=group_commit, observer=observer)
        else:
            self._engine = SQLiteEngine(
                path, driver=driver, readers=readers, extensions=extensions,
                read_only=read_only, migrate=migrate, group_commit=group_commit,
                observer=observer,
            )
        #: The embedder and vector backend, handed to the search services.
        self.search_settings = self._search_settings(embedder, vector_backend)
        if isinstance(self._engine, SQLiteEngine):  # not open yet: loaded as connections open
            self._engine.extensions = self.search_settings.extensions
        engine = self._engine
        self.sessions = SessionService(engine)
        self.memory = MemoryService(engine, policy=WritePolicy(enforce=self.write_policy))
        self.tasks = TaskService(engine)
        self.agents = AgentService(engine)
        self.checkpoints = CheckpointService(engine)
        self.audit = AuditService(engine)
        self.metrics = MetricsService(engine)
        # Built on first use: search loads numpy, which a core install lacks.
        self._documents: DocumentIndexService | None = None
        self._search: SearchService | None = None

    def _search_settings(
        self, embedder: str | Embedder | None, vector_backend: str | None
    ) -> SearchSettings:
        dialect = self._engine.dialect
        backend = require_vector_backend(
            DEFAULT_VECTOR_BACKEND[dialect] if vector_backend is None else vector_backend, dialect)
        extensions = self.extensions
        # Vector search needs its extension on every connection, readers included.
        if dialect == "sqlite" and embedder is not None and backend not in extensions:
            extensions = (*extensions, backend)
        settings = SearchSettings(embedder, backend, extensions)
        if embedder is not None:  # a missing extra or a typo fails here, not at first use
            settings.embedder  # noqa: B018
        return settings

    async def use_embedder(
        self, embedder: str | Embedder | None, *, vector_backend: str | None = None
    ) -> None:
        """Choose the embedder (and vector backend) of an open Database.

        For a caller that learns which one to use from the database itself,
        e.g. the model its stored index was built with (``search.vectors.stored_index``),
        without opening it twice. The search services are built again on next use.
        """
        settings = self._search_settings(embedder, vector_backend)
        if isinstance(self._engine, SQLiteEngine):
            for name in settings.extensions:
                await self._engine.load_extension(name)
        self.search_settings = settings
        self._documents = self._search = None

    def __repr__(self) -> str:
        return f"<Database {self._engine!r}>"

    @property
    def documents(self) -> DocumentIndexService:
        """The markdown document index."""
        if self._documents is None:
            from .search import DocumentIndexService

            self._documents = DocumentIndexService(self._engine, self.search_settings)
        return self._documents

    @property
    def search(self) -> SearchService:
        """Vector, keyword and hybrid search over the indexed documents."""
        if self._search is None:
            from .search import SearchService

            self._search = SearchService(self._engine, self.search_settings, self.documents)
        return self._search

    # -- settings --------------------------------------------------------------

    @property
    def dialect(self) -> str:
        """The engine's SQL dialect: "sqlite"."""
        return self._engine.dialect

    @property
    def path(self) -> str:
        """The database file's path (``~`` expanded), or ``":memory:"``."""
        return self._engine.path

    @property
    def driver(self) -> Driver:
        """The SQLite driver in use (``sqlean`` or ``sqlite3``); SQLite only."""
        return self._sqlite("driver").driver

    @property
    def in_memory(self) -> bool:
        return isinstance(self._engine, SQLiteEngine) and self._engine.in_memory

    @property
    def read_only(self) -> bool:
        """Opened without write access (SQLite's mode=ro): writes refused, nothing migrated."""
        return self._engine.read_only

    @property
    def extensions(self) -> tuple[str, ...]:
        """The SQLite extensions loaded on every connection (none on PostgreSQL)."""
        return self._engine.extensions if isinstance(self._engine, SQLiteEngine) else ()

    @property
    def group_commit(self) -> bool:
        """Whether writes that arrive together share one transaction."""
        return self._engine.group_commit

    @group_commit.setter
    def group_commit(self, value: bool) -> None:
        self._engine.group_commit = require_bool(value, "group_commit")

    @property
    def engine(self) -> SQLiteEngine | PostgreSQLEngine:
        """The engine under the services (connections, transactions, maintenance)."""
        return self._engine

    def _sqlite(self, what: str) -> SQLiteEngine:
        """The SQLite engine, for what only SQLite has; a clear error on PostgreSQL."""
        if not isinstance(self._engine, SQLiteEngine):
            raise MemkitError(f"{what} is a SQLite feature; {self.path} is a PostgreSQL database")
        return self._engine

    @property
    def vector_backend(self) -> str:
        """The vector backend the search services use ("vec", "vss" or "pgvector")."""
        return self.search_settings.vector_backend

    @property
    def has_embedder(self) -> bool:
        """Whether ``Database(..., embedder=...)`` configured one (nothing is loaded)."""
        return self.search_settings.has_embedder

    @property
    def embedder(self) -> Embedder:
        """The embedder named by ``Database(..., embedder=...)``, created on first use."""
        return self.search_settings.embedder

    # -- lifecycle -------------------------------------------------------------

    async def initialize(self) -> list[int]:
        """Open, configure and migrate; return the schema versions applied (idempotent).

        With ``read_only=True`` or ``migrate=False`` nothing is created,
        converted or migrated (see ``SQLiteEngine.initialize``).
        """
        return await self._engine.initialize()

    async def close(self) -> None:
        """Close every connection; the Database can be initialized again.

        Writes already waiting for a group-commit transaction run first, then
        the latency samples not yet written (``record_metrics=True``).
        """
        await self._engine.close()

    @property
    def _writer(self) -> aiosqlite.Connection | None:
        return self._engine._writer if isinstance(self._engine, SQLiteEngine) else None

    def _close_at_exit(self) -> None:
        if isinstance(self._engine, SQLiteEngine):
            self._engine._close_at_exit()

    # -- running SQL ------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """Run ``fn(conn)`` on a reader connection's thread and return its result.

        With ``snapshot=True`` it runs inside one read transaction, so every
        statement sees the same committed state.
        """
        return await self._engine.read(fn, snapshot=snapshot)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction on the writer (see ``SQLiteEngine.write``).

        Commits when ``fn`` returns, rolls back when it raises. With group
        commit, writes that arrive together share one transaction, each in its
        own SAVEPOINT, and each returns only after that COMMIT.
        """
        return await self._engine.write(fn)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a query on a reader; rows as plain dicts."""
        if isinstance(self._engine, SQLiteEngine):
            return await self._engine.fetchall(sql, params)
        return await self.read(lambda conn: rows.fetch_all(conn, sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """Run a query on a reader; the first row as a dict, or None."""
        if isinstance(self._engine, SQLiteEngine):
            return await self._engine.fetchone(sql, params)
        return await self.read(lambda conn: rows.fetch_one(conn, sql, params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; return rows changed."""
        if isinstance(self._engine, SQLiteEngine):
            return await self._engine.execute(sql, params)
        return await self.write(lambda conn: conn.execute(sql, params).rowcount)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        """A raw aiosqlite connection for SQL of your own (see ``SQLiteEngine.connection``)."""
        async with self._sqlite("connection").connection() as conn:
            yield conn

    #: The seed code's name for ``connection``.
    _get_connection = connection

    async def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """Install a trace callback (called with each SQL text) on every connection."""
        await self._sqlite("set_trace_callback").set_trace_callback(callback)

    async def set_progress_handler(self, handler: Callable[[], int] | None, n: int) -> None:
        """Install a progress handler (every ``n`` VM steps) on every connection."""
        await self._sqlite("set_progress_handler").set_progress_handler(handler, n)

    # -- inspection ---------------------------------------------------------------

    async def schema_version(self) -> int:
        """The version of the newest migration applied."""
        return await self._engine.schema_version()

    async def pragmas(self) -> dict[str, Any]:
        """The PRAGMAs memkit sets, as a reader connection sees them."""
        return await self._sqlite("pragmas").pragmas()

    async def explain_query_plan(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        """``EXPLAIN QUERY PLAN`` details, indented two spaces per tree level."""
        return await self._sqlite("explain_query_plan").explain_query_plan(sql, params)

    async def query_plan(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[int, int, str]]:
        """Raw ``EXPLAIN QUERY PLAN`` rows as ``(id, parent, detail)``, planned as of now."""
        return await self._engine.query_plan(sql, params)

    async def validate_foreign_keys(self) -> list[dict[str, Any]]:
        """``PRAGMA foreign_key_check``: one dict per violation (empty when sound)."""
        return await self._sqlite("validate_foreign_keys").validate_foreign_keys()

    async def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check``: ``["ok"]`` when the file is sound."""
        return await self._engine.integrity_check()

    async def get_index_usage(self) -> dict[str, Any]:
        """The explicit (named) indexes: count, one row per index, names per table."""
        return await self._sqlite("get_index_usage").get_index_usage()

    async def validate(self) -> dict[str, Any]:
        """The seeds' checks as a JSON-serializable report: ``{"ok", "checks"}``.

        On PostgreSQL the checks are PostgreSQL's counterparts (constraints,
        valid indexes, jsonb columns, plans, timed lookups; no PRAGMAs or WAL).
        """
        if isinstance(self._engine, SQLiteEngine):
            return await validation.run_checks(self._engine)
        from .engines.postgresql import validation as pg_validation

        return await pg_validation.run_checks(self._engine)

    # -- maintenance ----------------------------------------------------------------

    async def checkpoint(self, mode: str = "TRUNCATE") -> dict[str, int]:
        """Checkpoint the WAL into the database file."""
        return await self._sqlite("checkpoint").checkpoint(mode)

    async def analyze(self) -> None:
        """Refresh the query planner's statistics (``ANALYZE``)."""
        await self._sqlite("analyze").analyze()

    async def vacuum(self) -> None:
        """Rebuild the file, returning free pages to the filesystem."""
        await self._sqlite("vacuum").vacuum()

    async def backup(
        self,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Callable[[int, int, int], object] | None = None,
    ) -> Path:
        """Copy the database to ``dest`` atomically (see ``SQLiteEngine.backup``)."""
        return await self._sqlite("backup").backup(dest, overwrite=overwrite, progress=progress)


def is_dsn(path: object) -> TypeGuard[str]:
    """Whether ``path`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))


# libpq's key=value connection strings: "host=/tmp dbname=agents user=me".
_KEYWORD_DSN = re.compile(r"^\s*(host|hostaddr|dbname|user|port|service)\s*=.*\s\w+\s*=")


def _refuse_keyword_dsn(path: object) -> None:
    """A key=value DSN would otherwise become the name of a new SQLite file."""
    if isinstance(path, str) and _KEYWORD_DSN.match(path):
        raise InvalidInputError(
            f"{path!r} looks like a PostgreSQL key=value connection string: "
            "give it as a URI, postgresql://user@host:port/dbname?host=/socket/dir")


def _postgresql(
    dsn: str, *, driver: str | None, extensions: Sequence[str], read_only: bool, migrate: bool,
    group_commit: bool, observer: LatencyRecorder | None,
) -> PostgreSQLEngine:
    if driver is not None or extensions:
        raise InvalidInputError("driver and extensions are SQLite settings: "
                                "a PostgreSQL database takes neither")
    require_extra("postgres", "A PostgreSQL database")
    from .engines.postgresql import PostgreSQLEngine

    return PostgreSQLEngine(dsn, read_only=read_only, migrate=migrate,
                            group_commit=group_commit, observer=observer)
