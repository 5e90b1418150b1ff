"""memory_heads: scope-wide reads give what the old every-version queries gave."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database, memory
from abathur_memkit.bench.scope import (
    LEGACY_SEARCH_PREFIX,
    legacy_list_namespaces,
    legacy_search,
)
from abathur_memkit.engines.sqlite.schema import migrations, statements
from abathur_memkit.memory import MemoryItem, _fetch
from abathur_memkit.namespaces import prefix_bounds

NAMESPACES = ["user:alice", "user:alice:notes", "user:alice2", "user:alice:notes:deep",
              "user:bob", "app:abathur:config", "project:p1", "session:s1", "user:alice0"]
PREFIXES = ["", "user", "user:alice", "user:alice:notes", "user:alice2", "app", "project:p1",
            "session", "user:carol"]


async def _churn(db: Database, rng: random.Random, steps: int) -> None:
    """Random creates, updates, deletes, restores, rollbacks and batches."""
    mem = db.memory
    for step in range(steps):
        ns, key = rng.choice(NAMESPACES), f"k{rng.randrange(12)}"
        newest = await db.fetchone(
            "SELECT version, is_deleted FROM memory_entries WHERE namespace = ? AND key = ? "
            "ORDER BY version DESC LIMIT 1", (ns, key))
        kind = rng.choice(("semantic", "episodic", "procedural"))
        if newest is None or newest["is_deleted"]:
            if newest is not None and rng.random() < 0.5:
                await mem.restore_memory(ns, key)
            elif rng.random() < 0.2:
                batch = rng.getrandbits(48)
                fresh = [MemoryItem(ns, f"batch{batch}-{i}", i, kind) for i in range(3)]
                await mem.add_memories(fresh, "system")
            else:
                await mem.add_memory(ns, key, step, kind, "system")
            continue
        choice = rng.random()
        if choice < 0.4:
            await mem.update_memory(ns, key, step, "system", memory_type=kind)
        elif choice < 0.6:
            await mem.delete_memory(ns, key)
        elif choice < 0.8 and newest["version"] > 1:
            await mem.rollback_memory(ns, key, 1, "system")
        else:
            # Equal timestamps are common in batches; the id breaks the tie the same way.
            await db.execute("UPDATE memory_entries SET updated_at = '2020-01-01 00:00:00' "
                             "WHERE namespace = ? AND key = ?", (ns, key))


async def _assert_same(db: Database) -> None:
    for prefix in PREFIXES:
        for kind in (None, "episodic"):
            for limit in (1, 5, 50, 10_000):
                assert await db.memory.search_memories(prefix, kind, limit) == \
                    await legacy_search(db, prefix, kind, limit), (prefix, kind, limit)
        assert await db.memory.list_namespaces(prefix) == \
            await legacy_list_namespaces(db, prefix), prefix
        bounds = prefix_bounds(prefix)
        if bounds is not None:  # no limit, as context_for_session asks
            assert await _unlimited(db, db.memory.sql.search_prefix, bounds) == \
                await _unlimited(db, LEGACY_SEARCH_PREFIX, bounds), prefix


async def _unlimited(db: Database, sql: str, bounds: tuple[str, str, str]) -> list[Any]:
    def fetch(conn: Any) -> list[Any]:
        return _fetch(conn, sql, (*bounds, None, None, db.memory.sql.unlimited))

    return await db.read(fetch)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("walk_from", [memory.WALK_FROM_HEADS, 2])
async def test_search_and_list_match_the_old_queries(
    db: Database, monkeypatch: pytest.MonkeyPatch, seed: int, walk_from: int
) -> None:
    # walk_from=2 sends every prefix with 2+ keys down the newest-first walk.
    monkeypatch.setattr(memory, "WALK_FROM_HEADS", walk_from)
    rng = random.Random(seed)
    for _ in range(4):
        await _churn(db, rng, 60)
        await _assert_same(db)


async def test_raw_sql_writes_keep_the_heads(db: Database) -> None:
    mem = db.memory
    await mem.add_memory("user:alice", "k", 1, "semantic", "system")
    await mem.update_memory("user:alice", "k", 2, "system")
    await mem.update_memory("user:alice", "k", 3, "system")
    # A hard delete of the head: the previous live version is the head again.
    await db.execute("DELETE FROM memory_entries WHERE namespace = 'user:alice' AND version = 3")
    assert [m["version"] for m in await mem.search_memories("user")] == [2]
    # A version deleted by hand: the next live one down is the head.
    await db.execute(
        "UPDATE memory_entries SET is_deleted = 1 WHERE namespace = 'user:alice' AND version = 2")
    assert [m["version"] for m in await mem.search_memories("")] == [1]
    # A moved key leaves its old namespace and appears in the new one.
    await db.execute("UPDATE memory_entries SET namespace = 'user:bob' WHERE key = 'k'")
    assert await mem.list_namespaces() == ["user:bob"]
    assert [m["version"] for m in await mem.search_memories("user:bob")] == [1]
    await _assert_same(db)
    await db.execute("DELETE FROM memory_entries")
    assert await db.fetchall("SELECT * FROM memory_heads") == []
    assert await mem.list_namespaces() == []


async def test_migration_fills_heads_of_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for migration in migrations():
        if migration.version <= 4:
            for statement in statements(migration.sql):
                conn.execute(statement)
    insert = ("INSERT INTO memory_entries (namespace, key, value, memory_type, version, "
              "is_deleted, updated_at) VALUES (?, ?, '1', ?, ?, ?, ?)")
    conn.executemany(insert, [
        ("user:a", "live", "semantic", 1, 0, "2025-01-01"),
        ("user:a", "live", "episodic", 2, 0, "2025-01-03"),
        ("user:a", "gone", "semantic", 1, 1, "2025-01-02"),
        ("user:a:x", "back", "semantic", 1, 1, "2025-01-01"),
        ("user:a:x", "back", "semantic", 2, 0, "2025-01-02"),
        ("app:z", "gone", "semantic", 1, 1, "2025-01-04"),
    ])
    conn.close()
    db = Database(path)
    try:
        assert await db.initialize() == [5, 6, 7]
        found = await db.memory.search_memories("")
        assert [(m["namespace"], m["key"], m["version"]) for m in found] == [
            ("user:a", "live", 2), ("user:a:x", "back", 2)]
        assert await db.memory.list_namespaces() == ["user:a", "user:a:x"]
        await _assert_same(db)
    finally:
        await db.close()
