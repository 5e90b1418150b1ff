"""psycopg's connection as ``engines.interface.Connection`` shows it to a service.

The services write SQLite's SQL: ``?`` (or ``:name``) placeholders, rows read
by name and by position, JSON and timestamps read back as text. The adapter
converts the placeholders to psycopg's (``%s``, ``%(name)s``; a literal ``%``
doubled), outside string literals, quoted names, comments and dollar quotes,
and configures psycopg's loaders so a row holds what it holds on SQLite:

- ``jsonb``/``json`` as the JSON text (the services decode it themselves);
- ``timestamp`` as text in ``values.timestamp``'s layout;
- ``numeric`` (``sum``/``avg`` of integers) as ``int`` or ``float``, not ``Decimal``;
- a Python ``bool`` parameter as ``0``/``1`` (flags are ``smallint`` columns).

A ``?`` always means a parameter, as on SQLite: jsonb's ``?``/``?|``/``?&``
operators must be spelled as functions (``jsonb_exists``). PostgreSQL has no
``lastrowid``: ``cursor.lastrowid`` is always ``None``; an INSERT that needs
its new id says ``RETURNING id`` (which SQLite supports too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar, SupportsIndex, overload

import psycopg
from psycopg import pq
from psycopg.adapt import Loader
from psycopg.rows import RowMaker, tuple_row
from psycopg.types.numeric import Int2Dumper

from ..interface import Params

__all__ = [
    "SESSION_SETTINGS", "PgConnection", "PgCursor", "Row", "StatementCursor", "column_names",
    "configure", "convert", "row_factory", "statement",
]

#: Set on every connection of the engine: reads cannot write, times are UTC, and
#: timestamps are spelled as the loaders expect.
SESSION_SETTINGS = (
    "SET default_transaction_read_only = on; SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'"
)

# What a placeholder cannot be inside: string literals (standard, and E'' with
# backslash escapes), quoted names, comments, dollar-quoted bodies, and the
# ``::`` cast (so ``x::text`` is not the named parameter ``:text``).
_TOKENS = re.compile(
    r"""
    (?P<skip>
        (?<![\w$])[eE]'(?:[^'\\]|\\.|'')*'
      | '(?:[^']|'')*'
      | "(?:[^"]|"")*"
      | --[^\n]*
      | /\*.*?\*/
      | (?<![\w$])\$(?P<tag>[A-Za-z_]\w*|)\$.*?\$(?P=tag)\$
      | ::
    )
    | (?P<qmark>\?)
    | (?<![\w:])(?P<named>:[A-Za-z_]\w*)
    | (?P<percent>%)
    """,
    re.S | re.X,
)


@lru_cache(maxsize=1024)
def convert(sql: str, named: bool = False) -> str:
    """SQLite's placeholders in ``sql`` as psycopg's: ``?`` → ``%s``, ``:name`` → ``%(name)s``.

    ``:name`` is converted only when ``named`` (the parameters are a mapping).
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("skip"):
            return match.group(0).replace("%", "%%")
        if match.group("qmark"):
            return "%s"
        if match.group("percent"):
            return "%%"
        name = match.group("named")
        if name and named:
            return f"%({name[1:]})s"
        return match.group(0)

    return _TOKENS.sub(replace, sql)


class Row(tuple[Any, ...]):
    """A result row by position and by column name, like ``sqlite3.Row``.

    One subclass per column list (cached), whose ``_index`` maps names to positions.
    """

    __slots__ = ()
    _names: ClassVar[tuple[str, ...]] = ()
    _index: ClassVar[dict[str, int]] = {}

    @overload
    def __getitem__(self, key: SupportsIndex | str, /) -> Any: ...
    @overload
    def __getitem__(self, key: slice, /) -> tuple[Any, ...]: ...

    def __getitem__(self, key: SupportsIndex | str | slice, /) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    # With duplicate names (a join's two "id"s) the first wins, as in sqlite3.Row.
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)
    return type("Row", (Row,), {"__slots__": (), "_names": names, "_index": index})


def _no_rows(values: Sequence[Any]) -> Row:
    return Row(values)


