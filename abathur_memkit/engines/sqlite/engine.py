"""The SQLite engine: connections, PRAGMAs, transactions, migrations and maintenance.

One writer connection per engine; file databases get reader connections
too, so reads go on while a write transaction is open (WAL). Each aiosqlite
connection owns a worker thread. A whole transaction runs as one function in
the writer's thread (``write``), so statements of concurrent asyncio tasks can
never interleave inside another task's transaction, and a write costs one
thread hop instead of one per statement.

Group commit: a write that arrives while another write's transaction runs
waits, and the writes that waited run together in the next transaction, each
inside its own SAVEPOINT (see ``write``). One commit then covers many writes.

Checkpoints: the writer's WAL checkpoints run on a thread and connection of
their own (``_Checkpointer``), so their fsyncs do not stall the writes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import random
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from ...errors import DatabaseFileError, InvalidInputError, MemkitError
from ...inputs import require_int, require_text, show
from ..group_commit import GroupQueue
from ..interface import AsyncOpen, CallObserver, Connection, Engine
from . import files, schema
from .driver import Driver, load_extension, select_driver

if TYPE_CHECKING:
    pass

__all__ = ["PRAGMAS", "SQLiteEngine", "plan_rows"]

T = TypeVar("T")

# WAL pages between checkpoints (SQLite's default).
_CHECKPOINT_PAGES = 1000

#: Set on every connection memkit opens (journal_mode only on file databases).
#: memkit's own writer leaves its checkpoints every ``wal_autocheckpoint``
#: pages to a thread of its own (``_Checkpointer``).
PRAGMAS = {
    "busy_timeout": 5000,
    "journal_mode": "wal",
    "synchronous": 1,  # NORMAL
    "foreign_keys": 1,
    "wal_autocheckpoint": _CHECKPOINT_PAGES,
}

#: Bytes the WAL file is truncated back to after a checkpoint.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
#: Bytes of the database file each connection reads through a memory map. A
#: vector search reads hundreds of scattered 1.5 KB rows; one read() call per
#: page made that 16x slower (1,600 rows: 36.7 ms, mapped 2.3 ms).
MMAP_SIZE = 1024 * 1024 * 1024

# How long, at exit, an unclosed Database's connections get to close themselves.
_EXIT_CLOSE_SECONDS = 10.0

# How long write() keeps retrying BEGIN IMMEDIATE when another process holds
# the write lock past busy_timeout; callers should not see "database is locked".
_LOCK_RETRY_SECONDS = 60.0

# Most writes one group-commit transaction takes: bounds how long the writes in
# it wait for their common COMMIT.
_GROUP_LIMIT = 256

# WAL pages past which the writer checkpoints on its own thread, as SQLite's
# autocheckpoint: only when the checkpointer thread cannot restart the WAL
# (under a steady stream of commits it never catches up completely), or a
# reader pins it. Bounds the WAL at ~40 MB (4 KiB pages).
_WRITER_CHECKPOINT_PAGES = 10_000

_log = logging.getLogger(__name__)


class SQLiteEngine(AsyncOpen):
    """One SQLite database (a file or ``:memory:``): ``await engine.initialize()``."""

    #: The engine's SQL dialect.
    dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        driver: str | None = None,
        readers: int = 2,
        extensions: Sequence[str] = (),
        read_only: bool = False,
        migrate: bool = True,
        group_commit: bool = True,
        observer: CallObserver | None = None,
    ) -> None:
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise InvalidInputError(f"Database path must be a str or os.PathLike, not {path!r}")
        # "~/.abathur/abathur.db" is where agents keep their database by default.
        self.path = os.path.expanduser(os.fspath(path))
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
        if read_only and self.in_memory:
            raise InvalidInputError("a ':memory:' database cannot be opened read-only")
        #: Opened with SQLite's mode=ro: no WAL switch, no migration, writes refused.
        self.read_only = bool(read_only)
        # Without migrate the file must already be an up-to-date memkit database.
        self._migrate = bool(migrate) and not self.read_only
        self.driver: Driver = select_driver(driver)
        #: Loaded on every connection, readers included.
        self.extensions = tuple(extensions)
        self._n_readers = 0 if self.in_memory else max(1, readers)
        self._writer: aiosqlite.Connection | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._readers_lock = asyncio.Lock()
        # Hooks to install on every connection, including readers opened later.
        self._trace: Callable[[str], object] | None = None
        self._progress: tuple[Callable[[], int], int] | None = None
        self._next_reader = itertools.count()
        self._init_lock = asyncio.Lock()
        self._raw_lock = asyncio.Lock()
        # (st_dev, st_ino) of the file when opened: tells a deleted or replaced file.
        self._file_id: tuple[int, int] | None = None
        #: Writes that arrive while a write transaction runs share the next one.
        self.group_commit = bool(group_commit)
        # The writes that wait for the next group, and the loop whose writes run.
        self._queue: GroupQueue[_QueuedWrite] = GroupQueue(self._commit_group, _GROUP_LIMIT)
        #: Told of every read and write and how long it took (e.g. latency metrics).
        self.observer = observer
        # Runs the writer's WAL checkpoints off its thread (file databases that write).
        self._checkpointer: _Checkpointer | None = None
        # Read-only, and no -wal/-shm beside the file when it opened (see close()).
        self._tidy_on_close = False

    def __repr__(self) -> str:
        return f"<SQLiteEngine {self.path!r} driver={self.driver.name}>"

    # -- lifecycle -----------------------------------------------------------

    async def initialize(self) -> list[int]:
        """Open, configure and migrate; return the schema versions applied.

        Idempotent: a second call (or another process) applies nothing. With
        ``read_only=True`` or ``migrate=False`` nothing is created, converted or
        migrated: a file that is not an up-to-date memkit database is refused
        with a ``DatabaseFileError`` saying what it is.
        """
        async with self._init_lock:
            if self._writer is None and not self.in_memory and self._migrate:
                _make_parent(Path(self.path))
            if self._writer is None and self.read_only and not self.in_memory:
                # Reading creates a -wal and -shm; close() removes them if they were new.
                self._tidy_on_close = not files.has_side_files(self.path)
            try:
                applied: list[int]
                if self._writer is None:
                    # Open and migrate in one thread hop; a bad file fails here,
                    # before aiosqlite (which leaves a stray future behind when
                    # its connector raises) is involved.
                    raw, applied, checkpointer = await asyncio.to_thread(self._open_writer)
                    self._checkpointer = checkpointer
                    self._writer = await _worker(lambda: raw)
                    _UNCLOSED.add(self)
                    self._file_id = None if self.in_memory else _file_id(self.path)
                elif not self._migrate:
                    applied = []
                else:
                    applied = await self._call(
                        self._writer, schema.migrate, self._writer_conn(), self._memory_connection
                    )
            except BaseException:
                await self.close()
                raise
            return applied

    async def close(self) -> None:
        """Close every connection; the Database can be initialized again.

        Writes already waiting for a group-commit transaction run first.
        """
        await self._queue.idle()
        if self.observer is not None and self._writer is not None and not self.read_only:
            await self.observer.flush(self)
        readers, writer = self._readers, self._writer
        self._readers, self._writer = [], None
        checkpointer, self._checkpointer = self._checkpointer, None
        _UNCLOSED.discard(self)
        for conn in readers:
            await conn.close()
        if checkpointer is not None:
            # Stopped before the writer closes: the writer stays the last
            # connection, whose close checkpoints the WAL and deletes it.
            if checkpointer.started:
                await asyncio.to_thread(checkpointer.stop)  # may be inside an fsync
            else:
                checkpointer.stop()
        if writer is not None:
            await writer.close()
        if self._tidy_on_close:
            self._tidy_on_close = False
            await asyncio.to_thread(files.remove_empty_log, self.driver, self.path)

    def _close_at_exit(self) -> None:
        """Close the connections of a Database its owner never closed (no event loop left)."""
        connections = [*self._readers, *([self._writer] if self._writer else [])]
        self._readers, self._writer = [], None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop(_EXIT_CLOSE_SECONDS)
        for conn in connections:
            conn.stop()  # queued after the work already queued: each closes on its thread
        for conn in connections:
            conn._thread.join(_EXIT_CLOSE_SECONDS)

    def _memory_connection(self) -> sqlite3.Connection:
        return self.driver.connect(":memory:")

    def _open(self, *, create: bool = True) -> sqlite3.Connection:
        """Open one configured connection (runs in the connection's thread).

        With ``create=False`` a missing file is an error, never a new empty database.
        """
        try:
            if self.read_only:
                conn = files.connect_read_only(self.driver, self.path)
            elif create or self.in_memory:
                conn = self.driver.connect(self.path)
            else:
                conn = files.connect_existing(self.driver, self.path)
        except Exception as exc:
            raise self._open_error(f"cannot open {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {PRAGMAS['busy_timeout']}")
            if not self.in_memory and not self.read_only:
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
            conn.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
            for name in self.extensions:
                load_extension(conn, name)
        except (self.driver.module.DatabaseError, UnicodeDecodeError) as exc:
            # UnicodeDecodeError: a damaged schema whose error text is not UTF-8.
            conn.close()
            raise self._open_error(f"{self.path} is not a usable SQLite database: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        conn.row_factory = self.driver.module.Row
        if self._trace is not None:
            conn.set_trace_callback(self._trace)
        if self._progress is not None:
            conn.set_progress_handler(*self._progress)
        return conn

    def _open_error(self, text: str) -> DatabaseFileError:
        if not self.read_only and not self.in_memory and files.read_only_location(self.path):
            return DatabaseFileError(
                f"{self.path} is on a read-only location: memkit cannot write there "
                "(read it with Database(path, read_only=True); memkit's read commands do)")
        return DatabaseFileError(text)

    def _open_and_migrate(self) -> tuple[sqlite3.Connection, list[int]]:
        if not self._migrate:
            # Looked at read-only first: another application's file stays as it was.
            files.require_current(self.path, self.driver)
        conn = self._open()
        try:
            if not self._migrate:
                return conn, []
            applied = schema.migrate(conn, self._memory_connection)
        except BaseException:
            conn.close()
            raise
        if applied and not self.in_memory:
            # A connection that ran the migrations' DDL stays about 2x slower per
            # write (measured: 200 vs 100 us for a memory row and its audit row);
            # a fresh one on the migrated file does not.
            conn.close()
            conn = self._open()
        return conn, applied

    def _open_writer(self) -> tuple[sqlite3.Connection, list[int], _Checkpointer | None]:
        conn, applied = self._open_and_migrate()
        if self.in_memory or self.read_only:
            return conn, applied, None
        try:
            # The writer's checkpoints every wal_autocheckpoint pages move to a
            # thread of their own: their fsyncs no longer stall every write.
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WRITER_CHECKPOINT_PAGES}")
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        except BaseException:
            conn.close()
            raise
        return conn, applied, _Checkpointer(self._open_checkpointer, self.path, page_size)

    def _open_checkpointer(self) -> sqlite3.Connection:
        """The checkpointer's connection: no hooks, extensions or schema needed."""
        conn = files.connect_existing(self.driver, self.path)
        try:
            conn.execute(f"PRAGMA busy_timeout = {PRAGMAS['busy_timeout']}")
            conn.execute(f"PRAGMA synchronous = {PRAGMAS['synchronous']}")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connect(self) -> aiosqlite.Connection:
        # Readers open after the writer has proved the file, on aiosqlite's thread.
        return await _worker(lambda: self._open(create=False))

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
        self._check_file()
        try:
            result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
        except (self.driver.module.Error, UnicodeDecodeError) as exc:
            raise self._caller_error(exc) from exc
        return result

    def _caller_error(self, exc: Exception) -> MemkitError:
        """What a driver or decoding error raised on a connection's thread means."""
        if isinstance(exc, UnicodeDecodeError):
            return DatabaseFileError(_NOT_UTF8.format(self.path, exc))
        return self._memkit_error(exc)

    def _memkit_error(self, exc: Exception) -> MemkitError:
        """What a driver error that reached a caller means, as a MemkitError."""
        # Corruption can surface at any read, long after the file opened.
        if _is_corrupt(exc):
            return DatabaseFileError(f"{self.path} is not a usable SQLite database: {exc}")
        if "Could not decode to UTF-8" in str(exc):
            return DatabaseFileError(_NOT_UTF8.format(self.path, exc))
        code = _primary_code(exc)
        if code == _SQLITE_FULL or "disk is full" in str(exc):  # backup() errors carry no code
            return DatabaseFileError(
                f"cannot write {self.path}: the disk is full or the database reached its "
                f"max_page_count ({exc}); the change was rolled back"
            )
        if code in _FILE_CODES:
            return DatabaseFileError(f"cannot read or write {self.path}: {exc}")
        if code is None or code in _STATEMENT_CODES:
            return InvalidInputError(f"SQLite rejected the statement: {exc}")
        return MemkitError(f"SQLite failed on {self.path}: {exc}")

    def _check_file(self) -> None:
        if self._file_id is not None and _file_id(self.path) != self._file_id:
            # The open connections still work on the old file: what they write is lost.
            raise DatabaseFileError(
                f"{self.path} was deleted or replaced while open: close this Database "
                "and open the file again"
            )

    async def _reader(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        if self._n_readers == 0:
            return self._writer
        if not self._readers:
            self._check_file()
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
        _require_callable(fn)
        reader = await self._reader()
        started = time.perf_counter()
        if not snapshot:
            result = await self._call(reader, fn, reader._conn)
        else:
            result = await self._call(reader, _in_read_txn, reader._conn, fn)
        if self.observer is not None:
            await self.observer.record(self, fn, started)
        return result

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction on the writer.

        Commits when ``fn`` returns, rolls back when it raises (any exception),
        and passes the exception on. Constraint failures that ``fn`` did not
        catch become ``InvalidInputError``. This is the one transaction helper
        every service uses.

        With ``group_commit`` (the default), a write that arrives while another
        write's transaction runs waits; the writes that waited then run in one
        transaction, each ``fn`` inside its own SAVEPOINT: one that raises is
        rolled back alone and its caller gets its exception, the others commit
        together, and each returns only after that COMMIT. ``fn`` must leave the
        transaction open (no COMMIT or ROLLBACK of its own). A caller cancelled
        while its write waits drops the write; once the write runs, it may still
        commit (as without group commit).
        """
        _require_callable(fn)
        writer = self._writer
        if writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        self._refuse_if_read_only()
        if self.observer is None:
            return await self._write(writer, fn)
        started = time.perf_counter()
        result = await self._write(writer, fn)
        await self.observer.record(self, fn, started)
        return result

    async def _write(self, writer: aiosqlite.Connection, fn: Callable[[Any], T]) -> T:
        if not self.group_commit:
            return await self._call(writer, self._in_write_txn, writer._conn, fn)
        loop = asyncio.get_running_loop()
        writes = self._queue
        if writes.loop is loop:
            return await writes.join(_QueuedWrite(fn, loop.create_future()))  # type: ignore[no-any-return]
        if writes.loop is not None:
            # Another event loop (another thread) is writing: its groups resolve
            # futures on that loop only, so this write runs on its own.
            return await self._call(writer, self._in_write_txn, writer._conn, fn)
        # The writer is idle: this write runs alone, as without group commit.
        writes.loop = loop
        try:
            return await self._call(writer, self._in_write_txn, writer._conn, fn)
        finally:
            writes.done()

    async def _commit_group(self, group: list[_QueuedWrite]) -> None:
        writer = self._writer
        try:
            if writer is None:
                raise MemkitError("Database was closed before this write ran")
            await self._call(writer, self._in_group_txn, writer._conn, group)
        except Exception as exc:  # BEGIN or COMMIT failed: no write of the group committed
            for entry in group:
                entry.ran = True  # answered with this error, never run again
                if entry.error is None:
                    entry.error = exc
        except BaseException:
            for entry in group:
                entry.future.cancel()
            raise
        # Writes that never ran (an earlier one ended the transaction) go first next time.
        self._queue.waiting.extendleft(reversed([e for e in group if not e.ran]))
        for entry in group:
            if entry.ran and not entry.future.done():
                if entry.error is not None:
                    entry.future.set_exception(entry.error)
                else:
                    entry.future.set_result(entry.result)

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            where = " on a read-only location" if files.read_only_location(self.path) else ""
            raise MemkitError(f"{self.path} is open read-only{where}: writes are not allowed")

    def _in_write_txn(self, conn: Connection, fn: Callable[[Any], T]) -> T:
        _begin_immediate(conn, self.driver.module.OperationalError)
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except self.driver.module.IntegrityError as exc:
            _rollback(conn)
            raise _constraint_error(exc) from exc
        except BaseException:
            _rollback(conn)
            raise
        if self._checkpointer is not None:
            self._checkpointer.after_commit()
        return result

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        """A raw aiosqlite connection for SQL of your own (tests, one-off fixes).

        ``async with db.connection() as conn: await conn.execute(...)``. On a
        file it is a connection of its own, opened with memkit's PRAGMAs, so
        SQLite's locking keeps it apart from the services' transactions; a
        write starts ``BEGIN IMMEDIATE``, the block commits when it ends and
        rolls back if it raises, then the connection closes. A ``:memory:``
        database exists only inside the writer connection, so there the block
        gets the writer itself, whose statements commit one by one.
        ``_get_connection()`` is the same method under the seed code's name.
        """
        if self._writer is None:
            raise MemkitError("Database is not initialized: await db.initialize() first")
        if self.in_memory:
            async with self._raw_lock:
                yield self._writer
            return
        conn = await self._connect()
        try:
            conn.isolation_level = "IMMEDIATE"
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
        finally:
            await conn.close()

    _get_connection = connection
    def _in_group_txn(self, conn: Connection, group: list[_QueuedWrite]) -> None:
        """Run a group of writes in one transaction (on the writer's thread)."""
        # A SAVEPOINT keeps the old image of every page its write changes in a
        # sub-journal; past 64 KiB (a memory write touches ~17 pages) SQLite
        # spills it to a temporary file, which costs ~50 % more per write. The
        # setting is read at BEGIN, so it applies to this transaction only; it
        # is set back after it (it cannot change inside a transaction), so
        # VACUUM and large sorts keep using files. (Changing it drops TEMP
        # tables: memkit keeps none on the writer.)
        conn.execute("PRAGMA temp_store = MEMORY")
        try:
            self._group_txn(conn, group)
        finally:
            if not conn.in_transaction:
                conn.execute("PRAGMA temp_store = DEFAULT")

    def _group_txn(self, conn: Connection, group: list[_QueuedWrite]) -> None:
        _begin_immediate(conn, self.driver.module.OperationalError)
        try:
            for n, entry in enumerate(group):
                if not self._in_savepoint(conn, entry):
                    # SQLite rolled the whole transaction back (or fn ended it):
                    # the writes before it are not committed.
                    for earlier in group[:n]:
                        if earlier.error is None:
                            earlier.error = MemkitError(
                                "this write was not committed: another write in the same "
                                f"transaction ended it ({entry.error})")
                    return
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if self._checkpointer is not None:
            self._checkpointer.after_commit()

    def _in_savepoint(self, conn: Connection, entry: _QueuedWrite) -> bool:
        """Run one write of a group; False when its transaction did not survive it."""
        entry.ran = True
        conn.execute("SAVEPOINT memkit_write")
        try:
            entry.result = entry.fn(conn)
        except BaseException as exc:
            entry.error = self._write_error(exc)
            if not conn.in_transaction:
                return False
            conn.execute("ROLLBACK TO memkit_write")
            conn.execute("RELEASE memkit_write")
            return True
        if not conn.in_transaction:
            entry.error = MemkitError("a write function ended its own transaction "
                                      "(COMMIT or ROLLBACK inside db.write)")
            return False
        conn.execute("RELEASE memkit_write")
        return True

    def _write_error(self, exc: BaseException) -> BaseException:
        """The exception a write's caller gets, as ``_in_write_txn`` and ``_call`` map it."""
        error: BaseException
        if isinstance(exc, self.driver.module.IntegrityError):
            error = _constraint_error(exc)
        elif isinstance(exc, self.driver.module.Error | UnicodeDecodeError):
            error = self._caller_error(exc)
        else:
            return exc
        error.__cause__ = exc
        return error

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a query on a reader; rows as plain dicts."""
        _require_statement(sql, params)
        return await self.read(lambda conn: [dict(r) for r in conn.execute(sql, params)])

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        _require_statement(sql, params)

        def one(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(sql, params).fetchone()
            return dict(row) if row is not None else None

        return await self.read(one)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement in its own transaction; return rows changed."""
        _require_statement(sql, params)
        return await self.write(lambda conn: int(conn.execute(sql, params).rowcount))

    async def _each_connection(self, fn: Callable[[aiosqlite.Connection], Awaitable[None]]) -> None:
        for conn in [*([self._writer] if self._writer else []), *self._readers]:
            await fn(conn)

    async def load_extension(self, name: str) -> None:
        """Load extension ``name`` on every open connection and on those opened later."""
        if name in self.extensions:
            return
        self.extensions = (*self.extensions, name)
        for conn in [*([self._writer] if self._writer else []), *self._readers]:
            await self._call(conn, load_extension, conn._conn, name)

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

    def checkpointer_stats(self) -> dict[str, Any] | None:
        """Counters of the thread that checkpoints the writer's WAL.

        ``{requests, runs, restarts, busy, errors, last_error, running}``:
        checkpoints the writer asked for (one per ``wal_autocheckpoint`` pages), run,
        WAL restarts the writer saw, runs that found another checkpoint under
        way, failures (never a write's: logged as warnings) and the last one.
        None on ``:memory:``, read-only or closed databases, which have none.
        """
        checkpointer = self._checkpointer
        return None if checkpointer is None else checkpointer.stats()

    async def pragmas(self) -> dict[str, Any]:
        """The PRAGMAs memkit sets (``PRAGMAS``) as a reader connection sees them.

        ``wal_autocheckpoint`` is the page count checkpoints run at; memkit's
        own writer has them run by a thread of its own (its own setting is a
        higher bound, see ``_Checkpointer``), every other connection by itself.
        """

        def read(conn: Connection) -> dict[str, Any]:
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
        """Raw ``EXPLAIN QUERY PLAN`` rows as ``(id, parent, detail)``.

        Planned against the schema and ``ANALYZE`` statistics as they are now,
        whichever connection or process changed them last.
        """
        _require_statement(sql, params)
        return await self.read(lambda conn: plan_rows(conn, sql, params))

    async def validate_foreign_keys(self) -> list[dict[str, Any]]:
        """``PRAGMA foreign_key_check``: one dict per violation (empty when sound)."""
        return await self.fetchall("PRAGMA foreign_key_check")

    async def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check``: ``["ok"]`` when the file is sound."""
        rows = await self.read(lambda conn: conn.execute("PRAGMA integrity_check").fetchall())
        return [str(r[0]) for r in rows]

    async def get_index_usage(self) -> dict[str, Any]:
        """The explicit (named) indexes: count, one row per index, names per table.

        Each row of ``indexes`` is ``{name, table, unique, partial, columns}``.
        """

        def read(conn: Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT m.name, m.tbl_name, l.\"unique\", l.partial FROM sqlite_master m "
                "JOIN pragma_index_list(m.tbl_name) l ON l.name = m.name "
                "WHERE m.type = 'index' AND m.sql IS NOT NULL ORDER BY m.tbl_name, m.name"
            ).fetchall()
            return [
                {"name": name, "table": table, "unique": bool(unique), "partial": bool(partial),
                 "columns": [c[0] for c in conn.execute(
                     "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (name,))]}
                for name, table, unique, partial in rows
            ]

        indexes = await self.read(read, snapshot=True)
        by_table: dict[str, list[str]] = {}
        for index in indexes:
            by_table.setdefault(index["table"], []).append(index["name"])
        return {
            "index_count": len(indexes),
            "indexes": indexes,
            "by_table": by_table,
            "partial": [i["name"] for i in indexes if i["partial"]],
        }

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
        self._refuse_if_read_only()
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
        self._refuse_if_read_only()
        await self._call(writer, self._vacuum, writer._conn)

    def _vacuum(self, conn: Connection) -> None:
        conn.execute("VACUUM")
        if self._checkpointer is not None:
            self._checkpointer.after_commit()  # the whole file went through the WAL

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
        It is made beside ``dest``, must pass ``quick_check``, and is synced and
        renamed into place: a backup killed half-way leaves nothing at ``dest``.
        A ``dest`` ending in ``.gz`` is gzip-compressed.
        """
        target = self._backup_target(dest, overwrite)

        def copy(conn: sqlite3.Connection, work: Path) -> Path:
            made = work / "backup.db"
            dst = self.driver.connect(str(made))
            try:
                conn.backup(dst, pages=-1, progress=progress)
            except self.driver.module.Error as exc:  # disk full, I/O error
                raise DatabaseFileError(f"backup to {target} failed: {exc}") from exc
            finally:
                dst.close()
            files.check_copy(self.driver, made, f"the copy of {self.path}")
            return files.gzip_file(made) if target.suffix == ".gz" else made

        reader = await self._reader()
        await self._call(reader, files.write_atomically, target,
                         lambda work: copy(reader._conn, work))
        return target

    def _backup_target(self, dest: str | os.PathLike[str], overwrite: bool) -> Path:
        if isinstance(dest, bytes) or not isinstance(dest, str | os.PathLike):
            raise InvalidInputError(f"Backup destination must be a path, not {show(dest)}")
        target = Path(os.fspath(dest))
        if not target.name or "\x00" in str(target):
            raise InvalidInputError(f"Invalid backup destination: {show(os.fspath(dest))}")
        if not self.in_memory and target.exists() and os.path.samefile(target, self.path):
            raise InvalidInputError(f"Backup destination is the database itself: {target}")
        if target.exists() and target.stat().st_size == 0:
            overwrite = True  # an empty file (e.g. from mktemp) is a name reserved for it
        files.check_destination(target, overwrite, self.driver, "Backup")
        return target


async def _worker(connector: Callable[[], sqlite3.Connection]) -> aiosqlite.Connection:
    """An aiosqlite connection whose thread never keeps Python from exiting.

    The thread holds the last function it ran (often a method of the Database),
    so a Database nobody closed is never garbage: a non-daemon thread would wait
    forever. At exit, ``_close_unclosed`` closes such connections.
    """
    conn = aiosqlite.Connection(connector, iter_chunk_size=64)
    conn._thread.daemon = True
    return await conn


_UNCLOSED: weakref.WeakSet[SQLiteEngine] = weakref.WeakSet()


@atexit.register
def _close_unclosed() -> None:
    unclosed = list(_UNCLOSED)
    for db in unclosed:
        db._close_at_exit()
    # Warned after closing all: under -W error a warning raises.
    for db in unclosed:
        warnings.warn(
            f"Database {db.path!r} was never closed: use `async with Database(...)` "
            "or `await db.close()`",
            ResourceWarning,
            stacklevel=1,
        )


#: Reloads a connection's schema and statistics; see ``plan_rows``.
RELOAD_SCHEMA = "PRAGMA writable_schema = RESET"


def plan_rows(conn: Connection, sql: str, params: Any = ()) -> list[tuple[int, int, str]]:
    """``EXPLAIN QUERY PLAN`` rows of ``sql`` on a DB-API connection, as ``(id, parent, detail)``.

    An EXPLAIN statement never checks the schema cookie, so a connection would
    keep planning with the schema and statistics it loaded first (and Python's
    statement cache would replay the old plan). ``writable_schema = RESET``
    reloads both and expires the connection's prepared statements; it writes
    nothing to the file.
    """
    conn.execute(RELOAD_SCHEMA)
    rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return [(int(r[0]), int(r[1]), str(r[3])) for r in rows]


def _make_parent(path: Path) -> None:
    """Create the folder of a new database file (``~/.abathur`` on a new machine)."""
    parent = path.parent
    if parent.is_dir() or path.exists():
        return
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseFileError(f"cannot create {path}: cannot create directory {parent}: "
                                f"{exc.strerror or exc}") from exc


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


def _use_wal(conn: Connection) -> str:
    """Switch to WAL unless the file is in WAL already (reading is ~4x cheaper)."""
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    if mode.lower() == "wal":
        return mode
    return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])


_NOT_UTF8 = "{} holds text that is not UTF-8 (damaged, or written by another tool): {}"

# SQLITE_CORRUPT and SQLITE_NOTADB (primary result codes).
_CORRUPT_CODES = (11, 26)
_SQLITE_FULL = 13
# The file or its storage failed, not the statement: PERM, READONLY, IOERR,
# CANTOPEN, NOLFS.
_FILE_CODES = (3, 8, 10, 14, 22)
# The statement itself was wrong: ERROR (syntax, no such table), TOOBIG,
# CONSTRAINT, MISMATCH, RANGE (parameter index).
_STATEMENT_CODES = (1, 18, 19, 20, 25)


def _primary_code(exc: Exception) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _require_statement(sql: object, params: object) -> None:
    require_text(sql, "sql", max_length=None)
    if isinstance(params, str | bytes) or not isinstance(params, Sequence | Mapping):
        raise InvalidInputError(
            f"Invalid params: {show(params)} (expected a sequence, or a mapping of names)"
        )


def _require_callable(fn: object) -> None:
    if not callable(fn):
        raise InvalidInputError(f"Expected a function of the connection, got {show(fn)}")


def _is_corrupt(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _CORRUPT_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


# The WAL file's layout (sqlite.org/fileformat2.html#walformat): a 32-byte
# header with its salts at byte 16, then frames of a 24-byte header (the
# salts again at byte 8) and a page.
_WAL_HEADER = 32
_WAL_SALTS = 16
_FRAME_HEADER = 24
_FRAME_SALTS = 8


class _Checkpointer:
    """Checkpoints the WAL for memkit's writer, on a thread and connection of its own.

    SQLite's own autocheckpoint runs on the connection that commits, so its
    fsyncs (of the WAL, then of the database file) stalled every write. After
    each commit the writer reads two frame headers of the WAL (``_written``)
    and, once ``wal_autocheckpoint`` more pages are in it since the last
    request, wakes this thread, which runs ``PRAGMA wal_checkpoint(PASSIVE)``: it takes
    no write lock, so writes go on while it copies pages and syncs. Its errors
    (e.g. SQLITE_BUSY) never reach a write: they are counted and logged.

    A passive checkpoint under a steady stream of commits never copies the
    frames committed while it ran, so the WAL cannot restart; past
    ``_WRITER_CHECKPOINT_PAGES`` pages the writer's own autocheckpoint copies
    the rest and the WAL restarts. A reader that holds an old snapshot keeps
    every checkpoint short of it, as before: the WAL grows until it ends,
    then the next checkpoint copies the rest and the WAL restarts (and shrinks
    back to ``JOURNAL_SIZE_LIMIT``).

    The thread starts at the first request (a database that writes little
    never has one) and ``stop()`` ends it.
    """

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], path: str, page_size: int
    ) -> None:
        self._connect = connect
        self._path = path
        self._wal = f"{path}-wal"
        self._frame_bytes = page_size + _FRAME_HEADER
        self._every = _CHECKPOINT_PAGES
        # WAL frame a checkpoint was last asked at, and the WAL file read to
        # find out (the writer's thread only).
        self._requested_at = 0
        self._fd: int | None = None
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _thread and _stopped
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._done = threading.Condition()
        self.requests = 0
        self.runs = 0
        self.restarts = 0
        self.busy = 0
        self.errors = 0
        self.last_error: str | None = None

    def after_commit(self) -> None:
        """Called by the writer after each commit; never raises."""
        try:
            salts = self._read(_WAL_SALTS, 8)
            if salts is None or len(salts) < 8:
                return  # no WAL yet, or an empty one
            if self._requested_at and not self._written(self._requested_at, salts):
                self._requested_at = 0  # the WAL restarted
                self.restarts += 1
            if self._written(self._requested_at + self._every, salts):
                self._requested_at += self._every
                self.requests += 1
                self.request()
        except Exception as exc:  # e.g. no thread can be started: the write stands
            self._failed(exc)

    def _written(self, frame: int, salts: bytes) -> bool:
        """Whether WAL frame ``frame`` (from 1) belongs to the WAL's current cycle.

        A restart does not shrink the file (it is overwritten from the start),
        so its size says nothing; each frame's header repeats the salts the WAL
        header had when it was written, and a restart changes them. A frame of
        a transaction rolled back after spilling pages counts too: at worst a
        checkpoint comes a little early.
        """
        offset = _WAL_HEADER + (frame - 1) * self._frame_bytes + _FRAME_SALTS
        return self._read(offset, 8) == salts

    def _read(self, offset: int, size: int) -> bytes | None:
        if self._fd is None:
            try:
                # SQLite holds no POSIX lock on the -wal file (only on the
                # database and -shm files), so this descriptor's close drops none.
                self._fd = os.open(self._wal, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except OSError:
                return None
        if hasattr(os, "pread"):
            return os.pread(self._fd, size, offset)
        os.lseek(self._fd, offset, os.SEEK_SET)
        return os.read(self._fd, size)

    def request(self) -> None:
        """Ask for a checkpoint (starting the thread on the first request)."""
        if self._thread is None:
            with self._lock:
                if self._stopped:
                    return
                if self._thread is None:
                    thread = threading.Thread(
                        target=self._run, name=f"memkit-checkpointer {self._path}", daemon=True)
                    thread.start()
                    self._thread = thread
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """End the thread (after the checkpoint it is running) and close its connection."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stats(self) -> dict[str, Any]:
        with self._done:
            return {"requests": self.requests, "runs": self.runs,
                    "restarts": self.restarts, "busy": self.busy,
                    "errors": self.errors,
                    "last_error": self.last_error, "running": self.running}

    def wait_for(self, runs: int, timeout: float) -> bool:
        """Wait until ``runs`` checkpoints have finished or failed (tests)."""
        with self._done:
            return self._done.wait_for(lambda: self.runs + self.errors >= runs, timeout)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                if self._stopped:
                    return
                self._wake.clear()
                try:
                    if conn is None:
                        conn = self._connect()
                    busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
                except Exception as exc:
                    self._failed(exc)
                    continue
                with self._done:
                    self.runs += 1
                    self.busy += bool(busy)  # another connection was checkpointing
                    self._done.notify_all()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def _failed(self, exc: Exception) -> None:
        with self._done:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._done.notify_all()
        _log.warning("WAL checkpoint of %s failed (writes are not affected): %s",
                     self._path, exc)


@dataclass(slots=True)
class _QueuedWrite:
    """A write waiting for a group-commit transaction, and its outcome."""

    fn: Callable[[Any], Any]
    future: asyncio.Future[Any]
    ran: bool = False
    result: Any = None
    error: BaseException | None = None


def _constraint_error(exc: Exception) -> InvalidInputError:
    return InvalidInputError(f"Rejected by a database constraint: {exc}")


def _begin_immediate(conn: Connection, operational_error: type[Exception]) -> None:
    _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"), operational_error)


def _rollback(conn: Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _in_read_txn(conn: Connection, fn: Callable[[Any], T]) -> T:
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")


if TYPE_CHECKING:
    def _is_an_engine(engine: SQLiteEngine) -> Engine:  # mypy checks the interface here
        return engine
