"""``memkit index DB FOLDER``, ``memkit search DB "…"`` and ``memkit watch DB FOLDER``."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from ..inputs import DOCUMENT_TYPES, VECTOR_BACKENDS
from ..memory import MEMORY_TYPES
from . import add_json_flag, add_output_flags, emit, emit_rows, example

__all__ = ["register"]



def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "index", help="index a folder of markdown files (creates DB if missing), "
                      "or without FOLDER what search cannot see yet (memories changed since "
                      "the last index, chunks with no vector)",
        **example("memkit index agents.db design_docs/",
                  "memkit index agents.db design_docs/ --no-embed --pattern 'guides/**/*.md'",
                  "memkit index agents.db"))
    _database(p)
    p.add_argument("directory", metavar="FOLDER", nargs="?",
                   help="markdown folder (without it: bring memory search up to date and "
                        "embed the chunks that have no vector)")
    _common(p, embedder_default=None,
            default_help="default, or without FOLDER the one the index was built with")
    p.add_argument("--pattern", default="**/*.md", help="glob under FOLDER (default: **/*.md)")
    p.add_argument("--type", dest="document_type", choices=DOCUMENT_TYPES,
                   help="document type for files whose front matter names none")
    p.add_argument("--no-embed", action="store_true",
                   help="chunk and full-text index only (keyword search)")
    p.add_argument("--reembed", action="store_true",
                   help="rebuild every vector with the current embedder first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(p)
    p.set_defaults(handler=cmd_index)

    p = subparsers.add_parser(
        "search", help="search indexed documents and memories",
        **example('memkit search agents.db "how do sessions expire?" -k 3',
                  "memkit search agents.db SQLITE_BUSY --mode keyword --csv"))
    _database(p)
    p.add_argument("query")
    _common(p, embedder_default=None)
    p.add_argument("--mode", choices=("semantic", "keyword", "hybrid"), default="hybrid")
    p.add_argument("-k", type=int, default=5, help="results (default: 5)")
    p.add_argument("--source", choices=("all", "documents", "memories"), default="all")
    p.add_argument("--type", dest="document_type", choices=DOCUMENT_TYPES)
    p.add_argument("--namespace", dest="namespace_prefix", help="memory namespace prefix")
    p.add_argument("--memory-type", choices=MEMORY_TYPES)
    p.add_argument("--chunks", action="store_true",
                   help="one result per chunk (default: per document, with its best chunks)")
    add_output_flags(p)
    p.set_defaults(handler=cmd_search)

    p = subparsers.add_parser("watch", help="keep a folder's index up to date",
                              **example("memkit watch agents.db design_docs/ --debounce 1"))
    _database(p)
    p.add_argument("directory", metavar="FOLDER")
    _common(p, embedder_default="default")
    p.add_argument("--pattern", default="**/*.md")
    p.add_argument("--debounce", type=float, default=0.5,
                   help="seconds of quiet before a sync (default: 0.5)")
    p.add_argument("--no-embed", action="store_true")
    add_json_flag(p)
    p.set_defaults(handler=cmd_watch)


def _database(p: argparse.ArgumentParser) -> None:
    # dest "db": the handlers below read args.db, as when this was the --db option.
    p.add_argument("db", metavar="DB", help="database file or postgresql:// DSN")


def _common(p: argparse.ArgumentParser, *, embedder_default: str | None,
            default_help: str = "the one the index was built with") -> None:
    help_text = ("embedder: default (offline MiniLM), hashing, ollama[:model], "
                 "or an ONNX model directory")
    if embedder_default is None:
        help_text += f" (default: {default_help})"
    p.add_argument("--embedder", default=embedder_default, help=help_text)
    p.add_argument("--backend", choices=VECTOR_BACKENDS, default=None,
                   help="vector backend (default: the index's, else vec)")


def _spec_for(model: str) -> str:
    from ..embeddings import get_embedder
    from ..errors import InvalidInputError

    try:
        get_embedder(model)
    except InvalidInputError:
        return f"ollama:{model}"
    return model


def _require_database(path: str) -> None:
    from ..database import is_dsn
    from ..errors import DatabaseFileError

    if not is_dsn(path) and not Path(path).exists():
        raise DatabaseFileError(
            f"no database at {path} (build one with: memkit index {path} FOLDER)")


async def _open(args: argparse.Namespace, *, embed: bool, read_only: bool = False) -> Any:
    """The database, opened once, with the embedder and backend its stored index was built with
    (unless ``--embedder``/``--backend`` say otherwise); ``read_only``: never written."""
    from ..database import is_dsn
    from ..engines.sqlite.files import read_only_location
    from ..search.vectors import stored_index
    from .admin import open_existing, open_or_create

    if read_only or (not is_dsn(args.db) and read_only_location(args.db)):
        db = open_existing(args.db)  # read-only: refused writes say so
    else:
        db = open_or_create(args.db)
    await db.initialize()
    try:
        model, backend = await stored_index(db)
        spec = args.embedder
        if spec is None and embed and model is not None:
            spec = _spec_for(model)
        await db.use_embedder(spec if embed else None, vector_backend=args.backend or backend)
    except BaseException:
        await db.close()
        raise
    return db


async def cmd_index(args: argparse.Namespace) -> int:
    if args.directory is None:
        return await _index_memories(args)
    if args.embedder is None:
        args.embedder = "default"
    db = await _open(args, embed=not args.no_embed)
    async with db:
        if args.reembed and not args.no_embed:
            await db.search.reembed(progress=False if args.no_progress else None)
        summary = await db.documents.sync_directory(
            args.directory, args.pattern, document_type=args.document_type,
            embed=not args.no_embed, progress=False if args.no_progress else None)
    emit(args, summary.to_dict(), str(summary))
    return 0 if summary.ok else 1


async def _index_memories(args: argparse.Namespace) -> int:
    """``memkit index DB``: index what a read-only ``memkit search`` cannot see yet
    (memory keys written since the last index, memories and document chunks with
    no vector), with the index's embedder."""
    _require_database(args.db)
    db = await _open(args, embed=not args.no_embed)
    progress = False if args.no_progress else None
    async with db:
        if args.reembed and not args.no_embed:
            await db.search.reembed(progress=progress)
        counts = await db.search.sync_memories()
        documents = None
        # Checked first: embedding with nothing to embed would still write the index's row.
        if db.has_embedder and await db.documents.unembedded_documents():
            documents = await db.documents.embed_pending(progress=progress, retry_failed=True)
    changed, embedded = counts["changed"], counts["embedded"]
    lines = []
    if changed or embedded:
        lines.append(f"{_plural(changed, 'memory key', 'memory keys')} indexed, "
                     f"{_plural(embedded, 'memory', 'memories')} embedded")
    data: dict[str, Any] = {"memories": counts}
    if documents is not None:
        data["documents"] = {"embedded_chunks": documents.embedded_chunks,
                             "synced": documents.synced, "failed": documents.failed}
        lines.append(f"{_plural(documents.embedded_chunks, 'document chunk', 'document chunks')}"
                     f" embedded, {_plural(len(documents.synced), 'document', 'documents')} "
                     "synced")
        lines += [f"failed: {path}: {error}" for path, error in documents.failed]
    emit(args, data, "\n".join(lines) or "search is up to date: nothing to index")
    return 1 if documents is not None and documents.failed else 0


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


