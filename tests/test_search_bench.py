"""A tiny run of ``memkit bench search`` (the real sizes take minutes: not in the suite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abathur_memkit.bench.search import SearchSizes, clustered_vectors, run_search
from abathur_memkit.cli import main
from abathur_memkit.search.backends import backend_unavailable

TINY = SearchSizes(knn=((600, 32),), queries=5, scan_queries=2, vss_ceiling=(100,),
                   model_files=2, resync_files=20, resync_runs=1)


def test_clustered_vectors_are_unit_and_clustered() -> None:
    data, queries = clustered_vectors(1000, 64, 10)
    assert data.shape == (1000, 64) and queries.shape == (10, 64)
    assert data.dtype.name == "float32"
    assert abs(float((data**2).sum(axis=1).mean()) - 1) < 1e-5
    top = (queries @ data.T).max(axis=1)
    assert top.mean() > 0.5  # every query has real neighbours


async def test_search_bench_smoke(tmp_path: Path) -> None:
    result = await run_search(tmp_path, TINY, model=False)
    methods = {r.method for r in result.knn}
    assert {"memkit-vec", "vec0-float", "scalar-scan"} <= methods
    if backend_unavailable("vss") is None:
        assert "memkit-vss" in methods
        assert any("one vss0 table" in line for line in result.lines)
    ours = next(r for r in result.knn if r.method == "memkit-vec")
    assert ours.recall >= 0.9 and ours.ingest_per_s and ours.ingest_per_s > 0
    assert any(name.startswith("re-sync") for name, *_ in result.targets)
    table = result.table()
    assert "recall@10" in table and "KNN targets are set at 100k x 768" in table
    names = [b["name"] for b in result.report.to_json()["benchmarks"]]
    assert "memkit-vec@0k-32" in names and "resync-unchanged@20" in names


def test_bench_search_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "search.json"
    code = main(["bench", "search", "--quick", "--sizes", "500:16", "--no-model", "--no-vss",
                 "--dir", str(tmp_path / "work"), "--json-out", str(out)])
    assert code in (0, 1)  # 1 only if a target is missed on this machine
    document = json.loads(out.read_text())
    assert document["targets"] and all("met" in t for t in document["targets"])
    assert "memkit-vec" in capsys.readouterr().out
