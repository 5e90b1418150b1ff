"""The Database of SPEC §2/§4: PRAGMAs, :memory:, transactions, maintenance, backup."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import (
    Database,
    DatabaseFileError,
    InvalidInputError,
    MemkitError,
)
from abathur_memkit.engines.sqlite import engine as sqlite_engine
from abathur_memkit.engines.sqlite.driver import select_driver
from abathur_memkit.engines.sqlite.schema import migrations, schema_version


async def test_pragmas_on_writer_and_readers(db: Database) -> None:
    expected = {"busy_timeout": 5000, "journal_mode": "wal", "synchronous": 1,
                "foreign_keys": 1, "wal_autocheckpoint": 1000}

    def read(conn: Any) -> dict[str, Any]:
        return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in expected}

    # The writer's checkpoints every 1000 pages run on a thread of their own;
    # its own autocheckpoint is only the bound past which it does them itself.
    assert await db.write(read) == {**expected,
                                    "wal_autocheckpoint": sqlite_engine._WRITER_CHECKPOINT_PAGES}
    # Every reader connection (a second, third... connection) has them.
    for _ in range(4):
        assert await db.read(read) == expected


async def test_wal_is_persistent_for_other_clients(db: Database) -> None:
    other = db.driver.connect(db.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


async def test_memory_database_keeps_data() -> None:
    async with Database(":memory:") as db:
        assert (await db.pragmas())["journal_mode"] == "memory"
        await db.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) "
                         "VALUES ('t', 'm', 1)")
        await db.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) "
                         "VALUES ('t', 'm', 2)")
        rows = await db.fetchall("SELECT metric_value FROM metrics ORDER BY id")
        assert [r["metric_value"] for r in rows] == [1.0, 2.0]


async def test_initialize_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with Database(path) as db:
        assert await db.schema_version() == schema_version()
        before = await db.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        assert await db.initialize() == []
    async with Database(str(path)) as db:
        assert await db.initialize() == []
        after = await db.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")
    assert before == after


async def test_two_databases_initialize_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    dbs = [Database(path) for _ in range(4)]
    results = await asyncio.gather(*(d.initialize() for d in dbs))
    try:
        # Each migration was applied exactly once across all of them.
        assert sorted(v for r in results for v in r) == [m.version for m in migrations()]
        # The seeds' 32 and memkit's idx_memory_heads_recent.
        assert (await dbs[0].get_index_usage())["index_count"] == 33
    finally:
        for d in dbs:
            await d.close()


async def test_write_rolls_back_on_any_exception(db: Database) -> None:
    def insert_then_fail(conn: Any) -> None:
        conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'a', 'u')")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.write(insert_then_fail)
    assert await db.fetchone("SELECT * FROM sessions") is None
    # And the writer is usable afterwards (no transaction left open).
    await db.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'a', 'u')")
    assert (await db.fetchone("SELECT id FROM sessions"))  == {"id": "s1"}


async def test_constraint_failure_is_a_memkit_value_error(db: Database) -> None:
    with pytest.raises(InvalidInputError) as info:
        await db.execute("INSERT INTO sessions (id, app_name, user_id, status) "
                         "VALUES ('s', 'a', 'u', 'nope')")
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemkitError)
    assert "CHECK constraint failed" in str(info.value)


async def test_reads_see_committed_writes_only(db: Database) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_write(conn: Any) -> None:
        conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'a', 'u')")
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)

    task = asyncio.create_task(db.write(slow_write))
    await started.wait()
    # The write transaction is open on the writer; a reader does not see it.
    assert await db.fetchone("SELECT id FROM sessions") is None
    release.set()
    await task
    assert await db.fetchone("SELECT id FROM sessions") == {"id": "s1"}


async def test_validate_report(db: Database) -> None:
    report = await db.validate()
    json.dumps(report)  # JSON-serializable as is
    assert report["ok"] is True
    names = {c["name"] for c in report["checks"]}
    for name in ("pragma:journal_mode", "pragma:foreign_keys", "pragma:synchronous",
                 "pragma:busy_timeout", "pragma:wal_autocheckpoint", "integrity_check",
                 "foreign_key_check", "index_count", "table:memory_entries",
                 "json_rejects_invalid:session_events.event",
                 "json_rejects_invalid:memory_entries.value",
                 "lookup:session_by_id", "lookup:memory_by_namespace_key"):
        assert name in names
    for check in report["checks"]:
        assert {"name", "passed", "detail"} <= set(check) <= {
            "name", "passed", "detail", "sql", "warning"}
        assert check["passed"] is True, check
    # validate() changes nothing: its probe rows were rolled back.
    assert await db.fetchone("SELECT id FROM sessions") is None
    assert await db.fetchone("SELECT id FROM memory_entries") is None


async def test_validate_reports_a_missing_index(db: Database) -> None:
    await db.execute("DROP INDEX idx_memory_created_by")
    report = await db.validate()
    assert report["ok"] is False
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["index_count", "explain:idx_memory_created_by"]
    assert "idx_memory_created_by" in failed[0]["detail"]


async def test_utilities(db: Database) -> None:
    assert await db.integrity_check() == ["ok"]
    assert await db.validate_foreign_keys() == []
    usage = await db.get_index_usage()
    assert usage["index_count"] == 33  # the seeds' 32 and idx_memory_heads_recent
    assert "idx_memory_namespace_key_version" in usage["by_table"]["memory_entries"]
    assert usage["by_table"]["memory_heads"] == ["idx_memory_heads_recent"]
    assert "idx_memory_episodic_ttl" in usage["partial"]
    await db.analyze()
    assert await db.fetchone("SELECT count(*) AS n FROM sqlite_stat1") is not None
    await db.vacuum()
    result = await db.checkpoint()
    assert result["busy"] == 0
    with pytest.raises(InvalidInputError):
        await db.checkpoint("SOMETIMES")


async def test_foreign_key_violations_are_listed(db: Database) -> None:
    # A client without foreign_keys=ON (SQLite's default) can still write orphans.
    raw = db.driver.connect(db.path)
    try:
        raw.execute("INSERT INTO session_events (session_id, seq, event) VALUES ('ghost', 1, '{}')")
    finally:
        raw.close()
    violations = await db.validate_foreign_keys()
    assert [(v["table"], v["parent"]) for v in violations] == [("session_events", "sessions")]


async def test_explain_query_plan(db: Database) -> None:
    plan = await db.explain_query_plan(
        "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
        "ORDER BY version DESC LIMIT 1", ("user:a", "k"))
    assert plan == ["SEARCH memory_entries USING INDEX idx_memory_namespace_key_version "
                    "(namespace=? AND key=? AND is_deleted=?)"]


async def test_backup_is_consistent_under_concurrent_writes(db: Database, tmp_path: Path) -> None:
    stop = asyncio.Event()

    async def writer() -> int:
        n = 0
        while not stop.is_set():
            # Two rows per transaction: a torn copy would hold an odd count.
            def pair(conn: Any, n: int = n) -> None:
                for i in (0, 1):
                    conn.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) "
                                 "VALUES ('t', ?, ?)", (f"m{n}", i))
            await db.write(pair)
            n += 1
        return n

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    copies = [await db.backup(tmp_path / f"copy{i}.db") for i in range(3)]
    stop.set()
    written = await task
    assert written > 0
    for copy in copies:
        async with Database(copy) as restored:
            count = (await restored.fetchone("SELECT count(*) AS n FROM metrics"))
            assert count is not None and count["n"] % 2 == 0
            assert (await restored.validate())["ok"] is True


async def test_backup_refuses_to_overwrite(db: Database, tmp_path: Path) -> None:
    target = tmp_path / "b.db"
    await db.backup(target)
    with pytest.raises(InvalidInputError, match="exists"):
        await db.backup(target)
    await db.backup(target, overwrite=True)
    with pytest.raises(InvalidInputError, match="itself"):
        await db.backup(db.path, overwrite=True)


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"this is not sqlite, just some text " * 100)
    with pytest.raises(DatabaseFileError, match="not a usable SQLite database"):
        await Database(bad).initialize()
    assert bad.read_bytes() == b"this is not sqlite, just some text " * 100


async def test_a_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DatabaseFileError, match="cannot create directory"):
        await Database(tmp_path / "file" / "sub" / "a.db").initialize()
    assert (tmp_path / "file").read_text() == "not a folder"


def test_bad_path_types() -> None:
    with pytest.raises(InvalidInputError):
        Database(b"a.db")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Database("")


async def test_uninitialized_use_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MemkitError, match="not initialized"):
        await Database(tmp_path / "a.db").fetchall("SELECT 1")


def test_driver_selection() -> None:
    assert select_driver("sqlite3").name == "sqlite3"
    assert select_driver("sqlean").name == "sqlean"
    with pytest.raises(InvalidInputError, match="Invalid SQLite driver"):
        select_driver("postgres")
    stdlib_loads = hasattr(sqlite3.connect(":memory:"), "enable_load_extension")
    auto = select_driver("auto")
    # Falls back to the wheel-shipped driver exactly when stdlib cannot load extensions.
    assert auto.name == ("sqlite3" if stdlib_loads else "sqlean")
    assert auto.can_load_extensions


def test_sqlean_binds_none_as_null_through_its_adapter() -> None:
    # Registered so a None parameter skips sqlean's costly hasattr probing.
    driver = select_driver("sqlean")
    module = driver.module
    assert (type(None), module.PrepareProtocol) in module.adapters
    select_driver("sqlean")  # selecting it again keeps the one adapter
    conn = driver.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (a, b NOT NULL DEFAULT 1)")
        conn.execute("INSERT INTO t (a) VALUES (?)", (None,))
        assert conn.execute("SELECT typeof(a), a IS NULL FROM t").fetchone() == ("null", 1)
        with pytest.raises(module.IntegrityError, match="NOT NULL"):
            conn.execute("INSERT INTO t (a, b) VALUES (?, ?)", (1, None))
    finally:
        conn.close()


async def test_vec_extension_loads_through_the_fallback_driver(tmp_path: Path) -> None:
    async with Database(tmp_path / "v.db", extensions=("vec",)) as db:
        row = await db.fetchone("SELECT vec_version() AS v")
        assert row is not None and row["v"].startswith("v")


async def test_stdlib_driver_works_without_extensions(tmp_path: Path) -> None:
    async with Database(tmp_path / "s.db", driver="sqlite3") as db:
        assert db.driver.name == "sqlite3"
        assert (await db.validate())["ok"] is True


UNCLOSED_CHILD = """
import asyncio, sys
from abathur_memkit import Database

