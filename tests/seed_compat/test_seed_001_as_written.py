"""Seed 001 ("For test-automation-engineer", Example Test), exactly as written.

The snippet calls ``json.loads`` without ``import json``; conftest marks it
xfail for that NameError. test_seed_examples.py runs it with the import added.
"""
# ruff: noqa
import pytest
from pathlib import Path
from abathur.infrastructure.database import Database

@pytest.mark.asyncio
async def test_memory_versioning():
    """Test memory versioning and rollback."""
    db = Database(Path(":memory:"))
    await db.initialize()

    # Create memory entry (version 1)
    async with db._get_connection() as conn:
        await conn.execute(
            """INSERT INTO memory_entries (namespace, key, value, memory_type, created_by, updated_by)
               VALUES (?, ?, ?, ?, ?, ?)""",
            ("user:test", "pref", '{"theme": "dark"}', "semantic", "test", "test")
        )
        await conn.commit()

    # Update memory entry (version 2)
    async with db._get_connection() as conn:
        await conn.execute(
            """INSERT INTO memory_entries (namespace, key, value, memory_type, version, created_by, updated_by)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            ("user:test", "pref", '{"theme": "light"}', "semantic", 2, "test", "test")
        )
        await conn.commit()

    # Retrieve current version (should be version 2)
    async with db._get_connection() as conn:
        cursor = await conn.execute(
            """SELECT value, version FROM memory_entries
               WHERE namespace = ? AND key = ? AND is_deleted = 0
               ORDER BY version DESC LIMIT 1""",
            ("user:test", "pref")
        )
        row = await cursor.fetchone()
        assert row["version"] == 2
        assert json.loads(row["value"])["theme"] == "light"

    # Rollback to version 1 (soft-delete version 2)
    async with db._get_connection() as conn:
        await conn.execute(
            """UPDATE memory_entries SET is_deleted = 1
               WHERE namespace = ? AND key = ? AND version = ?""",
            ("user:test", "pref", 2)
        )
        await conn.commit()

    # Retrieve current version (should be version 1)
    async with db._get_connection() as conn:
        cursor = await conn.execute(
            """SELECT value, version FROM memory_entries
               WHERE namespace = ? AND key = ? AND is_deleted = 0
               ORDER BY version DESC LIMIT 1""",
            ("user:test", "pref")
        )
        row = await cursor.fetchone()
        assert row["version"] == 1
        assert json.loads(row["value"])["theme"] == "dark"
