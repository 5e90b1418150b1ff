"""Search: the document index, vector backends, chunking, and semantic / keyword /
hybrid retrieval.

``db.documents`` is a :class:`DocumentIndexService`
(:mod:`abathur_memkit.search.documents`), ``db.search`` a :class:`SearchService`
(:mod:`abathur_memkit.search.service`); both take a store and one
:class:`~abathur_memkit.search.settings.SearchSettings`.

The names below load on first use: the package itself (and its settings) loads
without numpy, so the core install can build a ``Database``; asking for a
search name without the [search] extra names the pip command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..extras import require_extra

if TYPE_CHECKING:
    from .backends import (
        BACKENDS,
        IdFilter,
        PgVectorBackend,
        VecBackend,
        VectorBackend,
        VssBackend,
        make_backend,
    )
    from .chunking import Chunk, chunk_markdown
    from .documents import DocumentIndexService
    from .fusion import reciprocal_rank_fusion
    from .service import DocumentHit, SearchHit, SearchService, fts_query
    from .settings import SearchSettings
    from .vectors import StaleIndexError

# Public name -> the module of this package that defines it.
_EXPORTS = {
    "BACKENDS": "backends",
    "Chunk": "chunking",
    "DocumentHit": "service",
    "DocumentIndexService": "documents",
    "IdFilter": "backends",
    "PgVectorBackend": "backends",
    "SearchHit": "service",
    "SearchService": "service",
    "SearchSettings": "settings",
    "StaleIndexError": "vectors",
    "VecBackend": "backends",
    "VectorBackend": "backends",
    "VssBackend": "backends",
    "chunk_markdown": "chunking",
    "fts_query": "service",
    "make_backend": "backends",
    "reciprocal_rank_fusion": "fusion",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module != "settings":
        # Vectors are numpy arrays: fail with the extra to install, not deep inside.
        require_extra("search", "abathur_memkit.search")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "BACKENDS",
    "Chunk",
    "DocumentHit",
    "DocumentIndexService",
    "IdFilter",
    "PgVectorBackend",
    "SearchHit",
    "SearchService",
    "SearchSettings",
    "StaleIndexError",
    "VecBackend",
    "VectorBackend",
    "VssBackend",
    "chunk_markdown",
    "fts_query",
    "make_backend",
    "reciprocal_rank_fusion",
]
