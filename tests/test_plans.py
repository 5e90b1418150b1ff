"""Each hot query of the seeds is a SEARCH on its named index, never a SCAN."""

from __future__ import annotations

import pytest

from abathur_memkit import Database

# (table, index, sql, params). Partial indexes need their WHERE term spelled out
# in the query (SQLite only proves implication from terms it can see).
HOT_QUERIES = [
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
]


@pytest.mark.parametrize(("table", "index", "sql", "params"), HOT_QUERIES,
                         ids=[q[1] for q in HOT_QUERIES])
async def test_hot_query_searches_its_index(
    db: Database, table: str, index: str, sql: str, params: tuple[object, ...]
) -> None:
    plan = await db.query_plan(sql, params)
    details = [detail for _, _, detail in plan]
    assert any(
        d.startswith(f"SEARCH {table} USING ") and f"INDEX {name} " in f"{d} "
        for d in details
        for name in index.split("|")
    ), details
    assert not any(d.startswith(f"SCAN {table}") for d in details), details


async def test_like_prefix_is_a_scan(db: Database) -> None:
    # Why the services never use LIKE: the seed's prefix query scans the table.
    plan = await db.query_plan(
        "SELECT * FROM memory_entries WHERE namespace LIKE ? AND is_deleted = 0", ("user:a%",))
    assert any(d.startswith("SCAN memory_entries") for _, _, d in plan)
