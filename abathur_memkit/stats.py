"""Quantiles and a rank test, on plain lists: the one implementation every part shares.

Standard library only, so the benchmarks, the analysis toolkit and the pytest
plugin compute a percentile the same way with or without numpy installed.

:func:`quantile` is numpy's default method (linear interpolation between the
closest ranks, ``numpy.quantile(..., method="linear")``, the same as
``statistics.quantiles(..., method="inclusive")``).

:func:`mann_whitney_greater` is the one-sided Mann-Whitney U test with tie and
continuity corrections, as ``scipy.stats.mannwhitneyu(a, b,
alternative="greater", method="asymptotic")`` computes it. Latencies are skewed
and heavy-tailed, so a rank test fits better than a t-test; it is
deterministic, unlike a bootstrap; and scipy (tens of MB) is not needed at run
time for one test of thirty lines. The test suite checks both functions
against numpy and scipy.

:class:`LatencyStats` holds one measurement (every call's latency) and its
summary in pytest-benchmark's terms; ``memkit bench`` and the pytest plugin's
latency gates both report through it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Comparison", "LatencyStats", "mann_whitney_greater", "quantile"]


def quantile(values: Iterable[float], q: float, *, presorted: bool = False) -> float:
    """The ``q`` quantile (0 <= q <= 1) of ``values``, interpolated linearly; NaN if empty.

    ``presorted=True`` skips sorting when ``values`` is an ascending sequence.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile must be between 0 and 1, got {q}")
    xs: Sequence[float] = values if presorted and isinstance(values, Sequence) \
        else sorted(values)
    if not xs:
        return math.nan
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (h - lo) * (xs[hi] - xs[lo]))


def _rank_sum(first: list[float], second: list[float]) -> tuple[float, float]:
    """The rank sum of ``first`` in the pooled sample, and the tie term sum(t^3 - t)."""
    pooled = sorted([(x, 0) for x in first] + [(x, 1) for x in second])
    n = len(pooled)
    rank_sum = 0.0
    tie_term = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1  # average rank of the tied group, 1-based
        ties = j - i + 1
        tie_term += ties**3 - ties
        rank_sum += rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    return rank_sum, tie_term


def mann_whitney_greater(current: Iterable[float], baseline: Iterable[float]) -> float:
    """One-sided p-value that ``current`` is stochastically greater than ``baseline``.

    Normal approximation with tie and continuity corrections; fine for the
    sample sizes latency measurements use (tens to thousands). 1.0 when either
    sample is empty or every value is equal (no evidence either way).
    """
    a, b = list(current), list(baseline)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 1.0
    n = n1 + n2
    rank_sum, tie_term = _rank_sum(a, b)
    u = rank_sum - n1 * (n1 + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


# -- one latency measurement ------------------------------------------------------------


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
        return quantile(self._sorted, q / 100, presorted=True) / 1e6

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
