"""Checkpoints: a task's saved state per iteration, to resume from the latest."""

from __future__ import annotations

from typing import Any

from .engines.interface import Connection, Store
from .inputs import require_int, require_text
from .namespaces import optional_segment
from .rows import Row, Rows, fetch_all, fetch_one, require_row
from .values import timestamp, to_json

__all__ = ["JSON_COLUMNS", "CheckpointService"]

JSON_COLUMNS = ("state",)

# -- SQL (module-level so tests can check each plan) -------------------------

# Saving an iteration again replaces it: a task re-run after a crash
# re-saves the iteration it was in.
SAVE = (
    "INSERT INTO checkpoints (task_id, iteration, state, created_at, session_id) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id, iteration) DO UPDATE SET "
    "state = excluded.state, created_at = excluded.created_at, session_id = excluded.session_id"
)
LATEST = "SELECT * FROM checkpoints WHERE task_id = ? ORDER BY iteration DESC LIMIT 1"
GET = "SELECT * FROM checkpoints WHERE task_id = ? AND iteration = ?"
LIST = "SELECT * FROM checkpoints WHERE task_id = ? ORDER BY iteration"


class CheckpointService:
    """Checkpoints: ``db.checkpoints`` or ``CheckpointService(db)``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(
        self, task_id: str, iteration: int, state: Any, session_id: str | None = None
    ) -> None:
        """Save ``state`` (any JSON value) as iteration ``iteration`` (>= 0) of the task."""
        tid = require_text(task_id, "task_id")
        step = require_int(iteration, "iteration", minimum=0)
        state_json = to_json(state, "state")
        sid = optional_segment(session_id, "session_id")

        def save(conn: Connection) -> None:
            require_row(conn, "tasks", tid, "Task")
            if sid is not None:
                require_row(conn, "sessions", sid, "Session")
            conn.execute(SAVE, (tid, step, state_json, timestamp(), sid))

        await self.store.write(save)

    async def latest(self, task_id: str) -> Row | None:
        """The highest iteration's checkpoint, or None."""
        tid = require_text(task_id, "task_id")
        return await self.store.read(lambda conn: fetch_one(conn, LATEST, (tid,), JSON_COLUMNS))

    async def get(self, task_id: str, iteration: int) -> Row | None:
        tid = require_text(task_id, "task_id")
        step = require_int(iteration, "iteration", minimum=0)
        return await self.store.read(lambda conn: fetch_one(conn, GET, (tid, step), JSON_COLUMNS))

    async def list(self, task_id: str) -> Rows:
        """Every checkpoint of the task, by iteration."""
        tid = require_text(task_id, "task_id")
        return await self.store.read(lambda conn: fetch_all(conn, LIST, (tid,), JSON_COLUMNS))
