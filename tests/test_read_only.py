"""Commands that read never write: read-only opening, foreign files refused, explicit migrate."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from abathur_memkit import Database, DatabaseFileError, InvalidInputError, MemkitError
from abathur_memkit.cli import main
from abathur_memkit.engines.sqlite.driver import select_driver
from abathur_memkit.engines.sqlite.schema import migrations, schema_version, statements

DATA = Path(__file__).parent / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fingerprint(path: Path) -> tuple[str, list[str]]:
    """The file's bytes and every file beside it (a -wal, -shm or -journal is a write)."""
    return (hashlib.sha256(path.read_bytes()).hexdigest(),
            sorted(p.name for p in path.parent.iterdir()))


def sqlite_file(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()
    return path


FOREIGN = {
    "tables": "CREATE TABLE foo (a); CREATE TABLE bar (b); INSERT INTO foo VALUES (1);",
    # Another application's tasks table: stats used to fail half-way on it.
    "tasks": "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, done INTEGER);"
             "INSERT INTO tasks (title, done) VALUES ('write report', 0);",
    "wal": "PRAGMA journal_mode = WAL; CREATE TABLE notes (body TEXT);"
           "INSERT INTO notes VALUES ('hello');",
    "user_version": "CREATE TABLE memory (k, v); PRAGMA user_version = 4;",
}

READS = [
    ["validate", "{db}"], ["validate", "{db}", "--json"], ["stats", "{db}"],
    ["stats", "{db}", "--json"], ["memory", "get", "{db}", "user:a", "k"],
    ["memory", "list", "{db}"], ["memory", "list", "{db}", "user", "--namespaces"],
    ["memory", "history", "{db}", "user:a", "k"], ["session", "list", "{db}"],
    ["session", "show", "{db}", "s1"], ["search", "{db}", "hello", "--mode", "keyword"],
    ["backup", "{db}", "{dir}/copy.db"],
]
WRITES = [
    ["memory", "put", "{db}", "user:a", "k", "1"], ["memory", "delete", "{db}", "user:a", "k"],
    ["memory", "restore", "{db}", "user:a", "k"], ["init", "{db}"], ["migrate", "{db}"],
    ["index", "{db}", "{dir}/docs", "--no-embed"],
]


def _argv(template: list[str], db: Path) -> list[str]:
    return [a.format(db=db, dir=db.parent) for a in template]


def _assert_refused(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    code, out, err = run(capsys, *argv)
    if "--json" in argv:
        message = json.loads(out)["error"]
    else:
        assert out == "" and err.count("\n") == 1, (argv, out, err)
        message = err
    assert code == 2, (argv, code, out, err)
    assert says in message, (argv, message)


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_foreign_file_is_refused_and_unchanged_byte_for_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    db = sqlite_file(tmp_path / "other.db", FOREIGN[kind])
    (tmp_path / "docs").mkdir()
    before = fingerprint(db)
    for template in READS + WRITES:
        argv = _argv(template, db)
        _assert_refused(capsys, argv, "other.db is a SQLite database but not a memkit database")
        assert fingerprint(db) == before, argv


def test_the_refusal_names_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_file(tmp_path / "other.db", FOREIGN["tables"])
    _, _, err = run(capsys, "stats", str(db))
    assert err == (f"memkit: error: {db} is a SQLite database but not a memkit database "
                   "(tables: bar, foo); create one with: memkit init NEW_FILE\n")


@pytest.mark.parametrize("content", [b"", None])
def test_an_empty_or_never_initialised_file_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None) -> None:
    db = tmp_path / "empty.db"
    if content is None:  # a SQLite file with a header and no tables
        sqlite_file(db, "PRAGMA application_id = 7;")
    else:
        db.write_bytes(content)
    before = fingerprint(db)
    for template in READS:
        _assert_refused(capsys, _argv(template, db), "not a memkit database (never initialised)")
        assert fingerprint(db) == before, template
    # memkit init is what creates it.
    code, out, _ = run(capsys, "init", str(db))
    assert code == 0 and "applied migrations" in out
    assert run(capsys, "validate", str(db))[0] == 0


def _at_version(path: Path, version: int) -> None:
    conn = select_driver().connect(str(path))
    conn.execute("PRAGMA journal_mode = WAL")
    for migration in migrations():
        if migration.version <= version:
            for statement in statements(migration.sql):
                conn.execute(statement)
    conn.close()


def test_an_outdated_database_needs_memkit_migrate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "old.db"
    _at_version(db, schema_version() - 1)
    before = fingerprint(db)
    for template in READS + WRITES[:3]:
        _assert_refused(capsys, _argv(template, db), f"upgrade it with: memkit migrate {db}")
    assert fingerprint(db)[0] == before[0]
    code, out, _ = run(capsys, "migrate", str(db))
    assert code == 0 and f"applied migrations [{schema_version()}]" in out
    code, out, _ = run(capsys, "migrate", str(db))
    assert code == 0 and "already up to date" in out
    assert run(capsys, "stats", str(db))[0] == 0


def test_a_pre_memory_abathur_database_is_upgraded_only_by_migrate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_file(tmp_path / "abathur.db", (DATA / "pre_memory_schema.sql").read_text())
    before = fingerprint(db)
    _assert_refused(capsys, ["stats", str(db)], "is a pre-memory Abathur database")
    _assert_refused(capsys, ["init", str(db)], f"upgrade it with: memkit migrate {db}")
    assert fingerprint(db) == before
    code, out, _ = run(capsys, "migrate", str(db))
    assert code == 0 and "applied migrations" in out
    assert run(capsys, "validate", str(db))[0] == 0


def test_migrate_needs_an_existing_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _assert_refused(capsys, ["migrate", str(tmp_path / "nope.db")], "memkit init")
    assert not (tmp_path / "nope.db").exists()


async def test_read_only_database_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "agents.db"
    async with Database(path) as db:
        await db.memory.add_memory("user:a", "k", {"v": 1}, "semantic", "t")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    async with Database(path, read_only=True) as db:
        assert await db.initialize() == []
        assert (await db.memory.get_memory("user:a", "k") or {})["value"] == {"v": 1}
        assert (await db.validate())["ok"] is True
        with pytest.raises(MemkitError, match="open read-only: writes are not allowed"):
            await db.memory.add_memory("user:a", "k2", 1, "semantic", "t")
        for write in (db.checkpoint(), db.vacuum(), db.analyze()):
            with pytest.raises(MemkitError, match="read-only"):
                await write
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with pytest.raises(InvalidInputError, match="read-only"):
        Database(":memory:", read_only=True)


def test_reading_a_closed_database_leaves_no_file_beside_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "agents.db"

    async def build() -> None:  # closed cleanly: no -wal, no -shm beside it
        async with Database(db) as d:
            await d.memory.add_memory("user:a", "k", {"v": 1}, "semantic", "t")
            await d.sessions.create_session("s1", "app", "u")

    asyncio.run(build())
    (tmp_path / "docs").mkdir()
    before = fingerprint(db)
    assert before[1] == ["agents.db", "docs"]
    for template in READS:
        if template[0] == "backup":
            continue  # backup writes its copy beside the file
        code, _, err = run(capsys, *_argv(template, db))
        assert code == 0, (template, err)
        assert fingerprint(db) == before, template


async def test_a_read_only_close_keeps_the_log_another_connection_uses(tmp_path: Path) -> None:
    path = tmp_path / "agents.db"
    async with Database(path) as writer:
        await writer.memory.add_memory("user:a", "k", 1, "semantic", "t")
        async with Database(path, read_only=True) as reader:
            assert await reader.memory.get_memory("user:a", "k") is not None
        assert (tmp_path / "agents.db-wal").exists()
        await writer.memory.update_memory("user:a", "k", 2, "t")
        # Closing readers and writers removes nothing while the first writer has the file.
        async with Database(path, read_only=True), Database(path) as second_writer:
            await second_writer.memory.update_memory("user:a", "k", 3, "t")
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "agents.db", "agents.db-shm", "agents.db-wal"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agents.db"]
    async with Database(path, read_only=True) as reader:
        assert (await reader.memory.get_memory("user:a", "k") or {})["version"] == 3


async def test_read_only_and_no_migrate_never_create_or_convert(tmp_path: Path) -> None:
    with pytest.raises(DatabaseFileError, match="no database at"):
        await Database(tmp_path / "new.db", read_only=True).initialize()
    with pytest.raises(DatabaseFileError, match="no database at"):
        await Database(tmp_path / "new.db", migrate=False).initialize()
    assert list(tmp_path.iterdir()) == []
    other = sqlite_file(tmp_path / "other.db", FOREIGN["tables"])
    before = fingerprint(other)
    for options in ({"read_only": True}, {"migrate": False}):
        db = Database(other, **options)  # type: ignore[arg-type]
        with pytest.raises(DatabaseFileError, match="not a memkit database"):
            await db.initialize()
        await db.close()
    assert fingerprint(other) == before


async def test_validate_reports_a_damaged_schema_without_crashing(tmp_path: Path) -> None:
    path = tmp_path / "agents.db"
    async with Database(path) as db:
        await db.execute("DROP TABLE sessions")
        report = await db.validate()
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert report["ok"] is False
    assert {"table:sessions", "json_rejects_invalid:sessions.state",
            "lookup:session_by_id"} <= failed


# -- a read-only location ------------------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(writable source dir, the same dir bind-mounted read-only); needs mount rights."""
    source, mount = tmp_path / "src", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    try:
        subprocess.run(["mount", "--bind", str(source), str(mount)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot bind-mount here: {exc}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], check=True,
                       capture_output=True)
        yield source, mount
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot remount read-only here: {exc}")
    finally:
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)


