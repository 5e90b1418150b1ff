"""Search: chunking, the two vector backends, the three search modes, memories.

The labelled set (tests/data/docs, queries.json) is searched with the offline
MiniLM model for real; recall@5 of each mode is printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ollama_stub import OllamaStub

from abathur_memkit import Database, EmbeddingError, InvalidInputError
from abathur_memkit.cli import main
from abathur_memkit.embeddings import HashingEmbedder, MiniLMEmbedder, OllamaEmbedder
from abathur_memkit.engines.sqlite.driver import load_extension, select_driver
from abathur_memkit.search import (
    IdFilter,
    SearchHit,
    StaleIndexError,
    VecBackend,
    VssBackend,
    chunk_markdown,
    fts_query,
    make_backend,
    reciprocal_rank_fusion,
)
from abathur_memkit.search.backends import backend_unavailable
from abathur_memkit.search.chunking import count_tokens, front_matter, title_of

DOCS = Path(__file__).parent / "data" / "docs"
VSS_MISSING = backend_unavailable("vss")
needs_vss = pytest.mark.skipif(
    VSS_MISSING is not None,
    reason=f"sqlite-vss cannot load here ({VSS_MISSING}); CI installs libblas3 liblapack3 "
           "libgomp1 via scripts/system-deps.sh",
)
BACKENDS = ["vec", pytest.param("vss", marks=needs_vss)]
#: Every backend, pgvector on a fresh PostgreSQL database.
ALL_BACKENDS = [*BACKENDS, "pgvector"]


def location(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str | Path:
    """Where a database of ``backend`` lives: a file, or a PostgreSQL DSN for pgvector."""
    if backend == "pgvector":
        return str(request.getfixturevalue("pg_memkit_dsn"))
    return tmp_path / f"{backend}.db"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    target = tmp_path / "docs"
    shutil.copytree(DOCS, target)
    return target


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def clustered(n: int, dims: int, queries: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    from abathur_memkit.bench.search import clustered_vectors

    return clustered_vectors(n, dims, queries, seed=seed, per_cluster=20)


def rel(hit: SearchHit, root: Path) -> str:
    return f"{Path(str(hit.file_path)).relative_to(root.resolve()).as_posix()}#{hit.heading}"


# -- chunking --------------------------------------------------------------------------


def test_chunks_follow_headings_with_paths_and_exact_offsets() -> None:
    text = (DOCS / "guides" / "sessions.md").read_text()
    chunks = chunk_markdown(text)
    assert [c.heading_path for c in chunks] == [
        ("Session lifecycle",),
        ("Session lifecycle", "States"),
        ("Session lifecycle", "Expiry"),
        ("Session lifecycle", "Temporary state"),
    ]
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.tokens == count_tokens(c.text)
    assert "title: Session lifecycle" not in chunks[0].text  # front matter is not a chunk
    assert chunks[2].heading == "Expiry"
    assert chunks[2].embedding_text().startswith("Session lifecycle\n\n## Expiry")


def test_long_sections_split_at_the_token_bound_with_overlap() -> None:
    body = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(120))
    text = f"# Title\n\n## Long\n\n{body}\n\n```\n# not a heading\n```\n"
    chunks = chunk_markdown(text, max_tokens=60, overlap=10)
    assert len(chunks) > 5
    assert all(c.tokens <= 60 for c in chunks)
    assert all(c.heading_path == ("Title", "Long") for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end  # overlap
        assert text[b.start : a.end].strip()
    # cuts prefer sentence ends
    assert sum(c.text.rstrip().endswith(".") for c in chunks[:-1]) >= len(chunks) - 2
    assert "# not a heading" in chunks[-1].text  # fenced code is not a heading
    with pytest.raises(InvalidInputError, match="overlap"):
        chunk_markdown(text, max_tokens=60, overlap=40)


def test_front_matter_and_titles() -> None:
    text = "---\ntitle: T\ntype: plan\n---\nbody"
    assert front_matter(text) == ({"title": "T", "type": "plan"}, text.index("body"))
    assert title_of("no heading", "fallback") == "fallback"
    assert title_of("intro\n# First\n## Second", "x") == "First"
    assert chunk_markdown("") == [] and chunk_markdown("# Only a heading\n") == []


def test_fts_query_and_fusion() -> None:
    assert fts_query("how do sessions expire?") == '"sessions" OR "expire"'
    assert fts_query('user:alice2 "quoted" -x') == '"user" OR "alice2" OR "quoted" OR "x"'
    assert fts_query("?!") == ""
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60)
    assert [item for item, _ in fused] == ["a", "c", "b"]


# -- vector backends ---------------------------------------------------------------------


class Conn:
    """A DB-API connection with the backend kind it has loaded."""

    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: Path, kind: str) -> None:
        self.kind = kind
        self.raw = select_driver().connect(str(path))
        self.raw.execute("PRAGMA journal_mode = WAL")
        load_extension(self.raw, kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class PgConn:
    """A PostgreSQL connection as the engine gives it to a service, for pgvector."""

    kind = "pgvector"
    begin = "BEGIN"

    def __init__(self, dsn: str) -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        from abathur_memkit.engines.postgresql.connection import (
            PgConnection,
            PgCursor,
            configure,
            row_factory,
        )

        self.raw = psycopg.connect(dsn, autocommit=True, row_factory=row_factory,
                                   cursor_factory=PgCursor)
        configure(self.raw)
        register_vector(self.raw)
        self.conn = PgConnection(self.raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


@pytest.fixture
def conn(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Conn | PgConn]:
    c: Conn | PgConn
    if request.param == "pgvector":
        c = PgConn(str(request.getfixturevalue("pg_memkit_dsn")))
    else:
        c = Conn(tmp_path / "vectors.db", request.param)
    yield c
    c.raw.close()


def write(conn: Any, fn: Any) -> Any:
    conn.execute(getattr(conn, "begin", "BEGIN IMMEDIATE"))
    try:
        out = fn()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return out


@pytest.mark.parametrize("conn", ALL_BACKENDS, indirect=True)
def test_backend_knn_recall_against_exact(conn: Any) -> None:
    data, queries = clustered(3000, 96, 20)
    backend = make_backend(conn.kind, "t", 96)
    write(conn, lambda: backend.create(conn))
    assert backend.search(conn, queries[0], 5) == []  # empty index: no crash, no hits
    ids = list(range(1, 3001))
    write(conn, lambda: backend.upsert(conn, ids, data))
    assert backend.count(conn) == 3000
    recalls = []
    for q in queries:
        truth = np.argsort(-(data @ q))[:10] + 1
        hits = backend.search(conn, q, 10)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        np.testing.assert_allclose(hits[0][1], float(data[hits[0][0] - 1] @ q), rtol=1e-5)
        recalls.append(len({i for i, _ in hits} & set(truth.tolist())) / 10)
        assert [i for i, _ in backend.exact(conn, q, 10)] == truth.tolist()
    print(f"\n{conn.kind}: recall@10 = {np.mean(recalls):.3f} on 3000 x 96 clustered")
    assert np.mean(recalls) >= 0.9


@pytest.mark.parametrize("conn", ALL_BACKENDS, indirect=True)
def test_backend_replace_delete_and_filter(conn: Any) -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((200, 32)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    backend = make_backend(conn.kind, "t", 32)
    write(conn, lambda: backend.create(conn))
    write(conn, lambda: backend.upsert(conn, list(range(1, 201)), data))
    q = data[9]
    assert backend.search(conn, q, 1)[0][0] == 10
    # replace id 10 with another vector; delete id 11
    write(conn, lambda: backend.upsert(conn, [10], data[[100]]))
    assert write(conn, lambda: backend.delete(conn, [11, 9999])) == 1
    assert backend.count(conn) == 199
    top = backend.search(conn, data[100], 2)
    assert {i for i, _ in top} == {10, 101}
    assert 11 not in {i for i, _ in backend.search(conn, data[10], 200)}
    np.testing.assert_array_equal(backend.get(conn, [10])[10], data[100])
    # a filter the approximate stage cannot satisfy falls back to an exact scan
    only = IdFilter("SELECT id FROM t_vectors WHERE id % 50 = ?", "id", (7,))
    hits = backend.search(conn, q, 3, id_filter=only)
    assert len(hits) == 3 and all(i % 50 == 7 for i, _ in hits)
    assert [i for i, _ in hits] == [i for i, _ in backend.exact(conn, q, 3, id_filter=only)]


@pytest.mark.parametrize("conn", ALL_BACKENDS, indirect=True)
def test_backend_wrong_dimensions_are_clear_errors(conn: Any) -> None:
    backend = make_backend(conn.kind, "t", 16)
    write(conn, lambda: backend.create(conn))
    with pytest.raises(InvalidInputError, match=r"shape \(2, 8\), expected \(16,\) or \(n, 16\)"):
        backend.upsert(conn, [1, 2], np.zeros((2, 8), np.float32))
    with pytest.raises(InvalidInputError, match="one vector per id"):
        backend.upsert(conn, [1], np.zeros((2, 16), np.float32))
    with pytest.raises(InvalidInputError, match="dtype float32"):
        backend.upsert(conn, [1], np.zeros((1, 16), np.float64))
    with pytest.raises(InvalidInputError, match="L2-normalised"):
        backend.upsert(conn, [1], np.full((1, 16), 0.5, np.float32))
    with pytest.raises(InvalidInputError, match="query vector"):
        backend.search(conn, np.zeros(15, np.float32), 3)
    with pytest.raises(InvalidInputError, match="Invalid k"):
        backend.search(conn, np.zeros(16, np.float32), 0)


@needs_vss
def test_vss_shards_and_other_connections_see_deletes(tmp_path: Path) -> None:
    path = str(tmp_path / "vss.db")
    writer, reader = (select_driver().connect(path) for _ in range(2))
    for c in (writer, reader):
        c.execute("PRAGMA journal_mode = WAL")
        load_extension(c, "vss")
    try:
        rng = np.random.default_rng(5)
        data = rng.standard_normal((25, 8)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        backend = VssBackend("t", 8, shard_size=10)
        write(writer, lambda: backend.create(writer))
        write(writer, lambda: backend.upsert(writer, list(range(1, 26)), data))
        assert backend.shard_count(writer) == 3 and backend.count(writer) == 25
        assert backend.search(reader, data[4], 1)[0][0] == 5  # the reader loads the index
        write(writer, lambda: backend.delete(writer, [5]))
        # sqlite-vss keeps each connection's index in memory; the schema bump reloads it.
        assert 5 not in [i for i, _ in backend.search(reader, data[4], 25)]
        write(writer, lambda: backend.upsert(writer, [5], data[[20]]))
        assert {i for i, _ in backend.search(reader, data[20], 2)} == {5, 21}
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("conn", ALL_BACKENDS, indirect=True)
def test_vectors_that_look_like_a_vss_header(conn: Any) -> None:
    # A float32 blob starting b"v\x01" is sqlite-vss's own format; sent bare it
    # was misread and shifted every later vector of its table (1 in 65,536).
    rng = np.random.default_rng(11)
    data = rng.standard_normal((300, 16)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    first = np.frombuffer(b"v\x01\x10\x3d", np.float32)[0]  # about 0.035
    data[5, 1:] *= np.sqrt(1 - first**2) / np.linalg.norm(data[5, 1:])
    data[5, 0] = first
    assert data[5].tobytes()[:2] == b"v\x01"
    backend = make_backend(conn.kind, "t", 16)
    write(conn, lambda: backend.create(conn))
    write(conn, lambda: backend.upsert(conn, list(range(1, 301)), data))
    for q in (*data[[5, 6, 200]], data[5]):
        exact = backend.exact(conn, q, 5)
        found = backend.search(conn, q, 5)
        assert [i for i, _ in found] == [i for i, _ in exact]
        np.testing.assert_allclose([s for _, s in found], [s for _, s in exact], rtol=1e-5)
        assert exact[0][0] - 1 == int(np.argmax(data @ q))


def test_pgvector_search_sets_its_ef_search(pg_memkit_dsn: str) -> None:
    conn = PgConn(pg_memkit_dsn)
    try:
        rng = np.random.default_rng(2)
        data = rng.standard_normal((50, 8)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        backend = make_backend("pgvector", "t", 8, ef_search=40)
        write(conn, lambda: backend.create(conn))
        write(conn, lambda: backend.upsert(conn, list(range(1, 51)), data))

        def ef_search() -> str:
            return str(conn.execute("SHOW hnsw.ef_search").fetchone()[0])

        assert backend.search(conn, data[3], 10)[0][0] == 4 and ef_search() == "40"
        backend.search(conn, data[3], 100)  # more wanted than ef_search: raised to it
        assert ef_search() == "100"
        conn.execute("BEGIN")
        backend.search(conn, data[3], 10)
        conn.execute("ROLLBACK")  # takes the setting back with it
        assert ef_search() == "100"
        backend.search(conn, data[3], 10)
        assert ef_search() == "40"
    finally:
        conn.raw.close()


def test_backend_settings_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="Invalid vector_backend"):
        make_backend("faiss", "t", 8)
    with pytest.raises(InvalidInputError, match="index name"):
        VecBackend("bad name", 8)
    with pytest.raises(InvalidInputError, match="shards"):
        VecBackend("t", 8, shards=0)
    with pytest.raises(InvalidInputError, match="ef_search must be an int from 1 to 1000"):
        make_backend("pgvector", "t", 8, ef_search=0)
    assert VecBackend("t", 384).oversample > VecBackend("t", 768).oversample


# -- the three modes on the labelled set, with the offline model --------------------------


def labelled() -> list[dict[str, Any]]:
    return list(json.loads((DOCS / "queries.json").read_text())["queries"])


async def recall_at(db: Database, root: Path, mode: str, k: int = 5) -> float:
    scores = []
    for item in labelled():
        hits = await db.search.search(item["query"], k, mode=mode, source="documents")
        found = {rel(h, root) for h in hits}
        scores.append(len(set(item["relevant"]) & found) / len(item["relevant"]))
    return float(np.mean(scores))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_labelled_queries_hybrid_recall(
    corpus: Path, tmp_path: Path, minilm: MiniLMEmbedder, backend: str,
    request: pytest.FixtureRequest,
) -> None:
    where = location(request, tmp_path, backend)
    async with Database(where, embedder=minilm, vector_backend=backend) as db:
        summary = await db.documents.sync_directory(corpus, progress=False)
        assert summary.ok and summary.synced == 11 and summary.model == "all-MiniLM-L6-v2"
        recall = {mode: await recall_at(db, corpus, mode) for mode in
                  ("keyword", "semantic", "hybrid")}
    print(f"\nrecall@5 on {len(labelled())} labelled queries ({backend}): "
          + ", ".join(f"{m} {r:.3f}" for m, r in recall.items()))
    assert recall["hybrid"] >= max(recall["keyword"], recall["semantic"])
    assert recall["semantic"] >= 0.8 and recall["keyword"] >= 0.7


async def test_search_results_carry_what_they_say(corpus: Path, db_target: str | Path,
                                                  minilm: MiniLMEmbedder) -> None:
    async with Database(db_target, embedder=minilm) as db:
        await db.documents.sync_directory(corpus, progress=False)
        (hit,) = await db.search.keyword("SQLITE_BUSY", 1)
        assert hit.source == "document" and hit.heading == "database is locked"
        assert hit.heading_path == "Troubleshooting > database is locked"
        assert hit.document_type == "report" and hit.title == "Troubleshooting"
        # FTS5 marks a matched phrase as one span; ts_headline marks each word.
        marked = {"sqlite": "[SQLITE_BUSY]", "postgresql": "[SQLITE]_[BUSY]"}[db.dialect]
        assert hit.snippet is not None and marked in hit.snippet
        text = Path(str(hit.file_path)).read_text()
        assert text[hit.start_offset : hit.end_offset] == hit.text
        sem = await db.search.semantic("close idle conversations", 3)
        assert sem[0].heading == "Expiry" and -1 <= sem[0].score <= 1
        hyb = await db.search.hybrid("how do sessions expire?", 5)
        assert hyb[0].heading == "Expiry" and set(hyb[0].ranks) == {"semantic", "keyword"}
        typed = await db.search.hybrid("memory", 10, document_type="plan")
        assert typed and {h.document_type for h in typed} == {"plan"}
        assert await db.search.keyword("zzzqqq", 5) == []
        assert hit.to_dict()["source"] == "document" and "namespace" not in hit.to_dict()


async def test_search_argument_errors(memdb: Database) -> None:
    with pytest.raises(InvalidInputError, match="Invalid k"):
        await memdb.search.keyword("x", 0)
    with pytest.raises(InvalidInputError, match="Invalid query"):
        await memdb.search.keyword("  ")
    with pytest.raises(InvalidInputError, match="Invalid source"):
        await memdb.search.keyword("x", source="web")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="Invalid document_type"):
        await memdb.search.keyword("x", document_type="memo")
    with pytest.raises(InvalidInputError, match="pass source="):
        await memdb.search.keyword("x", document_type="plan", memory_type="episodic")
    with pytest.raises(InvalidInputError, match="Invalid search mode"):
        await memdb.search.search("x", mode="fuzzy")
    with pytest.raises(InvalidInputError, match="Invalid FTS5 query"):
        await memdb.search.keyword('"unbalanced', raw=True)
    with pytest.raises(Exception, match="no embedder configured"):
        await memdb.search.semantic("x")


# -- embedders: Ollama through the stub server, errors ------------------------------------


@pytest.fixture
def stub() -> Iterator[OllamaStub]:
    with OllamaStub() as server:
        yield server


async def test_ollama_embedder_end_to_end(corpus: Path, db_target: str | Path,
                                          stub: OllamaStub) -> None:
    embedder = OllamaEmbedder(host=stub.host, batch_size=16)
    async with Database(db_target, embedder=embedder) as db:
        summary = await db.documents.sync_directory(corpus, progress=False)
        assert summary.ok and summary.model == "nomic-embed-text"
        sent = [t for batch in stub.embed_batches for t in batch]
        assert len(sent) == summary.embedded_chunks
        assert all(t.startswith("search_document: ") for t in sent)
        hits = await db.search.semantic("MEMKIT_SQLITE_DRIVER environment variable", 3)
        assert stub.embed_batches[-1] == ["search_query: MEMKIT_SQLITE_DRIVER environment variable"]
        assert hits[0].heading == "Configuration"
        status = await db.search.status()
        assert status["indexes"]["chunks"]["dimensions"] == 768
        assert status["indexes"]["chunks"]["vectors"] == summary.embedded_chunks


async def test_server_down_marks_documents_failed_and_search_says_so(
    corpus: Path, db_target: str | Path, stub: OllamaStub
) -> None:
    host = stub.host
    stub.stop()
    async with Database(db_target, embedder=OllamaEmbedder(host=host)) as db:
        summary = await db.documents.sync_directory(corpus, progress=False)
        assert not summary.ok and len(summary.failed) == 11 and summary.synced == 0
        assert "cannot connect" in summary.failed[0][1] and host in summary.failed[0][1]
        doc = await db.documents.get_document(str(corpus.resolve() / "ops" / "backups.md"))
        assert doc is not None and doc["sync_status"] == "failed"
        assert "cannot connect" in doc["metadata"]["last_error"]
        with pytest.raises(EmbeddingError, match="cannot connect"):
            await db.search.semantic("backups")
        # keyword search does not need the server
        assert (await db.search.keyword("checkpoint"))[0].heading == "Checkpoints"


class WrongSize:
    """An embedder that claims 16 dimensions and returns 8."""

    name = "wrong-size"
    dimensions = 16

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), 8), 8**-0.5, np.float32)

    async def embed_query(self, text: str) -> np.ndarray:
        return np.full(8, 8**-0.5, np.float32)


async def test_wrong_dimensions_are_clear_errors(corpus: Path, db_target: str | Path) -> None:
    async with Database(db_target, embedder=WrongSize()) as db:
        summary = await db.documents.sync_directory(corpus, progress=False)
        assert len(summary.failed) == 11
        assert "shape (" in summary.failed[0][1] and "wrong model or wrong dimensions" in \
            summary.failed[0][1]
        with pytest.raises(InvalidInputError, match="wrong model or wrong dimensions"):
            await db.search.semantic("anything")
        doc_id = (await db.documents.list_all_documents())[0]["id"]
        with pytest.raises(InvalidInputError, match=r"expected \(16,\)"):
            await db.documents.update_embedding(doc_id, np.zeros(8, np.float32), "wrong-size")


async def test_model_change_marks_stale_and_reembed_is_one_call(
    corpus: Path, db_target: str | Path
) -> None:
    path = db_target
    async with Database(path, embedder="hashing") as db:
        await db.documents.sync_directory(corpus, progress=False)
        await db.memory.add_memory("user:a", "k", "a note on checkpoints", "semantic", "system")
        assert (await db.search.semantic("checkpoints", 1))[0].source in ("document", "memory")
    async with Database(path, embedder=HashingEmbedder(128)) as db:
        with pytest.raises(StaleIndexError, match=r"384 dims.*128 dims.*reembed"):
            await db.search.semantic("checkpoints")
        status = await db.search.status()
        assert status["indexes"]["chunks"]["stale"] is True
        counts = await db.search.reembed()
        assert counts == {"chunks": 37, "memories": 1}
        docs = await db.documents.list_all_documents()
        assert {d["sync_status"] for d in docs} == {"synced"}
        hits = await db.search.semantic("checkpoints", 3)
        assert hits and all(h.score <= 1.0001 for h in hits)
        assert (await db.search.status())["indexes"]["chunks"]["dimensions"] == 128
    # sync_directory alone also re-embeds everything when the model changes
    async with Database(path, embedder="hashing") as db:
        summary = await db.documents.sync_directory(corpus, progress=False)
        assert summary.reembedded_all and summary.embedded_chunks == 37
        assert summary.unchanged == 11 and summary.synced == 11


# -- memories --------------------------------------------------------------------------


@pytest.fixture(params=ALL_BACKENDS)
async def mdb(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    async with Database(location(request, tmp_path, request.param), embedder="hashing",
                        vector_backend=request.param) as database:
        yield database


async def keys(db: Database, query: str, mode: str = "hybrid", **kw: Any) -> list[str]:
    return [f"{h.namespace}/{h.key}" for h in
            await db.search.search(query, 10, mode=mode, source="memories", **kw)]


async def test_memory_search_follows_every_kind_of_write(mdb: Database) -> None:
    mem = mdb.memory
    await mem.add_memory("user:alice", "editor", "prefers dark mode", "semantic", "system")
    await mem.add_memory("user:alice2", "editor", "prefers dark mode too", "semantic", "system")
    assert await keys(mdb, "dark mode", "keyword", namespace_prefix="user:alice") == \
        ["user:alice/editor"]
    await mem.update_memory("user:alice", "editor", "prefers solarized light", "system")
    for mode in ("keyword", "semantic"):
        found = await keys(mdb, "solarized", mode, namespace_prefix="user:alice")
        assert found[0] == "user:alice/editor"
    assert await keys(mdb, "dark", "keyword", namespace_prefix="user:alice") == []
    (hit,) = await mdb.search.keyword("solarized", 5, source="memories")
    assert hit.version == 2 and hit.text == "editor: prefers solarized light"
    await mem.delete_memory("user:alice", "editor")
    assert "user:alice/editor" not in await keys(mdb, "solarized", "semantic")
    assert "user:alice/editor" not in await keys(mdb, "solarized", "keyword")
    await mem.restore_memory("user:alice", "editor")
    assert (await keys(mdb, "solarized", "semantic"))[0] == "user:alice/editor"
    await mem.rollback_memory("user:alice", "editor", 1, "system")
    assert (await keys(mdb, "dark mode", "keyword", namespace_prefix="user:alice"))[0] == \
        "user:alice/editor"
    await mem.add_memories([{"namespace": "session:s1", "key": "draft", "value": "ship it"},
                            {"namespace": "project:p", "key": "plan",
                             "value": {"steps": ["ship", "celebrate"]},
                             "memory_type": "procedural"}], "system")
    await mem.publish_memory("session:s1", "draft", "project:p", "system", to_key="ship")
    assert set(await keys(mdb, "ship", "keyword")) == \
        {"session:s1/draft", "project:p/plan", "project:p/ship"}
    assert await keys(mdb, "ship", "keyword", memory_type="procedural") == ["project:p/plan"]
    status = await mdb.search.status()
    assert status["pending_memory_keys"] == 0
    # The keyword searches since the last semantic one indexed text, not vectors.
    assert status["unembedded_memories"] == await mdb.search.unembedded_memories() >= 3
    await mdb.search.sync_memories()  # keyword searches index text; this embeds too
    await mdb.search.purge()
    status = await mdb.search.status()
    assert status["unembedded_memories"] == 0
    # one vector per live key, none for old versions
    assert status["indexes"]["memories"]["vectors"] == 5


async def test_a_read_only_search_never_writes_nor_returns_a_stale_memory(
    mdb: Database, capsys: pytest.CaptureFixture[str],
) -> None:
    mem = mdb.memory
    for key, text in (("alpha", "a locked door"), ("bravo", "locked out"),
                      ("charlie", "locked in")):
        await mem.add_memory("user:a", key, text, "semantic", "t")
    await mdb.search.sync_memories()  # indexed and embedded
    await mem.update_memory("user:a", "alpha", "an open door", "t")
    await mem.delete_memory("user:a", "bravo")
    await mem.add_memory("user:a", "delta", "locked again", "semantic", "t")

    def queued(conn: Any) -> list[tuple[str, str]]:
        return sorted(tuple(r) for r in conn.execute(
            "SELECT namespace, key FROM memory_search_queue").fetchall())

    before = await mdb.read(queued)
    assert [k for _, k in before] == ["alpha", "bravo", "delta"]
    async with Database(mdb.path, read_only=True, embedder="hashing",
                        vector_backend=mdb.vector_backend) as ro:
        assert ro.search.read_only and await ro.search.pending_memory_keys() == 3
        for mode in ("keyword", "semantic", "hybrid"):
            hits = await ro.search.search("locked door", 10, mode=mode, source="memories")
            # alpha's indexed version is not its latest, bravo is deleted, delta not indexed
            assert [(h.key, h.version) for h in hits] == [("charlie", 1)], mode
            grouped = await ro.search.search("locked door", 10, mode=mode, group="document")
            assert [d.best.key for d in grouped] == ["charlie"], mode
            assert await keys(ro, "locked", mode, memory_type="semantic") == ["user:a/charlie"]
    # The command reads the same way, on either engine, and says what it left out.
    argv = ["search", str(mdb.path), "locked door", "--source", "memories", "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert [d["chunks"][0]["key"] for d in report["hits"]] == ["charlie"]
    assert report["pending_memory_keys"] == 3 and "3 memory keys changed" in err
    assert await mdb.read(queued) == before
    # A writable search catches up first, as ever.
    found = {h.key: h for h in await mdb.search.search("locked door", 10, mode="hybrid",
                                                        source="memories")}
    assert {(k, h.version) for k, h in found.items()} == {
        ("alpha", 2), ("charlie", 1), ("delta", 1)}
    assert found["alpha"].text == "alpha: an open door"
    assert await mdb.search.pending_memory_keys() == 0


async def test_a_read_only_semantic_search_skips_vectors_it_cannot_purge(
    corpus: Path, db_target: str | Path,
) -> None:
    async with Database(db_target, embedder="hashing") as db:
        await db.documents.sync_directory(corpus, progress=False)
        every = await db.search.semantic("checkpoints and backups", 40, source="documents")
        assert len(every) == 37
    async with Database(db_target) as db:  # no embedder: a delete here leaves garbage
        gone = await db.execute("DELETE FROM document_chunks WHERE id IN (?, ?, ?)",
                                [h.chunk_id for h in every[:3]])
        assert gone == 3
    async with Database(db_target, read_only=True, embedder="hashing") as ro:
        garbage = await ro.fetchall("SELECT id FROM vector_garbage")
        assert {r["id"] for r in garbage} == {h.chunk_id for h in every[:3]}
        hits = await ro.search.semantic("checkpoints and backups", 5, source="documents")
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in every[3:8]]


async def test_all_sources_together(corpus: Path, mdb: Database) -> None:
    await mdb.documents.sync_directory(corpus, progress=False)
    await mdb.memory.add_memory("project:p", "backups", "nightly backup to object storage",
                                "semantic", "system")
    hits = await mdb.search.hybrid("backup object storage", 5)
    assert {h.source for h in hits} == {"document", "memory"}
    assert any(h.key == "backups" for h in hits) and any(h.heading == "Online backup"
                                                         for h in hits)


async def test_memory_search_drain_waits_for_a_write_in_progress_on_its_key(
    pg_memkit_dsn: str,
) -> None:
    # PostgreSQL only (SQLite has one writer). A write in progress finds its key
    # queued already; a drain that read the version before it and emptied the
    # queue would lose that write. Raw inserts: the triggers do the queueing.
    import psycopg

    insert = ("INSERT INTO memory_entries (namespace, key, value, memory_type, version) "
              "VALUES ('user:a', 'k', ?, 'semantic', ?)")
    async with Database(pg_memkit_dsn) as db:
        await db.write(lambda conn: conn.execute(insert, ('"first plan"', 1)))
        assert [h.version for h in await db.search.keyword("plan", source="memories")] == [1]
        await db.write(lambda conn: conn.execute(insert, ('"second plan"', 2)))  # queued
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as writer:
            writer.execute("BEGIN")
            writer.execute(insert.replace("?", "%s"), ('"third plan"', 3))
            drain = asyncio.create_task(db.search.sync_memories(embed=False))
            while not drain.done() and not writer.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
                await asyncio.sleep(0.01)
            writer.execute("COMMIT")
            await drain
        hits = await db.search.keyword("plan", source="memories")
        assert [(h.version, h.text) for h in hits] == [(3, "k: third plan")]
