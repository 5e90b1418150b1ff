"""``memkit stress``, ``memkit soak``, ``memkit crash`` and ``memkit capacity``.

The long versions of the reliability tests (tests/reliability runs small ones
in CI). Each prints what it ran and every check; exit 0 when all passed, 1
when one failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..database import is_dsn
from ..errors import InvalidInputError
from . import add_json_flag, emit, example, positive_int

__all__ = ["register"]


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return 0 if text == "0" else positive_int(text)


def _add_db(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--db", help=f"{what} (a new file; default: a temporary file, removed after)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_json_flag(p)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "stress", help="many agents and processes on one file, then check nothing was lost",
        **example("memkit stress --agents 50 --processes 4 --operations 40"))
    _add_db(p, "database file to stress, or an empty PostgreSQL database's DSN")
    _add_stress_options(p)
    p.add_argument("--operations", type=positive_int, default=40,
                   help="operations per agent in this process (default 40)")
    p.add_argument("--worker-operations", type=positive_int,
                   help="operations per worker-process agent (default: as many per process "
                        "as this process runs)")
    p.set_defaults(handler=cmd_stress)

    p = subparsers.add_parser("soak", help="the stress workload for a number of minutes",
                              **example("memkit soak --minutes 60 --db soak.db"))
    _add_db(p, "database file to soak, or an empty PostgreSQL database's DSN")
    _add_stress_options(p)
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.set_defaults(handler=cmd_soak)

    p = subparsers.add_parser(
        "crash", help="SIGKILL writer processes mid-transaction; check the file after each kill",
        **example("memkit crash --kills 200 --workers 2"))
    _add_db(p, "database file to crash-test, or an empty PostgreSQL database's DSN")
    p.add_argument("--kills", type=positive_int, default=200,
                   help="processes to kill (default 200)")
    p.add_argument("--workers", type=positive_int, default=2,
                   help="writer processes alive at once (default 2)")
    p.set_defaults(handler=cmd_crash)

    p = subparsers.add_parser(
        "capacity", help="grow a database to a size and compare lookups at 10k rows and full",
        **example("memkit capacity --size 1GB --db capacity.db"))
    _add_db(p, "database file to build")
    p.add_argument("--size", default="1GB",
                   help="target file size: 1GB (default), 500MB, 10GB, 2GiB, ...")
    p.add_argument("--batch", type=positive_int, default=5000,
                   help="memories per add_memories transaction (default 5000)")
    p.add_argument("--value-bytes", type=positive_int, default=1000,
                   help="approximate size of each memory's value (default 1000)")
    p.add_argument("--samples", type=positive_int, default=2000,
                   help="timed lookups at each size (default 2000)")
    p.add_argument("--baseline-rows", type=positive_int, default=10_000,
                   help="rows at the first measurement (default 10000)")
    p.add_argument("--max-seconds", type=positive_int, default=None,
                   help="stop growing once the run has taken this many seconds and measure "
                        "the file reached (reported as not reaching the target)")
    p.add_argument("--scope-rounds", type=positive_int, default=20,
                   help="timed rounds of each scope-wide query at each size (default 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_capacity)


def _add_stress_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=_count, default=50,
                   help="asyncio agents in this process (default 50)")
    p.add_argument("--processes", type=_count, default=4,
                   help="worker processes on the same file (default 4)")
    p.add_argument("--agents-per-process", type=positive_int, default=5,
                   help="agents in each worker process (default 5)")
    p.add_argument("--tasks", type=_count, default=300, help="tasks queued first (default 300)")
    p.add_argument("--backups", type=_count, default=2,
                   help="online backups taken during the run, each restored and validated")


def _say(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _db_path(args: argparse.Namespace, tmp: str, name: str, *, dsn: bool = False) -> Path | str:
    if args.db is None:
        return Path(tmp) / name
    if dsn and is_dsn(args.db):  # checked empty once open
        return str(args.db)
    path = Path(args.db)
    if path.exists() and path.stat().st_size > 0:
        raise InvalidInputError(f"{path} exists; these runs need a new database file")
    return path


def _checks_text(report: dict[str, Any]) -> list[str]:
    return [f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']:<40} {c['detail'][:160]}"
            for c in report["checks"]]


async def _stress(args: argparse.Namespace, seconds: float | None) -> int:
    from ..workloads.stress import StressConfig, run_stress

    config = StressConfig(
        agents=args.agents, processes=args.processes,
        agents_per_process=args.agents_per_process,
        operations=getattr(args, "operations", 40),
        worker_operations=getattr(args, "worker_operations", None),
        seconds=seconds, tasks=args.tasks, backups=args.backups, seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="memkit-stress-") as tmp:
        report = await run_stress(_db_path(args, tmp, "stress.db", dsn=True), config, progress=_say,
                                  backup_dir=tmp)
    lines = [
        f"{report['operations']:,} operations by {report['agents']} agents in "
        f"{report['processes']} processes in {report['seconds']} s "
        f"({report['operations_per_second']:,} ops/s; all processes writing together for "
        f"{report['all_processes_writing_together_seconds']} s)",
        "by kind: " + ", ".join(f"{k} {v}" for k, v in report["operations_by_kind"].items()),
        f"errors reaching callers: {report['errors']}; backups taken and restored: "
        f"{report['backups']}",
        *_checks_text(report),
        "OK: nothing lost" if report["ok"] else "FAILED",
    ]
    emit(args, report, "\n".join(lines))
    return 0 if report["ok"] else 1


async def cmd_stress(args: argparse.Namespace) -> int:
    return await _stress(args, None)


async def cmd_soak(args: argparse.Namespace) -> int:
    if args.minutes <= 0:
        raise InvalidInputError(f"Invalid minutes: {args.minutes} (must be > 0)")
    return await _stress(args, args.minutes * 60)


async def cmd_crash(args: argparse.Namespace) -> int:
    from ..workloads.stress import CrashConfig, run_crash

    config = CrashConfig(kills=args.kills, workers=args.workers, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="memkit-crash-") as tmp:
        report = await run_crash(_db_path(args, tmp, "crash.db", dsn=True), config, progress=_say)
    committed = report["committed"] or {}
    lines = [
        f"{report['kills']} processes killed ({report['kills_inside_transaction']} by a SIGKILL "
        f"inside a write transaction), {report['checks_after_kills']} checks after kills, "
        f"{report['seconds']} s",
        *(f"  {n:4}  {point}" for point, n in report["kill_points"].items()),
        "committed meanwhile: " + ", ".join(f"{k} {v}" for k, v in committed.items()),
        *(f"FAILED {f}" for f in report["failures"]),
        *_checks_text(report),
        "OK: every kill left a sound database" if report["ok"] else "FAILED",
    ]
    emit(args, report, "\n".join(lines))
    return 0 if report["ok"] else 1


def _btrees_text(btrees: list[dict[str, Any]] | None, file_bytes: int) -> list[str]:
    if btrees is None:
        return ["file size by table and index: this SQLite build has no dbstat"]
    # Tables and indexes of a few pages each (empty ones) would bury the few that count.
    big = [b for b in btrees if b["bytes"] >= file_bytes / 1000]
    rest = btrees[len(big):]
    return [f"{'file size by table/index':<36} {'type':<6} {'MB':>10} {'share':>6}",
            *(f"{b['name']:<36} {b['type']:<6} {b['bytes'] / 1e6:>10.1f} "
              f"{b['bytes'] / file_bytes:>6.1%}" for b in big),
            f"{f'({len(rest)} smaller tables and indexes)':<43} "
            f"{sum(b['bytes'] for b in rest) / 1e6:>10.1f}"]


def _capacity_verdict(report: dict[str, Any]) -> str:
    if not report["target_reached"]:
        return (f"NOT REACHED: stopped at {report['file_bytes'] / 1e9:.2f} GB of "
                f"{report['config']['size'] / 1e9:.2f} GB (--max-seconds); figures are "
                f"for the size reached")
    return "OK" if report["ok"] else "FAILED: lookups slowed down more than the target allows"


async def cmd_capacity(args: argparse.Namespace) -> int:
    from ..workloads.capacity import CapacityConfig, parse_size, run_capacity

    config = CapacityConfig(size=parse_size(args.size), baseline_rows=args.baseline_rows,
                            value_bytes=args.value_bytes, batch=args.batch,
                            samples=args.samples, seed=args.seed,
                            max_seconds=args.max_seconds, scope_rounds=args.scope_rounds)
    with tempfile.TemporaryDirectory(prefix="memkit-capacity-") as tmp:
        report = await run_capacity(_db_path(args, tmp, "capacity.db"), config,
                                    progress=_say, bar=not args.no_progress)

    def row(name: str, m: dict[str, Any]) -> str:
        return (f"{name:<8} {m['rows']:>10,} rows {m['file_bytes'] / 1e6:>9.1f} MB   "
                f"get_memory p50 {m['api']['p50_us']:>7.1f} µs p95 {m['api']['p95_us']:>7.1f} µs"
                f"   SQL only p50 {m['sql']['p50_us']:>6.1f} µs")

    lines = [
        row("baseline", report["baseline"]),
        row("full", report["full"]),
        f"p50 full/baseline: get_memory {report['p50_ratio_api']}x (target <= "
        f"{report['max_p50_ratio']}x), SQL only {report['p50_ratio_sql']}x",
        f"inserted {report['rows']:,} memories at {report['insert_rows_per_second']:,} rows/s "
        f"(add_memories, with audit rows); built in {report['build_seconds']} s, "
        f"{report['seconds']} s in all",
        "",
        f"{'scope-wide query':<26} {'p50 baseline':>13} {'p50 full':>11} {'ratio':>7}",
        *(f"{name:<26} {m['baseline']['p50_us'] / 1e3:>10.2f} ms "
          f"{m['full']['p50_us'] / 1e3:>8.2f} ms "
          f"{m['full']['p50_us'] / max(m['baseline']['p50_us'], 1e-9):>6.2f}x"
          for name, m in report["scope_queries"].items()),
        "",
        *_btrees_text(report["btrees"], report["file_bytes"]),
        "",
        _capacity_verdict(report),
    ]
    emit(args, report, "\n".join(lines))
    return 0 if report["ok"] else 1
