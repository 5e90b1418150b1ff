"""The document index: the seed API, directory sync, path safety, watch mode, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from abathur_memkit import (
    AlreadyExistsError,
    Database,
    EmbeddingError,
    InvalidInputError,
    NotFoundError,
)
from abathur_memkit.cli import main
from abathur_memkit.embeddings import HashingEmbedder
from abathur_memkit.search import chunk_markdown
from abathur_memkit.search.backends import backend_unavailable
from abathur_memkit.search.chunking import embedding_text
from abathur_memkit.search.documents import DocumentIndexService, SyncSummary
from abathur_memkit.search.watch import watch_directory

DOCS = Path(__file__).parent / "data" / "docs"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    target = tmp_path / "docs"
    shutil.copytree(DOCS, target)
    return target


@pytest.fixture
async def hdb(db_target: str | Path) -> Any:
    async with Database(db_target, embedder="hashing") as database:
        yield database


async def vector_count(db: Database) -> int:
    return int((await db.search.status())["indexes"]["chunks"]["vectors"])


# -- the seed API ------------------------------------------------------------------------


async def test_index_document_and_lookups(db: Database) -> None:
    docs = DocumentIndexService(db)
    assert db.documents is db.documents
    text = "# Plan\n\nIntro.\n\n## Phase one\n\nBuild it.\n\n## Phase two\n\nShip it.\n"
    doc_id = await docs.index_document("plans/p.md", "Plan", text, "plan", {"owner": "ops"})
    row = await docs.get_document("plans/p.md")
    assert row is not None and row["id"] == doc_id and row["chunk_count"] == 3
    assert row["sync_status"] == "pending" and row["metadata"] == {"owner": "ops"}
    assert row["document_type"] == "plan" and len(row["content_hash"]) == 64
    assert (await docs.get_document_by_id(doc_id)) == row
    chunks = await docs.get_chunks(doc_id)
    assert [c["heading_path"] for c in chunks] == ["Plan", "Plan > Phase one", "Plan > Phase two"]
    assert [text[c["start_offset"]:c["end_offset"]] for c in chunks] == [c["text"] for c in chunks]
    # indexed already: refused as the seed API documents, unless upsert=True
    before = await docs.get_document("plans/p.md")
    with pytest.raises(AlreadyExistsError, match=r"Document plans/p\.md already exists"):
        await docs.index_document("plans/p.md", "Plan v2", text, "plan")
    assert await docs.get_document("plans/p.md") == before
    # same content: nothing re-chunked
    assert await docs.index_document("plans/p.md", "Plan v2", text, "plan", upsert=True) == doc_id
    assert [c["id"] for c in await docs.get_chunks(doc_id)] == [c["id"] for c in chunks]
    assert (await docs.get_document("plans/p.md"))["title"] == "Plan v2"  # type: ignore[index]
    pending = await docs.get_pending_documents(10)
    assert [d["file_path"] for d in pending] == ["plans/p.md"]
    assert "embedding_blob" not in pending[0]
    await docs.index_document("specs/s.md", "Spec", "# Spec\n\nRules.", "specification")
    assert [d["file_path"] for d in await docs.search_by_type("plan")] == ["plans/p.md"]
    assert [d["file_path"] for d in await docs.list_all_documents()] == ["plans/p.md",
                                                                          "specs/s.md"]
    assert await docs.get_document("nope.md") is None
    assert await docs.delete_document("specs/s.md") and not await docs.delete_document("x")


async def test_status_transitions_and_embedding(db: Database) -> None:
    docs = db.documents
    doc_id = await docs.index_document("a.md", "A", "# A\n\nalpha")
    await docs.mark_failed(doc_id, "server exploded")
    row = await docs.get_document_by_id(doc_id)
    assert row["sync_status"] == "failed"  # type: ignore[index]
    assert row["metadata"]["last_error"] == "server exploded"  # type: ignore[index]
    vector = np.ones(4, np.float32) / 2
    await docs.update_embedding(doc_id, vector, "toy-model")
    await docs.mark_synced(doc_id)
    row = await docs.get_document_by_id(doc_id)
    assert row["sync_status"] == "synced" and "last_error" not in row["metadata"]  # type: ignore[index]
    assert row["last_synced_at"] is not None and row["embedding_model"] == "toy-model"  # type: ignore[index]
    np.testing.assert_array_equal(np.frombuffer(row["embedding_blob"], np.float32), vector)  # type: ignore[index]
    assert row["metadata"]["embedding_dimensions"] == 4  # type: ignore[index]
    assert await docs.mark_stale("a.md", "# A\n\nalpha") is False  # same content
    assert await docs.mark_stale("a.md", "# A\n\nbeta") is True
    row = await docs.get_document_by_id(doc_id)
    assert row["sync_status"] == "stale" and row["embedding_blob"] is None  # type: ignore[index]
    assert (await docs.get_chunks(doc_id))[0]["text"] == "# A\n\nbeta"
    assert await docs.mark_stale("a.md") is True
    with pytest.raises(NotFoundError):
        await docs.mark_stale("missing.md")
    with pytest.raises(NotFoundError, match="Document 999 not found"):
        await docs.mark_synced(999)
    with pytest.raises(InvalidInputError, match="1-D float32"):
        await docs.update_embedding(doc_id, np.ones((2, 2), np.float32), "m")
    with pytest.raises(InvalidInputError, match="Invalid document_type"):
        await docs.index_document("b.md", "B", "x", "memo")
    with pytest.raises(InvalidInputError, match="Invalid file_path"):
        await docs.index_document("", "B", "x")
    with pytest.raises(InvalidInputError, match="Invalid metadata"):
        await docs.index_document("b.md", "B", "x", metadata=[1])  # type: ignore[arg-type]


async def test_embed_pending_and_keyword_only_index(db_target: str | Path,
                                                    corpus: Path) -> None:
    path = db_target
    async with Database(path) as db:  # no embedder: chunks and full text only
        summary = await db.documents.sync_directory(corpus)
        assert summary.model is None and summary.chunks_written == 37
        assert {d["sync_status"] for d in await db.documents.list_all_documents()} == {"pending"}
        assert (await db.search.keyword("rollback undo"))[0].heading == "Rollback"
        assert "keyword search only" in str(summary)
    async with Database(path, embedder="hashing") as db:
        result = await db.documents.embed_pending(progress=False)
        assert result.embedded_chunks == 37 and len(result.synced) == 11 and not result.failed
        assert await db.documents.get_pending_documents() == []
        assert await vector_count(db) == 37


# -- sync_directory ----------------------------------------------------------------------


async def test_sync_added_changed_unchanged_deleted(hdb: Database, corpus: Path) -> None:
    first = await hdb.documents.sync_directory(corpus, progress=False)
    assert isinstance(first, SyncSummary)
    assert len(first.added) == 11 and first.unchanged == 0 and first.synced == 11
    assert first.embedded_chunks == first.chunks_written == 37
    second = await hdb.documents.sync_directory(corpus, progress=False)
    assert (second.added, second.changed, second.removed) == ([], [], [])
    assert second.unchanged == 11 and second.embedded_chunks == 0

    sessions = corpus / "guides" / "sessions.md"
    sessions.write_text(sessions.read_text().replace("30 minutes", "45 minutes"))
    (corpus / "ops" / "backups.md").unlink()
    (corpus / "ops" / "new.md").write_text("# New\n\nA brand new runbook about pagers.\n")
    third = await hdb.documents.sync_directory(corpus, progress=False)
    assert third.changed == ["guides/sessions.md"] and third.added == ["ops/new.md"]
    assert third.removed == ["ops/backups.md"] and third.unchanged == 9
    # Only the new file and the changed chunk: the other 3 took their old vectors.
    assert third.embedded_chunks == 1 + 1 and third.reused_chunks == 3
    assert third.to_dict()["removed"] == ["ops/backups.md"]
    paths = [d["file_path"] for d in await hdb.documents.list_all_documents()]
    assert str(corpus / "ops" / "backups.md") not in paths and len(paths) == 11
    assert (await hdb.search.keyword("45 minutes"))[0].heading == "Expiry"
    assert all(h.file_path != str(corpus / "ops" / "backups.md")
               for h in await hdb.search.keyword("object storage cron"))
    # old chunks' vectors are gone: one vector per chunk
    chunks = sum(d["chunk_count"] for d in await hdb.documents.list_all_documents())
    assert await vector_count(hdb) == chunks
    assert sessions.exists()  # the index never touches source files
    assert {d["sync_status"] for d in await hdb.documents.list_all_documents()} == {"synced"}


async def test_sync_progress_bar_goes_to_stderr(hdb: Database, corpus: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    await hdb.documents.sync_directory(corpus, progress=True)
    captured = capsys.readouterr()
    assert "embedding" in captured.err and "37" in captured.err and captured.out == ""


async def test_sync_refuses_paths_outside_the_root(hdb: Database, corpus: Path,
                                                   tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwords.md").write_text("# Secrets\n\nhunter2\n")
    os.symlink(outside / "passwords.md", corpus / "link.md")
    os.symlink(outside, corpus / "linked-dir")
    os.symlink(corpus / "guides" / "agents.md", corpus / "inside-link.md")
    (corpus / "latin1.md").write_bytes("# Caf\xe9\n".encode("latin-1"))
    os.symlink(tmp_path / "nowhere.md", corpus / "broken.md")
    for pattern in ("../secret/*.md", "/etc/*.md", "guides/../../secret/*.md"):
        with pytest.raises(InvalidInputError, match="must stay inside the root"):
            await hdb.documents.sync_directory(corpus, pattern)
    with pytest.raises(InvalidInputError, match="not a directory"):
        await hdb.documents.sync_directory(corpus / "guides" / "agents.md")
    summary = await hdb.documents.sync_directory(corpus, progress=False)
    reasons = dict(summary.skipped)
    assert reasons["link.md"].startswith("outside the root")
    # "**" does not descend into linked directories; "*/" does, and is refused there
    one_level = await hdb.documents.sync_directory(corpus, "*/*.md", embed=False)
    assert dict(one_level.skipped)["linked-dir/passwords.md"].startswith("outside the root")
    assert reasons["latin1.md"].startswith("not UTF-8")
    assert reasons["broken.md"].startswith("cannot resolve")
    assert "inside-link.md" in summary.added  # a link that stays inside is fine
    assert await hdb.search.keyword("hunter2") == []
    assert (outside / "passwords.md").exists()


async def test_sync_reports_unreadable_files(hdb: Database, corpus: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    first = await hdb.documents.sync_directory(corpus, progress=False)
    assert "guides/agents.md" in first.added
    real = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "agents.md":
            raise PermissionError(13, "Permission denied")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    summary = await hdb.documents.sync_directory(corpus, progress=False)
    assert dict(summary.skipped) == {"guides/agents.md": "unreadable: Permission denied"}
    assert "skipped  guides/agents.md" in str(summary)
    # Skipped means out of the index: its old chunks are no longer searchable.
    assert summary.removed == ["guides/agents.md"] and summary.unchanged == 10
    assert await hdb.documents.get_document(str(corpus / "guides" / "agents.md")) is None


async def test_front_matter_type_and_default_type(hdb: Database, corpus: Path) -> None:
    (corpus / "untyped.md").write_text("# Untyped\n\ntext\n")
    await hdb.documents.sync_directory(corpus, document_type="report", progress=False)
    rows = {Path(d["file_path"]).name: d for d in await hdb.documents.list_all_documents()}
    assert rows["sessions.md"]["document_type"] == "design"
    assert rows["sessions.md"]["title"] == "Session lifecycle"
    assert rows["untyped.md"]["document_type"] == "report"
    assert rows["backups.md"]["metadata"]["relative_path"] == "ops/backups.md"


# -- a changed file re-embeds only its changed chunks -----------------------------------

BACKENDS = ["vec", "vss", "pgvector"]

RUNBOOK = """# Runbook

