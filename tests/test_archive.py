"""``memkit archive``: old rows move to an archive file, in verified batches, nothing lost."""

from __future__ import annotations

import asyncio
import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database, InvalidInputError
from abathur_memkit import archive as archive_module
from abathur_memkit.analysis.loaders import (
    load_events_sync,
    load_memories_sync,
    load_sessions,
    load_sessions_sync,
)
from abathur_memkit.archive import ArchiveError, archive
from abathur_memkit.cli import main
from abathur_memkit.engines.sqlite.driver import select_driver

_BACKDATE = (
    "UPDATE audit SET timestamp = '2001' || substr(timestamp, 5)",
    "UPDATE memory_entries SET created_at = '2001' || substr(created_at, 5), "
    "updated_at = '2001' || substr(updated_at, 5)",
    "UPDATE sessions SET created_at = '2001' || substr(created_at, 5), "
    "last_update_time = '2001' || substr(last_update_time, 5), "
    "terminated_at = '2001' || substr(terminated_at, 5)",
    "UPDATE session_events SET created_at = '2001' || substr(created_at, 5)",
)


async def _history(db: Database, *, old: bool = True) -> None:
    """Key k in 3 versions, key j in 1; s1 terminated with 3 events, s2 active with 2.

    ``old``: every timestamp moved to 2001 (order kept), so a cutoff of a day
    does not depend on the clock between the writes and the archive run.
    """
    await db.memory.add_memory("user:a", "k", 1, "semantic", "user:a")
    await db.memory.update_memory("user:a", "k", 2, "user:a")
    await db.memory.update_memory("user:a", "k", 3, "user:a")
    await db.memory.add_memory("user:a", "j", 1, "semantic", "user:a")
    for sid in ("s1", "s2"):
        await db.sessions.create_session(sid, "app", "u")
        await db.sessions.update_status(sid, "active")
    for n in range(3):
        await db.sessions.append_event("s1", {"n": n})
    for n in range(2):
        await db.sessions.append_event("s2", {"n": n})
    await db.sessions.terminate_session("s1")
    if old:
        for statement in _BACKDATE:
            await db.execute(statement)


def _keys(path: Path | str, sql: str) -> set[tuple[Any, ...]]:
    # The Database's own SQLite library, closed after: two SQLite libraries in one
    # process clear each other's file locks and can read a stale WAL index.
    with closing(select_driver().connect(str(path))) as conn:
        return {tuple(r) for r in conn.execute(sql)}


_MEMORY = "SELECT id, namespace, key, version FROM memory_entries"
_EVENTS = "SELECT session_id, seq, event FROM session_events"
_AUDIT = "SELECT id, action_type, memory_entry_id FROM audit"


async def test_archive_moves_old_rows_and_keeps_the_latest(db: Database, tmp_path: Path) -> None:
    await _history(db)
    before = {q: _keys(db.path, q) for q in (_MEMORY, _EVENTS)}
    target = tmp_path / "old.db"
    result = await archive(db, target, 1, batch_size=2)
    assert result.moved["memory_entries"] == 2 and result.moved["session_events"] == 3
    assert result.sessions_archived == 1
    # Main keeps the latest version of each key, and the events of the live session.
    assert {r[2:] for r in _keys(db.path, _MEMORY)} == {("k", 3), ("j", 1)}
    latest = await db.memory.get_memory("user:a", "k")
    assert latest is not None and latest["value"] == 3
    assert {r[:2] for r in _keys(db.path, _EVENTS)} == {("s2", 1), ("s2", 2)}
    s1 = await db.sessions.get_session("s1")
    assert s1 is not None and s1["status"] == "archived" and s1["events"] == []
    # Moved, not copied: each row in exactly one file, none lost.
    for query in (_MEMORY, _EVENTS):
        main, archived = _keys(db.path, query), _keys(target, query)
        assert not main & archived and main | archived == before[query]
    # The archived audit rows still name their memory versions.
    archived_audit = _keys(target, _AUDIT)
    assert {m for _, _, m in archived_audit if m is not None} >= {
        r[0] for r in _keys(target, _MEMORY)}


async def test_nothing_younger_than_the_cutoff_moves(db: Database, tmp_path: Path) -> None:
    await _history(db, old=False)
    before = _keys(db.path, _MEMORY), _keys(db.path, _EVENTS), _keys(db.path, _AUDIT)
    result = await archive(db, tmp_path / "old.db", 90)
    assert sum(result.moved.values()) == 0 and result.sessions_archived == 0
    assert (_keys(db.path, _MEMORY), _keys(db.path, _EVENTS), _keys(db.path, _AUDIT)) == before


