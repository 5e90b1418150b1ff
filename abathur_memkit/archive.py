"""Archival: move old rows out of the main database into an archive file.

``archive(db, path, older_than_days)`` moves, in batches:

- audit rows older than the cutoff;
- memory versions superseded before the cutoff (a newer version of the key
  was created before it) that no audit row left in the main file points to;
  the latest version of a key is never moved, live or deleted;
- the events of sessions terminated before the cutoff, whose status then
  becomes ``archived`` (with its audit row); their session rows are copied.

Each batch is two transactions: copy the rows into the archive (an existing
row is kept) and count them there, then delete them from the main file. A
transaction spanning two WAL databases is atomic in each file but not across
both, so the copy commits before the delete starts: a kill in between leaves
the batch in both files (the loaders read the main copy) and the next run
finishes it; it never leaves a row in neither.

Audit rows go before memory versions so that deleting a version never nulls
an audit row's ``memory_entry_id`` (its ``ON DELETE SET NULL``): a version
moves only once no audit row in the main file refers to it. The archive's
tables have the main file's columns and checks, without foreign keys (an
archived audit row may name a version that stays in the main file).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import audit
from .engines.interface import Connection
from .engines.sqlite.driver import Driver
from .errors import InvalidInputError, MemkitError
from .inputs import require_int
from .values import is_finite_number, timestamp, timestamp_ago

__all__ = ["ARCHIVED_TABLES", "ArchiveError", "ArchiveResult", "archive", "cutoff"]


class SQLiteFile(Protocol):
    """A SQLite database file to archive: a ``Database`` or its ``SQLiteEngine``."""

    @property
    def path(self) -> str: ...
    @property
    def in_memory(self) -> bool: ...
    @property
    def driver(self) -> Driver: ...


#: The tables an archive file holds, with their primary key columns.
ARCHIVED_TABLES: dict[str, tuple[str, ...]] = {
    "audit": ("id",),
    "memory_entries": ("id",),
    "sessions": ("id",),
    "session_events": ("session_id", "seq"),
}


T = TypeVar("T")


class ArchiveError(MemkitError):
    """The archive did not receive every row of a batch; nothing of it was deleted."""


@dataclass
class ArchiveResult:
    """What one run moved (rows deleted from the main file)."""

    archive_path: str
    cutoff: str
    moved: dict[str, int] = field(default_factory=dict)
    sessions_archived: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cutoff(older_than_days: float) -> str:
    """The stored-form timestamp ``older_than_days`` before now."""
    if not is_finite_number(older_than_days) or older_than_days < 0:
        raise InvalidInputError(
            f"Invalid age: {older_than_days!r:.60} (expected a number of days >= 0)")
    return timestamp_ago(days=older_than_days)


# -- the archive file's tables -------------------------------------------------

_CREATE = re.compile(r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(\w+)\"?", re.I)
_ACTIONS = (r"(?:\s+ON\s+(?:DELETE|UPDATE)\s+"
            r"(?:SET\s+NULL|SET\s+DEFAULT|CASCADE|RESTRICT|NO\s+ACTION))*")
_TABLE_FK = re.compile(r",\s*FOREIGN\s+KEY\s*\([^)]*\)\s*REFERENCES\s+\w+\s*\([^)]*\)" + _ACTIONS,
                       re.I)
_COLUMN_FK = re.compile(r"\s+REFERENCES\s+\w+\s*\([^)]*\)" + _ACTIONS, re.I)


def archive_ddl(create_sql: str) -> str:
    """A main table's CREATE statement for the attached archive, foreign keys removed."""
    sql = _TABLE_FK.sub("", create_sql)
    sql = _COLUMN_FK.sub("", sql)
    return _CREATE.sub(lambda m: f"CREATE TABLE IF NOT EXISTS archive.{m.group(1)}", sql, 1)


