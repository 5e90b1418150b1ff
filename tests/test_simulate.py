"""The workload generator: a small swarm, its invariants, and backdating."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from abathur_memkit import Database
from abathur_memkit.errors import InvalidInputError
from abathur_memkit.values import timestamp
from abathur_memkit.workloads.simulate import TIMESTAMP_COLUMNS, WorkloadConfig, backdate, simulate


async def test_small_swarm(tmp_path: Path) -> None:
    calls: list[int] = []
    async with Database(tmp_path / "swarm.db") as db:
        before = timestamp()
        result = await simulate(db, WorkloadConfig(agents=6, operations=600, days=3, users=4,
                                                   projects=2, seed=3),
                                progress=calls.append)
        assert result.operations == 600 == len(calls) == sum(result.by_operation.values())
        assert result.episodes > 5
        for name in ("session.create", "session.append_event", "memory.add", "memory.search",
                     "task.submit", "task.claim", "agent.spawn", "checkpoint.save",
                     "metrics.record", "task.complete"):
            assert result.by_operation[name] > 0, name

        counts = {t: (await db.fetchone(f"SELECT count(*) AS n FROM {t}"))["n"]  # type: ignore[index]
                  for t in TIMESTAMP_COLUMNS}
        assert all(counts[t] > 0 for t in ("sessions", "session_events", "memory_entries",
                                           "tasks", "agents", "audit", "checkpoints",
                                           "metrics")), counts
        # Every memory row was written with its audit row (restores add no row).
        audited = await db.fetchone(
            "SELECT count(*) AS n FROM audit WHERE memory_operation_type IN "
            "('create', 'update', 'publish') AND action_type != 'memory_restore'")
        assert audited is not None and audited["n"] == counts["memory_entries"]
        types = {r["memory_type"] for r in await db.fetchall(
            "SELECT DISTINCT memory_type FROM memory_entries")}
        assert {"episodic", "semantic"} <= types
        assert await db.validate_foreign_keys() == []
        assert (await db.validate())["ok"] is True

        # Backdated over 3 days, order kept.
        assert result.span is not None and result.backdated_values > 0
        first, last = (datetime.fromisoformat(t) for t in result.span)
        assert timedelta(days=2) < last - first <= timedelta(days=3, hours=1)
        assert result.span[0] < before and result.span[1] <= timestamp()  # into the past
        disorder = await db.fetchone(
            "SELECT count(*) AS n FROM audit AS a JOIN audit AS b ON b.id = a.id + 1 "
            "WHERE b.timestamp < a.timestamp")
        assert disorder is not None and disorder["n"] == 0
        versions = await db.fetchone(
            "SELECT count(*) AS n FROM memory_entries AS a JOIN memory_entries AS b "
            "ON b.namespace = a.namespace AND b.key = a.key AND b.version = a.version + 1 "
            "WHERE b.created_at < a.created_at")
        assert versions is not None and versions["n"] == 0
        days = await db.fetchone(
            "SELECT count(DISTINCT substr(created_at, 1, 10)) AS n FROM session_events")
        assert days is not None and days["n"] >= 3


async def test_by_minutes_and_without_backdating(tmp_path: Path) -> None:
    async with Database(tmp_path / "timed.db") as db:
        start = time.monotonic()
        started_at = timestamp()
        result = await simulate(db, WorkloadConfig(agents=3, minutes=0.01, days=0))
        assert time.monotonic() - start < 5
        assert result.operations > 0 and result.span is None and result.backdated_values == 0
        oldest = await db.fetchone("SELECT min(timestamp) AS t FROM audit")
        assert oldest is not None and oldest["t"] >= started_at


async def test_backdate_only_touches_newer_rows(tmp_path: Path) -> None:
    async with Database(tmp_path / "old.db") as db:
        await db.memory.add_memory("app:x", "old", 1, "semantic", "system")
        since = timestamp()
        await db.memory.add_memory("app:x", "new", 2, "semantic", "system")
        old_row = await db.memory.get_memory("app:x", "old")
        end = datetime(2026, 3, 10, 12, tzinfo=UTC)
        changed, span = await backdate(db, since, 2, end=end)
        # memory_entries.created_at and updated_at, and audit.timestamp, of the new write.
        assert changed == 3 and span is not None
        # The memory row is the first timestamp written, its audit row the last.
        assert span == ("2026-03-08 12:00:00.000000", "2026-03-10 12:00:00.000000")
        new_row = await db.memory.get_memory("app:x", "new")
        assert new_row is not None and new_row["created_at"] == span[0]
        assert await db.memory.get_memory("app:x", "old") == old_row
        assert await backdate(db, "9999", 1) == (0, None)
        with pytest.raises(InvalidInputError, match="days"):
            await backdate(db, since, 0)


def test_config_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="operations or minutes"):
        WorkloadConfig()
    with pytest.raises(InvalidInputError, match="agents"):
        WorkloadConfig(agents=0, operations=1)
    with pytest.raises(InvalidInputError, match="minutes"):
        WorkloadConfig(minutes=-1)
