"""What a service may ask of a database engine: the seam between the two.

A service never holds an engine's connections. It hands a function of one
connection to ``Store.read`` (a reader, optionally in one snapshot) or to
``Store.write`` (the writer, in one transaction that commits when the function
returns and rolls back when it raises), and gets the function's result back.
The function runs on the connection's own thread, so a whole transaction costs
one hop however many statements it runs. A call whose statements need no
result of another's can be given as ``Statements`` (a function too), which an
engine may send without the hop.

``Connection``, ``Cursor`` and ``Record`` name the part of DB-API 2 the
services use; SQLite's ``sqlite3`` objects satisfy them as they are, and an
engine for another database adapts its driver's objects to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "AsyncOpen", "CallObserver", "Connection", "Cursor", "Engine", "Fetched", "Params", "Record",
    "Statements", "Store",
]

T = TypeVar("T")

#: Statement parameters: positional (``?``) or named (``:name``).
Params = Sequence[Any] | Mapping[str, Any]


class Record(Protocol):
    """A result row: by column name and by position, like ``sqlite3.Row``."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> list[str]: ...
    def __len__(self) -> int: ...


class Cursor(Protocol):
    """The cursor a statement returns."""

    #: How rows are built; None gives plain tuples (the fastest to decode).
    row_factory: Any

    @property
    def rowcount(self) -> int: ...
    @property
    def lastrowid(self) -> int | None: ...
    @property
    def description(self) -> Any:
        """DB-API: one entry per result column, whose first item is its name."""
        ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """One connection, as a function passed to ``Store.read``/``write`` sees it."""

    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...
    def cursor(self) -> Cursor: ...
    @property
    def in_transaction(self) -> bool: ...


@runtime_checkable
class Store(Protocol):
    """The one thing every service needs: run a function in a read or a write.

    ``dialect`` names the engine's SQL ("sqlite", "postgresql"): the one fact a
    service needs to pick its statements where the two differ.
    """

    @property
    def dialect(self) -> str: ...

    async def read(self, fn: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        """Run ``fn(conn)`` on a reader; ``snapshot`` runs it in one read transaction."""
        ...

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction on the writer: commit, or roll back if it raises."""
        ...


class Fetched(NamedTuple):
    """One statement's result: its column names (if asked for) and its rows as plain tuples."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


class Statements:
    """A read or a write given as its statements, none of whose parameters depend
    on another's rows, each of which returns rows (a write's says RETURNING).

    It is a function of a connection like any other (``store.read(Statements(...))``
    and ``store.write(...)`` run it on every ``Store``) and returns one ``Fetched``
    per statement. An engine may send the statements itself instead of calling
    it: PostgreSQL's sends them from the event loop, all in one round trip
    (a write's with its BEGIN and COMMIT, or alone if it is one statement),
    without a thread hop.
    """

    __slots__ = ("named", "operation", "statements")

    def __init__(self, operation: str, *statements: tuple[str, Params],
                 named: bool = False) -> None:
        #: The public method it serves, as latency metrics name it.
        self.operation = operation
        self.statements = statements
        #: Whether each result carries its column names (else ``columns`` is empty).
        self.named = named

    def __call__(self, conn: Connection) -> list[Fetched]:
        results = []
        for sql, params in self.statements:
            cursor = conn.cursor()
            cursor.row_factory = None  # plain tuples: the cheapest rows to build
            rows = cursor.execute(sql, params).fetchall()
            # SQLite builds the description anew on each access: only when asked.
            names = tuple(d[0] for d in cursor.description or ()) if self.named else ()
            results.append(Fetched(names, rows))
        return results


class Engine(Store, Protocol):
    """A database engine: a ``Store`` with a lifecycle, its SQL dialect and maintenance.

    One implementation per engine (``engines/sqlite``); the ``Database`` facade
    builds one and hands it, as a ``Store``, to every service.
    """

    @property
    def path(self) -> str:
        """Where the database lives: a path, ":memory:" or a DSN."""
        ...

    @property
    def read_only(self) -> bool:
        """Opened without write access: every write is refused."""
        ...

    async def initialize(self) -> list[int]:
        """Open, configure and migrate; return the schema versions applied."""
        ...

    async def close(self) -> None:
        """Close every connection (writes already queued run first)."""
        ...

    async def schema_version(self) -> int:
        """The version of the newest migration applied."""
        ...

    async def integrity_check(self) -> list[str]:
        """``["ok"]`` when the database is sound, else one line per problem."""
        ...

    async def query_plan(
        self, sql: str, params: Sequence[Any] = ()
    ) -> list[tuple[int, int, str]]:
        """The plan of ``sql`` as ``(id, parent, detail)`` rows."""
        ...


class CallObserver(Protocol):
    """Told by an engine of each read and write it ran (e.g. to record latency)."""

    async def record(self, store: Store, fn: Callable[..., Any], started: float) -> None:
        """``fn`` finished on ``store``; it started at ``time.perf_counter()`` ``started``."""
        ...

    async def flush(self, store: Store) -> None:
        """Write what was recorded through ``store`` (called before it closes)."""
        ...


class AsyncOpen:
    """``async with x:`` opens with ``await x.initialize()`` and ends with ``await x.close()``."""

    async def initialize(self) -> list[int]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
