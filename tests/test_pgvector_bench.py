"""The pgvector benchmark (``bench/pgvector.py``) runs end to end on a small index."""

from __future__ import annotations

import pytest


def test_pgvector_bench_compares_memkit_and_raw_sql(pg_memkit_dsn: str) -> None:
    pytest.importorskip("pgvector")
    from abathur_memkit.bench.pgvector import run_pgvector

    report = run_pgvector(pg_memkit_dsn, 2_000, 32, queries=20, rounds=1, exact_queries=2)
    assert (report.n, report.dims, report.queries, report.k) == (2_000, 32, 20, 10)
    # Both sides ask the same HNSW index at the same ef_search: the same neighbours.
    assert report.memkit_recall >= 0.9 and report.raw_recall >= 0.9
    assert abs(report.memkit_recall - report.raw_recall) < 0.02
    assert report.memkit_p50_ms > 0 and report.raw_p50_ms > 0 and report.exact_p50_ms > 0
    assert "memkit / raw p50" in str(report) and report.to_dict()["ratio"] == report.ratio
