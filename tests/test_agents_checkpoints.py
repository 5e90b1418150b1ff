"""AgentService and CheckpointService: lifecycle, per task/session, audit, errors, plans."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from dbdump import dump
from plan_checks import assert_searches

from abathur_memkit import (
    AlreadyExistsError,
    Database,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
)
from abathur_memkit import agents as agent_sql
from abathur_memkit import checkpoints as checkpoint_sql


@pytest.fixture
async def work(db: Database) -> Database:
    """Session s1, tasks t1 and t2 (t1 in s1)."""
    await db.sessions.create_session("s1", "abathur", "alice")
    await db.tasks.submit("p", task_id="t1", session_id="s1")
    await db.tasks.submit("p", task_id="t2")
    return db


# -- agents ----------------------------------------------------------------------

async def test_spawn_get_and_states(work: Database) -> None:
    aid = await work.agents.spawn("coder-1", "python", "t1", "claude", session_id="s1",
                                  agent_id="a1")
    assert aid == "a1"
    agent = await work.agents.get("a1")
    assert agent is not None
    assert (agent["name"], agent["specialization"], agent["task_id"], agent["model"]) == (
        "coder-1", "python", "t1", "claude")
    assert (agent["state"], agent["session_id"], agent["terminated_at"]) == ("idle", "s1", None)
    for state in ("working", "waiting", "working", "idle"):
        assert (await work.agents.set_state("a1", state))["state"] == state
    done = await work.agents.terminate("a1", resource_usage={"tokens": 1200})
    assert done["state"] == "terminated" and done["terminated_at"] is not None
    assert done["resource_usage"] == {"tokens": 1200}
    assert await work.agents.get("nope") is None
    rows = await work.fetchall(
        "SELECT action_type, agent_id, task_id, result FROM audit "
        "WHERE agent_id = 'a1' ORDER BY id")
    assert [(r["action_type"], r["result"]) for r in rows] == [
        ("agent_spawned", "idle"), *[("agent_state_changed", s) for s in
                                     ("working", "waiting", "working", "idle")],
        ("agent_terminated", "terminated")]
    assert {r["task_id"] for r in rows} == {"t1"}


async def test_set_state_terminated_terminates(work: Database) -> None:
    aid = await work.agents.spawn("x", "y", "t1", "m")
    agent = await work.agents.set_state(aid, "terminated")
    assert agent["state"] == "terminated" and agent["terminated_at"] is not None


async def test_agents_for_task_and_session(work: Database) -> None:
    for i in range(3):
        await work.agents.spawn(f"n{i}", "s", "t1", "m", session_id="s1", agent_id=f"a{i}")
    await work.agents.spawn("other", "s", "t2", "m", agent_id="b")
    assert [a["id"] for a in await work.agents.for_task("t1")] == ["a0", "a1", "a2"]
    assert [a["id"] for a in await work.agents.for_session("s1")] == ["a2", "a1", "a0"]
    assert [a["id"] for a in await work.agents.for_task("t2")] == ["b"]
    assert await work.agents.for_session("s9") == []


Call = Callable[[Database], Awaitable[Any]]

AGENT_ERRORS: list[tuple[str, Call, type[Exception], str]] = [
    ("terminated is final", lambda db: db.agents.set_state("dead", "working"),
     InvalidTransitionError, "Cannot move agent dead from terminated to working"),
    ("terminate twice", lambda db: db.agents.terminate("dead"),
     InvalidTransitionError, "Cannot move agent dead from terminated to terminated"),
    ("same state", lambda db: db.agents.set_state("live", "idle"),
     InvalidTransitionError, "Cannot move agent live from idle to idle"),
    ("unknown state", lambda db: db.agents.set_state("live", "sleeping"),
     InvalidInputError, "Invalid state: sleeping"),
    ("missing agent", lambda db: db.agents.set_state("nope", "working"),
     NotFoundError, "Agent nope not found"),
    ("terminate missing", lambda db: db.agents.terminate("nope"),
     NotFoundError, "Agent nope not found"),
    ("missing task", lambda db: db.agents.spawn("n", "s", "t9", "m"),
     NotFoundError, "Task t9 not found"),
    ("missing session", lambda db: db.agents.spawn("n", "s", "t1", "m", session_id="s9"),
     NotFoundError, "Session s9 not found"),
    ("duplicate", lambda db: db.agents.spawn("n", "s", "t1", "m", agent_id="live"),
     AlreadyExistsError, "Agent live already exists"),
    ("empty name", lambda db: db.agents.spawn("", "s", "t1", "m"),
     InvalidInputError, "Invalid name: empty"),
    ("model type", lambda db: db.agents.spawn("n", "s", "t1", None),  # type: ignore[arg-type]
     InvalidInputError, "Invalid model: expected a string, got NoneType"),
    ("usage", lambda db: db.agents.terminate("live", resource_usage=[1]),  # type: ignore[arg-type]
     InvalidInputError, "Invalid resource_usage: expected a JSON object"),
]


@pytest.mark.parametrize(("call", "error", "message"), [e[1:] for e in AGENT_ERRORS],
                         ids=[e[0] for e in AGENT_ERRORS])
async def test_agent_errors_change_nothing(
    work: Database, call: Call, error: type[Exception], message: str
) -> None:
    await work.agents.spawn("n", "s", "t1", "m", agent_id="live")
    await work.agents.spawn("n", "s", "t1", "m", agent_id="dead")
    await work.agents.terminate("dead")
    before = await dump(work)
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        await call(work)
    assert await dump(work) == before


# -- checkpoints -------------------------------------------------------------------

async def test_checkpoints(work: Database) -> None:
    cp = work.checkpoints
    assert await cp.latest("t1") is None
    for i in range(3):
        await cp.save("t1", i, {"step": i, "notes": ["a"] * i}, session_id="s1")
    await cp.save("t2", 0, "other task")
    latest = await cp.latest("t1")
    assert latest is not None and (latest["iteration"], latest["state"]) == (2, {
        "step": 2, "notes": ["a", "a"]})
    assert latest["session_id"] == "s1" and latest["created_at"]
    one = await cp.get("t1", 1)
    assert one is not None and one["state"] == {"step": 1, "notes": ["a"]}
    assert await cp.get("t1", 7) is None
    assert [c["iteration"] for c in await cp.list("t1")] == [0, 1, 2]
    # Saving an iteration again replaces it.
    await cp.save("t1", 1, {"step": 1, "retry": True})
    again = await cp.get("t1", 1)
    assert again is not None and again["state"] == {"step": 1, "retry": True}
    assert again["session_id"] is None
    assert len(await cp.list("t1")) == 3


CHECKPOINT_ERRORS: list[tuple[str, Call, type[Exception], str]] = [
    ("missing task", lambda db: db.checkpoints.save("t9", 0, {}), NotFoundError,
     "Task t9 not found"),
    ("missing session", lambda db: db.checkpoints.save("t1", 0, {}, session_id="s9"),
     NotFoundError, "Session s9 not found"),
    ("negative", lambda db: db.checkpoints.save("t1", -1, {}), InvalidInputError,
     "Invalid iteration: -1 (expected an integer >= 0)"),
    ("iteration type", lambda db: db.checkpoints.save("t1", "1", {}),  # type: ignore[arg-type]
     InvalidInputError, "Invalid iteration: expected an integer, got '1'"),
    ("state", lambda db: db.checkpoints.save("t1", 0, {"x": object()}), InvalidInputError,
     "Invalid state: not JSON-serializable"),
    ("get iteration", lambda db: db.checkpoints.get("t1", 1.5),  # type: ignore[arg-type]
     InvalidInputError, "Invalid iteration: expected an integer"),
    ("task id", lambda db: db.checkpoints.latest(""), InvalidInputError,
     "Invalid task_id: empty"),
]


@pytest.mark.parametrize(("call", "error", "message"), [e[1:] for e in CHECKPOINT_ERRORS],
                         ids=[e[0] for e in CHECKPOINT_ERRORS])
async def test_checkpoint_errors_change_nothing(
    work: Database, call: Call, error: type[Exception], message: str
) -> None:
    await work.checkpoints.save("t1", 0, {"kept": True})
    before = await dump(work)
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        await call(work)
    assert await dump(work) == before


# -- plans --------------------------------------------------------------------------

PLANS = [
    ("agent get", agent_sql.GET, ("a1",), "agents", "sqlite_autoindex_agents_1"),
    ("agent state", agent_sql.GET_STATE, ("a1",), "agents", "sqlite_autoindex_agents_1"),
    ("for_task", agent_sql.FOR_TASK, ("t1",), "agents", "idx_agents_task"),
    ("for_session", agent_sql.FOR_SESSION, ("s1",), "agents", "idx_agents_session"),
    ("latest", checkpoint_sql.LATEST, ("t1",), "checkpoints", "idx_checkpoints_task"),
    ("list", checkpoint_sql.LIST, ("t1",), "checkpoints", "idx_checkpoints_task"),
    # The (task_id, iteration) primary key; idx_checkpoints_task would serve as well.
    ("get", checkpoint_sql.GET, ("t1", 1), "checkpoints", "sqlite_autoindex_checkpoints_1"),
]


@pytest.mark.sqlite_only("SQLite's EXPLAIN QUERY PLAN; PostgreSQL's plans are checked apart")
@pytest.mark.parametrize(("query", "params", "table", "index"), [p[1:] for p in PLANS],
                         ids=[p[0] for p in PLANS])
async def test_plans(
    db: Database, query: str, params: tuple[Any, ...], table: str, index: str
) -> None:
    await assert_searches(db, query, params, table, index)