def test_reads_work_on_a_read_only_location(
        read_only_dir: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    source, mount = read_only_dir

    async def build() -> None:  # closed cleanly: no -wal, no -shm beside it
        async with Database(source / "agents.db") as db:
            await db.memory.add_memory("user:a", "k", {"v": 1}, "semantic", "t")

    asyncio.run(build())
    assert not os.access(mount, os.W_OK)
    path = str(mount / "agents.db")
    for argv in (["validate", path], ["stats", path], ["memory", "get", path, "user:a", "k"],
                 ["session", "list", path], ["backup", path, str(source / "copy.db")]):
        code, _, err = run(capsys, *argv)
        assert code == 0 and err == "", (argv, err)
    code, _, err = run(capsys, "memory", "put", path, "user:a", "k", "2")
    assert code == 2 and "is on a read-only location: memkit cannot write there" in err

    async def library() -> None:
        with pytest.raises(DatabaseFileError, match="read-only location"):
            await Database(path).initialize()
        async with Database(path, read_only=True) as db:
            assert (await db.memory.get_memory("user:a", "k") or {})["value"] == {"v": 1}
            with pytest.raises(MemkitError, match="read-only on a read-only location"):
                await db.memory.add_memory("user:a", "k2", 1, "semantic", "t")

    asyncio.run(library())


_KILLED_WRITE = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA cache_size = 10")  # spill to the file mid-transaction
conn.execute("CREATE TABLE t (x)")
conn.execute("BEGIN")
for _ in range(5000):
    conn.execute("INSERT INTO t VALUES (?)", ("x" * 200,))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_file_with_a_hot_journal_is_refused_not_rolled_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # What a copy killed half-way used to leave: it opened as an empty database,
    # and validate migrated it and reported every check passed.
    db = tmp_path / "copy.db"
    subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(db)], timeout=120)
    assert Path(f"{db}-journal").stat().st_size > 0
    before = fingerprint(db)
    for template in READS:
        _assert_refused(capsys, _argv(template, db), "has a hot journal (copy.db-journal)")
        assert fingerprint(db) == before, template


