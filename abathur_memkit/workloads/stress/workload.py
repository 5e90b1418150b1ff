"""The stress workload: agents doing a mixed workload through the public API, each keeping a model.

Each agent adds, updates, deletes, restores, rolls back, batch-inserts and
publishes memories, appends session events, claims tasks and reads, and keeps
a model of what it wrote that ``checks.verify_stress`` compares with the
database afterwards. Agents also contend on shared keys, a shared session and
the task queue (``prepare`` creates them).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...database import Database
from ...memory import MemoryItem

__all__ = ["Agent", "StressConfig", "prepare", "run_agents"]

SHARED_NS = "project:stress"
SHARED_KEYS = tuple(f"shared{i}" for i in range(4))
SHARED_SESSION = "stress-shared"
OWN_KEYS = tuple(f"k{i}" for i in range(6))


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
