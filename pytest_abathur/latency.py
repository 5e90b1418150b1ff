"""Latency measurement, statistics, baselines and gates.

Each await is timed on its own with ``perf_counter_ns``: percentiles come from
individual latencies, never from round means (a mean of 100 calls hides the
one slow call that p99 is about).

Alongside wall time, the number of SQLite virtual-machine steps the code runs
is counted with a progress handler at ``n=1``: SQLite calls it once per VM
instruction (catching up at every check point), so the count is the same on
every run, machine and load. It gates where wall time is noise (shared CI).

Regression against a baseline needs both a significance test and a tolerance:
significance alone flags 1 % shifts on 500 samples, tolerance alone flags noise.
The test is a one-sided Mann-Whitney U (normal approximation with tie and
continuity corrections; ``abathur_memkit.stats``, which also holds the one
quantile function): latencies are skewed and heavy-tailed, so a rank test fits
better than a t-test, and it is deterministic, unlike a bootstrap.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Baseline",
    "Comparison",
    "Gates",
    "LatencyGateError",
    "LatencyGateWarning",
    "LatencyStats",
    "MemkitBaselineWarning",
    "StepCounter",
    "benchmark_json",
    "compare",
    "machine_key",
    "mann_whitney_greater",
    "measure",
    "parse_tolerance",
]

BASELINE_FORMAT = "memkit-baseline/1"


class LatencyGateError(AssertionError):
    """A latency or VM-step gate failed."""


class MemkitBaselineWarning(UserWarning):
    """No baseline to compare with (a warning, not an error: first runs have none)."""


class LatencyGateWarning(UserWarning):
    """A gate failed under ``--memkit-gates=warn``: reported, the test still passes."""


# -- statistics ---------------------------------------------------------------------------


def _quantile(xs: list[int], q: float) -> float:
    """Quantile of sorted ``xs``: abathur_memkit.stats's, numpy's default method."""
    # Imported on use: loading the plugin must not import abathur_memkit.
    from abathur_memkit.stats import quantile

    return quantile(xs, q, presorted=True)


def _quartiles(xs: list[int]) -> tuple[float, float]:
    """Q1 and Q3 the way pytest-benchmark computes them, so ``compare`` agrees."""
    n = len(xs)
    if n == 1:
        return float(xs[0]), float(xs[0])
    if n % 2:
        k, r = n // 4, n % 4
        if r == 1:
            q1 = 0.25 * xs[k - 1] + 0.75 * xs[k]
            q3 = 0.75 * xs[3 * k] + 0.25 * xs[3 * k + 1]
        else:
            q1 = 0.75 * xs[k] + 0.25 * xs[k + 1]
            q3 = 0.25 * xs[3 * k + 1] + 0.75 * xs[3 * k + 2]
        return q1, q3
    return float(statistics.median(xs[: n // 2])), float(statistics.median(xs[n // 2 :]))


@dataclass
class LatencyStats:
    """One measurement: every await's latency, their statistics, and its gates."""

    name: str
    fullname: str
    data_ns: list[int]
    warmup: int = 0
    vm_steps: int | None = None
    vm_steps_rounds: list[int] = field(default_factory=list)
    sqlite_version: str | None = None
    driver: str | None = None
    gates: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comparison: Comparison | None = None

    def __post_init__(self) -> None:
        if not self.data_ns:
            raise ValueError("a measurement needs at least one round")
        self._sorted = sorted(self.data_ns)

    @property
    def rounds(self) -> int:
        return len(self.data_ns)

    def percentile_ms(self, q: float) -> float:
        """Percentile ``q`` (0-100) in milliseconds."""
        return _quantile(self._sorted, q / 100) / 1e6

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p95_ms(self) -> float:
        return self.percentile_ms(95)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def median_ms(self) -> float:
        return self.p50_ms

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.data_ns) / 1e6

    @property
    def stddev_ms(self) -> float:
        return statistics.stdev(self.data_ns) / 1e6 if self.rounds > 1 else 0.0

    @property
    def min_ms(self) -> float:
        return self._sorted[0] / 1e6

    @property
    def max_ms(self) -> float:
        return self._sorted[-1] / 1e6

    @property
    def iqr_ms(self) -> float:
        q1, q3 = _quartiles(self._sorted)
        return (q3 - q1) / 1e6

    @property
    def ops(self) -> float:
        """Awaits per second (sequential)."""
        total = sum(self.data_ns)
        return self.rounds / (total / 1e9) if total else 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        vm = f", vm steps {self.vm_steps}" if self.vm_steps is not None else ""
        return (
            f"p50 {self.p50_ms:.4f} ms, p95 {self.p95_ms:.4f} ms, p99 {self.p99_ms:.4f} ms, "
            f"mean {self.mean_ms:.4f} ms, stddev {self.stddev_ms:.4f} ms, "
            f"max {self.max_ms:.4f} ms ({self.rounds} rounds){vm}"
        )

    def benchmark_stats(self, *, include_data: bool = True) -> dict[str, Any]:
        """``stats`` as pytest-benchmark writes them (seconds), plus p95/p99."""
        xs = [x / 1e9 for x in self._sorted]
        n = len(xs)
        q1, q3 = (v / 1e9 for v in _quartiles(self._sorted))
        iqr = q3 - q1
        mean = statistics.fmean(xs)
        stddev = statistics.stdev(xs) if n > 1 else 0.0
        low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        iqr_out = sum(1 for x in xs if x < low or x > high)
        sd_out = sum(1 for x in xs if x < mean - stddev or x > mean + stddev)
        inside = [x for x in xs if low <= x <= high] or xs
        total = sum(xs)
        stats: dict[str, Any] = {
            "min": xs[0],
            "max": xs[-1],
            "mean": mean,
            "stddev": stddev,
            "rounds": n,
            "median": statistics.median(xs),
            "iqr": iqr,
            "q1": q1,
            "q3": q3,
            "iqr_outliers": iqr_out,
            "stddev_outliers": sd_out,
            "outliers": f"{sd_out};{iqr_out}",
            "ld15iqr": inside[0],
            "hd15iqr": inside[-1],
            "ops": n / total if total else 0.0,
            "total": total,
            "iterations": 1,
            "p95": self.p95_ms / 1e3,
            "p99": self.p99_ms / 1e3,
        }
        if include_data:
            stats["data"] = [x / 1e9 for x in self.data_ns]
        return stats

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fullname": self.fullname,
            "data_ns": list(self.data_ns),
            "warmup": self.warmup,
            "vm_steps": self.vm_steps,
            "vm_steps_rounds": list(self.vm_steps_rounds),
            "sqlite_version": self.sqlite_version,
            "driver": self.driver,
            "gates": dict(self.gates),
            "failures": list(self.failures),
            "notes": list(self.notes),
            "comparison": asdict(self.comparison) if self.comparison else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyStats:
        comparison = data.get("comparison")
        return cls(
            name=data["name"],
            fullname=data["fullname"],
            data_ns=[int(x) for x in data["data_ns"]],
            warmup=int(data.get("warmup", 0)),
            vm_steps=data.get("vm_steps"),
            vm_steps_rounds=list(data.get("vm_steps_rounds", [])),
            sqlite_version=data.get("sqlite_version"),
            driver=data.get("driver"),
            gates=dict(data.get("gates", {})),
            failures=list(data.get("failures", [])),
            notes=list(data.get("notes", [])),
            comparison=Comparison(**comparison) if comparison else None,
        )


