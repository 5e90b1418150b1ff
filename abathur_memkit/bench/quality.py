"""``memkit bench search --quality``: how well search finds the right pages.

A real documentation corpus (the Python docs from Debian's ``python3.11-doc``,
see :mod:`abathur_memkit.bench.pydocs`) is indexed with the offline model,
then each labelled question of ``data/pydocs_questions.json`` is asked of
every mode, by document (``group="document"``, k = 10). Per mode: recall@5
and recall@10 (share of a question's relevant pages in the top 5 / 10,
averaged), MRR@10 (1 / rank of the first relevant page) and hit@1 (the first
page is relevant), plus p50 latency. Two baselines run over the same chunks:

- **bm25**: textbook Okapi BM25 (k1 = 1.2, b = 0.75) in numpy over the chunk
  texts, words lowercased, a page scored by its best chunk;
- **numpy**: exact cosine of the query embedding against every chunk vector
  held in memory, a page scored by its best chunk. Its latency (query
  embedding included) is the yardstick for semantic search.

Query embeddings are not cached between calls here: each timed call embeds
its query, as a first search would.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..database import Database
from .pydocs import DEFAULT_HTML, corpus_pages, write_corpus
from .search import clustered_vectors

__all__ = ["MODES", "ModeScores", "QualityReport", "Question", "load_questions", "run_quality"]

K = 10
#: The modes and baselines, in table order.
MODES = ("keyword", "semantic", "hybrid", "bm25", "numpy")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Question:
    id: int
    question: str
    relevant: tuple[str, ...]
    split: str


def load_questions(path: str | Path | None = None) -> list[Question]:
    """The labelled questions (default: the Python-docs set shipped in ``data/``)."""
    if path is None:
        text = (resources.files(__package__) / "data" / "pydocs_questions.json").read_text(
            "utf-8")
    else:
        text = Path(path).read_text("utf-8")
    return [Question(int(q["id"]), str(q["question"]), tuple(q["relevant"]),
                     str(q.get("split", "test")))
            for q in json.loads(text)["questions"]]


@dataclass
class ModeScores:
    """Quality and latency of one mode over a set of questions."""

    mode: str
    recall_at_5: float
    recall_at_10: float
    mrr_at_10: float
    hit_at_1: float
    p50_ms: float

    @classmethod
    def of(cls, mode: str, ranked: Sequence[Sequence[str]], questions: Sequence[Question],
           samples_ms: Sequence[float]) -> ModeScores:
        r5, r10, rr, h1 = [], [], [], []
        for pages, q in zip(ranked, questions, strict=True):
            relevant = set(q.relevant)
            r5.append(len(relevant & set(pages[:5])) / len(relevant))
            r10.append(len(relevant & set(pages[:K])) / len(relevant))
            first = next((i for i, p in enumerate(pages[:K], 1) if p in relevant), None)
            rr.append(1 / first if first else 0.0)
            h1.append(1.0 if first == 1 else 0.0)
        return cls(mode, _mean(r5), _mean(r10), _mean(rr), _mean(h1),
                   statistics.median(samples_ms) if samples_ms else float("nan"))


@dataclass
class QualityReport:
    pages: int
    chunks: int
    questions: list[Question]
    #: mode -> ranked page paths per question (same order as ``questions``)
    ranked: dict[str, list[list[str]]] = field(default_factory=dict)
    samples_ms: dict[str, list[float]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def scores(self, split: str | None = None) -> list[ModeScores]:
        keep = [i for i, q in enumerate(self.questions) if split is None or q.split == split]
        qs = [self.questions[i] for i in keep]
        return [ModeScores.of(m, [self.ranked[m][i] for i in keep], qs, self.samples_ms[m])
                for m in MODES if m in self.ranked]

    def table(self) -> str:
        out = [f"{self.pages} pages, {self.chunks} chunks, {len(self.questions)} questions"]
        for split in (None, "fit", "test"):
            scores = self.scores(split)
            n = sum(1 for q in self.questions if split is None or q.split == split)
            out.append("")
            out.append(f"{'all questions' if split is None else split + ' half'} ({n}):")
            out.append(f"{'mode':<9} {'recall@5':>8} {'recall@10':>9} {'MRR@10':>7} "
                       f"{'hit@1':>6} {'p50 ms':>7}")
            for s in scores:
                out.append(f"{s.mode:<9} {s.recall_at_5:>8.3f} {s.recall_at_10:>9.3f} "
                           f"{s.mrr_at_10:>7.3f} {s.hit_at_1:>6.3f} {s.p50_ms:>7.1f}")
        by_mode = {s.mode: s for s in self.scores()}
        if {"semantic", "numpy", "hybrid"} <= set(by_mode):
            sem, ref, hyb = by_mode["semantic"], by_mode["numpy"], by_mode["hybrid"]
            out.append("")
            out.append(f"latency: semantic / numpy scan = {sem.p50_ms / ref.p50_ms:.2f}x, "
                       f"hybrid / semantic = {hyb.p50_ms / sem.p50_ms:.2f}x (p50)")
        out.extend(self.lines)
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"pages": self.pages, "chunks": self.chunks,
                "questions": len(self.questions),
                "scores": {split or "all": [vars(s) for s in self.scores(split)]
                           for split in (None, "fit", "test")}}


async def run_quality(
    directory: str | Path | None = None,
    *,
    html_root: Path = DEFAULT_HTML,
    questions: Sequence[Question] | None = None,
    pages: Sequence[Path] | None = None,
    embedder: str = "default",
    progress: Callable[[str], None] | None = None,
) -> QualityReport:
    """Index the corpus in ``directory`` (default: a temporary one) and score every mode.

    ``pages`` (relative to ``html_root``) defaults to the whole corpus;
    ``questions`` to the shipped set (questions whose pages are all outside
    ``pages`` are dropped).
    """
    say = progress or (lambda _message: None)
    qs = list(questions) if questions is not None else load_questions()
    with tempfile.TemporaryDirectory(prefix="memkit-quality-") as tmp:
        where = Path(directory) if directory else Path(tmp)
        corpus = where / "corpus"
        say(f"converting the HTML pages under {html_root} to markdown")
        written = {str(p) for p in write_corpus(
            corpus, html_root, list(pages) if pages is not None else corpus_pages(html_root))}
        qs = [q for q in qs if set(q.relevant) & written]
        # A database left in ``directory`` by an earlier run is brought up to
        # date, not rebuilt: unchanged pages are not embedded again.
        async with Database(where / "quality.db", embedder=embedder) as db:
            say(f"indexing {len(written)} pages with the {embedder} embedder")
            await db.documents.sync_directory(corpus, progress=False)
            chunks = await _chunks(db)
            report = QualityReport(len(written), len(chunks), qs)
            page_of = {cid: _relative(fp, corpus) for cid, (fp, _) in chunks.items()}
            bm25 = _Bm25([text for _, text in chunks.values()], list(chunks))
            matrix, ids = await _vectors(db)
            say(f"asking {len(qs)} questions of each mode")
            askers = {m: _asker(db, m, corpus, bm25, page_of, matrix, ids) for m in MODES}
            for mode in MODES:
                report.ranked[mode], report.samples_ms[mode] = [], []
            await askers["numpy"]("warm up")  # the model loads once, not in a timing
            # Question by question, every mode in turn, the order rotated: a change
            # of machine load touches all modes alike, and no mode always embeds a
            # question first (onnxruntime is faster on a shape it has just run).
            for n, q in enumerate(qs):
                for mode in MODES[n % len(MODES):] + MODES[: n % len(MODES)]:
                    pages_found, ms = await _timed(askers[mode](q.question))
                    report.ranked[mode].append(pages_found)
                    report.samples_ms[mode].append(ms)
    return report


def _asker(db: Database, mode: str, corpus: Path, bm25: _Bm25, page_of: dict[int, str],
           matrix: Any, ids: Any) -> Callable[[str], Awaitable[list[str]]]:
    async def service(query: str) -> list[str]:
        db.search.forget_queries()  # time the query embedding, as on a first search
        hits = await db.search.search(query, K, mode=mode, source="documents",
                                      group="document")
        return [_relative(str(h.file_path), corpus) for h in hits]

    async def lexical(query: str) -> list[str]:
        return _pages(bm25.top(query, 20 * K), page_of)

    async def exact(query: str) -> list[str]:
        q = await db.embedder.embed_query(query)
        scores = matrix @ q
        top = np.argpartition(-scores, min(20 * K, len(scores) - 1))[: 20 * K]
        order = top[np.argsort(-scores[top])]
        return _pages([int(ids[i]) for i in order], page_of)

    return {"bm25": lexical, "numpy": exact}.get(mode, service)


async def _timed(call: Awaitable[list[str]]) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = await call
    return out, (time.perf_counter() - start) * 1000


def _pages(chunk_ids: Sequence[int], page_of: dict[int, str]) -> list[str]:
    """Pages in the order of their best chunk, at most ``K``."""
    out: list[str] = []
    for cid in chunk_ids:
        page = page_of[cid]
        if page not in out:
            out.append(page)
            if len(out) == K:
                break
    return out


async def _chunks(db: Database) -> dict[int, tuple[str, str]]:
    rows = await db.fetchall(
        "SELECT c.id, d.file_path, c.text FROM document_chunks c "
        "JOIN document_index d ON d.id = c.document_id ORDER BY c.id")
    return {int(r["id"]): (str(r["file_path"]), str(r["text"])) for r in rows}


async def _vectors(db: Database) -> tuple[Any, Any]:
    rows = await db.fetchall("SELECT id, embedding FROM chunks_vectors ORDER BY id")
    ids = np.array([int(r["id"]) for r in rows], dtype=np.int64)
    matrix = np.frombuffer(b"".join(r["embedding"] for r in rows), dtype=np.float32)
    return matrix.reshape(len(rows), -1), ids


def _relative(file_path: str, corpus: Path) -> str:
    try:
        return str(Path(file_path).resolve().relative_to(corpus.resolve()))
    except ValueError:
        return file_path


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


class _Bm25:
    """Okapi BM25 over a list of texts (the baseline, not what search uses)."""

    def __init__(self, texts: Sequence[str], ids: Sequence[int], k1: float = 1.2,
                 b: float = 0.75) -> None:
        self.ids = list(ids)
        self.k1, self.b = k1, b
        self.postings: dict[str, dict[int, int]] = {}
        lengths = []
        for row, text in enumerate(texts):
            words = [w.lower() for w in _WORD.findall(text)]
            lengths.append(len(words))
            for w in words:
                bucket = self.postings.setdefault(w, {})
                bucket[row] = bucket.get(row, 0) + 1
        self.lengths = np.array(lengths, dtype=np.float64)
        self.average = float(self.lengths.mean()) if lengths else 1.0

    def top(self, query: str, n: int) -> list[int]:
        scores = np.zeros(len(self.ids))
        total = len(self.ids)
        for word in dict.fromkeys(w.lower() for w in _WORD.findall(query)):
            posting = self.postings.get(word)
            if not posting:
                continue
            idf = math.log(1 + (total - len(posting) + 0.5) / (len(posting) + 0.5))
            rows = np.fromiter(posting, dtype=np.int64, count=len(posting))
            tf = np.fromiter(posting.values(), dtype=np.float64, count=len(posting))
            norm = self.k1 * (1 - self.b + self.b * self.lengths[rows] / self.average)
            scores[rows] += idf * tf * (self.k1 + 1) / (tf + norm)
        order = np.argsort(-scores, kind="stable")[:n]
        return [self.ids[i] for i in order if scores[i] > 0]


class _SyntheticDocuments:
    """Stands in for the offline model when filling a big index fast: documents
    get clustered random vectors (no inference), queries the real model's
    vectors. Same name and size as the model, so the index is the model's."""

    def __init__(self, model: Any, n: int) -> None:
        self.model = model
        self.name = model.name
        self.dimensions = model.dimensions
        self._vectors, _ = clustered_vectors(n, model.dimensions, 1, seed=11)
        self._next = 0

    async def embed_documents(self, texts: Sequence[str]) -> Any:
        out = self._vectors[self._next : self._next + len(texts)]
        self._next += len(texts)
        return np.ascontiguousarray(out)

    async def embed_query(self, text: str) -> Any:
        return await self.model.embed_query(text)


