"""The crash harness: SIGKILL worker processes mid-write, and check the file after every kill.

``run_crash`` kills workers (``python -m abathur_memkit.workloads.stress
crash-worker``) at random moments, many of them inside a write transaction
(the worker kills itself at a chosen statement), and after every kill opens
the database and runs ``integrity_check``, the foreign-key check and the
invariants (``checks.database_checks``). The database is a new file or an
empty PostgreSQL database (a DSN); there a worker's self-kill watches the
statements its services send through a wrapping store (PostgreSQL has no
trace callback), and the server rolls back the dead client's transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ... import audit, memory, sessions, tasks
from ...database import Database
from ...engines.interface import Connection, Cursor, Store
from ...memory import MemoryItem, MemoryService
from ...sessions import SessionService
from ...tasks import TaskService
from .checks import database_checks
from .runner import Progress, new_database, orphaned, require_empty, where

T = TypeVar("T")

__all__ = ["KILL_TARGETS", "CrashConfig", "run_crash"]


@dataclass
class CrashConfig:
    """How many kills a crash run makes."""

    kills: int = 40
    workers: int = 2
    """worker processes alive at once (one is killed at a time)"""
    min_run: float = 0.05
    max_run: float = 0.4
    """an external kill lands this many seconds (uniform) after the worker is ready"""
    self_kill_share: float = 0.5
    """share of kills made by the worker itself at a random statement inside a transaction"""
    kill_all_every: int = 5
    """every n-th kill takes down every worker, so the next open recovers the WAL cold"""
    seed: int = 0


def _crash_worker_command(path: Path | str, index: int, kill_at: int, target: str,
                          seed: int) -> list[str]:
    return [sys.executable, "-m", "abathur_memkit.workloads.stress", "crash-worker", str(path),
            "--index", str(index), "--kill-at", str(kill_at), "--kill-before", target,
            "--seed", str(seed), "--parent", str(os.getpid())]


async def _crash_prepare(path: Path | str) -> str:
    async with Database(path) as db:
        await require_empty(db)
        if await db.memory.get_memory("project:crash", "shared") is None:
            await db.memory.add_memory("project:crash", "shared", {"v": 0}, "semantic", "system")
        return where(db, path)


async def run_crash(
    path: str | os.PathLike[str],
    config: CrashConfig | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Kill worker processes mid-write ``config.kills`` times, checking after each kill."""
    config = config or CrashConfig()
    say = progress or (lambda _m: None)
    db_path = new_database(path)
    rng = random.Random(config.seed)
    shown = await _crash_prepare(db_path)
    started = time.perf_counter()
    live: dict[int, subprocess.Popen[str]] = {}
    kill_points: Counter[str] = Counter()
    failures: list[str] = []
    kills = 0
    checks_run = 0
    reported = 0

    def spawn(index: int) -> None:
        self_kill = rng.random() < config.self_kill_share
        target = rng.choice(KILL_TARGETS)
        kill_at = (rng.randint(1, 150) if target == "" else rng.randint(1, 25)) if self_kill else 0
        proc = subprocess.Popen(
            _crash_worker_command(db_path, index, kill_at, target, rng.randrange(2**31)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            _, err = proc.communicate(timeout=30)
            raise RuntimeError(f"crash worker failed to start: {line!r} {err}")
        live[index] = proc

    def reap(proc: subprocess.Popen[str]) -> str:
        """Kill if still running; return where it died."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            point = "external SIGKILL at a random time"
        else:
            point = "died before the external kill"
        out, err = proc.communicate(timeout=60)
        if proc.returncode != -signal.SIGKILL:
            raise RuntimeError(f"crash worker exited {proc.returncode}, not by SIGKILL: {err}")
        for line in out.splitlines():
            if line.startswith("killed-in-txn "):
                point = "self SIGKILL inside a transaction, before: " + line.split(" ", 1)[1]
        return point

    try:
        for i in range(config.workers):
            spawn(i)
        while kills < config.kills and not failures:
            victims = (list(live) if config.kill_all_every and
                       (kills + 1) % config.kill_all_every == 0 else [rng.choice(list(live))])
            # Give the workers time to get going (a self-killer may die first).
            deadline = time.monotonic() + rng.uniform(config.min_run, config.max_run)
            while time.monotonic() < deadline and all(live[v].poll() is None for v in victims):
                await asyncio.sleep(0.005)
            victims = victims[:config.kills - kills]
            for victim in victims:
                kill_points[reap(live.pop(victim))] += 1
                kills += 1
            async with Database(db_path) as db:  # opens: WAL recovery if every worker died
                # The full integrity_check every 10th time (and at the end); the
                # quick_check (no index-content cross-check) in between.
                checks = await database_checks(db, quick=checks_run % 10 != 0)
            checks_run += 1
            failed = [c for c in checks if not c["passed"]]
            if failed:
                failures.append(f"after kill {kills}: {failed}")
            if kills // 10 > reported or kills >= config.kills or failures:
                reported = kills // 10
                say(f"{kills}/{config.kills} kills, every check passed so far"
                    if not failures else f"{kills} kills: FAILED {failures[-1]}")
            for victim in victims:
                spawn(victim)
    finally:
        for proc in live.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
    async with Database(db_path) as db:
        final = await database_checks(db)
        counts = await db.read(_committed, snapshot=True)
    in_txn = sum(n for point, n in kill_points.items() if "inside a transaction" in point)
    return {
        "ok": not failures and all(c["passed"] for c in final),
        "path": shown,
        "kills": kills,
        "kills_inside_transaction": in_txn,
        "kill_points": dict(kill_points.most_common()),
        "checks_after_kills": checks_run,
        "failures": failures,
        "committed": counts,
        "seconds": round(time.perf_counter() - started, 2),
        "checks": final,
    }


# Statements a self-kill aims at: "" is any statement inside a transaction;
# the others are the moments between the two halves of an operation (a memory
# row and its audit row, an event and its state change) and the commit itself.
KILL_TARGETS = ("", "INSERT INTO audit", "UPDATE sessions", "INSERT INTO session_events",
                "UPDATE memory_entries", "COMMIT")


class _KillInsideTransaction:
    """A trace callback: SIGKILL this process at a statement inside a write transaction.

    It fires at the ``at``-th statement inside a transaction that starts with
    ``target`` ("" = any), just before SQLite runs it.
    """

    def __init__(self, at: int, target: str) -> None:
        self.at = at
        self.target = target.upper()
        self.seen = 0
        self.local = threading.local()

    def __call__(self, sql: str) -> None:
        """SQLite's trace callback: every statement, transactions' included."""
        text = " ".join(sql.split()).upper()
        if text.startswith("BEGIN IMMEDIATE"):
            self.local.in_txn = True
            return
        if not getattr(self.local, "in_txn", False):
            return
        self.statement(sql)
        if text.startswith(("COMMIT", "ROLLBACK")):
            self.local.in_txn = False

    def statement(self, sql: str) -> None:
        """A statement about to run inside a write transaction."""
        if " ".join(sql.split()).upper().startswith(self.target):
            self.seen += 1
            if self.seen >= self.at:
                words = " ".join(sql.split()[:3]).split("(")[0]
                os.write(1, f"killed-in-txn {words}\n".encode())
                os.kill(os.getpid(), signal.SIGKILL)


class _TracedConnection:
    """A write's connection whose statements the killer sees before they run."""

    def __init__(self, conn: Connection, killer: _KillInsideTransaction) -> None:
        self.conn = conn
        self.killer = killer

    def execute(self, sql: str, *parameters: Any) -> Cursor:
        self.killer.statement(sql)
        return self.conn.execute(sql, *parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Cursor:
        self.killer.statement(sql)
        return self.conn.executemany(sql, parameters)

    def cursor(self) -> Cursor:
        return _TracedCursor(self.conn.cursor(), self.killer)  # type: ignore[return-value]

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction


class _TracedCursor:
    """A cursor of a traced connection: its statements pass the killer too."""

    def __init__(self, cursor: Cursor, killer: _KillInsideTransaction) -> None:
        object.__setattr__(self, "_cursor", cursor)
        object.__setattr__(self, "_killer", killer)

    def execute(self, sql: str, *parameters: Any) -> _TracedCursor:
        self._killer.statement(sql)
        self._cursor.execute(sql, *parameters)
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cursor, name, value)  # row_factory, as on the cursor itself


class _KillingStore:
    """The database as a ``Store`` whose writes pass their statements, and the
    COMMIT about to end them, to the killer (for engines without a trace callback)."""

    def __init__(self, db: Database, killer: _KillInsideTransaction) -> None:
        self.db = db
        self.killer = killer

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def read(self, fn: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        return await self.db.read(fn, snapshot=snapshot)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        def traced(conn: Connection) -> T:
            result = fn(_TracedConnection(conn, self.killer))
            self.killer.statement("COMMIT")
            return result

        return await self.db.write(traced)


async def crash_worker(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    w = args.index
    ns, session = f"user:crash{w}", f"crash-{w}"
    draft_ns = f"session:{session}"
    by = f"agent:crash{w}"
    async with Database(args.path) as db:
        store: Store = db
        if args.kill_at:
            killer = _KillInsideTransaction(args.kill_at, args.kill_before)
            if db.dialect == "sqlite":
                await db.set_trace_callback(killer)
            else:
                store = _KillingStore(db, killer)
        mem, sessions_, tasks_ = MemoryService(store), SessionService(store), TaskService(store)
        if await sessions_.get_session(session) is None:
            await sessions_.create_session(session, "crash", f"crash{w}",
                                           metadata={"counter": True})
        if await mem.get_memory(draft_ns, "draft") is None:
            await mem.add_memory(draft_ns, "draft", {"w": w}, "episodic", by)
        print("ready", flush=True)
        while not orphaned(args.parent):
            op = rng.choices(
                ("counter", "event", "batch", "flip", "publish", "claim", "shared", "ckpt"),
                (20, 20, 8, 10, 5, 10, 10, 1))[0]
            if op == "counter":
                current = await mem.get_memory(ns, "counter")
                if current is None:
                    await mem.add_memory(ns, "counter", {"n": 1}, "semantic", by,
                                         metadata={"counter": True})
                else:
                    await mem.update_memory(ns, "counter", {"n": current["version"] + 1}, by)
            elif op == "event":
                state = await sessions_.get_state(session, "n", 0)
                await sessions_.append_event(session, {"n": state + 1},
                                             state_delta={"n": state + 1})
            elif op == "batch":
                batch, size = uuid.uuid4().hex, rng.randint(2, 8)
                await mem.add_memories(
                    [MemoryItem(f"{ns}:batch", f"{batch}-{i}", {"i": i}, "procedural",
                                {"batch": batch, "size": size}) for i in range(size)], by)
            elif op == "flip":
                if await mem.get_memory(ns, "flip") is not None:
                    await mem.delete_memory(ns, "flip", deleted_by=by)
                elif rng.random() < 0.5 and await mem.get_memory_history(ns, "flip"):
                    await mem.restore_memory(ns, "flip", restored_by=by)
                else:
                    await mem.add_memory(ns, "flip", {"r": rng.random()}, "semantic", by)
            elif op == "publish":
                await mem.publish_memory(draft_ns, "draft", ns, by, to_key="published")
            elif op == "claim":
                task = await tasks_.claim(agent_id=f"crash{w}")
                if task is None:
                    for _ in range(5):
                        await tasks_.submit("crash task", created_by=by)
                else:
                    await tasks_.complete(task["id"], {"w": w})
            elif op == "shared":
                await mem.update_memory("project:crash", "shared", {"w": w}, by)
            elif db.dialect == "sqlite":
                await db.checkpoint("PASSIVE")
            await asyncio.sleep(0.001)  # many kills matter here, not a huge file


def _committed(conn: Connection) -> dict[str, int]:
    """What the killed workers left committed."""
    return {"memory_rows": memory.count_rows(conn), "events": sessions.count_events(conn),
            "audit_rows": audit.count_rows(conn),
            "claimed_tasks": tasks.count_tasks(conn, claimed_only=True)}
