"""Session state scopes (app:, user:, temp:), lookup by (app, user), session audit rows."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from plan_checks import assert_searches

from abathur_memkit import Database, InvalidInputError
from abathur_memkit import sessions as sql
from abathur_memkit.engines.sqlite.schema import migrations


async def _two_sessions(db: Database) -> None:
    await db.sessions.create_session("a1", "app", "alice", initial_state={"n": 1})
    await db.sessions.create_session("a2", "app", "alice")


async def test_user_keys_are_shared_by_the_sessions_of_one_app_and_user(db: Database) -> None:
    await _two_sessions(db)
    await db.sessions.create_session("b1", "app", "bob")
    await db.sessions.create_session("o1", "other", "alice")
    await db.sessions.append_event("a1", {"e": 1}, state_delta={"user:lang": "fr", "turn": 2})
    a2 = await db.sessions.get_session("a2")
    assert a2 is not None and a2["state"] == {"user:lang": "fr"}
    assert await db.sessions.get_state("a2", "user:lang") == "fr"
    assert await db.sessions.get_state("b1", "user:lang") is None
    assert await db.sessions.get_state("o1", "user:lang") is None
    a1 = await db.sessions.get_session("a1")
    assert a1 is not None and a1["state"] == {"n": 1, "turn": 2, "user:lang": "fr"}
    # Stored once, for (app, alice); not in either session's own row.
    rows = await db.fetchall("SELECT app_name, user_id, state FROM user_states")
    assert [(r["app_name"], r["user_id"], json.loads(r["state"])) for r in rows] == [
        ("app", "alice", {"user:lang": "fr"})]
    own = await db.fetchall("SELECT state FROM sessions WHERE id IN ('a1', 'a2') ORDER BY id")
    assert [json.loads(r["state"]) for r in own] == [{"n": 1, "turn": 2}, {}]


async def test_app_keys_are_shared_by_every_session_of_the_app(db: Database) -> None:
    await _two_sessions(db)
    await db.sessions.create_session("b1", "app", "bob", initial_state={"app:mode": "fast"})
    await db.sessions.create_session("o1", "other", "alice")
    await db.sessions.set_state("a1", "app:version", 3)
    for sid in ("a1", "a2", "b1"):
        assert await db.sessions.get_state(sid, "app:version") == 3
        assert await db.sessions.get_state(sid, "app:mode") == "fast"
    assert await db.sessions.get_state("o1", "app:version") is None
    listed = await db.sessions.list_sessions(user_id="bob")
    assert listed[0]["state"] == {"app:mode": "fast", "app:version": 3}


async def test_temp_keys_are_never_stored_in_any_scope(db: Database) -> None:
    await db.sessions.create_session("s", "app", "u", initial_state={"temp:x": 1})
    await db.sessions.append_event("s", {}, state_delta={"temp:y": 1, "user:k": 1})
    dump = await db.fetchall("SELECT state FROM sessions UNION ALL SELECT state FROM user_states "
                             "UNION ALL SELECT state FROM app_states")
    assert all("temp:" not in r["state"] for r in dump)


async def test_create_returns_the_merged_state(db: Database) -> None:
    await db.sessions.create_session("a1", "app", "alice", initial_state={"user:k": 1})
    made = await db.sessions.create_session("a2", "app", "alice", initial_state={"x": 0})
    assert made["state"] == {"user:k": 1, "x": 0}


async def test_failed_write_leaves_shared_state_unchanged(db: Database) -> None:
    await _two_sessions(db)
    await db.sessions.terminate_session("a2")
    with pytest.raises(InvalidInputError, match="read-only"):
        await db.sessions.append_event("a2", {}, state_delta={"user:k": 1})
    assert await db.fetchall("SELECT * FROM user_states") == []


async def test_list_sessions_by_app_and_user(db: Database) -> None:
    await _two_sessions(db)
    await db.sessions.create_session("o1", "other", "alice")
    await db.sessions.create_session("b1", "app", "bob")
    ids = [s["id"] for s in await db.sessions.list_sessions(app_name="app", user_id="alice")]
    assert ids == ["a2", "a1"]
    assert [s["id"] for s in await db.sessions.list_sessions(app_name="app")] == ["b1", "a2", "a1"]


@pytest.mark.sqlite_only("plan pins read SQLite's EXPLAIN QUERY PLAN")
async def test_list_sessions_by_app_and_user_plan(db: Database) -> None:
    query, params = sql.list_query(user_id="alice", app_name="app", limit=10)
    await assert_searches(db, query, params, "sessions", "idx_sessions_user_created")


async def test_concurrent_writers_of_shared_keys_lose_none(db: Database) -> None:
    # Sessions of one app and user write their own app: and user: keys at once:
    # every key is kept (on PostgreSQL the upsert merges, no read-modify-write race).
    for i in range(12):
        await db.sessions.create_session(f"c{i}", "app", "alice")
    await asyncio.gather(*(
        db.sessions.append_event(f"c{i}", {"i": i}, {f"app:k{i}": i, f"user:k{i}": i})
        for i in range(12)))
    state = await db.sessions.get_session("c0")
    assert state is not None
    assert state["state"] == {**{f"app:k{i}": i for i in range(12)},
                              **{f"user:k{i}": i for i in range(12)}}


# -- audit rows ---------------------------------------------------------------------------


async def test_session_writes_have_audit_rows(db: Database) -> None:
    await db.sessions.create_session("s", "app", "u")
    await db.sessions.update_status("s", "active")
    await db.sessions.append_event("s", {"e": 1}, state_delta={"k": 1})
    await db.sessions.set_state("s", "user:k", 2)
    rows = await db.audit.between("2000", "3000")
    assert [(r["action_type"], r["result"]) for r in rows] == [
        ("session_created", "created"),
        ("session_status_changed", "active"),
        ("session_event_appended", None),
        ("session_state_changed", None),
    ]
    assert rows[1]["action_data"] == {"session_id": "s", "previous": "created"}
    assert rows[2]["action_data"] == {"session_id": "s", "seq": 1, "state_keys": ["k"]}
    assert rows[3]["action_data"] == {"session_id": "s", "state_keys": ["user:k"]}


async def test_session_audit_row_rolls_back_with_its_write(db: Database) -> None:
    await db.sessions.create_session("s", "app", "u")
    before = await db.fetchall("SELECT * FROM audit")
    with pytest.raises(InvalidInputError):
        await db.sessions.update_status("s", "paused")  # created -> paused is not allowed
    assert await db.fetchall("SELECT * FROM audit") == before


# -- upgrade --------------------------------------------------------------------------------


async def test_upgrade_moves_shared_keys_out_of_sessions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for migration in migrations():
        if migration.version < 7:
            conn.executescript(migration.sql)
    conn.executemany(
        "INSERT INTO sessions (id, app_name, user_id, state, last_update_time) "
        "VALUES (?, ?, ?, ?, ?)",
        [("s1", "app", "u", '{"user:n":1,"app:a":[1],"k":true}', "2026-01-01"),
         ("s2", "app", "u", '{"user:n":2,"user:s":"x"}', "2026-01-02"),
         ("s3", "app", "v", '{"k":{"a":1}}', "2026-01-03")])
    conn.commit()
    conn.close()
    async with Database(path) as db:
        assert await db.sessions.get_state("s1", "user:n") == 2  # the later session wins
        s1 = await db.sessions.get_session("s1")
        assert s1 is not None
        assert s1["state"] == {"app:a": [1], "user:n": 2, "user:s": "x", "k": True}
        own = await db.fetchall("SELECT id, state FROM sessions ORDER BY id")
        assert [r["state"] for r in own] == ['{"k":true}', "{}", '{"k":{"a":1}}']
