"""load_benchmarks on both JSON flavours, and regression detection across runs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from abathur_memkit import analysis  # noqa: E402
from abathur_memkit.errors import InvalidInputError  # noqa: E402
from abathur_memkit.stats import LatencyStats  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "bench"


def test_sample_files_of_both_flavours() -> None:
    bench = analysis.load_benchmarks(SAMPLE)
    files = sorted(SAMPLE.glob("*.json"))
    assert bench["file"].nunique() == len(files) == 4
    flavours = bench.groupby("flavour")["run"].nunique().to_dict()
    assert flavours == {"memkit": 2, "pytest-benchmark": 2}
    assert bench["datetime"].is_monotonic_increasing
    # Seconds in the files, milliseconds in the frame.
    for path in files:
        doc = json.loads(path.read_text())
        for b in doc["benchmarks"]:
            row = bench[(bench["file"] == str(path)) & (bench["name"] == b["name"])].iloc[0]
            assert row["median_ms"] == pytest.approx(b["stats"]["median"] * 1e3)
            assert row["p50_ms"] == row["median_ms"]
            assert row["rounds"] == b["stats"]["rounds"]
    ours = bench[bench["flavour"] == "memkit"]
    assert ours["sqlite_version"].notna().all() and ours["commit"].str.len().eq(12).all()
    get_memory = ours[ours["name"] == "get_memory"].iloc[0]
    assert get_memory["baseline"] == "raw_lookup" and get_memory["target"] == "<= 1.5"
    assert get_memory["p99_ms"] >= get_memory["p95_ms"] >= get_memory["median_ms"]
    theirs = bench[bench["flavour"] == "pytest-benchmark"]
    assert theirs["data_ms"].map(len).eq(300).all()
    assert theirs["ratio"].isna().all() and theirs["machine"].notna().all()
    # Their files have no p95/p99: computed from the raw samples.
    row = theirs.iloc[0]
    assert row["p99_ms"] == pytest.approx(LatencyStats(
        "x", "x", [round(v * 1e6) for v in row["data_ms"]]).p99_ms, rel=1e-3)
    latest = analysis.latest_run(bench)
    assert latest.groupby("flavour")["run"].nunique().to_dict() == {
        "memkit": 1, "pytest-benchmark": 1}
    # A glob and a list of paths load the same rows.
    assert len(analysis.load_benchmarks(str(SAMPLE / "*.json"))) == len(bench)
    assert len(analysis.load_benchmarks([files[0]])) == len(json.loads(
        files[0].read_text())["benchmarks"])


def test_a_fresh_pytest_benchmark_file(tmp_path: Path) -> None:
    pytest.importorskip("pytest_benchmark")
    (tmp_path / "test_tiny.py").write_text(
        "def test_sum(benchmark):\n    benchmark(sum, range(100))\n")
    out = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:memkit",
         f"--benchmark-json={out}", "--benchmark-min-rounds=20", "--benchmark-max-time=0.01",
         "test_tiny.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        # Under pytest-xdist, PYTEST_XDIST_WORKER would make pytest-benchmark disable itself.
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")})
    assert result.returncode == 0, result.stdout + result.stderr
    bench = analysis.load_benchmarks(out)
    assert bench[["flavour", "name", "fullname"]].values.tolist() == [
        ["pytest-benchmark", "test_sum", "test_tiny.py::test_sum"]]
    row = bench.iloc[0]
    assert row["rounds"] >= 20 and len(row["data_ms"]) == row["rounds"]
    assert row["min_ms"] <= row["median_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["datetime"].tzinfo is not None and row["python"] == ".".join(
        map(str, sys.version_info[:3]))


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(InvalidInputError, match=r"bad\.json"):
        analysis.load_benchmarks(tmp_path / "bad.json")
    with pytest.raises(InvalidInputError, match="no 'benchmarks' list"):
        analysis.load_benchmarks(tmp_path / "other.json")
    with pytest.raises(InvalidInputError, match="does not exist"):
        analysis.load_benchmarks(tmp_path / "missing.json")


# -- regressions -------------------------------------------------------------------


def _run(path: Path, when: str, samples: dict[str, list[float]], *, node: str = "ci-1",
         raw: bool = True, commit: str = "a" * 40) -> Path:
    """A pytest-benchmark file: one benchmark per entry, samples in seconds."""
    benchmarks = []
    for name, xs in samples.items():
        stats = LatencyStats(name, f"bench::{name}", [round(x * 1e9) for x in xs])
        benchmarks.append({"group": "g", "name": name, "fullname": f"bench::{name}",
                           "extra_info": {}, "stats": stats.benchmark_stats(include_data=raw)})
    doc = {"machine_info": {"node": node, "cpu": {"brand_raw": "cpu"}},
           "commit_info": {"id": commit}, "benchmarks": benchmarks, "datetime": when,
           "version": "5.3.1"}
    path.write_text(json.dumps(doc))
    return path


def _samples(rng: random.Random, median: float, n: int = 200) -> list[float]:
    return [median * rng.lognormvariate(0, 0.1) for _ in range(n)]


@pytest.mark.parametrize("raw", [True, False], ids=["mann-whitney", "median-iqr"])
def test_regressions_need_size_and_significance(tmp_path: Path, raw: bool) -> None:
    rng = random.Random(1)
    before = {"steady": _samples(rng, 1e-3), "slower": _samples(rng, 1e-3),
              "faster": _samples(rng, 1e-3), "small_shift": _samples(rng, 1e-3, 5000),
              "too_few": _samples(rng, 1e-3, 5)}
    after = {"steady": _samples(rng, 1e-3), "slower": _samples(rng, 1.5e-3),
             "faster": _samples(rng, 0.6e-3), "small_shift": _samples(rng, 1.05e-3, 5000),
             "too_few": _samples(rng, 3e-3, 5)}
    _run(tmp_path / "a.json", "2026-01-01T00:00:00+00:00", before, raw=raw)
    _run(tmp_path / "b.json", "2026-01-02T00:00:00+00:00", after, raw=raw, commit="b" * 40)
    bench = analysis.load_benchmarks(tmp_path)
    compared = analysis.compare_runs(bench).set_index("name")
    test = "mann-whitney" if raw else "median-iqr"
    assert compared.loc["steady", "verdict"] == "unchanged"
    assert compared.loc["slower", "verdict"] == "regression"
    assert compared.loc["slower", "change"] == pytest.approx(0.5, abs=0.05)
    assert compared.loc["slower", "p_value"] < 1e-6 and compared.loc["slower", "test"] == test
    assert compared.loc["faster", "verdict"] == "improvement"
    # A real 5 % shift on 5,000 samples is significant, but below the 10 % threshold.
    assert compared.loc["small_shift", "p_value"] < 0.01
    assert compared.loc["small_shift", "verdict"] == "unchanged"
    # Three times slower, but five rounds are too few to test.
    assert compared.loc["too_few", "verdict"] == "untestable"
    assert (compared.loc["slower", "before_commit"], compared.loc["slower", "after_commit"]) == (
        "a" * 12, "b" * 12)
    regressions = analysis.detect_regressions(bench)
    assert regressions["name"].tolist() == ["slower"]
    # With a 60 % threshold the 50 % slowdown is no longer reported.
    assert analysis.detect_regressions(bench, threshold=0.6).empty
    fig = analysis.plot_runs(bench, compared.reset_index())
    assert fig.axes[0].get_ylabel().startswith("median latency per call")


def test_runs_on_other_machines_are_not_compared(tmp_path: Path) -> None:
    rng = random.Random(2)
    _run(tmp_path / "a.json", "2026-01-01T00:00:00+00:00", {"x": _samples(rng, 1e-3)})
    _run(tmp_path / "b.json", "2026-01-02T00:00:00+00:00", {"x": _samples(rng, 5e-3)},
         node="laptop")
    _run(tmp_path / "c.json", "2026-01-03T00:00:00+00:00", {"x": _samples(rng, 1e-3)})
    compared = analysis.compare_runs(analysis.load_benchmarks(tmp_path))
    assert compared[["before_run", "after_run", "verdict"]].values.tolist() == [
        ["a", "c", "unchanged"]]
    with pytest.raises(InvalidInputError, match="threshold"):
        analysis.compare_runs(analysis.load_benchmarks(tmp_path), alpha=2)


def test_benchmark_plots(tmp_path: Path) -> None:
    bench = analysis.load_benchmarks(SAMPLE)
    for fig in (analysis.plot_latency(bench), analysis.plot_ratios(bench),
                analysis.plot_runs(bench, analysis.compare_runs(bench))):
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        fig.savefig(tmp_path / "x.png")
    latency = analysis.plot_latency(bench).axes[0]
    assert latency.get_xscale() == "log" and "(ms" in latency.get_xlabel()
    # Latest memkit run and latest pytest-benchmark run, throughput rows left out.
    labels = [t.get_text() for t in latency.get_yticklabels()]
    assert "get_memory" in labels and "test_raw_sqlite_lookup" in labels
    assert "add_memories_batch" not in labels


