"""The task queue: submit, claim atomically, complete or fail with retries.

Priority: a higher number is more urgent (the seed comments said
"1 = highest" while its dequeue sorted DESC; we keep the DESC sort, which the
index ``idx_tasks_status_priority`` serves). Equal priorities go oldest first.

Every state change writes its audit row in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import audit
from .engines.interface import Connection, Store
from .errors import AlreadyExistsError, InvalidInputError
from .inputs import optional_text, require_int, require_limit, require_text
from .lifecycle import Lifecycle, for_update
from .namespaces import optional_segment
from .rows import Row, Rows, exists, fetch_all, fetch_one, require_row
from .values import timestamp, to_json

__all__ = ["JSON_COLUMNS", "LIFECYCLE", "STATUSES", "TaskService"]

#: pending → running → completed | failed, with retries back to pending.
LIFECYCLE = Lifecycle(
    "task",
    "status",
    {
        "pending": frozenset({"running", "cancelled"}),
        "running": frozenset({"completed", "failed", "pending", "cancelled"}),
        "completed": frozenset(),
        "failed": frozenset(),
        "cancelled": frozenset(),
    },
)
STATUSES = LIFECYCLE.states
JSON_COLUMNS = ("input_data", "result_data", "dependencies")

# -- SQL (module-level so tests can check each plan) -------------------------

GET = "SELECT * FROM tasks WHERE id = ?"
GET_STATUS = "SELECT status, retry_count, max_retries FROM tasks WHERE id = ?"
# No row back: the id exists.
INSERT = (
    "INSERT INTO tasks (id, prompt, agent_type, priority, status, input_data, max_retries, "
    "max_execution_timeout_seconds, submitted_at, last_updated_at, created_by, "
    "parent_task_id, dependencies, session_id) "
    "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
# A task is ready when each of its dependencies has completed. An unknown
# dependency id counts as not completed (the LEFT JOIN finds no row).
_READY = (
    "(t.dependencies IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(t.dependencies) AS d "
    "LEFT JOIN tasks AS dep ON dep.id = d.value WHERE dep.status IS NOT 'completed'))"
)
# The most urgent ready task, walking idx_tasks_status_priority in order.
NEXT_PENDING = (
    f"SELECT t.id FROM tasks AS t WHERE t.status = 'pending' AND {_READY} "
    "ORDER BY t.priority DESC, t.submitted_at LIMIT 1"
)
NEXT_PENDING_FOR_TYPE = (
    f"SELECT t.id FROM tasks AS t WHERE t.status = 'pending' AND t.agent_type = ? AND {_READY} "
    "ORDER BY t.priority DESC, t.submitted_at LIMIT 1"
)
# "AND status = 'pending'" guards the claim even outside BEGIN IMMEDIATE.
CLAIM = (
    "UPDATE tasks SET status = 'running', started_at = ?, last_updated_at = ? "
    "WHERE id = ? AND status = 'pending' RETURNING *"
)
COMPLETE = (
    "UPDATE tasks SET status = 'completed', result_data = ?, completed_at = ?, "
    "last_updated_at = ? WHERE id = ? RETURNING *"
)
RETRY = (
    "UPDATE tasks SET status = 'pending', error_message = ?, retry_count = retry_count + 1, "
    "started_at = NULL, last_updated_at = ? WHERE id = ? RETURNING *"
)
FAIL = (
    "UPDATE tasks SET status = 'failed', error_message = ?, completed_at = ?, "
    "last_updated_at = ? WHERE id = ? RETURNING *"
)
CANCEL = (
    "UPDATE tasks SET status = 'cancelled', completed_at = ?, last_updated_at = ? "
    "WHERE id = ? RETURNING *"
)
LIST_ALL = "SELECT * FROM tasks ORDER BY submitted_at DESC LIMIT ?"
# By status: queue order (most urgent first), the order of idx_tasks_status_priority.
LIST_BY_STATUS = (
    "SELECT * FROM tasks WHERE status = ? ORDER BY priority DESC, submitted_at LIMIT ?"
)
LIST_BY_SESSION = (
    "SELECT * FROM tasks WHERE session_id = ? ORDER BY submitted_at DESC LIMIT ?"
)
LIST_BY_SESSION_STATUS = (
    "SELECT * FROM tasks WHERE session_id = ? AND status = ? "
    "ORDER BY submitted_at DESC LIMIT ?"
)
# Running tasks whose last update is older than their own timeout. The range on
# last_updated_at is the index's; the per-row timeout is checked after.
TIMED_OUT = (
    "SELECT * FROM tasks WHERE status = 'running' AND last_updated_at < ? "
    "AND (julianday(?) - julianday(last_updated_at)) * 86400.0 "
    "> coalesce(max_execution_timeout_seconds, 3600) "
    "ORDER BY last_updated_at LIMIT ?"
)


class _Sql(NamedTuple):
    """The statements that differ between the engines."""

    next_pending: str
    next_pending_for_type: str
    # The task a move checks, then changes (locked on PostgreSQL).
    get_status: str
    timed_out: str


# PostgreSQL: the dependencies are jsonb; the pick locks its task and skips the
# ones other claimers hold, so concurrent claims never wait on each other.
_PG_READY = (
    "(t.dependencies IS NULL OR NOT EXISTS (SELECT 1 FROM "
    "jsonb_array_elements_text(t.dependencies) AS d(value) "
    "LEFT JOIN tasks AS dep ON dep.id = d.value COLLATE \"C\" "
    "WHERE dep.status IS DISTINCT FROM 'completed'))"
)
_SKIP_LOCKED = " FOR NO KEY UPDATE OF t SKIP LOCKED"
SQL = {
    "sqlite": _Sql(NEXT_PENDING, NEXT_PENDING_FOR_TYPE, GET_STATUS, TIMED_OUT),
    "postgresql": _Sql(
        NEXT_PENDING.replace(_READY, _PG_READY) + _SKIP_LOCKED,
        NEXT_PENDING_FOR_TYPE.replace(_READY, _PG_READY) + _SKIP_LOCKED,
        for_update(GET_STATUS),
        TIMED_OUT.replace(
            "(julianday(?) - julianday(last_updated_at)) * 86400.0",
            "extract(epoch FROM CAST(? AS timestamp) - last_updated_at)"),
    ),
}


class TaskService:
    """The task queue: ``db.tasks`` or ``TaskService(db)``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sql = SQL[store.dialect]

    # -- reads ---------------------------------------------------------------

    async def get(self, task_id: str) -> Row | None:
        tid = require_text(task_id, "task_id")
        return await self.store.read(lambda conn: fetch_one(conn, GET, (tid,), JSON_COLUMNS))

    async def list(
        self, status: str | None = None, session_id: str | None = None, limit: int = 50
    ) -> Rows:
        """Tasks newest first; with ``status`` alone, in queue order (most urgent first)."""
        wanted = None if status is None else LIFECYCLE.check_state(status)
        sid = optional_text(session_id, "session_id")
        count = require_limit(limit)
        sql, params = _list_query(wanted, sid, count)
        return await self.store.read(lambda conn: fetch_all(conn, sql, params, JSON_COLUMNS))

    async def timed_out(self, limit: int = 100) -> Rows:
        """Running tasks not updated within their ``max_execution_timeout_seconds``."""
        count = require_limit(limit)
        now = timestamp()
        sql = self.sql.timed_out
        return await self.store.read(
            lambda conn: fetch_all(conn, sql, (now, now, count), JSON_COLUMNS)
        )

    # -- writes --------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        *,
        input_data: Any = None,
        agent_type: str = "general",
        priority: int = 5,
        session_id: str | None = None,
        parent_task_id: str | None = None,
        dependencies: Sequence[str] | None = None,
        max_retries: int = 3,
        max_execution_timeout_seconds: int = 3600,
        task_id: str | None = None,
        created_by: str | None = None,
    ) -> str:
        """Queue a task (status ``pending``); return its id (a new UUID by default).

        ``claim`` hands it out only once every task in ``dependencies`` has completed.
        """
        tid = str(uuid.uuid4()) if task_id is None else require_text(task_id, "task_id")
        text = require_text(prompt, "prompt", max_length=None)
        kind = require_text(agent_type, "agent_type")
        urgency = require_int(priority, "priority")
        data = to_json({} if input_data is None else input_data, "input_data")
        sid = optional_segment(session_id, "session_id")
        parent = optional_text(parent_task_id, "parent_task_id")
        deps = _check_dependencies(dependencies)
        retries = require_int(max_retries, "max_retries", minimum=0)
        timeout = require_int(max_execution_timeout_seconds, "max_execution_timeout_seconds",
                              minimum=1)
        author = optional_text(created_by, "created_by")

        def insert(conn: Connection) -> None:
            # Checked first for its message; the INSERT's ON CONFLICT catches a
            # concurrent insert of the same id (PostgreSQL has no database write lock).
            if exists(conn, "tasks", tid):
                raise AlreadyExistsError(f"Task {tid} already exists")
            if sid is not None:
                require_row(conn, "sessions", sid, "Session")
            if parent is not None:
                require_row(conn, "tasks", parent, "Task")
            for dep in deps or ():
                require_row(conn, "tasks", dep, "Task")
            now = timestamp()
            inserted = conn.execute(INSERT, (
                tid, text, kind, urgency, data, retries, timeout, now, now, author, parent,
                None if deps is None else to_json(deps, "dependencies"), sid,
            )).fetchone()
            if inserted is None:
                raise AlreadyExistsError(f"Task {tid} already exists")
            audit.record(conn, "task_submitted", task_id=tid, result="pending", at=now,
                         action_data={"agent_type": kind, "priority": urgency,
                                      "session_id": sid, "created_by": author})

        await self.store.write(insert)
        return tid

    async def claim(
        self, agent_type: str | None = None, *, agent_id: str | None = None
    ) -> Row | None:
        """Claim the most urgent ready pending task (now ``running``), or None.

        Two claimers, in this process or another, never get the same task: on
        SQLite one ``BEGIN IMMEDIATE`` transaction holds the write lock from the
        pick to the update; on PostgreSQL the pick locks its row
        (``FOR NO KEY UPDATE SKIP LOCKED``: a task another claimer holds is
        passed over). ``agent_id`` is recorded in the audit row.
        """
        kind = optional_text(agent_type, "agent_type")
        agent = optional_text(agent_id, "agent_id")
        sql = self.sql

        def take(conn: Connection) -> Row | None:
            pick = (conn.execute(sql.next_pending).fetchone() if kind is None
                    else conn.execute(sql.next_pending_for_type, (kind,)).fetchone())
            if pick is None:
                return None
            now = timestamp()
            task = fetch_one(conn, CLAIM, (now, now, pick[0]), JSON_COLUMNS)
            if task is not None:
                audit.record(conn, "task_claimed", task_id=task["id"], agent_id=agent,
                             result="running", at=now)
            return task

        return await self.store.write(take)

    async def complete(self, task_id: str, result: Any = None) -> Row:
        """Mark a running task completed with ``result`` (any JSON value)."""
        result_json = None if result is None else to_json(result, "result")
        return await self._move(task_id, lambda row, now, tid: _Move(
            "completed", "task_completed", COMPLETE, (result_json, now, now, tid)))

    async def fail(self, task_id: str, error: str) -> Row:
        """Record a failure: back to ``pending`` while retries remain, else ``failed``."""
        message = require_text(error, "error", max_length=None)

        def plan(row: Any, now: str, tid: str) -> _Move:
            # Only a running task retries; any other is refused as "to failed".
            retry = row["status"] == "running"
            if retry and (row["retry_count"] or 0) < (row["max_retries"] or 0):
                return _Move("pending", "task_retried", RETRY, (message, now, tid), message)
            return _Move("failed", "task_failed", FAIL, (message, now, now, tid), message)

        return await self._move(task_id, plan)

    async def cancel(self, task_id: str) -> Row:
        """Cancel a pending or running task."""
        return await self._move(task_id, lambda row, now, tid: _Move(
            "cancelled", "task_cancelled", CANCEL, (now, now, tid)))

    async def _move(self, task_id: str, plan: Callable[[Any, str, str], _Move]) -> Row:
        """Read the task, check ``plan``'s move, apply it and audit it: one transaction."""
        tid = require_text(task_id, "task_id")
        get_status = self.sql.get_status

        def move(conn: Connection) -> Row:
            row = LIFECYCLE.current(conn, get_status, tid)
            now = timestamp()
            step = plan(row, now, tid)
            LIFECYCLE.check_move(tid, row["status"], step.target)
            task = fetch_one(conn, step.sql, step.params, JSON_COLUMNS)
            assert task is not None  # this transaction has just read the row
            data = {"from": row["status"]}
            if step.error is not None:
                data["error"] = step.error
            audit.record(conn, step.action, task_id=tid, result=step.target,
                         action_data=data, at=now)
            return task

        return await self.store.write(move)


