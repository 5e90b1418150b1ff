"""Reads and writes given as ``Statements``, sent from the event loop: no thread hop.

A call through the worker threads pays a hop there and back, which on a busy
client costs as much as the round trip to the server. psycopg's async
connection waits for the server on the event loop instead, and all the
statements of one call go in one round trip (a pipeline): a read's inside one
``REPEATABLE READ`` transaction when they must see one snapshot, a write's
between its BEGIN and its COMMIT. A write of one statement goes alone, its own
transaction: one message each way, on a connection whose transactions default
to read-write (the others' default to read-only, so a read cannot write).

Group commit: while a write of one statement runs, the next ones queue and then
go together, in one transaction pipelined in one round trip, each with its own
result; the server commits once for them all. If any of them fails, the group
is rolled back and each runs again alone, so a bad write fails alone and the
others commit. One group runs at a time, so two groups never wait on each
other's locks. Nothing is answered before its COMMIT.

The connections belong to the event loop that first used them; a call from
another loop, or after ``close``, goes through the worker threads as any call does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from ...errors import MemkitError
from ..group_commit import GroupQueue
from ..interface import Fetched, Statements
from .connection import SESSION_SETTINGS, column_names, configure, statement
from .errors import RETRY, LostDuringCommit, conflicts, lost_during_commit, retry_delay, translate

__all__ = ["LoopStatements"]

T = TypeVar("T")

_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
#: The most writes one group commits.
_GROUP_LIMIT = 64
_READS = "SET default_transaction_read_only = on; SET default_transaction_isolation = DEFAULT"


class _Connection(psycopg.AsyncConnection[Any]):
    """A connection of the event loop's, and what its transactions default to."""

    #: True: read-write at the engine's write isolation, for a write sent alone;
    #: False: read-only, as every connection of the engine starts.
    writes = False


@dataclass
class _Queued:
    """A write of one statement waiting for the next group; its caller awaits ``future``."""

    writes: Statements
    future: asyncio.Future[list[Fetched]] = field(repr=False)


