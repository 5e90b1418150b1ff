"""Regressions across benchmark runs: a change counts only when it is large *and* real.

Like asv, each run of a benchmark is compared with the previous run on the
same machine, and a change is reported only when both hold:

- it is above a threshold (``threshold=0.10``: the median is >10 % slower), and
- it is statistically significant (one-sided p-value below ``alpha``).

The test uses the raw samples when both runs have them (pytest-benchmark's
files, the plugin's ``--memkit-json``): a one-sided Mann-Whitney U, the same
test the plugin's latency gates use. Without samples (``memkit bench`` writes
summary statistics only) it is Welch's test on mean, standard deviation and
rounds, in its normal approximation. A benchmark with a single round (a
throughput run) cannot be tested and is never reported.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from pytest_abathur.latency import mann_whitney_greater

from ..errors import InvalidInputError
from .optional import pandas

__all__ = ["VERDICTS", "compare_runs", "detect_regressions"]

#: What ``compare_runs`` concludes for each pair of consecutive runs.
VERDICTS = ("regression", "improvement", "unchanged", "untestable")


def _welch_greater(after: Any, before: Any) -> float:
    """One-sided p that ``after``'s mean is greater, from summary statistics."""
    n1, n2 = after["rounds"], before["rounds"]
    s1, s2 = after["stddev_ms"], before["stddev_ms"]
    if not (n1 and n2) or n1 < 2 or n2 < 2 or math.isnan(s1) or math.isnan(s2):
        return math.nan
    se = math.sqrt(s1**2 / n1 + s2**2 / n2)
    if se == 0:
        return 0.0 if after["mean_ms"] > before["mean_ms"] else 1.0
    z = (after["mean_ms"] - before["mean_ms"]) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def _p_values(after: Any, before: Any) -> tuple[float, float, str]:
    """(p slower, p faster, test name)."""
    a, b = after.get("data_ms"), before.get("data_ms")
    if isinstance(a, list) and isinstance(b, list) and len(a) > 1 and len(b) > 1:
        return mann_whitney_greater(a, b), mann_whitney_greater(b, a), "mann-whitney"
    slower = _welch_greater(after, before)
    if math.isnan(slower):
        return math.nan, math.nan, "none"
    return slower, 1.0 - slower, "welch"


def compare_runs(
    benchmarks: Any, *, threshold: float = 0.10, alpha: float = 0.01,
    metric: str = "median_ms",
) -> Any:
    """Each run of each benchmark against the previous run on the same machine.

    ``benchmarks`` is a ``load_benchmarks`` frame. One row per consecutive
    pair: machine, fullname, name, before_run/after_run, before_commit/
    after_commit, before_time/after_time, before/after (``metric``, ms),
    change (after / before - 1), p_value (for the direction of the change),
    test (``mann-whitney``, ``welch`` or ``none``) and verdict (one of
    :data:`VERDICTS`).
    """
    if threshold < 0 or not 0 < alpha < 1:
        raise InvalidInputError(
            f"Invalid threshold/alpha: {threshold}/{alpha} (threshold >= 0, 0 < alpha < 1)")
    pd = pandas()
    if metric not in benchmarks.columns:
        raise InvalidInputError(f"Invalid metric: {metric!r} is not a column")
    rows = []
    ordered = benchmarks.sort_values("datetime", kind="stable")
    for (machine, fullname), runs in ordered.groupby(["machine", "fullname"], dropna=False,
                                                     sort=True):
        records = runs.to_dict("records")
        for before, after in itertools.pairwise(records):
            old, new = float(before[metric]), float(after[metric])
            change = new / old - 1 if old else math.nan
            slower, faster, test = _p_values(after, before)
            p_value = slower if change >= 0 else faster
            if test == "none" or math.isnan(change):
                verdict = "untestable"
            elif change > threshold and slower < alpha:
                verdict = "regression"
            elif change < -threshold and faster < alpha:
                verdict = "improvement"
            else:
                verdict = "unchanged"
            rows.append({
                "machine": machine, "fullname": fullname, "name": after["name"],
                "before_run": before["run"], "after_run": after["run"],
                "before_commit": before["commit"], "after_commit": after["commit"],
                "before_time": before["datetime"], "after_time": after["datetime"],
                "before": old, "after": new, "change": change, "p_value": p_value,
                "test": test, "verdict": verdict,
            })
    columns = ["machine", "fullname", "name", "before_run", "after_run", "before_commit",
               "after_commit", "before_time", "after_time", "before", "after", "change",
               "p_value", "test", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def detect_regressions(
    benchmarks: Any, *, threshold: float = 0.10, alpha: float = 0.01,
    metric: str = "median_ms",
) -> Any:
    """Only the regressions of :func:`compare_runs`: slower by more than ``threshold``
    and significant at ``alpha``, biggest change first."""
    compared = compare_runs(benchmarks, threshold=threshold, alpha=alpha, metric=metric)
    found = compared[compared["verdict"] == "regression"]
    return found.sort_values("change", ascending=False, ignore_index=True)
