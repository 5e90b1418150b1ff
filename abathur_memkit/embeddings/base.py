"""The one small interface every embedder implements, and the vector checks.

An embedder turns text into float32, L2-normalised vectors of a fixed size.
Its ``name`` and ``dimensions`` are stored beside every embedding, so a change
of either marks the stored vectors stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from abathur_memkit.errors import InvalidInputError

__all__ = ["Embedder", "Vectors", "check_texts", "check_vectors", "l2_normalize"]

#: float32 vectors: shape ``(n, dimensions)`` for documents, ``(dimensions,)`` for a query.
Vectors: TypeAlias = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What memkit needs from an embedder.

    ``embed_documents`` returns shape ``(len(texts), dimensions)``; ``embed_query``
    returns shape ``(dimensions,)``; both float32 and L2-normalised, so a dot
    product is the cosine. Implementations do CPU-bound work off the event loop.
    Documents and queries are separate calls because some models (nomic) embed
    them with different task prefixes.
    """

    @property
    def name(self) -> str:
        """The model name stored with each embedding, e.g. ``all-MiniLM-L6-v2``."""
        ...

    @property
    def dimensions(self) -> int:
        """The length of every vector this embedder returns."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """Embed texts to be stored and searched."""
        ...

    async def embed_query(self, text: str) -> Vectors:
        """Embed one search query."""
        ...


def check_vectors(arr: object, dimensions: int, *, what: str = "vectors") -> Vectors:
    """Return ``arr`` if it is a finite float32 array of shape ``(dimensions,)`` or
    ``(n, dimensions)``; raise :class:`InvalidInputError` saying what is wrong.

    No silent conversion: a float64 or wrongly sized array usually means the
    vectors came from another model, and casting would hide that.
    """
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise InvalidInputError(f"dimensions must be a positive int, got {dimensions!r}")
    if not isinstance(arr, np.ndarray):
        raise InvalidInputError(
            f"{what} must be a numpy array of float32, got {type(arr).__name__}"
        )
    if arr.dtype != np.float32:
        raise InvalidInputError(f"{what} must have dtype float32, got {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[-1] != dimensions:
        expected = f"({dimensions},) or (n, {dimensions})"
        raise InvalidInputError(
            f"{what} have shape {arr.shape}, expected {expected}: wrong model or wrong dimensions?"
        )
    if not np.isfinite(arr).all():
        raise InvalidInputError(f"{what} contain NaN or infinite values")
    return arr


def l2_normalize(arr: npt.NDArray[np.floating]) -> Vectors:
    """Scale each row (or the single vector) to unit length, as float32.

    A zero row stays zero rather than becoming NaN; embedders avoid producing one.
    """
    out = np.asarray(arr, dtype=np.float32)
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    result: Vectors = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return result


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, or raise :class:`InvalidInputError`.

    A bare ``str`` is refused: it is a sequence of characters, and embedding
    each character is never what the caller meant.
    """
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a sequence of strings, not one string")
    out = list(texts)
    for text in out:
        if not isinstance(text, str):
            raise InvalidInputError(f"texts must be strings, got {type(text).__name__}")
    return out
