"""``memkit copy`` / ``copy_database``: a whole database between SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbdump import dump

from abathur_memkit import Database
from abathur_memkit.cli import main
from abathur_memkit.errors import InvalidInputError, MemkitError
from abathur_memkit.transfer import copy_database

# The tables every memkit database has, compared row by row after a round trip.
TABLES = (
    ("sessions", "id"), ("app_states", "app_name"), ("user_states", "app_name, user_id"),
    ("session_events", "session_id, seq"), ("memory_entries", "id"), ("document_index", "id"),
    ("tasks", "id"), ("agents", "id"), ("audit", "id"), ("checkpoints", "task_id, iteration"),
    ("state", "id"), ("metrics", "id"), ("document_chunks", "id"),
    ("memory_search_items", "entry_id"), ("memory_heads", "namespace, key"),
    ("memory_namespaces", "namespace"), ("memory_search_queue", "namespace, key"),
)
# PostgreSQL's chunks also hold their tsvector, computed from the text.
_CHUNK_COLUMNS = ("id, document_id, chunk_index, heading_path, start_offset, end_offset, "
                  "token_count, text, embedding_model, embedding_dimensions")
_FRACTION = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?$")


async def populate(path: Path) -> None:
    """A database with a row in every kind of table, vectors included."""
    async with Database(path, embedder="hashing") as db:
        await db.sessions.create_session("s1", "app", "alice", initial_state={"b": 2, "a": "é"})
        await db.sessions.append_event("s1", {"type": "msg", "text": "hi"},
                                       {"user:x": 1, "app:y": [1, 2]})
        for i in range(30):
            await db.memory.add_memory("user:alice", f"k{i}", {"n": i, "z": "ü"}, "semantic",
                                       "agent")
        await db.memory.update_memory("user:alice", "k1", {"n": 100}, "agent")
        await db.memory.delete_memory("user:alice", "k2", "agent")
        parent = await db.tasks.submit("do it", input_data={"q": 1}, session_id="s1")
        await db.tasks.submit("child", parent_task_id=parent)
        await db.agents.spawn("a", "spec", parent, "model", session_id="s1")
        await db.checkpoints.save(parent, 0, {"s": 1})
        await db.metrics.record("latency", 1.5, {"op": "x"})
        await db.execute("INSERT INTO state (task_id, key, value) VALUES (?, 'k', 'v')",
                         (parent,))
        await db.documents.index_document("doc.md", "Doc",
                                          "# Title\n\nSome text about cats.\n\n## More\n\nDogs.")
        await db.documents.embed_pending()
        await db.search.sync_memories()
        await db.memory.add_memory("user:alice", "late", 1, "episodic", "agent")  # queued


def _same(value: Any) -> Any:
    """A value as both engines mean it: JSON parsed, timestamps to the microsecond."""
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if match:
            return match.group(1) + (match.group(2) or ".").ljust(7, "0")
        if value[:1] in "{[":
            return json.loads(value)
    return value


def _columns(table: str) -> str:
    return _CHUNK_COLUMNS if table == "document_chunks" else "*"


async def _rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    def read(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {table: [tuple(_same(v) for v in row) for row in
                        conn.execute(f"SELECT {_columns(table)} FROM {table} ORDER BY {order}")]
                for table, order in TABLES}

    return await db.read(read, snapshot=True)


async def test_sqlite_to_postgresql_and_back_keeps_every_row(tmp_path: Path, pg_dsn: str) -> None:
    source, back = tmp_path / "src.db", tmp_path / "back.db"
    await populate(source)
    seen: list[tuple[int, int]] = []
    there = await copy_database(source, pg_dsn, progress=lambda d, t: seen.append((d, t)))
    again = await copy_database(pg_dsn, back)
    assert [(t.table, t.rows, t.checksum) for t in there.tables] == [
        (t.table, t.rows, t.checksum) for t in again.tables]
    assert seen and seen[-1][0] == seen[-1][1] == there.rows
    async with Database(source, read_only=True) as a, Database(back, read_only=True) as b:
        original, copied = await _rows(a), await _rows(b)
        assert original == copied
        assert original["memory_entries"] and original["memory_search_queue"]
        vectors = "SELECT id, embedding FROM chunks_vectors ORDER BY id"
        assert await a.fetchall(vectors) == await b.fetchall(vectors)
    async with Database(pg_dsn) as pg:
        assert await _rows(pg) == original
        count = await pg.fetchone("SELECT count(*) AS n FROM memories_vectors")
        assert count is not None and count["n"] == 29  # the live keys search had seen


async def test_the_copy_searches_and_reads_like_the_original(tmp_path: Path, pg_dsn: str) -> None:
    source, back = tmp_path / "src.db", tmp_path / "back.db"
    await populate(source)
    await copy_database(source, pg_dsn)
    await copy_database(pg_dsn, back)
    results = []
    for path in (source, back):
        async with Database(path, embedder="hashing") as db:
            hits = await db.search.search("cats", 3, mode="semantic")
            memory = await db.memory.get_memory("user:alice", "k1")
            results.append(([(h.chunk_id, h.memory_id) for h in hits], memory))
    assert results[0] == results[1]
    assert results[0][1] is not None and results[0][1]["version"] == 2


async def test_new_rows_after_the_copy_never_reuse_an_id(tmp_path: Path, pg_dsn: str) -> None:
    source, back = tmp_path / "src.db", tmp_path / "back.db"
    async with Database(source) as db:
        for value in (1, 2, 3):
            await db.metrics.record("m", value)
        await db.execute("DELETE FROM metrics WHERE id = 3")  # id 3 was handed out
    await copy_database(source, pg_dsn)
    insert = "INSERT INTO metrics (timestamp, metric_name, metric_value) " \
             "VALUES ('2026-01-01 00:00:00', 'm', 4) RETURNING id"
    async with Database(pg_dsn) as pg:
        assert await pg.write(lambda c: c.execute(insert).fetchone()[0]) == 4
    await copy_database(pg_dsn, back)
    async with Database(back) as db:
        assert await db.metrics.record("m", 5) == 5


async def test_a_failure_mid_copy_leaves_no_postgresql_table(tmp_path: Path, pg_dsn: str) -> None:
    source = tmp_path / "src.db"
    await populate(source)
    calls = []

    def fail(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise RuntimeError("killed mid-copy")

    with pytest.raises(RuntimeError, match="killed mid-copy"):
        await copy_database(source, pg_dsn, progress=fail, batch_size=5)
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                              "WHERE table_schema = 'public'").fetchone()
    assert tables == (0,)


async def test_a_row_postgresql_rejects_fails_the_copy_whole(tmp_path: Path,
                                                             pg_memkit_dsn: str) -> None:
    source = tmp_path / "src.db"
    await populate(source)
    async with Database(source) as db:
        await db.execute("UPDATE metrics SET timestamp = 'the day before'")
    async with Database(pg_memkit_dsn) as pg:
        before = await dump(pg)
    with pytest.raises(MemkitError, match="nothing was kept"):
        await copy_database(source, pg_memkit_dsn)
    async with Database(pg_memkit_dsn) as pg:
        assert await dump(pg) == before


async def test_a_failure_mid_copy_leaves_no_file(tmp_path: Path, pg_dsn: str) -> None:
    source, target = tmp_path / "src.db", tmp_path / "out" / "copy.db"
    target.parent.mkdir()
    await populate(source)
    await copy_database(source, pg_dsn)

    def fail(done: int, total: int) -> None:
        if done > 20:
            raise RuntimeError("killed mid-copy")

    with pytest.raises(RuntimeError):
        await copy_database(pg_dsn, target, progress=fail, batch_size=5)
    assert list(target.parent.iterdir()) == []


async def test_a_destination_with_rows_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    source = tmp_path / "src.db"
    await populate(source)
    await copy_database(source, pg_dsn)
    async with Database(pg_dsn) as pg:
        before = await dump(pg)
    with pytest.raises(InvalidInputError, match=r"is not empty: table \w+ has rows"):
        await copy_database(source, pg_dsn)
    async with Database(pg_dsn) as pg:
        assert await dump(pg) == before
    with pytest.raises(InvalidInputError, match="destination exists"):
        await copy_database(pg_dsn, source)


async def test_overwrite_replaces_memkit_tables(tmp_path: Path, pg_dsn: str) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    await populate(first)
    async with Database(second) as db:
        await db.memory.add_memory("user:bob", "only", 1, "semantic", "agent")
    await copy_database(first, pg_dsn)
    result = await copy_database(second, pg_dsn, overwrite=True)
    assert {t.table: t.rows for t in result.tables}["memory_entries"] == 1
    async with Database(pg_dsn) as pg:
        keys = await pg.fetchall("SELECT namespace, key FROM memory_entries")
    assert keys == [{"namespace": "user:bob", "key": "only"}]


async def test_an_empty_memkit_database_is_a_fine_destination(tmp_path: Path,
                                                              pg_memkit_dsn: str) -> None:
    source = tmp_path / "src.db"
    async with Database(source) as db:
        await db.memory.add_memory("user:a", "k", 1, "semantic", "agent")
    with_password = pg_memkit_dsn.replace("postgres:@", "postgres:s3cret@")  # trust auth
    assert "s3cret" in with_password
    result = await copy_database(source, with_password)
    assert {t.table: t.rows for t in result.tables}["audit"] == 1
    assert "dbname=" in result.destination and "s3cret" not in result.destination


async def test_a_table_memkit_does_not_know_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "src.db"
    async with Database(source) as db:
        await db.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(InvalidInputError, match="not memkit's: notes"):
        await copy_database(source, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()


async def test_file_to_file_copy_keeps_the_vector_backend(tmp_path: Path) -> None:
    source, target = tmp_path / "src.db", tmp_path / "copy.db"
    await populate(source)
    await copy_database(source, target)
    async with Database(target, read_only=True) as db:
        assert await _rows(db) == await _rows_of(source)
        row = await db.fetchone(
            "SELECT backend, settings FROM vector_indexes WHERE name = 'chunks'")
    assert row == {"backend": "vec", "settings": '{"shards":8}'}


async def _rows_of(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    async with Database(path, read_only=True) as db:
        return await _rows(db)


def test_cli_copy_prints_each_table_verified(tmp_path: Path, pg_dsn: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.db"
    main(["init", str(source), "--seed"])
    capsys.readouterr()
    assert main(["copy", str(source), pg_dsn, "--no-progress", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert err == ""
    assert {t["table"] for t in report["tables"]} >= {"memory_entries", "audit", "sessions"}
    assert all(t["verified"] for t in report["tables"])
    assert main(["copy", str(source), pg_dsn, "--no-progress"]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_cli_copy_shows_progress_on_stderr(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.db"
    main(["init", str(source)])
    capsys.readouterr()
    assert main(["copy", str(source), str(tmp_path / "copy.db")]) == 0
    out, err = capsys.readouterr()
    assert "copy:" in err
    assert "every table's rows and checksum verified" in out


async def test_the_source_itself_is_refused(tmp_path: Path, pg_memkit_dsn: str) -> None:
    source = tmp_path / "src.db"
    async with Database(source):
        pass
    with pytest.raises(InvalidInputError, match="the destination is the source itself"):
        await copy_database(source, tmp_path / "." / "src.db", overwrite=True)
    spelled_again = pg_memkit_dsn.replace("postgresql://", "postgres://")
    with pytest.raises(InvalidInputError, match="the destination is the source itself"):
        await copy_database(pg_memkit_dsn, spelled_again, overwrite=True)
