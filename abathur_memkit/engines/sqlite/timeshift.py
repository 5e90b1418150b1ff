"""Rewrite timestamp columns in place: how ``memkit simulate --days`` spreads a run over days.

The tool says which columns and how each value moves; this module holds the
SQLite of it (the columns are TEXT; a Python function does the mapping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..interface import Connection

__all__ = ["present_columns", "rewrite_timestamps", "timestamp_bounds"]


def present_columns(
    conn: Connection, columns: Mapping[str, Sequence[str]]
) -> list[tuple[str, str]]:
    """``(table, column)`` of ``columns`` whose table exists in this database."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return [(t, c) for t, names in columns.items() if t in tables for c in names]


def timestamp_bounds(
    conn: Connection, columns: Sequence[tuple[str, str]], since: str
) -> list[tuple[str, str]]:
    """The (min, max) of each column's values ``>= since``, for columns that have any."""
    # Unary +: a TIMESTAMP column has NUMERIC affinity, which would turn a bound
    # like "2026" into a number (and every text sorts after numbers).
    bounds = [conn.execute(f'SELECT min("{c}"), max("{c}") FROM "{t}" WHERE +"{c}" >= ?',
                           (since,)).fetchone() for t, c in columns]
    return [(lo, hi) for lo, hi in bounds if lo is not None]


def rewrite_timestamps(
    conn: Connection, columns: Sequence[tuple[str, str]], since: str,
    move: Callable[[str | None], str | None],
) -> int:
    """Set each value ``>= since`` of ``columns`` to ``move(value)``; return values changed.

    ``conn`` must be a ``sqlite3`` connection inside a write transaction.
    """
    create_function = getattr(conn, "create_function")  # noqa: B009 - sqlite3 only
    create_function("memkit_backdate", 1, move, deterministic=True)
    changed = 0
    try:
        for table, column in columns:
            changed += conn.execute(
                f'UPDATE "{table}" SET "{column}" = memkit_backdate("{column}") '
                f'WHERE +"{column}" >= ?', (since,)).rowcount
    finally:
        create_function("memkit_backdate", 1, None)
    return changed
