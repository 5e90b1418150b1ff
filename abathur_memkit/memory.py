"""Long-term memory: versioned entries in hierarchical namespaces.

Each write adds a row: versions are immutable and ascend per (namespace, key),
also across a soft delete (a key added again must not collide with its
version 1), so history stays intact. Reads return the latest live version.
Every write and its audit row commit in one transaction (``Store.write``):
on SQLite ``BEGIN IMMEDIATE`` serializes the writers; on PostgreSQL a writer
first locks the key it writes (see ``PG_LOCK_KEY``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import audit
from .engines.interface import Connection, Statements, Store
from .errors import AlreadyExistsError, InvalidInputError, NotFoundError
from .inputs import (
    clip,
    optional_text,
    require_bool,
    require_int,
    require_limit,
    require_object,
    show,
)
from .namespaces import (
    PRECEDENCE,
    WritePolicy,
    check_key,
    is_segment,
    parse_namespace,
    prefix_bounds,
    require_segment,
)
from .rows import insert_row
from .values import from_json, timestamp, timestamp_ago, to_json

__all__ = ["MEMORY_TYPES", "MemoryItem", "MemoryService", "describe"]

MEMORY_TYPES = ("semantic", "episodic", "procedural")

# -- SQL (module-level so tests can check each plan) -------------------------

COLUMNS = (
    "id, namespace, key, value, memory_type, version, is_deleted, metadata, "
    "created_by, updated_by, created_at, updated_at"
)

GET_LATEST = (
    f"SELECT {COLUMNS} FROM memory_entries "
    "WHERE namespace = ? AND key = ? AND is_deleted = 0 ORDER BY version DESC LIMIT 1"
)
GET_VERSION = (
    f"SELECT {COLUMNS} FROM memory_entries WHERE namespace = ? AND key = ? AND version = ?"
)
# The newest row of a key, live or not: the next version number and whether it is live.
GET_NEWEST = (
    "SELECT id, version, is_deleted, memory_type, metadata, created_by FROM memory_entries "
    "WHERE namespace = ? AND key = ? ORDER BY version DESC LIMIT 1"
)
HISTORY = (
    f"SELECT {COLUMNS} FROM memory_entries WHERE namespace = ? AND key = ? ORDER BY version DESC"
)
INSERT = (
    "INSERT INTO memory_entries (namespace, key, value, memory_type, version, metadata, "
    "created_by, updated_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SOFT_DELETE = (
    "UPDATE memory_entries SET is_deleted = 1, updated_at = ? "
    "WHERE namespace = ? AND key = ? AND is_deleted = 0"
)
UNDELETE = (
    "UPDATE memory_entries SET is_deleted = 0, updated_at = ? "
    "WHERE namespace = ? AND key = ? AND is_deleted = 1"
)
# The latest live version of each key comes from memory_heads (kept by
# triggers, one row per live key). Scope-wide: walk idx_memory_heads_recent
# newest first and stop after LIMIT rows that match.
_M_COLUMNS = ", ".join("m." + c.strip() for c in COLUMNS.split(","))
_HEADS_ORDER = "ORDER BY h.updated_at DESC, h.entry_id DESC LIMIT ?"
_TYPE_FILTER = "(? IS NULL OR h.memory_type = ?)"
_IN_PREFIX = "(h.namespace = ? OR (h.namespace >= ? AND h.namespace < ?))"
SEARCH_ALL = (
    f"SELECT {_M_COLUMNS} FROM memory_heads h INDEXED BY idx_memory_heads_recent "
    f"CROSS JOIN memory_entries m ON m.id = h.entry_id WHERE {_TYPE_FILTER} {_HEADS_ORDER}"
)
# A broad prefix (most keys): the same walk, skipping heads outside the prefix.
SEARCH_PREFIX_WALK = (
    f"SELECT {_M_COLUMNS} FROM memory_heads h INDEXED BY idx_memory_heads_recent "
    f"CROSS JOIN memory_entries m ON m.id = h.entry_id "
    f"WHERE {_IN_PREFIX} AND {_TYPE_FILTER} {_HEADS_ORDER}"
)
# A narrow prefix (an owner's keys): its heads by primary-key range, then sorted
# (the "+" keeps the planner off idx_memory_heads_recent, the slow side here).
SEARCH_PREFIX = (
    f"SELECT {_M_COLUMNS} FROM (SELECT h.entry_id FROM memory_heads h "
    f"WHERE {_IN_PREFIX} AND {_TYPE_FILTER} "
    f"ORDER BY +h.updated_at DESC, h.entry_id DESC LIMIT ?) t "
    "CROSS JOIN memory_entries m ON m.id = t.entry_id ORDER BY m.updated_at DESC, m.id DESC"
)
# How many heads a prefix holds, counted up to a cap on the primary key.
COUNT_PREFIX = (
    f"SELECT count(*) FROM (SELECT 1 FROM memory_heads h WHERE {_IN_PREFIX} LIMIT ?)"
)
#: From this many heads under a prefix on, the newest-first walk beats range-and-sort:
#: the walk meets a match every total/heads rows on average, the sort costs every head.
#: (A broad prefix whose keys are all older than the rest walks further.)
WALK_FROM_HEADS = 4_000
# Above every namespace (each starts with an ASCII scope name).
_AFTER_ALL = "\U0010ffff"
# Namespaces with a live memory in [start, end), from memory_namespaces (kept by
# triggers on memory_heads), as one JSON array: a swarm has tens of thousands of
# namespaces, and one value decodes ~3x faster than a row per name.
LIST_NAMESPACES = (
    "SELECT json_group_array(namespace) FROM (SELECT namespace FROM memory_namespaces "
    "WHERE namespace >= ? AND namespace < ? ORDER BY namespace)"
)
# Keys whose latest live version is episodic and older than the cutoff: the
# range on idx_memory_episodic_ttl, then one index seek per row for its key's
# max. An older episodic version of a key updated to semantic is not a match.
EXPIRED = (
    "SELECT m.id, m.namespace, m.key, m.version FROM memory_entries m "
    "WHERE m.memory_type = 'episodic' AND m.is_deleted = 0 AND m.updated_at < ? "
    "AND m.version = (SELECT max(x.version) FROM memory_entries x "
    "WHERE x.namespace = m.namespace AND x.key = m.key AND x.is_deleted = 0)"
)
EXISTING_KEYS = (
    "SELECT m.namespace, m.key, max(m.version), "
    "(SELECT x.is_deleted FROM memory_entries x WHERE x.namespace = m.namespace "
    " AND x.key = m.key ORDER BY x.version DESC LIMIT 1) "
    "FROM json_each(?) AS j JOIN memory_entries AS m "
    "ON m.namespace = json_extract(j.value, '$[0]') AND m.key = json_extract(j.value, '$[1]') "
    "GROUP BY m.namespace, m.key"
)
SESSION_SCOPES = "SELECT app_name, user_id, project_id FROM sessions WHERE id = ?"
SESSION_USER = "SELECT user_id FROM sessions WHERE id = ?"
AUDIT_FOR_RANGE = (
    "INSERT INTO audit (timestamp, task_id, action_type, action_data, "
    "memory_operation_type, memory_namespace, memory_entry_id) "
    "SELECT created_at, ?, 'memory_create', "
    "json_object('by', created_by, 'key', key, 'version', version, 'batch', 1), "
    "'create', namespace, id FROM memory_entries WHERE id BETWEEN ? AND ?"
)

# -- PostgreSQL's spelling, where SQLite's differs ----------------------------

# SQLite's BEGIN IMMEDIATE serializes every writer. On PostgreSQL a writer of
# one key first takes that key's lock (held until commit), so the newest
# version it then reads stays the newest and versions stay gapless. A batch and
# TTL expiry, which touch many keys, take the memory writers' lock exclusively
# instead (every key writer holds it shared): one lock per key of a large batch
# would fill the server's lock table.
_PG_WRITERS = "hashtextextended('memkit memory writers', 0)"
PG_LOCK_KEY = (
    f"SELECT pg_advisory_xact_lock_shared({_PG_WRITERS}), "
    "pg_advisory_xact_lock(hashtextextended(?, hashtextextended(?, 0)))"
)
PG_LOCK_ALL = f"SELECT pg_advisory_xact_lock({_PG_WRITERS})"
# No INDEXED BY or "+" hints: PostgreSQL's planner picks from its statistics,
# so one statement serves narrow and broad prefixes. A NULL parameter needs its type.
_PG_TYPE_FILTER = "(?::text IS NULL OR h.memory_type = ?)"
PG_SEARCH_ALL = (
    f"SELECT {_M_COLUMNS} FROM memory_heads h JOIN memory_entries m ON m.id = h.entry_id "
    f"WHERE {_PG_TYPE_FILTER} {_HEADS_ORDER}"
)
PG_SEARCH_PREFIX = (
    f"SELECT {_M_COLUMNS} FROM memory_heads h JOIN memory_entries m ON m.id = h.entry_id "
    f"WHERE {_IN_PREFIX} AND {_PG_TYPE_FILTER} {_HEADS_ORDER}"
)
PG_LIST_NAMESPACES = (
    "SELECT coalesce(json_agg(namespace ORDER BY namespace), '[]') FROM memory_namespaces "
    "WHERE namespace >= ? AND namespace < ?"
)
PG_EXISTING_KEYS = (
    "SELECT m.namespace, m.key, max(m.version), "
    "(SELECT x.is_deleted FROM memory_entries x WHERE x.namespace = m.namespace "
    " AND x.key = m.key ORDER BY x.version DESC LIMIT 1) "
    "FROM jsonb_array_elements(?::jsonb) AS j JOIN memory_entries AS m "
    "ON m.namespace = j.value ->> 0 AND m.key = j.value ->> 1 "
    "GROUP BY m.namespace, m.key"
)
# The batch and its audit rows in one statement; RETURNING gives the ids,
# which need not be consecutive here (other sessions draw from the sequence).
PG_INSERT_BATCH = (
    "WITH new AS (INSERT INTO memory_entries (namespace, key, value, memory_type, version, "
    "metadata, created_by, updated_by, created_at, updated_at) "
    "SELECT i.namespace, i.key, i.value::jsonb, i.memory_type, i.version, i.metadata::jsonb, "
    "?, ?, ?, ? FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::int[], ?::text[]) "
    "WITH ORDINALITY AS i(namespace, key, value, memory_type, version, metadata, n) "
    "ORDER BY i.n RETURNING id, namespace, key, version, created_by, created_at) "
    "INSERT INTO audit (timestamp, task_id, action_type, action_data, "
    "memory_operation_type, memory_namespace, memory_entry_id) "
    "SELECT created_at, ?::text, 'memory_create', jsonb_build_object('by', created_by, "
    "'key', key, 'version', version, 'batch', 1), 'create', namespace, id FROM new "
    "RETURNING memory_entry_id"
)


# add_memory and update_memory on PostgreSQL: one statement each, a function
# (sql/postgresql/010) that locks the key as PG_LOCK_KEY does, then writes the
# new version and its audit row; it declines to write (no id back) when the key
# is live (add) or not live (update), and the service raises as it would have.
PG_ADD = (
    "SELECT new_id, live_version FROM memkit_add_memory(:ns, :key, :value::jsonb, :type, "
    ":metadata::jsonb, :by, :task, :at::timestamp)"
)
PG_UPDATE = (
    "SELECT new_version FROM memkit_update_memory(:ns, :key, :value::jsonb, :type, "
    ":metadata::jsonb, :by, :task, :at::timestamp)"
)


class _Sql(NamedTuple):
    """The statements of one engine, where the two differ."""

    lock_key: str | None  # (namespace, key): before reading a key to write it
    lock_all: str | None  # before a batch or TTL expiry
    search_all: str
    search_prefix_walk: str
    search_prefix: str
    count_prefix: str | None  # None: the planner chooses, search_prefix serves every prefix
    unlimited: int | None  # the LIMIT parameter that means no limit
    list_namespaces: str
    existing_keys: str
    insert_batch: Callable[[Connection, list[tuple[Any, ...]], str | None], list[int]]
    add: str | None  # the write of add_memory in one statement (None: in Python)
    update: str | None  # the same for update_memory


def _insert_batch_sqlite(
    conn: Connection, params: list[tuple[Any, ...]], task_id: str | None
) -> list[int]:
    conn.executemany(INSERT, params)
    # Under the write lock AUTOINCREMENT ids of one executemany are
    # consecutive, so the audit rows come from the id range in one statement.
    last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
    first = last - len(params) + 1
    conn.execute(AUDIT_FOR_RANGE, (task_id, first, last))
    return list(range(first, last + 1))


def _insert_batch_postgresql(
    conn: Connection, params: list[tuple[Any, ...]], task_id: str | None
) -> list[int]:
    _, _, _, _, _, _, created_by, updated_by, created_at, updated_at = params[0]
    columns = [list(column) for column in zip(*(row[:6] for row in params), strict=True)]
    rows = conn.execute(PG_INSERT_BATCH, (created_by, updated_by, created_at, updated_at,
                                          *columns, task_id)).fetchall()
    # Rows went in in item order, each drawing the next id from the sequence.
    return sorted(int(row[0]) for row in rows)


SQL = {
    "sqlite": _Sql(None, None, SEARCH_ALL, SEARCH_PREFIX_WALK, SEARCH_PREFIX, COUNT_PREFIX, -1,
                   LIST_NAMESPACES, EXISTING_KEYS, _insert_batch_sqlite, None, None),
    "postgresql": _Sql(PG_LOCK_KEY, PG_LOCK_ALL, PG_SEARCH_ALL, PG_SEARCH_PREFIX,
                       PG_SEARCH_PREFIX, None, None, PG_LIST_NAMESPACES, PG_EXISTING_KEYS,
                       _insert_batch_postgresql, PG_ADD, PG_UPDATE),
}


@dataclass(frozen=True)
class MemoryItem:
    """One memory for ``add_memories``."""

    namespace: str
    key: str
    value: Any
    memory_type: str = "semantic"
    metadata: Mapping[str, Any] | None = None


def _decode(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of COLUMNS, by position, as the dict the API returns."""
    metadata = row[7]
    return {
        "id": row[0], "namespace": row[1], "key": row[2], "value": from_json(row[3]),
        "memory_type": row[4], "version": row[5], "is_deleted": bool(row[6]),
        "metadata": {} if metadata is None or metadata == "{}" else from_json(metadata),
        "created_by": row[8], "updated_by": row[9], "created_at": row[10],
        "updated_at": row[11],
    }


