"""The read model of the analysis toolkit: every query it runs on memkit's tables.

The loaders and the growth and storage reports open a database file read-only
(or read through a Database) and hand what they fetch to pandas; the SQL they
run on the services' tables is all here, so a change of schema is one file's
change. Queries on SQLite's own catalog (``dbstat``, ``sqlite_master``, PRAGMAs)
stay with the storage report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engines.interface import Connection

__all__ = [
    "DOCUMENTS_WITHOUT_CHUNKS", "KINDS", "REPORT_COUNTS", "TABLES", "Kind", "Table", "group_rows",
]

# -- whole tables, for the loaders -----------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """What a loader runs on one table and how its columns convert."""

    sql: str
    json_columns: tuple[str, ...] = ()
    time_columns: tuple[str, ...] = ()
    bool_columns: tuple[str, ...] = ()
    order: tuple[str, ...] = ()  # the ORDER BY, for rows merged from an archive


#: What each loadable table's loader runs and converts.
TABLES: dict[str, Table] = {
    "audit": Table("SELECT * FROM audit ORDER BY timestamp, id",
                   ("action_data",), ("timestamp",), order=("timestamp", "id")),
    "memory_entries": Table("SELECT * FROM memory_entries ORDER BY id",
                            ("value", "metadata"), ("created_at", "updated_at"),
                            ("is_deleted",), order=("id",)),
    # event_count: one seek per session on session_events' primary key.
    "sessions": Table(
        "SELECT s.*, (SELECT count(*) FROM session_events AS e WHERE e.session_id = s.id) "
        "AS event_count FROM sessions AS s ORDER BY s.created_at, s.id",
        ("state", "metadata"), ("created_at", "last_update_time", "terminated_at", "archived_at"),
        order=("created_at", "id")),
    "session_events": Table("SELECT * FROM session_events ORDER BY session_id, seq",
                            ("event",), ("created_at",), order=("session_id", "seq")),
    "metrics": Table("SELECT * FROM metrics ORDER BY timestamp, id",
                     ("labels",), ("timestamp",)),
    "tasks": Table("SELECT * FROM tasks ORDER BY submitted_at, id",
                   ("input_data", "result_data", "dependencies"),
                   ("submitted_at", "started_at", "completed_at", "last_updated_at")),
    "agents": Table("SELECT * FROM agents ORDER BY spawned_at, id",
                    ("resource_usage",), ("spawned_at", "terminated_at")),
    "checkpoints": Table("SELECT * FROM checkpoints ORDER BY task_id, iteration",
                         ("state",), ("created_at",)),
}


# -- rows per day, for the growth report -------------------------------------------------------


def _scope(column: str) -> str:
    """SQL for the scope of a ``scope:id[:more]`` namespace column (NULL if none)."""
    return (f"CASE WHEN instr({column}, ':') > 0 "
            f"THEN substr({column}, 1, instr({column}, ':') - 1) END")


@dataclass(frozen=True)
class Kind:
    """A kind of stored item: the table whose rows are counted and when each was written."""

    name: str
    table: str
    time: str  # SQL for the row's time, on alias t (or a joined alias)
    scope: str = "NULL"
    memory_type: str = "NULL"
    join: str = ""
    rows: str = "count(*)"


#: The kinds, in the order reports list them.
KINDS = (
    Kind("memory", "memory_entries", "t.created_at", _scope("t.namespace"), "t.memory_type"),
    Kind("event", "session_events", "t.created_at", "'session'"),
    Kind("document_chunk", "document_chunks", "d.created_at",
         join="JOIN document_index AS d ON d.id = t.document_id"),
    Kind("audit", "audit", "t.timestamp", _scope("t.memory_namespace")),
    Kind("session", "sessions", "t.created_at"),
    Kind("task", "tasks", "t.submitted_at"),
    Kind("agent", "agents", "t.spawned_at"),
    Kind("checkpoint", "checkpoints", "t.created_at"),
    Kind("metric", "metrics", "t.timestamp"),
    Kind("state", "state", "t.created_at"),
)

#: Document chunks before the search migration: counted from document_index.chunk_count.
DOCUMENTS_WITHOUT_CHUNKS = Kind("document_chunk", "document_index", "t.created_at",
                                rows="sum(coalesce(t.chunk_count, 1))")


def _payload_sql(conn: Connection, table: str) -> str:
    columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
    terms = [f'coalesce(length(CAST(t."{c}" AS BLOB)), 0)' for c in columns]
    return " + ".join(terms) or "0"


def group_rows(conn: Connection, kind: Kind) -> list[tuple[Any, ...]]:
    """(kind, day, scope, memory_type, rows, payload_bytes, first_time, last_time) per group."""
    sql = (
        f"SELECT substr({kind.time}, 1, 10) AS day, {kind.scope} AS scope, "
        f"{kind.memory_type} AS memory_type, {kind.rows} AS rows, "
        f"sum({_payload_sql(conn, kind.table)}) AS payload_bytes, "
        f"min({kind.time}) AS first_time, max({kind.time}) AS last_time "
        f'FROM "{kind.table}" AS t {kind.join} GROUP BY 1, 2, 3'
    )
    return [(kind.name, *row) for row in conn.execute(sql)]


# -- the report's headline numbers ---------------------------------------------------------

#: ``memkit report``'s counts: memories not deleted, and sessions.
REPORT_COUNTS = {
    "memories": "SELECT count(*) FROM memory_entries WHERE NOT is_deleted",
    "sessions": "SELECT count(*) FROM sessions",
}