class _Move(NamedTuple):
    """One lifecycle move: target status, audit action, its UPDATE, the error text."""

    target: str
    action: str
    sql: str
    params: tuple[Any, ...]
    error: str | None = None


def _check_dependencies(dependencies: object) -> list[str] | None:
    if dependencies is None:
        return None
    if not isinstance(dependencies, list | tuple):
        raise InvalidInputError(
            f"Invalid dependencies: expected a list of task ids, got {type(dependencies).__name__}"
        )
    return [require_text(dep, "dependency task id") for dep in dependencies]


def _list_query(status: str | None, session_id: str | None, limit: int) -> tuple[str, list[Any]]:
    """The SQL ``TaskService.list`` runs for these filters."""
    if session_id is not None and status is not None:
        return LIST_BY_SESSION_STATUS, [session_id, status, limit]
    if session_id is not None:
        return LIST_BY_SESSION, [session_id, limit]
    if status is not None:
        return LIST_BY_STATUS, [status, limit]
    return LIST_ALL, [limit]


# -- reads for the workload tools --


def count_tasks(conn: Connection, *, claimed_only: bool = False) -> int:
    """Every task, or (``claimed_only``) those no longer pending."""
    where = " WHERE status != 'pending'" if claimed_only else ""
    return int(conn.execute(f"SELECT count(*) FROM tasks{where}").fetchone()[0])


