"""``memkit bench core``: benchmarks with ratios against raw SQLite in the same run."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import add_json_flag, emit

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (ratios against raw SQLite)")
    suites = p.add_subparsers(dest="suite", metavar="SUITE", required=True)
    core = suites.add_parser("core", help="sessions and memory vs raw aiosqlite")
    core.add_argument("--db", help="database file to build (default: a temporary file)")
    core.add_argument("--json-out", "--output", dest="output",
                      help="write pytest-benchmark-style JSON here")
    core.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    add_json_flag(core)
    core.set_defaults(handler=cmd_bench_core)


async def cmd_bench_core(args: argparse.Namespace) -> int:
    from ..bench.core import CoreSizes, run_core
    from ..driver import select_driver

    sizes = CoreSizes.quick() if args.quick else CoreSizes()
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.db"
        report = await run_core(path, sizes, progress=lambda m: print(f"... {m}", file=sys.stderr))
    driver = select_driver()
    document = report.to_json(sqlite_version=driver.sqlite_version, driver=driver.name)
    if args.output:
        report.write(args.output, sqlite_version=driver.sqlite_version, driver=driver.name)
    missed = [b["name"] for b in document["benchmarks"] if b["extra_info"].get("met") is False]
    text = report.table()
    if args.output:
        text += f"\n\nJSON written to {args.output}"
    emit(args, document, text)
    return 1 if missed else 0
