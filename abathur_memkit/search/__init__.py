"""Search: vector backends, chunking, and semantic / keyword / hybrid retrieval.

``db.search`` is a :class:`SearchService`; see :mod:`abathur_memkit.search.service`.
"""

from .backends import BACKENDS, IdFilter, VecBackend, VectorBackend, VssBackend, make_backend
from .chunking import Chunk, chunk_markdown
from .fusion import reciprocal_rank_fusion
from .service import DocumentHit, SearchHit, SearchService, StaleIndexError, fts_query

__all__ = [
    "BACKENDS",
    "Chunk",
    "DocumentHit",
    "IdFilter",
    "SearchHit",
    "SearchService",
    "StaleIndexError",
    "VecBackend",
    "VectorBackend",
    "VssBackend",
    "chunk_markdown",
    "fts_query",
    "make_backend",
    "reciprocal_rank_fusion",
]