def tasks_disagreeing_with_claim_audit(conn: Connection, limit: int = 5) -> list[Any]:
    """Never-retried tasks whose status disagrees with their claim and completion audit rows."""
    # The counts are named in a derived table: PostgreSQL's WHERE cannot see aliases.
    return conn.execute(
        "SELECT * FROM (SELECT t.id, t.status, "
        "(SELECT count(*) FROM audit a WHERE a.task_id = t.id "
        " AND a.action_type = 'task_claimed') AS claimed, "
        "(SELECT count(*) FROM audit a WHERE a.task_id = t.id "
        " AND a.action_type = 'task_completed') AS completed "
        "FROM tasks t WHERE t.retry_count = 0) AS c WHERE NOT ("
        " (status = 'pending' AND claimed = 0 AND completed = 0) OR"
        " (status = 'running' AND claimed = 1 AND completed = 0) OR"
        " (status = 'completed' AND claimed = 1 AND completed = 1) OR"
        " status IN ('failed', 'cancelled')) LIMIT ?", (limit,)).fetchall()


def count_by_status(conn: Connection) -> dict[str, int]:
    """How many tasks are in each status, the most common first."""
    sql = "SELECT status, count(*) FROM tasks GROUP BY 1 ORDER BY 2 DESC"
    return {str(status): int(n) for status, n in conn.execute(sql)}
