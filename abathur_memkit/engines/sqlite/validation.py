"""``Database.validate()`` on SQLite: the seeds' health checks, as data.

Each check is ``{"name", "passed", "detail"}`` (an ``explain:<index>`` check adds
its ``sql``; a ``warning`` check never makes ``ok`` false); the report is
``{"ok", "checks"}`` and JSON-serializable, so ``memkit validate --json``
prints it as is.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING, Any

from ...errors import InvalidInputError
from . import files, schema
from .engine import PRAGMAS
from .monitoring import WAL_WARN_BYTES, wal_status

if TYPE_CHECKING:
    from .engine import SQLiteEngine

__all__ = ["INDEX_SAMPLES", "run_checks", "searches"]

# The seeds' latency floors for the two timed lookups (milliseconds).
SESSION_LOOKUP_MS = 10.0
MEMORY_LOOKUP_MS = 20.0

#: One sample query per named index (and the events' primary key), as
#: ``(table, index, sql, params)``: the validation report shows each one's
#: EXPLAIN QUERY PLAN, and the plan tests pin them. Partial indexes need their
#: WHERE term spelled out in the query (SQLite only proves implication from
#: terms it can see). ``a|b``: either may serve (the duplicates of a key).
INDEX_SAMPLES: tuple[tuple[str, str, str, tuple[Any, ...]], ...] = (
    ("sessions", "idx_sessions_pk", "SELECT * FROM sessions WHERE id = ?", ("s1",)),
    ("sessions", "idx_sessions_status_updated",
     "SELECT * FROM sessions WHERE status IN ('active', 'paused') AND status = ? "
     "ORDER BY last_update_time DESC", ("active",)),
    ("sessions", "idx_sessions_user_created",
     "SELECT * FROM sessions WHERE user_id = ? ORDER BY created_at DESC LIMIT 50", ("alice",)),
    ("sessions", "idx_sessions_project",
     "SELECT * FROM sessions WHERE project_id = ? ORDER BY created_at DESC", ("p1",)),
    ("memory_entries", "idx_memory_namespace_key_version",
     "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
     "ORDER BY version DESC LIMIT 1", ("user:alice:preferences", "theme")),
    # Seed defect 2: a range, not LIKE 'prefix%', so the index is searched.
    ("memory_entries", "idx_memory_namespace_prefix",
     "SELECT * FROM memory_entries WHERE namespace >= ? AND namespace < ? AND is_deleted = 0 "
     "ORDER BY namespace, updated_at DESC", ("user:alice:", "user:alice;")),
    ("memory_entries", "idx_memory_type_updated",
     "SELECT * FROM memory_entries WHERE memory_type = ? AND is_deleted = 0 "
     "ORDER BY updated_at DESC LIMIT 50", ("semantic",)),
    ("memory_entries", "idx_memory_episodic_ttl",
     "SELECT id FROM memory_entries WHERE memory_type = 'episodic' AND is_deleted = 0 "
     "AND updated_at < ?", ("2025-01-01",)),
    ("memory_entries", "idx_memory_created_by",
     "SELECT * FROM memory_entries WHERE created_by = ? ORDER BY created_at DESC",
     ("session:s1",)),
    ("memory_entries", "idx_memory_entries_pk|INTEGER PRIMARY KEY",
     "SELECT * FROM memory_entries WHERE id = ?", (1,)),
    ("document_index", "idx_document_index_pk|INTEGER PRIMARY KEY",
     "SELECT * FROM document_index WHERE id = ?", (1,)),
    ("document_index", "idx_document_file_path",
     "SELECT * FROM document_index WHERE file_path = ?", ("/docs/a.md",)),
    ("document_index", "idx_document_type_created",
     "SELECT * FROM document_index WHERE document_type = ? ORDER BY created_at DESC",
     ("design",)),
    ("document_index", "idx_document_sync_status",
     "SELECT * FROM document_index WHERE sync_status IN ('pending', 'stale') "
     "ORDER BY sync_status, last_synced_at LIMIT 10", ()),
    ("document_index", "idx_document_content_hash",
     "SELECT id FROM document_index WHERE content_hash = ?", ("abc",)),
    ("tasks", "idx_tasks_status_priority",
     "SELECT * FROM tasks WHERE status = 'pending' ORDER BY priority DESC, submitted_at "
     "LIMIT 1", ()),
    ("tasks", "idx_tasks_submitted_at",
     "SELECT id FROM tasks WHERE submitted_at >= ? AND submitted_at < ?",
     ("2025-01-01", "2025-02-01")),
    ("tasks", "idx_tasks_running_timeout",
     "SELECT id FROM tasks WHERE status = 'running' AND last_updated_at < ?", ("2025-01-01",)),
    ("tasks", "idx_tasks_parent", "SELECT id FROM tasks WHERE parent_task_id = ?", ("t1",)),
    ("tasks", "idx_tasks_session",
     "SELECT * FROM tasks WHERE session_id = ? ORDER BY submitted_at DESC", ("s1",)),
    ("agents", "idx_agents_task", "SELECT * FROM agents WHERE task_id = ?", ("t1",)),
    ("agents", "idx_agents_state", "SELECT * FROM agents WHERE state = ?", ("working",)),
    ("agents", "idx_agents_session",
     "SELECT * FROM agents WHERE session_id = ? ORDER BY spawned_at DESC", ("s1",)),
    ("audit", "idx_audit_task",
     "SELECT * FROM audit WHERE task_id = ? ORDER BY timestamp DESC", ("t1",)),
    ("audit", "idx_audit_agent",
     "SELECT * FROM audit WHERE agent_id = ? ORDER BY timestamp DESC", ("a1",)),
    ("audit", "idx_audit_timestamp",
     "SELECT * FROM audit WHERE timestamp >= ? AND timestamp < ?", ("2025-01-01", "2025-02-01")),
    ("audit", "idx_audit_memory_operations",
     "SELECT * FROM audit WHERE memory_operation_type = ? ORDER BY timestamp DESC", ("create",)),
    ("audit", "idx_audit_memory_namespace",
     "SELECT * FROM audit WHERE memory_namespace = ? ORDER BY timestamp DESC", ("user:a",)),
    ("audit", "idx_audit_memory_entry",
     "SELECT * FROM audit WHERE memory_entry_id = ? ORDER BY timestamp DESC", (1,)),
    # memkit's own: heads newest first (what a scope-wide search walks).
    ("memory_heads", "idx_memory_heads_recent",
     "SELECT entry_id FROM memory_heads WHERE updated_at < ? "
     "ORDER BY updated_at DESC, entry_id DESC LIMIT 50", ("2030-01-01",)),
    # idx_state_task_key duplicates UNIQUE(task_id, key); the planner may take either.
    ("state", "idx_state_task_key|sqlite_autoindex_state_1",
     "SELECT value FROM state WHERE task_id = ? AND key = ?", ("t1", "k")),
    ("metrics", "idx_metrics_name_timestamp",
     "SELECT * FROM metrics WHERE metric_name = ? AND timestamp >= ? ORDER BY timestamp DESC",
     ("tokens", "2025-01-01")),
    ("checkpoints", "idx_checkpoints_task",
     "SELECT * FROM checkpoints WHERE task_id = ? ORDER BY iteration DESC LIMIT 1", ("t1",)),
    ("session_events", "sqlite_autoindex_session_events_1",
     "SELECT event FROM session_events WHERE session_id = ? ORDER BY seq", ("s1",)),
)

_ROUNDS = 20

# Bad JSON must be rejected by these columns' CHECK constraints.
_JSON_PROBES = (
    ("sessions.state", "INSERT INTO sessions (id, app_name, user_id, state) "
     "VALUES ('__memkit_probe__', 'a', 'u', ?)"),
    ("session_events.event", "INSERT INTO session_events (session_id, seq, event) "
     "VALUES ('__memkit_probe__', 1, ?)"),
    ("memory_entries.value", "INSERT INTO memory_entries (namespace, key, value, memory_type) "
     "VALUES ('__memkit_probe__', 'k', ?, 'semantic')"),
)


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _json_probes(scratch: Any, ddl: dict[str, str]) -> list[tuple[str, bool, str]]:
    """Probe the file's own table definitions, copied into ``scratch`` (in memory).

    Validation reads only: the probe rows are never written to the file.
    """
    for table in ("sessions", "session_events", "memory_entries"):
        if table in ddl:
            scratch.execute(ddl[table])
    if "sessions" in ddl:
        scratch.execute(
            "INSERT INTO sessions (id, app_name, user_id) VALUES ('__memkit_probe__', 'a', 'u')")
    results = []
    for column, sql in _JSON_PROBES:
        if column.split(".")[0] not in ddl:
            results.append((column, False, "table missing"))
            continue
        if column == "sessions.state":
            sql = sql.replace("'__memkit_probe__'", "'__memkit_probe_2__'")
        try:
            scratch.execute(sql, ("{not json",))
            results.append((column, False, "accepted '{not json'"))
        except Exception as exc:  # the driver's IntegrityError
            rejected = "CHECK constraint failed" in str(exc)
            results.append((column, rejected, f"rejected: {exc}"))
    return results


async def _probe_json(db: SQLiteEngine) -> list[tuple[str, bool, str]]:
    rows = await db.fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    ddl = {r["name"]: r["sql"] for r in rows}

    def probe() -> list[tuple[str, bool, str]]:
        scratch = db.driver.connect(":memory:")
        try:
            return _json_probes(scratch, ddl)
        finally:
            scratch.close()

    return await asyncio.to_thread(probe)


def searches(plan: list[str], table: str, index: str) -> bool:
    """Whether ``plan`` SEARCHes ``table`` with ``index`` (or one of ``a|b``), no SCAN."""
    used = any(
        d.startswith(f"SEARCH {table} USING ")
        and (f"INDEX {name} " in f"{d} " or f"USING {name} " in f"{d} ")
        for d in plan
        for name in index.split("|")
    )
    return used and not any(d.startswith(f"SCAN {table}") for d in plan)


async def _explain_samples(db: SQLiteEngine) -> list[dict[str, Any]]:
    checks = []
    for table, index, sql, params in INDEX_SAMPLES:
        name = f"explain:{index.split('|')[0]}"
        try:
            plan = [detail for _, _, detail in await db.query_plan(sql, params)]
        except InvalidInputError as exc:  # a damaged schema: the table is missing
            checks.append({**_check(name, False, str(exc)), "sql": sql})
            continue
        check = _check(name, searches(plan, table, index), " | ".join(plan))
        checks.append({**check, "sql": sql})
    return checks


def _wal_checks(db: SQLiteEngine) -> list[dict[str, Any]]:
    """WAL size and readers holding it; warnings, read from the file system only."""
    if db.in_memory:
        return []
    status = wal_status(db.path)
    size = status["wal_bytes"] / 2**20
    readers = status["readers"]
    if readers is None:
        reader_detail = "unknown (needs /proc/locks)"
    elif readers:
        reader_detail = (f"a reader holds the WAL: pid {', '.join(map(str, readers))} "
                         "in a read transaction (run again: still there = long-open)")
    else:
        reader_detail = "no other process in a read transaction"
    return [
        {**_check("wal:size", not status["too_big"],
                  f"{size:.1f} MB (warn over {WAL_WARN_BYTES // 2**20} MB)"), "warning": True},
        {**_check("wal:readers", not readers, reader_detail), "warning": True},
    ]


def _lookup_detail(ms: float, floor: float) -> str:
    return f"median {ms:.3f} ms over {_ROUNDS} lookups (floor {floor} ms)"


async def _median_ms(db: SQLiteEngine, sql: str, params: tuple[Any, ...]) -> float:
    await db.fetchone(sql, params)  # warm-up
    samples = []
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        await db.fetchone(sql, params)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def run_checks(db: SQLiteEngine) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []

    pragmas = await db.pragmas()
    for name, expected in PRAGMAS.items():
        if name == "journal_mode" and db.in_memory:
            expected = "memory"
        actual = pragmas[name]
        if name == "journal_mode" and db.read_only:
            # An immutable connection (read-only location) reports "delete"; the header knows.
            actual = files.journal_mode(db.path)
        detail = f"{name}={actual} (expected {expected})"
        if name == "wal_autocheckpoint" and not db.in_memory and not db.read_only:
            detail += "; memkit's writer runs these checkpoints on a thread of its own"
        checks.append(_check(f"pragma:{name}", str(actual).lower() == str(expected), detail))

    integrity = await db.integrity_check()
    checks.append(_check("integrity_check", integrity == ["ok"], "; ".join(integrity[:5])))

    violations = await db.validate_foreign_keys()
    checks.append(_check("foreign_key_check", not violations,
                         f"{len(violations)} violations"))

    version = await db.schema_version()
    never = "; not a memkit database (never initialised)" if version == 0 else ""
    checks.append(_check("schema_version", version == schema.schema_version(),
                         f"user_version={version} (expected {schema.schema_version()}){never}"))

    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {r["name"] for r in rows}
    for table in schema.TABLES:
        checks.append(_check(f"table:{table}", table in tables,
                             "exists" if table in tables else "missing"))

    usage = await db.get_index_usage()
    expected_indexes = schema.named_indexes()
    present = {index["name"] for index in usage["indexes"]}
    missing = [i for i in expected_indexes if i not in present]
    checks.append(_check(
        "index_count", not missing,
        f"{len(expected_indexes) - len(missing)}/{len(expected_indexes)} named indexes"
        + (f"; missing: {', '.join(missing)}" if missing else ""),
    ))

    for column, passed, detail in await _probe_json(db):
        checks.append(_check(f"json_rejects_invalid:{column}", passed, detail))

    if "sessions" in tables:
        session = await db.fetchone("SELECT id FROM sessions LIMIT 1")
        session_id = session["id"] if session else "__memkit_probe__"
        ms = await _median_ms(db, "SELECT * FROM sessions WHERE id = ?", (session_id,))
        checks.append(_check("lookup:session_by_id", ms < SESSION_LOOKUP_MS,
                             _lookup_detail(ms, SESSION_LOOKUP_MS)))
    else:
        checks.append(_check("lookup:session_by_id", False, "sessions table missing"))

    if "memory_entries" in tables:
        memory = await db.fetchone("SELECT namespace, key FROM memory_entries LIMIT 1")
        ns_key = (memory["namespace"], memory["key"]) if memory else ("__memkit_probe__", "k")
        ms = await _median_ms(
            db,
            "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
            "ORDER BY version DESC LIMIT 1",
            ns_key,
        )
        checks.append(_check("lookup:memory_by_namespace_key", ms < MEMORY_LOOKUP_MS,
                             _lookup_detail(ms, MEMORY_LOOKUP_MS)))
    else:
        checks.append(_check("lookup:memory_by_namespace_key", False,
                             "memory_entries table missing"))

    checks += await _explain_samples(db)
    checks += _wal_checks(db)
    # Warnings (the WAL's health) are reported, never fail the validation.
    ok = all(c["passed"] for c in checks if not c.get("warning"))
    return {"ok": ok, "path": db.path,
            "driver": db.driver.name, "sqlite_version": db.driver.sqlite_version,
            "checks": checks}
