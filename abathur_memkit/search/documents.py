"""The markdown document index (the files are the source, the database the index).

``db.documents`` (or ``DocumentIndexService(store, settings)``) keeps one ``document_index``
row per file and its chunks in ``document_chunks`` (full-text indexed by
triggers on SQLite, by a generated ``tsvector`` column on PostgreSQL).
``sync_directory`` walks a folder: unchanged files (same SHA-256) are skipped,
changed ones re-chunked, gone ones removed from the index (never from disk);
then the chunks without vectors are embedded in batches. A re-chunked file's
chunk whose embedding text (headings and text) an old chunk of it had takes
that chunk's vector in the same transaction, when the index's model is still
the embedder's: only new or changed text is embedded again.

``sync_status`` moves ``pending`` (new, not yet embedded) → ``synced``; a
changed file or a new embedding model makes a synced document ``stale``
until it is embedded again; an embedding error makes it ``failed``, with the
message in ``metadata.last_error`` (retried by the next sync).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple

from ..extras import require_extra

try:  # embeddings are numpy arrays: fail with the extra to install, not deep inside
    import numpy as np
except ImportError:
    require_extra("search", "abathur_memkit.search.documents")
    raise

from ..embeddings.base import Vectors, check_vectors, l2_normalize
from ..embeddings.ollama import known_dimensions
from ..engines.interface import Connection, Store
from ..errors import AlreadyExistsError, EmbeddingError, InvalidInputError, NotFoundError
from ..inputs import (
    DOCUMENT_TYPES,
    require_bool,
    require_document_type,
    require_int,
    require_limit,
    require_object,
    require_text,
)
from ..rows import fetch_all, fetch_one
from ..values import timestamp, to_json
from .backends import VectorBackend, id_list
from .chunking import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_OVERLAP,
    Chunk,
    chunk_markdown,
    embedding_text,
    front_matter,
    title_of,
    token_window,
)
from .settings import SearchSettings, settings_of
from .vectors import StaleIndexError, VectorIndexes, embed_texts

if TYPE_CHECKING:
    from ..embeddings import Embedder

__all__ = ["DOCUMENT_TYPES", "DocumentIndexService", "EmbedSummary", "SyncSummary"]


#: The seed design's embedding model: ``update_embedding``'s default.
DEFAULT_EMBEDDING_MODEL = "nomic-embed-text-v1.5"
#: Files larger than this are skipped (with a reason) by ``sync_directory``.
MAX_FILE_BYTES = 10 * 1024 * 1024
#: Chunks given to the embedder per call while embedding documents (whole
#: documents, so about this many): an embedder sorts a call's texts by length,
#: and the more it sees at once, the less of its work is padding.
EMBED_GROUP = 512
# Files written per transaction during a sync, and the most bytes read per batch.
_WRITE_BATCH = 100
_BATCH_BYTES = 32 * 1024 * 1024
# Files are hashed in reads of this size, so a sync's memory does not grow with them.
_READ_SIZE = 1024 * 1024

# metadata may be NULL in rows older databases wrote: read as {} like the rest.
_COLUMNS = (
    "id, file_path, title, document_type, content_hash, chunk_count, embedding_model, "
    "coalesce(metadata, '{}') AS metadata, last_synced_at, sync_status, created_at, updated_at"
)
_JSON = ("metadata",)

PENDING_DOCUMENTS = (
    f"SELECT {_COLUMNS} FROM document_index WHERE sync_status IN ('pending', 'stale') "
    "ORDER BY last_synced_at LIMIT ?"
)
# Documents embed_pending(retry_failed=True) would embed: waiting, with a chunk that has
# no vector. From the documents' rows, not a scan of every chunk's.
UNEMBEDDED_DOCUMENTS = (
    "SELECT count(*) FROM document_index d WHERE d.sync_status IN ('pending', 'stale', "
    "'failed') AND EXISTS (SELECT 1 FROM document_chunks c WHERE c.document_id = d.id "
    "AND c.embedding_model IS NULL)"
)


class _Sql(NamedTuple):
    pending_documents: str


SQL = {
    "sqlite": _Sql(PENDING_DOCUMENTS),
    # Never-synced documents (NULL) first, as SQLite sorts NULLs.
    "postgresql": _Sql(PENDING_DOCUMENTS.replace("ORDER BY last_synced_at",
                                                 "ORDER BY last_synced_at NULLS FIRST, id")),
}


@dataclass
class EmbedSummary:
    """What ``embed_pending`` did."""

    documents: int = 0
    embedded_chunks: int = 0
    synced: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    model: str | None = None
    reset: bool = False  # the index was rebuilt for another model/dimension


@dataclass
class SyncSummary:
    """What ``sync_directory`` found and did; paths are relative to ``root``."""

    root: str
    pattern: str
    scanned: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    embedded_chunks: int = 0
    # Chunks of changed files that took the vector of an old chunk with the same
    # embedding text instead of being embedded again.
    reused_chunks: int = 0
    synced: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    model: str | None = None
    reembedded_all: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        out["failed"] = [{"path": p, "error": e} for p, e in self.failed]
        return out

    def __str__(self) -> str:
        lines = [
            f"{self.root}: {self.scanned} files matching {self.pattern} "
            f"({len(self.added)} added, {len(self.changed)} changed, {self.unchanged} unchanged, "
            f"{len(self.removed)} removed, {len(self.skipped)} skipped)",
        ]
        reused = f" ({_plural(self.reused_chunks, 'chunk')} reused)" if self.reused_chunks else ""
        if self.model is not None and not (self.embedded_chunks or self.failed):
            lines.append(f"nothing to embed: every chunk has its {self.model} vector{reused}")
        elif self.model is not None:
            lines.append(
                f"embedded {_plural(self.embedded_chunks, 'chunk')} with {self.model}{reused}; "
                f"{_plural(self.synced, 'document')} synced, {len(self.failed)} failed"
                + (" (model changed: everything re-embedded)" if self.reembedded_all else "")
            )
        else:
            lines.append(f"{self.chunks_written} chunks written{reused}; no embedder, so keyword "
                         "search only (documents stay pending)")
        lines += [f"  removed  {p}" for p in self.removed]
        lines += [f"  skipped  {p}: {r}" for p, r in self.skipped]
        lines += [f"  failed   {p}: {e}" for p, e in self.failed]
        lines.append(f"took {self.seconds:.2f} s")
        return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(frozen=True)
class _Scanned:
    path: str  # absolute, inside the root (symlinks not resolved)
    relative: str
    real: Path  # the file read (symlinks resolved)
    digest: str
    size: int


@dataclass(frozen=True)
class _Read:
    """A changed file's content, read in full once its hash said it changed."""

    text: str
    digest: str