How the service is run, day to day.

## Deploy

{deploy}

## Rollback

Roll back with the previous release tag; the database needs no migration back.

## Alerts

The pager goes to the on-call engineer first, then to the team lead after ten minutes.
"""
# Long enough to be cut into two windows: the second one's text does not start
# with its heading line, so the heading reaches the embedder through the path.
DEPLOY = " ".join(f"Step {n}: run the pipeline stage {n} and wait for it." for n in range(18))


class Counting:
    """A real embedder (hashing) that records the texts sent to it and, given
    ``fail_on``, fails a call holding a text that contains it."""

    def __init__(self, dimensions: int = 384) -> None:
        self.inner = HashingEmbedder(dimensions)
        self.sent: list[str] = []
        self.fail_on: str | None = None

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.sent.extend(texts)
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise EmbeddingError("the embedding server is down")
        return await self.inner.embed_documents(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        return await self.inner.embed_query(text)


def backend_target(request: pytest.FixtureRequest, tmp_path: Path, backend: str,
                   name: str = "db") -> str | Path:
    if backend == "vss" and backend_unavailable("vss") is not None:
        pytest.skip(f"sqlite-vss cannot load here: {backend_unavailable('vss')}")
    if backend == "pgvector":
        return str(request.getfixturevalue("pg_memkit_dsn" if name == "db" else "pg_dsn"))
    return tmp_path / f"{name}.db"


async def stored_vectors(db: Database) -> dict[str, np.ndarray]:
    """Every chunk's stored vector by the text its embedder was given; all chunks have one."""
    docs = db.documents

    def read(conn: Any) -> dict[str, np.ndarray]:
        rows = conn.execute("SELECT id, heading_path, text, embedding_model "
                            "FROM document_chunks").fetchall()
        assert rows and all(r[3] is not None for r in rows)
        backend = docs.vectors.searchable(conn, "chunks", docs.vectors.made_by(
            docs.settings.embedder))
        assert backend is not None
        found = backend.get(conn, [int(r[0]) for r in rows])
        assert set(found) == {int(r[0]) for r in rows} and backend.count(conn) == len(rows)
        return {embedding_text(r[1], r[2]): found[int(r[0])] for r in rows}

    await db.search.purge()
    return await db.read(read)


