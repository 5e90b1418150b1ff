"""MemoryService: versions, soft delete, prefixes, TTL, batch, context, publish, policy."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from dbdump import dump

from abathur_memkit import (
    AlreadyExistsError,
    Database,
    InvalidInputError,
    MemkitError,
    NotFoundError,
    WritePolicyError,
)
from abathur_memkit import memory as sql
from abathur_memkit.memory import MemoryItem, MemoryService
from abathur_memkit.namespaces import WritePolicy

NS = "user:alice:preferences"


@pytest.fixture
async def alice(policy_db: Database) -> Database:
    db = policy_db
    await db.execute("INSERT INTO sessions (id, app_name, user_id, project_id) "
                     "VALUES ('s1', 'abathur', 'alice', 'p1')")
    return db


async def audit_rows(db: Database) -> list[dict[str, Any]]:
    return await db.fetchall(
        "SELECT action_type, memory_operation_type, memory_namespace, memory_entry_id, task_id "
        "FROM audit ORDER BY id")


# A trigger that refuses every audit row.
AUDIT_DOWN = {
    "sqlite": "CREATE TRIGGER audit_down BEFORE INSERT ON audit "
              "BEGIN SELECT RAISE(ABORT, 'audit is down'); END",
    "postgresql": "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'audit is down'; END $$; "
                  "CREATE TRIGGER audit_down BEFORE INSERT ON audit "
                  "FOR EACH ROW EXECUTE FUNCTION audit_down()",
}


# -- versioning ---------------------------------------------------------------

async def test_add_update_get_history(alice: Database) -> None:
    mem = alice.memory
    first = await mem.add_memory(NS, "theme", {"mode": "dark"}, "semantic", "session:s1",
                                 metadata={"source": "chat"})
    assert await mem.update_memory(NS, "theme", {"mode": "light"}, "agent:a1") == 2
    latest = await mem.get_memory(NS, "theme")
    assert latest is not None
    assert latest["value"] == {"mode": "light"} and latest["version"] == 2
    # Seed defect 6: the new version keeps memory_type, metadata and created_by.
    assert latest["memory_type"] == "semantic"
    assert latest["metadata"] == {"source": "chat"}
    assert latest["created_by"] == "session:s1" and latest["updated_by"] == "agent:a1"
    v1 = await mem.get_memory(NS, "theme", version=1)
    assert v1 is not None and v1["id"] == first and v1["value"] == {"mode": "dark"}
    history = await mem.get_memory_history(NS, "theme")
    assert [h["version"] for h in history] == [2, 1]
    assert await mem.get_memory(NS, "missing") is None


async def test_update_can_change_type_and_metadata(db: Database) -> None:
    await db.memory.add_memory(NS, "k", 1, "episodic", "system")
    await db.memory.update_memory(NS, "k", 2, "system", memory_type="semantic",
                                  metadata={"pinned": True})
    latest = await db.memory.get_memory(NS, "k")
    assert latest is not None
    assert (latest["memory_type"], latest["metadata"]) == ("semantic", {"pinned": True})


async def test_soft_delete_then_readd_continues_versions(db: Database) -> None:
    # Seed defect 4: re-adding after a soft delete must not collide with version 1.
    mem = db.memory
    await mem.add_memory(NS, "theme", "dark", "semantic", "system")
    await mem.update_memory(NS, "theme", "light", "system")
    assert await mem.delete_memory(NS, "theme") is True
    assert await mem.delete_memory(NS, "theme") is False
    assert await mem.get_memory(NS, "theme") is None
    await mem.add_memory(NS, "theme", "blue", "semantic", "system")
    latest = await mem.get_memory(NS, "theme")
    assert latest is not None and (latest["version"], latest["value"]) == (3, "blue")
    history = await mem.get_memory_history(NS, "theme")
    assert [(h["version"], h["is_deleted"]) for h in history] == [(3, False), (2, True), (1, True)]


async def test_restore_after_delete(db: Database) -> None:
    mem = db.memory
    await mem.add_memory(NS, "theme", "dark", "semantic", "system")
    await mem.update_memory(NS, "theme", "light", "system")
    await mem.delete_memory(NS, "theme", task_id="task:xyz")
    assert await mem.restore_memory(NS, "theme") == 2
    latest = await mem.get_memory(NS, "theme")
    assert latest is not None and latest["value"] == "light"
    with pytest.raises(InvalidInputError, match="Memory is not deleted"):
        await mem.restore_memory(NS, "theme")
    with pytest.raises(NotFoundError,
                       match="Memory not found: namespace 'user:alice:preferences', key 'nope'"):
        await mem.restore_memory(NS, "nope")


async def test_rollback_adds_a_version(db: Database) -> None:
    mem = db.memory
    await mem.add_memory(NS, "theme", "dark", "semantic", "system")
    await mem.update_memory(NS, "theme", "light", "system")
    assert await mem.rollback_memory(NS, "theme", 1, "agent:a1") == 3
    latest = await mem.get_memory(NS, "theme")
    assert latest is not None and (latest["version"], latest["value"]) == (3, "dark")
    assert len(await mem.get_memory_history(NS, "theme")) == 3  # nothing rewritten
    with pytest.raises(NotFoundError, match="version 9"):
        await mem.rollback_memory(NS, "theme", 9, "agent:a1")


# -- prefixes (seed defects 2 and 5) -----------------------------------------

async def test_prefix_is_segment_aware_and_literal(db: Database) -> None:
    mem = db.memory
    for ns in ("user:alice", "user:alice:preferences", "user:alice2:preferences",
               "user:a_b", "user:aXb", "user:a%", "user:ALICE"):
        await mem.add_memory(ns, "k", ns, "semantic", "system")

    async def names(prefix: str) -> list[str]:
        return sorted(m["namespace"] for m in await mem.search_memories(prefix))

    assert await names("user:alice") == ["user:alice", "user:alice:preferences"]
    assert await names("user:alice:") == ["user:alice", "user:alice:preferences"]
    assert await names("user:a_b") == ["user:a_b"]  # "_" is not a wildcard
    assert await names("user:a%") == ["user:a%"]  # nor is "%"
    assert await names("user:alice:preferences") == ["user:alice:preferences"]
    assert len(await names("user")) == 7
    assert len(await names("")) == 7


async def test_search_returns_latest_live_version_per_key(db: Database) -> None:
    mem = db.memory
    await mem.add_memory(NS, "a", 1, "semantic", "system")
    await mem.update_memory(NS, "a", 2, "system")
    await mem.update_memory(NS, "a", 3, "system")
    await mem.add_memory(NS, "b", 1, "episodic", "system")
    await mem.add_memory(NS, "gone", 1, "semantic", "system")
    await mem.delete_memory(NS, "gone")
    found = await mem.search_memories("user:alice")
    assert sorted((m["key"], m["value"]) for m in found) == [("a", 3), ("b", 1)]
    episodic = await mem.search_memories("user:alice", memory_type="episodic")
    assert [m["key"] for m in episodic] == ["b"]
    assert len(await mem.search_memories("user:alice", limit=1)) == 1


@pytest.mark.sqlite_only("SQLite's EXPLAIN QUERY PLAN; PostgreSQL's plans are checked apart")
async def test_prefix_query_plans_search_the_index(db: Database) -> None:
    bounds = ("user:a", "user:a:", "user:a;")
    plan = await db.query_plan(sql.SEARCH_PREFIX, (*bounds, None, None, 50))
    details = [d for _, _, d in plan]
    assert "SEARCH h USING PRIMARY KEY (namespace>? AND namespace<?)" in details, details
    assert not any(d.startswith(("SCAN m", "SCAN h")) for d in details), details
    # Scope-wide: a walk of the heads newest first, one row lookup per result.
    for query, params in ((sql.SEARCH_ALL, (None, None, 50)),
                          (sql.SEARCH_PREFIX_WALK, (*bounds, None, None, 50))):
        details = [d for _, _, d in await db.query_plan(query, params)]
        assert details == ["SCAN h USING COVERING INDEX idx_memory_heads_recent",
                           "SEARCH m USING INTEGER PRIMARY KEY (rowid=?)"], details
    for query in (sql.GET_LATEST, sql.GET_NEWEST, sql.HISTORY, sql.SOFT_DELETE):
        details = [d for _, _, d in await db.query_plan(query, ("n",) * query.count("?"))]
        assert details[0].startswith("SEARCH memory_entries USING "), (query, details)
    details = [d for _, _, d in await db.query_plan(sql.LIST_NAMESPACES, ("", "~"))]
    assert "SEARCH memory_namespaces USING PRIMARY KEY (namespace>? AND namespace<?)" in details
    assert not any(d.startswith("SCAN memory") for d in details), details
    details = [d for _, _, d in await db.query_plan(sql.EXPIRED, ("2025",))]
    assert "idx_memory_episodic_ttl" in details[0]


async def test_list_namespaces(db: Database) -> None:
    mem = db.memory
    for ns, key in (("user:bob", "a"), ("app:abathur:config", "a"), ("user:alice:x", "a"),
                    ("user:alice:x", "b"), ("user:carol", "a")):
        await mem.add_memory(ns, key, 1, "semantic", "system")
    await mem.delete_memory("user:carol", "a")  # no live memory left there
    assert await mem.list_namespaces() == ["app:abathur:config", "user:alice:x", "user:bob"]
    assert await mem.list_namespaces("user") == ["user:alice:x", "user:bob"]
    assert await mem.list_namespaces("user:alice") == ["user:alice:x"]


# -- TTL -----------------------------------------------------------------------

async def test_cleanup_expired_is_episodic_only(db: Database) -> None:
    mem = db.memory
    await mem.add_memory("session:s1", "old-episode", 1, "episodic", "system")
    await mem.add_memory("session:s1", "new-episode", 1, "episodic", "system")
    await mem.add_memory("session:s1", "old-fact", 1, "semantic", "system")
    await mem.add_memory("session:s1", "refreshed", 1, "episodic", "system")
    await db.execute("UPDATE memory_entries SET updated_at = '2020-01-01 00:00:00' "
                     "WHERE key IN ('old-episode', 'old-fact', 'refreshed')")
    await mem.update_memory("session:s1", "refreshed", 2, "system")  # a fresh version
    assert await mem.cleanup_expired_memories(ttl_days=90) == 1
    assert await mem.get_memory("session:s1", "old-episode") is None
    for key in ("new-episode", "old-fact", "refreshed"):
        assert await mem.get_memory("session:s1", key) is not None
    rows = await db.fetchall("SELECT action_type FROM audit WHERE action_type = 'memory_expire'")
    assert len(rows) == 1
    assert await mem.cleanup_expired_memories(ttl_days=90) == 0
    with pytest.raises(InvalidInputError, match="Invalid ttl_days"):
        await mem.cleanup_expired_memories(ttl_days=-1)


# -- batch -----------------------------------------------------------------------

async def test_batch_insert_with_audit_rows(db: Database) -> None:
    items = [MemoryItem("user:bob", f"k{i}", {"i": i}) for i in range(100)]
    items.append(MemoryItem("user:bob:x", "e", [1], "episodic", {"m": 1}))
    ids = await db.memory.add_memories(items, "system", task_id="task:bulk")
    assert len(ids) == 101 == len(set(ids))
    rows = await db.fetchall("SELECT id, key FROM memory_entries ORDER BY id")
    assert [r["id"] for r in rows] == ids
    audits = await db.fetchall("SELECT memory_entry_id, memory_operation_type, task_id "
                               "FROM audit ORDER BY id")
    assert [a["memory_entry_id"] for a in audits] == ids
    assert {(a["memory_operation_type"], a["task_id"]) for a in audits} == \
        {("create", "task:bulk")}
    got = await db.memory.get_memory("user:bob:x", "e")
    assert got is not None and got["metadata"] == {"m": 1} and got["memory_type"] == "episodic"


async def test_batch_is_all_or_nothing(db: Database) -> None:
    await db.memory.add_memory("user:bob", "taken", 1, "semantic", "system")
    before = await dump(db)
    bad_batches: list[tuple[list[Any], type[Exception], str]] = [
        ([{"namespace": "user:bob", "key": "a", "value": 1},
          {"namespace": "bogus", "key": "b", "value": 2}], InvalidInputError,
         "Item 1: Invalid namespace format"),
        ([{"namespace": "user:bob", "key": "a", "value": 1},
          {"namespace": "user:bob", "key": "a", "value": 2}], InvalidInputError,
         "Item 1: duplicate key"),
        ([{"namespace": "user:bob", "key": "a", "value": 1},
          {"namespace": "user:bob", "key": "taken", "value": 2}], AlreadyExistsError,
         "Item 1: memory already exists"),
        ([{"namespace": "user:bob", "key": "a", "value": {1, 2}}], InvalidInputError,
         "Item 0: Invalid value: not JSON-serializable"),
        ([{"namespace": "user:bob", "key": "a"}], InvalidInputError, "Item 0: missing"),
    ]
    for batch, error, message in bad_batches:
        with pytest.raises(error, match=message):
            await db.memory.add_memories(batch, "system")
        assert await dump(db) == before


async def test_batch_respects_the_policy(alice: Database) -> None:
    before = await dump(alice)
    with pytest.raises(WritePolicyError):
        await alice.memory.add_memories(
            [MemoryItem("session:s1", "ok", 1), MemoryItem("app:abathur", "no", 2)], "session:s1")
    assert await dump(alice) == before


# -- context and publish ---------------------------------------------------------

async def test_context_precedence(alice: Database) -> None:
    mem = alice.memory
    for scope_ns in ("project:p1", "app:abathur", "user:alice:prefs", "session:s1",
                     "temp:s1"):
        await mem.add_memory(scope_ns, "tone", scope_ns, "semantic", "system")
    await mem.add_memory("project:p1", "only-project", 1, "semantic", "system")
    await mem.add_memory("user:bob", "tone", "not alice's", "semantic", "system")
    ctx = await mem.context_for_session("s1")
    assert ctx["tone"]["value"] == "temp:s1" and ctx["tone"]["scope"] == "temp"
    assert ctx["only-project"]["scope"] == "project"
    for stronger, expected in (("temp:s1", "session:s1"), ("session:s1", "user:alice:prefs"),
                               ("user:alice:prefs", "app:abathur"), ("app:abathur", "project:p1")):
        await mem.delete_memory(stronger, "tone")
        assert (await mem.context_for_session("s1"))["tone"]["value"] == expected
    with pytest.raises(NotFoundError, match="Session nope not found"):
        await mem.context_for_session("nope")


async def test_publish_draft(alice: Database) -> None:
    mem = alice.memory
    await mem.add_memory("session:s1:draft", "summary", {"text": "v1"}, "semantic", "session:s1")
    entry = await mem.publish_memory("session:s1:draft", "summary", "user:alice", "session:s1")
    published = await mem.get_memory("user:alice", "summary")
    assert published is not None and published["id"] == entry
    assert published["value"] == {"text": "v1"}
    await mem.update_memory("session:s1:draft", "summary", {"text": "v2"}, "session:s1")
    await mem.publish_memory("session:s1:draft", "summary", "user:alice", "session:s1")
    again = await mem.get_memory("user:alice", "summary")
    assert again is not None and (again["version"], again["value"]) == (2, {"text": "v2"})
    ops = [a["memory_operation_type"] for a in await audit_rows(alice)]
    assert ops == ["create", "publish", "update", "publish"]
    with pytest.raises(WritePolicyError):
        await mem.publish_memory("session:s1:draft", "summary", "project:p1", "session:s1")
    await mem.publish_memory("session:s1:draft", "summary", "project:p1", "session:s1",
                             elevated=True)
    with pytest.raises(InvalidInputError, match="Invalid publish source"):
        await mem.publish_memory("user:alice", "summary", "project:p1", "system")
    with pytest.raises(InvalidInputError, match="Invalid publish target"):
        await mem.publish_memory("session:s1:draft", "summary", "session:s2", "system")
    with pytest.raises(NotFoundError):
        await mem.publish_memory("session:s1:draft", "nope", "user:alice", "session:s1")


# -- write policy ------------------------------------------------------------------

async def test_write_policy(alice: Database) -> None:
    mem = alice.memory
    await mem.add_memory("session:s1", "a", 1, "semantic", "session:s1")
    await mem.add_memory("session:s1:scratch", "a", 1, "semantic", "session:s1")
    await mem.add_memory("user:alice:prefs", "a", 1, "semantic", "session:s1")
    before = await dump(alice)
    for namespace in ("app:abathur", "project:p1", "user:bob", "user:alice2", "session:s2",
                      "session:s10", "temp:s1"):
        with pytest.raises(WritePolicyError, match="Write denied: session:s1"):
            await mem.add_memory(namespace, "a", 1, "semantic", "session:s1")
    with pytest.raises(WritePolicyError):
        await mem.update_memory("user:alice:prefs", "a", 2, "session:s9")  # unknown session
    with pytest.raises(WritePolicyError):
        await mem.delete_memory("user:alice:prefs", "a", deleted_by="session:s2")
    assert await dump(alice) == before
    await mem.add_memory("app:abathur", "a", 1, "semantic", "session:s1", elevated=True)
    await mem.add_memory("project:p1", "a", 1, "semantic", "agent:planner")  # not a session
    open_service = MemoryService(alice, policy=WritePolicy(enforce=False))
    await open_service.add_memory("user:bob", "a", 1, "semantic", "session:s1")


# -- errors: a clear message, and nothing changed ------------------------------------

@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda m: m.add_memory("userx", "k", 1, "semantic", "s"), InvalidInputError,
     "Invalid namespace format: 'userx'"),
    (lambda m: m.add_memory("user:", "k", 1, "semantic", "s"), InvalidInputError,
     "Invalid namespace format"),
    (lambda m: m.add_memory("galaxy:x", "k", 1, "semantic", "s"), InvalidInputError,
     "Invalid namespace format"),
    (lambda m: m.add_memory(NS, "k", 1, "emotional", "s"), InvalidInputError,
     "Invalid memory_type: emotional"),
    (lambda m: m.add_memory(NS, "k", {1, 2}, "semantic", "s"), InvalidInputError,
     "Invalid value: not JSON-serializable"),
    (lambda m: m.add_memory(NS, "k", math.nan, "semantic", "s"), InvalidInputError,
     "Invalid value: not valid JSON"),
    (lambda m: m.add_memory(NS, "k", 1, "semantic", "s", metadata=[1]), InvalidInputError,
     "Invalid metadata"),
    (lambda m: m.add_memory(NS, "", 1, "semantic", "s"), InvalidInputError, "Invalid key: empty"),
    (lambda m: m.add_memory(NS, "k\x00", 1, "semantic", "s"), InvalidInputError, "NUL"),
    (lambda m: m.add_memory(NS, 5, 1, "semantic", "s"), InvalidInputError, "Invalid key"),
    (lambda m: m.add_memory(NS, "theme", 1, "semantic", "s"), AlreadyExistsError,
     "Memory already exists: namespace 'user:alice:preferences', key 'theme'"),
    (lambda m: m.update_memory(NS, "nope", 1, "s"), NotFoundError,
     "Memory not found: namespace 'user:alice:preferences', key 'nope'"),
    (lambda m: m.get_memory(NS, "theme", version=0), InvalidInputError, "Invalid version"),
    (lambda m: m.search_memories("user:a", limit=0), InvalidInputError, "Invalid limit"),
    (lambda m: m.search_memories("nowhere"), InvalidInputError, "Invalid namespace format"),
])
async def test_errors_change_nothing(db: Database, call: Any, error: type[Exception],
                                     message: str) -> None:
    await db.memory.add_memory(NS, "theme", "dark", "semantic", "system")
    before = await dump(db)
    with pytest.raises(error, match=message) as info:
        await call(db.memory)
    assert isinstance(info.value, MemkitError) and isinstance(info.value, ValueError)
    assert await dump(db) == before


async def test_audit_row_commits_with_its_write(db: Database) -> None:
    mem = db.memory
    await mem.add_memory(NS, "a", 1, "semantic", "system", task_id="task:xyz")
    await mem.update_memory(NS, "a", 2, "system")
    await mem.delete_memory(NS, "a")
    await mem.restore_memory(NS, "a")
    await mem.rollback_memory(NS, "a", 1, "system")
    rows = await audit_rows(db)
    assert [(r["action_type"], r["memory_operation_type"]) for r in rows] == [
        ("memory_create", "create"), ("memory_update", "update"), ("memory_delete", "delete"),
        ("memory_restore", "update"), ("memory_rollback", "update")]
    assert all(r["memory_namespace"] == NS for r in rows)
    assert rows[0]["task_id"] == "task:xyz"  # a task of another system, not a foreign key
    ids = [r["id"] for r in await db.fetchall("SELECT id FROM memory_entries ORDER BY id")]
    assert [r["memory_entry_id"] for r in rows] == [ids[0], ids[1], ids[1], ids[1], ids[2]]
    # If the audit row cannot be written, the memory write is rolled back with it.
    await db.execute(AUDIT_DOWN[db.dialect])
    before = await dump(db)
    with pytest.raises(MemkitError, match="audit is down"):
        await mem.update_memory(NS, "a", 3, "system")
    assert await dump(db) == before


async def test_fifty_concurrent_agents(db: Database) -> None:
    mem = db.memory

    async def agent(n: int) -> int:
        ns, writes = f"user:agent{n}", 0
        await mem.add_memory(ns, "notes", {"n": 0}, "episodic", f"agent:{n}")
        writes += 1
        for i in range(1, 6):
            await mem.update_memory(ns, "notes", {"n": i}, f"agent:{n}")
            writes += 1
            assert (await mem.get_memory(ns, "notes") or {})["value"] == {"n": i}
            await mem.search_memories("user")
        await mem.add_memories([MemoryItem(ns, f"fact{i}", i) for i in range(3)], f"agent:{n}")
        writes += 3
        if n % 5 == 0:
            await mem.delete_memory(ns, "fact0")
            writes += 1
        return writes

    writes = await asyncio.gather(*(agent(n) for n in range(50)))
    audits = await db.fetchone("SELECT count(*) AS n FROM audit")
    assert audits is not None and audits["n"] == sum(writes)
    for n in range(50):
        history = await mem.get_memory_history(f"user:agent{n}", "notes")
        assert [h["version"] for h in history] == [6, 5, 4, 3, 2, 1]
    rows = await db.fetchone("SELECT count(*) AS n FROM memory_entries")
    assert rows is not None and rows["n"] == 50 * 9
    assert await db.integrity_check() == ["ok"]


# -- many writers on PostgreSQL -------------------------------------------------------------

async def test_concurrent_writers_of_one_key_get_gapless_versions(pg_memkit_dsn: str) -> None:
    # Two Database objects (two pools, as two hosts would have) and many tasks on each.
    async with Database(pg_memkit_dsn) as one, Database(pg_memkit_dsn) as two:
        await one.memory.add_memory(NS, "counter", 0, "semantic", "system")
        writers = 24

        async def update(n: int) -> int:
            return await (one if n % 2 else two).memory.update_memory(
                NS, "counter", n, f"agent:{n}")

        versions = await asyncio.gather(*(update(n) for n in range(writers)))
        assert sorted(versions) == list(range(2, writers + 2))
        history = await one.memory.get_memory_history(NS, "counter")
        assert [h["version"] for h in history] == list(range(writers + 1, 0, -1))
        rows = await two.fetchall(
            "SELECT a.memory_entry_id, a.action_data, m.version FROM audit a "
            "JOIN memory_entries m ON m.id = a.memory_entry_id ORDER BY a.id")
        assert sorted(r["memory_entry_id"] for r in rows) == sorted(h["id"] for h in history)
        assert all(json.loads(r["action_data"])["version"] == r["version"] for r in rows)


async def test_batches_and_adds_racing_for_keys_create_each_once(pg_memkit_dsn: str) -> None:
    async with Database(pg_memkit_dsn) as one, Database(pg_memkit_dsn) as two:

        async def add(db: Database, key: str) -> list[str]:
            await db.memory.add_memory(NS, key, key, "semantic", "system")
            return [key]

        async def batch(db: Database, part: list[str]) -> list[str]:
            await db.memory.add_memories([MemoryItem(NS, k, k) for k in part], "system")
            return part

        everything: list[str] = []
        for race in range(8):
            keys = [f"r{race}k{i}" for i in range(6)]
            everything += keys
            calls = [batch(db, keys[i:i + 3]) for i in (0, 3) for db in (one, two)]
            calls += [add(db, k) for k in keys for db in (one, two)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            # Whoever lost a race was told the key exists, not a constraint's message.
            assert all(isinstance(e, AlreadyExistsError) for e in errors), errors
            created = [k for r in results if isinstance(r, list) for k in r]
            assert sorted(created) == keys
        rows = await one.fetchall("SELECT key, version FROM memory_entries ORDER BY key")
        assert [(r["key"], r["version"]) for r in rows] == [(k, 1) for k in sorted(everything)]
        audits = await one.fetchone("SELECT count(*) AS n FROM audit")
        assert audits is not None and audits["n"] == len(everything)


async def test_ttl_expiry_racing_updates_expires_whole_keys(pg_memkit_dsn: str) -> None:
    keys = [f"e{i}" for i in range(24)]
    async with Database(pg_memkit_dsn) as one, Database(pg_memkit_dsn) as two:
        await one.memory.add_memories([MemoryItem(NS, k, 0, "episodic") for k in keys], "system")
        await one.execute("UPDATE memory_entries SET updated_at = '2020-01-01 00:00:00'")

        async def update(key: str) -> bool:
            try:
                await one.memory.update_memory(NS, key, 1, "system")
            except NotFoundError:
                return False  # expired first
            return True

        half = len(keys) // 2
        results = await asyncio.gather(*(update(k) for k in keys[:half]),
                                       two.memory.cleanup_expired_memories(30),
                                       *(update(k) for k in keys[half:]))
        expired, updated = results[half], results[:half] + results[half + 1:]
        rows = await one.fetchall("SELECT key, is_deleted FROM memory_entries")
        # Each key either expired whole (its update then found nothing) or was updated.
        for key, was_updated in zip(keys, updated, strict=True):
            flags = {r["is_deleted"] for r in rows if r["key"] == key}
            assert flags == ({0} if was_updated else {1}), (key, was_updated, flags)
        assert expired == updated.count(False)
