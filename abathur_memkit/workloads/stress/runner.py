"""The stress (and soak) runner: agents here and in worker processes on one file, then the checks.

``run_stress`` prepares a new database, starts worker processes (each runs
``python -m abathur_memkit.workloads.stress worker``) and agents in this
process, takes online backups while they run, then verifies the database and
every backup (``checks``). The database is a new file, or an empty PostgreSQL
database named by its DSN (``postgresql://...``; no backups there: PostgreSQL's
are the server's job).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ... import audit, memory, sessions, tasks
from ...database import Database, is_dsn
from ...engines.interface import Connection
from ...errors import InvalidInputError
from .checks import check, verify_backup, verify_stress
from .workload import StressConfig, prepare, run_agents

__all__ = ["run_stress"]

Progress = Callable[[str], object]


def new_file(path: str | os.PathLike[str]) -> Path:
    target = Path(os.fspath(path))
    if target.exists() and (not target.is_file() or target.stat().st_size > 0):
        raise InvalidInputError(f"{target} exists; stress and crash runs need a new database file")
    return target


def new_database(path: str | os.PathLike[str]) -> Path | str:
    """A new file (``new_file``), or a DSN, checked empty by ``require_empty`` once open."""
    return path if is_dsn(path) else new_file(path)


def _rows(conn: Connection) -> int:
    return (memory.count_rows(conn) + sessions.count_sessions(conn) + tasks.count_tasks(conn)
            + audit.count_rows(conn))


async def require_empty(db: Database) -> None:
    """Refuse a PostgreSQL database that holds memkit rows (a file is new already)."""
    if db.dialect != "sqlite" and await db.read(_rows) > 0:
        raise InvalidInputError(
            f"{db.engine!r} holds memkit rows; stress and crash runs need an empty database")


def where(db: Database, target: Path | str) -> str:
    """The file, or the PostgreSQL database without its password, for reports."""
    return str(target) if isinstance(target, Path) else repr(db.engine)

def orphaned(parent: int) -> bool:
    """Whether the runner that started this worker is gone (never loop on without it)."""
    return parent > 0 and os.getppid() != parent


def _worker_command(path: Path | str, index: int, config: StressConfig, go: Path,
                    out: Path, deadline: float | None) -> list[str]:
    command = [sys.executable, "-m", "abathur_memkit.workloads.stress", "worker", str(path),
               "--index", str(index), "--agents", str(config.agents_per_process),
               "--operations", str(config.worker_agent_operations()),
               "--seed", str(config.seed),
               "--go", str(go), "--out", str(out), "--parent", str(os.getpid())]
    if deadline is not None:
        # Wall-clock: monotonic clocks are not shared between processes.
        command += ["--until", repr(deadline)]
    return command


async def run_stress(
    path: str | os.PathLike[str],
    config: StressConfig | None = None,
    *,
    progress: Progress | None = None,
    backup_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the stress (or, with ``config.seconds``, soak) workload; return the report.

    The report holds ``ok``, the ``checks`` (each ``{name, passed, detail}``),
    operation counts and timings. ``path`` must be a new file or an empty
    PostgreSQL database's DSN (the checks compare the whole database with what
    the agents wrote). Backups (SQLite only) go to ``backup_dir`` (default: a
    temporary directory, removed afterwards).
    """
    config = config or StressConfig()
    say = progress or (lambda _m: None)
    db_path = new_database(path)
    work = Path(tempfile.mkdtemp(prefix="memkit-stress-"))
    backups_at = Path(os.fspath(backup_dir)) if backup_dir is not None else work
    started = time.perf_counter()
    try:
        async with Database(db_path) as db:
            await require_empty(db)
            await prepare(db, config)
            shown = where(db, db_path)
        go = work / "go"
        deadline_wall = None if config.seconds is None else time.time() + config.seconds + 1.0
        outputs = [work / f"worker{i}.json" for i in range(config.processes)]
        workers = [
            subprocess.Popen(_worker_command(db_path, i, config, go, outputs[i], deadline_wall),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(config.processes)
        ]
        try:
            for worker in workers:  # each prints "ready" once its Database is open
                assert worker.stdout is not None
                line = await asyncio.to_thread(worker.stdout.readline)
                if line.strip() != "ready":
                    _, err = worker.communicate(timeout=30)
                    raise RuntimeError(f"stress worker failed to start: {line}{err}")
            say(f"{config.processes} worker processes ready; starting {config.agents} agents here")
            go.touch()
            begun = time.perf_counter()
            async with Database(db_path) as db:
                deadline = None if config.seconds is None else time.monotonic() + config.seconds
                names = [f"m{i}" for i in range(config.agents)]
                agents_task = asyncio.ensure_future(run_agents(db, names, config,
                                                               deadline=deadline))
                backups = await _take_backups(db, agents_task, config, backups_at, say)
                agents = await agents_task
                say(f"agents here done after {time.perf_counter() - begun:.1f} s; "
                    "waiting for the workers")
                results = [a.result() for a in agents]
                for i, worker in enumerate(workers):
                    _, err = await asyncio.to_thread(worker.communicate, None, 600)
                    if worker.returncode != 0:
                        raise RuntimeError(f"stress worker {i} exited {worker.returncode}: {err}")
                    results += json.loads(outputs[i].read_text())
                elapsed = time.perf_counter() - begun
                say("verifying")
                checks = await verify_stress(db, results)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        for copy in backups:
            backup_checks = await verify_backup(copy, work / f"restored-{copy.name}")
            failed = [c["name"] for c in backup_checks if not c["passed"]]
            checks.append(check(f"backup_restores:{copy.name}", not failed,
                                 f"failed: {failed}" if failed
                                 else "restored copy passes validate() and the invariants"))
        totals: Counter[str] = Counter()
        for r in results:
            totals.update(r["counts"])
        operations = sum(r["operations"] for r in results)
        windows: dict[int, list[float]] = {}
        for r in results:
            w = windows.setdefault(r["process"], [r["window"][0], r["window"][1]])
            w[0], w[1] = min(w[0], r["window"][0]), max(w[1], r["window"][1])
        overlap = min(w[1] for w in windows.values()) - max(w[0] for w in windows.values())
        report = {
            "ok": all(c["passed"] for c in checks),
            "path": shown,
            "config": asdict(config),
            "agents": len(results),
            "operations": operations,
            "operations_by_kind": dict(sorted(totals.items())),
            "errors": sum(len(r["errors"]) for r in results),
            "first_errors": [e for r in results for e in r["errors"]][:10],
            "processes": len(windows),
            "all_processes_writing_together_seconds": round(max(0.0, overlap), 2),
            "backups": len(backups),
            "seconds": round(elapsed, 2),
            "operations_per_second": round(operations / elapsed, 1) if elapsed else None,
            "total_seconds": round(time.perf_counter() - started, 2),
            "checks": checks,
        }
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _take_backups(db: Database, agents: asyncio.Future[Any], config: StressConfig,
                        directory: Path, say: Progress) -> list[Path]:
    """Online backups (of a SQLite file) at random moments while the agents run."""
    rng = random.Random(config.seed)
    copies: list[Path] = []
    if db.dialect != "sqlite":
        return copies
    for i in range(config.backups):
        # Early in a bounded run (it may be short); spread out over a soak.
        pause = (rng.uniform(0.02, 0.3) if config.seconds is None
                 else config.seconds / (config.backups + 1))
        await asyncio.wait([agents], timeout=pause)
        if agents.done() and copies:
            break
        target = directory / f"stress-backup-{os.getpid()}-{i}.db"
        target.unlink(missing_ok=True)
        copies.append(await db.backup(target))
        say(f"backup {i + 1} taken during the run ({target.stat().st_size // 1024} KiB)")
    return copies


# -- worker process --------------------------------------------------------------


async def stress_worker(args: argparse.Namespace) -> None:
    config = StressConfig(agents_per_process=args.agents, operations=args.operations,
                          seed=args.seed, seconds=None)
    deadline = None
    async with Database(args.path) as db:
        print("ready", flush=True)
        go = Path(args.go)
        waited = time.monotonic()
        while not go.exists():
            if orphaned(args.parent) or time.monotonic() - waited > 300:
                raise SystemExit("stress worker: no go signal (was the runner killed?)")
            await asyncio.sleep(0.005)
        if args.until is not None:
            config.seconds = max(0.0, args.until - time.time())
            deadline = time.monotonic() + config.seconds
        names = [f"p{args.index}a{i}" for i in range(args.agents)]
        agents = await run_agents(db, names, config, deadline=deadline)
    Path(args.out).write_text(json.dumps([a.result() for a in agents]))
