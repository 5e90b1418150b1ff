"""``memkit simulate``, ``memkit report`` and ``memkit demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from . import add_json_flag, emit, example, positive_int
from .admin import open_or_create

__all__ = ["register"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate", help="run an agent swarm against a database (a realistic workload)",
        description="Run N agents as asyncio tasks on one Database: sessions and events, "
        "memories (episodic, semantic, procedural; versions, deletes, publishes), tasks, "
        "agents, checkpoints, metrics and audit. Afterwards the timestamps this run wrote are "
        "spread over the last --days days (order kept), so growth per day means something.",
        **example("memkit simulate agents.db --agents 50 --operations 20000"))
    p.add_argument("path", nargs="?", default="agents.db",
                   help="database file, created if missing (default: agents.db)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--operations", type=positive_int, help="stop after N operations")
    budget.add_argument("--minutes", type=_positive_float, help="stop after N minutes")
    p.add_argument("--agents", type=positive_int, default=50, help="concurrent agents (50)")
    p.add_argument("--days", type=float, default=14.0,
                   help="spread timestamps over this many days; 0 keeps real times (14)")
    p.add_argument("--users", type=positive_int, default=20, help="distinct users (20)")
    p.add_argument("--projects", type=positive_int, default=4, help="distinct projects (4)")
    p.add_argument("--seed", type=int, default=7, help="random seed (7)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_json_flag(p)
    p.set_defaults(handler=cmd_simulate)

    p = subparsers.add_parser(
        "report", help="execute the notebooks on a database into HTML",
        description="Execute notebooks/performance, capacity and audit on a memkit database "
        "(--db, any file name; or a directory holding agents.db and bench/*.json, as memkit "
        "demo writes) and benchmark JSON (--bench), and export them to HTML with every plot "
        "as a PNG and an index page leading with the key numbers. With --bench only, the "
        "performance notebook runs. Needs: pip install 'abathur-memkit[notebooks]'.",
        **example("memkit report memkit-demo",
                  "memkit report swarm.sqlite --bench bench/ --output report/"))
    p.add_argument("data_dir", nargs="?", default=None,
                   help="same as --db (default: memkit-demo, when neither is given)")
    p.add_argument("--db", help="the database file, a directory holding agents.db, or a "
                                "postgresql:// DSN")
    p.add_argument("--bench", metavar="DIR",
                   help="directory of benchmark JSON (default: bench/ beside the database)")
    p.add_argument("--output",
                   help="where to write the HTML (default: report/ beside the database)")
    p.add_argument("--notebooks-dir", help="where the .ipynb files are (default: found)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="run only these notebooks (performance, capacity, audit)")
    p.add_argument("--timeout", type=positive_int, default=600,
                   help="seconds a cell may run (600)")
    add_json_flag(p)
    p.set_defaults(handler=cmd_report)

    p = subparsers.add_parser(
        "demo", help="the main job: init, seed, simulate, search, bench, validate, report",
        description="Build ./memkit-demo/: a database seeded with the seed guide's memories "
        "and filled by a simulated swarm, the repository's docs indexed and searched, "
        "benchmark JSON, the validation report and an HTML report with plots. Prints where "
        "everything is.",
        **example("memkit demo --operations 20000 --quick-bench"))
    p.add_argument("--output", default="memkit-demo", help="directory (default: memkit-demo)")
    p.add_argument("--agents", type=positive_int, default=50, help="concurrent agents (50)")
    p.add_argument("--operations", type=positive_int, default=100_000,
                   help="simulated operations (100,000)")
    p.add_argument("--days", type=_positive_float, default=14.0,
                   help="days the simulated activity spans (14)")
    p.add_argument("--quick-bench", action="store_true",
                   help="the core benchmark's --quick sizes instead of the full run")
    p.add_argument("--no-report", action="store_true", help="skip the notebooks")
    p.add_argument("--no-progress", action="store_true", help="no progress output on stderr")
    add_json_flag(p)
    p.set_defaults(handler=cmd_demo)


async def cmd_simulate(args: argparse.Namespace) -> int:
    from ..workloads.simulate import WorkloadConfig, progress_bar, simulate

    config = WorkloadConfig(agents=args.agents, operations=args.operations,
                            minutes=args.minutes, days=args.days, users=args.users,
                            projects=args.projects, seed=args.seed)
    # By time: a count and a rate, no percentage.
    bar = progress_bar(args.operations, not args.no_progress)
    try:
        async with open_or_create(args.path) as db:
            result = await simulate(db, config, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    emit(args, {"path": str(Path(args.path).resolve()), **result.to_dict()},
         f"{args.path}: {result.table()}")
    return 0


def _report_source(args: argparse.Namespace) -> str | None:
    if args.db is not None and args.data_dir is not None:
        raise InvalidInputError("give the database once: DATA_DIR or --db, not both")
    db = args.db if args.db is not None else args.data_dir
    return "memkit-demo" if db is None and args.bench is None else db


def _default_output(db: str | None, bench: str) -> Path:
    from ..database import is_dsn

    if db is None:
        return Path(bench).parent / "report"
    if is_dsn(db):
        return Path("report")
    return (Path(db) if Path(db).is_dir() else Path(db).parent) / "report"


async def cmd_report(args: argparse.Namespace) -> int:
    from ..analysis.report import build_report

    db = _report_source(args)
    output = args.output or str(_default_output(db, args.bench))
    report = build_report(
        db, output, bench=args.bench, notebooks=args.only,
        source_dir=args.notebooks_dir, timeout=args.timeout,
        progress=lambda m: print(f"memkit report: {m}", file=sys.stderr, flush=True))
    lines = [f"{label:<30} {value}" for label, value in report.numbers.items()]
    lines += [f"{r.name:<12} {r.seconds:>6.1f}s  {len(r.figures)} plots  {r.html}"
              for r in report.notebooks]
    lines.append(f"index: {report.index}")
    emit(args, report.to_dict(), "\n".join(lines))
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from ..workloads.demo import DemoConfig, run_demo

    result = await run_demo(DemoConfig(
        output=args.output, agents=args.agents, operations=args.operations, days=args.days,
        full_bench=not args.quick_bench, report=not args.no_report, progress=not args.no_progress))
    emit(args, result.to_dict(), result.table())
    return 0 if result.ok else 1
