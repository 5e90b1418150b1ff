"""The seed design's code examples, run against memkit through the module-path shim.

Every example below is copied from the seed text as written (the section is
named above it); a test around it supplies what the seed text leaves to its
surroundings: a database to run on, and the claim the example states in a
comment, asserted. Seed 004's examples are in seed_004_examples.py.
"""
# ruff: noqa: E501
from __future__ import annotations

import json
from pathlib import Path

import aiosqlite
import pytest
import seed_004_examples as guide
from abathur.infrastructure.database import Database

# -- seed 001, "Next Steps for Downstream Teams", Example Usage ---------------------


async def test_001_example_usage() -> None:
    db = Database(Path.home() / ".abathur" / "abathur.db")
    await db.initialize()

    # Validate database health
    violations = await db.validate_foreign_keys()
    assert len(violations) == 0

    # Check query plan for optimization
    plan = await db.explain_query_plan(
        "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0",
        ("user:alice:preferences", "theme")
    )
    # Should show index usage: idx_memory_namespace_key_version
    assert any("idx_memory_namespace_key_version" in line for line in plan), plan


# -- seed 001, Issue 2: Foreign Keys Not Enabled in Validator ----------------------------


class Validator:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def check(self) -> int:
        async with self.db._get_connection() as conn:
            await conn.execute("PRAGMA foreign_keys=ON")
            cursor = await conn.execute("PRAGMA foreign_keys")
            return int((await cursor.fetchone())[0])


async def test_001_validator_connection(tmp_path: Path) -> None:
    db = Database(tmp_path / "abathur_test.db")
    await db.initialize()
    assert await Validator(db).check() == 1


# -- seed 001, Example Test, with the `import json` the snippet leaves out -----------------

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


# -- seed 003, Performance Validation -------------------------------------------------


async def test_003_performance_validation(tmp_path: Path) -> None:
    db = Database(tmp_path / "abathur.db")
    await db.initialize()
    # Example query to verify index usage
    query = "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 ORDER BY version DESC LIMIT 1"
    plan = await db.explain_query_plan(query, ("user:test", "key"))
    # Verify "USING INDEX" appears in plan output
    assert any("USING INDEX" in line for line in plan), plan


# -- seed 003, 3. Update initialize() Method: the PRAGMAs on a connection -----------------


async def test_003_pragmas_on_a_raw_connection(tmp_path: Path) -> None:
    db = Database(tmp_path / "abathur.db")
    await db.initialize()
    async with db._get_connection() as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA wal_autocheckpoint=1000")  # ADD THIS
        cursor = await conn.execute("PRAGMA journal_mode")
        assert (await cursor.fetchone())[0] == "wal"


# -- seed 004, the implementation guide, on a database memkit created ----------------------


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "abathur.db"
    async with Database(path):
        pass
    return path


async def test_004_initialize_database(db_path: Path) -> None:
    await guide.initialize_database(db_path)


async def test_004_verify_tables(db_path: Path) -> None:
    async with aiosqlite.connect(str(db_path)) as conn:
        await guide.verify_tables(conn)


async def test_004_seed_initial_data(db_path: Path) -> None:
    async with aiosqlite.connect(str(db_path)) as conn:
        await guide.seed_initial_data(conn)
    async with Database(db_path) as db:
        entry = await db.memory.get_memory("app:abathur:config", "memory_lifecycle_policies")
        assert entry is not None and entry["value"]["episodic_ttl_days"] == 90
        assert len(await db.memory.search_memories("app:abathur")) == 3


async def test_004_run_integrity_checks(db_path: Path) -> None:
    async with aiosqlite.connect(str(db_path)) as conn:
        await guide.run_integrity_checks(conn)


async def test_004_query_performance(db_path: Path) -> None:
    async with aiosqlite.connect(str(db_path)) as conn:
        await guide.test_query_performance(conn)


@pytest.mark.xfail(raises=AssertionError, strict=True, reason=(
    "the seed's own index cannot serve the seed's own query: idx_sessions_status_updated is "
    "partial (WHERE status IN ('active', 'paused')) and SQLite does not infer that from "
    "status = 'active', so the plan is SCAN sessions; memkit keeps the index as specified"))
async def test_004_verify_index_usage(db_path: Path) -> None:
    async with aiosqlite.connect(str(db_path)) as conn:
        await guide.verify_index_usage(conn)
