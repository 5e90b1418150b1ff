"""Agents: one row per spawned agent, tied to a task and optionally a session.

States move idle ↔ working ↔ waiting, and any of them to terminated, which
is final. Every write has its audit row in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from . import audit
from .engines.interface import Connection, Store
from .errors import AlreadyExistsError
from .inputs import require_object, require_text
from .lifecycle import Lifecycle, for_update
from .namespaces import optional_segment, require_segment
from .rows import Row, Rows, exists, fetch_all, fetch_one, require_row
from .values import timestamp, to_json

__all__ = ["JSON_COLUMNS", "LIFECYCLE", "STATES", "AgentService"]

_LIVE = ("idle", "working", "waiting")
LIFECYCLE = Lifecycle(
    "agent",
    "state",
    {
        **{state: frozenset({*_LIVE, "terminated"} - {state}) for state in _LIVE},
        "terminated": frozenset(),
    },
)
STATES = LIFECYCLE.states
JSON_COLUMNS = ("resource_usage",)

# -- SQL (module-level so tests can check each plan) -------------------------

GET = "SELECT * FROM agents WHERE id = ?"
GET_STATE = "SELECT state, task_id FROM agents WHERE id = ?"
# No row back: the id exists.
INSERT = (
    "INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at, "
    "session_id) VALUES (?, ?, ?, ?, 'idle', ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING id"
)
SET_STATE = "UPDATE agents SET state = ? WHERE id = ? RETURNING *"
TERMINATE = (
    "UPDATE agents SET state = 'terminated', terminated_at = ?, "
    "resource_usage = coalesce(?, resource_usage) WHERE id = ? RETURNING *"
)
FOR_TASK = "SELECT * FROM agents WHERE task_id = ? ORDER BY spawned_at"
FOR_SESSION = "SELECT * FROM agents WHERE session_id = ? ORDER BY spawned_at DESC"
# The agent a move checks, then changes: PostgreSQL locks its row until the commit.
GET_STATE_SQL = {"sqlite": GET_STATE, "postgresql": for_update(GET_STATE)}


class AgentService:
    """Agents: ``db.agents`` or ``AgentService(db)``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.get_state = GET_STATE_SQL[store.dialect]

    async def get(self, agent_id: str) -> Row | None:
        aid = require_text(agent_id, "agent_id")
        return await self.store.read(lambda conn: fetch_one(conn, GET, (aid,), JSON_COLUMNS))

    async def for_task(self, task_id: str) -> Rows:
        """The task's agents, oldest first."""
        tid = require_text(task_id, "task_id")
        return await self.store.read(lambda conn: fetch_all(conn, FOR_TASK, (tid,), JSON_COLUMNS))

    async def for_session(self, session_id: str) -> Rows:
        """The session's agents, newest first."""
        sid = require_text(session_id, "session_id")
        return await self.store.read(
            lambda conn: fetch_all(conn, FOR_SESSION, (sid,), JSON_COLUMNS)
        )

    async def spawn(
        self,
        name: str,
        specialization: str,
        task_id: str,
        model: str,
        session_id: str | None = None,
        agent_id: str | None = None,
    ) -> str:
        """Register an agent (state ``idle``) working on ``task_id``; return its id."""
        aid = str(uuid.uuid4()) if agent_id is None else require_segment(agent_id, "agent_id")
        label = require_text(name, "name")
        role = require_text(specialization, "specialization")
        tid = require_text(task_id, "task_id")
        llm = require_text(model, "model")
        sid = optional_segment(session_id, "session_id")

        def insert(conn: Connection) -> None:
            # Checked first for its message; the INSERT's ON CONFLICT catches a
            # concurrent insert of the same id (PostgreSQL has no database write lock).
            if exists(conn, "agents", aid):
                raise AlreadyExistsError(f"Agent {aid} already exists")
            require_row(conn, "tasks", tid, "Task")
            if sid is not None:
                require_row(conn, "sessions", sid, "Session")
            now = timestamp()
            if conn.execute(INSERT, (aid, label, role, tid, llm, now, sid)).fetchone() is None:
                raise AlreadyExistsError(f"Agent {aid} already exists")
            audit.record(conn, "agent_spawned", agent_id=aid, task_id=tid, result="idle", at=now,
                         action_data={"name": label, "specialization": role, "model": llm,
                                      "session_id": sid})

        await self.store.write(insert)
        return aid

    async def set_state(self, agent_id: str, state: str) -> Row:
        """Move the agent to ``state`` (idle, working or waiting; see ``terminate``)."""
        new = LIFECYCLE.check_state(state)
        if new == "terminated":
            return await self.terminate(agent_id)
        return await self._move(agent_id, new, SET_STATE, lambda now, aid: (new, aid))

    async def terminate(
        self, agent_id: str, resource_usage: dict[str, Any] | None = None
    ) -> Row:
        """Terminate the agent, recording its ``resource_usage`` (a JSON object) if given."""
        usage = None
        if resource_usage is not None:
            usage = to_json(require_object(resource_usage, "resource_usage"), "resource_usage")
        return await self._move(agent_id, "terminated", TERMINATE,
                                lambda now, aid: (now, usage, aid))

    async def _move(
        self, agent_id: str, new: str, sql: str, params: Callable[[str, str], tuple[Any, ...]]
    ) -> Row:
        """Check the move, apply ``sql`` with ``params(now, id)`` and audit it: one txn."""
        aid = require_text(agent_id, "agent_id")
        get_state = self.get_state

        def move(conn: Connection) -> Row:
            row = LIFECYCLE.move(conn, get_state, aid, new)
            now = timestamp()
            agent = fetch_one(conn, sql, params(now, aid), JSON_COLUMNS)
            assert agent is not None  # this transaction has just read the row
            action = "agent_terminated" if new == "terminated" else "agent_state_changed"
            audit.record(conn, action,
                         agent_id=aid, task_id=row["task_id"], result=new, at=now,
                         action_data={"from": row["state"], "to": new})
            return agent

        return await self.store.write(move)



def count_agents(conn: Connection) -> int:
    """Every agent ever spawned (read by the workload tools)."""
    return int(conn.execute("SELECT count(*) FROM agents").fetchone()[0])


def count_by_state(conn: Connection) -> dict[str, int]:
    """How many agents are in each state, the most common first."""
    sql = "SELECT state, count(*) FROM agents GROUP BY 1 ORDER BY 2 DESC"
    return {str(state): int(n) for state, n in conn.execute(sql)}
