"""Upgrading a database made by the pre-memory Abathur schema, in place, rows kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database, SchemaError
from abathur_memkit.engines.sqlite.driver import select_driver
from abathur_memkit.engines.sqlite.schema import schema_version

DATA = Path(__file__).parent / "data"
LEGACY = ("tasks", "agents", "state", "audit", "metrics", "checkpoints")


def make_legacy(path: Path, extra_sql: str = "") -> dict[str, list[dict[str, Any]]]:
    conn = select_driver().connect(str(path))
    conn.row_factory = select_driver().module.Row
    try:
        conn.executescript((DATA / "pre_memory_schema.sql").read_text() + extra_sql)
        return {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")]
                for t in LEGACY}
    finally:
        conn.close()


async def test_upgrade_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    before = make_legacy(path)
    assert all(before[t] for t in LEGACY)  # rows in all six tables
    async with Database(path) as db:
        assert await db.schema_version() == schema_version()
        for table, rows in before.items():
            after = await db.fetchall(f"SELECT * FROM {table} ORDER BY rowid")
            assert len(after) == len(rows), table
            for old, new in zip(rows, after, strict=True):
                assert {k: new[k] for k in old} == old, table
        # The new columns exist and are empty; the seed defect 3 fix is in.
        assert all(r["session_id"] is None for r in await db.fetchall("SELECT * FROM tasks"))
        audit = {r["name"]: r for r in await db.fetchall("PRAGMA table_info(audit)")}
        assert "memory_namespace" in audit and audit["task_id"]["notnull"] == 0
        assert await db.fetchall("PRAGMA foreign_key_list(audit)") != []
        report = await db.validate()
        assert report["ok"], [c for c in report["checks"] if not c["passed"]]
        assert await db.initialize() == []  # idempotent after the upgrade


async def test_upgrade_of_an_older_tasks_table(tmp_path: Path) -> None:
    # An older Abathur tasks table: no last_updated_at (NOT NULL now), an extra column.
    path = tmp_path / "older.db"
    conn = select_driver().connect(str(path))
    conn.executescript(
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, prompt TEXT NOT NULL, agent_type TEXT "
        "NOT NULL DEFAULT 'general', priority INTEGER NOT NULL DEFAULT 5, status TEXT NOT NULL,"
        " input_data TEXT NOT NULL, submitted_at TIMESTAMP NOT NULL, started_at TIMESTAMP,"
        " completed_at TIMESTAMP, source TEXT NOT NULL DEFAULT 'human');"
        "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, started_at, source) "
        "VALUES ('t1', 'p', 'running', '{}', '2025-01-01 00:00:00', '2025-01-01 00:05:00', 'bot');"
    )
    conn.close()
    async with Database(path) as db:
        row = await db.fetchone("SELECT * FROM tasks")
        assert row is not None
        assert row["last_updated_at"] == "2025-01-01 00:05:00"  # backfilled
        assert row["source"] == "bot"  # a column we do not know is kept, not dropped
        assert row["max_execution_timeout_seconds"] == 3600  # new columns take their defaults


async def test_failed_upgrade_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    make_legacy(path, "INSERT INTO tasks (id, prompt, status, input_data, submitted_at, "
                      "last_updated_at) VALUES ('t3', 'p', 'zombie', '{}', 'x', 'x');")
    conn = select_driver().connect(str(path))
    schema_before = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    db = Database(path)
    with pytest.raises(SchemaError, match="CHECK constraint failed"):
        await db.initialize()
    await db.close()
    conn = select_driver().connect(str(path))
    try:
        assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == \
            schema_before
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 3
    finally:
        conn.close()