class DocumentIndexService:
    """The document index: ``db.documents`` or ``DocumentIndexService(store, settings)``.

    ``settings`` default to the store's own (``Database.search_settings``).
    A changed document's chunks whose embedding text is unchanged keep their
    vectors; ``reuse=False`` embeds every chunk of it again (the cost a
    re-sync had before, which ``memkit bench ingest --resync`` compares).
    """

    def __init__(
        self,
        store: Store,
        settings: SearchSettings | None = None,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        overlap: int = DEFAULT_OVERLAP,
        embed_group: int = EMBED_GROUP,
        reuse: bool = True,
    ) -> None:
        chunk_markdown("", max_tokens=max_tokens, overlap=overlap)  # validates both
        self.store = store
        self.settings = settings_of(store, settings)
        self.vectors = VectorIndexes(store, self.settings)
        self.dialect = store.dialect
        self.sql = SQL[store.dialect]
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.embed_group = require_int(embed_group, "embed_group", minimum=1)
        self.reuse = require_bool(reuse, "reuse")

    # -- the seed API ------------------------------------------------------------

    async def index_document(
        self,
        file_path: str,
        title: str,
        content: str,
        document_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        upsert: bool = False,
    ) -> int:
        """Add a document and its chunks; return its id.

        A path indexed already raises ``AlreadyExistsError`` unless ``upsert``
        is true; then the same content as stored (SHA-256) keeps chunks and
        status, and new content replaces the chunks and leaves the document
        pending (new) or stale (it had been embedded) until ``embed_pending``
        / ``sync_directory`` embeds it.
        """
        path = _check_text(file_path, "file_path")
        title = _check_text(title, "title")
        digest = _content_hash(content)
        _check_type(document_type)
        meta = _check_metadata(metadata)
        upsert = require_bool(upsert, "upsert")
        chunks = await asyncio.to_thread(self._chunk, content)

        def write(conn: Connection) -> int:
            if not upsert and conn.execute(
                    "SELECT 1 FROM document_index WHERE file_path = ?", (path,)).fetchone():
                raise AlreadyExistsError(
                    f"Document {path} already exists (pass upsert=True to replace it)")
            return self._upsert(conn, path, title, digest, chunks, document_type, meta)[0]

        return await self.store.write(write)

    async def get_document(self, file_path: str) -> dict[str, Any] | None:
        """The row of ``file_path`` (with ``embedding_blob``), or None."""
        path = _check_text(file_path, "file_path")
        return await self.store.read(lambda conn: fetch_one(
            conn, f"SELECT {_COLUMNS}, embedding_blob FROM document_index WHERE file_path = ?",
            (path,), _JSON))

    async def get_document_by_id(self, doc_id: int) -> dict[str, Any] | None:
        doc_id = _check_id(doc_id)
        return await self.store.read(lambda conn: fetch_one(
            conn, f"SELECT {_COLUMNS}, embedding_blob FROM document_index WHERE id = ?",
            (doc_id,), _JSON))

    async def get_chunks(self, doc_id: int) -> list[dict[str, Any]]:
        """A document's chunks in order: heading path, offsets, token count, text."""
        doc_id = _check_id(doc_id)
        return await self.store.read(lambda conn: fetch_all(
            conn, "SELECT id, chunk_index, heading_path, start_offset, end_offset, token_count, "
            "text, embedding_model, embedding_dimensions FROM document_chunks "
            "WHERE document_id = ? ORDER BY chunk_index", (doc_id,)))

    async def update_embedding(
        self, doc_id: int, embedding: Any, embedding_model: str = DEFAULT_EMBEDDING_MODEL
    ) -> None:
        """Store a document's vector made by ``embedding_model`` (1-D float32: a
        numpy array, a list of floats, or the float32 bytes of the BLOB column).

        The size must be the model's: the database embedder's when it is that
        model, the known size of a named model (nomic-embed-text: 768), or the
        size in the chunk index built by that model. With vector search on and
        the chunk index of that model (or none yet), the document's chunks take
        the vector too, so semantic search finds the document and
        ``embed_pending`` does not embed them again.
        """
        doc_id = _check_id(doc_id)
        model = _check_text(embedding_model, "embedding_model")
        given = _as_vector(embedding, "embedding")
        expected = await self._expected_dimensions(model)
        vector = check_vectors(given, expected or int(given.shape[0]), what="embedding")

        def update(conn: Connection) -> None:
            row = conn.execute("SELECT metadata FROM document_index WHERE id = ?",
                               (doc_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"Document {doc_id} not found")
            meta = _loads(row[0])
            meta["embedding_dimensions"] = int(vector.shape[0])
            conn.execute(
                "UPDATE document_index SET embedding_blob = ?, embedding_model = ?, "
                "metadata = ?, updated_at = ? WHERE id = ?",
                (vector.tobytes(), model, to_json(meta, "metadata"), timestamp(), doc_id),
            )
            self._index_chunks(conn, doc_id, model, vector)

        await self.store.write(update)

    async def search_documents(
        self,
        query_embedding: Any,
        limit: int = 10,
        *,
        embedding_model: str | None = None,
        document_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """The documents whose vectors are nearest (cosine) to a vector you made.

        ``query_embedding`` is taken like ``update_embedding``'s; only documents
        with a vector of its size (and of ``embedding_model``, if given) are
        compared. Rows are the document's columns plus ``score``, best first.
        """
        query = l2_normalize(_as_vector(query_embedding, "query_embedding"))
        limit = require_limit(limit)
        if embedding_model is not None:
            embedding_model = _check_text(embedding_model, "embedding_model")
        _check_type(document_type)
        size = int(query.shape[0]) * 4  # float32 bytes

        def search(conn: Connection) -> list[dict[str, Any]]:
            sql = (f"SELECT {_COLUMNS}, embedding_blob FROM document_index "
                   "WHERE length(embedding_blob) = ?")
            params: list[Any] = [size]
            if embedding_model is not None:
                sql += " AND embedding_model = ?"
                params.append(embedding_model)
            if document_type is not None:
                sql += " AND document_type = ?"
                params.append(document_type)
            rows = fetch_all(conn, sql, params, _JSON)
            for row in rows:
                stored = l2_normalize(np.frombuffer(row.pop("embedding_blob"), np.float32))
                row["score"] = float(np.dot(stored, query))
            rows.sort(key=lambda r: -r["score"])
            return rows[:limit]

        return await self.store.read(search)

    async def mark_synced(self, doc_id: int) -> None:
        """Status ``synced`` now; clears ``metadata.last_error``."""
        await self._set_status(_check_id(doc_id), "synced", error=None)

    async def mark_failed(self, doc_id: int, error: str) -> None:
        """Status ``failed``, the message kept in ``metadata.last_error``."""
        await self._set_status(_check_id(doc_id), "failed", error=str(error))

    async def mark_stale(self, file_path: str, new_content: str | None = None) -> bool:
        """The file changed: status ``stale`` (and, given ``new_content``, its chunks
        re-cut from it). Returns False if the content is the same as indexed."""
        file_path = _check_text(file_path, "file_path")
        if new_content is None:

            def stale(conn: Connection) -> None:
                row = conn.execute("SELECT id FROM document_index WHERE file_path = ?",
                                   (file_path,)).fetchone()
                if row is None:
                    raise NotFoundError(f"Document {file_path} not found")
                conn.execute("UPDATE document_index SET sync_status = 'stale', updated_at = ? "
                             "WHERE id = ?", (timestamp(), row[0]))
                # Re-embed every chunk: that is what stale asks for.
                conn.execute("UPDATE document_chunks SET embedding_model = NULL, "
                             "embedding_dimensions = NULL WHERE document_id = ?", (row[0],))

            await self.store.write(stale)
            return True
        digest = _content_hash(new_content, "new_content")
        row = await self.get_document(file_path)
        if row is None:
            raise NotFoundError(f"Document {file_path} not found")
        if digest == row["content_hash"]:
            return False
        await self.index_document(file_path, row["title"], new_content, row["document_type"],
                                  upsert=True)
        await self.store.write(lambda conn: conn.execute(
            "UPDATE document_index SET sync_status = 'stale' WHERE file_path = ?", (file_path,)))
        return True

    async def unembedded_documents(self) -> int:
        """How many documents wait for embedding (pending, stale or failed) with a
        chunk that has no vector yet (synced with ``embed=False``, or their
        embedding failed): semantic search cannot find those chunks;
        ``embed_pending(retry_failed=True)`` embeds them."""
        return int(await self.store.read(
            lambda conn: conn.execute(UNEMBEDDED_DOCUMENTS).fetchone()[0]))

    async def get_pending_documents(self, limit: int = 100) -> list[dict[str, Any]]:
        """Documents waiting for embeddings (pending or stale), oldest sync first."""
        limit = require_limit(limit)
        return await self.store.read(lambda conn: fetch_all(
            conn, self.sql.pending_documents, (limit,), _JSON))

    async def search_by_type(self, document_type: str, limit: int = 50) -> list[dict[str, Any]]:
        """Documents of one type, newest first."""
        _check_type(document_type)
        if document_type is None:
            raise InvalidInputError("Invalid document_type: None")
        limit = require_limit(limit)
        return await self.store.read(lambda conn: fetch_all(
            conn, f"SELECT {_COLUMNS} FROM document_index WHERE document_type = ? "
            "ORDER BY created_at DESC LIMIT ?", (document_type, limit), _JSON))

    async def list_all_documents(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Every indexed document, by path."""
        sql = f"SELECT {_COLUMNS} FROM document_index ORDER BY file_path"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql, params = sql + " LIMIT ?", (require_limit(limit),)
        return await self.store.read(lambda conn: fetch_all(conn, sql, params, _JSON))

    async def delete_document(self, file_path: str) -> bool:
        """Remove a document (and its chunks and vectors) from the index; the file stays."""
        path = _check_text(file_path, "file_path")
        return bool(await self.store.write(lambda conn: conn.execute(
            "DELETE FROM document_index WHERE file_path = ?", (path,)).rowcount))

    # -- embedding ---------------------------------------------------------------

    async def embed_pending(
        self,
        *,
        limit: int | None = None,
        progress: bool | None = None,
        retry_failed: bool = False,
    ) -> EmbedSummary:
        """Embed the chunks of pending and stale documents (and failed ones, with
        ``retry_failed``) in batches; a progress bar on stderr when ``progress``
        (default: when stderr is a terminal).

        If the stored vectors were made by another model or dimension, the
        index is rebuilt first and every document re-embedded.
        """
        embedder = self.settings.embedder
        summary = EmbedSummary(model=embedder.name)
        _, summary.reset = await self.store.write(
            lambda conn: self.vectors.prepare_index(conn, "chunks", embedder, reset=True))
        await self.vectors.purge()
        statuses = ("pending", "stale", "failed") if retry_failed else ("pending", "stale")

        def todo(conn: Connection) -> list[tuple[int, str, str, int]]:
            sql = (
                "SELECT d.id, d.file_path, d.content_hash, "
                "(SELECT count(*) FROM document_chunks c WHERE c.document_id = d.id "
                " AND c.embedding_model IS NULL) "
                f"FROM document_index d WHERE d.sync_status IN ({','.join('?' * len(statuses))}) "
                "ORDER BY d.id"
            )
            params: tuple[Any, ...] = statuses
            if limit is not None:
                sql, params = sql + " LIMIT ?", (*statuses, limit)
            return [(int(r[0]), str(r[1]), str(r[2]), int(r[3]))
                    for r in conn.execute(sql, params)]

        docs = await self.store.read(todo)
        summary.documents = len(docs)
        bar = _progress_bar(sum(d[3] for d in docs), progress)
        try:
            for group in _groups(docs, self.embed_group):
                await self._embed_group(group, embedder, summary, bar.update)
        finally:
            bar.close()
        return summary

    async def _embed_group(
        self,
        group: list[tuple[int, str, str, int]],
        embedder: Embedder,
        summary: EmbedSummary,
        advance: Callable[[int], object],
    ) -> None:
        ids = [d[0] for d in group]
        listed, param = id_list(self.dialect, ids)
        rows = await self.store.read(lambda conn: conn.execute(
            "SELECT id, document_id, heading_path, text FROM document_chunks "
            f"WHERE document_id IN ({listed}) AND embedding_model IS NULL "
            "ORDER BY document_id, chunk_index", (param,)).fetchall())
        texts = [embedding_text(str(r[2]), str(r[3])) for r in rows]
        try:
            vectors = await embed_texts(embedder, texts, on_batch=advance,
                                        batch_size=max(len(texts), 1))
        except (EmbeddingError, InvalidInputError) as exc:
            message = str(exc)
            await self.store.write(lambda conn: [
                _set_status(conn, doc_id, "failed", message) for doc_id in ids])
            summary.failed.extend((d[1], message) for d in group)
            return
        chunk_ids = [int(r[0]) for r in rows]
        doc_of = [int(r[1]) for r in rows]
        hashes = {d[0]: d[2] for d in group}

        def store(conn: Connection) -> list[str]:
            backend, _ = self.vectors.prepare_index(conn, "chunks", embedder, reset=False)
            # Only documents whose content is still what was embedded.
            current = {int(r[0]): str(r[1]) for r in conn.execute(
                f"SELECT id, content_hash FROM document_index WHERE id IN ({listed})", (param,))}
            chunks_listed, chunks_param = id_list(self.dialect, chunk_ids)
            live = {int(r[0]) for r in conn.execute(
                f"SELECT id FROM document_chunks WHERE id IN ({chunks_listed})",
                (chunks_param,))}
            keep = [n for n, c in enumerate(chunk_ids)
                    if c in live and current.get(doc_of[n]) == hashes[doc_of[n]]]
            if keep:
                backend.upsert(conn, [chunk_ids[n] for n in keep], vectors[keep])
                conn.executemany(
                    "UPDATE document_chunks SET embedding_model = ?, embedding_dimensions = ? "
                    "WHERE id = ?", [(embedder.name, embedder.dimensions, chunk_ids[n])
                                     for n in keep])
            synced = []
            now = timestamp()
            for doc_id, path, digest, _ in group:
                if current.get(doc_id) != digest:
                    continue  # changed meanwhile: stays pending for the next pass
                remaining = conn.execute(
                    "SELECT count(*) FROM document_chunks WHERE document_id = ? "
                    "AND embedding_model IS NULL", (doc_id,)).fetchone()[0]
                if remaining:
                    continue
                _finish(conn, backend, doc_id, embedder, now)
                synced.append(path)
            return synced

        synced = await self.store.write(store)
        summary.synced.extend(synced)
        summary.embedded_chunks += len(chunk_ids)

    async def _expected_dimensions(self, model: str) -> int | None:
        if self.settings.has_embedder and self.settings.embedder.name == model:
            return self.settings.embedder.dimensions
        known = known_dimensions(model)
        if known is not None:
            return known
        row = await self.store.read(lambda conn: fetch_one(
            conn, "SELECT dimensions FROM vector_indexes WHERE name = 'chunks' AND model = ?",
            (model,)))
        return int(row["dimensions"]) if row else None

    def _index_chunks(self, conn: Connection, doc_id: int, model: str, vector: Vectors) -> None:
        """Give a document's chunks its vector in the chunk index, if that index
        can take vectors of ``model`` (vector search on; no other model's index)."""
        if not self.vectors.enabled:
            return
        try:
            backend, _ = self.vectors.prepare_index_for(
                conn, "chunks", model, int(vector.shape[0]), reset=False)
        except StaleIndexError:
            return  # another model's index: the document keeps its own vector only
        chunk_ids = [int(r[0]) for r in conn.execute(
            "SELECT id FROM document_chunks WHERE document_id = ?", (doc_id,))]
        if not chunk_ids:
            return
        unit = l2_normalize(vector)
        backend.upsert(conn, chunk_ids, np.tile(unit, (len(chunk_ids), 1)))
        conn.execute("UPDATE document_chunks SET embedding_model = ?, embedding_dimensions = ? "
                     "WHERE document_id = ?", (model, int(vector.shape[0]), doc_id))

    # -- directory sync ----------------------------------------------------------

    async def sync_directory(
        self,
        root: str | os.PathLike[str],
        pattern: str = "**/*.md",
        *,
        document_type: str | None = None,
        embed: bool | None = None,
        progress: bool | None = None,
    ) -> SyncSummary:
        """Make the index match the markdown files under ``root``.

        Each file matching ``pattern`` is hashed; unchanged ones are skipped,
        new and changed ones chunked and stored. Rows of files that are gone
        are removed (files are never touched). Files outside ``root`` (through
        symlinks), unreadable, too big, not UTF-8 (name or content), and folders
        that cannot be listed (removed meanwhile) are skipped with the reason, and
        a skipped file leaves the index. Only changed files are read whole. Then,
        with an embedder (``embed=None`` means: if the database has one),
        chunks without vectors are embedded: a changed file's unchanged chunks
        keep their vectors, and a new file with the bytes of one already
        indexed (renamed, moved or copied) takes that file's (``reused_chunks``).
        ``document_type`` applies to files whose front matter names none.
        """
        started = time.perf_counter()
        _check_type(document_type)
        root_path = _check_root(root)
        _check_pattern(pattern)
        summary = SyncSummary(root=str(root_path), pattern=pattern)
        low, high = _prefix_range(root_path)
        existing = {
            str(r["file_path"]): str(r["content_hash"])
            for r in await self.store.read(lambda conn: fetch_all(
                conn, "SELECT file_path, content_hash FROM document_index "
                "WHERE file_path >= ? AND file_path < ?", (low, high)))
        }
        scanned, skipped = await asyncio.to_thread(_scan, root_path, pattern)
        summary.scanned = len(scanned) + len(skipped)
        todo = [f for f in scanned if existing.get(f.path) != f.digest]
        summary.unchanged = len(scanned) - len(todo)
        # A new file with an indexed file's bytes (a rename, a move, a copy) can
        # take that file's vectors: its chunks are the same texts.
        same_bytes = {digest: path for path, digest in existing.items()}
        for batch in _batches(todo):
            prepared, unread = await asyncio.to_thread(self._prepare_files, batch, document_type)
            skipped += unread

            def write(conn: Connection, prepared: list[_Prepared] = prepared) -> int:
                return sum(self._upsert(conn, path, title, digest, chunks, dtype, meta,
                                        None if path in existing else same_bytes.get(digest))[1]
                           for _, path, title, digest, chunks, dtype, meta in prepared)

            summary.reused_chunks += await self.store.write(write)
            summary.chunks_written += sum(len(p[4]) for p in prepared)
            for relative, path, *_ in prepared:
                (summary.changed if path in existing else summary.added).append(relative)
        summary.skipped = sorted((relative, reason) for _, relative, reason in skipped)
        # What was skipped leaves the index too: search must not return stale text.
        dropped = {path for path, _, _ in skipped}
        seen = {f.path for f in scanned}
        gone = [p for p in existing
                if p in dropped or (p not in seen and not os.path.isfile(p))]
        if gone:
            await self.store.write(lambda conn: conn.executemany(
                "DELETE FROM document_index WHERE file_path = ?", [(p,) for p in gone]))
            summary.removed = sorted(_relative(p, root_path) for p in gone)
        if embed is None:
            embed = self.settings.has_embedder
        if embed:
            result = await self.embed_pending(progress=progress, retry_failed=True)
            summary.model = result.model
            summary.reembedded_all = result.reset
            summary.embedded_chunks = result.embedded_chunks
            summary.synced = len(result.synced)
            summary.failed = [(_relative(p, root_path), e) for p, e in result.failed]
        summary.seconds = time.perf_counter() - started
        return summary

    # -- internals ---------------------------------------------------------------

    def _chunk(self, content: str) -> list[Chunk]:
        # Chunks fit the embedder's token window, so no chunk's end goes unembedded.
        window = None
        if self.settings.has_embedder:
            embedder = self.settings.embedder
            window = token_window(embedder)
            if self.reuse:
                # Asked now, off the writer: the write that keeps vectors asks too,
                # and a model that must load to answer would load under the write lock.
                self._made_by()
        return chunk_markdown(content, max_tokens=self.max_tokens, overlap=self.overlap,
                              window=window)

    def _prepare_files(
        self, files: Sequence[_Scanned], document_type: str | None
    ) -> tuple[list[_Prepared], list[_Skip]]:
        """Read, check and chunk changed files; the unreadable ones come back as skips."""
        out: list[_Prepared] = []
        skipped: list[_Skip] = []
        for f in files:
            read = _read(f)
            if isinstance(read, str):
                skipped.append((f.path, f.relative, read))
                continue
            fields, _ = front_matter(read.text)
            dtype = fields.get("document_type") or fields.get("type")
            if dtype not in DOCUMENT_TYPES:
                dtype = document_type
            title = title_of(read.text, PurePosixPath(f.relative).stem)
            meta = to_json({"relative_path": f.relative, "bytes": len(read.text.encode("utf-8"))},
                           "metadata")
            out.append((f.relative, f.path, title, read.digest, self._chunk(read.text), dtype,
                        meta))
        return out, skipped

    def _upsert(
        self,
        conn: Connection,
        path: str,
        title: str,
        digest: str,
        chunks: Sequence[Chunk],
        document_type: str | None,
        metadata: str | None,
        same_as: str | None = None,
    ) -> tuple[int, int]:
        """Write a document and its chunks; return its id and how many chunks
        took an old chunk's vector (see ``_reuse``): of its own old chunks, or,
        for a new document, of ``same_as`` (the path of one with its bytes)."""
        now = timestamp()
        reusable = None
        row = conn.execute(
            "SELECT id, content_hash, sync_status, metadata FROM document_index "
            "WHERE file_path = ?", (path,)).fetchone()
        if row is not None and row[1] == digest:
            merged = _merge(row[3], metadata)
            conn.execute(
                "UPDATE document_index SET title = ?, document_type = ?, metadata = ?, "
                "updated_at = ? WHERE id = ? AND (title IS DISTINCT FROM ? "
                "OR document_type IS DISTINCT FROM ? OR metadata IS DISTINCT FROM ?)",
                (title, document_type, merged, now, row[0], title, document_type, merged))
            return int(row[0]), 0
        if row is None:
            doc_id = int(conn.execute(
                "INSERT INTO document_index (file_path, title, document_type, content_hash, "
                "chunk_count, metadata, sync_status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
                (path, title, document_type, digest, len(chunks), metadata or "{}", now,
                 now)).fetchone()[0])
            if same_as is not None and self.reuse:
                source = conn.execute("SELECT id FROM document_index WHERE file_path = ?",
                                      (same_as,)).fetchone()
                reusable = None if source is None else self._reusable(conn, int(source[0]))
        else:
            doc_id = int(row[0])
            status = "pending" if row[2] == "pending" else "stale"
            reusable = self._reusable(conn, doc_id) if self.reuse else None
            conn.execute("DELETE FROM document_chunks WHERE document_id = ?", (doc_id,))
            conn.execute(
                "UPDATE document_index SET title = ?, document_type = ?, content_hash = ?, "
                "chunk_count = ?, metadata = ?, sync_status = ?, embedding_blob = NULL, "
                "embedding_model = NULL, updated_at = ? WHERE id = ?",
                (title, document_type, digest, len(chunks), _merge(row[3], metadata), status,
                 now, doc_id))
        conn.executemany(
            "INSERT INTO document_chunks (document_id, chunk_index, heading_path, start_offset, "
            "end_offset, token_count, text) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(doc_id, c.index, c.heading_text, c.start, c.end, c.tokens, c.text)
             for c in chunks])
        return doc_id, self._reuse(conn, doc_id, chunks, reusable)

    def _reusable(self, conn: Connection, doc_id: int) -> _Reusable | None:
        """Chunks of a document (about to be re-chunked, or with a new file's
        bytes) whose vectors new chunks may take: embedding text -> chunk id,
        only of vectors made by the index's current model (the embedder's, when
        there is one)."""
        wanted = None
        if self.settings.has_embedder:  # created already: chunking asked its window
            wanted = self._made_by()
            if wanted is None:
                return None
        made = self.vectors.current(conn, "chunks", wanted)
        if made is None:
            return None
        rows = conn.execute(
            "SELECT id, heading_path, text FROM document_chunks WHERE document_id = ? "
            "AND embedding_model = ? AND embedding_dimensions = ?", (doc_id, *made))
        by_text = {embedding_text(str(h), str(t)): int(i) for i, h, t in rows}
        return (made, by_text) if by_text else None

    def _made_by(self) -> tuple[str, int] | None:
        """The embedder's (model, dimensions); None when it cannot say (its model
        fails to load): then nothing is reused, and embedding reports the error."""
        embedder = self.settings.embedder
        try:
            return embedder.name, embedder.dimensions
        except Exception:
            return None

    def _reuse(
        self, conn: Connection, doc_id: int, chunks: Sequence[Chunk], reusable: _Reusable | None
    ) -> int:
        """Give each new chunk whose embedding text an old chunk had a copy of
        that chunk's vector (an old row deleted already keeps its vector until
        purged), so only new text is embedded. Returns how many chunks took one."""
        if reusable is None:
            return 0
        made, by_text = reusable
        ids = {int(r[1]): int(r[0]) for r in conn.execute(
            "SELECT id, chunk_index FROM document_chunks WHERE document_id = ?", (doc_id,))}
        pairs = [(by_text[key], ids[c.index]) for c in chunks
                 if (key := c.embedding_text()) in by_text]
        copied = self.vectors.copy_vectors(conn, "chunks", pairs)
        if copied:
            conn.executemany(
                "UPDATE document_chunks SET embedding_model = ?, embedding_dimensions = ? "
                "WHERE id = ?", [(*made, i) for i in copied])
        return len(copied)

    async def _set_status(self, doc_id: int, status: str, error: str | None) -> None:
        def update(conn: Connection) -> None:
            if not _set_status(conn, doc_id, status, error):
                raise NotFoundError(f"Document {doc_id} not found")

        await self.store.write(update)


# -- helpers on a connection's thread ---------------------------------------------


def _finish(
    conn: Connection, backend: VectorBackend, doc_id: int, embedder: Embedder, now: str
) -> None:
    """Mark a fully embedded document synced; its vector is the mean of its chunks'."""
    chunk_ids = [r[0] for r in conn.execute(
        "SELECT id FROM document_chunks WHERE document_id = ?", (doc_id,))]
    vectors = backend.get(conn, chunk_ids)
    blob = None
    if vectors:
        mean = l2_normalize(np.mean(np.stack(list(vectors.values())), axis=0))
        blob = mean.astype(np.float32).tobytes()
    meta = _loads(conn.execute("SELECT metadata FROM document_index WHERE id = ?",
                               (doc_id,)).fetchone()[0])
    meta.pop("last_error", None)
    meta["embedding_dimensions"] = embedder.dimensions
    conn.execute(
        "UPDATE document_index SET sync_status = 'synced', last_synced_at = ?, "
        "embedding_model = ?, embedding_blob = ?, metadata = ?, updated_at = ? WHERE id = ?",
        (now, embedder.name, blob, to_json(meta, "metadata"), now, doc_id))


def _set_status(conn: Connection, doc_id: int, status: str, error: str | None) -> bool:
    row = conn.execute("SELECT metadata FROM document_index WHERE id = ?", (doc_id,)).fetchone()
    if row is None:
        return False
    meta = _loads(row[0])
    if error is None:
        meta.pop("last_error", None)
    else:
        meta["last_error"] = error
    now = timestamp()
    synced_at = now if status == "synced" else None
    conn.execute(
        "UPDATE document_index SET sync_status = ?, metadata = ?, updated_at = ?, "
        "last_synced_at = COALESCE(?, last_synced_at) WHERE id = ?",
        (status, to_json(meta, "metadata"), now, synced_at, doc_id))
    return True


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _merge(old: str | None, new: str | None) -> str:
    merged = _loads(old)
    merged.update(_loads(new))
    return to_json(merged, "metadata")


# -- scanning (in a worker thread) -------------------------------------------------


# (absolute path, path shown in the summary, reason) of a file or folder not indexed.
_Skip = tuple[str, str, str]
# (model, dimensions) of the chunk index, and an old chunk's id by its embedding text.
_Reusable = tuple[tuple[str, int], dict[str, int]]
# (relative path, absolute path, title, digest, chunks, document type, metadata JSON).
_Prepared = tuple[str, str, str, str, list[Chunk], str | None, str | None]


def _scan(root: Path, pattern: str) -> tuple[list[_Scanned], list[_Skip]]:
    """Hash every file matching ``pattern``; nothing is read whole here."""
    scanned: list[_Scanned] = []
    paths, skipped = _glob(root, pattern)
    for path in sorted(paths):
        found = _inspect(path, root)
        if isinstance(found, _Scanned):
            scanned.append(found)
        elif found is not None:
            skipped.append(found)
    return scanned, skipped


def _glob(root: Path, pattern: str) -> tuple[set[str], list[_Skip]]:
    """The paths ``root.glob(pattern)`` yields, but a folder that cannot be listed
    (removed meanwhile, unreadable) is reported instead of ending the walk.

    As with pathlib, ``**`` does not descend into linked folders; a named or
    wildcard folder part does (what it reaches is checked against the root later).
    """
    found: set[str] = set()
    skipped: list[_Skip] = []
    listed: dict[str, list[os.DirEntry[str]]] = {}  # "**" and a wildcard both list a folder

    def listing(folder: str) -> list[os.DirEntry[str]]:
        if folder not in listed:
            try:
                with os.scandir(folder) as entries:
                    listed[folder] = list(entries)
            except OSError as exc:
                shown = _shown(os.path.relpath(folder, root)) + "/"
                skipped.append((folder, shown, f"cannot list folder: {exc.strerror or exc}"))
                listed[folder] = []
        return listed[folder]

    def select(folder: str, parts: tuple[str, ...]) -> None:
        if not parts:
            found.add(folder)
            return
        head, rest = parts[0], parts[1:]
        if head == "**":
            for sub in _folders(folder, listing):
                select(sub, rest)
        elif not any(c in head for c in "*?["):
            child = os.path.join(folder, head)
            if os.path.isdir(child) if rest else os.path.lexists(child):
                select(child, rest)
        else:
            for entry in listing(folder):
                if fnmatchcase(entry.name, head) and (not rest or _is_dir(entry, True)):
                    select(entry.path, rest)

    parts: list[str] = []
    for part in PurePosixPath(pattern).parts:
        if not (part == "**" and parts and parts[-1] == "**"):  # "**/**" is "**"
            parts.append(part)
    select(str(root), tuple(parts))
    return found, skipped


def _folders(
    top: str, listing: Callable[[str], list[os.DirEntry[str]]]
) -> Iterator[str]:
    """``top`` and every folder under it, links to folders not followed."""
    stack = [top]
    while stack:
        folder = stack.pop()
        yield folder
        stack.extend(sorted((e.path for e in listing(folder) if _is_dir(e, False)),
                            reverse=True))


def _is_dir(entry: os.DirEntry[str], follow: bool) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:  # gone since the listing
        return False


def _inspect(path: str, root: Path) -> _Scanned | _Skip | None:
    """Hash one matched path, or say why it is skipped (None: a folder, ignored)."""
    if os.path.isdir(path):
        return None
    raw = os.path.relpath(path, root)
    relative = _shown(raw)
    if relative != raw:
        return path, relative, "file name is not UTF-8 (it cannot be stored as text)"
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        return path, relative, f"cannot resolve: {exc}"
    if not real.is_relative_to(root):
        return path, relative, f"outside the root (links to {real})"
    try:
        info = real.stat()
        if not stat.S_ISREG(info.st_mode):
            return path, relative, "not a regular file"
        if info.st_size > MAX_FILE_BYTES:
            return path, relative, f"larger than {MAX_FILE_BYTES} bytes"
        digest, size = _hash_file(real)
    except OSError as exc:
        return path, relative, f"unreadable: {exc.strerror or exc}"
    if size > MAX_FILE_BYTES:
        return path, relative, f"larger than {MAX_FILE_BYTES} bytes"
    return _Scanned(path, relative, real, digest, size)


def _hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 and size, read in ``_READ_SIZE`` pieces; stops once over the size limit."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while size <= MAX_FILE_BYTES and (piece := f.read(_READ_SIZE)):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def _read(f: _Scanned) -> _Read | str:
    """A changed file's text, or why it cannot be indexed (it may have changed again)."""
    try:
        with f.real.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if len(data) > MAX_FILE_BYTES:
        return f"larger than {MAX_FILE_BYTES} bytes"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (invalid byte at offset {exc.start})"
    return _Read(text, hashlib.sha256(data).hexdigest())


def _batches(files: list[_Scanned]) -> Iterator[list[_Scanned]]:
    """Groups of up to ``_WRITE_BATCH`` files and about ``_BATCH_BYTES`` bytes."""
    batch: list[_Scanned] = []
    size = 0
    for f in files:
        if batch and (len(batch) >= _WRITE_BATCH or size + f.size > _BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(f)
        size += f.size
    if batch:
        yield batch


def _shown(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 become ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _check_root(root: object) -> Path:
    if not isinstance(root, str | os.PathLike) or not str(os.fspath(root)).strip():
        # "" would be Path("") = the current directory: say so instead of syncing it.
        raise InvalidInputError(f"Invalid root: {root!r} (expected a directory path)")
    # Paths are stored as text: a root whose name is not UTF-8 could hold nothing.
    path = Path(require_text(os.fspath(root), "root", max_length=None)).expanduser()
    if not path.is_dir():
        raise InvalidInputError(f"Invalid root: {_shown(str(path))} is not a directory")
    return path.resolve()


def _check_pattern(value: object) -> None:
    pattern = require_text(value, "pattern", max_length=None)
    if not pattern.strip():
        raise InvalidInputError(f"Invalid pattern: {pattern!r}")
    parts = PurePosixPath(pattern.replace("\\", "/")).parts
    if pattern.startswith(("/", "\\", "~")) or ".." in parts or (parts and ":" in parts[0]):
        raise InvalidInputError(
            f"Invalid pattern: {pattern!r} (must stay inside the root: no '..', "
            "no absolute paths)")


def _prefix_range(root: Path) -> tuple[str, str]:
    prefix = str(root).rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _groups(
    docs: list[tuple[int, str, str, int]], size: int
) -> list[list[tuple[int, str, str, int]]]:
    """Whole documents per group, about ``size`` chunks each."""
    groups: list[list[tuple[int, str, str, int]]] = []
    current: list[tuple[int, str, str, int]] = []
    count = 0
    for doc in docs:
        current.append(doc)
        count += doc[3]
        if count >= size:
            groups.append(current)
            current, count = [], 0
    if current:
        groups.append(current)
    return groups


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool | None) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or total == 0:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="chunk", desc="embedding", file=sys.stderr, leave=False)


# -- argument checks ----------------------------------------------------------------


def _check_text(value: object, name: str) -> str:
    text = require_text(value, name, max_length=None)
    if not text.strip():
        raise InvalidInputError(f"Invalid {name}: blank")
    return text


def _content_hash(content: object, name: str = "content") -> str:
    """SHA-256 of the UTF-8 text, as ``sync_directory`` hashes a file's bytes."""
    if not isinstance(content, str):
        raise InvalidInputError(f"Invalid {name}: expected str, got {type(content).__name__}")
    try:
        return hashlib.sha256(content.encode("utf-8")).hexdigest()
    except UnicodeEncodeError as exc:  # lone surrogates cannot be stored as TEXT
        raise InvalidInputError(f"Invalid {name}: not encodable as UTF-8") from exc


def _check_type(document_type: object) -> None:
    require_document_type(document_type)


def _check_metadata(metadata: object) -> str | None:
    if metadata is None:
        return None
    return to_json(require_object(metadata, "metadata"), "metadata")


def _as_vector(value: object, name: str) -> Vectors:
    """A 1-D float32 vector from a numpy array, a list of numbers or float32 bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if not data or len(data) % 4:
            raise InvalidInputError(
                f"{name} bytes must be float32 values (a non-empty multiple of 4 bytes), "
                f"got {len(data)} bytes")
        return np.frombuffer(data, np.float32).copy()
    if isinstance(value, list | tuple):
        if not value or not all(isinstance(x, int | float) and not isinstance(x, bool)
                                for x in value):
            raise InvalidInputError(f"{name} must be a non-empty list of numbers")
        return np.asarray(value, np.float32)
    if not isinstance(value, np.ndarray) or value.ndim != 1:
        raise InvalidInputError(
            f"{name} must be a 1-D float32 numpy array, a list of numbers or float32 bytes")
    return value


def _check_id(doc_id: object) -> int:
    return require_int(doc_id, "document id", minimum=1)
