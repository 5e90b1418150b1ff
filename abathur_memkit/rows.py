"""Rows as the services return them: plain dicts with their JSON columns parsed.

The functions take the DB-API connection that ``Database.read``/``write`` pass
to their function, so a service reads and decodes in one hop.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from .engines.interface import Connection
from .errors import MemkitError, NotFoundError
from .values import from_json

__all__ = [
    "Row",
    "Rows",
    "decode",
    "exists",
    "fetch_all",
    "fetch_one",
    "insert_row",
    "require_row",
    "time_range",
]

Row = dict[str, Any]
# An alias, so classes with a ``list`` method can still name the type.
Rows = list[Row]


def decode(row: Any, json_columns: Collection[str] = ()) -> Row:
    """A driver row as a dict, the named JSON columns parsed (NULL stays None)."""
    out = dict(row)
    for column in json_columns:
        out[column] = from_json(out[column])
    return out


def fetch_one(
    conn: Connection, sql: str, params: Sequence[Any], json_columns: Collection[str] = ()
) -> Row | None:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else decode(row, json_columns)


def fetch_all(
    conn: Connection, sql: str, params: Sequence[Any], json_columns: Collection[str] = ()
) -> Rows:
    return [decode(row, json_columns) for row in conn.execute(sql, params)]


def insert_row(conn: Connection, sql: str, params: Sequence[Any], dialect: str | None) -> int:
    """Run a one-row INSERT (written without RETURNING); return the new row's id.

    SQLite reports the id as ``lastrowid``; PostgreSQL, or an engine not named
    (``None``), returns it with ``RETURNING id``, which SQLite would run a little slower.
    """
    if dialect == "sqlite":
        row_id = conn.execute(sql, params).lastrowid
        if row_id is None:  # never for a one-row INSERT on SQLite
            raise MemkitError("SQLite did not report the id of the inserted row")
        return row_id
    return int(conn.execute(f"{sql} RETURNING id", params).fetchone()[0])


def exists(conn: Connection, table: str, row_id: str) -> bool:
    """Whether ``table`` (one of ours, never caller input) has a row with that id."""
    return conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is not None


def require_row(conn: Connection, table: str, row_id: str, label: str) -> None:
    """Raise ``NotFoundError("<label> <id> not found")`` unless ``table`` has that id.

    Checked before an insert that references the row, so the caller gets that
    message rather than a bare FOREIGN KEY failure.
    """
    if not exists(conn, table, row_id):
        raise NotFoundError(f"{label} {row_id} not found")


def time_range(
    column: str, since: str | None, until: str | None
) -> tuple[list[str], list[Any]]:
    """WHERE terms for ``since <= column < until``; either bound may be None.

    Terms are added only for given bounds, so the range reaches the index
    (``? IS NULL OR ...`` would hide it from the planner).
    """
    terms: list[str] = []
    params: list[Any] = []
    if since is not None:
        terms.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        terms.append(f"{column} < ?")
        params.append(until)
    return terms, params