async def assert_as_embedded_from_scratch(db: Database) -> None:
    vectors = await stored_vectors(db)
    fresh = await HashingEmbedder().embed_documents(list(vectors))
    np.testing.assert_allclose(np.stack(list(vectors.values())), fresh, atol=1e-6)


def runbook_folder(tmp_path: Path) -> tuple[Path, Path, str]:
    """A folder holding runbook.md (RUNBOOK): the folder, the file and its text."""
    folder = tmp_path / "docs"
    folder.mkdir()
    runbook = folder / "runbook.md"
    text = RUNBOOK.format(deploy=DEPLOY)
    runbook.write_text(text)
    return folder, runbook, text


def chunk_texts(text: str) -> list[str]:
    return [c.embedding_text() for c in chunk_markdown(text)]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_edit_re_embeds_only_the_changed_chunks(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    runbook = folder / "runbook.md"
    before = RUNBOOK.format(deploy=DEPLOY)
    runbook.write_text(before)
    (folder / "other.md").write_text("# Other\n\nAn unrelated page about backups.\n")
    embedder = Counting()
    async with Database(backend_target(request, tmp_path, backend), embedder=embedder,
                        vector_backend=backend) as db:
        first = await db.documents.sync_directory(folder, progress=False)
        assert first.embedded_chunks == len(embedder.sent) == 6 and first.reused_chunks == 0
        embedder.sent.clear()

        after = before.replace("then to the team lead after ten minutes",
                               "then to the incident commander after five minutes")
        runbook.write_text(after)
        second = await db.documents.sync_directory(folder, progress=False)
        changed = [t for t in chunk_texts(after) if t not in chunk_texts(before)]
        assert len(changed) == 1 and "incident commander" in changed[0]
        assert embedder.sent == changed  # only the edited paragraph's chunk
        assert second.embedded_chunks == 1 and second.reused_chunks == 4
        assert second.changed == ["runbook.md"] and second.synced == 1 and second.ok
        assert "embedded 1 chunk with hashing-lexical-v1 (4 chunks reused)" in str(second)
        assert second.to_dict()["reused_chunks"] == 4
        assert {d["sync_status"] for d in await db.documents.list_all_documents()} == {"synced"}
        await assert_as_embedded_from_scratch(db)
        queries = ["who gets paged first", "incident commander", "pipeline stage 17",
                   "roll back a release"]
        got = [[(h.heading, h.text, round(h.score, 5)) for h in
                await db.search.search(q, 5, mode=mode, source="documents")]
               for q in queries for mode in ("semantic", "hybrid")]
        blob = (await db.documents.get_document(str(runbook.resolve())))["embedding_blob"]  # type: ignore[index]

        # Bytes changed but not one chunk (blank lines at the end): nothing to embed.
        runbook.write_text(after + "\n\n\n")
        embedder.sent.clear()
        third = await db.documents.sync_directory(folder, progress=False)
        assert embedder.sent == [] and third.embedded_chunks == 0 and third.reused_chunks == 5
        assert "nothing to embed: every chunk has its hashing-lexical-v1 vector " \
            "(5 chunks reused)" in str(third)
        assert third.synced == 1
        await assert_as_embedded_from_scratch(db)

    # The same results as a from-scratch index of the edited folder.
    runbook.write_text(after)
    async with Database(backend_target(request, tmp_path, backend, "fresh"),
                        embedder="hashing", vector_backend=backend) as fresh:
        await fresh.documents.sync_directory(folder, progress=False)
        expected = [[(h.heading, h.text, round(h.score, 5)) for h in
                     await fresh.search.search(q, 5, mode=mode, source="documents")]
                    for q in queries for mode in ("semantic", "hybrid")]
        assert got == expected
        fresh_blob = (await fresh.documents.get_document(str(runbook.resolve())))["embedding_blob"]  # type: ignore[index]
        np.testing.assert_allclose(np.frombuffer(blob, np.float32),
                                   np.frombuffer(fresh_blob, np.float32), atol=1e-6)


async def test_a_changed_heading_re_embeds_the_chunks_it_heads(db_target: str | Path,
                                                                tmp_path: Path) -> None:
    folder, runbook, text = runbook_folder(tmp_path)
    embedder = Counting()
    async with Database(db_target, embedder=embedder) as db:
        await db.documents.sync_directory(folder, progress=False)
        old = {(c.heading_text, c.text) for c in chunk_markdown(text)}

        # The section's own heading: its first window starts with the heading line
        # (new text), the second has the same text under a new heading path.
        renamed = text.replace("## Deploy", "## Shipping")
        runbook.write_text(renamed)
        embedder.sent.clear()
        summary = await db.documents.sync_directory(folder, progress=False)
        shipping = [c for c in chunk_markdown(renamed) if c.heading == "Shipping"]
        assert len(shipping) == 2 and not shipping[1].text.startswith("#")
        assert any(text_ == shipping[1].text for _, text_ in old)  # same body, new heading
        assert embedder.sent == [c.embedding_text() for c in shipping]
        assert summary.embedded_chunks == 2 and summary.reused_chunks == 3
        await assert_as_embedded_from_scratch(db)

        # The title heads every chunk: all of them are embedded again.
        retitled = renamed.replace("# Runbook", "# Operations")
        runbook.write_text(retitled)
        embedder.sent.clear()
        summary = await db.documents.sync_directory(folder, progress=False)
        assert embedder.sent == chunk_texts(retitled)
        assert summary.embedded_chunks == 5 and summary.reused_chunks == 0
        await assert_as_embedded_from_scratch(db)


async def test_a_renamed_or_copied_file_takes_the_indexed_files_vectors(
    db_target: str | Path, tmp_path: Path
) -> None:
    folder, runbook, text = runbook_folder(tmp_path)
    embedder = Counting()
    async with Database(db_target, embedder=embedder) as db:
        await db.documents.sync_directory(folder, progress=False)
        embedder.sent.clear()
        runbook.rename(folder / "ops.md")
        moved = await db.documents.sync_directory(folder, progress=False)
        assert embedder.sent == [] and moved.embedded_chunks == 0
        assert moved.reused_chunks == 5 and moved.synced == 1 and moved.ok
        assert moved.added == ["ops.md"] and moved.removed == ["runbook.md"]
        await assert_as_embedded_from_scratch(db)
        hits = await db.search.search("who gets paged first", 3, mode="semantic",
                                      source="documents")
        assert hits and {h.file_path for h in hits} == {str((folder / "ops.md").resolve())}

        # A copy (the original stays) takes its vectors; a file with other bytes
        # is embedded whole, even where its text matches another file's.
        edited = text.replace("ten minutes", "five minutes")
        (folder / "copy.md").write_text(text)
        (folder / "edited.md").write_text(edited)
        copied = await db.documents.sync_directory(folder, progress=False)
        assert copied.reused_chunks == 5 and copied.embedded_chunks == 5
        assert sorted(embedder.sent) == sorted(chunk_texts(edited))
        await assert_as_embedded_from_scratch(db)

    # reuse=False: a renamed file is embedded again, as before.
    (folder / "copy.md").rename(folder / "again.md")
    embedder.sent.clear()
    async with Database(db_target, embedder=embedder) as db:
        db.documents.reuse = False
        again = await db.documents.sync_directory(folder, progress=False)
        assert again.reused_chunks == 0 and again.embedded_chunks == 5


async def test_documents_with_unembedded_chunks_are_counted(db_target: str | Path,
                                                            tmp_path: Path) -> None:
    folder, runbook, text = runbook_folder(tmp_path)
    embedder = Counting()
    async with Database(db_target, embedder=embedder) as db:
        await db.documents.sync_directory(folder, embed=False, progress=False)
        assert await db.documents.unembedded_documents() == 1
        assert (await db.search.status())["unembedded_documents"] == 1
        await db.documents.embed_pending()
        assert await db.documents.unembedded_documents() == 0
        assert (await db.search.status())["unembedded_documents"] == 0
        # A failed embedding leaves the edited chunk without a vector: counted.
        runbook.write_text(text.replace("ten minutes", "five minutes"))
        embedder.fail_on = "five minutes"
        failed = await db.documents.sync_directory(folder, progress=False)
        assert failed.failed and await db.documents.unembedded_documents() == 1
        embedder.fail_on = None
        await db.documents.embed_pending(retry_failed=True)
        assert await db.documents.unembedded_documents() == 0


async def test_a_model_change_still_re_embeds_every_chunk(db_target: str | Path,
                                                          tmp_path: Path) -> None:
    folder, runbook, text = runbook_folder(tmp_path)
    async with Database(db_target, embedder=Counting()) as db:
        await db.documents.sync_directory(folder, progress=False)
    edited = text.replace("ten minutes", "five minutes")
    runbook.write_text(edited)
    other = Counting(128)  # same name, other dimensions: another model's vectors
    async with Database(db_target, embedder=other) as db:
        summary = await db.documents.sync_directory(folder, progress=False)
        assert summary.reembedded_all and summary.reused_chunks == 0
        assert summary.embedded_chunks == 5 and sorted(other.sent) == sorted(chunk_texts(edited))
        status = await db.search.status()
        assert status["indexes"]["chunks"]["dimensions"] == 128
        assert status["indexes"]["chunks"]["vectors"] == 5


async def test_a_failed_embedding_keeps_only_vectors_of_current_text(
    db_target: str | Path, tmp_path: Path
) -> None:
    folder, runbook, text = runbook_folder(tmp_path)
    embedder = Counting()
    async with Database(db_target, embedder=embedder) as db:
        await db.documents.sync_directory(folder, progress=False)
        edited = text.replace("previous release tag", "last good release tag")
        runbook.write_text(edited)
        embedder.fail_on = "last good release"
        failed = await db.documents.sync_directory(folder, progress=False)
        assert failed.failed == [("runbook.md", "the embedding server is down")]
        assert failed.embedded_chunks == 0 and failed.reused_chunks == 4
        doc = (await db.documents.list_all_documents())[0]
        assert doc["sync_status"] == "failed"
        # The reused vectors are those of the text now stored; the edited chunk has none.
        chunks = await db.documents.get_chunks(doc["id"])
        assert [c["embedding_model"] is None for c in chunks] == \
            ["last good release" in c["text"] for c in chunks]
        # Edited again while failed: the vectors it still has are reused again.
        edited = edited.replace("ten minutes", "five minutes")
        runbook.write_text(edited)
        embedder.fail_on = None
        embedder.sent.clear()
        done = await db.documents.sync_directory(folder, progress=False)
        assert done.ok and done.synced == 1 and done.reused_chunks == 3
        assert sorted(embedder.sent) == sorted(
            t for t in chunk_texts(edited) if "last good release" in t or "five minutes" in t)
        await assert_as_embedded_from_scratch(db)


class Unloadable(Counting):
    """Counting, whose model can be made to fail to load (it cannot say its size)."""

    broken = False

    @property
    def dimensions(self) -> int:
        if self.broken:
            raise EmbeddingError("model file is gone")
        return self.inner.dimensions


async def test_an_embedder_that_cannot_load_reuses_nothing_and_fails_no_write(
    db_target: str | Path, tmp_path: Path
) -> None:
    folder, runbook, text = runbook_folder(tmp_path)
    embedder = Unloadable()
    async with Database(db_target, embedder=embedder) as db:
        await db.documents.sync_directory(folder, progress=False)
        runbook.write_text(text.replace("previous release tag", "last good release tag"))
        embedder.broken = True
        with pytest.raises(EmbeddingError, match="model file is gone"):
            await db.documents.sync_directory(folder, progress=False)
        # The new text was written, with no vector taken from the old chunks.
        doc = (await db.documents.list_all_documents())[0]
        chunks = await db.documents.get_chunks(doc["id"])
        assert any("last good release" in c["text"] for c in chunks)
        assert all(c["embedding_model"] is None for c in chunks)
        embedder.broken = False
        done = await db.documents.sync_directory(folder, progress=False)
        assert done.ok and done.embedded_chunks == len(chunks) and done.reused_chunks == 0
        await assert_as_embedded_from_scratch(db)


async def test_index_document_upsert_reuses_vectors_too(db_target: str | Path) -> None:
    embedder = Counting()
    async with Database(db_target, embedder=embedder) as db:
        text = RUNBOOK.format(deploy=DEPLOY)
        await db.documents.index_document("runbook.md", "Runbook", text)
        await db.documents.embed_pending(progress=False)
        embedder.sent.clear()
        edited = text.replace("ten minutes", "five minutes")
        await db.documents.index_document("runbook.md", "Runbook", edited, upsert=True)
        result = await db.documents.embed_pending(progress=False)
        assert result.embedded_chunks == 1 and result.synced == ["runbook.md"]
        assert embedder.sent == [t for t in chunk_texts(edited) if "five minutes" in t]
        await assert_as_embedded_from_scratch(db)


# -- watch ---------------------------------------------------------------------------


async def test_watch_syncs_after_changes(hdb: Database, corpus: Path) -> None:
    summaries: asyncio.Queue[SyncSummary] = asyncio.Queue()
    stop = asyncio.Event()
    task = asyncio.create_task(watch_directory(
        hdb, corpus, debounce=0.2, on_sync=summaries.put_nowait, stop=stop))
    try:
        first = await asyncio.wait_for(summaries.get(), 30)
        assert len(first.added) == 11
        (corpus / "ops" / "pager.md").write_text("# Pager\n\nWho gets woken up at night.\n")
        (corpus / "notes.txt").write_text("ignored: not markdown")
        second = await asyncio.wait_for(summaries.get(), 30)
        assert second.added == ["ops/pager.md"]
        (corpus / "ops" / "pager.md").unlink()
        third = await asyncio.wait_for(summaries.get(), 30)
        assert third.removed == ["ops/pager.md"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    with pytest.raises(InvalidInputError, match="debounce"):
        await watch_directory(hdb, corpus, debounce=-1)


# -- CLI -------------------------------------------------------------------------------


def test_cli_index_and_search(corpus: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["index", db, str(corpus), "--embedder", "hashing",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "11 added" in out and "embedded 37 chunks with hashing-lexical-v1" in out
    assert main(["index", db, str(corpus), "--embedder", "hashing", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unchanged"] == 11 and report["added"] == []
    for mode in ("semantic", "keyword", "hybrid"):
        # the embedder is found from the index when not given
        assert main(["search", db, "how do sessions expire?", "--mode", mode,
                     "-k", "2", "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)["hits"]
        assert hits[0]["chunks"][0]["heading"] == "Expiry", mode  # documents by default
    assert main(["search", db, "SQLITE_BUSY", "--mode", "keyword"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(" 1. ") and "database is locked" in text
    assert main(["index", db, str(corpus / "missing"), "--embedder", "hashing"]) == 2
    assert "not a directory" in capsys.readouterr().err
    plain = str(tmp_path / "plain.db")
    assert main(["index", plain, str(corpus), "--no-embed"]) == 0
    capsys.readouterr()
    assert main(["search", plain, "SQLITE_BUSY", "--json"]) == 0
    captured = capsys.readouterr()
    assert "keyword search only" in captured.err
    assert json.loads(captured.out)["hits"][0]["chunks"][0]["heading"] == "database is locked"
    assert main(["search", str(tmp_path / "none.db"), "x"]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
