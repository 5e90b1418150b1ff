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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["mann_whitney_greater", "quantile"]


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
