"""Hostile input to search: odd queries, and an embedder that returns the wrong vectors.

Skipped with a reason while ``db.search`` is not in the build.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dbdump import dump
from hostile_strategies import SQL_AND_WILDCARDS, odd_text
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import PROFILE, TRIED, Harness

from abathur_memkit import InvalidInputError, MemkitError
from abathur_memkit.embeddings import HashingEmbedder


def _search_available() -> bool:
    try:
        from abathur_memkit.search import SearchService
    except ImportError:
        return False
    return hasattr(SearchService, "keyword") and hasattr(SearchService, "semantic")


pytestmark = pytest.mark.skipif(not _search_available(),
                                reason="db.search is not in this build yet")

FTS_SYNTAX = ['"', '""', "*", "a*", "NEAR(a b)", "a AND", "OR", "NOT x", "^a", "title:x",
              "{a b}", "(", ")", "a + b", "-a", "a:b:c", "\\", "'", "NEAR(", "AND OR NOT"]


class LyingEmbedder:
    """Claims 384 dimensions, returns something else."""

    def __init__(self, vector: Any) -> None:
        self.vector = vector
        self.name = "liar-v1"
        self.dimensions = 384

    async def embed_documents(self, texts: Sequence[str]) -> Any:
        return np.stack([self.vector] * len(texts)) if isinstance(self.vector, np.ndarray) \
            else [self.vector] * len(texts)

    async def embed_query(self, text: str) -> Any:
        return self.vector


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("search") / "search.db")
    db = h.db

    async def fill() -> None:
        for i, text in enumerate(["alpha beta", "gamma delta", "quote ' and % and _"]):
            await db.documents.index_document(f"/docs/d{i}.md", f"Doc {i}", f"# Doc {i}\n\n{text}")
        await db.memory.add_memory("user:alice", "k", "alpha memory", "semantic", "s")
        await db.search.keyword("alpha")  # first sync of memories into the index

    h.run(fill())
    try:
        yield h
    finally:
        h.close()


@PROFILE
@given(query=st.one_of(odd_text, st.sampled_from(FTS_SYNTAX + SQL_AND_WILDCARDS),
                       st.lists(st.sampled_from(FTS_SYNTAX), min_size=2, max_size=5).map(
                           " ".join)),
       raw=st.booleans())
def test_keyword_search_takes_any_text(indexed: Harness, query: str, raw: bool) -> None:
    TRIED["search query"] += 1
    before = indexed.run(dump(indexed.db))
    try:
        hits = indexed.run(indexed.db.search.keyword(query, 5, raw=raw))
    except InvalidInputError as exc:
        # Only an empty query, or FTS5 syntax the caller asked for, may be refused.
        assert raw or not query.strip(), f"{query!r}: {exc}"
        assert "query" in str(exc)
    else:
        assert isinstance(hits, list)
    assert indexed.run(dump(indexed.db)) == before


@pytest.mark.parametrize("vector", [
    np.zeros(383, np.float32), np.zeros(385, np.float32), np.zeros(384, np.float64),
    np.zeros((2, 384), np.float32),
    np.full(384, np.nan, np.float32), [0.0] * 384, None,
])
async def test_semantic_search_refuses_wrong_query_vectors(db_target: str | Path,
                                                           vector: Any) -> None:
    from abathur_memkit import Database

    TRIED["bad vector"] += 1
    async with Database(db_target, embedder=LyingEmbedder(vector)) as db:
        before = await dump(db)
        with pytest.raises(MemkitError) as info:
            await db.search.semantic("anything", 3)
        assert any(w in str(info.value) for w in ("dtype", "shape", "NaN", "numpy", "dimension"))
        assert await dump(db) == before


async def test_semantic_search_works_with_an_honest_embedder(tmp_path: Path,
                                                             db_target: str | Path) -> None:
    from abathur_memkit import Database

    async with Database(db_target, embedder=HashingEmbedder()) as db:
        await db.documents.index_document(str(tmp_path / "a.md"), "A", "# A\n\nalpha beta")
        hits = await db.search.semantic("alpha", 3, source="documents")
        assert isinstance(hits, list)


# -- lone surrogates, wrong types, bad numbers: InvalidInputError, nothing changed ----------------

SURROGATE_QUERIES = ["\ud800", "alpha \udfff", "\udc80beta", "alpha OR \ud83d"]


@pytest.mark.parametrize("query", SURROGATE_QUERIES)
@pytest.mark.parametrize("mode", ["keyword", "raw", "semantic", "hybrid"])
async def test_queries_with_lone_surrogates_are_refused(db_target: str | Path, query: str,
                                                        mode: str) -> None:
    from abathur_memkit import Database

    TRIED["search query"] += 1
    async with Database(db_target, embedder=HashingEmbedder()) as db:
        await db.documents.index_document("/docs/a.md", "A", "# A\n\nalpha beta")
        before = await dump(db)
        with pytest.raises(InvalidInputError, match="Invalid query: not encodable as UTF-8"):
            if mode == "raw":
                await db.search.keyword(query, 3, raw=True)
            else:
                await db.search.search(query, 3, mode=mode)
        assert await dump(db) == before


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"rrf_k": -1}, "rrf_k"), ({"rrf_k": "60"}, "rrf_k"), ({"rrf_k": 1.5}, "rrf_k"),
    # rrf_k=None is the default: score fusion instead of rank fusion.
    ({"rrf_k": True}, "rrf_k"), ({"rrf_k": 2**64}, "rrf_k"),
    ({"candidates": 0}, "k"), ({"candidates": "40"}, "k"),
])
async def test_hybrid_refuses_bad_numbers(db_target: str | Path, kwargs: dict[str, Any],
                                          names: str) -> None:
    from abathur_memkit import Database

    async with Database(db_target, embedder=HashingEmbedder()) as db:
        await db.documents.index_document("/docs/a.md", "A", "# A\n\nalpha beta")
        with pytest.raises(InvalidInputError, match=f"Invalid {names}"):
            await db.search.hybrid("alpha", 3, **kwargs)
        assert await db.search.hybrid("alpha", 3, rrf_k=0)  # the bound itself is fine


BAD_PATHS: list[Any] = [None, 5, 1.5, b"/docs/d0.md", ["/docs/d0.md"], "", "   ", "a\x00b",
                        "/docs/\ud800.md", "/docs/d0.md\udcff"]
PATH_CALLS = {
    "index_document": lambda docs, bad: docs.index_document(bad, "T", "# T\n\ntext"),
    "index_document title": lambda docs, bad: docs.index_document("/docs/new.md", bad, "x"),
    "get_document": lambda docs, bad: docs.get_document(bad),
    "delete_document": lambda docs, bad: docs.delete_document(bad),
    "mark_stale": lambda docs, bad: docs.mark_stale(bad),
    "mark_stale with content": lambda docs, bad: docs.mark_stale(bad, "# New\n"),
}


@pytest.mark.parametrize("bad", BAD_PATHS)
@pytest.mark.parametrize("call", sorted(PATH_CALLS))
def test_document_paths_of_the_wrong_type_or_not_utf8_are_refused(
        indexed: Harness, call: str, bad: Any) -> None:
    TRIED["document path"] += 1
    before = indexed.run(dump(indexed.db))
    with pytest.raises(InvalidInputError, match=r"Invalid (file_path|title)"):
        indexed.run(PATH_CALLS[call](indexed.db.documents, bad))
    assert indexed.run(dump(indexed.db)) == before


BAD_CONTENT: list[Any] = [None, 5, b"# bytes", ["# list"], "# A\n\n\ud800", "\udcff"]
CONTENT_CALLS = {
    "index_document": lambda docs, bad: docs.index_document("/docs/d0.md", "T", bad),
    "mark_stale": lambda docs, bad: docs.mark_stale("/docs/d0.md", bad),
}


@pytest.mark.parametrize(("call", "bad"), [
    (call, bad) for call in sorted(CONTENT_CALLS) for bad in BAD_CONTENT
    if not (bad is None and call == "mark_stale")  # None: stale without new content
])
def test_document_content_that_is_not_utf8_text_is_refused(
        indexed: Harness, call: str, bad: Any) -> None:
    TRIED["document content"] += 1
    before = indexed.run(dump(indexed.db))
    with pytest.raises(InvalidInputError, match=r"Invalid (content|new_content)"):
        indexed.run(CONTENT_CALLS[call](indexed.db.documents, bad))
    assert indexed.run(dump(indexed.db)) == before


BAD_IDS: list[Any] = [None, "1", 1.0, True, 0, -1, 2**63, 2**64]
ID_CALLS = {
    "get_document_by_id": lambda docs, bad: docs.get_document_by_id(bad),
    "get_chunks": lambda docs, bad: docs.get_chunks(bad),
    "mark_synced": lambda docs, bad: docs.mark_synced(bad),
    "mark_failed": lambda docs, bad: docs.mark_failed(bad, "boom"),
    "get_pending_documents": lambda docs, bad: docs.get_pending_documents(bad),
    "list_all_documents": lambda docs, bad: docs.list_all_documents(bad),
}


@pytest.mark.parametrize(("call", "bad"), [
    (call, bad) for call in sorted(ID_CALLS) for bad in BAD_IDS
    if not (bad is None and call == "list_all_documents")  # None: every document
])
def test_document_ids_and_limits_of_the_wrong_type_or_range_are_refused(
        indexed: Harness, call: str, bad: Any) -> None:
    TRIED["document id"] += 1
    before = indexed.run(dump(indexed.db))
    with pytest.raises(InvalidInputError, match=r"Invalid (document id|limit)"):
        indexed.run(ID_CALLS[call](indexed.db.documents, bad))
    assert indexed.run(dump(indexed.db)) == before
