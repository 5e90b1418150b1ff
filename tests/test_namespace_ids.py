"""Namespaces cannot be forged: ids that become a segment hold no ':'; elevated is a bool."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from dbdump import dump

from abathur_memkit import (
    Database,
    InvalidInputError,
    MemoryItem,
    NotFoundError,
    WritePolicyError,
)
from abathur_memkit.cli import main
from abathur_memkit.namespaces import require_segment

RULE = "ids that become a namespace segment may not contain ':'"


@pytest.fixture
async def db(policy_db: Database) -> Database:
    """These tests are about the write policy: every database here enforces it."""
    return policy_db


@pytest.mark.parametrize(("field", "call"), [
    ("session_id", lambda db: db.sessions.create_session("s1:victim", "app", "bob")),
    ("app_name", lambda db: db.sessions.create_session("s2", "app:x", "bob")),
    ("user_id", lambda db: db.sessions.create_session("s2", "app", "alice:bob")),
    ("project_id", lambda db: db.sessions.create_session("s2", "app", "bob", "p:1")),
    ("agent_id", lambda db: db.agents.spawn("n", "s", "t1", "m", agent_id="a:1")),
    ("session_id", lambda db: db.agents.spawn("n", "s", "t1", "m", session_id="s1:x")),
    ("session_id", lambda db: db.tasks.submit("p", session_id="s1:x")),
    ("session_id", lambda db: db.checkpoints.save("t1", 0, {}, session_id="s1:x")),
    ("session_id", lambda db: db.memory.context_for_session("s1:victim")),
], ids=["session", "app", "user", "project", "agent", "agent session", "task session",
        "checkpoint session", "context"])
async def test_ids_with_the_separator_are_rejected(
    db: Database, field: str, call: Callable[[Database], Awaitable[Any]]
) -> None:
    await db.sessions.create_session("s1", "app", "alice")
    await db.tasks.submit("p", task_id="t1")
    before = await dump(db)
    with pytest.raises(InvalidInputError, match=f"Invalid {field}: .*\\({RULE}\\)"):
        await call(db)
    assert await dump(db) == before


async def test_a_session_cannot_forge_another_sessions_namespace(db: Database) -> None:
    """session:s1:victim stays inside s1's tree: no session s1:victim can own it."""
    await db.sessions.create_session("s1", "app", "alice")
    await db.memory.add_memory("session:s1:victim", "k", "alice's", "semantic", "session:s1")
    with pytest.raises(InvalidInputError, match=RULE):
        await db.sessions.create_session("s1:victim", "app", "bob")
    assert await db.sessions.get_session("s1:victim") is None


async def test_ids_with_odd_characters_are_still_segments() -> None:
    # Only the separator moves a namespace boundary: spaces, '%' and the like stay valid.
    for text in ("a b", "%", "名前", " lead", "x\ty"):
        assert require_segment(text, "session_id") == text


async def test_rows_written_before_the_rule_are_still_read(db: Database) -> None:
    """Existing databases may hold ids with ':' — reads work; their trees are not theirs."""
    await db.execute("INSERT INTO sessions (id, app_name, user_id, status, created_at, "
                     "last_update_time) VALUES ('old:1', 'app', 'alice:bob', 'created', "
                     "'2025-01-01 00:00:00', '2025-01-01 00:00:00')")
    await db.execute("INSERT INTO sessions (id, app_name, user_id, status, created_at, "
                     "last_update_time) VALUES ('s9', 'app', 'alice:bob', 'created', "
                     "'2025-01-01 00:00:00', '2025-01-01 00:00:00')")
    session = await db.sessions.get_session("old:1")
    assert session is not None and session["user_id"] == "alice:bob"
    listed = await db.sessions.list_sessions(user_id="alice:bob")
    assert {s["id"] for s in listed} == {"s9", "old:1"}
    await db.sessions.append_event("old:1", {"n": 1})
    assert [e["event"] for e in await db.sessions.get_events("old:1")] == [{"n": 1}]
    # alice's own memory; the old session's user "alice:bob" would see it as its own.
    await db.memory.add_memory("user:alice:bob", "secret", "alice's", "semantic", "system")
    context = await db.memory.context_for_session("s9")
    assert "secret" not in context
    with pytest.raises(WritePolicyError):
        await db.memory.add_memory("user:alice:bob", "x", 1, "semantic", "session:s9")


async def test_a_user_sub_namespace_is_the_users_own(db: Database) -> None:
    # With ids free of ':', user:alice:bob can only be part of alice's tree.
    await db.sessions.create_session("s1", "app", "alice")
    await db.memory.add_memory("user:alice:bob", "k", 1, "semantic", "session:s1")
    assert "k" in await db.memory.context_for_session("s1")


