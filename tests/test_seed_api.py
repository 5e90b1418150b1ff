"""The seed API's call shapes and defaults: code written against the seed design keeps working."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from abathur_memkit import (
    AlreadyExistsError,
    Database,
    InvalidInputError,
    SchemaError,
    WritePolicyError,
)
from abathur_memkit.cli import main
from abathur_memkit.engines.sqlite.driver import select_driver
from abathur_memkit.engines.sqlite.schema import migrations, statements

# -- the write policy is opt-in --------------------------------------------------------


async def test_the_seed_docstring_example_works_on_the_defaults(db: Database) -> None:
    # No session row for abc123: with the policy on this write would be refused.
    entry_id = await db.memory.add_memory(
        "user:alice:preferences", "theme", {"mode": "dark"}, "semantic",
        created_by="session:abc123")
    entry = await db.memory.get_memory("user:alice:preferences", "theme")
    assert entry is not None and entry["id"] == entry_id and entry["value"] == {"mode": "dark"}
    assert db.write_policy is False


async def test_the_policy_is_one_argument_and_strict_when_on(tmp_path: Path) -> None:
    async with Database(tmp_path / "p.db", write_policy=True) as db:
        before = await db.fetchall("SELECT * FROM memory_entries")
        with pytest.raises(WritePolicyError, match="Write denied: session:abc123"):
            await db.memory.add_memory("user:alice:preferences", "theme", 1, "semantic",
                                       created_by="session:abc123")
        assert await db.fetchall("SELECT * FROM memory_entries") == before
        await db.memory.add_memory("session:abc123", "k", 1, "semantic", "session:abc123")
    with pytest.raises(InvalidInputError, match="Invalid write_policy"):
        Database(tmp_path / "p.db", write_policy="yes")  # type: ignore[arg-type]


def test_the_cli_follows_the_library_default(tmp_path: Path) -> None:
    path = str(tmp_path / "cli.db")
    write = ["memory", "put", path, "user:bob", "k", "1", "--by", "session:s1"]
    assert main(["init", path]) == 0
    assert main(write) == 0  # policy off: any writer
    assert main([*write, "--write-policy"]) == 1  # on: no session s1 owns user:bob


# -- documents --------------------------------------------------------------------------


async def test_index_document_refuses_an_indexed_path(db: Database) -> None:
    doc_id = await db.documents.index_document("a.md", "A", "# A\n\nalpha")
    before = await db.documents.get_document("a.md")
    with pytest.raises(AlreadyExistsError, match="already exists") as info:
        await db.documents.index_document("a.md", "A2", "# A\n\nbeta")
    assert isinstance(info.value, ValueError)
    assert await db.documents.get_document("a.md") == before
    assert await db.documents.index_document("a.md", "A2", "# A\n\nbeta", upsert=True) == doc_id
    assert (await db.documents.get_chunks(doc_id))[0]["text"] == "# A\n\nbeta"
    with pytest.raises(InvalidInputError, match="Invalid upsert"):
        await db.documents.index_document("b.md", "B", "x", upsert="yes")  # type: ignore[arg-type]


async def test_directory_sync_still_updates_indexed_files(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nalpha\n")
    await db.documents.sync_directory(folder)
    (folder / "a.md").write_text("# A\n\nbeta\n")
    summary = await db.documents.sync_directory(folder)
    assert summary.ok
    row = await db.documents.get_document(str(folder / "a.md"))
    assert row is not None
    assert "beta" in (await db.documents.get_chunks(row["id"]))[0]["text"]


async def test_update_embedding_takes_the_seed_blob_with_the_seed_model(db: Database) -> None:
    doc_id = await db.documents.index_document("a.md", "A", "# A\n\nalpha")
    vector = np.linspace(-1, 1, 768).astype(np.float32)
    await db.documents.update_embedding(doc_id, vector.tobytes())  # the float32 BLOB
    row = await db.documents.get_document_by_id(doc_id)
    assert row is not None and row["embedding_model"] == "nomic-embed-text-v1.5"
    np.testing.assert_array_equal(np.frombuffer(row["embedding_blob"], np.float32), vector)
    await db.documents.update_embedding(doc_id, vector.tolist(), "nomic-embed-text-v1.5")
    with pytest.raises(InvalidInputError, match=r"shape \(4,\)"):
        await db.documents.update_embedding(doc_id, [0.1, 0.2, 0.3, 0.4])  # nomic is 768
    with pytest.raises(InvalidInputError, match="multiple of 4 bytes"):
        await db.documents.update_embedding(doc_id, b"\x00\x01\x02")
    with pytest.raises(InvalidInputError, match="list of numbers"):
        await db.documents.update_embedding(doc_id, ["a"] * 768)
    await db.documents.update_embedding(doc_id, [0.5, 0.5], "toy")  # unknown model: any size


async def test_a_vector_given_by_the_caller_is_found_and_not_redone(tmp_path: Path) -> None:
    async with Database(tmp_path / "v.db", embedder="hashing") as db:
        docs = db.documents
        alpha = await docs.index_document("a.md", "A", "# Alpha\n\nquantum gravity waves")
        await docs.index_document("b.md", "B", "# Beta\n\ncooking pasta recipes")
        model = db.embedder.name
        vector = await db.embedder.embed_query("quantum gravity waves")
        await docs.update_embedding(alpha, vector.tobytes(), model)
        await docs.mark_synced(alpha)
        hits = await db.search.semantic("quantum gravity waves", 5)
        assert [h.file_path for h in hits] == ["a.md"]
        summary = await docs.embed_pending()
        assert summary.synced == ["b.md"]  # a.md is neither redone nor lost
        chunks = await docs.get_chunks(alpha)
        assert {c["embedding_model"] for c in chunks} == {model}
        hits = await db.search.semantic("quantum gravity waves", 1)
        assert hits[0].file_path == "a.md"


async def test_embed_pending_finishes_a_document_given_its_vector(tmp_path: Path) -> None:
    async with Database(tmp_path / "v.db", embedder="hashing") as db:
        doc_id = await db.documents.index_document("a.md", "A", "# A\n\nalpha beta")
        vector = await db.embedder.embed_query("alpha beta")
        await db.documents.update_embedding(doc_id, vector, db.embedder.name)
        summary = await db.documents.embed_pending()
        assert summary.synced == ["a.md"] and summary.embedded_chunks == 0
        row = await db.documents.get_document_by_id(doc_id)
        assert row is not None and row["sync_status"] == "synced"


async def test_search_documents_by_a_callers_vector(db: Database) -> None:
    docs = db.documents
    a = await docs.index_document("a.md", "A", "# A\n\nx", "plan")
    b = await docs.index_document("b.md", "B", "# B\n\ny", "report")
    await docs.index_document("c.md", "C", "# C\n\nz")  # no vector: never a hit
    await docs.update_embedding(a, [1.0, 0.0, 0.0], "toy")
    await docs.update_embedding(b, [0.6, 0.8, 0.0], "toy")
    hits = await docs.search_documents([0.0, 1.0, 0.0], limit=5)
    assert [h["file_path"] for h in hits] == ["b.md", "a.md"]
    assert hits[0]["score"] == pytest.approx(0.8) and "embedding_blob" not in hits[0]
    assert [h["file_path"] for h in await docs.search_documents(
        np.array([1, 0, 0], np.float32), document_type="plan")] == ["a.md"]
    assert await docs.search_documents([1.0, 0.0, 0.0], embedding_model="other") == []
    assert await docs.search_documents([1.0, 0.0]) == []  # another size


# -- Database utilities ------------------------------------------------------------------


async def test_index_usage_rows_are_dicts(db: Database) -> None:
    usage = await db.get_index_usage()
    assert usage["index_count"] == len(usage["indexes"]) == 33  # 32 + the heads index
    by_name = {i["name"]: i for i in usage["indexes"]}
    assert by_name["idx_memory_namespace_key_version"] == {
        "name": "idx_memory_namespace_key_version", "table": "memory_entries",
        "unique": False, "partial": False,
        "columns": ["namespace", "key", "is_deleted", "version"]}
    assert by_name["idx_document_file_path"]["unique"] is True
    assert by_name["idx_sessions_status_updated"]["partial"] is True
    assert (await db.validate())["ok"] is True


async def test_connection_commits_reads_and_rolls_back(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'a', 'u')")
        await conn.commit()
        cursor = await conn.execute("SELECT id FROM sessions")
        assert [r["id"] for r in await cursor.fetchall()] == ["s1"]
    assert (await db.sessions.get_session("s1")) is not None
    with pytest.raises(RuntimeError):
        async with db._get_connection() as conn:
            await conn.execute("INSERT INTO sessions (id, app_name, user_id) "
                               "VALUES ('s2', 'a', 'u')")
            raise RuntimeError("test aborts the block")
    assert await db.sessions.get_session("s2") is None
    async with db.connection() as conn:  # no commit(): the block commits on the way out
        await conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s3', 'a', 'u')")
    assert await db.sessions.get_session("s3") is not None
    assert Database._get_connection is Database.connection


async def test_a_raw_transaction_and_a_service_write_do_not_interleave(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('raw', 'a', 'u')")
        # The service's transaction waits for the block's write lock.
        service = asyncio.ensure_future(db.sessions.create_session("svc", "a", "u"))
        await asyncio.sleep(0.05)
        cursor = await conn.execute("SELECT id FROM sessions ORDER BY id")
        assert [r["id"] for r in await cursor.fetchall()] == ["raw"]
    await service
    rows = await db.fetchall("SELECT id FROM sessions ORDER BY id")
    assert [r["id"] for r in rows] == ["raw", "svc"]


async def test_connection_on_a_memory_database_shares_its_data(memdb: Database) -> None:
    await memdb.sessions.create_session("s1", "app", "alice")
    async with memdb.connection() as conn:
        cursor = await conn.execute("SELECT user_id FROM sessions WHERE id = 's1'")
        assert (await cursor.fetchone())["user_id"] == "alice"
        await conn.execute("UPDATE sessions SET project_id = 'p' WHERE id = 's1'")
        await conn.commit()
    session = await memdb.sessions.get_session("s1")
    assert session is not None and session["project_id"] == "p"


async def test_connection_needs_initialize(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not initialized"):
        async with Database(tmp_path / "x.db").connection():
            pass


async def test_the_seed_location_works_on_a_new_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    async with Database("~/.abathur/abathur.db") as db:
        assert db.path == str(tmp_path / ".abathur" / "abathur.db")
        await db.sessions.create_session("s1", "app", "alice")
    assert (tmp_path / ".abathur" / "abathur.db").is_file()


# -- JSON columns ----------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "constraint"), [
    ("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at) "
     "VALUES ('t2', 'p', 'pending', '{bad', 'now', 'now')", "tasks.input_data is JSON"),
    ("UPDATE tasks SET result_data = 'not json' WHERE id = 't1'", "tasks.result_data is JSON"),
    ("INSERT INTO checkpoints (task_id, iteration, state, created_at) "
     "VALUES ('t1', 1, '{bad', 'now')", "checkpoints.state is JSON"),
])
async def test_json_columns_reject_bad_json(db: Database, sql: str, constraint: str) -> None:
    await db.tasks.submit("p", task_id="t1", input_data={"a": 1})
    with pytest.raises(InvalidInputError, match=constraint):
        await db.execute(sql)
    task = await db.tasks.get("t1")
    assert task is not None and task["input_data"] == {"a": 1}


def _make_v4(path: Path, extra_sql: str) -> None:
    """A database as memkit files were before the JSON checks, holding ``extra_sql``'s rows."""
    conn = select_driver().connect(str(path))
    try:
        for migration in migrations():
            if migration.version < 6:
                for statement in statements(migration.sql):
                    conn.execute(statement)
        conn.executescript(extra_sql)
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


