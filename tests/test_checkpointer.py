"""The writer's WAL checkpoints run on a checkpointer thread, off the writer's thread."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database
from abathur_memkit.engines.sqlite import engine as sqlite_engine

INSERT = ("INSERT INTO metrics (timestamp, metric_name, metric_value, labels) "
          "VALUES ('t', 'fill', 1, ?)")
# One row per page, about.
LABELS = '{"pad": "' + "x" * 3000 + '"}'


async def fill(db: Database, pages: int) -> None:
    """Commit about ``pages`` WAL pages, in writes of 100 rows."""
    for _ in range(pages // 100 + 1):
        await db.write(lambda conn: conn.executemany(INSERT, [(LABELS,)] * 100))


async def fill_until_requested(db: Database) -> None:
    """Write until the writer asks for a checkpoint, then stop: it will copy the whole WAL."""
    requests = checkpointer(db).requests
    while checkpointer(db).requests == requests:
        await db.write(lambda conn: conn.executemany(INSERT, [(LABELS,)] * 100))


def wal_pages(path: Path) -> int:
    try:
        return max(0, os.path.getsize(f"{path}-wal") - 32) // 4120
    except FileNotFoundError:
        return 0


def wal_frames(db: Database) -> int:
    """Frames in the WAL's current cycle (SQLite's count; the file may be larger)."""
    conn = db.driver.connect(db.path)
    try:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        conn.close()


def checkpointer(db: Database) -> Any:
    ckpt = db.engine._checkpointer  # type: ignore[union-attr]
    assert ckpt is not None
    return ckpt


def checkpointer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("memkit-checkpointer")]


@pytest.mark.parametrize("group_commit", [True, False])
async def test_checkpoints_run_off_the_writer_every_1000_pages(
    tmp_path: Path, group_commit: bool
) -> None:
    path = tmp_path / "c.db"
    async with Database(path, group_commit=group_commit) as db:
        writer_setting = await db.write(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        assert writer_setting == sqlite_engine._WRITER_CHECKPOINT_PAGES
        # What memkit reports (and validate checks) is the threshold: 1000 pages.
        assert (await db.pragmas())["wal_autocheckpoint"] == 1000
        await fill(db, 300)
        assert db.engine.checkpointer_stats()["running"] is False  # type: ignore[union-attr]
        size_before = path.stat().st_size

        await fill_until_requested(db)
        assert checkpointer(db).wait_for(1, 30)
        stats = db.engine.checkpointer_stats()  # type: ignore[union-attr]
        assert stats["runs"] >= 1 and stats["errors"] == 0 and stats["running"]
        # Only a checkpoint copies pages into the database file, and the
        # writer's own autocheckpoint is far above what was written.
        assert path.stat().st_size >= size_before + 1000 * 4096
        pages = wal_pages(path)
        assert 1000 <= pages < sqlite_engine._WRITER_CHECKPOINT_PAGES

        # The WAL was copied: the next write restarts it.
        await db.execute(INSERT, (LABELS,))
        assert checkpointer(db).restarts == 1
        assert wal_frames(db) < 10
        assert db.engine.checkpointer_stats()["restarts"] == 1  # type: ignore[union-attr]
    assert checkpointer_threads() == []
    assert not Path(f"{path}-wal").exists()  # the writer's close checkpointed it, as before


async def test_a_write_does_not_wait_for_a_running_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    opened: list[sqlite3.Connection] = []

    class Held:
        """The checkpointer's connection, held inside its checkpoint until released."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str) -> Any:
            entered.set()
            assert release.wait(30)
            return self.conn.execute(sql)

        def close(self) -> None:
            self.conn.close()

    async with Database(tmp_path / "held.db") as db:
        real = db.engine._open_checkpointer  # type: ignore[union-attr]

        def connect() -> Any:
            opened.append(real())
            return Held(opened[-1])

        checkpointer(db)._connect = connect
        await fill(db, 1000)
        assert await asyncio.to_thread(entered.wait, 30)
        # The checkpoint is under way on its thread; writes go on meanwhile.
        await asyncio.gather(*(db.memory.add_memory(f"app:w{n}", "k", n, "semantic", "agent:x")
                               for n in range(50)))
        await fill(db, 200)
        assert checkpointer(db).runs == 0
        release.set()
        assert checkpointer(db).wait_for(1, 30)
        assert (await db.memory.get_memory("app:w49", "k") or {})["value"] == 49


