"""Search: vector backends, chunking, and semantic / keyword / hybrid retrieval.

``db.search`` is a :class:`SearchService`; see :mod:`abathur_memkit.search.service`.
"""

from ..extras import require_extra

try:  # vectors are numpy arrays: fail with the extra to install, not deep inside
    import numpy  # noqa: F401
except ImportError:
    require_extra("search", "abathur_memkit.search")
    raise

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
