"""pandas loaders for the tables: one DataFrame row per table row.

Each loader comes twice: ``await load_audit(db)`` reads through a
:class:`~abathur_memkit.Database` (any, in-memory ones too) and
``load_audit_sync(path)`` opens the file read-only, for scripts and notebooks
that have no Database at hand. Timestamps become timezone-aware UTC
``datetime64`` columns; JSON columns become Python objects (NULL stays None).

The loaders of the tables ``memkit archive`` moves rows out of (audit,
memory_entries, sessions, session_events) take ``archive=`` an archive file:
its rows are added to the main file's, in the same order. A row in both files
(an archive run killed between a batch's copy and its delete) is the main
file's; a session's ``event_count`` adds up its events in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..archive import ARCHIVED_TABLES
from ..engines.interface import Connection
from ..errors import InvalidInputError
from ..values import from_json
from .optional import pandas
from .queries import TABLES, Table
from .sources import Source, connect_readonly

if TYPE_CHECKING:
    from ..database import Database

__all__ = [
    "TABLES",
    "load_audit",
    "load_audit_sync",
    "load_events",
    "load_events_sync",
    "load_memories",
    "load_memories_sync",
    "load_metrics",
    "load_metrics_sync",
    "load_sessions",
    "load_sessions_sync",
    "load_table",
    "load_table_sync",
]


def _spec(table: str) -> Table:
    try:
        return TABLES[table]
    except KeyError:
        raise InvalidInputError(
            f"Invalid table: {table!r} (loadable: {', '.join(sorted(TABLES))})"
        ) from None


def _fetch(conn: Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples, whatever the connection's row factory
    cursor.execute(sql)
    columns = [d[0] for d in cursor.description]
    return columns, cursor.fetchall()


def _merge_archive(table: str, spec: Table, columns: Sequence[str],
                   rows: list[tuple[Any, ...]], archive: Source) -> list[tuple[Any, ...]]:
    """``rows`` plus the archive's rows of ``table`` that are not in ``rows``, in order."""
    if table not in ARCHIVED_TABLES:
        raise InvalidInputError(
            f"Invalid table for archive=: {table!r} (archived: {', '.join(ARCHIVED_TABLES)})")
    with connect_readonly(archive) as conn:
        archived_columns, archived = _fetch(conn, spec.sql)
    # Archive columns by name: the file may come from an older schema's run.
    picks = [archived_columns.index(c) if c in archived_columns else None for c in columns]
    archived = [tuple(None if i is None else row[i] for i in picks) for row in archived]
    names = list(columns)
    key = [names.index(c) for c in ARCHIVED_TABLES[table]]

    def key_of(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(row[i] for i in key)

    in_main = {key_of(row) for row in rows}
    if "event_count" in names:  # a session in both files: its events in both
        count = names.index("event_count")
        archived_counts = {key_of(row): row[count] or 0 for row in archived}
        rows = [(*row[:count], row[count] + archived_counts.get(key_of(row), 0),
                 *row[count + 1:]) for row in rows]
    merged = rows + [row for row in archived if key_of(row) not in in_main]
    order = [names.index(c) for c in spec.order]
    return sorted(merged, key=lambda row: tuple(row[i] for i in order))


def _frame(spec: Table, columns: Sequence[str], rows: list[tuple[Any, ...]],
           parse_json: bool) -> Any:
    pd = pandas()
    data: dict[str, Any] = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    for column in spec.json_columns if parse_json else ():
        if column in data:
            # Parsed before pandas sees them: a NULL stays None, never NaN.
            data[column] = pd.Series([from_json(v) for v in data[column]], dtype=object)
    df = pd.DataFrame(data, columns=list(columns))
    for column in spec.time_columns:
        if column in df.columns:
            df[column] = pd.to_datetime(df[column], format="ISO8601", utc=True)
    for column in spec.bool_columns:
        if column in df.columns:
            df[column] = df[column].astype(bool)
    return df


async def load_table(db: Database, table: str, *, parse_json: bool = True,
                     archive: Source | None = None) -> Any:
    """Every row of ``table`` (a key of :data:`TABLES`) as a DataFrame
    (with ``archive=``, the archive file's rows too)."""
    spec = _spec(table)
    pandas()  # fail before touching the database when pandas is missing
    columns, rows = await db.read(lambda conn: _fetch(conn, spec.sql), snapshot=True)
    if archive is not None:
        rows = _merge_archive(table, spec, columns, rows, archive)
    return _frame(spec, columns, rows, parse_json)


def load_table_sync(source: Source, table: str, *, parse_json: bool = True,
                    archive: Source | None = None) -> Any:
    """``load_table`` for a database file (or a file-backed Database), read-only."""
    spec = _spec(table)
    pandas()
    with connect_readonly(source) as conn:
        columns, rows = _fetch(conn, spec.sql)
    if archive is not None:
        rows = _merge_archive(table, spec, columns, rows, archive)
    return _frame(spec, columns, rows, parse_json)


async def load_audit(db: Database, *, archive: Source | None = None) -> Any:
    """The audit trail, oldest first: one row per action."""
    return await load_table(db, "audit", archive=archive)


def load_audit_sync(source: Source, *, archive: Source | None = None) -> Any:
    return load_table_sync(source, "audit", archive=archive)


async def load_memories(db: Database, *, parse_json: bool = True,
                        archive: Source | None = None) -> Any:
    """Every version of every memory (deleted ones included), by id."""
    return await load_table(db, "memory_entries", parse_json=parse_json, archive=archive)


def load_memories_sync(source: Source, *, parse_json: bool = True,
                       archive: Source | None = None) -> Any:
    return load_table_sync(source, "memory_entries", parse_json=parse_json, archive=archive)


async def load_sessions(db: Database, *, archive: Source | None = None) -> Any:
    """Sessions (without their events) plus ``event_count``, oldest first."""
    return await load_table(db, "sessions", archive=archive)


def load_sessions_sync(source: Source, *, archive: Source | None = None) -> Any:
    return load_table_sync(source, "sessions", archive=archive)


async def load_events(db: Database, *, archive: Source | None = None) -> Any:
    """Every session event, by session and sequence number."""
    return await load_table(db, "session_events", archive=archive)


def load_events_sync(source: Source, *, archive: Source | None = None) -> Any:
    return load_table_sync(source, "session_events", archive=archive)


async def load_metrics(db: Database) -> Any:
    """Every metric measurement, oldest first."""
    return await load_table(db, "metrics")


def load_metrics_sync(source: Source) -> Any:
    return load_table_sync(source, "metrics")
