"""The audit trail: one row per action; every memory and task write has its row.

``record`` runs inside the caller's write transaction, so an action and its
audit row commit (or roll back) together. ``AuditService`` reads the trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .engines.interface import Connection, Store
from .errors import InvalidInputError
from .inputs import as_timestamp, optional_text, require_int, require_limit
from .rows import Rows, fetch_all, time_range
from .values import timestamp, to_json

if TYPE_CHECKING:
    from datetime import datetime


__all__ = ["MEMORY_OPERATIONS", "AuditService", "list_query", "record"]


def record(
    conn: Connection,
    action_type: str,
    *,
    task_id: str | None = None,
    agent_id: str | None = None,
    action_data: Any = None,
    result: str | None = None,
    memory_operation_type: str | None = None,
    memory_namespace: str | None = None,
    memory_entry_id: int | None = None,
    at: str | None = None,
) -> None:
    """Insert one audit row on ``conn`` (inside a write transaction).

    Nothing is read back: on PostgreSQL the row then goes with the write's next
    round trip (its pipeline) instead of costing one of its own.
    """
    conn.execute(
        "INSERT INTO audit (timestamp, agent_id, task_id, action_type, action_data, result, "
        "memory_operation_type, memory_namespace, memory_entry_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            at or timestamp(),
            agent_id,
            task_id,
            action_type,
            None if action_data is None else to_json(action_data, "action_data"),
            result,
            memory_operation_type,
            memory_namespace,
            memory_entry_id,
        ),
    )


# -- queries -------------------------------------------------------------------

#: The memory operations the audit table accepts (its CHECK constraint).
MEMORY_OPERATIONS = ("create", "update", "delete", "consolidate", "publish")
JSON_COLUMNS = ("action_data",)

# Filter → column; an equality on any of them is a SEARCH on that column's
# index (idx_audit_task, idx_audit_agent, idx_audit_memory_namespace,
# idx_audit_memory_entry, idx_audit_memory_operations), the time range on the
# same index's timestamp column. With no filter, idx_audit_timestamp.
_FILTERS = (
    ("task_id", "task_id"),
    ("agent_id", "agent_id"),
    ("memory_namespace", "memory_namespace"),
    ("memory_entry_id", "memory_entry_id"),
    ("operation", "memory_operation_type"),
)


def list_query(
    filters: Mapping[str, Any],
    since: str | None = None,
    until: str | None = None,
    limit: int | None = 100,
    *,
    oldest_first: bool = False,
) -> tuple[str, list[Any]]:
    """The SQL and parameters ``AuditService.list``/``between`` run (for plan tests)."""
    terms: list[str] = []
    params: list[Any] = []
    for name, column in _FILTERS:
        if filters.get(name) is not None:
            terms.append(f"{column} = ?")
            params.append(filters[name])
    range_terms, range_params = time_range("timestamp", since, until)
    terms += range_terms
    params += range_params
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    # id breaks ties between rows of the same microsecond; SQLite sorts only
    # within such ties ("TEMP B-TREE FOR LAST TERM"), the index gives the rest.
    order = "timestamp, id" if oldest_first else "timestamp DESC, id DESC"
    sql = f"SELECT * FROM audit{where} ORDER BY {order}"
    if limit is not None:
        return f"{sql} LIMIT ?", [*params, limit]
    return sql, params


class AuditService:
    """Reads of the audit trail: ``db.audit`` or ``AuditService(db)``.

    Time bounds are a ``datetime`` (naive = UTC) or a stored-form string;
    ``since`` is inclusive, ``until`` exclusive.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(
        self,
        task_id: str | None = None,
        agent_id: str | None = None,
        memory_namespace: str | None = None,
        memory_entry_id: int | None = None,
        operation: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
    ) -> Rows:
        """Audit rows matching every given filter, newest first."""
        if operation is not None and operation not in MEMORY_OPERATIONS:
            raise InvalidInputError(
                f"Invalid operation: {operation} (expected one of {', '.join(MEMORY_OPERATIONS)})"
            )
        filters = {
            "task_id": optional_text(task_id, "task_id"),
            "agent_id": optional_text(agent_id, "agent_id"),
            "memory_namespace": optional_text(memory_namespace, "memory_namespace"),
            "memory_entry_id": None if memory_entry_id is None
            else require_int(memory_entry_id, "memory_entry_id"),
            "operation": operation,
        }
        sql, params = list_query(filters, as_timestamp(since, "since"),
                                 as_timestamp(until, "until"), require_limit(limit))
        return await self.store.read(lambda conn: fetch_all(conn, sql, params, JSON_COLUMNS))

    async def between(
        self, since: datetime | str, until: datetime | str, limit: int | None = None
    ) -> Rows:
        """Every audit row with ``since <= timestamp < until``, oldest first."""
        low, high = as_timestamp(since, "since"), as_timestamp(until, "until")
        if low is None or high is None:
            raise InvalidInputError("Invalid time range: since and until are both required")
        sql, params = list_query({}, low, high, None if limit is None else require_limit(limit),
                                 oldest_first=True)
        return await self.store.read(lambda conn: fetch_all(conn, sql, params, JSON_COLUMNS))


# -- reads for the workload tools --


def count_rows(conn: Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])


def memory_action_counts(conn: Connection) -> dict[str, int]:
    """Audit rows per memory action (``memory_create``, ``memory_update``, ...)."""
    return {r[0]: int(r[1]) for r in conn.execute(
        "SELECT action_type, count(*) FROM audit "
        "WHERE action_type LIKE 'memory\\_%' ESCAPE '\\' GROUP BY action_type")}


def claim_counts(conn: Connection) -> tuple[int, int]:
    """Task claim audit rows, and the distinct tasks they name."""
    row = conn.execute("SELECT count(*), count(DISTINCT task_id) FROM audit "
                       "WHERE action_type = 'task_claimed'").fetchone()
    return int(row[0]), int(row[1])


def count_by_operation(conn: Connection) -> dict[str, int]:
    """How many memory writes the trail holds per operation, the most common first."""
    sql = ("SELECT memory_operation_type, count(*) FROM audit "
           "WHERE memory_operation_type IS NOT NULL GROUP BY 1 ORDER BY 2 DESC")
    return {str(operation): int(n) for operation, n in conn.execute(sql)}