def _attach(conn: Connection, path: str) -> None:
    conn.execute("ATTACH DATABASE ? AS archive", (path,))
    conn.execute("PRAGMA archive.journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in ARCHIVED_TABLES:
            row = conn.execute("SELECT sql FROM main.sqlite_master WHERE type = 'table' "
                               "AND name = ?", (table,)).fetchone()
            conn.execute(archive_ddl(row[0]))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# -- what moves ----------------------------------------------------------------

# Keyset pages (id > ?) so that each batch starts where the last one ended.
_AUDIT_BATCH = "SELECT id FROM main.audit WHERE id > ? AND timestamp < ? ORDER BY id LIMIT ?"
# A version superseded before the cutoff that no audit row in main refers to.
_OLD_VERSION = (
    "EXISTS (SELECT 1 FROM main.memory_entries AS n WHERE n.namespace = m.namespace "
    "AND n.key = m.key AND n.version > m.version AND n.created_at < ?) "
    "AND NOT EXISTS (SELECT 1 FROM main.audit AS a WHERE a.memory_entry_id = m.id)"
)
_MEMORY_BATCH = (
    f"SELECT m.id FROM main.memory_entries AS m WHERE m.id > ? AND {_OLD_VERSION} "
    "ORDER BY m.id LIMIT ?"
)
_SESSIONS = (
    "SELECT id FROM main.sessions WHERE status IN ('terminated', 'archived') "
    "AND coalesce(terminated_at, last_update_time) < ? "
    "AND EXISTS (SELECT 1 FROM main.session_events AS e WHERE e.session_id = sessions.id) "
    "ORDER BY id"
)
_IDS = "SELECT value FROM json_each(?)"


def _count_pending(conn: Connection, before: str) -> int:
    audit_rows = conn.execute("SELECT count(*) FROM main.audit WHERE timestamp < ?",
                              (before,)).fetchone()[0]
    # Versions whose audit rows are old count too: those rows move first.
    versions = conn.execute(
        "SELECT count(*) FROM main.memory_entries AS m WHERE EXISTS (SELECT 1 FROM "
        "main.memory_entries AS n WHERE n.namespace = m.namespace AND n.key = m.key "
        "AND n.version > m.version AND n.created_at < ?1) AND NOT EXISTS (SELECT 1 FROM "
        "main.audit AS a WHERE a.memory_entry_id = m.id AND a.timestamp >= ?1)",
        (before,)).fetchone()[0]
    events = conn.execute(
        f"SELECT count(*) FROM main.session_events WHERE session_id IN ({_SESSIONS})",
        (before,)).fetchone()[0]
    return int(audit_rows) + int(versions) + int(events)


def _in_transaction(conn: Connection, fn: Callable[[], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def _copy_ids(conn: Connection, table: str, ids: list[int]) -> None:
    """Copy rows ``ids`` of ``table`` into the archive and check they are all there."""
    batch = json.dumps(ids)

    def copy() -> int:
        conn.execute(f"INSERT OR IGNORE INTO archive.{table} "
                     f"SELECT * FROM main.{table} WHERE id IN ({_IDS})", (batch,))
        return int(conn.execute(f"SELECT count(*) FROM archive.{table} WHERE id IN ({_IDS})",
                                (batch,)).fetchone()[0])

    copied = _in_transaction(conn, copy)
    if copied != len(ids):
        raise ArchiveError(f"{table}: {copied} of {len(ids)} rows reached the archive; "
                           "nothing of this batch was deleted")


def delete_batch(conn: Connection, table: str, ids: list[int]) -> int:
    """Delete a copied batch from the main file (its own transaction)."""
    return _in_transaction(conn, lambda: int(conn.execute(
        f"DELETE FROM main.{table} WHERE id IN ({_IDS})", (json.dumps(ids),)).rowcount))


def _batches(conn: Connection, sql: str, before: str, size: int) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = [int(r[0]) for r in conn.execute(sql, (last, before, size))]
        if not ids:
            return
        yield ids
        last = ids[-1]


def _move_ids(conn: Connection, table: str, sql: str, before: str, size: int,
              advance: Callable[[int], object]) -> int:
    moved = 0
    for ids in _batches(conn, sql, before, size):
        _copy_ids(conn, table, ids)
        moved += delete_batch(conn, table, ids)
        advance(len(ids))
    return moved


def _copy_events(conn: Connection, session_id: str, size: int) -> tuple[int, int] | None:
    """Copy the session row and its first ``size`` events; their seq range, checked."""
    conn.execute("INSERT OR REPLACE INTO archive.sessions "
                 "SELECT * FROM main.sessions WHERE id = ?", (session_id,))
    low, high = conn.execute(
        "SELECT min(seq), max(seq) FROM (SELECT seq FROM main.session_events "
        "WHERE session_id = ? ORDER BY seq LIMIT ?)", (session_id, size)).fetchone()
    if low is None:
        return None
    conn.execute("INSERT OR IGNORE INTO archive.session_events SELECT * FROM "
                 "main.session_events WHERE session_id = ? AND seq BETWEEN ? AND ?",
                 (session_id, low, high))
    missing = conn.execute(
        "SELECT (SELECT count(*) FROM main.session_events WHERE session_id = ?1 "
        "AND seq BETWEEN ?2 AND ?3) - (SELECT count(*) FROM archive.session_events "
        "WHERE session_id = ?1 AND seq BETWEEN ?2 AND ?3)",
        (session_id, low, high)).fetchone()[0]
    if missing:
        raise ArchiveError(f"session {session_id}: {missing} events did not reach the "
                           "archive; nothing of this batch was deleted")
    return int(low), int(high)


def _delete_events(conn: Connection, session_id: str, seqs: tuple[int, int]) -> int:
    return int(conn.execute(
        "DELETE FROM main.session_events WHERE session_id = ? AND seq BETWEEN ? AND ?",
        (session_id, *seqs)).rowcount)


def _move_session(conn: Connection, session_id: str, size: int,
                  advance: Callable[[int], object]) -> int:
    moved = 0
    while True:
        seqs = _in_transaction(conn, lambda: _copy_events(conn, session_id, size))
        if seqs is None:
            return moved
        count = _in_transaction(conn, partial(_delete_events, conn, session_id, seqs))
        moved += count
        advance(count)


def _mark_archived(conn: Connection, session_id: str) -> int:
    """A terminated session whose events left becomes ``archived``, with its audit row."""
    def mark() -> int:
        now = timestamp()
        changed = int(conn.execute(
            "UPDATE main.sessions SET status = 'archived', archived_at = ?, "
            "last_update_time = ? WHERE id = ? AND status = 'terminated'",
            (now, now, session_id)).rowcount)
        if changed:
            audit.record(conn, "session_status_changed", result="archived", at=now,
                         action_data={"session_id": session_id, "previous": "terminated",
                                      "by": "archive"})
        return changed

    return _in_transaction(conn, mark)


def _run(db: SQLiteFile, path: str, before: str, size: int, progress: bool) -> ArchiveResult:
    from tqdm import tqdm

    result = ArchiveResult(path, before)
    conn = db.driver.connect(db.path)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA foreign_keys = ON")
        _attach(conn, path)
        with tqdm(total=_count_pending(conn, before), unit="row", desc="archive",
                  disable=not progress) as bar:
            result.moved["audit"] = _move_ids(conn, "audit", _AUDIT_BATCH, before, size,
                                              bar.update)
            result.moved["memory_entries"] = _move_ids(conn, "memory_entries", _MEMORY_BATCH,
                                                       before, size, bar.update)
            events = 0
            for (session_id,) in conn.execute(_SESSIONS, (before,)).fetchall():
                events += _move_session(conn, session_id, size, bar.update)
                result.sessions_archived += _mark_archived(conn, session_id)
            result.moved["session_events"] = events
    finally:
        conn.close()
    return result


async def archive(
    db: SQLiteFile,
    path: str | Path,
    older_than_days: float,
    *,
    batch_size: int = 1000,
    progress: bool = False,
) -> ArchiveResult:
    """Move rows older than ``older_than_days`` from ``db`` into the file ``path``.

    ``db`` must be initialized. Runs on a connection of its own (other writers
    wait per batch, not for the whole run); ``progress`` shows a tqdm bar on
    stderr.
    """
    size = require_int(batch_size, "batch_size", minimum=1)
    before = cutoff(older_than_days)
    target = Path(path)
    if db.in_memory:
        raise InvalidInputError("Cannot archive an in-memory database")
    if target.resolve() == Path(db.path).resolve():
        raise InvalidInputError(f"The archive must be another file than {db.path}")
    if not target.parent.is_dir():
        raise InvalidInputError(f"Cannot create {target}: directory {target.parent} "
                                "does not exist")
    return await asyncio.to_thread(_run, db, str(target), before, size, progress)
