"""A workload generator: an agent swarm driving one Database, for demos and notebooks.

``simulate(db, WorkloadConfig(agents=50, operations=20_000))`` runs one
asyncio task per agent on a single :class:`~abathur_memkit.Database`. Each
agent works through *episodes* the way an Abathur worker does: a user's
request opens a session and submits a task; the agent claims the most urgent
task of its specialization, registers itself, reads the session's context,
then iterates — events and state, memory reads and searches, episodic
observations in the session's namespace, facts about the user, project
knowledge and shared procedures (new versions), a checkpoint and metrics per
iteration — and finally completes (or fails, and the task is retried),
publishes a draft to the user's namespace, terminates and closes the session.
Every call is one *operation*; the run stops after ``operations`` of them or
``minutes`` of wall time.

**Backdating.** A run takes seconds to minutes, but growth-by-day plots and
capacity projections need days. After the run, every timestamp the run wrote
(those at or after ``backdate_since``, by default the run's start) is mapped
onto the last ``days`` days with one SQL ``UPDATE`` per timestamp column,
through a monotone function: order is kept (versions, events, audit rows stay
in sequence), and the density follows a working week — busy office hours,
quiet nights and weekends, and adoption that grows over the period. Pass
``days=0`` to keep the real times.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..engines.interface import Connection
from ..engines.sqlite import timeshift
from ..errors import (
    AlreadyExistsError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
)
from ..values import timestamp

if TYPE_CHECKING:
    from ..database import Database

__all__ = [
    "TIMESTAMP_COLUMNS",
    "WorkloadConfig",
    "WorkloadResult",
    "backdate",
    "progress_bar",
    "simulate",
]

T = TypeVar("T")

#: Every timestamp column the workload writes, by table (what ``backdate`` rewrites).
TIMESTAMP_COLUMNS: dict[str, tuple[str, ...]] = {
    "sessions": ("created_at", "last_update_time", "terminated_at", "archived_at"),
    "session_events": ("created_at",),
    "memory_entries": ("created_at", "updated_at"),
    "tasks": ("submitted_at", "started_at", "completed_at", "last_updated_at"),
    "agents": ("spawned_at", "terminated_at"),
    "audit": ("timestamp",),
    "checkpoints": ("created_at",),
    "metrics": ("timestamp",),
}

SPECIALIZATIONS = ("researcher", "coder", "reviewer", "planner", "summarizer")
MODELS = ("claude-sonnet-4", "claude-haiku-4", "gpt-4o-mini", "llama3.1:8b")
TOOLS = ("read_file", "grep", "run_tests", "web_search", "edit_file", "shell")
# The keys of each user's preferences namespace.
_PREFERENCES = ("style", "language", "verbosity")
_WORDS = (
    "memory", "session", "agent", "task", "schema", "index", "query", "latency", "namespace",
    "version", "audit", "checkpoint", "retry", "user", "project", "design", "review", "plan",
    "report", "summary", "cache", "vector", "search", "document", "chunk", "embedding",
    "token", "budget", "deadline", "failure", "recovery", "wal", "transaction", "snapshot",
    "migration", "benchmark", "regression", "capacity", "growth", "policy",
)
_MARK_EVERY = 64
# Expected outcomes of racing agents, counted rather than raised.
_CONFLICTS = (AlreadyExistsError, NotFoundError, InvalidTransitionError)


@dataclass(frozen=True)
class WorkloadConfig:
    """What to simulate. Give ``operations`` or ``minutes`` (or both: first reached wins)."""

    agents: int = 50
    operations: int | None = None
    minutes: float | None = None
    days: float = 14.0
    users: int = 20
    projects: int = 4
    seed: int = 7
    app: str = "abathur"
    backdate_since: str | None = None  # default: the run's start

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise InvalidInputError(f"Invalid agents: {self.agents} (expected >= 1)")
        if self.operations is None and self.minutes is None:
            raise InvalidInputError("Give operations or minutes (how long to simulate)")
        if self.operations is not None and self.operations < 1:
            raise InvalidInputError(f"Invalid operations: {self.operations} (expected >= 1)")
        if self.minutes is not None and self.minutes <= 0:
            raise InvalidInputError(f"Invalid minutes: {self.minutes} (expected > 0)")
        if self.days < 0 or self.users < 1 or self.projects < 1:
            raise InvalidInputError("Invalid days/users/projects (expected days >= 0, others >= 1)")


@dataclass
class WorkloadResult:
    """What a run did."""

    operations: int = 0
    seconds: float = 0.0
    by_operation: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    episodes: int = 0
    backdated_values: int = 0
    span: tuple[str, str] | None = None  # simulated first and last timestamp

    @property
    def ops_per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "seconds": round(self.seconds, 3),
            "ops_per_second": round(self.ops_per_second, 1),
            "episodes": self.episodes,
            "by_operation": dict(sorted(self.by_operation.items())),
            "conflicts": dict(sorted(self.conflicts.items())),
            "backdated_values": self.backdated_values,
            "span": list(self.span) if self.span else None,
        }

    def table(self) -> str:
        lines = [f"{self.operations:,} operations in {self.seconds:.1f} s "
                 f"({self.ops_per_second:,.0f}/s), {self.episodes:,} episodes"]
        for name, count in sorted(self.by_operation.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {name:<28} {count:>8,}")
        if self.conflicts:
            lines.append("  conflicts (racing agents, expected): " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.conflicts.items())))
        if self.span:
            lines.append(f"  timestamps spread over {self.span[0][:16]} .. {self.span[1][:16]} "
                         f"UTC ({self.backdated_values:,} timestamps backdated)")
        return "\n".join(lines)


class _Budget:
    """Counts operations and says when the run is over."""

    def __init__(self, config: WorkloadConfig, progress: Callable[[int], object] | None):
        self.limit = config.operations
        self.deadline = (time.monotonic() + config.minutes * 60
                         if config.minutes is not None else None)
        self.done = 0
        self.progress = progress
        # (wall time, operations done) every few operations: backdating spreads
        # operations, not seconds, over the simulated days.
        self.marks: list[tuple[float, int]] = [(time.time(), 0)]

    @property
    def exhausted(self) -> bool:
        if self.limit is not None and self.done >= self.limit:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def spend(self) -> None:
        self.done += 1
        if self.done % _MARK_EVERY == 0:
            self.marks.append((time.time(), self.done))
        if self.progress is not None:
            self.progress(1)


class _Stop(Exception):
    """The budget is spent: the agent ends its episode where it is."""


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))


class _Swarm:
    def __init__(self, db: Database, config: WorkloadConfig, budget: _Budget,
                 result: WorkloadResult) -> None:
        self.db = db
        self.config = config
        self.budget = budget
        self.result = result
        # A few users do most of the work (Zipf-like weights).
        self.users = [f"u{n:03d}" for n in range(config.users)]
        self.user_weights = [1 / (n + 1) for n in range(config.users)]
        self.project_of = {u: f"p{n % config.projects}" for n, u in enumerate(self.users)}
        self.procedures = [f"{s}_playbook" for s in SPECIALIZATIONS]

    async def op(self, name: str, call: Awaitable[T]) -> T | None:
        """Run one operation; None when it lost a race to another agent."""
        if self.budget.exhausted:
            if asyncio.iscoroutine(call):
                call.close()
            raise _Stop
        self.budget.spend()
        self.result.by_operation[name] += 1
        try:
            return await call
        except _CONFLICTS as exc:
            self.result.conflicts[type(exc).__name__] += 1
            return None

    async def upsert(self, namespace: str, key: str, value: Any, memory_type: str,
                     writer: str, task_id: str | None) -> None:
        mem = self.db.memory
        current = await self.op("memory.get", mem.get_memory(namespace, key))
        if current is None:
            added = await self.op("memory.add", mem.add_memory(
                namespace, key, value, memory_type, writer, task_id=task_id))
            if added is not None:
                return
        await self.op("memory.update", mem.update_memory(
            namespace, key, value, writer, task_id=task_id))

    async def agent(self, index: int) -> None:
        rng = random.Random(self.config.seed * 1000 + index)
        specialization = SPECIALIZATIONS[index % len(SPECIALIZATIONS)]
        name = f"{specialization}-{index:02d}"
        try:
            while not self.budget.exhausted:
                await self.episode(rng, name, specialization)
                self.result.episodes += 1
        except _Stop:
            return

    async def episode(self, rng: random.Random, name: str, specialization: str) -> None:
        db, cfg = self.db, self.config
        user = rng.choices(self.users, self.user_weights)[0]
        project = self.project_of[user]
        # Random, not seeded: a second run on the same database must not collide.
        sid = f"sess-{uuid.uuid4().hex[:12]}"
        writer = f"agent:{name}"
        created = await self.op("session.create", db.sessions.create_session(
            sid, cfg.app, user, project_id=project,
            initial_state={"goal": _sentence(rng, 4, 10), "turn": 0}))
        if created is None:
            return
        await self.op("session.update_status", db.sessions.update_status(sid, "active"))
        submitted = await self.op("task.submit", db.tasks.submit(
            _sentence(rng, 8, 30), input_data={"files": rng.randint(1, 20)},
            agent_type=specialization, priority=rng.randint(1, 10), session_id=sid,
            created_by=f"user:{user}"))
        task = await self.op("task.claim", db.tasks.claim(specialization, agent_id=writer))
        task_id = task["id"] if task else submitted
        if task_id is None:
            return
        agent_id = await self.op("agent.spawn", db.agents.spawn(
            name, specialization, task_id, rng.choice(MODELS), session_id=sid))
        if agent_id is not None:
            await self.op("agent.set_state", db.agents.set_state(agent_id, "working"))
        await self.op("memory.context", db.memory.context_for_session(sid))
        for step in range(rng.randint(2, 6)):
            await self.iteration(rng, sid, user, project, writer, task_id, step)
            if rng.random() < 0.08:
                await self.op("session.update_status", db.sessions.update_status(sid, "paused"))
                await self.op("session.update_status", db.sessions.update_status(sid, "active"))
        await self.finish(rng, sid, user, writer, task_id if task else None, agent_id)

    async def iteration(self, rng: random.Random, sid: str, user: str, project: str,
                        writer: str, task_id: str, step: int) -> None:
        db = self.db
        for turn in range(rng.randint(2, 4)):
            actor = ("user", "agent", "tool")[turn % 3]
            event: dict[str, Any] = {
                "event_type": "tool_call" if actor == "tool" else "message",
                "actor": actor, "content": _sentence(rng, 6, 60),
                "tokens": rng.randint(20, 900)}
            if actor == "tool":
                event["tool"] = rng.choice(TOOLS)
            delta = {"turn": step * 4 + turn, "temp:scratch": "dropped"} if turn == 0 else None
            await self.op("session.append_event", db.sessions.append_event(sid, event, delta))
        roll = rng.random()
        if roll < 0.35:
            await self.op("memory.search", db.memory.search_memories(f"user:{user}", limit=20))
        elif roll < 0.6:
            await self.op("memory.search", db.memory.search_memories(
                f"project:{project}", memory_type="semantic", limit=20))
        else:
            await self.op("memory.get", db.memory.get_memory(
                f"user:{user}:preferences", rng.choice(_PREFERENCES)))
        # Episodic: what happened in this step, in the session's own namespace.
        await self.op("memory.add", db.memory.add_memory(
            f"session:{sid}", f"observation_{step}",
            {"summary": _sentence(rng, 10, 80), "tool": rng.choice(TOOLS),
             "outcome": rng.choice(("ok", "ok", "ok", "retry", "error"))},
            "episodic", f"session:{sid}", task_id=task_id))
        if rng.random() < 0.3:
            await self.upsert(f"user:{user}:preferences",
                              rng.choice(_PREFERENCES),
                              {"value": rng.choice(("concise", "detailed", "balanced")),
                               "learned_from": sid}, "semantic", f"session:{sid}", task_id)
        if rng.random() < 0.25:
            await self.upsert(f"project:{project}:knowledge", f"fact_{rng.randint(0, 60)}",
                              {"fact": _sentence(rng, 12, 50), "confidence": rng.random(),
                               "source": sid}, "semantic", writer, task_id)
        if rng.random() < 0.06:
            await self.upsert("app:abathur:procedures", rng.choice(self.procedures),
                              {"steps": [_sentence(rng, 4, 9) for _ in range(rng.randint(3, 7))],
                               "revised_by": writer}, "procedural", writer, task_id)
        await self.op("checkpoint.save", db.checkpoints.save(
            task_id, step, {"step": step, "notes": _sentence(rng, 5, 25)}, session_id=sid))
        await self.op("metrics.record", db.metrics.record(
            "tokens_used", float(rng.randint(200, 4000)), {"agent": writer}))

    async def finish(self, rng: random.Random, sid: str, user: str, writer: str,
                     task_id: str | None, agent_id: str | None) -> None:
        db = self.db
        if rng.random() < 0.2:
            await self.op("memory.add", db.memory.add_memory(
                f"session:{sid}", "draft", {"insight": _sentence(rng, 10, 40)}, "semantic",
                f"session:{sid}"))
            await self.op("memory.publish", db.memory.publish_memory(
                f"session:{sid}", "draft", f"user:{user}:insights", f"session:{sid}",
                to_key=f"insight_{sid[-6:]}"))
        if rng.random() < 0.05:
            key = rng.choice(_PREFERENCES)
            deleted = await self.op("memory.delete", db.memory.delete_memory(
                f"user:{user}:preferences", key, deleted_by=writer))
            if deleted and rng.random() < 0.3:
                await self.op("memory.restore", db.memory.restore_memory(
                    f"user:{user}:preferences", key, restored_by=writer))
        if task_id is not None:
            if rng.random() < 0.1:
                await self.op("task.fail", db.tasks.fail(task_id, "tool error: "
                                                         + _sentence(rng, 3, 8)))
            else:
                await self.op("task.complete", db.tasks.complete(
                    task_id, {"summary": _sentence(rng, 10, 40)}))
        if agent_id is not None:
            await self.op("agent.terminate", db.agents.terminate(agent_id, {
                "tokens": rng.randint(1_000, 60_000), "seconds": round(rng.uniform(5, 600), 1)}))
        if rng.random() < 0.1:
            await self.op("audit.list", db.audit.list(task_id=task_id, limit=50))
        await self.op("session.terminate", db.sessions.terminate_session(sid))
        if rng.random() < 0.3:
            await self.op("session.update_status", db.sessions.update_status(sid, "archived"))


async def simulate(
    db: Database,
    config: WorkloadConfig,
    *,
    progress: Callable[[int], object] | None = None,
) -> WorkloadResult:
    """Run the swarm on ``db`` (initialized) until the budget is spent; then backdate.

    ``progress(n)`` is called after each operation with ``n=1`` (a tqdm
    ``update`` fits).
    """
    result = WorkloadResult()
    since = config.backdate_since or timestamp()
    budget = _Budget(config, progress)
    swarm = _Swarm(db, config, budget, result)
    start = time.perf_counter()
    await asyncio.gather(*(swarm.agent(i) for i in range(config.agents)))
    result.seconds = time.perf_counter() - start
    result.operations = budget.done
    budget.marks.append((time.time(), budget.done))
    if config.days > 0:
        result.backdated_values, result.span = await backdate(
            db, since, config.days, marks=budget.marks)
    return result


def progress_bar(total: int | None, enabled: bool = True) -> Any:
    """A tqdm bar on stderr counting operations (``total=None``: count and rate only).

    None when disabled or tqdm is not installed; pass ``bar.update`` as ``progress``.
    """
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="op", file=sys.stderr, desc="simulate", smoothing=0.1,
                mininterval=0.5)


# -- backdating ------------------------------------------------------------------------


def _activity_weights(start: datetime, hours: int) -> list[float]:
    """Relative activity of each hour: office hours, weekends, growing adoption."""
    weights = []
    for h in range(hours):
        moment = start + timedelta(hours=h)
        hour = moment.hour
        daily = 1.0 if 8 <= hour < 18 else 0.45 if 18 <= hour < 23 else 0.12
        weekly = 0.35 if moment.weekday() >= 5 else 1.0
        trend = 0.6 + 0.8 * h / max(hours - 1, 1)
        weights.append(daily * weekly * trend)
    return weights


class _Warp:
    """Maps real timestamps in [first, last] monotonically onto the simulated span.

    With ``marks`` ((wall time, operations done), ascending) a timestamp's
    position is the share of operations done by then, so the simulated
    activity follows the profile however fast the run went at each moment;
    without, it is the share of the real time elapsed.
    """

    def __init__(self, first: datetime, last: datetime, end: datetime, days: float,
                 marks: Sequence[tuple[float, int]] = ()) -> None:
        self.first = first
        self.real_span = max((last - first).total_seconds(), 1e-6)
        self.mark_times = [t for t, _ in marks]
        total = marks[-1][1] if marks else 0
        self.mark_shares = [n / total for _, n in marks] if total else []
        hours = max(1, round(days * 24))
        self.start = end - timedelta(hours=hours)
        weights = _activity_weights(self.start, hours)
        self.cumulative = [0.0]
        for weight in weights:
            self.cumulative.append(self.cumulative[-1] + weight)
        self.total = self.cumulative[-1]

    def _share(self, real: datetime) -> float:
        if not self.mark_shares:
            return (real - self.first).total_seconds() / self.real_span
        moment = real.replace(tzinfo=UTC).timestamp()
        i = bisect.bisect_right(self.mark_times, moment)
        if i == 0:
            return 0.0
        if i == len(self.mark_times):
            return 1.0
        t0, t1 = self.mark_times[i - 1], self.mark_times[i]
        s0, s1 = self.mark_shares[i - 1], self.mark_shares[i]
        return s0 + (s1 - s0) * ((moment - t0) / (t1 - t0) if t1 > t0 else 1.0)

    def __call__(self, value: str | None) -> str | None:
        if value is None:
            return None
        share = min(max(self._share(datetime.fromisoformat(value)), 0.0), 1.0)
        target = share * self.total
        hour = min(bisect.bisect_right(self.cumulative, target) - 1, len(self.cumulative) - 2)
        within = (target - self.cumulative[hour]) / (
            self.cumulative[hour + 1] - self.cumulative[hour])
        return timestamp(self.start + timedelta(hours=hour + within))


async def backdate(db: Database, since: str, days: float, *, end: datetime | None = None,
                   marks: Sequence[tuple[float, int]] = ()) -> tuple[int, tuple[str, str] | None]:
    """Spread every timestamp >= ``since`` over the ``days`` days before ``end`` (now).

    Returns (values changed, (first, last) simulated timestamp). Order is
    kept: the mapping is monotone. ``marks`` are ``(epoch seconds, operations
    done)`` pairs of the run, to spread operations rather than seconds. See
    the module docstring.
    """
    if days <= 0:
        raise InvalidInputError(f"Invalid days: {days} (expected > 0)")
    end_at = (end or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)

    def rewrite(conn: Connection) -> tuple[int, tuple[str, str] | None]:
        columns = timeshift.present_columns(conn, TIMESTAMP_COLUMNS)
        found = timeshift.timestamp_bounds(conn, columns, since)
        if not found:
            return 0, None
        first = datetime.fromisoformat(min(lo for lo, _ in found))
        last = datetime.fromisoformat(max(hi for _, hi in found))
        warp = _Warp(first, last, end_at, days, marks)
        changed = timeshift.rewrite_timestamps(conn, columns, since, warp)
        return changed, (warp(timestamp(first)) or "", warp(timestamp(last)) or "")

    return await db.write(rewrite)
