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

The statistics of a measurement (``LatencyStats``, ``Comparison``) and the
machine and commit a run records (``machine_info``, ``machine_key``,
``commit_info``) belong to the library (``abathur_memkit.stats`` and
``abathur_memkit.machine``), which ``memkit bench`` shares; they are named here
too, and loaded on first use: loading the plugin must not import abathur_memkit.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import json
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from abathur_memkit.machine import commit_info, machine_info, machine_key
    from abathur_memkit.stats import Comparison, LatencyStats

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
    "commit_info",
    "compare",
    "machine_info",
    "machine_key",
    "mann_whitney_greater",
    "measure",
    "parse_tolerance",
]

BASELINE_FORMAT = "memkit-baseline/1"

# The library's names this module offers, and where they live.
_FROM_LIBRARY = {
    "Comparison": "abathur_memkit.stats",
    "LatencyStats": "abathur_memkit.stats",
    "commit_info": "abathur_memkit.machine",
    "machine_info": "abathur_memkit.machine",
    "machine_key": "abathur_memkit.machine",
}


def __getattr__(name: str) -> Any:
    module = _FROM_LIBRARY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


class LatencyGateError(AssertionError):
    """A latency or VM-step gate failed."""


class MemkitBaselineWarning(UserWarning):
    """No baseline to compare with (a warning, not an error: first runs have none)."""


class LatencyGateWarning(UserWarning):
    """A gate failed under ``--memkit-gates=warn``: reported, the test still passes."""


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


def mann_whitney_greater(current: Iterable[float], baseline: Iterable[float]) -> float:
    """One-sided p-value that ``current`` is stochastically greater than ``baseline``.

    Mann-Whitney U, normal approximation: see :mod:`abathur_memkit.stats`.
    """
    from abathur_memkit.stats import mann_whitney_greater as test

    return test(current, baseline)


def compare(stats: LatencyStats, entry: Mapping[str, Any]) -> Comparison:
    from abathur_memkit.stats import Comparison, LatencyStats

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
        from abathur_memkit.machine import machine_info, machine_key

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


def benchmark_json(
    records: Iterable[tuple[str, LatencyStats]], root: Path, version: str
) -> dict[str, Any]:
    """A pytest-benchmark compatible document (``pytest-benchmark compare`` reads it).

    ``records`` are (nodeid, stats). Stats are in seconds as pytest-benchmark
    writes them; ``stats.p95``/``stats.p99`` and ``extra_info`` are additions.
    """
    from abathur_memkit.machine import commit_info, machine_info, machine_key

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
