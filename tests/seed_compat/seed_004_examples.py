"""The code examples of seed 004 (implementation guide), exactly as written.

Each function is copied from the section named above it; they take an
``aiosqlite.Connection`` as the guide's own ``initialize_database`` opens one.
"""
# ruff: noqa
import aiosqlite
import json
from datetime import datetime, timezone
from pathlib import Path


# 2.2 Set PRAGMA Configuration
async def initialize_database(db_path: Path):
    """Initialize fresh Abathur database with memory management schema."""

    async with aiosqlite.connect(str(db_path)) as conn:
        # Step 1: Configure PRAGMA settings
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute("PRAGMA wal_autocheckpoint = 1000")

        # Verify WAL mode
        cursor = await conn.execute("PRAGMA journal_mode")
        mode = await cursor.fetchone()
        assert mode[0] == 'wal', f"WAL mode not enabled: {mode[0]}"

        print("PRAGMA configuration complete")


# 2.4 Verify Table Creation
async def verify_tables(conn: aiosqlite.Connection):
    """Verify all tables were created successfully."""

    expected_tables = [
        'sessions',
        'memory_entries',
        'document_index',
        'tasks',
        'agents',
        'state',
        'audit',
        'metrics',
        'checkpoints'
    ]

    cursor = await conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
    )
    tables = [row[0] for row in await cursor.fetchall()]

    for table in expected_tables:
        assert table in tables, f"Table {table} not created"

    print(f"Verified {len(expected_tables)} tables")


# 3.1 Seed Application Memories
async def seed_initial_data(conn: aiosqlite.Connection):
    """Seed initial procedural and semantic memories."""

    # Seed: Default agent instructions
    await conn.execute(
        """
        INSERT INTO memory_entries (namespace, key, value, memory_type, created_by, updated_by)
        VALUES (?, ?, ?, ?, 'system', 'system')
        """,
        (
            'app:abathur:agent_instructions',
            'default_workflow',
            json.dumps({
                "steps": [
                    "Read and analyze task requirements",
                    "Retrieve relevant context from memory",
                    "Execute task with best practices",
                    "Update session state and memory",
                    "Log comprehensive audit trail"
                ],
                "error_handling": "Always provide detailed error messages and rollback on failure",
                "logging": "Comprehensive audit logging enabled"
            }),
            'procedural'
        )
    )

    # Seed: Memory lifecycle policies
    await conn.execute(
        """
        INSERT INTO memory_entries (namespace, key, value, memory_type, created_by, updated_by)
        VALUES (?, ?, ?, ?, 'system', 'system')
        """,
        (
            'app:abathur:config',
            'memory_lifecycle_policies',
            json.dumps({
                "episodic_ttl_days": 90,
                "semantic_permanent": True,
                "procedural_versioned": True,
                "consolidation_frequency": "weekly",
                "archival_after_days": 365
            }),
            'procedural'
        )
    )

    # Seed: Default user preferences template
    await conn.execute(
        """
        INSERT INTO memory_entries (namespace, key, value, memory_type, created_by, updated_by)
        VALUES (?, ?, ?, ?, 'system', 'system')
        """,
        (
            'app:abathur:defaults',
            'user_preference_template',
            json.dumps({
                "communication_style": "balanced",
                "technical_level": "intermediate",
                "response_length": "moderate",
                "code_comments": True
            }),
            'semantic'
        )
    )

    await conn.commit()
    print("Initial data seeded")


# 4.1 Integrity Checks
async def run_integrity_checks(conn: aiosqlite.Connection):
    """Run comprehensive database integrity checks."""

    # Check 1: SQLite integrity
    cursor = await conn.execute("PRAGMA integrity_check")
    result = await cursor.fetchone()
    assert result[0] == 'ok', f"Integrity check failed: {result[0]}"
    print("✓ SQLite integrity check passed")

    # Check 2: Foreign key consistency
    cursor = await conn.execute("PRAGMA foreign_key_check")
    violations = await cursor.fetchall()
    assert len(violations) == 0, f"Foreign key violations: {violations}"
    print("✓ Foreign key consistency verified")

    # Check 3: Verify indexes exist
    cursor = await conn.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type='index'"
    )
    index_count = (await cursor.fetchone())[0]
    assert index_count >= 30, f"Expected 30+ indexes, found {index_count}"
    print(f"✓ {index_count} indexes created")

    # Check 4: Verify JSON validation constraints
    try:
        await conn.execute(
            "INSERT INTO sessions (id, app_name, user_id, events) VALUES ('test', 'app', 'user', 'invalid json')"
        )
        assert False, "JSON validation constraint should have failed"
    except Exception:
        pass  # Expected failure
    print("✓ JSON validation constraints working")


# 4.2 Query Performance Tests
async def test_query_performance(conn: aiosqlite.Connection):
    """Verify query performance targets."""

    import time

    # Test 1: Session retrieval
    session_id = 'test_session_' + str(time.time())
    await conn.execute(
        "INSERT INTO sessions (id, app_name, user_id, status) VALUES (?, 'app', 'user', 'created')",
        (session_id,)
    )
    await conn.commit()

    start = time.time()
    cursor = await conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,))
    await cursor.fetchone()
    duration_ms = (time.time() - start) * 1000

    assert duration_ms < 10, f"Session retrieval took {duration_ms:.2f}ms (expected <10ms)"
    print(f"✓ Session retrieval: {duration_ms:.2f}ms")

    # Test 2: Memory retrieval with index
    await conn.execute(
        """
        INSERT INTO memory_entries (namespace, key, value, memory_type, created_by, updated_by)
        VALUES ('user:test:pref', 'theme', '{"mode": "dark"}', 'semantic', 'session:test', 'session:test')
        """
    )
    await conn.commit()

    start = time.time()
    cursor = await conn.execute(
        """
        SELECT * FROM memory_entries
        WHERE namespace = 'user:test:pref' AND key = 'theme' AND is_deleted = 0
        ORDER BY version DESC LIMIT 1
        """,
    )
    await cursor.fetchone()
    duration_ms = (time.time() - start) * 1000

    assert duration_ms < 20, f"Memory retrieval took {duration_ms:.2f}ms (expected <20ms)"
    print(f"✓ Memory retrieval: {duration_ms:.2f}ms")


# 4.3 Verify EXPLAIN QUERY PLAN
async def verify_index_usage(conn: aiosqlite.Connection):
    """Verify critical queries use indexes."""

    # Test: Memory namespace query
    cursor = await conn.execute(
        """
        EXPLAIN QUERY PLAN
        SELECT * FROM memory_entries
        WHERE namespace = 'user:test' AND key = 'pref' AND is_deleted = 0
        ORDER BY version DESC LIMIT 1
        """
    )
    plan = await cursor.fetchall()

    plan_text = " ".join(str(row) for row in plan)
    assert "idx_memory_namespace_key_version" in plan_text or "USING INDEX" in plan_text, \
        f"Index not used: {plan_text}"
    assert "SCAN TABLE" not in plan_text, "Full table scan detected"

    print("✓ Memory query uses index")

    # Test: Session status query
    cursor = await conn.execute(
        """
        EXPLAIN QUERY PLAN
        SELECT * FROM sessions
        WHERE status = 'active'
        ORDER BY last_update_time DESC
        """
    )
    plan = await cursor.fetchall()

    plan_text = " ".join(str(row) for row in plan)
    assert "idx_sessions_status_updated" in plan_text or "USING INDEX" in plan_text, \
        f"Index not used: {plan_text}"

    print("✓ Session query uses index")
