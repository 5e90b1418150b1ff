"""The counts ``memkit stats`` shows, read by the services that own the tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from abathur_memkit import Database, agents, audit, memory, sessions, tasks


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(tmp_path / "reads.db") as database:
        yield database


async def test_empty_database(db: Database) -> None:
    for count in (sessions.count_by_status, tasks.count_by_status, agents.count_by_state,
                  memory.count_by_type, audit.count_by_operation):
        assert await db.read(count) == {}
    assert await db.read(memory.totals) == {"live_keys": 0, "namespaces": 0,
                                            "deleted_rows": 0, "max_version": 0}


async def test_counts_follow_the_writes(db: Database) -> None:
    for n in range(3):
        await db.sessions.create_session(f"s{n}", app_name="app", user_id="u")
    await db.sessions.update_status("s0", "active")
    task = await db.tasks.submit("do it")
    await db.tasks.submit("and this")
    await db.agents.spawn("a", "coder", task, "model")
    await db.memory.add_memory("user:u:notes", "k1", {"v": 1}, "semantic", "agent")
    await db.memory.update_memory("user:u:notes", "k1", {"v": 2}, "agent")
    await db.memory.add_memory("user:u:notes", "k2", 1, "episodic", "agent")
    await db.memory.add_memory("app:x", "k3", 1, "episodic", "agent")
    await db.memory.delete_memory("app:x", "k3")

    assert await db.read(sessions.count_by_status) == {"created": 2, "active": 1}
    assert await db.read(tasks.count_by_status) == {"pending": 2}
    assert await db.read(agents.count_by_state) == {"idle": 1}
    assert await db.read(memory.count_by_type) == {"episodic": 2, "semantic": 2}
    assert await db.read(audit.count_by_operation) == {"create": 3, "update": 1, "delete": 1}
    assert await db.read(memory.totals) == {"live_keys": 2, "namespaces": 1,
                                            "deleted_rows": 1, "max_version": 2}