# -- measuring ---------------------------------------------------------------------------------


class StepCounter:
    """A progress handler that counts its calls (from any connection's thread)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self.count += 1
        return 0  # non-zero would interrupt the statement

    def take(self) -> int:
        with self._lock:
            value, self.count = self.count, 0
        return value


async def _call(fn: Callable[[], Any]) -> None:
    result = fn()
    if inspect.isawaitable(result):
        await result


async def measure(
    fn: Callable[[], Awaitable[Any] | Any],
    *,
    rounds: int,
    warmup: int,
    db: Any = None,
    vm_rounds: int = 3,
) -> tuple[list[int], list[int]]:
    """Time ``rounds`` calls of ``fn`` one by one; then count VM steps on ``db``.

    Returns (latencies in ns, VM steps of each of ``vm_rounds`` extra calls).
    The VM-step calls come after the timed ones, so the progress handler's own
    cost never shows in the latencies.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        await _call(fn)
    gc.collect()  # start from a clean heap; collections during the rounds still count
    clock = time.perf_counter_ns
    data: list[int] = []
    for _ in range(rounds):
        start = clock()
        result = fn()
        if inspect.isawaitable(result):
            await result
        data.append(clock() - start)
    steps: list[int] = []
    if db is not None and vm_rounds > 0 and hasattr(db, "set_progress_handler"):
        counter = StepCounter()
        await db.set_progress_handler(counter, 1)
        try:
            for _ in range(vm_rounds):
                counter.take()
                await _call(fn)
                steps.append(counter.take())
        finally:
            await db.set_progress_handler(None, 0)
    return data, steps


