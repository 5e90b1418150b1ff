"""Benchmarks that print ratios against a baseline measured in the same run.

Results are written in pytest-benchmark's JSON layout (``benchmarks[].stats``
with min/max/mean/median/...), plus ``p99`` in stats and the comparison in
``extra_info``, so ``analysis.load_benchmarks`` and the notebooks read ours and
pytest-benchmark's files alike.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..machine import commit_info, machine_info
from ..stats import LatencyStats

__all__ = ["Report", "Result", "measure_pair", "one_cpu", "target_lines"]


@contextmanager
def one_cpu(enabled: bool = True) -> Iterator[int | None]:
    """Pin this thread, and the threads it starts meanwhile, to one CPU; yield it.

    Every await on aiosqlite wakes the connection's thread. On a small VM a
    wake-up on the other core costs 40-50 µs more than one on the same core,
    and which side of a comparison lands where changes from run to run: pinned,
    a hop costs ~30 µs on both sides and the ratios repeat. Linux only; the
    previous affinity comes back on exit.
    """
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Result:
    """One benchmark: per-call latencies, or one timed run of ``count`` operations."""

    name: str
    samples_ns: list[int]
    count: int = 0  # operations per sample for throughput results, else 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_samples(cls, name: str, samples_ns: list[int], unit: str = "call") -> Result:
        return cls(name, list(samples_ns), extra={"unit": unit})

    @classmethod
    def throughput(cls, name: str, count: int, total_ns: int) -> Result:
        return cls(name, [total_ns], count=count, extra={"unit": f"{count} operations"})

    @property
    def stats(self) -> LatencyStats:
        return LatencyStats(self.name, f"bench::{self.name}", self.samples_ns)

    @property
    def p50_ms(self) -> float:
        return self.stats.p50_ms

    @property
    def ops(self) -> float:
        """Operations per second."""
        total = sum(self.samples_ns) / 1e9
        per_sample = self.count or 1
        return len(self.samples_ns) * per_sample / total if total else 0.0

    def compare_latency(self, base: Result, target: float) -> None:
        ratio = self.p50_ms / base.p50_ms if base.p50_ms else float("inf")
        self.extra.update(baseline=base.name, ratio=ratio, ratio_of="p50",
                          target=f"<= {target}", met=ratio <= target)

    def compare_rate(self, base: Result, target: float) -> None:
        ratio = self.ops / base.ops if base.ops else 0.0
        self.extra.update(baseline=base.name, ratio=ratio, ratio_of="rate",
                          target=f">= {target}", met=ratio >= target)

    def to_benchmark(self, group: str) -> dict[str, Any]:
        stats = self.stats.benchmark_stats(include_data=False)
        if self.count:
            stats["ops"] = self.ops
        extra = {"p50_ms": self.p50_ms, "p99_ms": self.stats.p99_ms, **self.extra}
        return {
            "group": group,
            "name": self.name,
            "fullname": f"memkit-bench-{group}::{self.name}",
            "params": None,
            "param": None,
            "extra_info": extra,
            "options": {"timer": "perf_counter_ns", "rounds": len(self.samples_ns),
                        "disable_gc": False, "warmup": False},
            "stats": stats,
        }


@dataclass
class Report:
    group: str
    path: str
    results: list[Result] = field(default_factory=list)

    def add(self, results: list[Result]) -> None:
        self.results.extend(results)

    def to_json(
        self, sqlite_version: str | None = None, driver: str | None = None
    ) -> dict[str, Any]:
        root = Path(__file__).resolve().parent.parent.parent
        return {
            "machine_info": machine_info(sqlite_version, driver),
            "commit_info": commit_info(root),
            "benchmarks": [r.to_benchmark(self.group) for r in self.results],
            "datetime": datetime.now(UTC).isoformat(),
            "version": "memkit-bench/1",
        }

    def write(self, path: str | Path, **info: Any) -> Path:
        target = Path(path)
        target.write_text(json.dumps(self.to_json(**info), indent=2) + "\n", "utf-8")
        return target

    def table(self) -> str:
        lines = [f"{'benchmark':<34} {'p50 ms':>9} {'p99 ms':>9} {'ops/s':>10}  "
                 f"{'vs baseline':<22} {'ratio':>6}  target   met"]
        for r in self.results:
            p99 = r.stats.p99_ms if not r.count else r.p50_ms
            row = f"{r.name:<34} {r.p50_ms:>9.4f} {p99:>9.4f} {r.ops:>10,.0f}  "
            if "ratio" in r.extra:
                row += (f"{r.extra['baseline']:<22} {r.extra['ratio']:>6.2f}  "
                        f"{r.extra['target']:<8} {'yes' if r.extra['met'] else 'NO'}")
            lines.append(row.rstrip())
        return "\n".join(lines)


async def measure_pair(
    name: str,
    ours: Callable[[], Awaitable[Any]],
    base_name: str,
    base: Callable[[], Awaitable[Any]],
    rounds: int,
    warmup: int,
    *,
    target: float,
) -> list[Result]:
    """Time each await of ``ours`` and ``base``, alternating, warm-up excluded."""
    for _ in range(warmup):
        await ours()
        await base()
    gc.collect()
    clock = time.perf_counter_ns
    a: list[int] = []
    b: list[int] = []
    for _ in range(rounds):
        start = clock()
        await ours()
        a.append(clock() - start)
        start = clock()
        await base()
        b.append(clock() - start)
    mine, theirs = Result.from_samples(name, a), Result.from_samples(base_name, b)
    mine.compare_latency(theirs, target)
    return [mine, theirs]


def target_lines(targets: Sequence[tuple[str, str, str, bool | None]]) -> list[str]:
    """A table of ``(name, goal, measured, met)`` targets (met None: not measured)."""
    if not targets:
        return []
    lines = [f"{'target':<44} {'goal':<28} {'measured':<30} met"]
    for name, goal, measured, met in targets:
        said = "-" if met is None else "yes" if met else "NO"
        lines.append(f"{name:<44} {goal:<28} {measured:<30} {said}")
    return lines
