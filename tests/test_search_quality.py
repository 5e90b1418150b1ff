"""Search by document, chunks that fit the model's window, the query cache, and
the quality bench (``memkit bench search --quality``) on a small subset."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from abathur_memkit import Database, InvalidInputError
from abathur_memkit.bench.pydocs import DEFAULT_HTML, corpus_pages, html_to_markdown
from abathur_memkit.bench.quality import ModeScores, Question, load_questions, run_quality
from abathur_memkit.cli import main
from abathur_memkit.embeddings import HashingEmbedder, MiniLMEmbedder, OllamaEmbedder
from abathur_memkit.embeddings.base import Vectors
from abathur_memkit.search import DocumentHit, chunk_markdown
from abathur_memkit.search.chunking import TokenWindow, token_window

DOCS = Path(__file__).parent / "data" / "docs"
NO_PYDOCS = not (DEFAULT_HTML / "library" / "json.html").is_file()


class WindowedHashing(HashingEmbedder):
    """The hashing embedder with a small window: one token per 3 characters."""

    max_tokens = 40

    def count_tokens(self, text: str) -> int:
        return 2 + len(text) // 3


class CountingHashing(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.queries: list[str] = []

    async def embed_query(self, text: str) -> Vectors:
        self.queries.append(text)
        return await super().embed_query(text)


# -- chunks fit the embedder's window ---------------------------------------------------


def test_oversize_chunks_are_split_never_cut() -> None:
    window = TokenWindow(lambda text: 2 + len(text) // 3, 40)
    # Short words, long identifiers: few word tokens, many model tokens.
    text = "# Setup\n\n" + " ".join(f"configure_the_{n}_subsystem_parameter" for n in range(60))
    plain = chunk_markdown(text)
    assert not all(window.fits(c) for c in plain)  # what the window guards against
    chunks = chunk_markdown(text, window=window)
    assert chunks and all(window.fits(c) for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert text[c.start : c.end] == c.text and c.heading_path == ("Setup",)
    # Every word is in some chunk: nothing was dropped.
    covered = " ".join(c.text for c in chunks)
    assert all(f"configure_the_{n}_subsystem_parameter" in covered for n in range(60))
    # One "word" longer than the whole window is split by characters.
    blob = "# B\n\n" + "x" * 400
    pieces = chunk_markdown(blob, window=window)
    assert all(window.fits(c) for c in pieces)
    covered_offsets = {i for c in pieces for i in range(c.start, c.end)}
    assert set(range(blob.index("x"), len(blob))) <= covered_offsets


def test_embedders_say_how_they_count() -> None:
    minilm = MiniLMEmbedder()
    window = token_window(minilm)
    assert window is not None and window.size == 256
    assert minilm.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    long = "tokenization " * 400
    assert minilm.count_tokens(long) > 256  # counted uncut
    nomic = OllamaEmbedder()
    nomic_window = token_window(nomic)
    assert nomic_window is not None and nomic_window.size == 8192
    # The prefix is counted, and the offline count is padded, never short.
    assert nomic.count_tokens("hello world") > minilm.count_tokens("hello world")
    assert token_window(OllamaEmbedder("other-model", dimensions=8)) is None
    assert token_window(HashingEmbedder()) is None


async def test_indexed_chunks_fit_the_embedders_window(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ids.md").write_text(
        "# Identifiers\n\n" + " ".join(f"widget_factory_{n}_builder" for n in range(120)))
    embedder = WindowedHashing()
    async with Database(tmp_path / "w.db", embedder=embedder) as db:
        summary = await db.documents.sync_directory(docs, progress=False)
        assert summary.ok
        rows = await db.fetchall("SELECT heading_path, text FROM document_chunks")
    window = token_window(embedder)
    assert window is not None and len(rows) > 1
    from abathur_memkit.search.chunking import embedding_text

    for row in rows:
        assert embedder.count_tokens(embedding_text(row["heading_path"], row["text"])) <= 40


# -- results by document ------------------------------------------------------------------


async def indexed(tmp_path: Path, embedder: HashingEmbedder) -> Database:
    corpus = tmp_path / "docs"
    shutil.copytree(DOCS, corpus)
    db = Database(tmp_path / "d.db", embedder=embedder)
    await db.initialize()
    await db.documents.sync_directory(corpus, progress=False)
    return db


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
async def test_group_by_document_gives_k_distinct_documents(tmp_path: Path, mode: str) -> None:
    db = await indexed(tmp_path, HashingEmbedder())
    try:
        chunks = await db.search.search("memory session agent", 6, mode=mode,
                                        source="documents")
        assert len({h.document_id for h in chunks}) < 6  # chunks of one page crowd in
        docs = await db.search.search("memory session agent", 6, mode=mode,
                                      source="documents", group="document")
        assert len(docs) == 6 and all(isinstance(d, DocumentHit) for d in docs)
        assert len({d.document_id for d in docs}) == 6
        scores = [d.score for d in docs]
        assert scores == sorted(scores, reverse=True)
        for d in docs:
            assert 1 <= len(d.chunks) <= 3
            assert {c.document_id for c in d.chunks} == {d.document_id}
            assert d.file_path == d.chunks[0].file_path and d.title
            assert d.headings and d.headings[0] == d.chunks[0].heading_path
            data = d.to_dict()
            assert data["file_path"] == d.file_path and len(data["chunks"]) == len(d.chunks)
        if mode == "hybrid":
            assert all(set(d.ranks) <= {"semantic", "keyword"} and d.ranks for d in docs)
    finally:
        await db.close()


async def test_group_is_checked_and_memories_are_their_own_documents(tmp_path: Path) -> None:
    db = await indexed(tmp_path, HashingEmbedder())
    try:
        await db.memory.add_memory("project:notes", "deploy",
                                   "deploy the session service on Friday",
                                   "semantic", "system")
        found = await db.search.keyword("session deploy", 10, group="document")
        memories = [d for d in found if d.source == "memory"]
        assert len(memories) == 1 and memories[0].chunks[0].key == "deploy"
        assert memories[0].headings == () and memories[0].location == "project:notes/deploy"
        with pytest.raises(InvalidInputError, match="Invalid group"):
            await db.search.semantic("x", group="page")  # type: ignore[call-overload]
    finally:
        await db.close()


async def test_query_embeddings_are_cached_and_shared_by_hybrid(tmp_path: Path) -> None:
    embedder = CountingHashing()
    db = await indexed(tmp_path, embedder)
    try:
        await db.search.semantic("how do sessions expire", 3)
        await db.search.hybrid("how do sessions expire", 3)
        await db.search.hybrid("how do sessions expire", 3, group="document")
        assert embedder.queries == ["how do sessions expire"]
        db.search.forget_queries()
        await db.search.semantic("how do sessions expire", 3)
        assert len(embedder.queries) == 2
    finally:
        await db.close()


def test_cli_search_shows_documents_by_default(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "docs"
    shutil.copytree(DOCS, corpus)
    dbfile = str(tmp_path / "c.db")
    assert main(["index", str(corpus), "--db", dbfile, "--embedder", "hashing",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "memory session agent", "--db", dbfile, "-k", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["group"] == "document" and len(data["hits"]) == 4
    assert len({h["file_path"] for h in data["hits"]}) == 4
    assert all(h["chunks"] and "headings" in h for h in data["hits"])
    assert main(["search", "memory session agent", "--db", dbfile, "-k", "4", "--chunks",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["group"] == "chunk" and all("chunk_id" in h for h in data["hits"])
    assert main(["search", "memory session agent", "--db", dbfile, "-k", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(" 1. ") and "    › " in text


# -- the quality bench --------------------------------------------------------------------


def test_quality_metrics() -> None:
    qs = [Question(1, "a", ("x.md",), "fit"), Question(2, "b", ("y.md", "z.md"), "test")]
    ranked: list[Sequence[str]] = [["x.md", "q.md"], ["q.md", "z.md", "w.md"]]
    s = ModeScores.of("m", ranked, qs, [1.0, 3.0])
    assert s.recall_at_5 == pytest.approx((1 + 0.5) / 2)
    assert s.mrr_at_10 == pytest.approx((1 + 0.5) / 2)
    assert s.hit_at_1 == 0.5 and s.p50_ms == 2.0


def test_shipped_questions_are_labelled_pages_of_the_corpus() -> None:
    questions = load_questions()
    assert len(questions) >= 50 and len({q.id for q in questions}) == len(questions)
    pages = {str(p.with_suffix(".md")) for p in corpus_pages()} if not NO_PYDOCS else None
    for q in questions:
        assert q.relevant and q.split in ("fit", "test")
        if pages is not None:
            assert set(q.relevant) <= pages, q


def test_html_to_markdown() -> None:
    html = """<html><body><div class="sphinxsidebar">menu</div>
    <div class="body" role="main"><section><h1>json — JSON<a class="headerlink">¶</a></h1>
    <p>Encode <code>dict</code> objects.</p><pre>json.dumps({})
    </pre><ul><li>one</li><li>two</li></ul></section></div><p>footer</p></body></html>"""
    text = html_to_markdown(html)
    assert text.startswith("# json — JSON\n\nEncode dict objects.\n\n```\njson.dumps({})")
    assert "- one\n- two" in text
    assert "menu" not in text and "footer" not in text and "¶" not in text


@pytest.mark.skipif(NO_PYDOCS, reason="the Python docs are not installed "
                    "(apt-get install python3.11-doc; CI does it in scripts/system-deps.sh)")
async def test_quality_bench_on_a_subset(tmp_path: Path) -> None:
    pages = [Path("library", f"{name}.html") for name in
             ("json", "csv", "shutil", "tempfile", "secrets", "hashlib")]
    report = await run_quality(tmp_path, pages=pages, embedder="hashing")
    assert report.pages == 6 and report.chunks > 50
    assert 6 <= len(report.questions) <= 8  # only questions about these pages
    scores = {s.mode: s for s in report.scores()}
    assert set(scores) == {"keyword", "semantic", "hybrid", "bm25", "numpy"}
    for s in scores.values():
        for value in (s.recall_at_5, s.recall_at_10, s.mrr_at_10, s.hit_at_1):
            assert 0 <= value <= 1
        assert s.recall_at_10 >= s.recall_at_5
    assert scores["keyword"].recall_at_10 > 0.5  # the words are there to find
    table = report.table()
    for name in ("recall@5", "recall@10", "MRR@10", "hit@1", "bm25", "fit half", "test half"):
        assert name in table
    assert "semantic / numpy scan" in table


def test_score_fusion_keeps_a_clear_winner_that_rank_fusion_loses() -> None:
    from abathur_memkit.search.fusion import reciprocal_rank_fusion, score_fusion

    semantic = [("a", 0.90), ("b", 0.50), ("c", 0.45)]  # "a" far ahead
    keyword = [("c", 10.0), ("b", 6.0), ("d", 5.0)]  # "a" has none of the words
    by_score = score_fusion([semantic, keyword], [0.7, 0.3])
    assert [item for item, _ in by_score][:2] == ["a", "c"]
    assert by_score[0][1] == pytest.approx(0.7)
    by_rank = reciprocal_rank_fusion([[i for i, _ in semantic], [i for i, _ in keyword]])
    assert "a" not in [i for i, _ in by_rank[:2]]  # middling twice beats first once
    assert score_fusion([[("x", 1.0)], []], [0.7, 0.3]) == [("x", 0.7)]
    with pytest.raises(ValueError, match="one weight per list"):
        score_fusion([semantic], [0.7, 0.3])


async def test_hybrid_rank_fusion_is_still_there_on_request(tmp_path: Path) -> None:
    db = await indexed(tmp_path, HashingEmbedder())
    try:
        scored = await db.search.hybrid("how do sessions expire", 3)
        ranked = await db.search.hybrid("how do sessions expire", 3, rrf_k=60)
        assert len(scored) == len(ranked) == 3
        assert all(h.score <= 1.0 for h in scored) and scored[0].score > ranked[0].score
        assert ranked[0].score <= 2 / 61  # two votes of at most 1/(60+1)
    finally:
        await db.close()
