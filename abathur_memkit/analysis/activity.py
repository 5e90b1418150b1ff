"""What the audit trail says about memory: operations over time, busiest namespaces, writers.

Each function takes the frame of ``load_audit``/``load_audit_sync`` and looks
at the memory writes in it (rows with a ``memory_operation_type``). The
writer of a memory write is the ``by`` its audit row records (``created_by``,
``updated_by``, ``deleted_by``...), else its ``agent_id``.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError
from .optional import pandas

__all__ = ["OPERATIONS", "memory_operations", "memory_writes", "top_namespaces", "writers"]

#: Memory operation types, in the order tables and plots show them.
OPERATIONS = ("create", "update", "delete", "publish", "consolidate")
UNKNOWN_WRITER = "(unknown)"


def _writer(row: Any) -> str:
    data = row["action_data"]
    if isinstance(data, dict) and data.get("by"):
        return str(data["by"])
    agent = row["agent_id"]
    return str(agent) if isinstance(agent, str) and agent else UNKNOWN_WRITER


def memory_writes(audit: Any) -> Any:
    """The audit rows of memory writes, with ``operation``, ``scope`` and ``writer`` columns."""
    pandas()
    missing = {"memory_operation_type", "memory_namespace", "timestamp"} - set(audit.columns)
    if missing:
        raise InvalidInputError(
            f"Invalid audit frame: missing columns {sorted(missing)} (pass load_audit(...))")
    writes = audit[audit["memory_operation_type"].notna()].copy()
    writes["operation"] = writes["memory_operation_type"].astype(str)
    writes["scope"] = writes["memory_namespace"].astype(str).str.split(":", n=1).str[0]
    writes["writer"] = [_writer(row) for row in writes.to_dict("records")]
    return writes.reset_index(drop=True)


def _ordered(columns: Any) -> list[str]:
    known = [op for op in OPERATIONS if op in columns]
    return known + sorted(c for c in columns if c not in known)


def memory_operations(audit: Any, freq: str = "D") -> Any:
    """Memory operations per period (``freq``: "D" day, "h" hour, "W" week), by type.

    Index: period start (UTC); one column per operation type; counts.
    """
    pd = pandas()
    writes = memory_writes(audit)
    if writes.empty:
        return pd.DataFrame(columns=list(OPERATIONS[:4]), dtype="int64")
    period = writes["timestamp"].dt.floor(freq) if freq != "W" else (
        writes["timestamp"].dt.tz_localize(None).dt.to_period("W").dt.start_time
        .dt.tz_localize("UTC"))
    table = pd.crosstab(period, writes["operation"])
    table.index.name = "period"
    table.columns.name = "operation"
    return table[_ordered(table.columns)]


def top_namespaces(audit: Any, n: int = 10, *, level: str = "namespace") -> Any:
    """The ``n`` namespaces (or scopes, ``level="scope"``) with the most memory writes.

    Columns: one per operation type, then ``total``; biggest first.
    """
    pd = pandas()
    if level not in ("namespace", "scope"):
        raise InvalidInputError(f"Invalid level: {level!r} (choose 'namespace' or 'scope')")
    writes = memory_writes(audit)
    key = writes["memory_namespace"] if level == "namespace" else writes["scope"]
    if writes.empty:
        return pd.DataFrame(columns=["total"], dtype="int64")
    table = pd.crosstab(key, writes["operation"])
    table = table[_ordered(table.columns)]
    table["total"] = table.sum(axis=1)
    table.index.name = level
    return table.sort_values(["total"], ascending=False, kind="stable").head(n)


def writers(audit: Any, n: int = 10, *, level: str = "writer", by: str = "operation") -> Any:
    """Who wrote what: memory writes per writer, by operation type or by namespace scope.

    ``level="writer"`` counts each writer (``agent:coder-01``,
    ``session:…``, ``system``); ``level="role"`` groups them by the part before
    the first colon (``agent``, ``session``, ``system``...). ``by`` is
    ``"operation"`` or ``"scope"``: the columns, then ``total``; the ``n``
    biggest rows, biggest first.
    """
    pd = pandas()
    if level not in ("writer", "role"):
        raise InvalidInputError(f"Invalid level: {level!r} (choose 'writer' or 'role')")
    if by not in ("operation", "scope"):
        raise InvalidInputError(f"Invalid by: {by!r} (choose 'operation' or 'scope')")
    writes = memory_writes(audit)
    if writes.empty:
        return pd.DataFrame(columns=["total"], dtype="int64")
    who = writes["writer"] if level == "writer" else writes["writer"].str.split(":").str[0]
    table = pd.crosstab(who, writes[by])
    table = table[_ordered(table.columns) if by == "operation"
                  else list(table.sum().sort_values(ascending=False).index)]
    table["total"] = table.sum(axis=1)
    table.index.name = level
    return table.sort_values(["total"], ascending=False, kind="stable").head(n)
