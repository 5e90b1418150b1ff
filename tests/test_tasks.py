"""TaskService: the queue, atomic claims (in-process and across processes), retries, audit."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from dbdump import dump
from plan_checks import assert_searches, details

from abathur_memkit import (
    AlreadyExistsError,
    Database,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
)
from abathur_memkit import tasks as sql
from abathur_memkit.tasks import TaskService
from abathur_memkit.values import timestamp_ago


async def audit_of(db: Database, task_id: str) -> list[tuple[str, str | None]]:
    rows = await db.fetchall(
        "SELECT action_type, result FROM audit WHERE task_id = ? ORDER BY id", (task_id,))
    return [(r["action_type"], r["result"]) for r in rows]


# -- submit / get ---------------------------------------------------------------

async def test_submit_defaults_and_audit(db: Database) -> None:
    tid = await db.tasks.submit("summarize the repo")
    task = await db.tasks.get(tid)
    assert task is not None
    assert task["id"] == tid and len(tid) == 36  # a UUID
    assert (task["prompt"], task["agent_type"], task["priority"], task["status"]) == (
        "summarize the repo", "general", 5, "pending")
    assert task["input_data"] == {} and task["result_data"] is None
    assert (task["retry_count"], task["max_retries"]) == (0, 3)
    assert task["max_execution_timeout_seconds"] == 3600
    assert task["dependencies"] is None and task["session_id"] is None
    assert task["submitted_at"] == task["last_updated_at"]
    assert task["started_at"] is None and task["completed_at"] is None
    assert await audit_of(db, tid) == [("task_submitted", "pending")]
    assert await db.tasks.get("nope") is None


async def test_submit_everything(db: Database) -> None:
    await db.sessions.create_session("s1", "app", "alice")
    parent = await db.tasks.submit("parent", task_id="t0")
    tid = await db.tasks.submit(
        "child", input_data={"files": ["a.md"]}, agent_type="coder", priority=9,
        session_id="s1", parent_task_id=parent, dependencies=("t0",), max_retries=1,
        max_execution_timeout_seconds=60, task_id="t1", created_by="agent:a1")
    assert tid == "t1"
    task = await db.tasks.get("t1")
    assert task is not None
    assert task["input_data"] == {"files": ["a.md"]}
    assert task["dependencies"] == ["t0"] and task["parent_task_id"] == "t0"
    assert (task["session_id"], task["created_by"], task["agent_type"]) == (
        "s1", "agent:a1", "coder")
    audit = await db.fetchone("SELECT action_data FROM audit WHERE task_id = 't1'")
    assert audit is not None and json.loads(audit["action_data"])["session_id"] == "s1"


# -- claim --------------------------------------------------------------------------

async def test_claim_most_urgent_first(db: Database) -> None:
    # Seed defect 7: a higher number is more urgent; equal priorities go oldest first.
    for tid, priority in [("low", 1), ("mid-old", 5), ("high", 9), ("mid-new", 5)]:
        await db.tasks.submit(tid, task_id=tid, priority=priority)
    order = []
    while (task := await db.tasks.claim()) is not None:
        assert task["status"] == "running" and task["started_at"] is not None
        order.append(task["id"])
    assert order == ["high", "mid-old", "mid-new", "low"]
    assert await audit_of(db, "high") == [("task_submitted", "pending"),
                                          ("task_claimed", "running")]


async def test_claim_by_agent_type_and_records_agent(db: Database) -> None:
    await db.tasks.submit("a", task_id="t-general", priority=9)
    await db.tasks.submit("b", task_id="t-coder", agent_type="coder")
    task = await db.tasks.claim("coder", agent_id="agent-7")
    assert task is not None and task["id"] == "t-coder"
    assert await db.tasks.claim("coder") is None
    row = await db.fetchone("SELECT agent_id FROM audit WHERE action_type = 'task_claimed'")
    assert row == {"agent_id": "agent-7"}


async def test_claim_waits_for_dependencies(db: Database) -> None:
    await db.tasks.submit("first", task_id="a", priority=1)
    await db.tasks.submit("second", task_id="b", priority=9, dependencies=["a"])
    first = await db.tasks.claim()
    assert first is not None and first["id"] == "a"
    assert await db.tasks.claim() is None  # b waits for a
    await db.tasks.complete("a", {"ok": True})
    second = await db.tasks.claim()
    assert second is not None and second["id"] == "b"


async def test_twenty_concurrent_claimers_ten_tasks(db: Database) -> None:
    for i in range(10):
        await db.tasks.submit(f"task {i}", task_id=f"t{i}", priority=i % 3)
    results = await asyncio.gather(*(db.tasks.claim() for _ in range(20)))
    claimed = [r["id"] for r in results if r is not None]
    assert sorted(claimed) == sorted(f"t{i}" for i in range(10))
    assert results.count(None) == 10
    rows = await db.fetchall("SELECT count(*) AS n FROM audit WHERE action_type = 'task_claimed'")
    assert rows == [{"n": 10}]


async def test_claimers_on_two_connections(db: Database) -> None:
    # Two Database objects (two writer connections, or two pools) on one database:
    # BEGIN IMMEDIATE (SQLite) or FOR UPDATE SKIP LOCKED (PostgreSQL) makes the
    # pick-and-update atomic between them too.
    async with Database(db.path) as two:
        for i in range(20):
            await db.tasks.submit(f"task {i}", task_id=f"t{i}")
        results = await asyncio.gather(*(d.tasks.claim() for d in (db, two) * 15))
    claimed = [r["id"] for r in results if r is not None]
    assert sorted(claimed) == sorted(f"t{i}" for i in range(20))
    assert results.count(None) == 10
    rows = await db.fetchall("SELECT count(*) AS n FROM audit WHERE action_type = 'task_claimed'")
    assert rows == [{"n": 20}]


async def test_claim_takes_a_task_an_insert_points_at(pg_memkit_dsn: str) -> None:
    # PostgreSQL: an insert whose foreign key names a task (a child task, an agent,
    # a checkpoint) holds the task's row FOR KEY SHARE until it commits; claimers
    # do not pass over the task for that.
    import psycopg

    async with Database(pg_memkit_dsn) as db:
        await db.tasks.submit("p", task_id="t1")
        with psycopg.connect(pg_memkit_dsn) as other:
            other.execute("SELECT 1 FROM tasks WHERE id = 't1' FOR KEY SHARE")
            task = await db.tasks.claim()
            other.rollback()
    assert task is not None and task["id"] == "t1"


async def test_concurrent_submits_of_one_id(db: Database) -> None:
    results = await asyncio.gather(*(db.tasks.submit("p", task_id="dup") for _ in range(6)),
                                   return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 5 and all(type(e) is AlreadyExistsError for e in errors), errors
    assert all(str(e) == "Task dup already exists" for e in errors)


def _claim_in_process(path: str, start: Any, out: Any) -> None:
    """A worker process: its own Database; claim and complete until the queue is empty."""

    async def work() -> list[str]:
        async with Database(path) as db:
            start.wait()
            mine = []
            while (task := await db.tasks.claim()) is not None:
                mine.append(task["id"])
                await db.tasks.complete(task["id"], {"by": multiprocessing.current_process().name})
            return mine

    out.put(asyncio.run(work()))


async def test_claims_across_processes(db: Database) -> None:
    path = db.path
    for i in range(30):
        await db.tasks.submit(f"task {i}", task_id=f"t{i:02}", priority=i % 4)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(3), ctx.Queue()
    workers = [ctx.Process(target=_claim_in_process, args=(str(path), start, out))
               for _ in range(3)]
    for w in workers:
        w.start()
    claimed = await asyncio.to_thread(lambda: [out.get(timeout=120) for _ in workers])
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    every = [tid for mine in claimed for tid in mine]
    assert sorted(every) == [f"t{i:02}" for i in range(30)]  # each exactly once
    rows = await db.fetchall(
        "SELECT task_id, count(*) AS n FROM audit WHERE action_type = 'task_claimed' "
        "GROUP BY task_id")
    assert len(rows) == 30 and {r["n"] for r in rows} == {1}
    assert await db.tasks.list(status="completed", limit=100) != []
    assert await db.tasks.list(status="pending") == []


# -- complete / fail / cancel ---------------------------------------------------------

async def test_complete(db: Database) -> None:
    await db.tasks.submit("p", task_id="t1")
    await db.tasks.claim()
    done = await db.tasks.complete("t1", {"summary": "ok", "n": [1, 2]})
    assert done["status"] == "completed" and done["result_data"] == {"summary": "ok", "n": [1, 2]}
    assert done["completed_at"] is not None
    assert await db.tasks.get("t1") == done
    assert await audit_of(db, "t1") == [("task_submitted", "pending"), ("task_claimed", "running"),
                                        ("task_completed", "completed")]


async def test_fail_retries_then_fails(db: Database) -> None:
    await db.tasks.submit("p", task_id="t1", max_retries=2)
    for attempt in (1, 2):
        await db.tasks.claim()
        task = await db.tasks.fail("t1", f"boom {attempt}")
        assert (task["status"], task["retry_count"]) == ("pending", attempt)
        assert task["error_message"] == f"boom {attempt}" and task["started_at"] is None
    await db.tasks.claim()
    task = await db.tasks.fail("t1", "boom 3")
    assert (task["status"], task["retry_count"], task["error_message"]) == ("failed", 2, "boom 3")
    assert task["completed_at"] is not None
    assert await audit_of(db, "t1") == [
        ("task_submitted", "pending"),
        ("task_claimed", "running"), ("task_retried", "pending"),
        ("task_claimed", "running"), ("task_retried", "pending"),
        ("task_claimed", "running"), ("task_failed", "failed"),
    ]
    data = await db.fetchone(
        "SELECT action_data FROM audit WHERE action_type = 'task_failed'")
    assert data is not None and "boom 3" in data["action_data"]


async def test_fail_without_retries(db: Database) -> None:
    await db.tasks.submit("p", task_id="t1", max_retries=0)
    await db.tasks.claim()
    assert (await db.tasks.fail("t1", "no"))["status"] == "failed"


async def test_cancel_pending_and_running(db: Database) -> None:
    await db.tasks.submit("p", task_id="a")
    await db.tasks.submit("p", task_id="b")
    assert (await db.tasks.cancel("a"))["status"] == "cancelled"
    await db.tasks.claim()
    cancelled = await db.tasks.cancel("b")
    assert cancelled["status"] == "cancelled" and cancelled["completed_at"] is not None
    assert await audit_of(db, "b") == [("task_submitted", "pending"), ("task_claimed", "running"),
                                       ("task_cancelled", "cancelled")]
    assert await db.tasks.claim() is None


# -- errors: message and nothing changed ------------------------------------------------

Call = Callable[[TaskService], Awaitable[Any]]


async def _queue(db: Database) -> None:
    """t-pending (pending), t-running (running), t-done (completed), t-gone (cancelled)."""
    await db.sessions.create_session("s1", "app", "alice")
    for tid in ("t-running", "t-done", "t-pending", "t-gone"):
        await db.tasks.submit(tid, task_id=tid)
    await db.tasks.claim()
    await db.tasks.claim()
    await db.tasks.complete("t-done")
    await db.tasks.cancel("t-gone")


ILLEGAL: list[tuple[str, Call, str]] = [
    ("complete pending", lambda t: t.complete("t-pending"),
     "Cannot move task t-pending from pending to completed"),
    ("fail pending", lambda t: t.fail("t-pending", "x"),
     "Cannot move task t-pending from pending to failed"),
    ("complete twice", lambda t: t.complete("t-done"),
     "Cannot move task t-done from completed to completed"),
    ("fail completed", lambda t: t.fail("t-done", "x"),
     "Cannot move task t-done from completed to failed"),
    ("cancel completed", lambda t: t.cancel("t-done"),
     "Cannot move task t-done from completed to cancelled"),
    ("cancel cancelled", lambda t: t.cancel("t-gone"),
     "Cannot move task t-gone from cancelled to cancelled"),
]


@pytest.mark.parametrize(("call", "message"), [(c, m) for _, c, m in ILLEGAL],
                         ids=[n for n, _, _ in ILLEGAL])
async def test_illegal_moves(db: Database, call: Call, message: str) -> None:
    await _queue(db)
    before = await dump(db)
    with pytest.raises(InvalidTransitionError, match=f"^{re.escape(message)}$"):
        await call(db.tasks)
    assert await dump(db) == before


ERRORS: list[tuple[str, Call, type[Exception], str]] = [
    ("complete missing", lambda t: t.complete("nope"), NotFoundError, "Task nope not found"),
    ("fail missing", lambda t: t.fail("nope", "x"), NotFoundError, "Task nope not found"),
    ("cancel missing", lambda t: t.cancel("nope"), NotFoundError, "Task nope not found"),
    ("duplicate id", lambda t: t.submit("p", task_id="t-done"), AlreadyExistsError,
     "Task t-done already exists"),
    ("missing session", lambda t: t.submit("p", session_id="s9"), NotFoundError,
     "Session s9 not found"),
    ("missing parent", lambda t: t.submit("p", parent_task_id="t9"), NotFoundError,
     "Task t9 not found"),
    ("missing dependency", lambda t: t.submit("p", dependencies=["t-done", "t8"]),
     NotFoundError, "Task t8 not found"),
    ("empty prompt", lambda t: t.submit(""), InvalidInputError, "Invalid prompt: empty"),
    ("prompt type", lambda t: t.submit(b"x"),  # type: ignore[arg-type]
     InvalidInputError, "Invalid prompt: expected a string, got bytes"),
    ("priority str", lambda t: t.submit("p", priority="high"),  # type: ignore[arg-type]
     InvalidInputError, "Invalid priority: expected an integer, got 'high'"),
    ("priority bool", lambda t: t.submit("p", priority=True),
     InvalidInputError, "Invalid priority: expected an integer, got True"),
    ("input_data", lambda t: t.submit("p", input_data={"x": {1}}), InvalidInputError,
     "Invalid input_data: not JSON-serializable"),
    ("dependencies str", lambda t: t.submit("p", dependencies="t-done"), InvalidInputError,
     "Invalid dependencies: expected a list of task ids, got str"),
    ("dependency id", lambda t: t.submit("p", dependencies=[""]), InvalidInputError,
     "Invalid dependency task id: empty"),
    ("max_retries", lambda t: t.submit("p", max_retries=-1), InvalidInputError,
     "Invalid max_retries: -1 (expected an integer >= 0)"),
    ("timeout", lambda t: t.submit("p", max_execution_timeout_seconds=0), InvalidInputError,
     "Invalid max_execution_timeout_seconds: 0"),
    ("task id", lambda t: t.submit("p", task_id=""), InvalidInputError, "Invalid task_id: empty"),
    ("agent_type", lambda t: t.submit("p", agent_type=""), InvalidInputError,
     "Invalid agent_type: empty"),
    ("claim type", lambda t: t.claim(""), InvalidInputError, "Invalid agent_type: empty"),
    ("complete result", lambda t: t.complete("t-running", float("nan")), InvalidInputError,
     "Invalid result: not valid JSON"),
    ("fail error", lambda t: t.fail("t-running", ""), InvalidInputError, "Invalid error: empty"),
    ("get id", lambda t: t.get(None),  # type: ignore[arg-type]
     InvalidInputError, "Invalid task_id: expected a string"),
    ("list status", lambda t: t.list(status="done"), InvalidInputError, "Invalid status: done"),
    ("list limit", lambda t: t.list(limit=0), InvalidInputError, "Invalid limit: 0"),
    ("timed_out limit", lambda t: t.timed_out(limit=10**6), InvalidInputError,
     "Invalid limit: 1000000"),
]


@pytest.mark.parametrize(("call", "error", "message"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
async def test_errors_change_nothing(
    db: Database, call: Call, error: type[Exception], message: str
) -> None:
    await _queue(db)
    before = await dump(db)
    with pytest.raises(error) as info:
        await call(db.tasks)
    assert str(info.value).startswith(message), str(info.value)
    assert await dump(db) == before


# -- listing and timeouts --------------------------------------------------------------

async def test_list(db: Database) -> None:
    await db.sessions.create_session("s1", "app", "alice")
    for i in range(5):
        await db.tasks.submit(f"p{i}", task_id=f"t{i}", priority=i % 2,
                              session_id="s1" if i < 3 else None)
    ids = lambda rows: [r["id"] for r in rows]  # noqa: E731
    assert ids(await db.tasks.list()) == ["t4", "t3", "t2", "t1", "t0"]
    assert ids(await db.tasks.list(limit=2)) == ["t4", "t3"]
    # By status: queue order, most urgent first.
    assert ids(await db.tasks.list(status="pending")) == ["t1", "t3", "t0", "t2", "t4"]
    assert ids(await db.tasks.list(session_id="s1")) == ["t2", "t1", "t0"]
    await db.tasks.claim()
    assert ids(await db.tasks.list(session_id="s1", status="running")) == ["t1"]


async def test_timed_out(db: Database) -> None:
    hour_ago = timestamp_ago(hours=1)
    await db.tasks.submit("slow", task_id="slow", max_execution_timeout_seconds=60, priority=9)
    await db.tasks.submit("patient", task_id="patient", max_execution_timeout_seconds=86400)
    await db.tasks.submit("waiting", task_id="waiting", max_execution_timeout_seconds=1)
    await db.tasks.claim()
    await db.tasks.claim()
    assert await db.tasks.timed_out() == []
    # Both running tasks were last updated an hour ago.
    await db.execute("UPDATE tasks SET last_updated_at = ? WHERE status = 'running'",
                     (hour_ago,))
    await db.execute("UPDATE tasks SET last_updated_at = ? WHERE id = 'waiting'", (hour_ago,))
    assert [t["id"] for t in await db.tasks.timed_out()] == ["slow"]


# -- plans ---------------------------------------------------------------------------

PLANS = [
    ("get", sql.GET, ("t1",), "sqlite_autoindex_tasks_1"),
    ("status", sql.GET_STATUS, ("t1",), "sqlite_autoindex_tasks_1"),
    ("next", sql.NEXT_PENDING, (), "idx_tasks_status_priority"),
    ("next_for_type", sql.NEXT_PENDING_FOR_TYPE, ("coder",), "idx_tasks_status_priority"),
    ("by_status", sql.LIST_BY_STATUS, ("failed", 10), "idx_tasks_status_priority"),
    ("by_session", sql.LIST_BY_SESSION, ("s1", 10), "idx_tasks_session"),
    ("by_session_status", sql.LIST_BY_SESSION_STATUS, ("s1", "running", 10),
     "idx_tasks_session"),
    ("timed_out", sql.TIMED_OUT, ("2025", "2025", 10), "idx_tasks_running_timeout"),
]


@pytest.mark.sqlite_only("plan pins read SQLite's EXPLAIN QUERY PLAN and its index names")
@pytest.mark.parametrize(("query", "params", "index"), [p[1:] for p in PLANS],
                         ids=[p[0] for p in PLANS])
async def test_plans(db: Database, query: str, params: tuple[Any, ...], index: str) -> None:
    await assert_searches(db, query, params, "tasks", index)


@pytest.mark.sqlite_only("plan pins read SQLite's EXPLAIN QUERY PLAN and its index names")
async def test_list_all_walks_the_submitted_index(db: Database) -> None:
    # No filter: the index in order, stopping after LIMIT rows (no sort, no table scan).
    assert await details(db, sql.LIST_ALL, (10,)) == [
        "SCAN tasks USING INDEX idx_tasks_submitted_at"]