async def main() -> None:
    db = Database(sys.argv[1])
    await db.initialize()
    await db.memory.add_memory("user:a:prefs", "theme", "dark", "semantic", "child")
    await db.fetchall("SELECT 1")  # opens the readers too
    # no close()

asyncio.run(main())
"""


def test_a_database_never_closed_does_not_keep_python_alive(tmp_path: Path) -> None:
    path = tmp_path / "unclosed.db"
    # The timeout only detects a hang: the child used to wait forever at exit.
    child = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", UNCLOSED_CHILD, str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert f"ResourceWarning: Database {str(path)!r} was never closed" in child.stderr
    # Closed on the way out: the write is in the file and the WAL was checkpointed away.
    assert not Path(f"{path}-wal").exists()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT value FROM memory_entries").fetchall() == [('"dark"',)]
    finally:
        conn.close()


# -- every failure is a MemkitError ------------------------------------------------------------


async def _counts(db: Database) -> tuple[int, int]:
    row = await db.fetchone(
        "SELECT (SELECT count(*) FROM memory_entries) AS m, (SELECT count(*) FROM audit) AS a"
    )
    assert row is not None
    return row["m"], row["a"]


async def test_a_full_disk_is_a_database_file_error_and_writes_nothing(db: Database) -> None:
    # max_page_count fails the write exactly as a full disk does (SQLITE_FULL).
    await db.write(lambda conn: conn.execute(
        f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}"))
    before = await _counts(db)
    with pytest.raises(DatabaseFileError, match="the disk is full") as info:
        await db.memory.add_memory("user:a:prefs", "big", "x" * 200_000, "semantic", "me")
    assert str(db.path) in str(info.value)
    assert await _counts(db) == before


@pytest.mark.parametrize("readers_open", [True, False])
async def test_a_database_file_deleted_while_open_fails_every_call(
    tmp_path: Path, readers_open: bool
) -> None:
    path = tmp_path / "gone.db"
    async with Database(path) as db:
        await db.memory.add_memory("user:a:prefs", "theme", "dark", "semantic", "me")
        if readers_open:
            await db.memory.get_memory("user:a:prefs", "theme")
        path.unlink()
        with pytest.raises(DatabaseFileError, match="was deleted or replaced while open"):
            await db.memory.add_memory("user:a:prefs", "font", "mono", "semantic", "me")
        with pytest.raises(DatabaseFileError, match="was deleted or replaced while open"):
            await db.memory.get_memory("user:a:prefs", "theme")
        # No reader ever created a new, empty database at the path.
        assert not path.exists()


async def test_a_database_file_replaced_while_open_fails(tmp_path: Path) -> None:
    path, other = tmp_path / "a.db", tmp_path / "b.db"
    async with Database(other):
        pass
    async with Database(path) as db:
        await db.memory.add_memory("user:a:prefs", "theme", "dark", "semantic", "me")
        other.replace(path)
        with pytest.raises(DatabaseFileError, match="was deleted or replaced while open"):
            await db.memory.get_memory("user:a:prefs", "theme")


async def test_wrong_types_and_bad_sql_are_memkit_errors(db: Database) -> None:
    with pytest.raises(InvalidInputError, match="Invalid checkpoint mode: 3"):
        await db.checkpoint(mode=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="Invalid sql"):
        await db.fetchall(b"SELECT 1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="Expected a function"):
        await db.read("SELECT 1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="syntax error"):
        await db.fetchall("SELEC 1")
    with pytest.raises(InvalidInputError, match="no such table"):
        await db.execute("DELETE FROM nowhere")
    with pytest.raises(InvalidInputError):
        await db.fetchall("SELECT ?", 5)  # type: ignore[arg-type]
