"""memkit_latency: gates that pass and fail by construction, baselines, JSON, xdist.

No assertion here depends on how fast this machine is: a gate of 10 s passes
and a gate of 1 ns fails whatever the hardware; regressions are built from a
no-op against a 2 ms sleep, or from VM-step counts that do not vary at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

LOOKUP_TEST = """
import os, pytest

@pytest.mark.memkit_latency(p99_ms=float(os.environ.get("GATE_P99_MS", "10000")))
async def test_lookup(memkit_seeded_db, memkit_latency):
    db = memkit_seeded_db
    stats = await memkit_latency(
        lambda: db.memory.get_memory("app:abathur:config", "memory_lifecycle_policies"),
        rounds=50, warmup=5)
    assert stats.rounds == 50 and len(stats.data_ns) == 50
    assert stats.p50_ms <= stats.p95_ms <= stats.p99_ms <= stats.max_ms
    assert stats.vm_steps and stats.vm_steps > 0
"""


def test_gate_passes_and_summary_is_printed(suite: pytest.Pytester) -> None:
    suite.makepyfile(LOOKUP_TEST)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*memkit latency*", "name * rounds * p50 ms * p99 ms*", "test_lookup * 50 * ok"]
    )


def test_gate_fails_on_threshold(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_P99_MS", "0.000001")
    suite.makepyfile(LOOKUP_TEST)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*LatencyGateError: memkit latency gate failed for test_lookup:",
            "*p99 * ms > gate 1e-06 ms",
            "*measured: p50 * ms, p95 * ms, p99 * ms, mean * (50 rounds), vm steps *",
            "test_lookup * 50 * FAIL",
        ]
    )


def test_ini_gates_and_gate_modes(pytester: pytest.Pytester, ini: Callable[..., None]) -> None:
    ini(memkit_p99_ms="0.000001", memkit_rounds="20", memkit_warmup="2")
    pytester.makepyfile(
        """
        async def test_measure(memkit_db, memkit_latency):
            stats = await memkit_latency(lambda: memkit_db.fetchone("SELECT 1"))
            assert stats.rounds == 20 and stats.warmup == 2
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(failed=1)
    result = pytester.runpytest_inprocess("--memkit-gates=vm")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["memkit: gates mode 'vm'"])


