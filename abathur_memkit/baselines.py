"""Plain and former SQL on the memory and session tables: what the benchmarks time
the services against.

``memkit bench core`` runs the plain statements on a raw connection beside the
services; ``memkit bench scope`` runs the queries memkit used before
``memory_heads`` and builds its churn with plain statements. They live here,
beside the services that own these tables, so no tool writes SQL on them.
"""

from __future__ import annotations

from .memory import COLUMNS

__all__ = [
    "HEAD_TRIGGERS",
    "LEGACY_LIST_NAMESPACES",
    "LEGACY_SEARCH_ALL",
    "LEGACY_SEARCH_PREFIX",
    "PLAIN_DELETE_RANGE",
    "PLAIN_HEADS_FILL",
    "PLAIN_NEW_VERSION",
    "PLAIN_RANGE",
    "PLAIN_RESTORE",
    "PLAIN_SESSION",
    "PLAIN_SOFT_DELETE",
]

# -- plain statements ----------------------------------------------------------------------

#: A session's row, as it is stored.
PLAIN_SESSION = "SELECT * FROM sessions WHERE id = ?"
#: Every live row with low <= namespace < high, straight from the table.
PLAIN_RANGE = (
    "SELECT * FROM memory_entries WHERE namespace >= ? AND namespace < ? AND is_deleted = 0"
)
#: Remove the rows with low <= namespace < high outright (no audit): scratch rows only.
PLAIN_DELETE_RANGE = "DELETE FROM memory_entries WHERE namespace >= ? AND namespace < ?"
#: (at, id): a next version of row ``id``, written by 'agent' at ``at``.
PLAIN_NEW_VERSION = (
    "INSERT INTO memory_entries (namespace, key, value, memory_type, version, "
    "metadata, created_by, updated_by, created_at, updated_at) "
    "SELECT namespace, key, '{\"v\": 2}', memory_type, version + 1, metadata, "
    "created_by, 'agent', ?1, ?1 FROM memory_entries WHERE id = ?2"
)
#: (at, id): soft-delete the key of row ``id``.
PLAIN_SOFT_DELETE = (
    "UPDATE memory_entries SET is_deleted = 1, updated_at = ?1 WHERE is_deleted = 0 "
    "AND (namespace, key) = (SELECT namespace, key FROM memory_entries WHERE id = ?2)"
)
#: (at, id): restore the key of row ``id``.
PLAIN_RESTORE = (
    "UPDATE memory_entries SET is_deleted = 0, updated_at = ?1 WHERE is_deleted = 1 "
    "AND (namespace, key) = (SELECT namespace, key FROM memory_entries WHERE id = ?2)"
)

# -- memory_heads and the queries before it --------------------------------------------------

#: The triggers that keep memory_heads (one row per live key) up to date.
HEAD_TRIGGERS = ("memory_heads_insert", "memory_heads_update", "memory_heads_move",
                 "memory_heads_delete")
#: (low, high): the heads of live keys in the namespace range, for rows written
#: while the triggers were dropped.
PLAIN_HEADS_FILL = (
    "INSERT OR IGNORE INTO memory_heads (namespace, key, entry_id, version, memory_type, "
    "updated_at) SELECT namespace, key, id, max(version), memory_type, updated_at "
    "FROM memory_entries WHERE is_deleted = 0 AND namespace >= ? "
    "AND namespace < ? GROUP BY namespace, key"
)

# Each row's key max(version) by an index seek, for every live row in range,
# then a sort of all of them.
_LATEST_PER_KEY = (
    "m.is_deleted = 0 AND m.version = (SELECT max(x.version) FROM memory_entries x "
    "WHERE x.namespace = m.namespace AND x.key = m.key AND x.is_deleted = 0)"
)
_M_COLUMNS = ", ".join("m." + c.strip() for c in COLUMNS.split(","))
LEGACY_SEARCH_PREFIX = (
    f"SELECT {_M_COLUMNS} FROM memory_entries m "
    "WHERE (m.namespace = ? OR (m.namespace >= ? AND m.namespace < ?)) "
    f"AND {_LATEST_PER_KEY} AND (CAST(? AS TEXT) IS NULL OR m.memory_type = ?) "
    "ORDER BY m.updated_at DESC, m.id DESC LIMIT ?"
)
LEGACY_SEARCH_ALL = (
    f"SELECT {_M_COLUMNS} FROM memory_entries m "
    f"WHERE {_LATEST_PER_KEY} AND (CAST(? AS TEXT) IS NULL OR m.memory_type = ?) "
    "ORDER BY m.updated_at DESC, m.id DESC LIMIT ?"
)
LEGACY_LIST_NAMESPACES = (
    "WITH RECURSIVE ns(name) AS ("
    " SELECT min(namespace) FROM memory_entries WHERE is_deleted = 0 AND namespace >= ?"
    " UNION ALL"
    " SELECT (SELECT min(namespace) FROM memory_entries"
    "         WHERE is_deleted = 0 AND namespace > ns.name)"
    " FROM ns WHERE ns.name IS NOT NULL"
    ") SELECT name FROM ns WHERE name IS NOT NULL"
)
