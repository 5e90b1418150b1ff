"""What the search services are configured with: the embedder and the vector backend.

``Database`` builds one ``SearchSettings`` and hands it to both services, so
the embedder is created once, in one place. Loads without numpy: the core
install builds it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..engines.interface import Store
from ..errors import InvalidInputError, MemkitError

if TYPE_CHECKING:
    from ..embeddings import Embedder

__all__ = ["SearchSettings", "SearchStore", "settings_of"]


class SearchSettings:
    """The embedder (named or given; created on first use), the vector backend
    (``"vec"`` or ``"vss"`` on SQLite, ``"pgvector"`` on PostgreSQL) and the
    SQLite extensions every connection loads."""

    def __init__(
        self,
        embedder: str | Embedder | None = None,
        vector_backend: str = "vec",
        extensions: Sequence[str] = (),
    ) -> None:
        self._embedder_spec = embedder
        self._embedder: Embedder | None = None
        self.vector_backend = vector_backend
        self.extensions = tuple(extensions)

    def __repr__(self) -> str:
        return (f"<SearchSettings embedder={self._embedder_spec!r} "
                f"vector_backend={self.vector_backend!r} extensions={self.extensions!r}>")

    @property
    def has_embedder(self) -> bool:
        """Whether an embedder was configured (nothing is loaded)."""
        return self._embedder_spec is not None

    @property
    def embedder(self) -> Embedder:
        """The configured embedder, created on first use."""
        if self._embedder is None:
            if self._embedder_spec is None:
                raise MemkitError(
                    "no embedder configured: use Database(path, embedder='default') "
                    "(offline MiniLM), 'ollama', 'hashing' or an Embedder instance"
                )
            from ..embeddings import get_embedder

            self._embedder = get_embedder(self._embedder_spec)
        return self._embedder

    @property
    def vectors_enabled(self) -> bool:
        """Whether vector search is on: SQLite connections load the backend's
        extension; PostgreSQL's schema always has pgvector."""
        return self.vector_backend == "pgvector" or self.vector_backend in self.extensions


@runtime_checkable
class SearchStore(Store, Protocol):
    """A ``Store`` that carries its search settings (``Database`` does)."""

    @property
    def search_settings(self) -> SearchSettings: ...


def settings_of(store: Store, settings: SearchSettings | None) -> SearchSettings:
    """``settings``, or when None the store's own (a ``Database``'s)."""
    if settings is not None:
        return settings
    if not isinstance(store, SearchStore):
        raise InvalidInputError(
            "a search service needs settings: pass SearchSettings(...) with a store "
            "that has no search_settings")
    return store.search_settings
