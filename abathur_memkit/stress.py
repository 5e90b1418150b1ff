"""Stress, soak and crash runs: many agents on one file, then proof that nothing was lost.

``run_stress`` starts agents (asyncio tasks) in this process and in worker
processes on the same database file. Each agent does a mixed workload through
the public services (memory add/update/delete/restore/rollback/batch/publish,
event appends, task claims, reads) and keeps a model of what it wrote; agents
also contend on shared keys, a shared session and the task queue. Afterwards
``verify_stress`` checks the database against every agent's model and
``structural_checks`` checks the invariants that must hold in *any* state the
database can be seen in (versions gapless, one audit row per memory write,
soft deletes backed by their audit rows, events gapless, each claim audited
once, batches all-or-nothing, counters equal to their state).

``run_crash`` SIGKILLs worker processes at random points, many of them inside
a write transaction, and after every kill opens the database and runs
``integrity_check``, the foreign-key check and ``structural_checks``.

Used by ``memkit stress``, ``memkit soak`` and ``memkit crash`` and by
``tests/reliability``. Worker processes run ``python -m abathur_memkit.stress``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .database import Database
from .errors import InvalidInputError
from .memory import MemoryItem

__all__ = [
    "CrashConfig",
    "StressConfig",
    "run_crash",
    "run_stress",
    "structural_checks",
    "verify_stress",
]

#: Audit actions that add one memory_entries row each.
ROW_ACTIONS = ("memory_create", "memory_update", "memory_rollback", "memory_publish")
#: Audit actions that flip is_deleted on existing rows.
DELETE_ACTIONS = ("memory_delete", "memory_expire")
RESTORE_ACTIONS = ("memory_restore",)

SHARED_NS = "project:stress"
SHARED_KEYS = tuple(f"shared{i}" for i in range(4))
SHARED_SESSION = "stress-shared"
OWN_KEYS = tuple(f"k{i}" for i in range(6))

Progress = Callable[[str], object]
Check = dict[str, Any]


def _new_file(path: str | os.PathLike[str]) -> Path:
    target = Path(os.fspath(path))
    if target.exists() and (not target.is_file() or target.stat().st_size > 0):
        raise InvalidInputError(f"{target} exists; stress and crash runs need a new database file")
    return target


def _check(name: str, passed: bool, detail: str = "") -> Check:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _none_found(name: str, rows: Sequence[Any], problem: str, fine: str) -> Check:
    """Passed when a query for violations found no ``rows``; else the first ones listed."""
    return _check(name, not rows, f"{problem}: {[tuple(r) for r in rows]}" if rows else fine)


# -- invariants that hold in every committed state ------------------------------


def structural_checks(conn: Any) -> list[Check]:
    """Invariants of any committed state (run inside one read snapshot).

    They need no knowledge of the workload, so they hold for a backup, for
    the database after a crash and for one still being written to.
    """
    checks: list[Check] = []

    bad_versions = conn.execute(
        "SELECT namespace, key, count(*), count(DISTINCT version), min(version), max(version) "
        "FROM memory_entries GROUP BY namespace, key "
        "HAVING count(*) != count(DISTINCT version) OR min(version) != 1 "
        "OR max(version) != count(*) LIMIT 5"
    ).fetchall()
    checks.append(_none_found("versions_gapless_unique", bad_versions, "bad keys",
                              "every key's versions are 1..n"))

    row_actions = ", ".join(f"'{a}'" for a in ROW_ACTIONS)
    unaudited = conn.execute(
        "SELECT m.id, m.namespace, m.key, m.version, count(a.id) AS n FROM memory_entries m "
        f"LEFT JOIN audit a ON a.memory_entry_id = m.id AND a.action_type IN ({row_actions}) "
        "AND a.memory_namespace = m.namespace "
        "AND json_extract(a.action_data, '$.version') = m.version "
        "GROUP BY m.id HAVING n != 1 LIMIT 5"
    ).fetchall()
    entries = int(conn.execute("SELECT count(*) FROM memory_entries").fetchone()[0])
    checks.append(_none_found("one_audit_row_per_memory_row", unaudited,
                              "rows without exactly one audit row",
                              f"{entries} rows, each with its audit row"))

    dangling = conn.execute(
        "SELECT count(*) FROM audit WHERE action_type LIKE 'memory\\_%' ESCAPE '\\' "
        "AND (memory_entry_id IS NULL OR memory_entry_id NOT IN (SELECT id FROM memory_entries))"
    ).fetchone()[0]
    checks.append(_check("memory_audit_rows_point_at_rows", dangling == 0,
                         f"{dangling} memory audit rows without their memory row"))

    checks.append(_deleted_flags_match_audit(conn))

    bad_seq = conn.execute(
        "SELECT session_id, count(*), min(seq), max(seq) FROM session_events "
        "GROUP BY session_id HAVING min(seq) != 1 OR max(seq) != count(*) LIMIT 5"
    ).fetchall()
    checks.append(_none_found("event_seqs_gapless", bad_seq, "sessions with gaps",
                              "every session's events are 1..n"))

    # Sessions created with metadata {"counter": true}: every append carries
    # {"n": seq} and the state delta {"n": seq}, so an event without its state
    # change (or the reverse) shows here.
    torn_events = conn.execute(
        "SELECT s.id, json_extract(s.state, '$.n') AS n, "
        "(SELECT count(*) FROM session_events e WHERE e.session_id = s.id) AS events, "
        "(SELECT count(*) FROM session_events e WHERE e.session_id = s.id "
        " AND json_extract(e.event, '$.n') IS NOT e.seq) AS mismatched "
        "FROM sessions s WHERE json_extract(s.metadata, '$.counter') = 1 "
        "AND (coalesce(n, 0) != events OR mismatched != 0) LIMIT 5"
    ).fetchall()
    checks.append(_none_found("event_and_state_change_together", torn_events, "torn",
                              "each counter session's state equals its event count"))

    # Memories with metadata {"counter": true} hold {"n": version} in every version.
    torn_counters = conn.execute(
        "SELECT namespace, key, version, value FROM memory_entries "
        "WHERE json_extract(metadata, '$.counter') = 1 "
        "AND json_extract(value, '$.n') IS NOT version LIMIT 5"
    ).fetchall()
    checks.append(_none_found("memory_counters_match_versions", torn_counters, "torn",
                              "each counter memory holds its own version number"))

    # Batches (metadata {"batch": id, "size": n}) are all or nothing.
    torn_batches = conn.execute(
        "SELECT json_extract(metadata, '$.batch') AS b, json_extract(metadata, '$.size') AS size, "
        "count(*) AS n FROM memory_entries WHERE json_extract(metadata, '$.batch') IS NOT NULL "
        "AND version = 1 GROUP BY b HAVING n != size LIMIT 5"
    ).fetchall()
    checks.append(_none_found("batches_all_or_nothing", torn_batches, "partial batches",
                              "every batch is stored whole"))

    claims = conn.execute(
        "SELECT t.id, t.status, "
        "(SELECT count(*) FROM audit a WHERE a.task_id = t.id "
        " AND a.action_type = 'task_claimed') AS claimed, "
        "(SELECT count(*) FROM audit a WHERE a.task_id = t.id "
        " AND a.action_type = 'task_completed') AS completed "
        "FROM tasks t WHERE t.retry_count = 0 AND NOT ("
        " (t.status = 'pending' AND claimed = 0 AND completed = 0) OR"
        " (t.status = 'running' AND claimed = 1 AND completed = 0) OR"
        " (t.status = 'completed' AND claimed = 1 AND completed = 1) OR"
        " t.status IN ('failed', 'cancelled')) LIMIT 5"
    ).fetchall()
    checks.append(_none_found("task_claims_audited_once", claims,
                              "tasks whose status and audit disagree",
                              "each claimed task has one claim audit row"))
    return checks


def _deleted_flags_match_audit(conn: Any) -> Check:
    """Replay the memory audit trail and compare every row's ``is_deleted``.

    A row is live when created; a delete marks every live row of its key
    deleted; a restore marks every row of the key live again. Audit ids follow
    commit order (they are assigned under the write lock), so the replay is exact.
    Keys never deleted must be all live (one query); only the others are replayed.
    """
    flips = "('memory_delete', 'memory_expire', 'memory_restore')"
    touched = (
        "SELECT DISTINCT m.namespace, m.key FROM audit a "
        "JOIN memory_entries m ON m.id = a.memory_entry_id "
        f"WHERE a.action_type IN {flips}"
    )
    untouched_deleted = conn.execute(
        "SELECT id, namespace, key FROM memory_entries m WHERE is_deleted = 1 AND NOT EXISTS "
        f"(SELECT 1 FROM ({touched}) t WHERE t.namespace = m.namespace AND t.key = m.key) "
        "LIMIT 5"
    ).fetchall()
    if untouched_deleted:
        return _check("soft_deletes_match_audit", False,
                      f"rows deleted without a delete audit row: "
                      f"{[tuple(r) for r in untouched_deleted]}")
    rows = {int(r[0]): ((r[1], r[2]), bool(r[3])) for r in conn.execute(
        f"WITH t AS ({touched}) SELECT m.id, m.namespace, m.key, m.is_deleted "
        "FROM memory_entries m JOIN t ON t.namespace = m.namespace AND t.key = m.key")}
    expected: dict[int, bool] = {}
    by_key: dict[tuple[str, str], list[int]] = {}
    for action, entry_id in conn.execute(
        "SELECT action_type, memory_entry_id FROM audit "
        "WHERE action_type LIKE 'memory\\_%' ESCAPE '\\' AND memory_entry_id IN "
        f"(SELECT m.id FROM memory_entries m JOIN ({touched}) t "
        " ON t.namespace = m.namespace AND t.key = m.key) ORDER BY id"
    ):
        ident = rows[entry_id][0]
        if action in ROW_ACTIONS:
            expected[entry_id] = False
            by_key.setdefault(ident, []).append(entry_id)
        elif action in DELETE_ACTIONS:
            for row_id in by_key.get(ident, ()):
                expected[row_id] = True
        elif action in RESTORE_ACTIONS:
            for row_id in by_key.get(ident, ()):
                expected[row_id] = False
    wrong = [(row_id, *ident, deleted) for row_id, (ident, deleted) in rows.items()
             if expected.get(row_id) is not None and expected[row_id] != deleted]
    return _check("soft_deletes_match_audit", not wrong,
                  f"rows whose is_deleted disagrees with the audit trail: {wrong[:5]}"
                  if wrong else f"every is_deleted flag follows from the audit trail "
                  f"({len(by_key)} keys ever deleted, replayed)")


async def database_checks(db: Database, *, quick: bool = False) -> list[Check]:
    """``integrity_check`` (or ``quick_check``), the foreign-key check and the invariants."""
    if quick:
        rows = await db.fetchall("PRAGMA quick_check")
        integrity = [str(next(iter(r.values()))) for r in rows]
    else:
        integrity = await db.integrity_check()
    violations = await db.validate_foreign_keys()
    checks = [
        _check("quick_check" if quick else "integrity_check", integrity == ["ok"],
               "; ".join(integrity[:3])),
        _check("foreign_key_check", not violations, f"{len(violations)} violations"),
    ]
    return checks + await db.read(structural_checks, snapshot=True)


# -- the stress workload --------------------------------------------------------


@dataclass
class StressConfig:
    """How big a stress (or soak) run is."""

    agents: int = 50
    """asyncio agents in this process"""
    processes: int = 4
    """worker processes on the same file"""
    agents_per_process: int = 5
    operations: int = 40
    """operations per agent in this process (ignored when ``seconds`` is set)"""
    worker_operations: int | None = None
    """operations per worker-process agent; default: as many per process as here"""
    seconds: float | None = None
    """run for this long instead of a number of operations (soak)"""
    tasks: int = 300
    """tasks queued before the run"""
    backups: int = 2
    """online backups taken while the agents run"""
    seed: int = 0

    def worker_agent_operations(self) -> int:
        if self.worker_operations is not None:
            return self.worker_operations
        return max(1, self.operations * self.agents // max(1, self.agents_per_process))


_WEIGHTS = {
    "add": 10, "update": 18, "delete": 5, "restore": 2, "rollback": 3, "batch": 3,
    "publish": 3, "shared_update": 10, "event": 12, "shared_event": 6, "claim": 8, "read": 20,
}


class Agent:
    """One agent: a mixed workload through the public API, and a model of its writes."""

    def __init__(self, db: Database, name: str, seed: int) -> None:
        self.db = db
        self.name = name
        self.by = f"agent:{name}"
        self.rng = random.Random(f"{seed}:{name}")
        self.ns = f"user:{name}"
        self.session = f"stress-{name}"
        self.session_ns = f"session:{self.session}"
        # (namespace, key) -> values by version (index version-1), and whether live.
        self.values: dict[tuple[str, str], list[Any]] = {}
        self.live: dict[tuple[str, str], bool] = {}
        self.counts: Counter[str] = Counter()
        self.audits: Counter[str] = Counter()
        self.shared_versions: dict[str, list[int]] = {k: [] for k in SHARED_KEYS}
        self.shared_seqs: list[int] = []
        self.claimed: list[str] = []
        self.completed: list[str] = []
        self.events = 0
        self.batches = 0
        self.errors: list[str] = []
        self.done = 0
        self.window = (0.0, 0.0)

    # -- bookkeeping --

    def _value(self) -> dict[str, Any]:
        return {"agent": self.name, "op": self.done, "pad": "x" * self.rng.randint(0, 120),
                "odd": "quote ' \" % _ ; -- 🙂"}

    def _wrote(self, ident: tuple[str, str], value: Any, version: int) -> None:
        history = self.values.setdefault(ident, [])
        if len(history) != version - 1:
            raise AssertionError(f"{ident}: wrote version {version}, model had {len(history)}")
        history.append(value)
        self.live[ident] = True

    def _pick(self, live: bool) -> tuple[str, str] | None:
        keys = [k for k, is_live in self.live.items() if is_live == live and k[0] == self.ns]
        return self.rng.choice(keys) if keys else None

    # -- the run --

    async def setup(self) -> None:
        await self.db.sessions.create_session(self.session, "stress", self.name,
                                              metadata={"counter": True})
        draft = self._value()
        await self.db.memory.add_memory(self.session_ns, "draft", draft, "episodic", self.by)
        self._wrote((self.session_ns, "draft"), draft, 1)
        self.audits["memory_create"] += 1

    async def run(self, operations: int | None, deadline: float | None) -> None:
        try:
            await self.setup()
        except Exception as exc:
            self.errors.append(f"setup: {type(exc).__name__}: {exc}")
            return
        kinds, weights = list(_WEIGHTS), list(_WEIGHTS.values())
        start = time.time()
        while (self.done < operations if operations is not None
               else time.monotonic() < (deadline or 0)):
            kind = self.rng.choices(kinds, weights)[0]
            try:
                await getattr(self, f"op_{kind}")()
            except Exception as exc:
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            self.done += 1
        self.window = (start, time.time())

    # -- operations --

    async def op_add(self) -> None:
        ident = self._pick(live=False)
        if ident is None:
            fresh = [k for k in OWN_KEYS if (self.ns, k) not in self.live]
            if not fresh:
                return await self.op_update()
            ident = (self.ns, self.rng.choice(fresh))
        value = self._value()
        entry_id = await self.db.memory.add_memory(ident[0], ident[1], value, "semantic", self.by,
                                                   task_id=f"task:{self.name}")
        version = len(self.values.get(ident, [])) + 1
        self._wrote(ident, value, version)
        self.audits["memory_create"] += 1
        if not isinstance(entry_id, int):
            raise AssertionError(f"add_memory returned {entry_id!r}")
        self.counts["add"] += 1

    async def op_update(self) -> None:
        ident = self._pick(live=True)
        if ident is None:
            return await self.op_add()
        value = self._value()
        version = await self.db.memory.update_memory(ident[0], ident[1], value, self.by)
        self._wrote(ident, value, version)
        self.audits["memory_update"] += 1
        self.counts["update"] += 1

    async def op_delete(self) -> None:
        ident = self._pick(live=True)
        if ident is None:
            return await self.op_add()
        if not await self.db.memory.delete_memory(ident[0], ident[1], deleted_by=self.by):
            raise AssertionError(f"delete_memory{ident} found nothing live")
        self.live[ident] = False
        self.audits["memory_delete"] += 1
        self.counts["delete"] += 1

    async def op_restore(self) -> None:
        ident = self._pick(live=False)
        if ident is None:
            return await self.op_delete()
        version = await self.db.memory.restore_memory(ident[0], ident[1], restored_by=self.by)
        if version != len(self.values[ident]):
            raise AssertionError(f"restore{ident} gave version {version}")
        self.live[ident] = True
        self.audits["memory_restore"] += 1
        self.counts["restore"] += 1

    async def op_rollback(self) -> None:
        candidates = [k for k, v in self.values.items()
                      if self.live[k] and len(v) >= 2 and k[0] == self.ns]
        if not candidates:
            return await self.op_update()
        ident = self.rng.choice(candidates)
        target = self.rng.randint(1, len(self.values[ident]) - 1)
        version = await self.db.memory.rollback_memory(ident[0], ident[1], target, self.by)
        self._wrote(ident, self.values[ident][target - 1], version)
        self.audits["memory_rollback"] += 1
        self.counts["rollback"] += 1

    async def op_batch(self) -> None:
        self.batches += 1
        batch = f"{self.name}-{self.batches}"
        size = self.rng.randint(1, 6)
        items = [MemoryItem(self.ns, f"b{self.batches}-{i}", self._value(), "procedural",
                            {"batch": batch, "size": size}) for i in range(size)]
        ids = await self.db.memory.add_memories(items, self.by)
        if len(ids) != size:
            raise AssertionError(f"batch of {size} returned {len(ids)} ids")
        for item in items:
            self._wrote((item.namespace, item.key), item.value, 1)
        self.audits["memory_create"] += size
        self.counts["batch"] += 1

    async def op_publish(self) -> None:
        target = (self.ns, "published")
        await self.db.memory.publish_memory(self.session_ns, "draft", self.ns, self.by,
                                            to_key="published")
        draft = self.values[(self.session_ns, "draft")][-1]
        self._wrote(target, draft, len(self.values.get(target, [])) + 1)
        self.audits["memory_publish"] += 1
        self.counts["publish"] += 1

    async def op_shared_update(self) -> None:
        key = self.rng.choice(SHARED_KEYS)
        version = await self.db.memory.update_memory(SHARED_NS, key, self._value(), self.by)
        self.shared_versions[key].append(version)
        self.audits["memory_update"] += 1
        self.counts["shared_update"] += 1

    async def op_event(self) -> None:
        n = self.events + 1
        seq = await self.db.sessions.append_event(self.session, {"agent": self.name, "n": n},
                                                  state_delta={"n": n})
        if seq != n:
            raise AssertionError(f"own session event got seq {seq}, expected {n}")
        self.events = n
        self.counts["event"] += 1

    async def op_shared_event(self) -> None:
        seq = await self.db.sessions.append_event(SHARED_SESSION, {"agent": self.name})
        self.shared_seqs.append(seq)
        self.counts["shared_event"] += 1

    async def op_claim(self) -> None:
        task = await self.db.tasks.claim(agent_id=self.name)
        if task is None:  # the queue ran dry: refill it (a soak keeps claiming)
            for _ in range(3):
                await self.db.tasks.submit(f"task from {self.name}", created_by=self.by,
                                           priority=self.rng.randint(0, 9))
            self.counts["submit"] += 3
            return
        self.claimed.append(str(task["id"]))
        if self.rng.random() < 0.5:
            await self.db.tasks.complete(task["id"], {"by": self.name})
            self.completed.append(str(task["id"]))
        self.counts["claim"] += 1

    async def op_read(self) -> None:
        if not self.values:
            return
        ident = self.rng.choice(list(self.values))
        got = await self.db.memory.get_memory(*ident)
        if self.live[ident]:
            expected = self.values[ident]
            if got is None or got["version"] != len(expected) or got["value"] != expected[-1]:
                raise AssertionError(
                    f"stale read of {ident}: got version {got and got['version']}, "
                    f"expected {len(expected)}")
        elif got is not None:
            raise AssertionError(f"read of deleted {ident} returned version {got['version']}")
        if self.rng.random() < 0.3:
            await self.db.memory.search_memories(self.ns, limit=20)
        if self.rng.random() < 0.2:
            session = await self.db.sessions.get_session(self.session)
            if session is None or len(session["events"]) != self.events:
                raise AssertionError("own session lost events")
        self.counts["read"] += 1

    # -- result --

    def result(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "operations": self.done,
            "counts": dict(self.counts),
            "audits": dict(self.audits),
            # Per key: live, latest version, latest value (the history stays here).
            "model": [[ns, key, self.live[(ns, key)], len(values), values[-1]]
                      for (ns, key), values in self.values.items()],
            "shared_versions": self.shared_versions,
            "shared_seqs": self.shared_seqs,
            "claimed": self.claimed,
            "completed": self.completed,
            "events": self.events,
            "errors": self.errors,
            "process": os.getpid(),
            "window": self.window,
        }


async def run_agents(
    db: Database, names: Sequence[str], config: StressConfig, *,
    deadline: float | None = None,
) -> list[Agent]:
    agents = [Agent(db, name, config.seed) for name in names]
    operations = None if config.seconds is not None else config.operations
    await asyncio.gather(*(a.run(operations, deadline) for a in agents))
    return agents


async def prepare(db: Database, config: StressConfig) -> None:
    """What the agents contend on: shared keys, a shared session, queued tasks."""
    for key in SHARED_KEYS:
        if await db.memory.get_memory(SHARED_NS, key) is None:
            await db.memory.add_memory(SHARED_NS, key, {"v": 1}, "semantic", "system")
    if await db.sessions.get_session(SHARED_SESSION) is None:
        await db.sessions.create_session(SHARED_SESSION, "stress", "everyone")
    for i in range(config.tasks):
        await db.tasks.submit(f"stress task {i}", priority=i % 7, created_by="system")


def _worker_command(path: Path, index: int, config: StressConfig, go: Path,
                    out: Path, deadline: float | None) -> list[str]:
    command = [sys.executable, "-m", "abathur_memkit.stress", "worker", str(path),
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
    operation counts and timings. ``path`` must be a new file (the checks
    compare the whole database with what the agents wrote). Backups go to
    ``backup_dir`` (default: a temporary directory, removed afterwards).
    """
    config = config or StressConfig()
    say = progress or (lambda _m: None)
    db_path = _new_file(path)
    work = Path(tempfile.mkdtemp(prefix="memkit-stress-"))
    backups_at = Path(os.fspath(backup_dir)) if backup_dir is not None else work
    started = time.perf_counter()
    try:
        async with Database(db_path) as db:
            await prepare(db, config)
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
            checks.append(_check(f"backup_restores:{copy.name}", not failed,
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
            "path": str(db_path),
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
    """Online backups at random moments while the agents run."""
    rng = random.Random(config.seed)
    copies: list[Path] = []
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


async def verify_backup(copy: Path, restored: Path) -> list[Check]:
    """Restore ``copy`` (a file copy, as an operator would) and check it."""
    shutil.copyfile(copy, restored)
    async with Database(restored) as db:
        report = await db.validate()
        checks = [_check("validate", report["ok"],
                         ", ".join(c["name"] for c in report["checks"] if not c["passed"]))]
        return checks + await db.read(structural_checks, snapshot=True)


async def verify_stress(db: Database, results: Sequence[dict[str, Any]]) -> list[Check]:
    """Check the database against every agent's model, plus the invariants."""
    checks: list[Check] = []
    errors = [e for r in results for e in r["errors"]]
    checks.append(_check("no_errors_reached_callers", not errors,
                         f"{len(errors)} errors, first: {errors[:3]}" if errors else
                         f"{sum(r['operations'] for r in results)} operations, no errors"))

    # Every write present, with the value and liveness its writer saw.
    def newest_rows(conn: Any) -> dict[tuple[str, str], tuple[int, bool, Any, int]]:
        rows = conn.execute(
            "SELECT namespace, key, version, is_deleted, value, "
            "(SELECT count(*) FROM memory_entries x "
            " WHERE x.namespace = m.namespace AND x.key = m.key) "
            "FROM memory_entries m WHERE version = (SELECT max(version) FROM memory_entries y "
            "WHERE y.namespace = m.namespace AND y.key = m.key)"
        ).fetchall()
        return {(r[0], r[1]): (int(r[2]), bool(r[3]), json.loads(r[4]), int(r[5]))
                for r in rows}

    newest = await db.read(newest_rows, snapshot=True)
    missing: list[str] = []
    modelled = 0
    for r in results:
        for ns, key, live, version, value in r["model"]:
            modelled += 1
            row = newest.get((ns, key))
            want = (version, not live, value, version)
            if row != want:
                missing.append(f"{ns}:{key} db={row and row[:2]} model={want[:2]}")
    checks.append(_check("every_write_present", not missing,
                         f"{len(missing)} keys differ: {missing[:3]}" if missing else
                         f"{modelled} keys match their writers' models (value, version, live)"))

    # Contended keys: versions handed out are unique and gapless.
    problems = []
    for key in SHARED_KEYS:
        handed = sorted(v for r in results for v in r["shared_versions"][key])
        row = newest.get((SHARED_NS, key))
        top = row[0] if row else 0
        if handed != list(range(2, top + 1)):
            problems.append(f"{key}: {len(handed)} updates, db max version {top}")
    checks.append(_check("shared_key_versions_unique", not problems,
                         "; ".join(problems) or "each concurrent update got its own version"))

    # Shared session: every append got its own seq, and all are stored.
    seqs = sorted(s for r in results for s in r["shared_seqs"])
    stored = await db.fetchone("SELECT count(*) AS n FROM session_events WHERE session_id = ?",
                               (SHARED_SESSION,))
    n = stored["n"] if stored else 0
    checks.append(_check("shared_session_seqs_unique", seqs == list(range(1, n + 1)),
                         f"{len(seqs)} appends, {n} stored"))
    own = {f"stress-{r['name']}": r["events"] for r in results}
    counted = await db.fetchall(
        "SELECT session_id, count(*) AS n FROM session_events GROUP BY session_id")
    stored_own = {row["session_id"]: row["n"] for row in counted
                  if row["session_id"] in own}
    lost = {s: (want, stored_own.get(s, 0)) for s, want in own.items()
            if stored_own.get(s, 0) != want}
    checks.append(_check("every_event_present", not lost, f"sessions differing: "
                         f"{list(lost.items())[:3]}" if lost else
                         f"{sum(own.values())} own-session events stored"))

    # Exactly one audit row per memory write, counted by kind.
    expected: Counter[str] = Counter()
    for r in results:
        expected.update(r["audits"])
    expected["memory_create"] += len(SHARED_KEYS)  # prepare() created each shared key
    rows = await db.fetchall(
        "SELECT action_type, count(*) AS n FROM audit "
        "WHERE action_type LIKE 'memory\\_%' ESCAPE '\\' GROUP BY action_type")
    actual = {row["action_type"]: row["n"] for row in rows}
    checks.append(_check("one_audit_row_per_memory_write", actual == dict(expected),
                         f"audit {actual} vs writes {dict(expected)}"))

    # No task claimed twice.
    claimed = [t for r in results for t in r["claimed"]]
    dupes = [t for t, c in Counter(claimed).items() if c > 1]
    audited = await db.fetchone(
        "SELECT count(*) AS n, count(DISTINCT task_id) AS d FROM audit "
        "WHERE action_type = 'task_claimed'")
    assert audited is not None
    ok = not dupes and audited["n"] == audited["d"] == len(claimed)
    checks.append(_check("no_task_claimed_twice", ok,
                         f"{len(claimed)} claims, {len(dupes)} duplicates, "
                         f"{audited['n']} claim audit rows"))
    return checks + await database_checks(db)


# -- worker process --------------------------------------------------------------


async def _stress_worker(args: argparse.Namespace) -> None:
    config = StressConfig(agents_per_process=args.agents, operations=args.operations,
                          seed=args.seed, seconds=None)
    deadline = None
    async with Database(args.path) as db:
        print("ready", flush=True)
        go = Path(args.go)
        waited = time.monotonic()
        while not go.exists():
            if _orphaned(args.parent) or time.monotonic() - waited > 300:
                raise SystemExit("stress worker: no go signal (was the runner killed?)")
            await asyncio.sleep(0.005)
        if args.until is not None:
            config.seconds = max(0.0, args.until - time.time())
            deadline = time.monotonic() + config.seconds
        names = [f"p{args.index}a{i}" for i in range(args.agents)]
        agents = await run_agents(db, names, config, deadline=deadline)
    Path(args.out).write_text(json.dumps([a.result() for a in agents]))


# -- crash safety -----------------------------------------------------------------


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


def _crash_worker_command(path: Path, index: int, kill_at: int, target: str,
                          seed: int) -> list[str]:
    return [sys.executable, "-m", "abathur_memkit.stress", "crash-worker", str(path),
            "--index", str(index), "--kill-at", str(kill_at), "--kill-before", target,
            "--seed", str(seed), "--parent", str(os.getpid())]


async def _crash_prepare(path: Path) -> None:
    async with Database(path) as db:
        if await db.memory.get_memory("project:crash", "shared") is None:
            await db.memory.add_memory("project:crash", "shared", {"v": 0}, "semantic", "system")


async def run_crash(
    path: str | os.PathLike[str],
    config: CrashConfig | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Kill worker processes mid-write ``config.kills`` times, checking after each kill."""
    config = config or CrashConfig()
    say = progress or (lambda _m: None)
    db_path = _new_file(path)
    rng = random.Random(config.seed)
    await _crash_prepare(db_path)
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
        counts = await db.fetchone(
            "SELECT (SELECT count(*) FROM memory_entries) AS memory_rows, "
            "(SELECT count(*) FROM session_events) AS events, "
            "(SELECT count(*) FROM audit) AS audit_rows, "
            "(SELECT count(*) FROM tasks WHERE status != 'pending') AS claimed_tasks")
    in_txn = sum(n for point, n in kill_points.items() if "inside a transaction" in point)
    return {
        "ok": not failures and all(c["passed"] for c in final),
        "path": str(db_path),
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
        text = " ".join(sql.split()).upper()
        if text.startswith("BEGIN IMMEDIATE"):
            self.local.in_txn = True
            return
        if not getattr(self.local, "in_txn", False):
            return
        if text.startswith(self.target):
            self.seen += 1
            if self.seen >= self.at:
                words = " ".join(sql.split()[:3]).split("(")[0]
                os.write(1, f"killed-in-txn {words}\n".encode())
                os.kill(os.getpid(), signal.SIGKILL)
        if text.startswith(("COMMIT", "ROLLBACK")):
            self.local.in_txn = False


async def _crash_worker(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    w = args.index
    ns, session = f"user:crash{w}", f"crash-{w}"
    draft_ns = f"session:{session}"
    by = f"agent:crash{w}"
    async with Database(args.path) as db:
        mem = db.memory
        if await db.sessions.get_session(session) is None:
            await db.sessions.create_session(session, "crash", f"crash{w}",
                                             metadata={"counter": True})
        if await mem.get_memory(draft_ns, "draft") is None:
            await mem.add_memory(draft_ns, "draft", {"w": w}, "episodic", by)
        if args.kill_at:
            await db.set_trace_callback(_KillInsideTransaction(args.kill_at, args.kill_before))
        print("ready", flush=True)
        while not _orphaned(args.parent):
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
                state = await db.sessions.get_state(session, "n", 0)
                await db.sessions.append_event(session, {"n": state + 1},
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
                task = await db.tasks.claim(agent_id=f"crash{w}")
                if task is None:
                    for _ in range(5):
                        await db.tasks.submit("crash task", created_by=by)
                else:
                    await db.tasks.complete(task["id"], {"w": w})
            elif op == "shared":
                await mem.update_memory("project:crash", "shared", {"w": w}, by)
            else:
                await db.checkpoint("PASSIVE")
            await asyncio.sleep(0.001)  # many kills matter here, not a huge file


# -- entry point for worker processes ------------------------------------------------


def _orphaned(parent: int) -> bool:
    """Whether the runner that started this worker is gone (never loop on without it)."""
    return parent > 0 and os.getppid() != parent


def _worker_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m abathur_memkit.stress")
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("worker")
    p.add_argument("path")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--operations", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--go", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--until", type=float)
    p.add_argument("--parent", type=int, default=0)
    c = sub.add_parser("crash-worker")
    c.add_argument("path")
    c.add_argument("--index", type=int, required=True)
    c.add_argument("--kill-at", type=int, default=0)
    c.add_argument("--kill-before", default="")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--parent", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_stress_worker(args) if args.role == "worker" else _crash_worker(args))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