# -- gates and comparison ----------------------------------------------------------------------


def parse_tolerance(value: object) -> float | None:
    """``"20%"``, ``"0.2"`` or ``0.2`` -> 0.2; None/"" -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a tolerance: {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    else:
        text = str(value).strip()
        result = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if result < 0 or math.isnan(result):
        raise ValueError(f"a tolerance must be >= 0, got {value!r}")
    return result


_WALL_GATES = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")


@dataclass(frozen=True)
class Gates:
    """Thresholds for one measurement (None: not gated)."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    max_regression: float | None = None
    max_vm_steps: int | None = None
    alpha: float = 0.01

    KEYS = (*_WALL_GATES, "max_regression", "max_vm_steps", "alpha")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Gates | None = None) -> Gates:
        unknown = set(values) - set(cls.KEYS)
        if unknown:
            raise TypeError(
                f"unknown memkit_latency gate(s): {', '.join(sorted(unknown))} "
                f"(known: {', '.join(cls.KEYS)})"
            )
        merged = asdict(base) if base else {}
        for key, value in values.items():
            if value is None:
                merged[key] = None
            elif key == "max_regression":
                merged[key] = parse_tolerance(value)
            elif key == "max_vm_steps":
                merged[key] = int(value)
            else:
                merged[key] = float(value)
        if merged.get("alpha") is None:
            merged["alpha"] = 0.01
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Comparison:
    """The measurement against its baseline."""

    baseline_median_ms: float
    median_ms: float
    change: float  # relative change of the median: +0.25 is 25 % slower
    p_value: float  # one-sided Mann-Whitney U: is the current run slower?
    baseline_vm_steps: int | None = None
    vm_steps: int | None = None
    baseline_p99_ms: float | None = None
    p99_ms: float | None = None

    @property
    def vm_change(self) -> float | None:
        if self.baseline_vm_steps is None or self.vm_steps is None:
            return None
        if self.baseline_vm_steps == 0:
            return 0.0 if self.vm_steps == 0 else math.inf
        return self.vm_steps / self.baseline_vm_steps - 1


def mann_whitney_greater(current: Iterable[float], baseline: Iterable[float]) -> float:
    """One-sided p-value that ``current`` is stochastically greater than ``baseline``.

    Mann-Whitney U, normal approximation: see :mod:`abathur_memkit.stats`.
    """
    from abathur_memkit.stats import mann_whitney_greater as test

    return test(current, baseline)


def compare(stats: LatencyStats, entry: Mapping[str, Any]) -> Comparison:
    base = LatencyStats("baseline", "baseline", [int(x) for x in entry["data_ns"]])
    return Comparison(
        baseline_median_ms=base.p50_ms,
        median_ms=stats.p50_ms,
        change=(stats.p50_ms / base.p50_ms - 1) if base.p50_ms else 0.0,
        p_value=mann_whitney_greater(stats.data_ns, base.data_ns),
        baseline_vm_steps=entry.get("vm_steps"),
        vm_steps=stats.vm_steps,
        baseline_p99_ms=base.p99_ms,
        p99_ms=stats.p99_ms,
    )