def test_vm_step_gate_fails_deterministically(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_latency(max_vm_steps=1)
        async def test_steps(memkit_db, memkit_latency):
            await memkit_latency(lambda: memkit_db.fetchall("SELECT * FROM sessions"),
                                 rounds=5)

        async def test_steps_ok(memkit_db, memkit_latency):
            await memkit_latency(lambda: memkit_db.fetchall("SELECT * FROM sessions"),
                                 rounds=5, max_vm_steps=100_000)
        """
    )
    result = suite.runpytest_inprocess("--memkit-gates=vm")  # VM gates stay on in "vm" mode
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*vm steps * > gate 1"])


REGRESSION_TEST = """
import asyncio, os, pytest

@pytest.mark.memkit_latency(max_regression="20%")
async def test_op(memkit_db, memkit_latency):
    slow = os.environ.get("MEMKIT_TEST_SLOW") == "1"

    async def op():
        if slow:
            await asyncio.sleep(0.002)
        await memkit_db.fetchone("SELECT 1")

    await memkit_latency(op, rounds=30, warmup=2)
"""


def test_regression_against_a_saved_baseline_fails(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(REGRESSION_TEST)
    baseline = suite.path / "perf" / "baseline.json"
    # First run on this machine: no baseline yet, a warning, not an error.
    first = suite.runpytest_inprocess("--memkit-baseline", str(baseline))
    first.assert_outcomes(passed=1, warnings=1)
    first.stdout.fnmatch_lines(["*MemkitBaselineWarning: no baseline for*file missing*"])
    saved = suite.runpytest_inprocess("--memkit-baseline", str(baseline), "--memkit-save-baseline")
    saved.assert_outcomes(passed=1)
    saved.stdout.fnmatch_lines([f"memkit: baseline saved to {baseline} (1 measurements)"])
    data = json.loads(baseline.read_text())
    ((key, machine),) = data["machines"].items()
    assert "sqlite-" in key and list(machine["benchmarks"]) == [
        "test_regression_against_a_saved_baseline_fails.py::test_op"
    ]

    # (No "same code passes" run here: between two runs on a shared 2-core machine
    # the median of a 30 µs operation can double, which is why VM steps exist.)
    monkeypatch.setenv("MEMKIT_TEST_SLOW", "1")
    slow = suite.runpytest_inprocess("--memkit-baseline", str(baseline))
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(
        [
            "*median regressed +*% against the baseline (* ms -> * ms; tolerance 20%; "
            "Mann-Whitney U one-sided p=* < alpha 0.01)"
        ]
    )
    # Under --memkit-gates=vm the wall-time regression is ignored: VM steps are unchanged.
    suite.runpytest_inprocess(
        "--memkit-baseline", str(baseline), "--memkit-gates=vm"
    ).assert_outcomes(passed=1)


def test_vm_step_regression_against_baseline(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(
        """
        import os, pytest

        @pytest.mark.memkit_latency(max_regression="10%")
        async def test_count(memkit_db, memkit_latency):
            rows = int(os.environ["ROWS"])
            await memkit_db.write(lambda c: c.executemany(
                "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES (?, ?, ?)",
                [("2025-01-01", "m", i) for i in range(rows)]))
            await memkit_latency(
                lambda: memkit_db.fetchall("SELECT * FROM metrics WHERE labels = 'x'"),
                rounds=5)
        """
    )
    baseline = str(suite.path / "b.json")
    monkeypatch.setenv("ROWS", "10")
    suite.runpytest_inprocess(
        "--memkit-baseline", baseline, "--memkit-save-baseline"
    ).assert_outcomes(passed=1)
    monkeypatch.setenv("ROWS", "200")
    result = suite.runpytest_inprocess("--memkit-baseline", baseline, "--memkit-gates=vm")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*vm steps regressed +*% against the baseline (* -> *"])


def _run_json(suite: pytest.Pytester, name: str) -> dict:  # type: ignore[type-arg]
    out = suite.path / name
    suite.runpytest_inprocess("--memkit-json", str(out)).assert_outcomes(passed=1)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_vm_steps_are_identical_across_runs(suite: pytest.Pytester) -> None:
    suite.makepyfile(LOOKUP_TEST)
    first = _run_json(suite, "one.json")["benchmarks"][0]["extra_info"]
    second = _run_json(suite, "two.json")["benchmarks"][0]["extra_info"]
    assert first["vm_steps"] > 0
    assert first["vm_steps_rounds"] == second["vm_steps_rounds"]
    assert len(set(first["vm_steps_rounds"])) == 1  # and across the rounds of one run


def test_json_is_readable_by_pytest_benchmark_compare(suite: pytest.Pytester) -> None:
    pytest.importorskip("pytest_benchmark")
    suite.makepyfile(LOOKUP_TEST)
    doc = _run_json(suite, "memkit.json")
    (bench,) = doc["benchmarks"]
    assert bench["name"] == "test_lookup"
    assert bench["stats"]["rounds"] == 50 and len(bench["stats"]["data"]) == 50
    assert bench["stats"]["p99"] >= bench["stats"]["median"] > 0
    compare = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "compare", str(suite.path / "memkit.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert compare.returncode == 0, compare.stderr
    assert "test_lookup" in compare.stdout
    assert "Min" in compare.stdout and "Median" in compare.stdout


def test_pytest_benchmark_keeps_working_alongside(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_benchmark")
    # When this suite itself runs under xdist, pytest-benchmark would see the
    # worker's variable and switch itself off in the inner run.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    suite.makepyfile(
        """
        def test_bench(benchmark):
            assert benchmark(sum, [1, 2, 3]) == 6

        async def test_memkit(memkit_db, memkit_latency):
            await memkit_latency(lambda: memkit_db.fetchone("SELECT 1"), rounds=5)
        """
    )
    out = suite.path / "bench.json"
    result = suite.runpytest_inprocess("--benchmark-json", str(out))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*benchmark: 1 tests*"])
    result.stdout.fnmatch_lines(["*memkit latency*"])
    assert json.loads(out.read_text())["benchmarks"][0]["name"] == "test_bench"


def test_xdist_disables_wall_gates_with_a_message(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(2))
        @pytest.mark.memkit_latency(p99_ms=0.000001)
        async def test_gated(memkit_db, memkit_latency, i):
            stats = await memkit_latency(lambda: memkit_db.fetchone("SELECT 1"), rounds=5)
            assert "wall-time gates off under pytest-xdist" in stats.notes
        """
    )
    out = suite.path / "x.json"
    result = suite.runpytest_subprocess("-n", "2", "--memkit-json", str(out))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["memkit: wall-time latency gates are disabled under pytest-xdist*"]
    )
    names = sorted(b["name"] for b in json.loads(out.read_text())["benchmarks"])
    assert names == ["test_gated[0]", "test_gated[1]"]  # the workers' records reach the JSON


def test_sync_tests_and_named_measurements(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        def test_sync(memkit_sync_db, memkit_latency):
            db = memkit_sync_db
            stats = db.run(memkit_latency(lambda: db.db.fetchone("SELECT 1"), rounds=10,
                                          name="select-one"))
            assert stats.name == "test_sync:select-one"
            assert stats.vm_steps is not None

        @pytest.mark.memkit_latency(p99_ms=1000)
        def test_marker_without_measuring():
            pass
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*has a memkit_latency marker but measured nothing*"])


def test_bad_marker_arguments_are_reported(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_latency(p999_ms=1)
        def test_typo():
            pass
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown memkit_latency gate(s): p999_ms*"])


def test_baseline_path_from_ini_is_relative_to_rootdir(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    ini(memkit_baseline="perf/base.json")
    pytester.makepyfile(
        """
        async def test_x(memkit_db, memkit_latency):
            await memkit_latency(lambda: memkit_db.fetchone("SELECT 1"), rounds=3)
        """
    )
    pytester.runpytest_inprocess("--memkit-save-baseline").assert_outcomes(passed=1)
    assert Path(pytester.path / "perf" / "base.json").is_file()


def test_failed_measurements_do_not_become_the_baseline(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_latency(p99_ms=0.000001)
        async def test_fails(memkit_db, memkit_latency):
            await memkit_latency(lambda: memkit_db.fetchone("SELECT 1"), rounds=3)

        async def test_passes(memkit_db, memkit_latency):
            await memkit_latency(lambda: memkit_db.fetchone("SELECT 1"), rounds=3)
        """
    )
    path = suite.path / "b.json"
    result = suite.runpytest_inprocess("--memkit-baseline", str(path), "--memkit-save-baseline")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*(1 measurements); 1 that failed their gates were not saved"])
    (machine,) = json.loads(path.read_text())["machines"].values()
    assert [k.rsplit("::", 1)[1] for k in machine["benchmarks"]] == ["test_passes"]
