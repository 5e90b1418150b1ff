"""AuditService and MetricsService: filters, time ranges, order, errors, plans."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from dbdump import dump
from plan_checks import assert_searches, details

from abathur_memkit import Database, InvalidInputError, audit
from abathur_memkit import metrics as metric_sql
from abathur_memkit.inputs import as_timestamp
from abathur_memkit.values import timestamp


@pytest.fixture
async def trail(db: Database) -> Database:
    """Audit rows a..f, one minute apart from 2025-01-01 10:00."""
    rows: list[dict[str, Any]] = [
        {"task_id": "t1", "action_data": {"n": 1}},
        {"task_id": "t1", "agent_id": "a1"},
        {"agent_id": "a1", "memory_operation_type": "create",
         "memory_namespace": "user:alice", "memory_entry_id": None},
        {"memory_operation_type": "update", "memory_namespace": "user:alice"},
        {"memory_operation_type": "create", "memory_namespace": "project:p1"},
        {"task_id": "t2", "memory_operation_type": "publish", "memory_namespace": "user:alice"},
    ]
    start = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)

    def insert(conn: Any) -> None:
        for i, row in enumerate(rows):
            audit.record(conn, f"action_{'abcdef'[i]}", at=timestamp(start + timedelta(minutes=i)),
                         **row)

    await db.write(insert)
    return db


def actions(rows: list[dict[str, Any]]) -> str:
    return "".join(r["action_type"][-1] for r in rows)


async def test_audit_filters_newest_first(trail: Database) -> None:
    a = trail.audit
    assert actions(await a.list()) == "fedcba"
    assert actions(await a.list(limit=2)) == "fe"
    assert actions(await a.list(task_id="t1")) == "ba"
    assert actions(await a.list(agent_id="a1")) == "cb"
    assert actions(await a.list(memory_namespace="user:alice")) == "fdc"
    assert actions(await a.list(operation="create")) == "ec"
    assert actions(await a.list(operation="create", memory_namespace="user:alice")) == "c"
    assert actions(await a.list(task_id="t1", agent_id="a1")) == "b"
    rows = await a.list(task_id="t1")
    assert rows[-1]["action_data"] == {"n": 1}  # JSON parsed


async def test_audit_time_ranges(trail: Database) -> None:
    a = trail.audit
    since = datetime(2025, 1, 1, 10, 2)  # naive: taken as UTC
    until = datetime(2025, 1, 1, 11, 4, tzinfo=timezone(timedelta(hours=1)))  # = 10:04 UTC
    assert actions(await a.list(since=since)) == "fedc"
    assert actions(await a.list(since=since, until=until)) == "dc"  # until is exclusive
    assert actions(await a.list(memory_namespace="user:alice", since=since)) == "fdc"
    assert actions(await a.list(until="2025-01-01 10:01:00")) == "a"
    # between: oldest first, the whole range.
    assert actions(await a.between(since, "2025-01-01 10:05:00")) == "cde"
    assert actions(await a.between("2025-01-01", "2025-01-02", limit=2)) == "ab"
    # Prefixes of a time bound alike on both engines (PostgreSQL reads only whole times).
    assert actions(await a.list(since="2025-01", until="2025-01-01 10")) == ""
    assert actions(await a.list(since="2025-01-01 10", until="2025-01-01T10:02")) == "ba"


@pytest.mark.parametrize(("bound", "stored"), [
    ("2025", "2025-01-01 00:00:00"),
    ("2025-03", "2025-03-01 00:00:00"),
    ("2025-03-04T10", "2025-03-04 10:00:00"),
    ("2025-03-04 10:04", "2025-03-04 10:04:00"),
    ("2025-03-04 10:04:05.5Z", "2025-03-04 10:04:05.5"),
])
def test_a_time_prefix_is_completed(bound: str, stored: str) -> None:
    assert as_timestamp(bound, "since") == stored


@pytest.mark.parametrize("bound", ["2025-13", "2025-02-30", "2025-01-01 24"])
def test_a_time_that_does_not_exist_is_invalid(bound: str) -> None:
    with pytest.raises(InvalidInputError, match=f"^Invalid since: .*got '{bound}'"):
        as_timestamp(bound, "since")


async def test_audit_entry_filter(db: Database) -> None:
    mem_id = await db.write(lambda conn: conn.execute(
        "INSERT INTO memory_entries (namespace, key, value, memory_type) "
        "VALUES ('user:a', 'k', '1', 'semantic') RETURNING id").fetchone()[0])
    await db.write(lambda conn: audit.record(conn, "memory_create", memory_entry_id=mem_id,
                                             memory_operation_type="create",
                                             memory_namespace="user:a"))
    rows = await db.audit.list(memory_entry_id=mem_id)
    assert [r["memory_entry_id"] for r in rows] == [mem_id]
    assert await db.audit.list(memory_entry_id=mem_id + 1) == []


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: a.list(operation="upsert"), "Invalid operation: upsert"),
    (lambda a: a.list(limit=0), "Invalid limit: 0"),
    (lambda a: a.list(task_id=""), "Invalid task_id: empty"),
    (lambda a: a.list(memory_entry_id="1"), "Invalid memory_entry_id: expected an integer"),
    (lambda a: a.list(since=1234), "Invalid since: expected a datetime"),
    (lambda a: a.between(None, "2025"), "Invalid time range: since and until are both required"),
], ids=["operation", "limit", "task", "entry", "since", "between"])
async def test_audit_bad_input(trail: Database, call: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}"):
        await call(trail.audit)


AUDIT_PLANS = [
    ({"task_id": "t1"}, "idx_audit_task"),
    ({"agent_id": "a1"}, "idx_audit_agent"),
    ({"memory_namespace": "user:a"}, "idx_audit_memory_namespace"),
    ({"memory_entry_id": 1}, "idx_audit_memory_entry"),
    ({"operation": "create"}, "idx_audit_memory_operations"),
]


@pytest.mark.sqlite_only("SQLite's EXPLAIN QUERY PLAN; PostgreSQL's plans are checked apart")
@pytest.mark.parametrize("since", [None, "2025-01-01"], ids=["all", "since"])
@pytest.mark.parametrize(("filters", "index"), AUDIT_PLANS, ids=[i for _, i in AUDIT_PLANS])
async def test_audit_filter_plans(
    db: Database, filters: dict[str, Any], index: str, since: str | None
) -> None:
    query, params = audit.list_query(filters, since, "2026-01-01" if since else None, 100)
    await assert_searches(db, query, params, "audit", index)


@pytest.mark.sqlite_only("SQLite's EXPLAIN QUERY PLAN; PostgreSQL's plans are checked apart")
async def test_audit_time_plans(db: Database) -> None:
    await assert_searches(db, *audit.list_query({}, "2025", "2026", 100), "audit",
                          "idx_audit_timestamp")
    await assert_searches(db, *audit.list_query({}, "2025", "2026", None, oldest_first=True),
                          "audit", "idx_audit_timestamp")
    # No filter: the timestamp index in order, stopping after LIMIT rows.
    assert (await details(db, *audit.list_query({}, limit=100)))[0] == (
        "SCAN audit USING INDEX idx_audit_timestamp")


# -- metrics ------------------------------------------------------------------------

async def test_metrics_record_query_summary(db: Database) -> None:
    m = db.metrics
    first = await m.record("tokens", 10, {"model": "a"})
    await m.record("tokens", 30.5)
    await m.record("tokens", 0)
    await m.record("latency_ms", 2)
    assert isinstance(first, int)
    rows = await m.query("tokens")
    assert [r["metric_value"] for r in rows] == [0.0, 30.5, 10.0]  # newest first
    assert rows[-1]["labels"] == {"model": "a"} and rows[0]["labels"] is None
    assert len(await m.query("tokens", limit=1)) == 1
    summary = await m.summary("tokens")
    assert summary == {"name": "tokens", "count": 3, "min": 0.0, "max": 30.5,
                       "avg": pytest.approx(40.5 / 3), "sum": 40.5}
    future = datetime.now(UTC) + timedelta(days=1)
    assert await m.query("tokens", since=future) == []
    assert await m.summary("tokens", since=future) == {
        "name": "tokens", "count": 0, "min": None, "max": None, "avg": None, "sum": 0.0}
    assert len(await m.query("tokens", until=future)) == 3


async def test_metrics_time_range(db: Database) -> None:
    for i, value in enumerate((1, 2, 3)):
        await db.execute("INSERT INTO metrics (timestamp, metric_name, metric_value) "
                         "VALUES (?, 'm', ?)", (f"2025-01-0{i + 1} 00:00:00.000000", value))
    assert [r["metric_value"] for r in await db.metrics.query(
        "m", since="2025-01-02", until="2025-01-03 00:00:00.000001")] == [3.0, 2.0]
    summary = await db.metrics.summary("m", until=datetime(2025, 1, 2, 12))
    assert (summary["count"], summary["max"]) == (2, 2.0)


@pytest.mark.parametrize(("name", "value", "labels", "message"), [
    ("tokens", -1, None, "Invalid metric value for tokens: -1 (expected a finite number >= 0)"),
    ("tokens", math.nan, None, "Invalid metric value for tokens: nan"),
    ("tokens", math.inf, None, "Invalid metric value for tokens: inf"),
    ("tokens", True, None, "Invalid metric value for tokens: True"),
    ("tokens", "3", None, "Invalid metric value for tokens: '3'"),
    ("", 1, None, "Invalid metric name: empty"),
    ("tokens", 1, ["a"], "Invalid labels: expected a JSON object (dict), got list"),
    ("tokens", 1, {"k": {1}}, "Invalid labels: not JSON-serializable"),
])
async def test_metric_errors_change_nothing(
    db: Database, name: Any, value: Any, labels: Any, message: str
) -> None:
    await db.metrics.record("tokens", 1)
    before = await dump(db)
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}"):
        await db.metrics.record(name, value, labels)
    assert await dump(db) == before


@pytest.mark.sqlite_only("SQLite's EXPLAIN QUERY PLAN; PostgreSQL's plans are checked apart")
@pytest.mark.parametrize(("since", "until"), [(None, None), ("2025", None), ("2025", "2026")])
async def test_metric_plans(db: Database, since: str | None, until: str | None) -> None:
    await assert_searches(db, *metric_sql.query_sql("m", since, until, 10), "metrics",
                          "idx_metrics_name_timestamp")
    await assert_searches(db, *metric_sql.summary_sql("m", since, until), "metrics",
                          "idx_metrics_name_timestamp")


async def test_a_bare_year_bound_compares_as_a_time(db: Database) -> None:
    # TIMESTAMP columns have numeric affinity: an unpadded "2026" would be
    # compared as the integer 2026, below every stored text timestamp.
    await db.metrics.record("tokens", 1)
    now_year = (await db.metrics.query("tokens"))[0]["timestamp"][:4]
    assert len(await db.metrics.query("tokens", since=now_year)) == 1
    assert await db.metrics.query("tokens", until=now_year) == []
    assert len(await db.metrics.query("tokens", until=str(int(now_year) + 1))) == 1
