"""``memkit bench ingest``: offline document ingest, today's path against the old one.

The corpus is a fixed subset of the Python docs (every ``step``-th page of
:func:`~abathur_memkit.bench.pydocs.corpus_pages`, as markdown). Each round
syncs it into a fresh database twice, old path and new path (ABBA: the
order alternates per round, so both see the same machine load):

- **old**: the model's graph as shipped (``MiniLMEmbedder(fused=False)``);
- **new**: the default, attention and GELU fused in memory at load
  (:mod:`abathur_memkit.embeddings.onnx_graph`).

Both embed length-bucketed runs, whole documents per call
(:data:`~abathur_memkit.search.documents.EMBED_GROUP` chunks). Then the model
alone embeds the same chunk texts both ways (passages/s; each half of the texts
in ABBA order), and again with each text cut to a random number of its words
(mixed lengths); old and new vectors
are compared (min cosine). Each sync runs in its own process, so its peak RSS
(``getrusage``) is its path's alone; the process peak is the model-alone
phase's (both embedders).

The ceiling: the encoder's float32 arithmetic per text follows from its token
count, so the model-alone rate is also GFLOP/s, set beside numpy's float32
matrix product of the encoder's largest shape on the same machine, in the same
run. Their ratio bounds how much faster any runtime could embed the same
vectors in float32 here (int8 matmuls change them).
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..database import Database
from ..embeddings import MiniLMEmbedder
from ..search.chunking import embedding_text
from ..search.documents import EMBED_GROUP, DocumentIndexService
from ..search.vectors import embed_texts
from .pydocs import DEFAULT_HTML, corpus_pages, write_corpus

__all__ = ["IngestReport", "encoder_flops", "run_ingest"]

# all-MiniLM-L6-v2's encoder: layers, hidden width, feed-forward width.
_LAYERS, _HIDDEN, _FFN = 6, 384, 1536
#: The encoder's largest matrix product (tokens x hidden @ hidden x ffn), timed in numpy.
GEMM_SHAPE = (4096, _HIDDEN, _FFN)


def encoder_flops(tokens: int) -> int:
    """Float32 operations of the encoder on one text of ``tokens`` tokens: the
    projections and the feed-forward (2 per multiply-add) and attention's two
    products, which grow with the square of the length."""
    per_layer = 2 * tokens * (4 * _HIDDEN * _HIDDEN + 2 * _HIDDEN * _FFN) \
        + 2 * 2 * tokens * tokens * _HIDDEN
    return _LAYERS * per_layer


def _gemm_gflops(repeats: int = 20) -> float:
    """numpy's float32 GEMM rate at ``GEMM_SHAPE`` (its BLAS, its default threads)."""
    rows, inner, cols = GEMM_SHAPE
    rng = np.random.default_rng(5)
    a = rng.random((rows, inner), dtype=np.float32)
    b = rng.random((inner, cols), dtype=np.float32)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * rows * inner * cols / best / 1e9


@dataclass
class IngestReport:
    pages: int
    chunks: int = 0
    tokens_mean: float = 0.0
    runs: list[tuple[str, int, float, float]] = field(default_factory=list)  # path, round, /s, MB
    model: dict[str, float] = field(default_factory=dict)
    min_cosine: float = 0.0
    peak_rss_mb: float = 0.0
    model_gflops: float = 0.0  # the new path's float32 GFLOP/s, model alone
    gemm_gflops: float = 0.0  # numpy's float32 GEMM here, same run

    def rate(self, path: str) -> float:
        return statistics.median(r[2] for r in self.runs if r[0] == path)

    def peak(self, path: str) -> float:
        return max(r[3] for r in self.runs if r[0] == path)

    @property
    def ratio(self) -> float:
        return self.rate("new") / self.rate("old")

    def table(self) -> str:
        out = [f"corpus: {self.pages} Python docs pages, {self.chunks} chunks, "
               f"mean {self.tokens_mean:.0f} tokens", "",
               f"{'path':<5} {'round':>5} {'chunks/s':>9} {'peak RSS MB':>12}"]
        out += [f"{p:<5} {n:>5} {rate:>9.1f} {mb:>12.0f}" for p, n, rate, mb in self.runs]
        out += ["",
                f"end to end (median): old {self.rate('old'):.1f} chunks/s, "
                f"new {self.rate('new'):.1f} chunks/s, ratio {self.ratio:.2f}x",
                f"model alone: old {self.model['old']:.1f} passages/s, "
                f"new {self.model['new']:.1f} passages/s",
                f"model alone, texts cut to mixed lengths: old "
                f"{self.model['old-mixed']:.1f} passages/s, new "
                f"{self.model['new-mixed']:.1f} passages/s "
                f"({self.model['new-mixed'] / self.model['old-mixed']:.2f}x)",
                f"min cosine old vs new vectors: {self.min_cosine:.6f}",
                f"ceiling: the new path's model runs {self.model_gflops:.1f} GFLOP/s of "
                f"float32 math; numpy's float32 GEMM {GEMM_SHAPE} here {self.gemm_gflops:.1f} "
                f"GFLOP/s, so the same math could go at most "
                f"{self.gemm_gflops / self.model_gflops:.2f}x faster (end to end at most "
                f"{self.ratio * self.gemm_gflops / self.model_gflops:.2f}x the old path)",
                f"peak RSS of a sync (own process): old {self.peak('old'):.0f} MB, "
                f"new {self.peak('new'):.0f} MB; of the model-alone phase "
                f"(both embedders): {self.peak_rss_mb:.0f} MB"]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"pages": self.pages, "chunks": self.chunks, "tokens_mean": self.tokens_mean,
                "runs": [{"path": p, "round": n, "chunks_per_s": r, "peak_rss_mb": mb}
                         for p, n, r, mb in self.runs],
                "old_chunks_per_s": self.rate("old"), "new_chunks_per_s": self.rate("new"),
                "ratio": self.ratio, "model_passages_per_s": self.model,
                "min_cosine": self.min_cosine, "peak_rss_mb": self.peak_rss_mb,
                "model_gflops": self.model_gflops, "gemm_gflops": self.gemm_gflops}