class LoopStatements:
    """Async connections, opened on first use, for ``Statements`` reads and writes.

    A pool of its own: taking and returning a connection is a list pop and
    append, where psycopg_pool's costs ~20 µs, a tenth of a one-row read.
    """

    #: A connection idle this long (seconds) is checked before use: a write sends
    #: its COMMIT with its statements, so a connection found dead under it could
    #: only be reported ("may or may not have been applied"), never retried.
    check_after_idle = 10.0

    def __init__(self, dsn: str, *, size: int, timeout: float, retries: int, where: str,
                 isolation: str = "read committed") -> None:
        self.dsn = dsn
        self.size = size
        self.timeout = timeout
        self.retries = retries
        #: The database as messages name it.
        self.where = where
        # What a connection for writes sent alone is set to.
        self._writes = ("SET default_transaction_read_only = off; "
                        f"SET default_transaction_isolation = '{isolation}'")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[tuple[_Connection, float]] = []  # and since when
        self._opened = 0  # connections open or opening, idle or not
        self._waiting: deque[asyncio.Future[_Connection | None]] = deque()
        self._closed = False
        # Group commit: the writes of one statement waiting for the next group.
        self._queue: GroupQueue[_Queued] = GroupQueue(self._commit_group, _GROUP_LIMIT)

    def serves(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether calls from ``loop`` can use these connections."""
        return not self._closed and (self._loop is None or self._loop is loop)

    async def read(self, reads: Statements, snapshot: bool) -> list[Fetched]:
        """Each statement's rows; again on a new connection if the old one was lost."""
        for attempt in range(self.retries + 1):
            conn = await self._take()
            try:
                return await _read(conn, reads, snapshot)
            except psycopg.Error as exc:
                lost = _lost(conn)
                # Not used again: in a pipeline, a PREPARE queued behind the
                # failed statement was skipped, which psycopg may count as done.
                _close(conn)
                if not lost or attempt == self.retries:
                    raise translate(exc, self.where, self.timeout) from exc
            finally:
                self._give_back(conn)
            await asyncio.sleep(retry_delay(attempt))
        raise AssertionError("unreachable")

    async def write(self, writes: Statements, begin: str, *, group: bool = False) -> list[Fetched]:
        """Run the statements in one transaction (``begin`` opens it, unless there
        is one statement: it is its own); each one's rows. With ``group``, a
        write of one statement that arrives while another runs joins the next
        group commit.

        Run again after a serialization failure or a deadlock. A lost connection
        is reported, never retried: the COMMIT went with the statements.
        """
        if len(writes.statements) != 1:
            return await self._attempts(lambda conn: _write(conn, writes, begin), writes=False)
        if not group:
            return [await self._alone(writes)]
        loop = asyncio.get_running_loop()
        if self._queue.loop is loop:
            return await self._queue.join(_Queued(writes, loop.create_future()))  # type: ignore[no-any-return]
        self._queue.loop = loop
        try:
            return [await self._alone(writes)]
        finally:
            self._queue.done()

    async def drained(self) -> None:
        """Return when no write of one statement runs or waits (before closing)."""
        await self._queue.idle()

    async def _alone(self, writes: Statements) -> Fetched:
        return await self._attempts(lambda conn: _one(conn, writes), writes=True)

    async def _attempts(
        self, call: Callable[[_Connection], Awaitable[T]], *, writes: bool
    ) -> T:
        for attempt in range(self.retries + 1):
            conn = await self._take(writes=writes)
            try:
                return await call(conn)
            except RETRY as exc:
                _close(conn)
                if attempt == self.retries:
                    raise conflicts(self.where, attempt + 1, exc) from exc
            except psycopg.Error as exc:
                lost = _lost(conn)
                _close(conn)
                if lost:
                    raise lost_during_commit(self.where) from exc
                raise translate(exc, self.where, self.timeout) from exc
            finally:
                self._give_back(conn)
            await asyncio.sleep(retry_delay(attempt))
        raise AssertionError("unreachable")

    async def _commit_group(self, group: list[_Queued]) -> None:
        try:
            if len(group) > 1:
                try:
                    results = await self._attempts(
                        lambda conn: _write_group(conn, [e.writes for e in group]), writes=True)
                except LostDuringCommit as exc:  # nobody can tell: each caller is told so
                    for entry in group:
                        _answer(entry, exc)
                    return
                except MemkitError:
                    pass  # one failed, or conflicts outlasted the retries: each alone below
                else:
                    for entry, fetched in zip(group, results, strict=True):
                        _answer(entry, [fetched])
                    return
            for entry in group:
                try:
                    outcome: list[Fetched] | Exception = [await self._alone(entry.writes)]
                except Exception as exc:
                    outcome = exc
                _answer(entry, outcome)
        except BaseException:  # cancelled: the loop is shutting down
            for entry in group:
                entry.future.cancel()
            raise

    def close(self) -> None:
        """Close the idle connections; one in use closes when it comes back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            _close(conn)

    async def _take(self, writes: bool = False) -> _Connection:
        """A connection set up for ``writes`` (or not): one idle of that kind, a new
        one, one idle of the other kind switched over, or the next one given back."""
        while True:
            conn = await self._any(writes)
            if conn.writes == writes:
                return conn
            try:
                await conn.execute(self._writes if writes else _READS)
            except psycopg.Error:  # lost while idle: nothing was sent for the call yet
                self._drop(conn)
                continue
            except BaseException:
                self._drop(conn)
                raise
            conn.writes = writes
            return conn

    async def _any(self, writes: bool) -> _Connection:
        self._loop = self._loop or asyncio.get_running_loop()
        while True:
            index = self._idle_index(writes)
            if index is not None:
                idle, since = self._idle.pop(index)
                if time.monotonic() - since < self.check_after_idle:
                    return idle
                try:
                    alive = await _alive(idle)
                except BaseException:  # cancelled while checking: not lost from the count
                    self._drop(idle)
                    raise
                if alive:
                    return idle
                self._drop(idle)
                continue
            if self._opened < self.size:
                self._opened += 1
                try:
                    return await self._connect(writes)
                except BaseException:
                    self._opened -= 1
                    self._hand_over(None)
                    raise
            waiter = self._loop.create_future()
            self._waiting.append(waiter)
            try:
                conn: _Connection | None = await asyncio.wait_for(
                    waiter, self.timeout)
            except TimeoutError:
                raise MemkitError(
                    f"no connection within {self.timeout:g} s: all {self.size} are busy") from None
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self._give_back(waiter.result())  # handed over as the caller left
                raise
            if conn is not None:
                return conn
            # None: a connection was dropped, so there is room to open one.

    def _idle_index(self, writes: bool) -> int | None:
        """Which idle connection to take: the latest of the kind; else, when no
        more may be opened, the latest of the other kind (switched over after)."""
        for index in range(len(self._idle) - 1, -1, -1):
            if self._idle[index][0].writes == writes:
                return index
        return -1 if self._idle and self._opened >= self.size else None

    def _give_back(self, conn: _Connection) -> None:
        if self._closed or _lost(conn) or (
                conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
            self._drop(conn)
        elif not self._hand_over(conn):
            self._idle.append((conn, time.monotonic()))

    def _drop(self, conn: _Connection) -> None:
        self._opened -= 1
        _close(conn)
        self._hand_over(None)

    def _hand_over(self, conn: _Connection | None) -> bool:
        """Give ``conn`` (or, with None, room for a new one) to the first live waiter."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    async def _connect(self, writes: bool) -> _Connection:
        try:
            conn = await _Connection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, round(self.timeout)))
        except psycopg.Error as exc:
            raise translate(exc, self.where, self.timeout) from exc
        try:
            await _configure(conn)
            if writes:
                await conn.execute(self._writes)
                conn.writes = True
        except BaseException:
            _close(conn)
            raise
        return conn


