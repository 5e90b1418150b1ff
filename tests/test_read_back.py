"""What was accepted can be read back; TTL follows the latest version; odd calls fail cleanly."""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

import pytest
from dbdump import dump
from plan_checks import assert_searches

from abathur_memkit import Database, InvalidInputError
from abathur_memkit import memory as memory_sql
from abathur_memkit.values import MAX_JSON_DEPTH, from_json, json_depth, to_json


def nested(depth: int) -> Any:
    value: Any = {"leaf": "x"}
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    return depth


# -- JSON depth -------------------------------------------------------------------------------

async def test_values_deeper_than_the_bound_are_rejected(db: Database) -> None:
    await db.sessions.create_session("s1", "app", "alice")
    before = await dump(db)
    too_deep = nested(MAX_JSON_DEPTH)  # plus the leaf object: one level too many
    for call in (
        lambda: db.memory.add_memory("user:a", "k", too_deep, "semantic", "system"),
        lambda: db.sessions.append_event("s1", {"e": too_deep}),
        lambda: db.sessions.set_state("s1", "k", too_deep),
    ):
        with pytest.raises(InvalidInputError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
            await call()
    assert await dump(db) == before
    await db.memory.add_memory("user:a", "k", nested(MAX_JSON_DEPTH - 1), "semantic", "system")


def test_depth_ignores_brackets_inside_strings() -> None:
    text = to_json(["[" * 1000, {"k": "{{{" * 500}])  # many brackets, depth 2
    assert json_depth(text) == 2
    assert json_depth('"x"') == 0 and json_depth('[1,[2,{"a":[]}]]') == 4


@pytest.mark.sqlite_only("until keyword search runs on PostgreSQL (the search services' part)")
async def test_a_value_stored_too_deep_for_json_loads_is_still_read(db: Database) -> None:
    """A row written by a process with a raised recursion limit, before depth was bounded."""
    deep = "[" * 995 + '{"leaf":"x"}' + "]" * 995
    await db.execute(
        "INSERT INTO memory_entries (namespace, key, value, memory_type, version, metadata, "
        "created_at, updated_at) VALUES ('user:a', 'deep', ?, 'semantic', 1, '{}', "
        "'2025-01-01 00:00:00', '2025-01-01 00:00:00')", (deep,))
    await db.sessions.create_session("s1", "app", "a")
    got = await db.memory.get_memory("user:a", "deep")
    assert got is not None and depth_of(got["value"]) == 995
    (found,) = await db.memory.search_memories("user:a")
    assert depth_of(found["value"]) == 995
    assert depth_of((await db.memory.get_memory_history("user:a", "deep"))[0]["value"]) == 995
    assert "deep" in await db.memory.context_for_session("s1")
    hits = await db.search.keyword("leaf", source="memories")
    assert [h.key for h in hits] == ["deep"]


def test_the_flat_decoder_matches_json_loads() -> None:
    # The fallback is exercised through from_json on text too deep for json.loads.
    for depth in (995, 3000):
        text = "[" * depth + '{"a":[1,-2.5e3,true,null,"q\\"[",{}],"b":{"c":[]}}' + "]" * depth
        value = from_json(text)
        assert depth_of(value) == depth
        inner = value
        for _ in range(depth):
            inner = inner[0]
        assert inner == {"a": [1, -2500.0, True, None, 'q"[', {}], "b": {"c": []}}


# -- sessions: events are read back in pieces --------------------------------------------------

async def test_get_session_reads_events_adding_up_past_sqlites_length_limit(
    tmp_path: Any,
) -> None:
    """Each event fits SQLite's string limit; all of them together do not."""
    # sqlite3, not sqlean: only the standard module has Connection.setlimit.
    async with Database(tmp_path / "big.db", readers=1, driver="sqlite3") as db:
        await db.sessions.create_session("s1", "app", "alice")
        events = [{"n": i, "text": "x" * 3000} for i in range(8)]
        for event in events:
            await db.sessions.append_event("s1", event)
        # The limit lowered on the reader, as 64 events of 16 MB exceed the 1 GB default.
        await db.read(lambda conn: conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000))
        session = await db.sessions.get_session("s1")
        assert session is not None and session["events"] == events


# -- TTL ---------------------------------------------------------------------------------------

async def test_ttl_expires_by_the_type_of_the_latest_live_version(db: Database) -> None:
    mem = db.memory
    await mem.add_memory("user:a", "promoted", 1, "episodic", "system")
    await mem.update_memory("user:a", "promoted", 2, "system", memory_type="semantic")
    await mem.add_memory("user:a", "demoted", 1, "semantic", "system")
    await mem.update_memory("user:a", "demoted", 2, "system", memory_type="episodic")
    await mem.add_memory("user:a", "plain", 1, "episodic", "system")
    await db.execute("UPDATE memory_entries SET updated_at = '2020-01-01 00:00:00'")
    assert await mem.cleanup_expired_memories(ttl_days=30) == 2
    assert await mem.get_memory("user:a", "promoted") is not None
    assert await mem.get_memory("user:a", "demoted") is None
    assert await mem.get_memory("user:a", "plain") is None
    expired = await db.fetchall("SELECT memory_namespace, action_data FROM audit "
                                "WHERE action_type = 'memory_expire' ORDER BY id")
    assert len(expired) == 2


@pytest.mark.sqlite_only("SQLite's EXPLAIN QUERY PLAN; PostgreSQL's plans are checked apart")
async def test_expiry_query_searches_the_ttl_index(db: Database) -> None:
    await assert_searches(db, memory_sql.EXPIRED, ("2025",), "memory_entries",
                          "idx_memory_episodic_ttl")


# -- every failure is a MemkitError with a message ----------------------------------------------

def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize("cursor", [
    _cursor('["created_at","x",1180591620717411303424]'),
    _cursor('["created_at","\\ud800",1]'),
    _cursor('["created_at","x",true]'),
    _cursor("[" * 100_000),
    "A" * 100_000,
    5,
])
async def test_a_forged_cursor_is_invalid_input(db: Database, cursor: Any) -> None:
    with pytest.raises(InvalidInputError, match="Invalid cursor"):
        await db.sessions.list_sessions(cursor=cursor)


@pytest.mark.sqlite_only("a WAL checkpoint is SQLite's")
@pytest.mark.parametrize("mode", [5, None, b"FULL", ["FULL"], "sideways"])
async def test_a_wrong_checkpoint_mode_is_invalid_input(db: Database, mode: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"Invalid checkpoint mode: .*expected one of"):
        await db.checkpoint(mode)