def _sync_child(corpus: Path, path: str, db_path: Path) -> dict[str, float]:
    """Sync ``corpus`` in a fresh process (its peak RSS is this path's alone)."""
    out = subprocess.run(
        [sys.executable, "-m", "abathur_memkit.bench.ingest", str(corpus), path, str(db_path)],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"ingest child ({path} path) failed: {out.stderr.strip()}")
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return result


async def _sync(corpus: Path, path: str, db_path: Path) -> dict[str, float]:
    """The child's side: load the model, then time one sync of ``corpus``."""
    embedder = _embedder(path)
    await embedder.embed_documents(["warm up"])  # the model load is not ingest
    async with Database(db_path, embedder=embedder) as db:
        docs = DocumentIndexService(db, embed_group=EMBED_GROUP)
        start = time.perf_counter()
        summary = await docs.sync_directory(corpus, progress=False)
        seconds = time.perf_counter() - start
    return {"chunks": summary.embedded_chunks, "rate": summary.embedded_chunks / seconds,
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _embedder(path: str) -> MiniLMEmbedder:
    return MiniLMEmbedder(fused=path == "new")


async def _model_alone(report: IngestReport, texts: list[str],
                       embedders: dict[str, MiniLMEmbedder], tag: str = "") -> None:
    # Each path embeds each half of the texts, in ABBA order (old, new, new,
    # old), so a change in the machine's load falls on both.
    half = len(texts) // 2
    parts: dict[str, list[Any]] = {path: [None, None] for path in embedders}
    seconds = dict.fromkeys(embedders, 0.0)
    for n, path in enumerate(("old", "new", "new", "old")):
        piece = n // 2
        chunk = texts[:half] if piece == 0 else texts[half:]
        start = time.perf_counter()
        parts[path][piece] = await embed_texts(embedders[path], chunk, batch_size=EMBED_GROUP)
        seconds[path] += time.perf_counter() - start
    vectors = {path: np.concatenate(pair) for path, pair in parts.items()}
    for path in embedders:
        report.model[path + tag] = len(texts) / seconds[path]
    # Both sets are unit length: the row-wise dot product is the cosine.
    cosine = float(np.min(np.sum(vectors["old"] * vectors["new"], axis=1)))
    report.min_cosine = min(report.min_cosine, cosine) if tag else cosine


def _mixed(texts: list[str], seed: int = 11) -> list[str]:
    """Each text cut to a random number of its words: lengths from a few tokens
    to the whole window, like memories and short sections among long chunks."""
    rng = np.random.default_rng(seed)
    out = []
    for text in texts:
        words = text.split()
        out.append(" ".join(words[: int(rng.integers(1, len(words) + 1))]) if words else text)
    return out


async def run_ingest(
    directory: str | Path | None = None,
    *,
    html_root: Path = DEFAULT_HTML,
    step: int = 8,
    rounds: int = 2,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Sync every ``step``-th docs page with the old and the new path, ``rounds`` times."""
    say = progress or (lambda _message: None)
    pages = corpus_pages(html_root)[::step]
    report = IngestReport(pages=len(pages))
    embedders = {path: _embedder(path) for path in ("old", "new")}
    with tempfile.TemporaryDirectory(prefix="memkit-bench-ingest-") as tmp:
        where = Path(directory) if directory else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        corpus = where / "corpus"
        write_corpus(corpus, html_root, pages)
        for n in range(1, rounds + 1):
            # Odd rounds run the old path first, even rounds the new one.
            for path in ("old", "new") if n % 2 else ("new", "old"):
                say(f"round {n}: sync of {len(pages)} pages, {path} path")
                got = await asyncio.to_thread(_sync_child, corpus, path,
                                              where / f"ingest-{path}-{n}.db")
                report.chunks = int(got["chunks"])
                report.runs.append((path, n, got["rate"], got["peak_rss_mb"]))
        say("the model alone, both ways, on the same chunk texts")
        async with Database(where / "texts.db", embedder=embedders["new"]) as db:
            await db.documents.sync_directory(corpus, embed=False, progress=False)
            rows = await db.fetchall("SELECT heading_path, text FROM document_chunks "
                                     "ORDER BY document_id, chunk_index")
        texts = [embedding_text(str(r["heading_path"]), str(r["text"])) for r in rows]
        cap = embedders["new"].max_tokens
        tokens = [min(embedders["new"].count_tokens(t), cap) for t in texts]
        report.tokens_mean = float(np.mean(tokens))
        await _model_alone(report, texts, embedders)
        report.model_gflops = (sum(encoder_flops(n) for n in tokens) * report.model["new"]
                               / len(texts) / 1e9)
        report.gemm_gflops = _gemm_gflops()
        say("the model alone, both ways, on the texts cut to mixed lengths")
        await _model_alone(report, _mixed(texts), embedders, tag="-mixed")
    report.peak_rss_mb = _peak_rss_mb()
    return report


if __name__ == "__main__":  # one timed sync, for run_ingest's child processes
    corpus_arg, path_arg, db_arg = sys.argv[1:4]
    print(json.dumps(asyncio.run(_sync(Path(corpus_arg), path_arg, Path(db_arg)))))
