"""abathur_memkit.stats against numpy and scipy: the one quantile and the one rank test."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
from pathlib import Path

import pytest

from abathur_memkit.stats import mann_whitney_greater, quantile

np = pytest.importorskip("numpy")
scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("seed", range(5))
def test_quantile_equals_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.lognormal(size=int(rng.integers(1, 400))).tolist()
    for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        assert quantile(data, q) == pytest.approx(float(np.quantile(data, q)), rel=1e-12)
    ordered = sorted(data)
    assert quantile(ordered, 0.95, presorted=True) == pytest.approx(
        float(np.percentile(data, 95)), rel=1e-12)


def test_quantile_edges() -> None:
    assert quantile([3.0], 0.99) == 3.0
    assert quantile([], 0.5) != quantile([], 0.5)  # NaN
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile([1.0], 95)


def _samples(rng: random.Random, n: int, shift: float, ties: bool) -> list[float]:
    values = [rng.lognormvariate(0, 0.5) + shift for _ in range(n)]
    return [round(v, 1) for v in values] if ties else values


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("n1", "n2", "shift"), [(5, 4, 0.0), (30, 40, 0.2), (200, 150, 0.05),
                                                 (50, 50, -0.3)])
def test_mann_whitney_equals_scipy(n1: int, n2: int, shift: float, ties: bool) -> None:
    from pytest_abathur.latency import mann_whitney_greater as plugin_test

    rng = random.Random(n1 * 1000 + n2)
    a, b = _samples(rng, n1, shift, ties), _samples(rng, n2, 0.0, ties)
    expected = scipy_stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic",
                                        use_continuity=True).pvalue
    assert mann_whitney_greater(a, b) == pytest.approx(float(expected), rel=1e-9, abs=1e-15)
    assert plugin_test(a, b) == mann_whitney_greater(a, b)  # the plugin's is this one


def test_regressions_use_the_same_test_as_scipy() -> None:
    pd = pytest.importorskip("pandas")
    from abathur_memkit import analysis

    rng = random.Random(3)
    before, after = _samples(rng, 60, 0.0, True), _samples(rng, 60, 0.4, True)
    rows = [{"machine": "m", "fullname": "t", "name": "t", "run": f"r{i}", "commit": None,
             "datetime": pd.Timestamp(f"2026-11-0{i + 1}", tz="UTC"), "rounds": 60,
             "median_ms": float(np.median(data)), "data_ms": data}
            for i, data in enumerate((before, after))]
    compared = analysis.compare_runs(pd.DataFrame(rows))
    expected = scipy_stats.mannwhitneyu(after, before, alternative="greater",
                                        method="asymptotic").pvalue
    assert compared["test"].tolist() == ["mann-whitney"]
    assert compared["p_value"].iloc[0] == pytest.approx(float(expected), rel=1e-9)


def test_the_library_does_not_import_the_plugin() -> None:
    # Regressions with raw samples ran the rank test from pytest_abathur.
    code = (
        "import sys, pandas as pd\n"
        "from abathur_memkit import analysis\n"
        "rows = [{'machine': 'm', 'fullname': 't', 'name': 't', 'run': f'r{i}', 'commit': None,"
        " 'datetime': pd.Timestamp(f'2026-11-0{i + 1}', tz='UTC'), 'rounds': 20,"
        " 'median_ms': 1.0 + i, 'data_ms': [1.0 + i + k / 100 for k in range(20)]}"
        " for i in range(2)]\n"
        "analysis.compare_runs(pd.DataFrame(rows))\n"
        "assert 'pytest_abathur' not in sys.modules, 'the library imported the plugin'\n"
    )
    pytest.importorskip("pandas")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (absolute names only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_no_library_module_imports_the_plugin() -> None:
    # memkit bench took LatencyStats, machine_info and commit_info from pytest_abathur.
    import abathur_memkit

    package = Path(abathur_memkit.__file__).parent
    offenders = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(name == "pytest_abathur" or name.startswith("pytest_abathur.")
               for name in _imported_modules(path))
    )
    assert offenders == []


def test_the_plugin_reports_with_the_librarys_statistics() -> None:
    import pytest_abathur
    from abathur_memkit import machine, stats
    from pytest_abathur import latency

    assert pytest_abathur.LatencyStats is latency.LatencyStats is stats.LatencyStats
    assert latency.Comparison is stats.Comparison
    assert latency.machine_info is machine.machine_info
    assert latency.commit_info is machine.commit_info
    assert latency.machine_key is machine.machine_key
    with pytest.raises(AttributeError):
        latency.no_such_name  # noqa: B018


def test_lookup_benchmark_percentiles_are_numpys() -> None:
    from abathur_memkit.workloads.capacity import Samples

    samples = Samples(rows=10)
    rng = random.Random(5)
    samples.api = [rng.expovariate(1e4) for _ in range(101)]
    samples.sql = list(samples.api)
    api = samples.summary()["api"]
    for key, q in (("p50_us", 50), ("p95_us", 95), ("p99_us", 99)):
        assert api[key] == pytest.approx(round(float(np.percentile(samples.api, q)) * 1e6, 2))


def test_machine_info_is_pytest_benchmarks() -> None:
    plugin = pytest.importorskip("pytest_benchmark.plugin")
    from abathur_memkit.machine import machine_info

    theirs = plugin.pytest_benchmark_generate_machine_info()
    ours = machine_info("3.50.4", "sqlean")
    assert set(ours) == set(theirs) | {"sqlite_version", "sqlite_driver"}
    for key, value in theirs.items():
        if key == "python_build":
            assert ours[key] == list(value)
        elif key == "cpu":  # py-cpuinfo's whole record (its clock speeds vary between calls)
            assert set(ours[key]) == set(value)
            assert ours[key]["brand_raw"] == value["brand_raw"]
        else:
            assert ours[key] == value, key
