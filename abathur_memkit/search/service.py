"""``db.search``: semantic, keyword and hybrid search over documents and memories.

- ``semantic``: the query's embedding against the vector index (KNN, then
  exact rescoring), with filters (document type, namespace prefix, memory type).
- ``keyword``: SQLite FTS5 with BM25 ranking and snippets.
- ``hybrid``: both, fused by reciprocal rank.

Documents are searched by chunk (``document_chunks``, written by
``db.documents``); memories by the latest live version of each key. Triggers
queue every memory write (``memory_search_queue``); each memory search first
drains the queue, so results follow updates, deletes and restores. Vectors
are stored with their model and dimension (``vector_indexes``): searching an
index made by another model raises :class:`StaleIndexError`, and
:meth:`SearchService.reembed` rebuilds everything with the current embedder.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..embeddings.base import Vectors, check_vectors
from ..errors import EmbeddingError, InvalidInputError
from ..inputs import require_int, require_text
from ..memory import MEMORY_TYPES
from ..namespaces import prefix_bounds
from ..values import to_json
from .backends import IdFilter, Neighbour, VectorBackend, _check_k, make_backend
from .fusion import RRF_K, reciprocal_rank_fusion

if TYPE_CHECKING:
    from ..database import Database
    from ..embeddings import Embedder

__all__ = [
    "DOCUMENT_TYPES",
    "INDEXES",
    "SearchHit",
    "SearchService",
    "Source",
    "StaleIndexError",
    "fts_query",
]

#: The vector indexes memkit keeps: document chunks and memories.
INDEXES = ("chunks", "memories")
DOCUMENT_TYPES = ("design", "specification", "plan", "report")

Source = Literal["all", "documents", "memories"]

# Texts per embedder call when (re)building an index: small enough to show
# progress and to bound memory, large enough to fill the embedder's batches.
EMBED_BATCH = 64
# Memory keys moved from the queue per write transaction.
QUEUE_BATCH = 2000

_STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "did", "for",
    "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me",
    "my", "no", "not", "of", "on", "or", "our", "so", "such", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "to", "was", "we", "were", "what", "when",
    "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your",
})
_WORD = re.compile(r"\w+", re.UNICODE)


class StaleIndexError(EmbeddingError):
    """The stored vectors were made by another model, dimension or backend."""


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    ``score`` is the cosine similarity (semantic), minus the BM25 rank value
    (keyword, higher is better) or the fused reciprocal-rank score (hybrid).
    Documents fill ``file_path``, ``title``, ``heading`` (the nearest heading),
    ``heading_path`` and the chunk fields; memories fill ``namespace``, ``key``,
    ``memory_type``, ``memory_id`` and ``version``. ``ranks`` gives the
    position in each list a hybrid result was fused from.
    """

    score: float
    source: Literal["document", "memory"]
    text: str
    file_path: str | None = None
    title: str | None = None
    heading: str | None = None
    heading_path: str | None = None
    document_id: int | None = None
    document_type: str | None = None
    chunk_id: int | None = None
    chunk_index: int | None = None
    start_offset: int | None = None
    end_offset: int | None = None
    namespace: str | None = None
    key: str | None = None
    memory_type: str | None = None
    memory_id: int | None = None
    version: int | None = None
    snippet: str | None = None
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def ref(self) -> tuple[str, int]:
        """Identity across search modes: ("document", chunk id) or ("memory", entry id)."""
        if self.source == "document":
            return ("document", int(self.chunk_id or 0))
        return ("memory", int(self.memory_id or 0))

    @property
    def location(self) -> str:
        """``file_path › heading`` or ``namespace/key``, for display."""
        if self.source == "document":
            return f"{self.file_path} › {self.heading_path}" if self.heading_path else str(
                self.file_path
            )
        return f"{self.namespace}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class _Filters:
    source: Source
    document_type: str | None
    namespace_bounds: tuple[str, str, str] | None
    memory_type: str | None

    @property
    def documents(self) -> bool:
        return self.source in ("all", "documents")

    @property
    def memories(self) -> bool:
        return self.source in ("all", "memories")