def evaluate(stats: LatencyStats, gates: Gates, *, wall: bool = True, vm: bool = True) -> list[str]:
    """The gate failures of ``stats`` (empty when it passes)."""
    failures = []
    if wall:
        for key in _WALL_GATES:
            limit = getattr(gates, key)
            if limit is None:
                continue
            value = getattr(stats, key)
            if value > limit:
                failures.append(f"{key[:-3]} {value:.6g} ms > gate {limit:g} ms")
    if (
        vm
        and gates.max_vm_steps is not None
        and stats.vm_steps is not None
        and stats.vm_steps > gates.max_vm_steps
    ):
        failures.append(f"vm steps {stats.vm_steps} > gate {gates.max_vm_steps}")
    comp = stats.comparison
    tolerance = gates.max_regression
    if comp is not None and tolerance is not None:
        if wall and comp.change > tolerance and comp.p_value < gates.alpha:
            failures.append(
                f"median regressed {comp.change:+.1%} against the baseline "
                f"({comp.baseline_median_ms:.4f} ms -> {comp.median_ms:.4f} ms; "
                f"tolerance {tolerance:.0%}; Mann-Whitney U one-sided "
                f"p={comp.p_value:.2g} < alpha {gates.alpha:g})"
            )
        vm_change = comp.vm_change
        if vm and vm_change is not None and vm_change > tolerance:
            failures.append(
                f"vm steps regressed {vm_change:+.1%} against the baseline "
                f"({comp.baseline_vm_steps} -> {comp.vm_steps}; tolerance {tolerance:.0%})"
            )
    return failures


# -- machine identity, baselines, pytest-benchmark JSON ------------------------------------


def _proc_cpu_brand() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor() or platform.machine() or "unknown"


_CPU: dict[str, Any] = {}


def _cpu() -> dict[str, Any]:
    """py-cpuinfo's ``get_cpu_info()`` as pytest-benchmark records it, or a /proc summary.

    Computed once per process: py-cpuinfo spawns a subprocess.
    """
    if not _CPU:
        try:
            import cpuinfo  # py-cpuinfo, which pytest-benchmark depends on

            _CPU.update(cpuinfo.get_cpu_info())
        except Exception:  # not installed, or it failed on this platform
            _CPU.update({"brand_raw": _proc_cpu_brand(), "arch": platform.machine(),
                         "count": os.cpu_count()})
    return _CPU


def _cpu_brand() -> str:
    return str(_cpu().get("brand_raw") or _proc_cpu_brand())


def _implementation_version() -> str:
    # pytest-benchmark's: Python's version, except PyPy's own.
    pypy = getattr(sys, "pypy_version_info", None)
    if platform.python_implementation() != "PyPy" or pypy is None:
        return platform.python_version()
    text = ".".join(str(int(part)) for part in pypy[:3])
    return text if pypy.releaselevel == "final" else f"{text}-{pypy.releaselevel}{pypy.serial}"


def machine_info(sqlite_version: str | None = None, driver: str | None = None) -> dict[str, Any]:
    """``machine_info`` as pytest-benchmark records it, plus the SQLite build measured.

    Same keys and sources as pytest-benchmark's ``pytest_benchmark_generate_machine_info``:
    the ``platform`` module, and ``cpu`` from py-cpuinfo when it is installed.
    """
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": _implementation_version(),
        "python_version": platform.python_version(),
        "python_build": list(platform.python_build()),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": dict(_cpu()),
        "sqlite_version": sqlite_version,
        "sqlite_driver": driver,
    }


def machine_key(sqlite_version: str | None, driver: str | None) -> str:
    """What a baseline is valid for: CPU, OS, Python and the SQLite build."""
    return " | ".join(
        [
            f"{platform.system()}-{platform.machine()}",
            _cpu_brand(),
            f"{os.cpu_count()} cpus",
            f"{platform.python_implementation()}-{sys.version_info[0]}.{sys.version_info[1]}",
            f"sqlite-{sqlite_version or 'unknown'}-{driver or 'unknown'}",
        ]
    )


