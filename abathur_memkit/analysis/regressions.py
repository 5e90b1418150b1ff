"""Regressions across benchmark runs: a change counts only when it is large *and* real.

Like asv, each run of a benchmark is compared with the previous run on the
same machine, and a change is reported only when both hold:

- it is above a threshold (``threshold=0.10``: the median is >10 % slower), and
- it is statistically significant (one-sided p-value below ``alpha``).

The test uses the raw samples when both runs have them (pytest-benchmark's
files, the plugin's ``--memkit-json``): a one-sided Mann-Whitney U, the same
test the plugin's latency gates use. Without samples (``memkit bench`` writes
summary statistics only) it compares the medians with the large-sample
standard error of a median, estimated robustly from the interquartile range
(``1.2533 · (IQR / 1.349) / √n``), so one slow outlier moves neither the
threshold nor the test; without quartiles, Welch's test on the means. Runs with
fewer than ``MIN_ROUNDS`` rounds (a throughput run has one) are not tested
and never reported: the normal approximations need more.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from ..errors import InvalidInputError
from ..stats import mann_whitney_greater
from .optional import pandas

__all__ = ["MIN_ROUNDS", "VERDICTS", "compare_runs", "describe_comparison", "detect_regressions"]

#: What ``compare_runs`` concludes for each pair of consecutive runs.
VERDICTS = ("regression", "improvement", "unchanged", "untestable")
#: Fewest rounds (samples) each run needs for a test.
MIN_ROUNDS = 10


def _normal_greater(diff: float, se: float) -> float:
    if se == 0:
        return 0.0 if diff > 0 else 1.0
    return 0.5 * math.erfc(diff / se / math.sqrt(2))


def _summary_greater(after: Any, before: Any) -> tuple[float, str]:
    """One-sided p that ``after`` is slower, from summary statistics, and the test's name."""
    n1, n2 = after["rounds"], before["rounds"]
    iqr1, iqr2 = after["iqr_ms"], before["iqr_ms"]
    if not (math.isnan(iqr1) or math.isnan(iqr2)):
        # Standard error of a median: sqrt(pi/2) * sigma / sqrt(n), sigma from the IQR.
        se = math.sqrt(sum((1.2533 * iqr / 1.349) ** 2 / n
                           for iqr, n in ((iqr1, n1), (iqr2, n2))))
        return _normal_greater(after["median_ms"] - before["median_ms"], se), "median-iqr"
    s1, s2 = after["stddev_ms"], before["stddev_ms"]
    if math.isnan(s1) or math.isnan(s2):
        return math.nan, "none"
    se = math.sqrt(s1**2 / n1 + s2**2 / n2)
    return _normal_greater(after["mean_ms"] - before["mean_ms"], se), "welch"


def _p_values(after: Any, before: Any) -> tuple[float, float, str]:
    """(p slower, p faster, test name)."""
    rounds = (after["rounds"], before["rounds"])
    if any(not isinstance(n, int | float) or math.isnan(n) or n < MIN_ROUNDS for n in rounds):
        return math.nan, math.nan, "none"
    a, b = after.get("data_ms"), before.get("data_ms")
    if isinstance(a, list) and isinstance(b, list) and len(a) > 1 and len(b) > 1:
        return mann_whitney_greater(a, b), mann_whitney_greater(b, a), "mann-whitney"
    slower, test = _summary_greater(after, before)
    if math.isnan(slower):
        return math.nan, math.nan, "none"
    return slower, 1.0 - slower, test


def compare_runs(
    benchmarks: Any, *, threshold: float = 0.10, alpha: float = 0.01,
    metric: str = "median_ms",
) -> Any:
    """Each run of each benchmark against the previous run on the same machine.

    ``benchmarks`` is a ``load_benchmarks`` frame. One row per consecutive
    pair: machine, fullname, name, before_run/after_run, before_commit/
    after_commit, before_time/after_time, before/after (``metric``, ms),
    change (after / before - 1), p_value (for the direction of the change),
    test (``mann-whitney``, ``median-iqr``, ``welch`` or ``none``) and verdict (one of
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


def describe_comparison(compared: Any) -> str:
    """A ``compare_runs`` frame in words: verdict counts and each regression, or why none.

    A first run has nothing to compare with; this says so rather than show an
    empty table.
    """
    if compared.empty:
        return ("nothing to compare yet: no benchmark has two runs "
                "(run the benchmark again, e.g. memkit demo a second time)")
    counts = compared["verdict"].value_counts()
    lines = [", ".join(f"{int(counts[v])} {v}" for v in VERDICTS if v in counts)
             + f" ({len(compared)} pair(s) of consecutive runs)"]
    found = compared[compared["verdict"] == "regression"].sort_values("change", ascending=False)
    lines += [f"regression: {r['name']} {r['before']:.4g} -> {r['after']:.4g} ms "
              f"({r['change']:+.0%}, p={r['p_value']:.2g}, {r['test']}; "
              f"{r['before_run']} -> {r['after_run']})" for r in found.to_dict("records")]
    if found.empty:
        lines.append("no regressions")
    return "\n".join(lines)