class SearchService:
    """Search over ``db``: ``db.search`` or ``SearchService(db)``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- public search API -----------------------------------------------------

    async def semantic(
        self,
        query: str,
        k: int = 10,
        *,
        source: Source = "all",
        document_type: str | None = None,
        namespace_prefix: str | None = None,
        memory_type: str | None = None,
    ) -> list[SearchHit]:
        """The ``k`` chunks/memories nearest to ``query`` in embedding space."""
        filters = _filters(source, document_type, namespace_prefix, memory_type)
        k = _check_k(k)
        query = _check_query(query)
        embedder = self.db.embedder
        vector = check_vectors(await embedder.embed_query(query), embedder.dimensions,
                               what="query vector")
        if vector.ndim != 1:
            raise InvalidInputError(
                f"query vector from {embedder.name} has shape {vector.shape}, "
                f"expected ({embedder.dimensions},)")
        if filters.memories:
            await self.sync_memories()
        await self.purge()
        return await self._semantic(vector, k, filters, embedder)

    async def keyword(
        self,
        query: str,
        k: int = 10,
        *,
        source: Source = "all",
        document_type: str | None = None,
        namespace_prefix: str | None = None,
        memory_type: str | None = None,
        raw: bool = False,
    ) -> list[SearchHit]:
        """BM25 full-text search; ``raw=True`` passes FTS5 query syntax through.

        By default the query's words (stopwords dropped) are OR-ed, so a
        question finds passages that use some of its words, the more the better.
        """
        filters = _filters(source, document_type, namespace_prefix, memory_type)
        k = _check_k(k)
        query = _check_query(query)
        match = query if raw else fts_query(query)
        if not match:
            return []
        if filters.memories:
            await self.sync_memories(embed=False)
        try:
            return await self.db.read(lambda conn: self._keyword(conn, match, k, filters))
        except self.db.driver.module.OperationalError as exc:
            if raw:  # the caller's FTS5 syntax
                raise InvalidInputError(f"Invalid FTS5 query {query!r}: {exc}") from exc
            raise

    async def hybrid(
        self,
        query: str,
        k: int = 10,
        *,
        source: Source = "all",
        document_type: str | None = None,
        namespace_prefix: str | None = None,
        memory_type: str | None = None,
        candidates: int | None = None,
        rrf_k: int = RRF_K,
    ) -> list[SearchHit]:
        """Semantic and keyword results fused by reciprocal rank.

        Each mode contributes its top ``candidates`` (default ``max(4k, 40)``).
        """
        _filters(source, document_type, namespace_prefix, memory_type)  # checked up front
        k = _check_k(k)
        rrf_k = require_int(rrf_k, "rrf_k", minimum=0)
        n = _check_k(candidates if candidates is not None else max(4 * k, 40))
        kwargs: dict[str, Any] = {"source": source, "document_type": document_type,
                                  "namespace_prefix": namespace_prefix,
                                  "memory_type": memory_type}
        semantic = await self.semantic(query, n, **kwargs)
        keyword = await self.keyword(query, n, **kwargs)
        by_ref: dict[tuple[str, int], SearchHit] = {}
        for hit in (*keyword, *semantic):
            by_ref.setdefault(hit.ref, hit)
        fused = reciprocal_rank_fusion(
            [[h.ref for h in semantic], [h.ref for h in keyword]], k=rrf_k
        )
        sem_rank = {h.ref: i for i, h in enumerate(semantic, start=1)}
        kw_rank = {h.ref: i for i, h in enumerate(keyword, start=1)}
        out = []
        for ref, score in fused[:k]:
            ranks = {}
            if ref in sem_rank:
                ranks["semantic"] = sem_rank[ref]
            if ref in kw_rank:
                ranks["keyword"] = kw_rank[ref]
            out.append(_replace(by_ref[ref], score=score, ranks=ranks))
        return out

    async def search(self, query: str, k: int = 10, *, mode: str = "hybrid",
                     **filters: Any) -> list[SearchHit]:
        """``semantic``, ``keyword`` or ``hybrid`` by name (the CLI's entry point)."""
        if mode == "semantic":
            return await self.semantic(query, k, **filters)
        if mode == "keyword":
            return await self.keyword(query, k, **filters)
        if mode == "hybrid":
            return await self.hybrid(query, k, **filters)
        raise InvalidInputError(f"Invalid search mode: {mode!r} (semantic, keyword or hybrid)")

    # -- index state -------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The vector indexes: model, dimensions, backend, size, and whether stale."""
        current = self._current()

        def read(conn: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"embedder": None, "backend": self.db.vector_backend,
                                   "indexes": {}}
            if current is not None:
                out["embedder"] = {"model": current[0], "dimensions": current[1]}
            for name in INDEXES:
                row = _registry(conn, name)
                if row is None:
                    continue
                info = {"backend": row["backend"], "model": row["model"],
                        "dimensions": row["dimensions"], "settings": row["settings"]}
                if self._extension_ready(conn, row["backend"]):
                    info["vectors"] = _backend(name, row).count(conn)
                if current is not None:
                    info["stale"] = _made_by(row) != (*current, self.db.vector_backend)
                out["indexes"][name] = info
            out["pending_memory_keys"] = conn.execute(
                "SELECT count(*) FROM memory_search_queue").fetchone()[0]
            return out

        return await self.db.read(read)

    async def reembed(self, *, progress: bool | None = None) -> dict[str, int]:
        """Rebuild both vector indexes with the current embedder and backend: one call.

        Drops the old vectors, marks every document stale and re-embeds every
        chunk and the latest live version of every memory.
        """
        self.db.embedder  # noqa: B018 - fails here, before anything is dropped, if none

        def reset(conn: Any) -> None:
            for name in INDEXES:
                self._drop_index(conn, name)
            conn.execute(
                "UPDATE document_index SET sync_status = 'stale', updated_at = updated_at "
                "WHERE sync_status IN ('synced', 'failed')"
            )

        await self.db.write(reset)
        documents = await self.db.documents.embed_pending(progress=progress, retry_failed=True)
        memories = await self.sync_memories()
        return {"chunks": documents.embedded_chunks, "memories": memories["embedded"]}

    async def purge(self) -> int:
        """Delete vectors whose rows are gone (see ``vector_garbage``); return how many."""
        if not self._vectors_enabled():
            return 0
        pending = await self.db.read(
            lambda conn: conn.execute("SELECT 1 FROM vector_garbage LIMIT 1").fetchone()
        )
        if pending is None:
            return 0
        return await self.db.write(self._purge)

    # -- memories ------------------------------------------------------------------

    async def sync_memories(self, *, embed: bool | None = None) -> dict[str, int]:
        """Bring memory search up to date with memory writes.

        Drains the queue the triggers fill (full-text rows follow at once),
        then embeds the memories that have no vector yet when an embedder is
        configured (``embed=None``) or ``embed=True``. Returns counts.
        """
        changed = 0
        while await self.db.read(lambda conn: conn.execute(
                "SELECT 1 FROM memory_search_queue LIMIT 1").fetchone()) is not None:
            n = await self.db.write(self._drain_queue)
            changed += n
            if n < QUEUE_BATCH:
                break
        embedded = 0
        if embed is None:
            embed = self.db.has_embedder
        if embed:
            embedded = await self._embed_memories()
        return {"changed": changed, "embedded": embedded}

    def _drain_queue(self, conn: Any) -> int:
        keys = conn.execute(
            "SELECT namespace, key FROM memory_search_queue LIMIT ?", (QUEUE_BATCH,)
        ).fetchall()
        for namespace, key in keys:
            latest = conn.execute(
                "SELECT id, key, value, memory_type FROM memory_entries "
                "WHERE namespace = ? AND key = ? AND is_deleted = 0 "
                "ORDER BY version DESC LIMIT 1",
                (namespace, key),
            ).fetchone()
            current = conn.execute(
                "SELECT entry_id FROM memory_search_items WHERE namespace = ? AND key = ?",
                (namespace, key),
            ).fetchone()
            if current is not None:
                conn.execute("DELETE FROM memory_fts WHERE rowid = ?", (current[0],))
                if latest is None or latest[0] != current[0]:
                    # The trigger moves its vector (if any) to vector_garbage.
                    conn.execute("DELETE FROM memory_search_items WHERE entry_id = ?",
                                 (current[0],))
            if latest is not None:
                entry_id, _, value, memory_type = latest
                conn.execute(
                    "INSERT INTO memory_search_items (entry_id, namespace, key, memory_type) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT(entry_id) DO UPDATE SET "
                    "memory_type = excluded.memory_type, embedding_model = NULL, "
                    "embedding_dimensions = NULL",
                    (entry_id, namespace, key, memory_type),
                )
                conn.execute("INSERT INTO memory_fts (rowid, key, text) VALUES (?, ?, ?)",
                             (entry_id, key, memory_text(key, value)))
            conn.execute("DELETE FROM memory_search_queue WHERE namespace = ? AND key = ?",
                         (namespace, key))
        return len(keys)

    async def _embed_memories(self) -> int:
        embedder = self.db.embedder
        pending = await self.db.read(lambda conn: conn.execute(
            "SELECT 1 FROM memory_search_items WHERE embedding_model IS NULL LIMIT 1").fetchone())
        if pending is None:
            return 0
        await self.db.write(
            lambda conn: self.prepare_index(conn, "memories", embedder, reset=False))
        await self.purge()
        total = 0
        while True:
            rows = await self.db.read(lambda conn: conn.execute(
                "SELECT i.entry_id, m.key, m.value FROM memory_search_items i "
                "JOIN memory_entries m ON m.id = i.entry_id "
                "WHERE i.embedding_model IS NULL LIMIT ?", (EMBED_BATCH,)).fetchall())
            if not rows:
                return total
            vectors = await embed_texts(embedder, [memory_text(k, v) for _, k, v in rows])
            ids = [int(r[0]) for r in rows]

            def store(conn: Any, ids: list[int] = ids, vectors: Vectors = vectors) -> int:
                backend, _ = self.prepare_index(conn, "memories", embedder, reset=False)
                live = {r[0] for r in conn.execute(
                    "SELECT entry_id FROM memory_search_items WHERE entry_id IN "
                    "(SELECT value FROM json_each(?))", (json.dumps(ids),))}
                keep = [n for n, i in enumerate(ids) if i in live]
                if keep:
                    backend.upsert(conn, [ids[n] for n in keep], vectors[keep])
                    conn.executemany(
                        "UPDATE memory_search_items SET embedding_model = ?, "
                        "embedding_dimensions = ? WHERE entry_id = ?",
                        [(embedder.name, embedder.dimensions, ids[n]) for n in keep])
                return len(keep)

            total += await self.db.write(store)
            if len(rows) < EMBED_BATCH:
                return total

    # -- index management (on a connection's thread) -------------------------------

    def _current(self) -> tuple[str, int] | None:
        if not self.db.has_embedder:
            return None
        embedder = self.db.embedder
        return embedder.name, embedder.dimensions

    def _vectors_enabled(self) -> bool:
        return self.db.vector_backend in self.db.extensions

    def _extension_ready(self, conn: Any, kind: str) -> bool:
        probe = "vec_version()" if kind == "vec" else "vss_version()"
        try:
            conn.execute(f"SELECT {probe}")
        except Exception:
            return False
        return True

    def _load_extension(self, conn: Any, kind: str) -> None:
        if not self._extension_ready(conn, kind):
            from ..driver import load_extension

            load_extension(conn, kind)

    def prepare_index(
        self, conn: Any, name: str, embedder: Embedder, *, reset: bool
    ) -> tuple[VectorBackend, bool]:
        """The index ``name`` for ``embedder`` on this Database's backend, created if
        missing, and whether an index of another model was dropped for it.

        If the stored index was made by another model, dimension or backend:
        with ``reset`` it is dropped and rebuilt empty (its rows marked for
        re-embedding); without, :class:`StaleIndexError` is raised. Runs in a
        write transaction.
        """
        return self.prepare_index_for(conn, name, embedder.name, embedder.dimensions,
                                      reset=reset)

    def prepare_index_for(
        self, conn: Any, name: str, model: str, dimensions: int, *, reset: bool
    ) -> tuple[VectorBackend, bool]:
        """``prepare_index`` for vectors of ``model`` made elsewhere (no embedder here)."""
        row = _registry(conn, name)
        wanted = (model, dimensions, self.db.vector_backend)
        if row is not None and _made_by(row) == wanted:
            return _backend(name, row), False
        if row is not None:
            if not reset:
                raise _stale(name, row, wanted)
            self._drop_index(conn, name)
        settings = _default_settings(self.db.vector_backend)
        backend = make_backend(self.db.vector_backend, name, dimensions, **settings)
        backend.create(conn)
        conn.execute(
            "INSERT INTO vector_indexes (name, backend, model, dimensions, settings) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, self.db.vector_backend, model, dimensions, to_json(settings, "settings")),
        )
        return backend, row is not None

    def _drop_index(self, conn: Any, name: str) -> None:
        row = _registry(conn, name)
        if row is not None:
            self._load_extension(conn, row["backend"])
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

    def _purge(self, conn: Any) -> int:
        removed = 0
        for name in INDEXES:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM vector_garbage WHERE index_name = ?", (name,))]
            if not ids:
                continue
            row = _registry(conn, name)
            if row is not None:
                self._load_extension(conn, row["backend"])
                removed += _backend(name, row).delete(conn, ids)
                if name == "memories":
                    # An id can come back (restore): re-embed it rather than lose it.
                    conn.execute(
                        "UPDATE memory_search_items SET embedding_model = NULL, "
                        "embedding_dimensions = NULL WHERE entry_id IN "
                        "(SELECT value FROM json_each(?))", (json.dumps(ids),))
            conn.execute("DELETE FROM vector_garbage WHERE index_name = ?", (name,))
        return removed

    # -- searching (on a reader's thread) -------------------------------------------

    async def _semantic(
        self, vector: Vectors, k: int, filters: _Filters, embedder: Embedder
    ) -> list[SearchHit]:
        wanted = (embedder.name, embedder.dimensions, self.db.vector_backend)

        indexes = (("chunks", filters.documents, _chunk_filter, _document_hits),
                   ("memories", filters.memories, _memory_filter, _memory_hits))

        def run(conn: Any) -> list[SearchHit]:
            hits: list[SearchHit] = []
            for name, wanted_here, id_filter, to_hits in indexes:
                row = _registry(conn, name) if wanted_here else None
                if row is None:
                    continue
                if _made_by(row) != wanted:
                    raise _stale(name, row, wanted)
                found = _backend(name, row).search(conn, vector, k, id_filter=id_filter(filters))
                hits.extend(to_hits(conn, found))
            hits.sort(key=lambda h: -h.score)
            return hits[:k]

        return await self.db.read(run)

    def _keyword(self, conn: Any, match: str, k: int, filters: _Filters) -> list[SearchHit]:
        hits: list[SearchHit] = []
        if filters.documents:
            sql = (
                "SELECT c.id, bm25(document_chunks_fts, 1.0, 0.5) AS rank, "
                "snippet(document_chunks_fts, 0, '[', ']', '…', 16) "
                "FROM document_chunks_fts "
                "JOIN document_chunks c ON c.id = document_chunks_fts.rowid "
                "JOIN document_index d ON d.id = c.document_id "
                "WHERE document_chunks_fts MATCH ?"
            )
            params: list[Any] = [match]
            if filters.document_type is not None:
                sql += " AND d.document_type = ?"
                params.append(filters.document_type)
            sql += " ORDER BY rank LIMIT ?"
            params.append(k)
            hits.extend(_with_snippets(conn, conn.execute(sql, params).fetchall(),
                                       _document_hits))
        if filters.memories:
            sql = (
                "SELECT i.entry_id, bm25(memory_fts, 0.5, 1.0) AS rank, "
                "snippet(memory_fts, 1, '[', ']', '…', 16) "
                "FROM memory_fts JOIN memory_search_items i ON i.entry_id = memory_fts.rowid "
                "WHERE memory_fts MATCH ?"
            )
            params = [match]
            sql, params = _memory_terms(sql, params, filters)
            sql += " ORDER BY rank LIMIT ?"
            params.append(k)
            hits.extend(_with_snippets(conn, conn.execute(sql, params).fetchall(),
                                       _memory_hits))
        hits.sort(key=lambda h: -h.score)
        return hits[:k]


# -- helpers -----------------------------------------------------------------------


def fts_query(text: str) -> str:
    """An FTS5 query for free text: its words, stopwords dropped, quoted and OR-ed."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in _STOPWORDS] or words
    unique = list(dict.fromkeys(kept))
    return " OR ".join(f'"{w}"' for w in unique)


def memory_text(key: str, value_json: str) -> str:
    """What search indexes for a memory: its key, then its value as text."""
    try:
        value = json.loads(value_json)
    except (TypeError, ValueError, RecursionError):  # too deep to decode: index the text
        value = value_json
    body = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"{key}: {body}"


async def embed_texts(
    embedder: Embedder, texts: Sequence[str], *, on_batch: Callable[[int], object] | None = None
) -> Vectors:
    """Embed ``texts`` in batches of ``EMBED_BATCH``; check every vector's shape."""
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = list(texts[start : start + EMBED_BATCH])
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


def _filters(
    source: object, document_type: object, namespace_prefix: object, memory_type: object
) -> _Filters:
    if source not in ("all", "documents", "memories"):
        raise InvalidInputError(f"Invalid source: {source!r} (all, documents or memories)")
    if document_type is not None and document_type not in DOCUMENT_TYPES:
        raise InvalidInputError(
            f"Invalid document_type: {document_type} (expected one of {', '.join(DOCUMENT_TYPES)})"
        )
    if memory_type is not None and memory_type not in MEMORY_TYPES:
        raise InvalidInputError(
            f"Invalid memory_type: {memory_type} (expected one of {', '.join(MEMORY_TYPES)})"
        )
    bounds = prefix_bounds(namespace_prefix) if namespace_prefix is not None else None
    chosen: Source = source
    if source == "all":
        # A filter that only one source has narrows the search to that source.
        if document_type is not None and (namespace_prefix or memory_type):
            raise InvalidInputError(
                "document_type filters documents and namespace_prefix/memory_type filter "
                "memories: pass source= to say which"
            )
        if document_type is not None:
            chosen = "documents"
        elif namespace_prefix or memory_type:
            chosen = "memories"
    return _Filters(chosen, document_type, bounds, memory_type)


def _check_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"Invalid query: {query!r} (expected non-empty text)")
    return require_text(query, "query", max_length=None)


