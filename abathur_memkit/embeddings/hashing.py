"""A deterministic, offline, lexical-only embedder for tests and fixtures.

Feature hashing of lowercased word tokens plus character trigrams of each
word, each feature given a pseudo-random sign, then L2-normalised. Texts that
share words (or word pieces) get similar vectors; synonyms do not. That is why
its name says "lexical": vectors from it must never be mixed with a real
model's, and search quality measured with it says nothing about semantics.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator, Sequence

import numpy as np

from abathur_memkit.embeddings.base import Vectors, check_texts, l2_normalize
from abathur_memkit.errors import InvalidInputError

__all__ = ["HashingEmbedder"]

_WORD = re.compile(r"\w+")
# Character trigrams let "session" and "sessions" share most features; each
# word's trigrams together weigh as much as the word itself, so long words do
# not dominate.
_NGRAM = 3
_NGRAM_WEIGHT = 1.0
# Up to this much text (about a millisecond of hashing) the thread hand-off
# costs more than it saves; beyond it, hash in a worker thread.
_INLINE_MAX_CHARS = 2_000


class HashingEmbedder:
    """Feature-hashing embedder: deterministic across processes and machines.

    ``name`` is ``"hashing-lexical-v1"``; bump the version if the features change,
    so stored vectors are marked stale.
    """

    name = "hashing-lexical-v1"

    def __init__(self, dimensions: int = 384) -> None:
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 8:
            raise InvalidInputError(f"dimensions must be an int >= 8, got {dimensions!r}")
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def __repr__(self) -> str:
        return f"HashingEmbedder(dimensions={self._dimensions})"

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        texts = check_texts(texts)
        if sum(map(len, texts)) <= _INLINE_MAX_CHARS:
            return self.embed_sync(texts)
        return await asyncio.to_thread(self.embed_sync, texts)

    async def embed_query(self, text: str) -> Vectors:
        vectors = await self.embed_documents([text])
        return vectors.reshape(vectors.shape[1])

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """The same vectors as :meth:`embed_documents`, computed in the caller's thread."""
        texts = check_texts(texts)
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, weight in _features(text):
                index, sign = self._slot(feature)
                out[row, index] += sign * weight
        return l2_normalize(out)

    def _slot(self, feature: str) -> tuple[int, float]:
        # blake2b, not hash(): str hashing is salted per process.
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return (value >> 1) % self._dimensions, (1.0 if value & 1 else -1.0)


def _features(text: str) -> Iterator[tuple[str, float]]:
    words = _WORD.findall(text.lower())
    if not words:
        # A fixed feature keeps the vector unit-length: a zero vector has no
        # cosine and would poison a KNN index.
        yield "\x00empty", 1.0
        return
    for word in words:
        yield "w:" + word, 1.0
        padded = f"<{word}>"
        grams = [padded[i : i + _NGRAM] for i in range(len(padded) - _NGRAM + 1)]
        weight = _NGRAM_WEIGHT / len(grams)
        for gram in grams:
            yield "c:" + gram, weight
