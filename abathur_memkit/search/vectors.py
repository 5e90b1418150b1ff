"""The vector indexes memkit keeps (document chunks, memories) and their registry.

Each index is a backend's tables (see :mod:`.backends`) plus one row of
``vector_indexes`` saying which model, dimension and backend made its vectors.
The document index writes chunk vectors here and search reads them; both go
through :class:`VectorIndexes`, so neither calls the other to reach an index.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..embeddings.base import Vectors, check_vectors
from ..engines.interface import Connection, Store
from ..errors import EmbeddingError
from ..inputs import require_vector_backend
from ..values import to_json
from .backends import PgVectorBackend, VectorBackend, id_list, make_backend
from .settings import SearchSettings

if TYPE_CHECKING:
    from ..embeddings import Embedder

__all__ = [
    "EMBED_BATCH", "INDEXES", "StaleIndexError", "VectorIndexes", "embed_texts", "stored_index",
]

#: The vector indexes memkit keeps: document chunks and memories.
INDEXES = ("chunks", "memories")

# Texts per embedder call when (re)building an index: small enough to show
# progress and to bound memory, large enough to fill the embedder's batches.
EMBED_BATCH = 64

#: What made an index's vectors: (model, dimensions, backend).
MadeBy = tuple[str, int, str]


class StaleIndexError(EmbeddingError):
    """The stored vectors were made by another model, dimension or backend."""


class VectorIndexes:
    """The ``vector_indexes`` registry and the backends it names, on ``store``.

    The methods that take a connection run inside the caller's ``read`` or
    ``write`` function, so an index change joins the caller's transaction.
    """

    def __init__(self, store: Store, settings: SearchSettings) -> None:
        require_vector_backend(settings.vector_backend, store.dialect)
        self.store = store
        self.settings = settings

    @property
    def enabled(self) -> bool:
        """Whether vector search is on (the backend's extension is loaded)."""
        return self.settings.vectors_enabled

    def made_by(self, embedder: Embedder) -> MadeBy:
        """What an index searched with ``embedder``'s vectors must have been made by."""
        return embedder.name, embedder.dimensions, self.settings.vector_backend

    def prepare_index(
        self, conn: Connection, name: str, embedder: Embedder, *, reset: bool
    ) -> tuple[VectorBackend, bool]:
        """The index ``name`` for ``embedder`` on the configured backend, created if
        missing, and whether an index of another model was dropped for it.

        If the stored index was made by another model, dimension or backend:
        with ``reset`` it is dropped and rebuilt empty (its rows marked for
        re-embedding); without, :class:`StaleIndexError` is raised. Runs in a
        write transaction.
        """
        return self.prepare_index_for(conn, name, embedder.name, embedder.dimensions,
                                      reset=reset)

    def prepare_index_for(
        self, conn: Connection, name: str, model: str, dimensions: int, *, reset: bool
    ) -> tuple[VectorBackend, bool]:
        """``prepare_index`` for vectors of ``model`` made elsewhere (no embedder here)."""
        kind = self.settings.vector_backend
        row = _registry(conn, name)
        wanted = (model, dimensions, kind)
        if row is not None and _made_by(row) == wanted:
            return _backend(name, row), False
        if row is not None:
            if not reset:
                raise _stale(name, row, wanted)
            self.drop_index(conn, name)
        settings = _default_settings(kind)
        backend = make_backend(kind, name, dimensions, **settings)
        backend.create(conn)
        conn.execute(
            "INSERT INTO vector_indexes (name, backend, model, dimensions, settings) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, kind, model, dimensions, to_json(settings, "settings")),
        )
        return backend, row is not None

    def current(
        self, conn: Connection, name: str, wanted: tuple[str, int] | None = None
    ) -> tuple[str, int] | None:
        """(model, dimensions) of index ``name`` when its stored vectors can be
        reused as they are: vector search on, the index on the configured
        backend and, given ``wanted`` (the embedder's model and dimensions),
        made by it. None otherwise (no index, or one about to be rebuilt)."""
        if not self.enabled:
            return None
        row = _registry(conn, name)
        if row is None or row["backend"] != self.settings.vector_backend:
            return None
        made = (row["model"], row["dimensions"])
        return made if wanted is None or tuple(wanted) == made else None

    def copy_vectors(
        self, conn: Connection, name: str, pairs: Sequence[tuple[int, int]]
    ) -> list[int]:
        """Store under each target id of ``pairs`` (source, target) its source's
        vector in index ``name``, as stored (no re-embedding); return the targets
        that got one (a source without a vector gives none). Any backend: it
        reads and writes through the backend's own ``get`` and ``upsert``."""
        row = _registry(conn, name)
        if row is None or not pairs:
            return []
        backend = _backend(name, row)
        found = backend.get(conn, sorted({source for source, _ in pairs}))
        copied = [(target, found[source]) for source, target in pairs if source in found]
        if copied:
            backend.upsert(conn, [t for t, _ in copied], np.stack([v for _, v in copied]))
        return [t for t, _ in copied]

    def searchable(self, conn: Connection, name: str, wanted: MadeBy) -> VectorBackend | None:
        """The backend of index ``name`` to search with vectors ``wanted`` made,
        None when there is no such index; :class:`StaleIndexError` when another
        model, dimension or backend made it."""
        row = _registry(conn, name)
        if row is None:
            return None
        if _made_by(row) != wanted:
            raise _stale(name, row, wanted)
        return _backend(name, row)

    def describe(
        self, conn: Connection, name: str, current: tuple[str, int] | None
    ) -> dict[str, Any] | None:
        """Index ``name`` as ``status`` shows it (None: no such index): model,
        dimensions, backend, settings, its size when the extension is loaded,
        and whether it is stale for ``current`` (model, dimensions)."""
        row = _registry(conn, name)
        if row is None:
            return None
        info = {"backend": row["backend"], "model": row["model"],
                "dimensions": row["dimensions"], "settings": row["settings"]}
        if _extension_ready(conn, row["backend"]):
            info["vectors"] = _backend(name, row).count(conn)
        if current is not None:
            info["stale"] = _made_by(row) != (*current, self.settings.vector_backend)
        return info

    def drop_index(self, conn: Connection, name: str) -> None:
        """Drop index ``name`` and mark its rows for re-embedding."""
        row = _registry(conn, name)
        if row is not None:
            _load_extension(conn, row["backend"])
            _backend(name, row).drop(conn)
            conn.execute("DELETE FROM vector_indexes WHERE name = ?", (name,))
        conn.execute("DELETE FROM vector_garbage WHERE index_name = ?", (name,))
        if name == "chunks":
            conn.execute("UPDATE document_chunks SET embedding_model = NULL, "
                         "embedding_dimensions = NULL WHERE embedding_model IS NOT NULL")
            conn.execute("UPDATE document_index SET sync_status = 'stale' "
                         "WHERE sync_status = 'synced'")
        else:
            conn.execute("UPDATE memory_search_items SET embedding_model = NULL, "
                         "embedding_dimensions = NULL WHERE embedding_model IS NOT NULL")

    async def purge(self) -> int:
        """Delete vectors whose rows are gone (see ``vector_garbage``); return how many."""
        if not self.enabled:
            return 0
        pending = await self.store.read(
            lambda conn: conn.execute("SELECT 1 FROM vector_garbage LIMIT 1").fetchone()
        )
        if pending is None:
            return 0
        dialect = self.store.dialect
        return await self.store.write(lambda conn: _purge(conn, dialect))


async def stored_index(store: Store) -> tuple[str | None, str | None]:
    """(model, backend) the stored chunk index (else any index) was built with, or Nones."""

    def read(conn: Connection) -> tuple[str | None, str | None]:
        row = conn.execute("SELECT model, backend FROM vector_indexes "
                           "ORDER BY CASE WHEN name = 'chunks' THEN 0 ELSE 1 END LIMIT 1"
                           ).fetchone()
        return (str(row[0]), str(row[1])) if row else (None, None)

    return await store.read(read)


def _registry(conn: Connection, name: str) -> dict[str, Any] | None:
    """The ``vector_indexes`` row of index ``name``, or None."""
    row = conn.execute(
        "SELECT backend, model, dimensions, settings FROM vector_indexes WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    return {"backend": row[0], "model": row[1], "dimensions": int(row[2]),
            "settings": json.loads(row[3])}


async def embed_texts(
    embedder: Embedder, texts: Sequence[str], *, on_batch: Callable[[int], object] | None = None,
    batch_size: int = EMBED_BATCH,
) -> Vectors:
    """Embed ``texts`` in calls of ``batch_size``; check every vector's shape."""
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        vectors = await embedder.embed_documents(batch)
        vectors = check_vectors(vectors, embedder.dimensions,
                                what=f"vectors from {embedder.name}")
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            raise EmbeddingError(
                f"{embedder.name} returned {vectors.shape[0]} vectors for {len(batch)} texts")
        parts.append(vectors)
        if on_batch is not None:
            on_batch(len(batch))
        await asyncio.sleep(0)
    if not parts:
        return np.zeros((0, embedder.dimensions), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def _purge(conn: Connection, dialect: str) -> int:
    removed = 0
    for name in INDEXES:
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM vector_garbage WHERE index_name = ?", (name,))]
        if not ids:
            continue
        row = _registry(conn, name)
        if row is not None:
            _load_extension(conn, row["backend"])
            removed += _backend(name, row).delete(conn, ids)
            if name == "memories":
                # An id can come back (restore): re-embed it rather than lose it.
                listed, param = id_list(dialect, ids)
                conn.execute(
                    "UPDATE memory_search_items SET embedding_model = NULL, "
                    f"embedding_dimensions = NULL WHERE entry_id IN ({listed})", (param,))
        conn.execute("DELETE FROM vector_garbage WHERE index_name = ?", (name,))
    return removed


def _backend(name: str, row: dict[str, Any]) -> VectorBackend:
    return make_backend(row["backend"], name, row["dimensions"], **row["settings"])


def _made_by(row: dict[str, Any]) -> MadeBy:
    """(model, dimensions, backend) of a registry row: what a search must match."""
    return row["model"], row["dimensions"], row["backend"]


def _default_settings(kind: str) -> dict[str, Any]:
    if kind == "pgvector":
        return {"ef_search": PgVectorBackend.DEFAULT_EF_SEARCH}
    return {"shards": 8} if kind == "vec" else {"shard_size": 2048}


def _stale(name: str, row: dict[str, Any], wanted: MadeBy) -> StaleIndexError:
    model, dims, backend = wanted
    return StaleIndexError(
        f"the {name!r} vector index holds {row['model']} vectors ({row['dimensions']} dims, "
        f"backend {row['backend']}) but this database uses {model} ({dims} dims, backend "
        f"{backend}): run `await db.search.reembed()` (or `memkit index --reembed`)"
    )


def _extension_ready(conn: Connection, kind: str) -> bool:
    if kind == "pgvector":
        return True  # created by the PostgreSQL schema
    probe = "vec_version()" if kind == "vec" else "vss_version()"
    try:
        conn.execute(f"SELECT {probe}")
    except Exception:
        return False
    return True


def _load_extension(conn: Connection, kind: str) -> None:
    if not _extension_ready(conn, kind):
        from ..engines.sqlite.driver import load_extension

        load_extension(conn, kind)