def _registry(conn: Any, name: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT backend, model, dimensions, settings FROM vector_indexes WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    return {"backend": row[0], "model": row[1], "dimensions": int(row[2]),
            "settings": json.loads(row[3])}


def _backend(name: str, row: dict[str, Any]) -> VectorBackend:
    return make_backend(row["backend"], name, row["dimensions"], **row["settings"])


def _made_by(row: dict[str, Any]) -> tuple[str, int, str]:
    """(model, dimensions, backend) of a registry row: what a search must match."""
    return row["model"], row["dimensions"], row["backend"]


def _default_settings(kind: str) -> dict[str, Any]:
    return {"shards": 8} if kind == "vec" else {"shard_size": 2048}


def _stale(name: str, row: dict[str, Any], wanted: tuple[str, int, str]) -> StaleIndexError:
    model, dims, backend = wanted
    return StaleIndexError(
        f"the {name!r} vector index holds {row['model']} vectors ({row['dimensions']} dims, "
        f"backend {row['backend']}) but this database uses {model} ({dims} dims, backend "
        f"{backend}): run `await db.search.reembed()` (or `memkit index --reembed`)"
    )


def _chunk_filter(filters: _Filters) -> IdFilter:
    select = ("SELECT c.id FROM document_chunks c JOIN document_index d "
              "ON d.id = c.document_id WHERE c.embedding_model IS NOT NULL")
    params: tuple[Any, ...] = ()
    if filters.document_type is not None:
        select += " AND d.document_type = ?"
        params = (filters.document_type,)
    return IdFilter(select, "c.id", params)


def _memory_terms(sql: str, params: list[Any], filters: _Filters) -> tuple[str, list[Any]]:
    if filters.namespace_bounds is not None:
        exact, low, high = filters.namespace_bounds
        sql += " AND (i.namespace = ? OR (i.namespace >= ? AND i.namespace < ?))"
        params += [exact, low, high]
    if filters.memory_type is not None:
        sql += " AND i.memory_type = ?"
        params.append(filters.memory_type)
    return sql, params


def _memory_filter(filters: _Filters) -> IdFilter:
    sql, params = _memory_terms(
        "SELECT i.entry_id FROM memory_search_items i WHERE i.embedding_model IS NOT NULL",
        [], filters)
    return IdFilter(sql, "i.entry_id", tuple(params))


def _rows_for(conn: Any, sql: str, scored: Sequence[Neighbour]) -> list[tuple[Any, float]]:
    """The row ``sql`` selects for each id of ``scored``, with its score, in that order.

    ``sql`` selects the id first and takes the ids as one JSON array parameter;
    ids without a row (gone meanwhile) are left out.
    """
    if not scored:
        return []
    rows = conn.execute(sql, (json.dumps([i for i, _ in scored]),)).fetchall()
    by_id = {int(r[0]): r for r in rows}
    return [(by_id[i], score) for i, score in scored if i in by_id]


def _document_hits(conn: Any, scored: Sequence[Neighbour]) -> list[SearchHit]:
    hits = []
    for r, score in _rows_for(
        conn,
        "SELECT c.id, c.document_id, c.chunk_index, c.heading_path, c.start_offset, "
        "c.end_offset, c.text, d.file_path, d.title, d.document_type "
        "FROM document_chunks c JOIN document_index d ON d.id = c.document_id "
        "WHERE c.id IN (SELECT value FROM json_each(?))",
        scored,
    ):
        path = str(r[3])
        hits.append(SearchHit(
            score=score, source="document", text=str(r[6]), file_path=str(r[7]),
            title=str(r[8]), heading=path.rsplit(" > ", 1)[-1] if path else "",
            heading_path=path, document_id=int(r[1]), document_type=r[9],
            chunk_id=int(r[0]), chunk_index=int(r[2]), start_offset=int(r[4]),
            end_offset=int(r[5]),
        ))
    return hits


def _memory_hits(conn: Any, scored: Sequence[Neighbour]) -> list[SearchHit]:
    return [
        SearchHit(
            score=score, source="memory", text=memory_text(str(r[2]), str(r[3])),
            namespace=str(r[1]), key=str(r[2]), memory_type=str(r[4]), memory_id=int(r[0]),
            version=int(r[5]),
        )
        for r, score in _rows_for(
            conn,
            "SELECT id, namespace, key, value, memory_type, version FROM memory_entries "
            "WHERE id IN (SELECT value FROM json_each(?))",
            scored,
        )
    ]


def _with_snippets(
    conn: Any, rows: Sequence[Any], to_hits: Callable[[Any, Sequence[Neighbour]], list[SearchHit]]
) -> list[SearchHit]:
    """Hits for full-text rows of (id, bm25 rank, snippet): score minus the rank."""
    scored = [(int(r[0]), -float(r[1])) for r in rows]
    snippets = {int(r[0]): str(r[2]) for r in rows}
    return [_replace(h, snippet=snippets[h.ref[1]]) for h in to_hits(conn, scored)]


def _replace(hit: SearchHit, **changes: Any) -> SearchHit:
    return replace(hit, **changes)