async def test_checkpoint_errors_never_fail_a_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Database(tmp_path / "err.db") as db:

        def broken() -> sqlite3.Connection:
            raise sqlite3.OperationalError("database is locked")

        checkpointer(db)._connect = broken
        with caplog.at_level(logging.WARNING, logger=sqlite_engine.__name__):
            await fill(db, 1000)
            assert checkpointer(db).wait_for(1, 30)
            await fill(db, 1000)  # another request: it tries again, writes go on
            assert checkpointer(db).wait_for(2, 30)
        stats = db.engine.checkpointer_stats()  # type: ignore[union-attr]
        assert stats["runs"] == 0 and stats["errors"] >= 2
        assert stats["last_error"] == "OperationalError: database is locked"
        assert "WAL checkpoint of" in caplog.text and "database is locked" in caplog.text
        row = await db.fetchone("SELECT count(*) AS n FROM metrics WHERE metric_name = 'fill'")
        assert row == {"n": 2200}


async def test_a_pinning_reader_grows_the_wal_until_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "pin.db"
    async with Database(path) as db:
        reader = db.driver.connect(str(path))  # the same SQLite library as memkit
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM metrics").fetchone()  # holds this snapshot
            await fill(db, 2500)
            assert checkpointer(db).wait_for(2, 30)
            # Nothing past the reader's snapshot could be copied: the WAL kept growing.
            assert wal_pages(path) >= 2500
            reader.execute("COMMIT")
        finally:
            reader.close()
        runs = checkpointer(db).runs
        await fill_until_requested(db)
        assert checkpointer(db).wait_for(runs + 1, 30)
        await db.execute(INSERT, (LABELS,))  # the WAL was copied whole: this write restarts it
        assert wal_frames(db) < 10
        assert db.engine.checkpointer_stats()["restarts"] >= 1  # type: ignore[union-attr]


async def test_close_stops_the_thread_and_a_reopen_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "reopen.db"
    db = Database(path)
    await db.initialize()
    await fill(db, 1000)
    assert checkpointer(db).wait_for(1, 30)
    assert len(checkpointer_threads()) == 1
    await db.close()
    assert checkpointer_threads() == []
    assert db.engine.checkpointer_stats() is None  # type: ignore[union-attr]
    await db.initialize()
    try:
        assert db.engine.checkpointer_stats()["runs"] == 0  # type: ignore[index,union-attr]
        assert checkpointer_threads() == []  # started by the first request only
    finally:
        await db.close()


def test_an_unclosed_database_stops_its_checkpointer_at_exit(tmp_path: Path) -> None:
    async def forget() -> Database:
        db = Database(tmp_path / "forgotten.db")
        await db.initialize()
        await fill(db, 1000)
        assert checkpointer(db).wait_for(1, 30)
        return db

    db = asyncio.run(forget())
    thread = checkpointer(db)._thread
    assert thread is not None and thread.is_alive()
    with pytest.warns(ResourceWarning, match="was never closed"):
        sqlite_engine._close_unclosed()
    assert not thread.is_alive()


async def test_no_checkpointer_where_nothing_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    async with Database(path) as db:
        await db.memory.add_memory("app:a", "k", 1, "semantic", "agent:x")
    before = path.read_bytes()
    async with Database(path, read_only=True) as ro:
        assert ro.engine.checkpointer_stats() is None  # type: ignore[union-attr]
        assert (await ro.memory.get_memory("app:a", "k") or {})["value"] == 1
        assert checkpointer_threads() == []
    assert path.read_bytes() == before
    assert wal_pages(path) == 0
    async with Database(":memory:") as mem:
        await mem.memory.add_memory("app:a", "k", 1, "semantic", "agent:x")
        assert mem.engine.checkpointer_stats() is None  # type: ignore[union-attr]
    assert checkpointer_threads() == []
