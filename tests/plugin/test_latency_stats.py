"""Latency statistics, the significance test, tolerances, gates and baselines (no pytest run)."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from pathlib import Path

import pytest

from pytest_abathur.latency import (
    Baseline,
    Gates,
    LatencyStats,
    StepCounter,
    benchmark_json,
    compare,
    evaluate,
    machine_key,
    mann_whitney_greater,
    measure,
    parse_tolerance,
)


def stats_of(data_ns: list[int], **kw: object) -> LatencyStats:
    return LatencyStats("t", "tests/x.py::t", data_ns, **kw)  # type: ignore[arg-type]


def test_percentiles_use_linear_interpolation() -> None:
    rng = random.Random(7)
    data = [rng.randint(10_000, 900_000) for _ in range(501)]
    s = stats_of(data)
    cuts = statistics.quantiles(data, n=100, method="inclusive")  # numpy's default method
    for q in (50, 95, 99):
        assert s.percentile_ms(q) == pytest.approx(cuts[q - 1] / 1e6)
    assert s.mean_ms == pytest.approx(statistics.fmean(data) / 1e6)
    assert s.stddev_ms == pytest.approx(statistics.stdev(data) / 1e6)
    assert (s.min_ms, s.max_ms) == (min(data) / 1e6, max(data) / 1e6)
    assert s.ops == pytest.approx(len(data) / (sum(data) / 1e9))


def test_percentiles_are_of_individual_latencies_not_round_means() -> None:
    # 99 fast calls and one slow one: p99 sits near the slow one, a mean would hide it.
    s = stats_of([1_000] * 99 + [1_000_000])
    assert s.max_ms == 1.0
    assert s.p99_ms > 0.005 and s.p50_ms == 0.001


def test_benchmark_stats_agree_with_pytest_benchmark() -> None:
    bench_stats = pytest.importorskip("pytest_benchmark.stats")
    rng = random.Random(3)
    for n in (1, 2, 7, 10, 101, 250):
        data = [rng.randint(1_000, 50_000) for _ in range(n)]
        ours = stats_of(data).benchmark_stats()
        theirs = bench_stats.Stats()
        for x in data:
            theirs.update(x / 1e9)
        for key in theirs.fields:
            expected = getattr(theirs, key)
            if isinstance(expected, str):
                assert ours[key] == expected, key
            else:
                assert ours[key] == pytest.approx(expected), (n, key)
        assert ours["data"] == pytest.approx([x / 1e9 for x in data])
        assert ours["p99"] >= ours["median"]


def test_mann_whitney_matches_reference_values() -> None:
    # Reference: scipy.stats.mannwhitneyu(a, b, alternative="greater",
    # method="asymptotic") with its default continuity correction.
    a = [19, 22, 16, 29, 24]
    b = [20, 11, 17, 12]
    assert mann_whitney_greater(a, b) == pytest.approx(0.0556, abs=1e-4)
    # Identical samples: no evidence of a slowdown (scipy also says 1.0).
    assert mann_whitney_greater([5, 5, 5], [5, 5, 5]) == 1.0
    rng = random.Random(11)
    slow = [rng.gauss(120, 10) for _ in range(200)]
    fast = [rng.gauss(100, 10) for _ in range(200)]
    assert mann_whitney_greater(slow, fast) < 1e-20
    assert mann_whitney_greater(fast, slow) > 0.999


@pytest.mark.parametrize(
    ("value", "expected"),
    [("20%", 0.2), ("0.2", 0.2), (0.2, 0.2), (1, 1.0), (None, None), ("", None), ("5 %", 0.05)],
)
def test_parse_tolerance(value: object, expected: float | None) -> None:
    assert parse_tolerance(value) == expected


@pytest.mark.parametrize("bad", ["-5%", "abc", True])
def test_parse_tolerance_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_tolerance(bad)


def test_gates_merge_and_reject_unknown_keys() -> None:
    base = Gates.from_mapping({"p99_ms": "5", "max_regression": "20%"})
    merged = Gates.from_mapping({"p99_ms": 2, "max_vm_steps": 100}, base)
    assert (merged.p99_ms, merged.max_regression, merged.max_vm_steps) == (2.0, 0.2, 100)
    with pytest.raises(TypeError, match="unknown memkit_latency gate"):
        Gates.from_mapping({"p999_ms": 1})


def test_evaluate_thresholds_vm_steps_and_modes() -> None:
    s = stats_of([2_000_000] * 10, vm_steps=500)  # 2 ms, 500 steps
    gates = Gates(p99_ms=1.0, p50_ms=10.0, max_vm_steps=100)
    failures = evaluate(s, gates)
    assert failures == ["p99 2 ms > gate 1 ms", "vm steps 500 > gate 100"]
    assert evaluate(s, gates, wall=False) == ["vm steps 500 > gate 100"]
    assert evaluate(s, gates, wall=False, vm=False) == []
    assert evaluate(s, Gates(p99_ms=10_000.0)) == []


def test_regression_needs_significance_and_tolerance() -> None:
    rng = random.Random(5)
    base = [int(rng.gauss(100_000, 5_000)) for _ in range(300)]
    entry = {"data_ns": base, "vm_steps": 100}
    slower = stats_of([int(x * 1.5) for x in base], vm_steps=100)
    slower.comparison = compare(slower, entry)
    assert slower.comparison.change == pytest.approx(0.5, abs=0.05)
    assert any("median regressed" in f for f in evaluate(slower, Gates(max_regression=0.2)))
    # Same shift, tolerance above it: no failure.
    assert evaluate(slower, Gates(max_regression=0.8)) == []
    # A tiny shift is significant with 300 samples, but within tolerance.
    tiny = stats_of([x + 2_000 for x in base], vm_steps=100)
    tiny.comparison = compare(tiny, entry)
    assert tiny.comparison.p_value < 0.01
    assert evaluate(tiny, Gates(max_regression=0.2)) == []
    # VM steps regress deterministically: no significance test needed.
    more_steps = stats_of(base, vm_steps=130)
    more_steps.comparison = compare(more_steps, entry)
    assert evaluate(more_steps, Gates(max_regression=0.2)) == [
        "vm steps regressed +30.0% against the baseline (100 -> 130; tolerance 20%)"
    ]


def test_baseline_roundtrip_is_keyed_by_machine_and_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "b" / "baseline.json"
    baseline = Baseline(path)
    assert not baseline.exists
    s = stats_of([1, 2, 3], vm_steps=9, sqlite_version="3.50.4", driver="sqlean")
    baseline.record(s)
    baseline.save()
    again = Baseline(path)
    key = machine_key("3.50.4", "sqlean")
    entry = again.entry(key, "tests/x.py::t")
    assert entry is not None and entry["data_ns"] == [1, 2, 3] and entry["vm_steps"] == 9
    assert again.entry(machine_key("3.40.1", "sqlite3"), "tests/x.py::t") is None
    assert "sqlite-3.50.4-sqlean" in key
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(ValueError, match="not a memkit baseline"):
        Baseline(path)


def test_benchmark_json_layout(tmp_path: Path) -> None:
    s = stats_of([1000, 2000, 3000], vm_steps=7, sqlite_version="3.50.4", driver="sqlean")
    doc = benchmark_json([("tests/x.py::t", s)], tmp_path, "0.1.0")
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    (bench,) = doc["benchmarks"]
    assert {
        "group",
        "name",
        "fullname",
        "params",
        "param",
        "extra_info",
        "options",
        "stats",
    } <= set(bench)
    assert bench["stats"]["rounds"] == 3 and bench["stats"]["min"] == pytest.approx(1e-6)
    assert bench["extra_info"]["vm_steps"] == 7
    assert doc["commit_info"]["id"]  # "unversioned" outside a git checkout
    json.dumps(doc)  # serialisable as is


def test_measure_times_each_call_and_counts_steps() -> None:
    calls: list[int] = []

    class FakeDb:
        handler: object = None

        async def set_progress_handler(self, handler: object, n: int) -> None:
            self.handler = handler

    db = FakeDb()

    async def op() -> None:
        calls.append(1)
        if callable(db.handler):
            for _ in range(42):
                db.handler()

    data, steps = asyncio.run(measure(op, rounds=5, warmup=2, db=db, vm_rounds=3))
    assert len(data) == 5 and all(x > 0 for x in data)
    assert steps == [42, 42, 42]
    assert len(calls) == 2 + 5 + 3
    assert db.handler is None  # removed afterwards
    with pytest.raises(ValueError):
        asyncio.run(measure(op, rounds=0, warmup=0))


def test_step_counter_never_interrupts() -> None:
    counter = StepCounter()
    assert [counter() for _ in range(3)] == [0, 0, 0]
    assert counter.take() == 3 and counter.take() == 0
