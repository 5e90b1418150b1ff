"""prefs_app's tests: behaviour, query plans and latency gates, with the memkit plugin."""

from __future__ import annotations

import pytest
from prefs_app import get_preference, preference_template, set_preference

LATEST = (
    "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
    "ORDER BY version DESC LIMIT 1"
)


@pytest.mark.asyncio
async def test_defaults_come_from_the_seeded_template(memkit_seeded_db):
    assert (await preference_template(memkit_seeded_db))["technical_level"] == "intermediate"
    assert await get_preference(memkit_seeded_db, "bob", "response_length") == "moderate"


@pytest.mark.asyncio
@pytest.mark.memkit_seed("seeds/users.json")
async def test_seed_file_from_marker(memkit_seeded_db):
    assert await get_preference(memkit_seeded_db, "alice", "communication_style") == "terse"


@pytest.mark.asyncio
@pytest.mark.memkit_query_guard  # every statement of the test is explained; a scan fails it
async def test_set_then_get_never_scans(memkit_seeded_db):
    await set_preference(memkit_seeded_db, "alice", "theme", "dark")
    await set_preference(memkit_seeded_db, "alice", "theme", "light")
    assert await get_preference(memkit_seeded_db, "alice", "theme") == "light"


@pytest.mark.asyncio
async def test_lookup_uses_the_namespace_key_index(memkit_seeded_db, memkit_plan):
    await memkit_plan.assert_uses_index(
        memkit_seeded_db,
        LATEST,
        ("user:alice:preferences", "theme"),
        index="idx_memory_namespace_key_version",
    )


@pytest.mark.asyncio
@pytest.mark.memkit_latency(p99_ms=250, max_vm_steps=5_000)  # generous: CI machines vary
async def test_lookup_latency(memkit_seeded_db, memkit_latency):
    db = memkit_seeded_db
    await set_preference(db, "alice", "theme", "dark")
    stats = await memkit_latency(lambda: get_preference(db, "alice", "theme"))
    assert stats.rounds == 100
    assert stats.vm_steps is not None and stats.vm_steps > 0


def test_sync_code_can_use_the_database_too(memkit_sync_db):
    memkit_sync_db.memory.add_memory("user:carol:preferences", "theme", "dark", "semantic", "carol")
    assert memkit_sync_db.run(get_preference(memkit_sync_db.db, "carol", "theme")) == "dark"