def _lost(conn: psycopg.AsyncConnection[Any]) -> bool:
    return conn.closed or conn.broken


async def _alive(conn: psycopg.AsyncConnection[Any]) -> bool:
    try:
        await conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    # What AsyncConnection.close does, without awaiting: it works from any event
    # loop, or none, which close() and a connection dropped mid-read need.
    if not conn.closed:
        conn.pgconn.finish()


async def _one(conn: psycopg.AsyncConnection[Any], call: Statements) -> Fetched:
    """The one statement of ``call``, alone: no pipeline, no transaction block."""
    cursor = await conn.execute(*statement(*call.statements[0]))
    return Fetched(_names(cursor, call), await cursor.fetchall())


async def _read(conn: psycopg.AsyncConnection[Any], reads: Statements,
                snapshot: bool) -> list[Fetched]:
    if len(reads.statements) == 1 and not snapshot:
        return [await _one(conn, reads)]
    async with conn.pipeline():
        if snapshot:
            await conn.execute(_SNAPSHOT)
        cursors = [await conn.cursor().execute(*statement(sql, params))
                   for sql, params in reads.statements]
        if snapshot:
            await conn.execute("ROLLBACK")  # a read has nothing to commit
    return [Fetched(_names(cursor, reads), await cursor.fetchall()) for cursor in cursors]


async def _write_group(conn: psycopg.AsyncConnection[Any],
                       group: list[Statements]) -> list[Fetched]:
    """Writes of one statement each, in one transaction (the connection's
    default: read-write), pipelined; each one's rows."""
    async with conn.pipeline():
        await conn.execute("BEGIN")
        cursors = [await conn.cursor().execute(*statement(*writes.statements[0]))
                   for writes in group]
        await conn.execute("COMMIT")
    return [Fetched(_names(cursor, writes), await cursor.fetchall())
            for cursor, writes in zip(cursors, group, strict=True)]


def _answer(entry: _Queued, outcome: list[Fetched] | BaseException) -> None:
    if entry.future.done():
        return
    if isinstance(outcome, BaseException):
        entry.future.set_exception(outcome)
    else:
        entry.future.set_result(outcome)


async def _write(conn: psycopg.AsyncConnection[Any], writes: Statements,
                 begin: str) -> list[Fetched]:
    async with conn.pipeline():
        await conn.execute(begin)
        cursors = [await conn.cursor().execute(*statement(sql, params))
                   for sql, params in writes.statements]
        await conn.execute("COMMIT")
    return [Fetched(_names(cursor, writes), await cursor.fetchall()) for cursor in cursors]


def _names(cursor: psycopg.AsyncCursor[Any], reads: Statements) -> tuple[str, ...]:
    return column_names(cursor) if reads.named else ()


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set up a new connection as the engine's threads' connections are."""
    configure(conn)
    await conn.execute(SESSION_SETTINGS)
    cursor = await conn.execute("SELECT to_regtype('vector') IS NOT NULL")
    row = await cursor.fetchone()
    if row is not None and row[0]:
        from pgvector.psycopg import register_vector_async

        await register_vector_async(conn)