def column_names(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> tuple[str, ...]:
    """The names of the columns of the cursor's result (none without one)."""
    # From the result itself: ``description`` builds a Column object per
    # column, which costs as much as decoding a row.
    result = cursor.pgresult
    if result is None:
        return ()
    encoding = cursor.connection.info.encoding
    return tuple((result.fname(i) or b"").decode(encoding) for i in range(result.nfields))


def row_factory(cursor: Any) -> RowMaker[Row]:
    """psycopg row factory: ``Row`` objects named by the cursor's columns."""
    names = column_names(cursor)
    return _row_class(names) if names else _no_rows


class PgCursor(psycopg.Cursor[Row]):
    """psycopg's cursor with the DB-API ``lastrowid`` the interface names (always ``None``).

    In a pipeline (a write) a statement's results arrive when they are read:
    ``rowcount`` and ``description`` wait for them as ``fetchone`` does.
    """

    @property
    def lastrowid(self) -> int | None:
        return None

    @property
    def rowcount(self) -> int:
        self._fetch_pipeline()
        return super().rowcount

    @property
    def description(self) -> list[psycopg.Column] | None:
        self._fetch_pipeline()
        return super().description


class PgConnection:
    """One psycopg connection as a service's function sees it (``interface.Connection``)."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Row]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Params | None = None, /) -> PgCursor:
        query, params = statement(sql, parameters)
        cursor = self.raw.cursor()
        cursor.execute(query, params)
        return cursor  # type: ignore[return-value]

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> PgCursor:
        rows = list(parameters)
        named = bool(rows) and isinstance(rows[0], Mapping)
        cursor = self.raw.cursor()
        cursor.executemany(convert(sql, named), rows)
        return cursor  # type: ignore[return-value]

    def cursor(self) -> StatementCursor:
        return StatementCursor(self.raw.cursor())

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE


class StatementCursor:
    """A cursor of ``PgConnection.cursor()``: SQLite's placeholders, and
    ``row_factory = None`` for plain tuples, as on a ``sqlite3`` cursor."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Cursor[Any]) -> None:
        self.raw = raw

    @property
    def row_factory(self) -> Any:
        return self.raw.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self.raw.row_factory = tuple_row if factory is None else factory

    def execute(self, sql: str, parameters: Params | None = None, /) -> StatementCursor:
        self.raw.execute(*statement(sql, parameters))
        return self

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount

    @property
    def description(self) -> Any:
        """The columns of the last result, as DB-API describes them (``d[0]`` is the name)."""
        return self.raw.description

    @property
    def lastrowid(self) -> int | None:
        return None

    def fetchone(self) -> Any:
        return self.raw.fetchone()

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.raw)


def statement(sql: str, parameters: Params | None) -> tuple[Any, Any]:
    """``sql`` and ``parameters`` as psycopg takes them."""
    # Without parameters the text goes as it is: psycopg then reads no
    # placeholders (and a script of several statements is allowed).
    if not parameters:
        return sql, None
    return convert(sql, isinstance(parameters, Mapping)), parameters


class _TextLoader(Loader):
    """A column as the text PostgreSQL sends (JSON stays JSON text)."""

    def load(self, data: Any) -> str:
        return bytes(data).decode("utf-8")


class _TimestampLoader(Loader):
    """``timestamp`` as ``YYYY-MM-DD HH:MM:SS.ffffff``, the layout memkit writes."""

    def load(self, data: Any) -> str:
        text = bytes(data).decode("ascii")
        if len(text) != 19 and not (len(text) > 20 and text[19] == "."):
            return text  # infinity, BC dates: as PostgreSQL spells them
        seconds, _, fraction = text.partition(".")
        return f"{seconds}.{fraction.ljust(6, '0')}"


class _NumericLoader(Loader):
    """``numeric`` as ``int`` when whole, else ``float`` (SQLite has no decimals)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode("ascii")
        return int(text) if text.lstrip("-").isdigit() else float(text)


class _BoolAsIntDumper(Int2Dumper):
    """A ``bool`` parameter as ``smallint`` 1/0: SQLite's flags are integers."""

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def configure(raw: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Set the loaders and dumpers above on one connection."""
    adapters = raw.adapters
    for name in ("json", "jsonb"):
        adapters.register_loader(name, _TextLoader)
    adapters.register_loader("timestamp", _TimestampLoader)
    adapters.register_loader("numeric", _NumericLoader)
    adapters.register_dumper(bool, _BoolAsIntDumper)

