"""``Database``: the one object an application holds.

It builds the engine and the services once, with their settings (embedder,
vector backend, write policy, latency metrics), and hands each service the
engine as a ``Store``. Everything else is a delegation: connections,
transactions and maintenance are the engine's, the seed API is the services'.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .agents import AgentService
from .audit import AuditService
from .checkpoints import CheckpointService
from .engines.interface import AsyncOpen, Connection
from .engines.sqlite import validation
from .engines.sqlite.driver import Driver
from .engines.sqlite.engine import SQLiteEngine
from .inputs import require_bool, require_vector_backend
from .memory import MemoryService
from .metrics import LatencyRecorder, MetricsService
from .namespaces import WritePolicy
from .search.settings import SearchSettings
from .sessions import SessionService
from .tasks import TaskService

if TYPE_CHECKING:

    import aiosqlite

    from .embeddings import Embedder
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
        vector_backend: str = "vec",
        read_only: bool = False,
        migrate: bool = True,
        write_policy: bool = False,
        group_commit: bool = True,
        record_metrics: bool = False,
    ) -> None:
        #: Whether ``db.memory`` enforces the write policy (see ``WritePolicy``).
        self.write_policy = require_bool(write_policy, "write_policy")
        record = require_bool(record_metrics, "record_metrics")
        self._engine = SQLiteEngine(
            path, driver=driver, readers=readers, extensions=extensions, read_only=read_only,
            migrate=migrate, group_commit=group_commit,
            observer=LatencyRecorder() if record else None,
        )
        self.vector_backend = require_vector_backend(vector_backend)
        # Vector search needs its extension on every connection, readers included.
        if embedder is not None and vector_backend not in self._engine.extensions:
            self._engine.extensions = (*self._engine.extensions, vector_backend)
        #: The embedder and vector backend, handed to the search services.
        self.search_settings = SearchSettings(embedder, vector_backend, self._engine.extensions)
        if embedder is not None:  # a missing extra or a typo fails here, not at first use
            self.search_settings.embedder  # noqa: B018
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

    def __repr__(self) -> str:
        return f"<Database {self.path!r} driver={self.driver.name}>"

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
        """The SQLite driver in use (``sqlean`` or ``sqlite3``)."""
        return self._engine.driver

    @property
    def in_memory(self) -> bool:
        return self._engine.in_memory

    @property
    def read_only(self) -> bool:
        """Opened with SQLite's mode=ro: no WAL switch, no migration, writes refused."""
        return self._engine.read_only

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extensions loaded on every connection."""
        return self._engine.extensions

    @property
    def group_commit(self) -> bool:
        """Whether writes that arrive together share one transaction."""
        return self._engine.group_commit

    @group_commit.setter
    def group_commit(self, value: bool) -> None:
        self._engine.group_commit = bool(value)

    @property
    def engine(self) -> SQLiteEngine:
        """The engine under the services (connections, transactions, maintenance)."""
        return self._engine

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
        return self._engine._writer

    def _close_at_exit(self) -> None:
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
        return await self._engine.fetchall(sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """Run a query on a reader; the first row as a dict, or None."""
        return await self._engine.fetchone(sql, params)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; return rows changed."""
        return await self._engine.execute(sql, params)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        """A raw aiosqlite connection for SQL of your own (see ``SQLiteEngine.connection``)."""
        async with self._engine.connection() as conn:
            yield conn

    #: The seed code's name for ``connection``.
    _get_connection = connection

    async def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """Install a trace callback (called with each SQL text) on every connection."""
        await self._engine.set_trace_callback(callback)

    async def set_progress_handler(self, handler: Callable[[], int] | None, n: int) -> None:
        """Install a progress handler (every ``n`` VM steps) on every connection."""
        await self._engine.set_progress_handler(handler, n)

    # -- inspection ---------------------------------------------------------------

    async def schema_version(self) -> int:
        """The version of the newest migration applied."""
        return await self._engine.schema_version()

    async def pragmas(self) -> dict[str, Any]:
        """The PRAGMAs memkit sets, as a reader connection sees them."""
        return await self._engine.pragmas()

    async def explain_query_plan(self, sql: str, params: Sequence[Any] = ()) -> list[str]:
        """``EXPLAIN QUERY PLAN`` details, indented two spaces per tree level."""
        return await self._engine.explain_query_plan(sql, params)

    async def query_plan(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[int, int, str]]:
        """Raw ``EXPLAIN QUERY PLAN`` rows as ``(id, parent, detail)``, planned as of now."""
        return await self._engine.query_plan(sql, params)

    async def validate_foreign_keys(self) -> list[dict[str, Any]]:
        """``PRAGMA foreign_key_check``: one dict per violation (empty when sound)."""
        return await self._engine.validate_foreign_keys()

    async def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check``: ``["ok"]`` when the file is sound."""
        return await self._engine.integrity_check()

    async def get_index_usage(self) -> dict[str, Any]:
        """The explicit (named) indexes: count, one row per index, names per table."""
        return await self._engine.get_index_usage()

    async def validate(self) -> dict[str, Any]:
        """The seeds' checks as a JSON-serializable report: ``{"ok", "checks"}``."""
        return await validation.run_checks(self._engine)

    # -- maintenance ----------------------------------------------------------------

    async def checkpoint(self, mode: str = "TRUNCATE") -> dict[str, int]:
        """Checkpoint the WAL into the database file."""
        return await self._engine.checkpoint(mode)

    async def analyze(self) -> None:
        """Refresh the query planner's statistics (``ANALYZE``)."""
        await self._engine.analyze()

    async def vacuum(self) -> None:
        """Rebuild the file, returning free pages to the filesystem."""
        await self._engine.vacuum()

    async def backup(
        self,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Callable[[int, int, int], object] | None = None,
    ) -> Path:
        """Copy the database to ``dest`` atomically (see ``SQLiteEngine.backup``)."""
        return await self._engine.backup(dest, overwrite=overwrite, progress=progress)
