"""Run history, comparison with a saved run, and histograms, as pytest-benchmark does.

Every run that measured something is saved as a pytest-benchmark JSON file in
``<storage>/<machine id>/NNNN_<commit>_<UTC time>.json`` (the machine id is
pytest-benchmark's: ``Linux-CPython-3.11-64bit``), so ``pytest-benchmark
compare`` and ``pytest-benchmark list`` read the folder too. ``--memkit-compare``
shows each measurement against a saved run; ``--memkit-compare-fail`` turns a
slowdown past a threshold into a failed session.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from abathur_memkit.stats import LatencyStats

__all__ = [
    "CompareRule",
    "find_run",
    "histogram",
    "machine_id",
    "parse_compare_fail",
    "run_values",
    "save_run",
    "stats_values",
]

#: Fields ``--memkit-compare-fail`` accepts: milliseconds, except vm_steps (a count).
FIELDS = ("min", "max", "mean", "stddev", "p50", "p95", "p99", "vm_steps")


def machine_id() -> str:
    """The folder pytest-benchmark names runs of this interpreter and OS by."""
    return "-".join(
        [
            platform.system(),
            platform.python_implementation(),
            ".".join(platform.python_version_tuple()[:2]),
            platform.architecture()[0],
        ]
    )


def _runs(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.json")) if folder.is_dir() else []


def save_run(storage: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as the next numbered run; returns its path."""
    folder = storage / machine_id()
    folder.mkdir(parents=True, exist_ok=True)
    runs = _runs(folder)
    number = int(runs[-1].name[:4]) + 1 if runs else 1
    commit = str(doc.get("commit_info", {}).get("id", "unversioned"))
    commit = commit if commit == "unversioned" else commit[:8]
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    path = folder / f"{number:04d}_{commit}_{stamp}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    tmp.replace(path)
    return path


def find_run(storage: Path, selector: str | None, *, before: Path | None = None) -> Path:
    """The saved run ``selector`` names: a number (``3``, ``0003``), a file-name
    prefix, or a path; the latest run (other than ``before``) when it is None."""
    if selector:
        candidate = Path(selector)
        if candidate.is_file():
            return candidate
    runs = [p for p in _runs(storage / machine_id()) if p != before]
    if not runs:
        raise LookupError(f"no saved memkit runs in {storage / machine_id()}")
    if not selector:
        return runs[-1]
    prefix = f"{int(selector):04d}_" if selector.isdigit() else selector
    matches = [p for p in runs if p.name.startswith(prefix)]
    if len(matches) != 1:
        names = ", ".join(p.name for p in runs[-5:])
        found = "no" if not matches else f"{len(matches)}"
        raise LookupError(f"{found} saved memkit run matches {selector!r} (latest: {names})")
    return matches[0]


def run_values(path: Path) -> dict[str, dict[str, float]]:
    """A saved run's measurements: fullname -> field -> value (ms; vm_steps a count)."""
    doc = json.loads(path.read_text("utf-8"))
    out: dict[str, dict[str, float]] = {}
    for bench in doc.get("benchmarks", []):
        stats = bench.get("stats", {})
        values = {
            "min": stats["min"] * 1e3,
            "max": stats["max"] * 1e3,
            "mean": stats["mean"] * 1e3,
            "stddev": stats["stddev"] * 1e3,
            "p50": stats["median"] * 1e3,
        }
        for key in ("p95", "p99"):
            if key in stats:
                values[key] = stats[key] * 1e3
        vm_steps = bench.get("extra_info", {}).get("vm_steps")
        if vm_steps is not None:
            values["vm_steps"] = float(vm_steps)
        out[str(bench["fullname"])] = values
    return out


def stats_values(stats: LatencyStats) -> dict[str, float]:
    values = {
        "min": stats.min_ms,
        "max": stats.max_ms,
        "mean": stats.mean_ms,
        "stddev": stats.stddev_ms,
        "p50": stats.p50_ms,
        "p95": stats.p95_ms,
        "p99": stats.p99_ms,
    }
    if stats.vm_steps is not None:
        values["vm_steps"] = float(stats.vm_steps)
    return values


@dataclass(frozen=True)
class CompareRule:
    """``p50:10%`` (relative growth) or ``p99:0.5`` (absolute growth, ms)."""

    field: str
    limit: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.field}:{self.limit:.4g}{'%' if self.relative else ''}"

    def check(self, name: str, now: dict[str, float], then: dict[str, float]) -> str | None:
        """A failure message when ``now`` is worse than ``then`` past the limit."""
        if self.field not in now or self.field not in then:
            return None
        new, old = now[self.field], then[self.field]
        if self.relative:
            growth = (new / old - 1) * 100 if old else (0.0 if new == 0 else float("inf"))
            if growth > self.limit:
                return f"{name}: {self.field} {old:.6g} -> {new:.6g} (+{growth:.1f}% > {self})"
        elif new - old > self.limit:
            return f"{name}: {self.field} {old:.6g} -> {new:.6g} (+{new - old:.6g} > {self})"
        return None


_RULE = re.compile(r"^\s*(\w+)\s*:\s*([0-9]*\.?[0-9]+)\s*(%?)\s*$")


def parse_compare_fail(text: str) -> CompareRule:
    """``"p50:10%"`` -> CompareRule; ValueError saying what is accepted otherwise."""
    match = _RULE.match(text)
    if not match or match.group(1) not in FIELDS:
        raise ValueError(
            f"--memkit-compare-fail {text!r}: expected FIELD:N% or FIELD:N (ms) with FIELD "
            f"one of {', '.join(FIELDS)}, e.g. p50:10%"
        )
    return CompareRule(match.group(1), float(match.group(2)), bool(match.group(3)))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "measurement"


def _log_bins(values: list[float], count: int = 50) -> list[float]:
    low, high = min(values), max(values)
    if low <= 0 or high <= low:
        return [low, high if high > low else low + 1e-6]
    return [low * (high / low) ** (i / count) for i in range(count + 1)]


def histogram(prefix: Path, stats: LatencyStats) -> Path:
    """Plot the latencies of one measurement (with its percentiles and gates) to a PNG.

    Raises ImportError when matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    data_ms = [x / 1e6 for x in stats.data_ns]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        ax.hist(data_ms, bins=_log_bins(data_ms), color="#4c72b0")
        ax.set_xscale("log")  # latencies are heavy-tailed: a linear axis hides the tail
        for label, value, style in (
            ("p50", stats.p50_ms, "-"),
            ("p95", stats.p95_ms, "--"),
            ("p99", stats.p99_ms, ":"),
        ):
            ax.axvline(value, color="black", linestyle=style, label=f"{label} {value:.4g} ms")
        for key, limit in stats.gates.items():
            if key.endswith("_ms"):
                ax.axvline(limit, color="red", label=f"gate {key} {limit:g}")
        ax.set_xlabel("latency per call (ms)")
        ax.set_ylabel("calls")
        ax.set_title(f"{stats.name} ({stats.rounds} rounds)")
        ax.legend()
        prefix.parent.mkdir(parents=True, exist_ok=True)
        path = prefix.with_name(f"{prefix.name}-{_slug(stats.name)}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
