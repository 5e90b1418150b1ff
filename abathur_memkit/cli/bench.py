"""``memkit bench core``: benchmarks with ratios against raw SQLite in the same run."""

from __future__ import annotations

import argparse
import json
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
    core.add_argument("--no-pin", action="store_true",
                      help="do not pin the process to one CPU (ratios get noisier)")
    add_json_flag(core)
    core.set_defaults(handler=cmd_bench_core)

    writers = suites.add_parser("writers", help="50 concurrent writers with group commit "
                                                "vs one writer and vs group_commit=False")
    writers.add_argument("--db", help="database file to build (default: a temporary file)")
    writers.add_argument("--json-out", "--output", dest="output",
                         help="write pytest-benchmark-style JSON here")
    writers.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    writers.add_argument("--no-pin", action="store_true",
                         help="do not pin the process to one CPU")
    add_json_flag(writers)
    writers.set_defaults(handler=cmd_bench_writers)

    search = suites.add_parser("search", help="vector KNN, ingest and re-sync "
                                              "(vs sqlite-vec float vec0 and a scalar scan)")
    search.add_argument("--dir", help="working directory for the databases (default: temp)")
    search.add_argument("--json-out", "--output", dest="output",
                        help="write pytest-benchmark-style JSON here")
    search.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    search.add_argument("--sizes", help="KNN sizes as N:DIMS,... (default: "
                                        "10000:384,10000:768,100000:384,100000:768)")
    search.add_argument("--no-vss", action="store_true", help="skip the sqlite-vss backend")
    search.add_argument("--no-model", action="store_true",
                        help="skip the offline-model ingest run")
    add_json_flag(search)
    search.set_defaults(handler=cmd_bench_search)


async def cmd_bench_core(args: argparse.Namespace) -> int:
    from ..bench.core import CoreSizes, run_core
    from ..driver import select_driver

    sizes = CoreSizes.quick() if args.quick else CoreSizes()
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.db"
        report = await run_core(path, sizes, pin=not args.no_pin,
                                progress=lambda m: print(f"... {m}", file=sys.stderr))
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


async def cmd_bench_search(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..bench.search import SearchSizes, run_search
    from ..driver import select_driver
    from ..errors import InvalidInputError

    sizes = SearchSizes.quick() if args.quick else SearchSizes()
    if args.sizes:
        try:
            knn = tuple((int(n), int(d)) for n, d in
                        (part.split(":") for part in args.sizes.split(",")))
        except ValueError:
            raise InvalidInputError(f"Invalid --sizes {args.sizes!r}: use N:DIMS,...") from None
        sizes = replace(sizes, knn=knn)
    if args.no_vss:
        sizes = replace(sizes, vss=False)
    result = await run_search(args.dir, sizes, model=not args.no_model,
                              progress=lambda m: print(f"... {m}", file=sys.stderr))
    driver = select_driver()
    document = result.report.to_json(sqlite_version=driver.sqlite_version, driver=driver.name)
    document["targets"] = [{"name": n, "goal": g, "measured": m, "met": ok}
                           for n, g, m, ok in result.targets]
    text = result.table()
    if args.output:
        Path(args.output).write_text(json.dumps(document, indent=2) + "\n", "utf-8")
        text += f"\n\nJSON written to {args.output}"
    emit(args, document, text)
    return 1 if result.missed else 0


async def cmd_bench_writers(args: argparse.Namespace) -> int:
    from ..bench.writers import WritersSizes, run_writers
    from ..driver import select_driver

    sizes = WritersSizes.quick() if args.quick else WritersSizes()
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "writers.db"
        result = await run_writers(path, sizes, pin=not args.no_pin,
                                   progress=lambda m: print(f"... {m}", file=sys.stderr))
    driver = select_driver()
    document = result.report.to_json(sqlite_version=driver.sqlite_version, driver=driver.name)
    document["targets"] = [{"name": n, "goal": g, "measured": m, "met": ok}
                           for n, g, m, ok in result.targets]
    text = result.table()
    if args.output:
        Path(args.output).write_text(json.dumps(document, indent=2) + "\n", "utf-8")
        text += f"\n\nJSON written to {args.output}"
    emit(args, document, text)
    return 1 if result.missed else 0
