"""Checked state machines for sessions, tasks and agents.

Services read the current state and check the move inside their write
transaction, so no other writer can move the row in between: on SQLite the
transaction holds the write lock (``BEGIN IMMEDIATE``), on PostgreSQL the read
locks the row (``for_update``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .engines.interface import Connection
from .errors import InvalidInputError, InvalidTransitionError, NotFoundError

__all__ = ["Lifecycle", "for_update"]


def for_update(sql: str) -> str:
    """``sql`` (a SELECT of rows to change) locking those rows until the commit.

    PostgreSQL's statement: another writer's ``for_update`` read of the same
    row waits, then sees the committed change. ``NO KEY UPDATE``, as the
    UPDATE itself takes: inserts whose foreign keys point at the row (an
    event, a child task, a checkpoint) do not wait for it. SQLite has no row
    locks and needs none (one writer at a time).
    """
    return f"{sql} FOR NO KEY UPDATE"


class Lifecycle:
    """The legal moves of one kind of row: ``{state: states it may move to}``."""

    def __init__(self, kind: str, field: str, moves: Mapping[str, frozenset[str]]) -> None:
        self.kind = kind
        self.field = field
        self.moves = dict(moves)
        self.states = tuple(moves)

    def check_state(self, value: object) -> str:
        """``value`` if it is a known state, else ``Invalid <field>: <value>``."""
        if not isinstance(value, str) or value not in self.moves:
            raise InvalidInputError(
                f"Invalid {self.field}: {value} (expected one of {', '.join(self.states)})"
            )
        return value

    def check_move(self, row_id: str, current: str, new: str) -> None:
        """Raise ``InvalidTransitionError`` naming both states unless legal."""
        if new not in self.moves.get(current, frozenset()):
            raise InvalidTransitionError(
                f"Cannot move {self.kind} {row_id} from {current} to {new}"
            )

    def current(self, conn: Connection, sql: str, row_id: str) -> Any:
        """The row ``sql`` selects by id, or ``NotFoundError("<Kind> <id> not found")``."""
        row = conn.execute(sql, (row_id,)).fetchone()
        if row is None:
            raise self.not_found(row_id)
        return row

    def not_found(self, row_id: str) -> NotFoundError:
        """``NotFoundError("<Kind> <id> not found")``."""
        return NotFoundError(f"{self.kind.capitalize()} {row_id} not found")

    def move(self, conn: Connection, sql: str, row_id: str, new: str) -> Any:
        """``current``, then ``check_move`` from its ``<field>`` column to ``new``."""
        row = self.current(conn, sql, row_id)
        self.check_move(row_id, row[self.field], new)
        return row