@pytest.mark.parametrize("writer", ["session:s1:x", "session:", "Session:s1:victim"])
@pytest.mark.parametrize("elevated", [False, True])
async def test_a_session_writer_must_name_a_valid_session(
    db: Database, writer: str, elevated: bool
) -> None:
    """session:s1:x is neither session s1 nor a session s1:x: invalid, even elevated."""
    await db.sessions.create_session("s1", "app", "alice")
    before = await dump(db)
    with pytest.raises(InvalidInputError, match=f"Invalid writer: .*{RULE}"):
        await db.memory.add_memory("session:s1:x", "k", 1, "semantic", writer,
                                   elevated=elevated)
    assert await dump(db) == before


Write = Callable[[Database, Any], Awaitable[Any]]
WRITES: dict[str, Write] = {
    "add": lambda db, e: db.memory.add_memory("user:bob", "new", 1, "semantic", "session:s1",
                                              elevated=e),
    "update": lambda db, e: db.memory.update_memory("user:bob", "k", 2, "session:s1",
                                                    elevated=e),
    "delete": lambda db, e: db.memory.delete_memory("user:bob", "k", deleted_by="session:s1",
                                                    elevated=e),
    "restore": lambda db, e: db.memory.restore_memory("user:bob", "gone",
                                                      restored_by="session:s1", elevated=e),
    "rollback": lambda db, e: db.memory.rollback_memory("user:bob", "k", 1, "session:s1",
                                                        elevated=e),
    "batch": lambda db, e: db.memory.add_memories([MemoryItem("user:bob", "new", 1)],
                                                  "session:s1", elevated=e),
    "publish": lambda db, e: db.memory.publish_memory("session:s1", "draft", "user:bob",
                                                      "session:s1", elevated=e),
}


@pytest.mark.parametrize("path", list(WRITES))
@pytest.mark.parametrize("elevated", ["false", "True", 1, 0, None, [True]])
async def test_elevated_must_be_a_real_bool(db: Database, path: str, elevated: Any) -> None:
    await db.sessions.create_session("s1", "app", "alice")
    await db.memory.add_memory("user:bob", "k", 1, "semantic", "system")
    await db.memory.add_memory("user:bob", "gone", 1, "semantic", "system")
    await db.memory.delete_memory("user:bob", "gone")
    await db.memory.add_memory("session:s1", "draft", 1, "semantic", "system")
    before = await dump(db)
    with pytest.raises(InvalidInputError, match="Invalid elevated: expected True or False"):
        await WRITES[path](db, elevated)
    assert await dump(db) == before


async def test_denial_says_how_to_elevate_in_python_and_on_the_cli(db: Database) -> None:
    await db.sessions.create_session("s1", "app", "alice")
    with pytest.raises(WritePolicyError) as info:
        await db.memory.add_memory("user:bob", "k", 1, "semantic", "session:s1")
    assert "elevated=True" in str(info.value) and "--elevated" in str(info.value)


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: m.update_memory("user:a", "k", 1, "s"),
     "Memory not found: namespace 'user:a', key 'k'"),
    (lambda m: m.restore_memory("user:a:k", "x"),
     "Memory not found: namespace 'user:a:k', key 'x'"),
    (lambda m: m.rollback_memory("user:a", "k:v", 1, "s"),
     "Memory not found: namespace 'user:a', key 'k:v'"),
])
async def test_not_found_shows_namespace_and_key_apart(
    db: Database, call: Callable[[Any], Awaitable[Any]], message: str
) -> None:
    # "user:a:k" + "x" and "user:a" + "k:x" used to read the same: "user:a:k:x".
    with pytest.raises(NotFoundError) as info:
        await call(db.memory)
    assert str(info.value) == message


def test_the_cli_elevates_with_a_flag(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "agents.db")

    async def make_session() -> None:
        async with Database(path) as db:
            await db.sessions.create_session("s1", "app", "alice")

    asyncio.run(make_session())
    write = ["memory", "put", path, "user:bob", "k", "1", "--by", "session:s1", "--write-policy"]
    assert main(write) == 1  # refused by the write policy
    assert "--elevated" in capsys.readouterr().err
    assert main([*write, "--elevated"]) == 0
    delete = ["memory", "delete", path, "user:bob", "k", "--by", "session:s1", "--write-policy"]
    assert main(delete) == 1
    assert main([*delete, "--elevated"]) == 0
    restore = ["memory", "restore", path, "user:bob", "k", "--by", "session:s1", "--write-policy"]
    assert main(restore) == 1
    assert main([*restore, "--elevated"]) == 0
    capsys.readouterr()
    assert main(["memory", "get", path, "user:bob", "k", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["updated_by"] == "session:s1"
