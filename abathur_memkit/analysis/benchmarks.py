"""Benchmark JSON into pandas: one row per benchmark per run.

Reads pytest-benchmark's own ``--benchmark-json`` files and the files memkit
writes in the same layout (``memkit bench ... --output``, the pytest plugin's
``--memkit-json``), which add ``stats.p95``/``stats.p99`` and an
``extra_info`` with the ratio to a baseline. Times are converted from
seconds to milliseconds (``*_ms`` columns).
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..stats import quantile
from .optional import pandas

__all__ = ["COLUMNS", "RUN_COLUMNS", "STAT_COLUMNS", "latest_run", "load_benchmarks"]

#: Columns that describe the run a benchmark row belongs to.
RUN_COLUMNS = ("run", "file", "flavour", "datetime", "machine", "python", "sqlite_version",
               "sqlite_driver", "commit", "commit_time", "branch", "dirty")
#: Statistics copied from ``stats`` (seconds there, milliseconds here).
STAT_COLUMNS = ("min", "max", "mean", "median", "stddev", "iqr", "q1", "q3",
                "ld15iqr", "hd15iqr", "p95", "p99")

#: Every column of a ``load_benchmarks`` frame, in order.
COLUMNS = (*RUN_COLUMNS, "group", "name", "fullname", "rounds", "ops",
           *(f"{key}_ms" for key in STAT_COLUMNS), "p50_ms", "unit", "baseline", "ratio",
           "ratio_of", "target", "met", "data_ms", "extra_info")

PathsLike = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def _expand(paths: PathsLike) -> list[Path]:
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?["):
            found += [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        elif Path(text).is_dir():
            found += sorted(Path(text).glob("*.json"))
        elif Path(text).is_file():
            found.append(Path(text))
        else:
            raise InvalidInputError(f"Invalid benchmark path: {text} does not exist")
    return found


def _run_info(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    machine = doc.get("machine_info") or {}
    cpu = machine.get("cpu") or {}
    commit = doc.get("commit_info") or {}
    benchmarks = doc.get("benchmarks") or []
    ours = "sqlite_version" in machine or any(
        "p50_ms" in (b.get("extra_info") or {}) for b in benchmarks)
    sqlite_version = machine.get("sqlite_version") or next(
        (b["extra_info"]["sqlite_version"] for b in benchmarks
         if (b.get("extra_info") or {}).get("sqlite_version")), None)
    commit_id = commit.get("id")
    return {
        "run": path.stem,
        "file": str(path),
        "flavour": "memkit" if ours else "pytest-benchmark",
        "datetime": doc.get("datetime"),
        "machine": " | ".join(str(x) for x in (machine.get("node"), cpu.get("brand_raw"))
                              if x) or None,
        "python": machine.get("python_version"),
        "sqlite_version": sqlite_version,
        "sqlite_driver": machine.get("sqlite_driver"),
        "commit": commit_id[:12] if isinstance(commit_id, str) and commit_id != "unversioned"
        else None,
        "commit_time": commit.get("time"),
        "branch": commit.get("branch"),
        "dirty": commit.get("dirty"),
    }


def _benchmark_row(run: dict[str, Any], bench: Mapping[str, Any]) -> dict[str, Any]:
    stats = bench.get("stats") or {}
    extra = bench.get("extra_info") or {}
    data = stats.get("data")
    data_ms = [float(x) * 1e3 for x in data] if isinstance(data, list) and data else None
    row: dict[str, Any] = {
        **run,
        "group": bench.get("group"),
        "name": bench.get("name"),
        "fullname": bench.get("fullname") or bench.get("name"),
        "rounds": stats.get("rounds"),
        "ops": stats.get("ops"),
    }
    for key in STAT_COLUMNS:
        value = stats.get(key)
        row[f"{key}_ms"] = float(value) * 1e3 if isinstance(value, int | float) else math.nan
    if data_ms is not None:  # pytest-benchmark's own files have no p95/p99
        ordered = sorted(data_ms)
        for key, q in (("p95", 0.95), ("p99", 0.99)):
            if math.isnan(row[f"{key}_ms"]):
                row[f"{key}_ms"] = quantile(ordered, q, presorted=True)
    row["p50_ms"] = row["median_ms"]
    row["unit"] = extra.get("unit", "call")
    row["baseline"] = extra.get("baseline")
    row["ratio"] = extra.get("ratio", math.nan)
    row["ratio_of"] = extra.get("ratio_of")
    row["target"] = extra.get("target")
    row["met"] = extra.get("met")
    row["data_ms"] = data_ms
    row["extra_info"] = dict(extra)
    return row


def load_benchmarks(paths: PathsLike) -> Any:
    """Load benchmark JSON files: a glob (``"bench/*.json"``), a directory, a file, or a list.

    One row per benchmark per file (a file is one run), oldest run first.
    Run columns: :data:`RUN_COLUMNS` (``flavour`` is ``memkit`` or
    ``pytest-benchmark``; ``datetime`` and ``commit_time`` are UTC
    timestamps). Per benchmark: group, name, fullname, rounds, ops, the
    ``*_ms`` statistics (``p50_ms`` equals ``median_ms``), unit, and for
    memkit's files baseline, ratio, ratio_of, target and met; ``data_ms``
    holds the raw samples when the file has them.
    """
    pd = pandas()
    rows = []
    for path in _expand(paths):
        try:
            doc = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"Invalid benchmark file {path}: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
            raise InvalidInputError(
                f"Invalid benchmark file {path}: no 'benchmarks' list "
                "(expected pytest-benchmark JSON)"
            )
        run = _run_info(doc, path)
        rows += [_benchmark_row(run, bench) for bench in doc["benchmarks"]]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("datetime", "commit_time"):
        df[column] = pd.to_datetime(df[column], utc=True, format="ISO8601")
    return df.sort_values(["datetime", "file"], kind="stable", ignore_index=True)


def latest_run(benchmarks: Any) -> Any:
    """The rows of the most recent run (file) of each flavour and group."""
    if benchmarks.empty:
        return benchmarks
    newest = benchmarks.groupby(["flavour", "group"], dropna=False)["datetime"].transform("max")
    return benchmarks[benchmarks["datetime"] == newest].reset_index(drop=True)