async def cmd_search(args: argparse.Namespace) -> int:
    _require_database(args.db)
    mode = args.mode
    # A read: the index as it stands; memory changes since are left out and counted.
    db = await _open(args, embed=mode != "keyword", read_only=True)
    if mode != "keyword" and not db.has_embedder:
        print(f"memkit: {args.db} has no vector index (indexed with --no-embed?): "
              "keyword search only", file=sys.stderr)
        mode = "keyword"
    filters = {"source": args.source, "document_type": args.document_type,
               "namespace_prefix": args.namespace_prefix, "memory_type": args.memory_type}
    group = "chunk" if args.chunks else "document"
    memories = args.source == "memories" or (args.source == "all" and args.document_type is None)
    documents = args.source != "memories"
    # Keyword search reads them; semantic search needs their vectors.
    semantic = mode != "keyword"
    async with db:
        hits = await db.search.search(args.query, args.k, mode=mode, group=group, **filters)
        pending = await db.search.pending_memory_keys()
        unembedded = await db.search.unembedded_memories() if semantic and memories else 0
        unembedded_docs = (await db.documents.unembedded_documents()
                           if semantic and documents else 0)
    data = {"query": args.query, "mode": mode, "group": group,
            "pending_memory_keys": pending, "unembedded_memories": unembedded,
            "unembedded_documents": unembedded_docs, "hits": [h.to_dict() for h in hits]}
    columns = _HIT_COLUMNS if group == "chunk" else _DOCUMENT_COLUMNS
    emit_rows(args, data["hits"], columns, document=data, text=_hits_text(hits))
    if unembedded_docs:
        print(f"memkit: {_plural(unembedded_docs, 'document has', 'documents have')} chunks "
              f"with no vector yet (semantic matching cannot find them): run "
              f"`memkit index {args.db}` to embed them", file=sys.stderr)
    if pending and memories:
        print(f"memkit: {_plural(pending, 'memory key', 'memory keys')} changed since the "
              f"last index (left out of these results): run `memkit index {args.db}` to "
              "include them", file=sys.stderr)
    if unembedded:
        print(f"memkit: {_plural(unembedded, 'memory is', 'memories are')} indexed for "
              f"keyword search only (semantic matching cannot find them): run "
              f"`memkit index {args.db}` to embed them", file=sys.stderr)
    return 0


