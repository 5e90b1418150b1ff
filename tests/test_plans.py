"""Each hot query of the seeds is a SEARCH on its named index, never a SCAN."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiosqlite
import pytest

from abathur_memkit import Database
from abathur_memkit.database import plan_rows
from pytest_abathur.assertions import QueryPlanError, assert_uses_index, explain, explain_sync

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


# -- plans follow schema and statistics changes, on every connection ----------------------

PAIR_QUERY = "SELECT * FROM pairs WHERE a = ? AND b > ?"


def _in_another_process(path: str, sql: str) -> None:
    code = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, path, sql], check=True, timeout=60)


async def _plans_of_every_reader(db: Database) -> list[list[str]]:
    # Readers are taken in turn: one plan per reader, twice over.
    return [await db.explain_query_plan(PAIR_QUERY, (1, 5)) for _ in range(2 * 3)]


async def test_plans_follow_create_and_drop_index_on_every_reader(tmp_path: Path) -> None:
    async with Database(tmp_path / "plans.db", readers=3) as db:
        await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
        for round_ in range(3):
            await db.execute(f"CREATE INDEX pairs_a_{round_} ON pairs (a)")
            for plan in await _plans_of_every_reader(db):
                assert plan == [f"SEARCH pairs USING INDEX pairs_a_{round_} (a=?)"]
            for _ in range(3):
                await assert_uses_index(db, PAIR_QUERY, (1, 5), index=f"pairs_a_{round_}")
            await db.execute(f"DROP INDEX pairs_a_{round_}")
            for plan in await _plans_of_every_reader(db):
                assert plan == ["SCAN pairs"]
            for _ in range(3):
                with pytest.raises(QueryPlanError, match="indexes used: none"):
                    await assert_uses_index(db, PAIR_QUERY, (1, 5), index=f"pairs_a_{round_}")


async def test_plans_follow_ddl_and_analyze_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    async with Database(path, readers=3) as db:
        await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
        await db.execute("CREATE INDEX pairs_a ON pairs (a)")
        await db.analyze()  # creates sqlite_stat1; the next ANALYZE changes no schema
        assert set(map(tuple, await _plans_of_every_reader(db))) == {
            ("SEARCH pairs USING INDEX pairs_a (a=?)",)
        }

        _in_another_process(str(path), "CREATE INDEX pairs_b ON pairs (b)")
        _in_another_process(
            str(path),
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
            "INSERT INTO pairs SELECT i % 2, i FROM n",
        )
        before = await _plans_of_every_reader(db)  # every reader has loaded the new schema
        _in_another_process(str(path), "ANALYZE")

        fresh = db.driver.connect(str(path))
        try:
            expected = [detail for _, _, detail in plan_rows(fresh, PAIR_QUERY, (1, 5))]
        finally:
            fresh.close()
        assert before == [before[0]] * 6
        assert expected != before[0]  # the new statistics change the plan
        assert await _plans_of_every_reader(db) == [expected] * 6


async def test_explain_sync_follows_ddl_of_another_connection(db: Database) -> None:
    await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
    await db.execute("CREATE INDEX pairs_a ON pairs (a)")
    conn = db.driver.connect(db.path)
    try:
        assert explain_sync(conn, PAIR_QUERY, (1, 5)).indexes == ["pairs_a"]
        await db.execute("DROP INDEX pairs_a")
        assert explain_sync(conn, PAIR_QUERY, (1, 5)).indexes == []
    finally:
        conn.close()


async def test_explain_on_an_aiosqlite_connection_follows_ddl_of_another(db: Database) -> None:
    await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
    await db.execute("CREATE INDEX pairs_a ON pairs (a)")
    async with aiosqlite.connect(db.path) as conn:
        assert (await explain(conn, PAIR_QUERY, (1, 5))).indexes == ["pairs_a"]
        await db.execute("DROP INDEX pairs_a")
        assert (await explain(conn, PAIR_QUERY, (1, 5))).indexes == []
