"""The schema of SPEC §3: tables, columns, the 32 named indexes, CHECKs, foreign keys.

Plus memkit's own: memory_heads and memory_namespaces (migration 005) and their index."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database, InvalidInputError
from abathur_memkit.engines.sqlite.schema import (
    migrations,
    named_indexes,
    schema_version,
    sql_dir,
    statements,
)

COLUMNS = {
    "sessions": ["id", "app_name", "user_id", "project_id", "status", "state", "metadata",
                 "created_at", "last_update_time", "terminated_at", "archived_at"],
    "session_events": ["session_id", "seq", "event", "created_at"],
    "memory_entries": ["id", "namespace", "key", "value", "memory_type", "version", "is_deleted",
                       "metadata", "created_by", "updated_by", "created_at", "updated_at"],
    "document_index": ["id", "file_path", "title", "document_type", "content_hash",
                       "chunk_count", "embedding_model", "embedding_blob", "metadata",
                       "last_synced_at", "sync_status", "created_at", "updated_at"],
    "tasks": ["id", "prompt", "agent_type", "priority", "status", "input_data", "result_data",
              "error_message", "retry_count", "max_retries", "max_execution_timeout_seconds",
              "submitted_at", "started_at", "completed_at", "last_updated_at", "created_by",
              "parent_task_id", "dependencies", "session_id"],
    "agents": ["id", "name", "specialization", "task_id", "state", "model", "spawned_at",
               "terminated_at", "resource_usage", "session_id"],
    "audit": ["id", "timestamp", "agent_id", "task_id", "action_type", "action_data", "result",
              "memory_operation_type", "memory_namespace", "memory_entry_id"],
    "checkpoints": ["task_id", "iteration", "state", "created_at", "session_id"],
    "state": ["id", "task_id", "key", "value", "created_at", "updated_at"],
    "metrics": ["id", "timestamp", "metric_name", "metric_value", "labels"],
    "memory_heads": ["namespace", "key", "entry_id", "version", "memory_type", "updated_at"],
    "memory_namespaces": ["namespace"],
}

# name -> (table, columns as PRAGMA index_xinfo names them with DESC marked, unique, WHERE)
INDEXES: dict[str, tuple[str, list[str], bool, str | None]] = {
    "idx_sessions_pk": ("sessions", ["id"], True, None),
    "idx_sessions_status_updated": ("sessions", ["status", "last_update_time DESC"], False,
                                    "status IN ('active', 'paused')"),
    "idx_sessions_user_created": ("sessions", ["user_id", "created_at DESC"], False, None),
    "idx_sessions_project": ("sessions", ["project_id", "created_at DESC"], False,
                             "project_id IS NOT NULL"),
    "idx_memory_entries_pk": ("memory_entries", ["id"], True, None),
    "idx_memory_namespace_key_version": ("memory_entries",
                                         ["namespace", "key", "is_deleted", "version DESC"],
                                         False, None),
    "idx_memory_type_updated": ("memory_entries", ["memory_type", "updated_at DESC"], False,
                                "is_deleted = 0"),
    "idx_memory_namespace_prefix": ("memory_entries", ["namespace", "updated_at DESC"], False,
                                    "is_deleted = 0"),
    "idx_memory_episodic_ttl": ("memory_entries", ["memory_type", "updated_at"], False,
                                "memory_type = 'episodic' AND is_deleted = 0"),
    "idx_memory_created_by": ("memory_entries", ["created_by", "created_at DESC"], False, None),
    "idx_document_index_pk": ("document_index", ["id"], True, None),
    "idx_document_file_path": ("document_index", ["file_path"], True, None),
    "idx_document_type_created": ("document_index", ["document_type", "created_at DESC"], False,
                                  "document_type IS NOT NULL"),
    "idx_document_sync_status": ("document_index", ["sync_status", "last_synced_at"], False,
                                 "sync_status IN ('pending', 'stale')"),
    "idx_document_content_hash": ("document_index", ["content_hash"], False, None),
    "idx_tasks_status_priority": ("tasks", ["status", "priority DESC", "submitted_at"], False,
                                  None),
    "idx_tasks_submitted_at": ("tasks", ["submitted_at"], False, None),
    "idx_tasks_parent": ("tasks", ["parent_task_id"], False, None),
    "idx_tasks_running_timeout": ("tasks", ["status", "last_updated_at"], False,
                                  "status = 'running'"),
    "idx_tasks_session": ("tasks", ["session_id", "submitted_at DESC"], False,
                          "session_id IS NOT NULL"),
    "idx_agents_task": ("agents", ["task_id"], False, None),
    "idx_agents_state": ("agents", ["state"], False, None),
    "idx_agents_session": ("agents", ["session_id", "spawned_at DESC"], False,
                           "session_id IS NOT NULL"),
    "idx_audit_task": ("audit", ["task_id", "timestamp DESC"], False, None),
    "idx_audit_agent": ("audit", ["agent_id", "timestamp DESC"], False, None),
    "idx_audit_timestamp": ("audit", ["timestamp DESC"], False, None),
    "idx_audit_memory_operations": ("audit", ["memory_operation_type", "timestamp DESC"], False,
                                    "memory_operation_type IS NOT NULL"),
    "idx_audit_memory_namespace": ("audit", ["memory_namespace", "timestamp DESC"], False,
                                   "memory_namespace IS NOT NULL"),
    "idx_audit_memory_entry": ("audit", ["memory_entry_id", "timestamp DESC"], False,
                               "memory_entry_id IS NOT NULL"),
    "idx_state_task_key": ("state", ["task_id", "key"], False, None),
    "idx_metrics_name_timestamp": ("metrics", ["metric_name", "timestamp DESC"], False, None),
    "idx_checkpoints_task": ("checkpoints", ["task_id", "iteration DESC"], False, None),
}


# Not in the seeds: the index that makes scope-wide memory queries a walk.
OWN_INDEXES: dict[str, tuple[str, list[str], bool, str | None]] = {
    "idx_memory_heads_recent": ("memory_heads", ["updated_at DESC", "entry_id DESC",
                                                 "memory_type"], False, None),
}


def test_thirty_two_named_indexes_in_the_sql_files() -> None:
    assert len(INDEXES) == 32
    assert sorted(named_indexes()) == sorted({**INDEXES, **OWN_INDEXES})


async def test_tables_and_columns(db: Database) -> None:
    for table, expected in COLUMNS.items():
        rows = await db.fetchall(f"PRAGMA table_info({table})")
        assert [r["name"] for r in rows] == expected, table


async def test_sessions_has_no_events_column(db: Database) -> None:
    # Seed defect 1: one source of truth for events, the append-only table.
    rows = await db.fetchall("PRAGMA table_info(sessions)")
    assert "events" not in {r["name"] for r in rows}


@pytest.mark.parametrize("name", sorted({**INDEXES, **OWN_INDEXES}))
async def test_named_index(db: Database, name: str) -> None:
    table, columns, unique, where = {**INDEXES, **OWN_INDEXES}[name]
    row = await db.fetchone(
        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
    )
    assert row is not None, f"{name} missing"
    assert row["tbl_name"] == table
    info = await db.fetchall(f"PRAGMA index_xinfo({name})")
    keys = [r["name"] + (" DESC" if r["desc"] else "") for r in info if r["key"]]
    assert keys == columns
    listed = {r["name"]: r for r in await db.fetchall(f"PRAGMA index_list({table})")}
    assert bool(listed[name]["unique"]) is unique
    assert bool(listed[name]["partial"]) is (where is not None)
    if where is not None:
        assert row["sql"].split(" WHERE ", 1)[1] == where


BAD_ROWS = [
    ("sessions.status", "INSERT INTO sessions (id, app_name, user_id, status) "
                        "VALUES ('x', 'a', 'u', 'sleeping')"),
    ("sessions.state", "INSERT INTO sessions (id, app_name, user_id, state) "
                       "VALUES ('x', 'a', 'u', '{bad')"),
    ("sessions.metadata", "INSERT INTO sessions (id, app_name, user_id, metadata) "
                          "VALUES ('x', 'a', 'u', '[1,')"),
    ("session_events.event", "INSERT INTO session_events (session_id, seq, event) "
                             "VALUES ('s1', 1, 'nope')"),
    ("session_events.seq", "INSERT INTO session_events (session_id, seq, event) "
                           "VALUES ('s1', 0, '{}')"),
    ("memory_entries.memory_type", "INSERT INTO memory_entries (namespace, key, value, "
                                   "memory_type) VALUES ('n', 'k', '1', 'emotional')"),
    ("memory_entries.value", "INSERT INTO memory_entries (namespace, key, value, memory_type) "
                             "VALUES ('n', 'k', 'not json', 'semantic')"),
    ("memory_entries.metadata", "INSERT INTO memory_entries (namespace, key, value, memory_type,"
                                " metadata) VALUES ('n', 'k', '1', 'semantic', '{')"),
    ("memory_entries.version", "INSERT INTO memory_entries (namespace, key, value, memory_type,"
                               " version) VALUES ('n', 'k', '1', 'semantic', 0)"),
    ("memory_entries.is_deleted", "INSERT INTO memory_entries (namespace, key, value, "
                                  "memory_type, is_deleted) VALUES ('n', 'k', '1', 'semantic', 2)"),
    ("document_index.sync_status", "INSERT INTO document_index (file_path, title, content_hash,"
                                   " sync_status) VALUES ('a.md', 't', 'h', 'lost')"),
    ("document_index.metadata", "INSERT INTO document_index (file_path, title, content_hash,"
                                " metadata) VALUES ('a.md', 't', 'h', 'x')"),
    ("tasks.status", "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, "
                     "last_updated_at) VALUES ('t9', 'p', 'lost', '{}', 'now', 'now')"),
    ("tasks.dependencies", "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, "
                           "last_updated_at, dependencies) "
                           "VALUES ('t9', 'p', 'pending', '{}', 'now', 'now', '[')"),
    ("agents.state", "INSERT INTO agents (id, name, specialization, task_id, state, model, "
                     "spawned_at) VALUES ('a', 'n', 's', 't1', 'dancing', 'm', 'now')"),
    ("agents.resource_usage", "INSERT INTO agents (id, name, specialization, task_id, state, "
                              "model, spawned_at, resource_usage) "
                              "VALUES ('a', 'n', 's', 't1', 'idle', 'm', 'now', '{')"),
    ("audit.memory_operation_type", "INSERT INTO audit (timestamp, action_type, "
                                    "memory_operation_type) VALUES ('now', 'x', 'explode')"),
    ("audit.action_data", "INSERT INTO audit (timestamp, action_type, action_data) "
                          "VALUES ('now', 'x', '{')"),
    ("metrics.metric_value", "INSERT INTO metrics (timestamp, metric_name, metric_value) "
                             "VALUES ('now', 'm', -1)"),
    ("metrics.labels", "INSERT INTO metrics (timestamp, metric_name, metric_value, labels) "
                       "VALUES ('now', 'm', 1, '{')"),
]


@pytest.mark.parametrize(("column", "sql"), BAD_ROWS, ids=[c for c, _ in BAD_ROWS])
async def test_check_rejects_bad_row(db: Database, column: str, sql: str) -> None:
    def insert(conn: Any) -> None:
        conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'app', 'u')")
        conn.execute(
            "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at) "
            "VALUES ('t1', 'p', 'pending', '{}', '2025-01-01', '2025-01-01')"
        )
        conn.execute(sql)

    with pytest.raises(InvalidInputError, match="CHECK constraint failed"):
        await db.write(insert)
    # The whole transaction rolled back: the parents inserted first are gone too.
    assert await db.fetchone("SELECT id FROM sessions") is None
    assert await db.fetchone("SELECT id FROM tasks") is None


async def test_foreign_keys(db: Database) -> None:
    async def fks(table: str) -> dict[str, tuple[str, str]]:
        rows = await db.fetchall(f"PRAGMA foreign_key_list({table})")
        return {r["from"]: (r["table"], r["on_delete"]) for r in rows}

    assert await fks("tasks") == {"parent_task_id": ("tasks", "NO ACTION"),
                                  "session_id": ("sessions", "SET NULL")}
    assert await fks("agents") == {"task_id": ("tasks", "NO ACTION"),
                                   "session_id": ("sessions", "SET NULL")}
    assert await fks("checkpoints") == {"task_id": ("tasks", "NO ACTION"),
                                        "session_id": ("sessions", "SET NULL")}
    # Seed defect 3: audit.task_id is nullable and not a foreign key.
    assert await fks("audit") == {"memory_entry_id": ("memory_entries", "SET NULL")}
    audit = {r["name"]: r for r in await db.fetchall("PRAGMA table_info(audit)")}
    assert audit["task_id"]["notnull"] == 0
    await db.execute(
        "INSERT INTO audit (timestamp, task_id, action_type) VALUES ('now', 'task:xyz', 'm')"
    )
    await db.execute("INSERT INTO audit (timestamp, action_type) VALUES ('now', 'm')")
    assert len(await db.fetchall("SELECT id FROM audit")) == 2


async def test_foreign_key_enforced(db: Database) -> None:
    with pytest.raises(InvalidInputError, match="FOREIGN KEY"):
        await db.execute(
            "INSERT INTO session_events (session_id, seq, event) VALUES ('ghost', 1, '{}')"
        )


def test_statements_split_like_the_shell() -> None:
    parts = list(statements("-- c\nCREATE TABLE a (x);\n\n-- only a comment\nSELECT ';';\n"))
    assert parts == ["-- c\nCREATE TABLE a (x);", "-- only a comment\nSELECT ';';"]


def test_each_migration_sets_its_version() -> None:
    for migration in migrations():
        assert f"PRAGMA user_version = {migration.version};" in migration.sql
    assert schema_version() == migrations()[-1].version


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="sqlite3 shell not installed")
async def test_sql_files_work_in_the_sqlite3_shell(tmp_path: Path, db: Database) -> None:
    shell_db = tmp_path / "shell.db"
    script = "".join(p.read_text() for p in sorted(sql_dir().glob("*.sql")))
    subprocess.run(["sqlite3", str(shell_db)], input=script, text=True, check=True)
    async with Database(shell_db) as other:
        assert await other.initialize() == []  # nothing left to apply
        mine = await db.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        theirs = await other.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        assert mine == theirs