ROWS = """
INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at)
    VALUES ('t1', 'p', 'pending', '{"a": 1}', '2025-01-01', '2025-01-01');
INSERT INTO agents (id, name, specialization, task_id, state, model, spawned_at)
    VALUES ('a1', 'n', 's', 't1', 'idle', 'm', '2025-01-01');
INSERT INTO checkpoints (task_id, iteration, state, created_at)
    VALUES ('t1', 0, '{"step": 1}', '2025-01-01');
"""


async def test_the_migration_adds_the_checks_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    _make_v4(path, ROWS)
    async with Database(path) as db:
        assert await db.schema_version() == 7
        task = await db.tasks.get("t1")
        assert task is not None and task["input_data"] == {"a": 1}
        assert (await db.checkpoints.latest("t1"))["state"] == {"step": 1}  # type: ignore[index]
        assert await db.validate_foreign_keys() == []
        assert (await db.get_index_usage())["index_count"] == 33  # with idx_memory_heads_recent
        assert (await db.validate())["ok"] is True
        with pytest.raises(InvalidInputError, match=r"tasks\.input_data is JSON"):
            await db.execute("UPDATE tasks SET input_data = '{' WHERE id = 't1'")


@pytest.mark.parametrize(("bad", "where"), [
    ("UPDATE tasks SET input_data = '{oops' WHERE id = 't1'", "table tasks, row id='t1'"),
    ("UPDATE checkpoints SET state = 'nope' WHERE task_id = 't1'",
     "table checkpoints, row task_id='t1', iteration=0"),
])
async def test_bad_json_stops_the_migration_and_leaves_the_file(
    tmp_path: Path, bad: str, where: str
) -> None:
    path = tmp_path / "v4.db"
    _make_v4(path, ROWS + bad + ";")
    before = path.read_bytes()
    with pytest.raises(SchemaError, match="is not valid JSON") as info:
        await Database(path).initialize()
    assert where in str(info.value)
    assert path.read_bytes() == before
    conn = select_driver().connect(str(path))
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == max(
            m.version for m in migrations() if m.version < 6)
    finally:
        conn.close()