async def run_scale(
    n: int, directory: str | Path | None = None, *, queries: int = 30,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Latency at ``n`` chunks: semantic and hybrid search by document against an
    exact numpy scan (query embedding included), with the offline model's
    query vectors over ``n`` synthetic chunk vectors. Returns report lines."""
    from ..embeddings import MiniLMEmbedder

    say = progress or (lambda _message: None)
    qs = [q.question for q in load_questions()][:queries]
    rng = np.random.default_rng(5)
    # Text with a natural spread of word frequencies (Zipf over 20,000 words,
    # the questions' words among them at random ranks), so keyword search meets
    # rare and common words as in prose, not a tiny vocabulary in every chunk.
    vocabulary = np.array([f"w{i}" for i in range(20_000)], dtype=object)
    question_words = sorted({w.lower() for q in qs for w in _WORD.findall(q)})
    vocabulary[rng.choice(len(vocabulary), len(question_words), replace=False)] = question_words
    ranks = np.arange(1, len(vocabulary) + 1)
    frequency = 1.0 / ranks ** 1.1
    frequency /= frequency.sum()
    model = MiniLMEmbedder()
    with tempfile.TemporaryDirectory(prefix="memkit-scale-") as tmp:
        where = Path(directory) if directory else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"scale-{n}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        embedder = _SyntheticDocuments(model, n)
        async with Database(path, embedder=embedder) as db:
            say(f"writing {n:,} synthetic chunks")
            per_doc = 20
            for d in range(math.ceil(n / per_doc)):
                sections = [f"## Part {s}\n\n" + " ".join(rng.choice(vocabulary, 40,
                                                                    p=frequency)) + "."
                            for s in range(min(per_doc, n - d * per_doc))]
                await db.documents.index_document(f"doc-{d}.md", f"Doc {d}",
                                                  f"# Doc {d}\n\n" + "\n\n".join(sections))
            await db.documents.embed_pending(progress=False)
            matrix, ids = await _vectors(db)
            say(f"{len(ids):,} vectors; timing {len(qs)} queries per mode")
            samples: dict[str, list[float]] = {"numpy": [], "semantic": [], "hybrid": []}
            for q in qs:
                for mode in samples:
                    db.search.forget_queries()
                    start = time.perf_counter()
                    if mode == "numpy":
                        vector = await model.embed_query(q)
                        scores = matrix @ vector
                        top = np.argpartition(-scores, 20 * K)[: 20 * K]
                        top[np.argsort(-scores[top])]
                    else:
                        await db.search.search(q, K, mode=mode, source="documents",
                                               group="document")
                    samples[mode].append((time.perf_counter() - start) * 1000)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    p50 = {m: statistics.median(s) for m, s in samples.items()}
    return [f"{len(ids):,} chunks: p50 numpy scan {p50['numpy']:.1f} ms, semantic "
            f"{p50['semantic']:.1f} ms ({p50['semantic'] / p50['numpy']:.2f}x), hybrid "
            f"{p50['hybrid']:.1f} ms ({p50['hybrid'] / p50['semantic']:.2f}x semantic)"]
