"""Fusing ranked lists: by score (hybrid search's default) or by reciprocal rank.

:func:`score_fusion`: each list's scores are rescaled to 0..1 (min-max over
the list) and summed with a weight per list; an item a list does not hold
gets 0 from it. A page ranked first by one mode keeps most of its lead
instead of losing to pages both modes rank middling, which is what rank
fusion does (measured: ``memkit bench search --quality``).

:func:`reciprocal_rank_fusion` (Cormack, Clarke & Büttcher, SIGIR 2009):
each list votes ``1 / (k + rank)`` for each item it ranks (rank from 1);
items are ordered by their summed votes. Only ranks are used, so BM25 scores
and cosine similarities need no common scale. ``k = 60`` is the paper's constant.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["RRF_K", "reciprocal_rank_fusion", "score_fusion"]

RRF_K = 60

K = TypeVar("K", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], *, k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Fuse ranked lists of ids; return ``(id, score)`` best first.

    Ties keep the order in which items were first seen (earlier lists first).
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"rrf k must be an int >= 0, got {k!r}")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])


def score_fusion(
    scored: Sequence[Sequence[tuple[K, float]]], weights: Sequence[float]
) -> list[tuple[K, float]]:
    """Fuse lists of ``(id, score)`` (higher is better; an id once per list) by
    their min-max-scaled scores times ``weights``; return ``(id, score)`` best
    first. Ties keep the order in which items were first seen."""
    if len(weights) != len(scored):
        raise ValueError("one weight per list")
    totals: dict[K, float] = {}
    for items, weight in zip(scored, weights, strict=True):
        if not items:
            continue
        values = [s for _, s in items]
        low, high = min(values), max(values)
        for item, value in items:
            scaled = (value - low) / (high - low) if high > low else 1.0
            totals[item] = totals.get(item, 0.0) + weight * scaled
    return sorted(totals.items(), key=lambda pair: -pair[1])
