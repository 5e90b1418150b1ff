"""``db.search``: semantic, keyword and hybrid search over documents and memories.

- ``semantic``: the query's embedding against the vector index (KNN, then
  exact rescoring), with filters (document type, namespace prefix, memory type).
- ``keyword``: SQLite FTS5 with BM25 ranking and snippets; on PostgreSQL the
  chunks' and memories' ``tsvector`` columns (GIN), ``websearch_to_tsquery``
  and ``ts_rank``, snippets by ``ts_headline``.
- ``hybrid``: both, fused (see :mod:`.fusion`).

Documents are searched by chunk (``document_chunks``, written by
``db.documents``); memories by the latest live version of each key. Triggers
queue every memory write (``memory_search_queue``); each memory search first
drains the queue, so results follow updates, deletes and restores. A search on
a read-only store cannot drain it: it searches the index as it stands and
leaves out every queued key (its indexed version may be gone), so it never
returns a stale memory (see :meth:`SearchService.pending_memory_keys`). Vectors
are stored with their model and dimension (``vector_indexes``): searching an
index made by another model raises :class:`StaleIndexError`, and
:meth:`SearchService.reembed` rebuilds everything with the current embedder.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

from ..embeddings.base import Vectors, check_vectors
from ..engines.interface import Connection, Store
from ..errors import InvalidInputError
from ..inputs import DOCUMENT_TYPES, require_document_type, require_int, require_text
from ..memory import MEMORY_TYPES
from ..namespaces import prefix_bounds
from .backends import IdFilter, Neighbour, _check_k, id_list
from .documents import UNEMBEDDED_DOCUMENTS, DocumentIndexService
from .fusion import reciprocal_rank_fusion, score_fusion
from .settings import SearchSettings, settings_of
from .vectors import EMBED_BATCH, INDEXES, StaleIndexError, VectorIndexes, embed_texts

if TYPE_CHECKING:
    from ..embeddings import Embedder

__all__ = [
    "DOCUMENT_TYPES",
    "INDEXES",
    "DocumentHit",
    "Group",
    "SearchHit",
    "SearchService",
    "Source",
    "StaleIndexError",
    "fts_query",
]

Source = Literal["all", "documents", "memories"]
#: What one result is: a chunk (or memory), or a document with its best chunks.
Group = Literal["chunk", "document"]

#: Chunks kept per document in a ``group="document"`` result.
CHUNKS_PER_DOCUMENT = 3
#: Query embeddings kept (per service), least recently used dropped first.
QUERY_CACHE_SIZE = 256
#: Weights of the two modes in hybrid fusion (of min-max-scaled scores), fitted
#: on half of the labelled Python-docs questions and checked on the other half
#: (``memkit bench search --quality``; see the README).
SEMANTIC_WEIGHT = 0.7
KEYWORD_WEIGHT = 0.3

# Memory keys moved from the queue per write transaction.
QUEUE_BATCH = 2000

# A standard English stopword list (NLTK's, less contraction fragments): words
# that match nearly every passage and only let generic chunks win.
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your
    yours yourself yourselves
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"\w+", re.UNICODE)

# Full-text search: each statement selects (id, rank: lower is better, snippet)
# of the rows that match its one query parameter; filters are appended.
CHUNK_KEYWORD = (
    "SELECT c.id, bm25(document_chunks_fts, 1.0, 0.5) AS rank, "
    "snippet(document_chunks_fts, 0, '[', ']', '…', 16) "
    "FROM document_chunks_fts "
    "JOIN document_chunks c ON c.id = document_chunks_fts.rowid "
    "JOIN document_index d ON d.id = c.document_id "
    "WHERE document_chunks_fts MATCH ?"
)
MEMORY_KEYWORD = (
    "SELECT i.entry_id, bm25(memory_fts, 0.5, 1.0) AS rank, "
    "snippet(memory_fts, 1, '[', ']', '…', 16) "
    "FROM memory_fts JOIN memory_search_items i ON i.entry_id = memory_fts.rowid "
    "WHERE memory_fts MATCH ?"
)
QUEUED_KEYS = "SELECT namespace, key FROM memory_search_queue LIMIT ?"
PENDING_KEYS = "SELECT count(*) FROM memory_search_queue"
# Memories indexed for keyword search only (a keyword search caught up without embedding).
UNEMBEDDED = "SELECT count(*) FROM memory_search_items WHERE embedding_model IS NULL"
# A read-only search's memory filter: keys changed since they were indexed are left out.
NOT_QUEUED = (" AND NOT EXISTS (SELECT 1 FROM memory_search_queue q "
              "WHERE q.namespace = i.namespace AND q.key = i.key)")

# ts_headline's options for a snippet like FTS5's: matches in brackets, about 16 words.
_HEADLINE = "'StartSel=[, StopSel=], MaxWords=16, MinWords=8, MaxFragments=1, FragmentDelimiter=…'"


class _Sql(NamedTuple):
    chunk_keyword: str
    memory_keyword: str
    keyword_order: str
    queued_keys: str
    lock_key: str | None  # run before reading a queued key's latest version


SQL = {
    "sqlite": _Sql(CHUNK_KEYWORD, MEMORY_KEYWORD, " ORDER BY rank LIMIT ?", QUEUED_KEYS, None),
    "postgresql": _Sql(
        chunk_keyword=(
            "SELECT c.id, -ts_rank(c.search, q) AS rank, "
            f"ts_headline('english', c.text, q, {_HEADLINE}) "
            "FROM document_chunks c JOIN document_index d ON d.id = c.document_id, "
            "websearch_to_tsquery('english', ?) q WHERE c.search @@ q"
        ),
        memory_keyword=(
            "SELECT i.entry_id, -ts_rank(f.search, q) AS rank, "
            f"ts_headline('english', f.text, q, {_HEADLINE}) "
            "FROM memory_fts f JOIN memory_search_items i ON i.entry_id = f.rowid, "
            "websearch_to_tsquery('english', ?) q WHERE f.search @@ q"
        ),
        # Ties in id order, as FTS5's rowid order; ts_headline runs on the kept rows only.
        keyword_order=" ORDER BY rank, 1 LIMIT ?",
        # Concurrent searches drain different keys instead of waiting for each other.
        queued_keys=QUEUED_KEYS + " FOR UPDATE SKIP LOCKED",
        # A write in progress on the key holds its memory_heads row (its triggers
        # update it): wait for it, so the version read next is the one it commits.
        # Without the wait its queue trigger finds the key queued already, and the
        # drain would index the version before it and drop the key from the queue.
        lock_key="SELECT 1 FROM memory_heads WHERE namespace = ? AND key = ? FOR SHARE",
    ),
}


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    ``score`` is the cosine similarity (semantic), minus the BM25 rank value
    (keyword on SQLite; ``ts_rank`` on PostgreSQL: higher is better either
    way) or the fused score (hybrid).
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
class DocumentHit:
    """One document of a ``group="document"`` search, with its best chunks.

    ``chunks`` are the document's best-matching chunks, best first (at most
    ``CHUNKS_PER_DOCUMENT``); a memory is a document of one chunk. ``score``
    is the best chunk's score (semantic, keyword) or the fused score of the
    document (hybrid); ``ranks`` is the document's rank in each fused mode.
    """

    score: float
    chunks: tuple[SearchHit, ...]
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> SearchHit:
        return self.chunks[0]

    @property
    def source(self) -> Literal["document", "memory"]:
        return self.best.source

    @property
    def file_path(self) -> str | None:
        return self.best.file_path

    @property
    def title(self) -> str | None:
        return self.best.title

    @property
    def document_id(self) -> int | None:
        return self.best.document_id

    @property
    def headings(self) -> tuple[str, ...]:
        """The heading paths of its chunks, best first, without repeats."""
        return tuple(dict.fromkeys(h.heading_path for h in self.chunks if h.heading_path))

    @property
    def ref(self) -> tuple[str, int]:
        """("document", document id) or ("memory", entry id)."""
        return _group_key(self.best)

    @property
    def location(self) -> str:
        """The file path, or ``namespace/key`` for a memory."""
        return str(self.file_path) if self.source == "document" else self.best.location

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"score": self.score, "source": self.source}
        if self.source == "document":
            out.update(file_path=self.file_path, title=self.title,
                       document_id=self.document_id, document_type=self.best.document_type,
                       headings=list(self.headings))
        out["ranks"] = self.ranks
        out["chunks"] = [h.to_dict() for h in self.chunks]
        return out


@dataclass(frozen=True)
class _Filters:
    source: Source
    document_type: str | None
    namespace_bounds: tuple[str, str, str] | None
    memory_type: str | None
    skip_queued: bool = False  # leave out queued memory keys (a read-only search)

    @property
    def documents(self) -> bool:
        return self.source in ("all", "documents")

    @property
    def memories(self) -> bool:
        return self.source in ("all", "memories")


class SearchService:
    """Search over a store: ``db.search`` or ``SearchService(db)``.

    ``settings`` default to the store's own (``Database.search_settings``);
    ``documents`` is the document index that :meth:`reembed` re-embeds (by
    default one on the same store and settings).
    """

    def __init__(
        self,
        store: Store,
        settings: SearchSettings | None = None,
        documents: DocumentIndexService | None = None,
    ) -> None:
        self.store = store
        self.settings = settings_of(store, settings)
        self.documents = (documents if documents is not None
                          else DocumentIndexService(store, self.settings))
        self.vectors = VectorIndexes(store, self.settings)
        self.dialect = store.dialect
        self.sql = SQL[store.dialect]
        # (model name, query) -> its embedding, least recently used first.
        self._query_vectors: OrderedDict[tuple[str, str], Vectors] = OrderedDict()

    # -- public search API -----------------------------------------------------

    @overload
    async def semantic(self, query: str, k: int = 10, *, source: Source = "all",
                       document_type: str | None = None, namespace_prefix: str | None = None,
                       memory_type: str | None = None,
                       group: Literal["chunk"] = "chunk") -> list[SearchHit]: ...

    @overload
    async def semantic(self, query: str, k: int = 10, *, source: Source = "all",
                       document_type: str | None = None, namespace_prefix: str | None = None,
                       memory_type: str | None = None,
                       group: Literal["document"]) -> list[DocumentHit]: ...

    async def semantic(
        self,
        query: str,
        k: int = 10,
        *,
        source: Source = "all",
        document_type: str | None = None,
        namespace_prefix: str | None = None,
        memory_type: str | None = None,
        group: Group = "chunk",
    ) -> list[SearchHit] | list[DocumentHit]:
        """The ``k`` chunks/memories nearest to ``query`` in embedding space.

        ``group="document"``: the ``k`` nearest documents instead, each with its
        best chunks (a memory counts as a document of one chunk).
        """
        filters = _filters(source, document_type, namespace_prefix, memory_type)
        k = _check_k(k)
        query = _check_query(query)
        group = _check_group(group)
        vector = await self._query_vector(query)
        filters = await self._catch_up(filters, embed=True)
        embedder = self.settings.embedder

        async def fetch(n: int) -> list[SearchHit]:
            return await self._semantic(vector, n, filters, embedder)

        return await fetch(k) if group == "chunk" else await _by_document(fetch, k)

    @overload
    async def keyword(self, query: str, k: int = 10, *, source: Source = "all",
                      document_type: str | None = None, namespace_prefix: str | None = None,
                      memory_type: str | None = None, raw: bool = False,
                      group: Literal["chunk"] = "chunk") -> list[SearchHit]: ...

    @overload
    async def keyword(self, query: str, k: int = 10, *, source: Source = "all",
                      document_type: str | None = None, namespace_prefix: str | None = None,
                      memory_type: str | None = None, raw: bool = False,
                      group: Literal["document"]) -> list[DocumentHit]: ...

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
        group: Group = "chunk",
    ) -> list[SearchHit] | list[DocumentHit]:
        """BM25 full-text search; ``raw=True`` passes FTS5 query syntax through
        (on PostgreSQL: ``websearch_to_tsquery`` syntax, ranked by ``ts_rank``).

        By default the query's words (stopwords dropped) are OR-ed, so a
        question finds passages that use some of its words, the more the better.
        ``group="document"`` as for :meth:`semantic`.
        """
        filters = _filters(source, document_type, namespace_prefix, memory_type)
        k = _check_k(k)
        query = _check_query(query)
        group = _check_group(group)
        filters = await self._catch_up(filters, embed=False)

        async def fetch(n: int) -> list[SearchHit]:
            return await self._run_keyword(query, n, filters, raw=raw)

        return await fetch(k) if group == "chunk" else await _by_document(fetch, k)

    @overload
    async def hybrid(self, query: str, k: int = 10, *, source: Source = "all",
                     document_type: str | None = None, namespace_prefix: str | None = None,
                     memory_type: str | None = None, candidates: int | None = None,
                     rrf_k: int | None = None,
                     group: Literal["chunk"] = "chunk") -> list[SearchHit]: ...

    @overload
    async def hybrid(self, query: str, k: int = 10, *, source: Source = "all",
                     document_type: str | None = None, namespace_prefix: str | None = None,
                     memory_type: str | None = None, candidates: int | None = None,
                     rrf_k: int | None = None,
                     group: Literal["document"]) -> list[DocumentHit]: ...

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
        rrf_k: int | None = None,
        group: Group = "chunk",
    ) -> list[SearchHit] | list[DocumentHit]:
        """Semantic and keyword results fused.

        Both modes run at once on one query embedding; each contributes its
        top ``candidates`` chunks/memories (default ``max(5k, 50)``). Each
        mode's scores are scaled to 0..1 and summed with the weights
        ``SEMANTIC_WEIGHT`` and ``KEYWORD_WEIGHT``; ``rrf_k=60`` (say) fuses
        by weighted reciprocal rank instead. With ``group="document"``
        documents are fused, each by its best chunk in each mode.
        """
        filters = _filters(source, document_type, namespace_prefix, memory_type)
        k = _check_k(k)
        if rrf_k is not None:
            rrf_k = require_int(rrf_k, "rrf_k", minimum=0)
        query = _check_query(query)
        group = _check_group(group)
        n = _check_k(candidates if candidates is not None else max(5 * k, 50))
        filters = await self._catch_up(filters, embed=True)
        embedder = self.settings.embedder

        async def semantic() -> list[SearchHit]:
            return await self._semantic(await self._query_vector(query), n, filters, embedder)

        sem, kw = await asyncio.gather(
            semantic(), self._run_keyword(query, n, filters, raw=False))
        lists = {"semantic": sem, "keyword": kw}
        if group == "chunk":
            return _fuse_chunks(lists, k, rrf_k)
        return _fuse_documents(lists, k, rrf_k)

    @overload
    async def search(self, query: str, k: int = 10, *, mode: str = "hybrid",
                     group: Literal["chunk"] = "chunk", **filters: Any) -> list[SearchHit]: ...

    @overload
    async def search(self, query: str, k: int = 10, *, mode: str = "hybrid",
                     group: Literal["document"], **filters: Any) -> list[DocumentHit]: ...

    async def search(self, query: str, k: int = 10, *, mode: str = "hybrid",
                     group: Group = "chunk", **filters: Any
                     ) -> list[SearchHit] | list[DocumentHit]:
        """``semantic``, ``keyword`` or ``hybrid`` by name (the CLI's entry point)."""
        group = _check_group(group)
        if mode == "semantic":
            return await self.semantic(query, k, group=group, **filters)
        if mode == "keyword":
            return await self.keyword(query, k, group=group, **filters)
        if mode == "hybrid":
            return await self.hybrid(query, k, group=group, **filters)
        raise InvalidInputError(f"Invalid search mode: {mode!r} (semantic, keyword or hybrid)")

    def forget_queries(self) -> None:
        """Empty the cache of query embeddings (it keeps the last few hundred)."""
        self._query_vectors.clear()

    async def _query_vector(self, query: str) -> Vectors:
        embedder = self.settings.embedder
        key = (embedder.name, query)
        cached = self._query_vectors.get(key)
        if cached is not None:
            self._query_vectors.move_to_end(key)
            return cached
        vector = check_vectors(await embedder.embed_query(query), embedder.dimensions,
                               what="query vector")
        if vector.ndim != 1:
            raise InvalidInputError(
                f"query vector from {embedder.name} has shape {vector.shape}, "
                f"expected ({embedder.dimensions},)")
        vector = vector.copy()  # shared by later searches: a copy nobody may change
        vector.setflags(write=False)
        self._query_vectors[key] = vector
        if len(self._query_vectors) > QUERY_CACHE_SIZE:
            self._query_vectors.popitem(last=False)
        return vector

    @property
    def read_only(self) -> bool:
        """Whether the store refuses writes: then a search never catches up."""
        # A Database or an engine says; any other store is taken as writable.
        return bool(getattr(self.store, "read_only", False))

    async def pending_memory_keys(self) -> int:
        """How many memory keys changed since memory search indexed them: a
        read-only search leaves them out, a writable one indexes them first."""
        return int(await self.store.read(
            lambda conn: conn.execute(PENDING_KEYS).fetchone()[0]))

    async def unembedded_memories(self) -> int:
        """How many indexed memories have no vector yet (a keyword search indexed
        them without embedding): a read-only semantic search cannot find them,
        a writable one embeds them first."""
        return int(await self.store.read(
            lambda conn: conn.execute(UNEMBEDDED).fetchone()[0]))

    async def _catch_up(self, filters: _Filters, *, embed: bool) -> _Filters:
        """Bring memory search up to date (embedding too when ``embed``) before a
        search reads it (vectors of deleted rows: see :meth:`_semantic`); on a
        read-only store, the filters that leave out the keys still queued."""
        if not filters.memories:
            return filters
        if not self.read_only:
            await self.sync_memories(embed=None if embed else False)
            return filters
        queued = await self.store.read(lambda conn: conn.execute(
            "SELECT 1 FROM memory_search_queue LIMIT 1").fetchone())
        return replace(filters, skip_queued=True) if queued is not None else filters

    async def _run_keyword(self, query: str, k: int, filters: _Filters, *,
                           raw: bool) -> list[SearchHit]:
        match = query if raw else fts_query(query)
        if not match:
            return []
        try:
            return await self.store.read(lambda conn: self._keyword(conn, match, k, filters))
        except InvalidInputError as exc:
            if raw:  # the caller's FTS5 syntax
                raise InvalidInputError(f"Invalid FTS5 query {query!r}: {exc.__cause__}") from exc
            raise

    # -- index state -------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The vector indexes: model, dimensions, backend, size, and whether stale."""
        current = self._current()

        def read(conn: Connection) -> dict[str, Any]:
            out: dict[str, Any] = {"embedder": None, "backend": self.settings.vector_backend,
                                   "indexes": {}}
            if current is not None:
                out["embedder"] = {"model": current[0], "dimensions": current[1]}
            for name in INDEXES:
                info = self.vectors.describe(conn, name, current)
                if info is not None:
                    out["indexes"][name] = info
            out["pending_memory_keys"] = conn.execute(PENDING_KEYS).fetchone()[0]
            out["unembedded_memories"] = conn.execute(UNEMBEDDED).fetchone()[0]
            out["unembedded_documents"] = conn.execute(UNEMBEDDED_DOCUMENTS).fetchone()[0]
            return out

        return await self.store.read(read)

    async def reembed(self, *, progress: bool | None = None) -> dict[str, int]:
        """Rebuild both vector indexes with the current embedder and backend: one call.

        Drops the old vectors, marks every document stale and re-embeds every
        chunk and the latest live version of every memory.
        """
        self.settings.embedder  # noqa: B018 - fails here, before anything is dropped, if none

        def reset(conn: Connection) -> None:
            for name in INDEXES:
                self.vectors.drop_index(conn, name)
            conn.execute(
                "UPDATE document_index SET sync_status = 'stale', updated_at = updated_at "
                "WHERE sync_status IN ('synced', 'failed')"
            )

        await self.store.write(reset)
        documents = await self.documents.embed_pending(progress=progress, retry_failed=True)
        memories = await self.sync_memories()
        return {"chunks": documents.embedded_chunks, "memories": memories["embedded"]}

    async def purge(self) -> int:
        """Delete vectors whose rows are gone (see ``vector_garbage``); return how many."""
        return await self.vectors.purge()

    # -- memories ------------------------------------------------------------------

    async def sync_memories(self, *, embed: bool | None = None) -> dict[str, int]:
        """Bring memory search up to date with memory writes.

        Drains the queue the triggers fill (full-text rows follow at once),
        then embeds the memories that have no vector yet when an embedder is
        configured (``embed=None``) or ``embed=True``. Returns counts.
        """
        changed = 0
        while await self.store.read(lambda conn: conn.execute(
                "SELECT 1 FROM memory_search_queue LIMIT 1").fetchone()) is not None:
            n = await self.store.write(self._drain_queue)
            changed += n
            if n < QUEUE_BATCH:
                break
        embedded = 0
        if embed is None:
            embed = self.settings.has_embedder
        if embed:
            embedded = await self._embed_memories()
        return {"changed": changed, "embedded": embedded}

    def _drain_queue(self, conn: Connection) -> int:
        keys = conn.execute(self.sql.queued_keys, (QUEUE_BATCH,)).fetchall()
        for namespace, key in keys:
            if self.sql.lock_key is not None:
                conn.execute(self.sql.lock_key, (namespace, key))
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
        embedder = self.settings.embedder
        pending = await self.store.read(lambda conn: conn.execute(
            "SELECT 1 FROM memory_search_items WHERE embedding_model IS NULL LIMIT 1").fetchone())
        if pending is None:
            return 0
        await self.store.write(
            lambda conn: self.vectors.prepare_index(conn, "memories", embedder, reset=False))
        await self.purge()
        total = 0
        while True:
            rows = await self.store.read(lambda conn: conn.execute(
                "SELECT i.entry_id, m.key, m.value FROM memory_search_items i "
                "JOIN memory_entries m ON m.id = i.entry_id "
                "WHERE i.embedding_model IS NULL LIMIT ?", (EMBED_BATCH,)).fetchall())
            if not rows:
                return total
            vectors = await embed_texts(embedder, [memory_text(k, v) for _, k, v in rows])
            ids = [int(r[0]) for r in rows]

            def store(conn: Connection, ids: list[int] = ids, vectors: Vectors = vectors) -> int:
                backend, _ = self.vectors.prepare_index(conn, "memories", embedder, reset=False)
                listed, param = id_list(self.dialect, ids)
                live = {r[0] for r in conn.execute(
                    f"SELECT entry_id FROM memory_search_items WHERE entry_id IN ({listed})",
                    (param,))}
                keep = [n for n, i in enumerate(ids) if i in live]
                if keep:
                    backend.upsert(conn, [ids[n] for n in keep], vectors[keep])
                    conn.executemany(
                        "UPDATE memory_search_items SET embedding_model = ?, "
                        "embedding_dimensions = ? WHERE entry_id = ?",
                        [(embedder.name, embedder.dimensions, ids[n]) for n in keep])
                return len(keep)

            total += await self.store.write(store)
            if len(rows) < EMBED_BATCH:
                return total

    # -- index management (on a connection's thread) -------------------------------

    def _current(self) -> tuple[str, int] | None:
        if not self.settings.has_embedder:
            return None
        embedder = self.settings.embedder
        return embedder.name, embedder.dimensions

    # -- searching (on a reader's thread) -------------------------------------------

    async def _semantic(
        self, vector: Vectors, k: int, filters: _Filters, embedder: Embedder
    ) -> list[SearchHit]:
        wanted = self.vectors.made_by(embedder)

        indexes = (("chunks", filters.documents, _chunk_filter, _document_hits),
                   ("memories", filters.memories, _memory_filter, _memory_hits))

        read_only = self.read_only

        def run(conn: Connection, check: bool = True) -> list[SearchHit] | None:
            # Vectors of deleted rows are purged first (None: purge, then again);
            # checked here, not by purge(), to spare a search a round trip.
            if check and conn.execute("SELECT 1 FROM vector_garbage LIMIT 1").fetchone():
                return None
            dead = _dead_chunks(conn) if read_only else 0
            hits: list[SearchHit] = []
            for name, wanted_here, id_filter, to_hits in indexes:
                backend = self.vectors.searchable(conn, name, wanted) if wanted_here else None
                if backend is None:
                    continue
                n = k + dead if name == "chunks" else k
                found = backend.search(conn, vector, n, id_filter=id_filter(filters))
                hits.extend(to_hits(conn, found, self.dialect))
            hits.sort(key=lambda h: -h.score)
            return hits[:k]

        if read_only:  # nothing to purge with: see _dead_chunks
            return await self.store.read(lambda conn: run(conn, check=False)) or []
        hits = await self.store.read(run)
        if hits is None:
            await self.purge()
            hits = await self.store.read(lambda conn: run(conn, check=False))
        return hits or []

    def _keyword(self, conn: Connection, match: str, k: int, filters: _Filters) -> list[SearchHit]:
        hits: list[SearchHit] = []
        if filters.documents:
            sql = self.sql.chunk_keyword
            params: list[Any] = [match]
            if filters.document_type is not None:
                sql += " AND d.document_type = ?"
                params.append(filters.document_type)
            sql += self.sql.keyword_order
            params.append(k)
            hits.extend(_with_snippets(conn, conn.execute(sql, params).fetchall(),
                                       _document_hits, self.dialect))
        if filters.memories:
            sql, params = _memory_terms(self.sql.memory_keyword, [match], filters)
            sql += self.sql.keyword_order
            params.append(k)
            hits.extend(_with_snippets(conn, conn.execute(sql, params).fetchall(),
                                       _memory_hits, self.dialect))
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


def _filters(
    source: object, document_type: object, namespace_prefix: object, memory_type: object
) -> _Filters:
    if source not in ("all", "documents", "memories"):
        raise InvalidInputError(f"Invalid source: {source!r} (all, documents or memories)")
    document_type = require_document_type(document_type)
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


def _check_group(group: object) -> Group:
    if group not in ("chunk", "document"):
        raise InvalidInputError(f"Invalid group: {group!r} (chunk or document)")
    return "document" if group == "document" else "chunk"


def _group_key(hit: SearchHit) -> tuple[str, int]:
    if hit.source == "document":
        return ("document", int(hit.document_id or 0))
    return hit.ref


def _documents(hits: Sequence[SearchHit]) -> list[DocumentHit]:
    """``hits`` (best first) gathered by document, in order of each one's best hit."""
    groups: dict[tuple[str, int], list[SearchHit]] = {}
    for hit in hits:
        groups.setdefault(_group_key(hit), []).append(hit)
    return [DocumentHit(chunks[0].score, tuple(chunks[:CHUNKS_PER_DOCUMENT]))
            for chunks in groups.values()]


async def _by_document(fetch: Callable[[int], Awaitable[list[SearchHit]]],
                       k: int) -> list[DocumentHit]:
    """The best ``k`` documents of what ``fetch(n)`` (the best ``n`` hits) finds:
    ``n`` grows until ``k`` documents are found or nothing more is there."""
    # 8 chunks a document: the top 80 chunks of the Python docs hold 10 pages for
    # most questions (the top 50 for only half), and a second fetch costs more.
    n = min(1000, 8 * k)
    while True:
        hits = await fetch(n)
        documents = _documents(hits)
        if len(documents) >= k or len(hits) < n or n == 1000:
            return documents[:k]
        n = min(1000, 2 * n)


def _ranks(keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Rank (from 1) of each key's first appearance."""
    out: dict[tuple[str, int], int] = {}
    for key in keys:
        out.setdefault(key, len(out) + 1)
    return out


def _fuse(scored: Mapping[str, list[tuple[tuple[str, int], float]]],
          rrf_k: int | None) -> list[tuple[tuple[str, int], float]]:
    """Keys of each mode's ``(key, score)`` list (best first, a key once) fused
    by weighted scaled score, or by weighted reciprocal rank with ``rrf_k``."""
    weights = [{"semantic": SEMANTIC_WEIGHT, "keyword": KEYWORD_WEIGHT}[m] for m in scored]
    if rrf_k is None:
        return score_fusion(list(scored.values()), weights)
    return reciprocal_rank_fusion([[key for key, _ in items] for items in scored.values()],
                                  k=rrf_k, weights=weights)


def _best_by(hits: Sequence[SearchHit],
             key: Callable[[SearchHit], tuple[str, int]]) -> list[tuple[tuple[str, int], float]]:
    """``(key, score)`` of each key's best hit of ``hits`` (best first)."""
    seen: dict[tuple[str, int], float] = {}
    for hit in hits:
        seen.setdefault(key(hit), hit.score)
    return list(seen.items())


def _fuse_chunks(lists: Mapping[str, list[SearchHit]], k: int,
                 rrf_k: int | None) -> list[SearchHit]:
    """Chunks (and memories) of each mode's list, fused (see :func:`_fuse`)."""
    by_ref: dict[tuple[str, int], SearchHit] = {}
    for hits in lists.values():
        for hit in hits:
            if hit.ref not in by_ref or by_ref[hit.ref].snippet is None:
                by_ref[hit.ref] = hit  # keep keyword's snippet when there is one
    ranks = {mode: _ranks([h.ref for h in hits]) for mode, hits in lists.items()}
    fused = _fuse({mode: _best_by(hits, lambda h: h.ref) for mode, hits in lists.items()},
                  rrf_k)
    return [_replace(by_ref[ref], score=score,
                     ranks={mode: r[ref] for mode, r in ranks.items() if ref in r})
            for ref, score in fused[:k]]


def _fuse_documents(lists: Mapping[str, list[SearchHit]], k: int,
                    rrf_k: int | None) -> list[DocumentHit]:
    """Documents fused by their best chunk in each mode; their chunks in fused order."""
    chunks = _fuse_chunks(lists, sum(len(h) for h in lists.values()) or 1, rrf_k)
    members: dict[tuple[str, int], list[SearchHit]] = {}
    for hit in chunks:
        members.setdefault(_group_key(hit), []).append(hit)
    ranks = {mode: _ranks([_group_key(h) for h in hits]) for mode, hits in lists.items()}
    fused = _fuse({mode: _best_by(hits, _group_key) for mode, hits in lists.items()}, rrf_k)
    return [DocumentHit(score, tuple(members[key][:CHUNKS_PER_DOCUMENT]),
                        {mode: r[key] for mode, r in ranks.items() if key in r})
            for key, score in fused[:k]]


def _check_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError(f"Invalid query: {query!r} (expected non-empty text)")
    return require_text(query, "query", max_length=None)


def _chunk_filter(filters: _Filters) -> IdFilter | None:
    if filters.document_type is None:
        # Every stored vector is a live chunk's (chunk ids are never reused and
        # purge() drops the vectors of deleted chunks first): no filter needed,
        # and a filter would make the backend fetch 4x the candidates.
        return None
    return IdFilter("SELECT c.id FROM document_chunks c JOIN document_index d "
                    "ON d.id = c.document_id WHERE c.embedding_model IS NOT NULL "
                    "AND d.document_type = ?", "c.id", (filters.document_type,))


def _dead_chunks(conn: Connection) -> int:
    """Chunk vectors whose chunk is gone and which a read-only search cannot
    purge: it asks for that many more (they find no row and are left out).
    Memory vectors need no such care: their filter selects live items only."""
    return int(conn.execute(
        "SELECT count(*) FROM vector_garbage WHERE index_name = 'chunks'").fetchone()[0])


def _memory_terms(sql: str, params: list[Any], filters: _Filters) -> tuple[str, list[Any]]:
    if filters.namespace_bounds is not None:
        exact, low, high = filters.namespace_bounds
        sql += " AND (i.namespace = ? OR (i.namespace >= ? AND i.namespace < ?))"
        params += [exact, low, high]
    if filters.memory_type is not None:
        sql += " AND i.memory_type = ?"
        params.append(filters.memory_type)
    if filters.skip_queued:
        sql += NOT_QUEUED
    return sql, params


def _memory_filter(filters: _Filters) -> IdFilter:
    sql, params = _memory_terms(
        "SELECT i.entry_id FROM memory_search_items i WHERE i.embedding_model IS NOT NULL",
        [], filters)
    return IdFilter(sql, "i.entry_id", tuple(params))


def _rows_for(
    conn: Connection, sql: str, scored: Sequence[Neighbour], dialect: str
) -> list[tuple[Any, float]]:
    """The row ``sql`` selects for each id of ``scored``, with its score, in that order.

    ``sql`` selects the id first and says ``IN ({ids})`` where the ids go (see
    ``id_list``); ids without a row (gone meanwhile) are left out.
    """
    if not scored:
        return []
    listed, param = id_list(dialect, [i for i, _ in scored])
    rows = conn.execute(sql.format(ids=listed), (param,)).fetchall()
    by_id = {int(r[0]): r for r in rows}
    return [(by_id[i], score) for i, score in scored if i in by_id]


def _document_hits(
    conn: Connection, scored: Sequence[Neighbour], dialect: str
) -> list[SearchHit]:
    hits = []
    for r, score in _rows_for(
        conn,
        "SELECT c.id, c.document_id, c.chunk_index, c.heading_path, c.start_offset, "
        "c.end_offset, c.text, d.file_path, d.title, d.document_type "
        "FROM document_chunks c JOIN document_index d ON d.id = c.document_id "
        "WHERE c.id IN ({ids})",
        scored, dialect,
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


def _memory_hits(
    conn: Connection, scored: Sequence[Neighbour], dialect: str
) -> list[SearchHit]:
    return [
        SearchHit(
            score=score, source="memory", text=memory_text(str(r[2]), str(r[3])),
            namespace=str(r[1]), key=str(r[2]), memory_type=str(r[4]), memory_id=int(r[0]),
            version=int(r[5]),
        )
        for r, score in _rows_for(
            conn,
            "SELECT id, namespace, key, value, memory_type, version FROM memory_entries "
            "WHERE id IN ({ids})",
            scored, dialect,
        )
    ]


def _with_snippets(
    conn: Connection, rows: Sequence[Any],
    to_hits: Callable[[Connection, Sequence[Neighbour], str], list[SearchHit]], dialect: str,
) -> list[SearchHit]:
    """Hits for full-text rows of (id, rank, snippet): score minus the rank."""
    scored = [(int(r[0]), -float(r[1])) for r in rows]
    snippets = {int(r[0]): str(r[2]) for r in rows}
    return [_replace(h, snippet=snippets[h.ref[1]]) for h in to_hits(conn, scored, dialect)]


def _replace(hit: SearchHit, **changes: Any) -> SearchHit:
    return replace(hit, **changes)