class Baseline:
    """A baseline file: measurements keyed by machine key, then by fullname."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"format": BASELINE_FORMAT, "machines": {}}
        self.exists = path.is_file()
        if self.exists:
            loaded = json.loads(path.read_text("utf-8"))
            if not isinstance(loaded, dict) or loaded.get("format") != BASELINE_FORMAT:
                raise ValueError(f"{path} is not a memkit baseline file ({BASELINE_FORMAT})")
            self.data = loaded

    def entry(self, key: str, fullname: str) -> dict[str, Any] | None:
        machine = self.data["machines"].get(key)
        if not machine:
            return None
        found = machine["benchmarks"].get(fullname)
        return found if isinstance(found, dict) else None

    def record(self, stats: LatencyStats) -> None:
        key = machine_key(stats.sqlite_version, stats.driver)
        machine = self.data["machines"].setdefault(
            key, {"machine_info": machine_info(stats.sqlite_version, stats.driver)}
        )
        machine.setdefault("benchmarks", {})
        machine["saved"] = datetime.now(UTC).isoformat()
        machine["benchmarks"][stats.fullname] = {
            "data_ns": list(stats.data_ns),
            "vm_steps": stats.vm_steps,
            "median_ms": stats.p50_ms,
            "p99_ms": stats.p99_ms,
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", "utf-8")
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a baseline


def _git(args: list[str], cwd: Path) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()


def commit_info(root: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": "unversioned",
        "time": None,
        "author_time": None,
        "dirty": False,
        "project": root.name,
        "branch": "(unknown)",
    }
    try:
        info["id"] = _git(["rev-parse", "HEAD"], root)
        info["time"] = _git(["show", "-s", "--pretty=format:%cI"], root)
        info["author_time"] = _git(["show", "-s", "--pretty=format:%aI"], root)
        info["branch"] = _git(["rev-parse", "--abbrev-ref", "HEAD"], root)
        info["dirty"] = bool(_git(["status", "--porcelain", "--untracked-files=no"], root))
    except (OSError, subprocess.SubprocessError) as exc:
        info["error"] = repr(exc)
    return info


def benchmark_json(
    records: Iterable[tuple[str, LatencyStats]], root: Path, version: str
) -> dict[str, Any]:
    """A pytest-benchmark compatible document (``pytest-benchmark compare`` reads it).

    ``records`` are (nodeid, stats). Stats are in seconds as pytest-benchmark
    writes them; ``stats.p95``/``stats.p99`` and ``extra_info`` are additions.
    """
    items = list(records)
    first = items[0][1] if items else None
    benchmarks = []
    for nodeid, stats in items:
        benchmarks.append(
            {
                "group": "memkit",
                "name": stats.name,
                "fullname": stats.fullname,
                "params": None,
                "param": None,
                "extra_info": {
                    "nodeid": nodeid,
                    "p50_ms": stats.p50_ms,
                    "p95_ms": stats.p95_ms,
                    "p99_ms": stats.p99_ms,
                    "vm_steps": stats.vm_steps,
                    "vm_steps_rounds": stats.vm_steps_rounds,
                    "sqlite_version": stats.sqlite_version,
                    "sqlite_driver": stats.driver,
                    "machine_key": machine_key(stats.sqlite_version, stats.driver),
                    "gates": stats.gates,
                    "passed": stats.passed,
                    "failures": stats.failures,
                    "comparison": asdict(stats.comparison) if stats.comparison else None,
                },
                "options": {
                    "timer": "perf_counter_ns",
                    "rounds": stats.rounds,
                    "warmup": stats.warmup,
                    "disable_gc": False,
                    "min_rounds": stats.rounds,
                    "max_time": None,
                    "min_time": None,
                },
                "stats": stats.benchmark_stats(),
            }
        )
    return {
        "machine_info": machine_info(
            first.sqlite_version if first else None, first.driver if first else None
        ),
        "commit_info": commit_info(root),
        "benchmarks": benchmarks,
        "datetime": datetime.now(UTC).isoformat(),
        "version": version,
    }
