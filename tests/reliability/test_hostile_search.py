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
async def test_semantic_search_refuses_wrong_query_vectors(tmp_path: Path, vector: Any) -> None:
    from abathur_memkit import Database

    TRIED["bad vector"] += 1
    async with Database(tmp_path / "s.db", embedder=LyingEmbedder(vector)) as db:
        before = await dump(db)
        with pytest.raises(MemkitError) as info:
            await db.search.semantic("anything", 3)
        assert any(w in str(info.value) for w in ("dtype", "shape", "NaN", "numpy", "dimension"))
        assert await dump(db) == before


async def test_semantic_search_works_with_an_honest_embedder(tmp_path: Path) -> None:
    from abathur_memkit import Database

    async with Database(tmp_path / "s.db", embedder=HashingEmbedder()) as db:
        await db.documents.index_document(str(tmp_path / "a.md"), "A", "# A\n\nalpha beta")
        hits = await db.search.semantic("alpha", 3, source="documents")
        assert isinstance(hits, list)