# What --table shows of a hit: where it is (a document or a memory) and its text.
_HIT_COLUMNS = ("score", "source", "file_path", "heading", "namespace", "key", "text")
# ... and of a document (the default): where it is, and the headings of its best chunks.
_DOCUMENT_COLUMNS = ("score", "source", "file_path", "title", "headings")


def _hits_text(hits: list[Any]) -> str:
    if not hits:
        return "no results"
    lines = []
    for n, hit in enumerate(hits, start=1):
        if hasattr(hit, "chunks"):  # a document: its best chunks' headings, the best one's text
            lines.append(f"{n:>2}. {hit.score:.4f}  {_where(hit.best, heading=False)}")
            lines.extend(f"    › {heading}" for heading in hit.headings)
            lines.append(_body(hit.best, "    "))
        else:
            lines.append(f"{n:>2}. {hit.score:.4f}  {_where(hit, heading=True)}")
            lines.append(_body(hit, "    "))
    return "\n".join(lines)


def _where(hit: Any, *, heading: bool) -> str:
    if hit.source != "document":
        return f"memory {hit.namespace}/{hit.key} (v{hit.version})"
    try:
        where = str(Path(hit.file_path).relative_to(Path.cwd()))
    except ValueError:
        where = str(hit.file_path)
    if heading and hit.heading_path:
        where += f" › {hit.heading_path}"
    elif not heading and hit.title:
        where += f" — {hit.title}"
    return where


def _body(hit: Any, indent: str) -> str:
    body = " ".join((hit.snippet or hit.text).split())
    return textwrap.indent(textwrap.shorten(body, 160, placeholder=" …"), indent)


async def cmd_watch(args: argparse.Namespace) -> int:
    from ..search.watch import watch_directory

    db = await _open(args, embed=not args.no_embed)

    def report(summary: Any) -> None:
        emit(args, summary.to_dict(), str(summary))
        sys.stdout.flush()

    def failed(error: Exception) -> None:
        print(f"memkit: sync failed, still watching: {error}", file=sys.stderr)

    async with db:
        print(f"watching {Path(args.directory).resolve()} ({args.pattern}); Ctrl-C stops",
              file=sys.stderr)
        await watch_directory(db, args.directory, args.pattern, debounce=args.debounce,
                              on_sync=report, on_error=failed, progress=False)
    return 0
