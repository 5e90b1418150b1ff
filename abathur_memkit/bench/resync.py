"""``memkit bench ingest --resync N``: re-sync after small edits, every chunk of
a changed file embedded again (before) against only its changed chunks (now).

The corpus is the ingest bench's (every ``step``-th Python docs page, as
markdown). It is synced once with the offline model and the database copied,
so both paths start from the same index. Each round adds a sentence to one
paragraph (outside code) in each of ``files`` pages, then re-syncs the folder
into both databases with the one loaded model, in alternating order (ABBA:
the order flips per round, so both see the same machine load):

- **before**: ``DocumentIndexService(reuse=False)``, every chunk of a changed
  file embedded again (what a re-sync did before chunk vectors were reused);
- **after**: the default, only chunks whose embedding text changed.

Each sync reports the chunks it embedded, the chunks that kept their vector
and its seconds (the database open is not timed).
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..database import Database
from ..embeddings import Embedder, MiniLMEmbedder
from ..search.documents import DocumentIndexService
from .pydocs import DEFAULT_HTML, corpus_pages, write_corpus

__all__ = ["ResyncReport", "edit_paragraph", "run_resync"]

PATHS = ("before", "after")


@dataclass
class ResyncReport:
    pages: int
    files: int
    model: str = ""
    chunks: int = 0  # the corpus's chunks, all embedded by the first sync
    first_seconds: float = 0.0
    # path, round, chunks embedded, chunks reused, chunks of the changed files, seconds
    runs: list[tuple[str, int, int, int, int, float]] = field(default_factory=list)

    def seconds(self, path: str) -> float:
        return statistics.median(r[5] for r in self.runs if r[0] == path)

    def embedded(self, path: str) -> float:
        return statistics.median(r[2] for r in self.runs if r[0] == path)

    @property
    def ratio(self) -> float:
        """Seconds of a re-sync now over before (median of each)."""
        return self.seconds("after") / self.seconds("before")

    def table(self) -> str:
        out = [f"corpus: {self.pages} Python docs pages, {self.chunks} chunks "
               f"(first sync with {self.model}: {self.first_seconds:.1f} s); "
               f"each round edits one paragraph in each of {self.files} pages", "",
               f"{'path':<6} {'round':>5} {'embedded':>9} {'reused':>7} {'in changed':>11} "
               f"{'seconds':>8}"]
        out += [f"{p:<6} {n:>5} {e:>9} {u:>7} {w:>11} {s:>8.2f}"
                for p, n, e, u, w, s in self.runs]
        out += ["",
                f"re-sync (median): before {self.embedded('before'):.0f} chunks embedded in "
                f"{self.seconds('before'):.2f} s, after {self.embedded('after'):.0f} in "
                f"{self.seconds('after'):.2f} s: {self.ratio:.3f}x the time"]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"pages": self.pages, "files": self.files, "model": self.model,
                "chunks": self.chunks, "first_seconds": self.first_seconds,
                "runs": [{"path": p, "round": n, "embedded": e, "reused": u,
                          "chunks_in_changed_files": w, "seconds": s}
                         for p, n, e, u, w, s in self.runs],
                "before_seconds": self.seconds("before"), "after_seconds": self.seconds("after"),
                "before_embedded": self.embedded("before"),
                "after_embedded": self.embedded("after"), "ratio": self.ratio}


def edit_paragraph(text: str, tag: str) -> str | None:
    """``text`` with a sentence added at the end of one prose paragraph (not a
    heading, list, table, quote or code), picked from ``tag``; None if it has none."""
    lines = text.split("\n")
    ends: list[int] = []  # the last line of each prose paragraph
    fence: str | None = None
    start: int | None = None
    for n, line in enumerate([*lines, ""]):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            start = None
            continue
        if not stripped:
            if start is not None and len(" ".join(lines[start:n]).split()) >= 8:
                ends.append(n - 1)
            start = None
        elif start is None and not line.startswith(("#", "-", "*", "|", ">", "    ", "\t")):
            start = n
    if not ends:
        return None
    chosen = random.Random(tag).choice(ends)
    lines[chosen] += f" This sentence was added by edit {tag}."
    return "\n".join(lines)


async def run_resync(
    directory: str | Path | None = None,
    *,
    html_root: Path = DEFAULT_HTML,
    step: int = 8,
    files: int | None = None,
    rounds: int = 2,
    embedder: Embedder | None = None,
    progress: Callable[[str], None] | None = None,
) -> ResyncReport:
    """Edit ``files`` pages (default: every page) ``rounds`` times; time both re-syncs."""
    say = progress or (lambda _message: None)
    pages = corpus_pages(html_root)[::step]
    model = embedder or MiniLMEmbedder()
    await model.embed_documents(["warm up"])  # the model load is not a sync
    report = ResyncReport(pages=len(pages), files=0, model=model.name)
    with tempfile.TemporaryDirectory(prefix="memkit-bench-resync-") as tmp:
        where = Path(directory) if directory else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        corpus = where / "resync-corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        written = write_corpus(corpus, html_root, pages)
        targets = [corpus / p for p in written[:files]]
        report.files = len(targets)
        dbs = {path: where / f"resync-{path}.db" for path in PATHS}
        for db_path in dbs.values():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        say(f"first sync of {len(pages)} pages with {model.name}")
        async with Database(dbs["before"], embedder=model) as db:
            start = time.perf_counter()
            first = await db.documents.sync_directory(corpus, progress=False)
            report.first_seconds = time.perf_counter() - start
            report.chunks = first.embedded_chunks
            await db.backup(dbs["after"])
        for n in range(1, rounds + 1):
            edited = 0
            for target in targets:
                text = edit_paragraph(target.read_text("utf-8"), f"{n}-{target.name}")
                if text is not None:
                    target.write_text(text, "utf-8")
                    edited += 1
            for path in PATHS if n % 2 else PATHS[::-1]:
                say(f"round {n}: re-sync after editing {edited} pages, {path} path")
                async with Database(dbs[path], embedder=model) as db:
                    docs = DocumentIndexService(db, reuse=path == "after")
                    start = time.perf_counter()
                    summary = await docs.sync_directory(corpus, progress=False)
                    seconds = time.perf_counter() - start
                if summary.failed or len(summary.changed) != edited:
                    raise RuntimeError(f"re-sync ({path}) changed {len(summary.changed)} of "
                                       f"{edited} edited pages; failed: {summary.failed}")
                report.runs.append((path, n, summary.embedded_chunks, summary.reused_chunks,
                                    summary.chunks_written, seconds))
    return report