def _fetch(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: decoding by position is ~3x faster than Row
    return [_decode(row) for row in cursor.execute(sql, params)]


def describe(namespace: str, key: str) -> str:
    """A memory's address for messages: namespace and key apart, as both may hold ":"."""
    return f"namespace {show(namespace, 520)}, key {show(key, 520)}"


def _check_memory_type(memory_type: object) -> str:
    if memory_type not in MEMORY_TYPES:
        raise InvalidInputError(
            f"Invalid memory_type: {clip(memory_type)} "
            f"(expected one of {', '.join(MEMORY_TYPES)})"
        )
    return str(memory_type)


def _check_metadata(metadata: object) -> str | None:
    return None if metadata is None else to_json(require_object(metadata, "metadata"), "metadata")


class MemoryService:
    """Versioned memories: ``db.memory`` or ``MemoryService(db)``.

    The write policy is off unless ``Database(..., write_policy=True)`` (or an
    explicit ``policy=WritePolicy()``) turns it on.
    """

    def __init__(self, store: Store, *, policy: WritePolicy | None = None) -> None:
        self.store = store
        self.policy = policy or WritePolicy(enforce=False)
        self.dialect = store.dialect
        #: This engine's statements, where SQLite's and PostgreSQL's differ.
        self.sql = SQL[self.dialect]

    # -- reads ---------------------------------------------------------------

    async def get_memory(
        self, namespace: str, key: str, version: int | None = None
    ) -> dict[str, Any] | None:
        """The latest live version of a key, or exactly ``version`` (live or not)."""
        parse_namespace(namespace)
        check_key(key)
        params: tuple[Any, ...]
        if version is None:
            sql, params = GET_LATEST, (namespace, key)
        else:
            sql, params = GET_VERSION, (namespace, key, _check_version(version))

        (found,) = await self.store.read(Statements("get_memory", (sql, params)))
        return _decode(found.rows[0]) if found.rows else None

    async def get_memory_history(self, namespace: str, key: str) -> list[dict[str, Any]]:
        """Every version of a key, newest first, deleted ones included."""
        parse_namespace(namespace)
        check_key(key)
        (found,) = await self.store.read(
            Statements("get_memory_history", (HISTORY, (namespace, key))))
        return [_decode(row) for row in found.rows]

    async def search_memories(
        self, namespace_prefix: str, memory_type: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The latest live version of each key under a prefix, most recent first.

        ``user:alice`` (or ``user:alice:``) matches ``user:alice`` and
        ``user:alice:…``, never ``user:alice2``; ``""`` matches everything.
        """
        bounds = prefix_bounds(namespace_prefix)
        if memory_type is not None:
            _check_memory_type(memory_type)
        limit = require_limit(limit)
        sql = self.sql
        if bounds is None:
            return await self.store.read(
                lambda conn: _fetch(conn, sql.search_all, (memory_type, memory_type, limit)))
        params = (*bounds, memory_type, memory_type, limit)

        def search(conn: Connection) -> list[dict[str, Any]]:
            if sql.count_prefix is None:
                return _fetch(conn, sql.search_prefix, params)
            count = conn.execute(sql.count_prefix, (*bounds, WALK_FROM_HEADS)).fetchone()[0]
            broad = count >= WALK_FROM_HEADS
            return _fetch(conn, sql.search_prefix_walk if broad else sql.search_prefix, params)

        return await self.store.read(search)

    async def list_namespaces(self, prefix: str = "") -> list[str]:
        """Namespaces holding at least one live memory, sorted, optionally under a prefix."""
        bounds = prefix_bounds(prefix)
        sql = self.sql.list_namespaces

        def walk(conn: Connection) -> list[str]:
            exact, low, high = bounds or ("", "", _AFTER_ALL)
            # sorted() is linear on the sorted array; it keeps the order whatever
            # order the aggregate saw its rows in.
            names = sorted(from_json(conn.execute(sql, (exact, high)).fetchone()[0]))
            # [exact, high) also holds siblings such as user:alice2 < user:alice:.
            return [n for n in names if n == exact or n >= low]

        return await self.store.read(walk)

    async def context_for_session(self, session_id: str) -> dict[str, dict[str, Any]]:
        """Memories visible to a session, one per key, by scope precedence.

        Looks in ``temp:<session>``, ``session:<session>``, ``user:<user>``,
        ``app:<app>`` and ``project:<project>`` (and below each); where a key
        appears in several, temp > session > user > app > project wins, and
        within one scope the most recently updated. Each value is the memory
        dict plus its ``scope``.
        """
        require_segment(session_id, "session_id")
        search_prefix, unlimited = self.sql.search_prefix, self.sql.unlimited

        def collect(conn: Connection) -> dict[str, dict[str, Any]]:
            row = conn.execute(SESSION_SCOPES, (session_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"Session {session_id} not found")
            owners = {"temp": session_id, "session": session_id, "user": row["user_id"],
                      "app": row["app_name"], "project": row["project_id"]}
            context: dict[str, dict[str, Any]] = {}
            for scope in reversed(PRECEDENCE):  # weakest first; stronger ones overwrite
                # An id stored before ids were checked may hold ":": its tree is
                # not its own (user "alice:bob" is inside alice's), so it is left out.
                if not is_segment(owners[scope]):
                    continue
                exact = f"{scope}:{owners[scope]}"
                bounds = (exact, exact + ":", exact + ";")
                rows = _fetch(conn, search_prefix, (*bounds, None, None, unlimited))
                for entry in reversed(rows):  # oldest first
                    entry["scope"] = scope
                    context[entry["key"]] = entry
            return context

        return await self.store.read(collect, snapshot=True)

    # -- writes --------------------------------------------------------------

    async def add_memory(
        self,
        namespace: str,
        key: str,
        value: Any,
        memory_type: str,
        created_by: str | None,
        task_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        elevated: bool = False,
    ) -> int:
        """Create a key (version 1, or the next version after a delete); return the row id."""
        parse_namespace(namespace)
        check_key(key)
        value_json = to_json(value)
        _check_memory_type(memory_type)
        metadata_json = _check_metadata(metadata)
        optional_text(created_by, "created_by")
        optional_text(task_id, "task_id")
        require_bool(elevated, "elevated")

        if self.sql.add is not None and not self.policy.enforce:
            entry_id, live = await self._write_one("add_memory", self.sql.add, namespace, key, {
                "value": value_json, "type": memory_type, "metadata": metadata_json or "{}",
                "by": created_by, "task": task_id})
            if entry_id is None:
                raise _already_exists(namespace, key, live)
            return int(entry_id)

        def add(conn: Connection) -> int:
            self._lock_key(conn, namespace, key)
            self._authorize(conn, created_by, namespace, elevated)
            newest = conn.execute(GET_NEWEST, (namespace, key)).fetchone()
            if newest is not None and not newest["is_deleted"]:
                raise _already_exists(namespace, key, newest["version"])
            version = 1 if newest is None else newest["version"] + 1
            entry_id = self._insert(conn, namespace, key, value_json, memory_type, version,
                                    metadata_json or "{}", created_by, created_by)
            audit.record(conn, "memory_create", task_id=task_id,
                         action_data={"by": created_by, "key": key, "version": version},
                         memory_operation_type="create", memory_namespace=namespace,
                         memory_entry_id=entry_id)
            return entry_id

        return await self.store.write(add)

    async def update_memory(
        self,
        namespace: str,
        key: str,
        value: Any,
        updated_by: str | None,
        task_id: str | None = None,
        *,
        memory_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        elevated: bool = False,
    ) -> int:
        """Write a new version; return its version number.

        The new version keeps the memory_type, metadata and created_by of the
        one it replaces unless given (an update must not drop them).
        """
        parse_namespace(namespace)
        check_key(key)
        value_json = to_json(value)
        if memory_type is not None:
            _check_memory_type(memory_type)
        metadata_json = _check_metadata(metadata)
        optional_text(updated_by, "updated_by")
        optional_text(task_id, "task_id")
        require_bool(elevated, "elevated")

        if self.sql.update is not None and not self.policy.enforce:
            (version,) = await self._write_one("update_memory", self.sql.update, namespace, key, {
                "value": value_json, "type": memory_type, "metadata": metadata_json,
                "by": updated_by, "task": task_id})
            if version is None:
                raise _not_found(namespace, key)
            return int(version)

        def update(conn: Connection) -> int:
            self._lock_key(conn, namespace, key)
            self._authorize(conn, updated_by, namespace, elevated)
            newest = self._newest_live(conn, namespace, key)
            version = int(newest["version"]) + 1
            entry_id = self._insert(
                conn, namespace, key, value_json, memory_type or newest["memory_type"], version,
                metadata_json or newest["metadata"] or "{}", newest["created_by"], updated_by,
            )
            audit.record(conn, "memory_update", task_id=task_id,
                         action_data={"by": updated_by, "key": key, "version": version},
                         memory_operation_type="update", memory_namespace=namespace,
                         memory_entry_id=entry_id)
            return version

        return await self.store.write(update)

    async def delete_memory(
        self,
        namespace: str,
        key: str,
        task_id: str | None = None,
        *,
        deleted_by: str | None = None,
        elevated: bool = False,
    ) -> bool:
        """Soft-delete a key (every version stays in history); False if nothing was live."""
        parse_namespace(namespace)
        check_key(key)
        optional_text(deleted_by, "deleted_by")
        optional_text(task_id, "task_id")
        require_bool(elevated, "elevated")

        def delete(conn: Connection) -> bool:
            self._lock_key(conn, namespace, key)
            self._authorize(conn, deleted_by, namespace, elevated)
            newest = conn.execute(GET_LATEST, (namespace, key)).fetchone()
            if newest is None:
                return False
            conn.execute(SOFT_DELETE, (timestamp(), namespace, key))
            audit.record(conn, "memory_delete", task_id=task_id,
                         action_data={"by": deleted_by, "key": key, "version": newest["version"]},
                         memory_operation_type="delete", memory_namespace=namespace,
                         memory_entry_id=newest["id"])
            return True

        return await self.store.write(delete)

    async def restore_memory(
        self,
        namespace: str,
        key: str,
        task_id: str | None = None,
        *,
        restored_by: str | None = None,
        elevated: bool = False,
    ) -> int:
        """Undo a soft delete: the key's versions are live again; return the latest version."""
        parse_namespace(namespace)
        check_key(key)
        optional_text(restored_by, "restored_by")
        optional_text(task_id, "task_id")
        require_bool(elevated, "elevated")

        def restore(conn: Connection) -> int:
            self._lock_key(conn, namespace, key)
            self._authorize(conn, restored_by, namespace, elevated)
            newest = conn.execute(GET_NEWEST, (namespace, key)).fetchone()
            if newest is None:
                raise _not_found(namespace, key)
            if not newest["is_deleted"]:
                raise InvalidInputError(
                    f"Memory is not deleted: {describe(namespace, key)} "
                    f"(version {newest['version']})"
                )
            conn.execute(UNDELETE, (timestamp(), namespace, key))
            audit.record(conn, "memory_restore", task_id=task_id,
                         action_data={"by": restored_by, "key": key, "version": newest["version"]},
                         memory_operation_type="update", memory_namespace=namespace,
                         memory_entry_id=newest["id"])
            return int(newest["version"])

        return await self.store.write(restore)

    async def rollback_memory(
        self,
        namespace: str,
        key: str,
        version: int,
        updated_by: str | None,
        task_id: str | None = None,
        *,
        elevated: bool = False,
    ) -> int:
        """Make ``version``'s content current again, as a new version; return its number.

        Nothing is rewritten: the rollback is itself a version, so history
        shows what happened.
        """
        parse_namespace(namespace)
        check_key(key)
        target_version = _check_version(version)
        optional_text(updated_by, "updated_by")
        optional_text(task_id, "task_id")
        require_bool(elevated, "elevated")

        def rollback(conn: Connection) -> int:
            self._lock_key(conn, namespace, key)
            self._authorize(conn, updated_by, namespace, elevated)
            newest = self._newest_live(conn, namespace, key)
            target = conn.execute(GET_VERSION, (namespace, key, target_version)).fetchone()
            if target is None:
                raise NotFoundError(
                    f"Memory not found: {describe(namespace, key)}, version {version}"
                )
            new_version = int(newest["version"]) + 1
            entry_id = self._insert(conn, namespace, key, target["value"], target["memory_type"],
                                    new_version, target["metadata"] or "{}",
                                    newest["created_by"], updated_by)
            audit.record(conn, "memory_rollback", task_id=task_id,
                         action_data={"by": updated_by, "key": key, "version": new_version,
                                      "rolled_back_to": target_version},
                         memory_operation_type="update", memory_namespace=namespace,
                         memory_entry_id=entry_id)
            return new_version

        return await self.store.write(rollback)

    async def publish_memory(
        self,
        namespace: str,
        key: str,
        to_namespace: str,
        published_by: str | None,
        task_id: str | None = None,
        *,
        to_key: str | None = None,
        elevated: bool = False,
    ) -> int:
        """Copy a session draft (``session:…``) to a ``user:``/``project:``/``app:`` namespace.

        Creates or updates the target key and audits it as ``publish``;
        returns the target row id. The write policy applies to the target.
        """
        source_scope, _ = parse_namespace(namespace)
        target_scope, _ = parse_namespace(to_namespace)
        check_key(key)
        target_key = check_key(to_key) if to_key is not None else key
        if source_scope != "session":
            raise InvalidInputError(f"Invalid publish source: {namespace} (must be session:…)")
        if target_scope not in ("user", "project", "app"):
            raise InvalidInputError(
                f"Invalid publish target: {to_namespace} (must be user:…, project:… or app:…)"
            )
        optional_text(published_by, "published_by")
        optional_text(task_id, "task_id")
        require_bool(elevated, "elevated")

        def publish(conn: Connection) -> int:
            self._lock_key(conn, to_namespace, target_key)
            # A session publishes only its own drafts, and only where it may write.
            self._authorize(conn, published_by, namespace, elevated)
            self._authorize(conn, published_by, to_namespace, elevated)
            draft = conn.execute(GET_LATEST, (namespace, key)).fetchone()
            if draft is None:
                raise _not_found(namespace, key)
            newest = conn.execute(GET_NEWEST, (to_namespace, target_key)).fetchone()
            if newest is None or newest["is_deleted"]:
                version = 1 if newest is None else newest["version"] + 1
                created_by = published_by
            else:
                version, created_by = newest["version"] + 1, newest["created_by"]
            entry_id = self._insert(conn, to_namespace, target_key, draft["value"],
                                    draft["memory_type"], version, draft["metadata"] or "{}",
                                    created_by, published_by)
            audit.record(conn, "memory_publish", task_id=task_id,
                         action_data={"by": published_by, "from": f"{namespace}:{key}",
                                      "from_version": draft["version"], "key": target_key,
                                      "version": version},
                         memory_operation_type="publish", memory_namespace=to_namespace,
                         memory_entry_id=entry_id)
            return entry_id

        return await self.store.write(publish)

    async def add_memories(
        self,
        items: Iterable[MemoryItem | Mapping[str, Any]],
        created_by: str | None,
        task_id: str | None = None,
        *,
        elevated: bool = False,
    ) -> list[int]:
        """Insert many new keys in one transaction, each with its audit row; return ids.

        All or nothing: one bad item (or a key that exists already) rejects the
        batch, naming the item.
        """
        optional_text(created_by, "created_by")
        optional_text(task_id, "task_id")
        require_bool(elevated, "elevated")
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            raise InvalidInputError(
                f"Invalid items: expected a list of MemoryItem or dicts, got {type(items).__name__}"
            )
        rows: list[tuple[Any, ...]] = []
        seen: set[tuple[str, str]] = set()
        now = timestamp()
        for index, raw in enumerate(items):
            item = _as_item(raw, index)
            try:
                parse_namespace(item.namespace)
                check_key(item.key)
                _check_memory_type(item.memory_type)
                row = (item.namespace, item.key, to_json(item.value),
                       item.memory_type, _check_metadata(item.metadata) or "{}")
            except InvalidInputError as exc:
                raise InvalidInputError(f"Item {index}: {exc}") from exc
            if (item.namespace, item.key) in seen:
                raise InvalidInputError(
                    f"Item {index}: duplicate key ({describe(item.namespace, item.key)})"
                )
            seen.add((item.namespace, item.key))
            rows.append(row)
        if not rows:
            return []

        sql = self.sql

        def insert_all(conn: Connection) -> list[int]:
            if sql.lock_all is not None:
                conn.execute(sql.lock_all)
            for namespace in dict.fromkeys(row[0] for row in rows):
                self._authorize(conn, created_by, namespace, elevated)
            # Keys of the batch that exist already, found in one statement
            # (json_each + index seeks in SQLite, not a query per item).
            keys = to_json([[row[0], row[1]] for row in rows], "batch keys")
            existing = {(ns, key): (version, deleted)
                        for ns, key, version, deleted in conn.execute(sql.existing_keys, (keys,))}
            params = []
            for index, (namespace, key, value, memory_type, metadata) in enumerate(rows):
                version, deleted = existing.get((namespace, key), (0, True))
                if not deleted:
                    raise AlreadyExistsError(
                        f"Item {index}: memory already exists: {describe(namespace, key)}"
                    )
                params.append((namespace, key, value, memory_type, version + 1, metadata,
                               created_by, created_by, now, now))
            return sql.insert_batch(conn, params, task_id)

        return await self.store.write(insert_all)

    async def cleanup_expired_memories(self, ttl_days: float = 90) -> int:
        """Soft-delete keys not updated for ``ttl_days`` whose latest version is episodic.

        Returns how many keys were deleted.
        """
        if not isinstance(ttl_days, int | float) or isinstance(ttl_days, bool) or not ttl_days >= 0:
            raise InvalidInputError(  # "not >= 0" also refuses NaN
                f"Invalid ttl_days: {show(ttl_days)} (expected a number >= 0)"
            )
        try:
            cutoff = timestamp_ago(days=ttl_days)
        except (OverflowError, ValueError):
            return 0  # older than any date Python can hold: nothing is that old

        lock_all = self.sql.lock_all

        def expire(conn: Connection) -> int:
            if lock_all is not None:
                conn.execute(lock_all)
            expired = 0
            now = timestamp()
            for entry_id, namespace, key, version in conn.execute(EXPIRED, (cutoff,)).fetchall():
                conn.execute(SOFT_DELETE, (now, namespace, key))
                audit.record(conn, "memory_expire",
                             action_data={"key": key, "version": version, "ttl_days": ttl_days},
                             memory_operation_type="delete", memory_namespace=namespace,
                             memory_entry_id=entry_id, at=now)
                expired += 1
            return expired

        return await self.store.write(expire)

    # -- helpers -------------------------------------------------------------

    def _authorize(
        self, conn: Connection, writer: str | None, namespace: str, elevated: bool
    ) -> None:
        def session_user(session_id: str) -> str | None:
            row = conn.execute(SESSION_USER, (session_id,)).fetchone()
            return None if row is None else str(row[0])

        self.policy.check(writer, namespace, session_user, elevated=elevated)

    async def _write_one(self, operation: str, sql: str, namespace: str, key: str,
                         params: dict[str, Any]) -> tuple[Any, ...]:
        """Run ``sql``, a write of one key in one statement (it locks the key); its one row."""
        (written,) = await self.store.write(Statements(
            operation, (sql, {**params, "ns": namespace, "key": key, "at": timestamp()})))
        return tuple(written.rows[0])

    def _lock_key(self, conn: Connection, namespace: str, key: str) -> None:
        if self.sql.lock_key is not None:
            conn.execute(self.sql.lock_key, (key, namespace))

    @staticmethod
    def _newest_live(conn: Connection, namespace: str, key: str) -> Any:
        newest = conn.execute(GET_NEWEST, (namespace, key)).fetchone()
        if newest is None or newest["is_deleted"]:
            raise _not_found(namespace, key)
        return newest

    def _insert(self, conn: Connection, namespace: str, key: str, value: str, memory_type: str,
                version: int, metadata: str, created_by: str | None,
                updated_by: str | None) -> int:
        now = timestamp()
        return insert_row(conn, INSERT, (namespace, key, value, memory_type, version, metadata,
                                         created_by, updated_by, now, now), self.dialect)


def _already_exists(namespace: str, key: str, version: int) -> AlreadyExistsError:
    return AlreadyExistsError(f"Memory already exists: {describe(namespace, key)} "
                              f"(version {version}; use update_memory)")


def _not_found(namespace: str, key: str) -> NotFoundError:
    return NotFoundError(f"Memory not found: {describe(namespace, key)}")


def _check_version(version: object) -> int:
    return require_int(version, "version", minimum=1)


def _as_item(raw: MemoryItem | Mapping[str, Any], index: int) -> MemoryItem:
    if isinstance(raw, MemoryItem):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"Item {index}: expected a MemoryItem or dict, got {show(raw)}")
    unknown = set(raw) - {"namespace", "key", "value", "memory_type", "metadata"}
    missing = {"namespace", "key", "value"} - set(raw)
    if unknown or missing:
        problem = f"unknown fields {sorted(unknown)}" if unknown else f"missing {sorted(missing)}"
        raise InvalidInputError(f"Item {index}: {problem}")
    return MemoryItem(**raw)


# -- reads for the workload tools: counts and the invariant checks over the rows --


def count_rows(conn: Connection) -> int:
    """Every memory row, each version counted."""
    return int(conn.execute("SELECT count(*) FROM memory_entries").fetchone()[0])


def count_live_keys(conn: Connection) -> int:
    """Keys with at least one live version."""
    return int(conn.execute(_TOTALS["live_keys"]).fetchone()[0])


def latest_row(conn: Connection, namespace: str, key: str) -> Any:
    """The bare ``get_memory`` query: the newest live row of a key, undecoded."""
    return conn.execute(GET_LATEST, (namespace, key)).fetchone()


def newest_versions(conn: Connection) -> dict[tuple[str, str], tuple[int, bool, Any, int]]:
    """Per key: newest version, whether it is deleted, its value and the number of rows."""
    rows = conn.execute(
        "SELECT namespace, key, version, is_deleted, value, "
        "(SELECT count(*) FROM memory_entries x "
        " WHERE x.namespace = m.namespace AND x.key = m.key) "
        "FROM memory_entries m WHERE version = (SELECT max(version) FROM memory_entries y "
        "WHERE y.namespace = m.namespace AND y.key = m.key)"
    ).fetchall()
    return {(r[0], r[1]): (int(r[2]), bool(r[3]), from_json(r[4]), int(r[5])) for r in rows}


def keys_with_version_gaps(conn: Connection, limit: int = 5) -> list[Any]:
    """Keys whose versions are not exactly 1..n."""
    return conn.execute(
        "SELECT namespace, key, count(*), count(DISTINCT version), min(version), max(version) "
        "FROM memory_entries GROUP BY namespace, key "
        "HAVING count(*) != count(DISTINCT version) OR min(version) != 1 "
        "OR max(version) != count(*) LIMIT ?", (limit,)).fetchall()


def rows_without_one_audit_row(conn: Connection, actions: tuple[str, ...],
                               limit: int = 5) -> list[Any]:
    """Rows without exactly one audit row of ``actions`` for their version."""
    marks = ", ".join("?" for _ in actions)
    # These reads run on both engines: ->/->> and CAST read JSON alike on each,
    # and HAVING names no output alias (PostgreSQL cannot see them there).
    return conn.execute(
        "SELECT m.id, m.namespace, m.key, m.version, count(a.id) AS n FROM memory_entries m "
        f"LEFT JOIN audit a ON a.memory_entry_id = m.id AND a.action_type IN ({marks}) "
        "AND a.memory_namespace = m.namespace "
        "AND CAST(a.action_data ->> 'version' AS INTEGER) = m.version "
        "GROUP BY m.id HAVING count(a.id) != 1 LIMIT ?", (*actions, limit)).fetchall()


def audit_rows_without_memory_row(conn: Connection) -> int:
    """Memory audit rows whose memory row is missing."""
    return int(conn.execute(
        "SELECT count(*) FROM audit WHERE action_type LIKE 'memory\\_%' ESCAPE '\\' "
        "AND (memory_entry_id IS NULL OR memory_entry_id NOT IN (SELECT id FROM memory_entries))"
    ).fetchone()[0])


# Keys with a delete, expire or restore in the audit trail.
_FLIPPED_KEYS = (
    "SELECT DISTINCT m.namespace, m.key FROM audit a "
    "JOIN memory_entries m ON m.id = a.memory_entry_id "
    "WHERE a.action_type IN ('memory_delete', 'memory_expire', 'memory_restore')"
)


def deleted_rows_never_flipped(conn: Connection, limit: int = 5) -> list[Any]:
    """Deleted rows of keys the audit trail never deleted."""
    return conn.execute(
        "SELECT id, namespace, key FROM memory_entries m WHERE is_deleted = 1 AND NOT EXISTS "
        f"(SELECT 1 FROM ({_FLIPPED_KEYS}) t WHERE t.namespace = m.namespace AND t.key = m.key) "
        "LIMIT ?", (limit,)).fetchall()


def flipped_rows(conn: Connection) -> dict[int, tuple[tuple[str, str], bool]]:
    """Every row of a key ever deleted or restored: id -> ((namespace, key), is_deleted)."""
    return {int(r[0]): ((r[1], r[2]), bool(r[3])) for r in conn.execute(
        f"WITH t AS ({_FLIPPED_KEYS}) SELECT m.id, m.namespace, m.key, m.is_deleted "
        "FROM memory_entries m JOIN t ON t.namespace = m.namespace AND t.key = m.key")}


def flipped_audit_trail(conn: Connection) -> list[tuple[str, int]]:
    """The memory audit rows of those keys, in commit order: (action, memory row id)."""
    return [(r[0], int(r[1])) for r in conn.execute(
        "SELECT action_type, memory_entry_id FROM audit "
        "WHERE action_type LIKE 'memory\\_%' ESCAPE '\\' AND memory_entry_id IN "
        f"(SELECT m.id FROM memory_entries m JOIN ({_FLIPPED_KEYS}) t "
        " ON t.namespace = m.namespace AND t.key = m.key) ORDER BY id")]


def torn_counters(conn: Connection, limit: int = 5) -> list[Any]:
    """Rows with metadata ``{"counter": true}`` whose value's ``n`` is not their version."""
    return conn.execute(
        "SELECT namespace, key, version, value FROM memory_entries "
        "WHERE metadata -> 'counter' = 'true' "
        "AND CAST(value ->> 'n' AS INTEGER) IS DISTINCT FROM version LIMIT ?", (limit,)).fetchall()


def partial_batches(conn: Connection, limit: int = 5) -> list[Any]:
    """Batches (metadata ``{"batch": id, "size": n}``) not stored whole."""
    return conn.execute(
        "SELECT metadata ->> 'batch' AS b, CAST(metadata ->> 'size' AS INTEGER) AS size, "
        "count(*) AS n FROM memory_entries WHERE metadata ->> 'batch' IS NOT NULL "
        "AND version = 1 GROUP BY metadata ->> 'batch', CAST(metadata ->> 'size' AS INTEGER) "
        "HAVING count(*) != CAST(metadata ->> 'size' AS INTEGER) LIMIT ?", (limit,)).fetchall()


def count_by_type(conn: Connection) -> dict[str, int]:
    """How many rows (every version) there are of each memory type, the most common first."""
    sql = "SELECT memory_type, count(*) FROM memory_entries GROUP BY 1 ORDER BY 2 DESC"
    return {str(memory_type): int(n) for memory_type, n in conn.execute(sql)}


_TOTALS = {
    # Subqueries named: PostgreSQL before 16 requires it.
    "live_keys": "SELECT count(*) FROM (SELECT DISTINCT namespace, key FROM memory_entries "
                 "WHERE is_deleted = 0) AS k",
    "namespaces": "SELECT count(*) FROM (SELECT DISTINCT namespace FROM memory_entries "
                  "WHERE is_deleted = 0) AS n",
    "deleted_rows": "SELECT count(*) FROM memory_entries WHERE is_deleted = 1",
    "max_version": "SELECT coalesce(max(version), 0) FROM memory_entries",
}


def totals(conn: Connection) -> dict[str, int]:
    """Live keys, namespaces with a live key, deleted rows and the highest version."""
    return {name: int(conn.execute(sql).fetchone()[0]) for name, sql in _TOTALS.items()}