# -- search reads the index as it stands -------------------------------------------------


def _indexed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """agents.db with a one-page document index made by the hashing embedder."""
    db, docs = tmp_path / "agents.db", tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Busy\n\nSQLITE_BUSY means the database is locked.\n")
    code, _, err = run(capsys, "index", str(db), str(docs), "--embedder", "hashing",
                       "--no-progress")
    assert code == 0, err
    return db


def _index_then_change_memories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A closed file whose memory search index is behind by three keys (queued by the
    triggers): alpha updated, bravo deleted, delta added; charlie unchanged."""
    db = _indexed(tmp_path, capsys)

    async def change() -> None:
        async with Database(db, embedder="hashing") as d:
            for key, text in (("alpha", "a locked door"), ("bravo", "locked out"),
                              ("charlie", "locked in")):
                await d.memory.add_memory("user:a", key, text, "semantic", "t")
            await d.search.sync_memories()  # indexed and embedded
            await d.memory.update_memory("user:a", "alpha", "an open door", "t")
            await d.memory.delete_memory("user:a", "bravo")
            await d.memory.add_memory("user:a", "delta", "locked again", "semantic", "t")

    asyncio.run(change())
    return db


def test_search_says_which_memories_have_no_vector_yet(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _indexed(tmp_path, capsys)

    async def keyword_only() -> None:
        # A writable keyword search indexes the new memory's text, not its vector.
        async with Database(db, embedder="hashing") as d:
            await d.memory.add_memory("user:a", "echo", "locked forever", "semantic", "t")
            await d.search.search("locked", 5, mode="keyword", source="memories")
            assert await d.search.unembedded_memories() == 1

    asyncio.run(keyword_only())
    before = fingerprint(db)
    argv = ("search", str(db), "locked", "--source", "memories", "--chunks", "--json")
    code, out, err = run(capsys, *argv, "--mode", "semantic")
    data = json.loads(out)
    assert code == 0 and data["hits"] == [] and data["unembedded_memories"] == 1
    assert data["pending_memory_keys"] == 0
    assert err == (f"memkit: 1 memory is indexed for keyword search only (semantic matching "
                   f"cannot find them): run `memkit index {db}` to embed them\n")
    code, out, err = run(capsys, *argv, "--mode", "keyword")
    assert code == 0 and err == "" and [h["key"] for h in json.loads(out)["hits"]] == ["echo"]
    assert json.loads(out)["unembedded_memories"] == 0  # keyword search needs no vector
    assert fingerprint(db) == before
    code, out, err = run(capsys, "index", str(db), "--no-progress")
    assert code == 0 and "1 memory embedded" in out, (out, err)
    code, out, err = run(capsys, *argv, "--mode", "semantic")
    data = json.loads(out)
    assert code == 0 and err == "" and data["unembedded_memories"] == 0
    assert [h["key"] for h in data["hits"]] == ["echo"]


def test_search_says_which_documents_have_chunks_with_no_vector(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _indexed(tmp_path, capsys)
    (tmp_path / "docs" / "b.md").write_text("# Retry\n\nRetry a busy write with backoff.\n")
    code, _, err = run(capsys, "index", str(db), str(tmp_path / "docs"), "--no-embed",
                       "--no-progress")
    assert code == 0, err
    before = fingerprint(db)
    argv = ("search", str(db), "retry with backoff", "--chunks", "--json")
    code, out, err = run(capsys, *argv, "--mode", "semantic", "--source", "documents")
    data = json.loads(out)
    assert code == 0 and data["unembedded_documents"] == 1
    assert "Retry" not in {h["heading"] for h in data["hits"]}
    assert err == (f"memkit: 1 document has chunks with no vector yet (semantic matching "
                   f"cannot find them): run `memkit index {db}` to embed them\n")
    for extra in (("--mode", "keyword"), ("--mode", "semantic", "--source", "memories")):
        code, out, err = run(capsys, *argv, *extra)
        assert code == 0 and err == "", extra
    assert fingerprint(db) == before
    code, out, err = run(capsys, "index", str(db), "--no-progress", "--json")
    assert code == 0, err
    assert json.loads(out)["documents"] == {"embedded_chunks": 1,
                                            "synced": [str(tmp_path.resolve() / "docs" /
                                                           "b.md")],
                                            "failed": []}
    code, out, err = run(capsys, *argv, "--mode", "semantic", "--source", "documents")
    data = json.loads(out)
    assert code == 0 and err == "" and data["unembedded_documents"] == 0
    assert data["hits"][0]["heading"] == "Retry"
    code, out, _ = run(capsys, "index", str(db))
    assert code == 0 and out.strip() == "search is up to date: nothing to index"


def test_search_with_memory_changes_pending_leaves_the_file_as_it_was(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _index_then_change_memories(tmp_path, capsys)
    before = fingerprint(db)
    assert before[1] == ["agents.db", "docs"]
    for mode in ("keyword", "semantic", "hybrid"):
        code, out, err = run(capsys, "search", str(db), "locked", "--mode", mode, "-k", "10",
                             "--source", "memories", "--chunks", "--json")
        assert code == 0, err
        assert fingerprint(db) == before, mode
        data = json.loads(out)
        # alpha's and bravo's indexed versions are gone; delta is not indexed yet
        assert [(h["key"], h["version"]) for h in data["hits"]] == [("charlie", 1)], mode
        assert data["pending_memory_keys"] == 3
        assert err.count("3 memory keys changed since the last index") == 1, err
    code, out, err = run(capsys, "search", str(db), "locked")
    assert code == 0 and "memory user:a/charlie (v1)" in out and "Busy" in out
    assert "alpha" not in out and "bravo" not in out
    assert err.count("\n") == 1 and f"memkit index {db}" in err
    assert fingerprint(db) == before
    # indexing catches up; then nothing is pending and no note is printed
    code, out, err = run(capsys, "index", str(db), "--no-progress")
    assert code == 0 and "3 memory keys" in out, (out, err)
    code, out, err = run(capsys, "search", str(db), "locked door", "--source", "memories",
                         "--chunks", "--json")
    data = json.loads(out)
    assert code == 0 and err == "" and data["pending_memory_keys"] == 0
    assert {(h["key"], h["version"]) for h in data["hits"]} == {
        ("alpha", 2), ("charlie", 1), ("delta", 1)}
    assert fingerprint(db)[1] == before[1]
    code, out, _ = run(capsys, "index", str(db), "--json")
    assert code == 0 and json.loads(out) == {"memories": {"changed": 0, "embedded": 0}}
    # without FOLDER nothing is created
    code, _, err = run(capsys, "index", str(tmp_path / "none.db"))
    assert code == 2 and "no database at" in err and not (tmp_path / "none.db").exists()