async def test_a_version_a_young_audit_row_names_stays(db: Database, tmp_path: Path) -> None:
    await _history(db)
    first = await db.memory.get_memory("user:a", "k", version=1)
    assert first is not None
    await db.execute("UPDATE audit SET timestamp = '2999-01-01' WHERE memory_entry_id = ?",
                     (first["id"],))
    await archive(db, tmp_path / "old.db", 1)
    assert {r[3] for r in _keys(db.path, _MEMORY) if r[2] == "k"} == {1, 3}
    linked = await db.fetchone("SELECT memory_entry_id FROM audit WHERE timestamp = '2999-01-01'")
    assert linked == {"memory_entry_id": first["id"]}  # never nulled


async def test_a_failure_between_batches_loses_and_duplicates_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _history(db)
    target = tmp_path / "old.db"
    before = _keys(db.path, _AUDIT)
    real = archive_module.delete_batch
    calls = 0

    def fail_on_third(*args: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("killed between the copy and the delete")
        return real(*args)

    monkeypatch.setattr(archive_module, "delete_batch", fail_on_third)
    with pytest.raises(OSError, match="killed"):
        await archive(db, target, 1, batch_size=2)
    main, archived = _keys(db.path, _AUDIT), _keys(target, _AUDIT)
    assert main | archived == before  # nothing lost
    both = main & archived
    assert len(both) == 2  # the interrupted batch: copied, not yet deleted
    monkeypatch.setattr(archive_module, "delete_batch", real)
    await archive(db, target, 1, batch_size=2)  # the next run finishes the job
    main, archived = _keys(db.path, _AUDIT), _keys(target, _AUDIT)
    assert not main & archived and before <= main | archived


async def test_a_short_copy_deletes_nothing(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _history(db)
    before = _keys(db.path, _AUDIT)
    target = tmp_path / "old.db"
    # A copy that drops rows (here: all but one of each batch) is caught by the count.
    monkeypatch.setattr(archive_module, "_IDS", "SELECT value FROM json_each(?) LIMIT 1")
    with pytest.raises(ArchiveError, match="nothing of this batch was deleted"):
        await archive(db, target, 1, batch_size=5)
    assert _keys(db.path, _AUDIT) == before


async def test_loaders_read_main_and_archive_together(db: Database, tmp_path: Path) -> None:
    await _history(db)
    memories_before = load_memories_sync(db.path)
    events_before = load_events_sync(db.path)
    target = tmp_path / "old.db"
    await archive(db, target, 1)
    assert len(load_memories_sync(db.path)) == 2
    merged = load_memories_sync(db.path, archive=target)
    assert merged["id"].tolist() == memories_before["id"].tolist()
    assert merged["value"].tolist() == memories_before["value"].tolist()
    events = load_events_sync(db.path, archive=target)
    assert events[["session_id", "seq"]].values.tolist() == \
        events_before[["session_id", "seq"]].values.tolist()
    sessions = load_sessions_sync(db.path, archive=target)
    assert dict(zip(sessions["id"], sessions["event_count"], strict=True)) == {"s1": 3, "s2": 2}
    async_sessions = await load_sessions(db, archive=target)
    assert async_sessions["event_count"].tolist() == sessions["event_count"].tolist()
    with pytest.raises(InvalidInputError, match="archive"):
        from abathur_memkit.analysis.loaders import load_table_sync

        load_table_sync(db.path, "tasks", archive=target)


async def test_bad_arguments(db: Database, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="Invalid age"):
        await archive(db, tmp_path / "a.db", -1)
    with pytest.raises(InvalidInputError, match="another file"):
        await archive(db, db.path, 1)
    with pytest.raises(InvalidInputError, match="does not exist"):
        await archive(db, tmp_path / "no" / "a.db", 1)


async def test_cli_archive(db: Database, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    await _history(db)
    code = await asyncio.to_thread(main, ["archive", db.path, "--older-than", "1d", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["moved"]["session_events"] == 3
    assert report["archive_path"] == str(Path(db.path).with_suffix(".archive.db"))
    assert Path(report["archive_path"]).exists()
    with pytest.raises(SystemExit) as exited:
        main(["archive", db.path, "--older-than", "soon"])
    assert exited.value.code == 2
