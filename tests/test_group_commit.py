"""Group commit: concurrent writes of one Database share a transaction, each in a SAVEPOINT."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import (
    AlreadyExistsError,
    Database,
    DatabaseFileError,
    InvalidInputError,
    MemkitError,
)

INSERT_METRIC = "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES ('t', ?, 1)"


class Statements:
    """A trace callback counting the statements that start with given words."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, sql: str) -> None:
        self.seen.append(" ".join(sql.split()).upper())

    def count(self, start: str) -> int:
        return sum(s.startswith(start) for s in self.seen)


@pytest.fixture
async def traced(db: Database) -> AsyncIterator[Statements]:
    statements = Statements()
    await db.set_trace_callback(statements)
    yield statements
    await db.set_trace_callback(None)


async def while_writer_busy(
    db: Database, writes: list[Callable[[], Awaitable[Any]]]
) -> list[Any]:
    """Start ``writes`` while another write holds the writer; return each outcome.

    The first write waits on the writer's thread until every other one is
    queued, so they are sure to arrive while a transaction runs.
    """
    gate = threading.Event()
    lead = asyncio.ensure_future(db.write(lambda conn: gate.wait(10)))
    await asyncio.sleep(0)  # the lead write is on the writer's thread now
    tasks = [asyncio.ensure_future(w()) for w in writes]
    await asyncio.sleep(0)  # every other write has queued
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert await lead is True
    return outcomes


async def audit_count(db: Database, namespace: str) -> int:
    row = await db.fetchone("SELECT count(*) AS n FROM audit WHERE memory_namespace = ?",
                            (namespace,))
    assert row is not None
    return int(row["n"])


async def test_fifty_concurrent_writers_share_a_few_transactions(
    db: Database, traced: Statements
) -> None:
    async def agent(n: int) -> int:
        return await db.memory.add_memory(f"app:a{n}", "k", {"n": n}, "semantic", "agent:x")

    ids = await asyncio.gather(*(agent(n) for n in range(50)))

    assert len(set(ids)) == 50
    # One write runs alone; the 49 that arrived meanwhile share the next transaction.
    assert traced.count("BEGIN IMMEDIATE") <= 3
    assert traced.count("SAVEPOINT") >= 45
    for n in range(50):
        entry = await db.memory.get_memory(f"app:a{n}", "k")
        assert entry is not None and entry["value"] == {"n": n}
        assert await audit_count(db, f"app:a{n}") == 1


async def test_failing_write_in_a_group_rolls_back_alone(
    db: Database, traced: Statements
) -> None:
    await db.memory.add_memory("app:taken", "k", 1, "semantic", "agent:x")

    def insert_then_fail(conn: Any) -> None:
        conn.execute(INSERT_METRIC, ("failed",))
        raise RuntimeError("the write's own error")

    begins_before = traced.count("BEGIN IMMEDIATE")
    outcomes = await while_writer_busy(db, [
        lambda: db.memory.add_memory("app:ok1", "k", 1, "semantic", "agent:x"),
        lambda: db.write(insert_then_fail),
        lambda: db.execute("INSERT INTO sessions (id, app_name, user_id, status) "
                           "VALUES ('s', 'a', 'u', 'nope')"),
        lambda: db.execute("INSERT INTO no_such_table VALUES (1)"),
        lambda: db.memory.add_memory("app:taken", "k", 2, "semantic", "agent:x"),
        lambda: db.memory.update_memory("app:ok1", "k", 2, "agent:x"),
        lambda: db.execute(INSERT_METRIC, ("ok",)),
    ])

    ok1, own, constraint, statement, taken, updated, metric = outcomes
    # The lead write's transaction, then one for all seven.
    assert traced.count("BEGIN IMMEDIATE") - begins_before == 2
    assert isinstance(ok1, int)
    assert isinstance(own, RuntimeError) and str(own) == "the write's own error"
    assert isinstance(constraint, InvalidInputError)
    assert "Rejected by a database constraint" in str(constraint)
    assert isinstance(statement, InvalidInputError) and "no such table" in str(statement)
    assert isinstance(taken, AlreadyExistsError)
    assert updated == 2
    assert metric == 1
    # The failed writes left nothing; the others each kept their row and audit row.
    assert await db.fetchall("SELECT metric_name FROM metrics") == [{"metric_name": "ok"}]
    assert await db.fetchone("SELECT id FROM sessions WHERE id = 's'") is None
    assert (await db.memory.get_memory("app:taken", "k") or {})["value"] == 1
    assert await audit_count(db, "app:taken") == 1
    assert (await db.memory.get_memory("app:ok1", "k") or {})["version"] == 2
    assert await audit_count(db, "app:ok1") == 2


async def test_write_that_ends_the_transaction_fails_its_group_before_it(
    db: Database, traced: Statements
) -> None:
    outcomes = await while_writer_busy(db, [
        lambda: db.execute(INSERT_METRIC, ("before",)),
        lambda: db.write(lambda conn: conn.execute("ROLLBACK")),
        lambda: db.execute(INSERT_METRIC, ("after",)),
    ])

    before, rogue, after = outcomes
    # Nothing is acknowledged that did not commit: the earlier write was rolled back.
    assert isinstance(before, MemkitError) and "not committed" in str(before)
    assert isinstance(rogue, MemkitError) and "ended its own transaction" in str(rogue)
    # The later write had not run yet: it ran in the next transaction.
    assert after == 1
    assert await db.fetchall("SELECT metric_name FROM metrics") == [{"metric_name": "after"}]


async def test_group_that_cannot_run_fails_every_write(db: Database) -> None:
    path = Path(db.path)

    async def delete_file_then_write() -> Any:
        path.unlink()
        return await db.execute(INSERT_METRIC, ("late",))

    outcomes = await while_writer_busy(db, [
        lambda: db.memory.add_memory("app:gone", "k", 1, "semantic", "agent:x"),
        delete_file_then_write,
    ])

    for outcome in outcomes:
        assert isinstance(outcome, DatabaseFileError)
        assert "deleted or replaced" in str(outcome)


async def test_cancelled_write_still_queued_is_dropped(db: Database) -> None:
    gate = threading.Event()
    lead = asyncio.ensure_future(db.write(lambda conn: gate.wait(10)))
    await asyncio.sleep(0)
    dropped = asyncio.ensure_future(db.execute(INSERT_METRIC, ("dropped",)))
    kept = asyncio.ensure_future(db.execute(INSERT_METRIC, ("kept",)))
    await asyncio.sleep(0)
    dropped.cancel()
    gate.set()
    assert await lead is True
    assert await kept == 1
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert await db.fetchall("SELECT metric_name FROM metrics") == [{"metric_name": "kept"}]


async def test_close_lets_queued_writes_commit(tmp_path: Path) -> None:
    db = Database(tmp_path / "close.db")
    await db.initialize()
    gate = threading.Event()
    lead = asyncio.ensure_future(db.write(lambda conn: gate.wait(10)))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(db.execute(INSERT_METRIC, (f"m{n}",))) for n in range(5)]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(db.close())
    await asyncio.sleep(0)
    gate.set()
    await closing
    assert await lead is True
    assert [await q for q in queued] == [1] * 5
    async with Database(tmp_path / "close.db") as again:
        rows = await again.fetchall("SELECT count(*) AS n FROM metrics")
    assert rows == [{"n": 5}]


async def test_group_commit_off_runs_each_write_alone(tmp_path: Path) -> None:
    async with Database(tmp_path / "off.db", group_commit=False) as db:
        statements = Statements()
        await db.set_trace_callback(statements)
        await asyncio.gather(*(db.execute(INSERT_METRIC, (f"m{n}",)) for n in range(50)))
        assert statements.count("BEGIN IMMEDIATE") == 50
        assert statements.count("SAVEPOINT") == 0


def test_writes_from_two_event_loops_at_once(tmp_path: Path) -> None:
    path = tmp_path / "loops.db"
    db = Database(path)
    asyncio.run(db.initialize())
    gate = threading.Event()
    queued = threading.Event()

    async def first_loop() -> list[Any]:
        lead = asyncio.ensure_future(db.write(lambda conn: gate.wait(10)))
        await asyncio.sleep(0)
        mine = asyncio.ensure_future(db.execute(INSERT_METRIC, ("first loop",)))
        await asyncio.sleep(0)
        queued.set()
        return list(await asyncio.gather(lead, mine))

    async def second_loop() -> int:
        assert queued.wait(10)
        # Queued behind the first loop's transaction, never inside its group.
        write = asyncio.ensure_future(db.execute(INSERT_METRIC, ("second loop",)))
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.wait_for(write, 10)

    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(asyncio.run(first_loop())))
    thread.start()
    try:
        assert asyncio.run(second_loop()) == 1
    finally:
        gate.set()
        thread.join(20)
    assert other == [[True, 1]]

    async def names() -> list[str]:
        rows = await db.fetchall("SELECT metric_name FROM metrics ORDER BY metric_name")
        await db.close()
        return [r["metric_name"] for r in rows]

    assert asyncio.run(names()) == ["first loop", "second loop"]


async def test_vacuum_and_checkpoint_never_run_inside_a_group(db: Database) -> None:
    outcomes = await while_writer_busy(db, [
        lambda: db.execute(INSERT_METRIC, ("a",)),
        db.vacuum,  # VACUUM fails inside a transaction
        lambda: db.execute(INSERT_METRIC, ("b",)),
        lambda: db.checkpoint("TRUNCATE"),
        lambda: db.execute(INSERT_METRIC, ("c",)),
    ])

    assert outcomes[0] == outcomes[2] == outcomes[4] == 1
    assert outcomes[1] is None
    assert outcomes[3]["busy"] == 0  # it ran, and no transaction held the WAL
    rows = await db.fetchall("SELECT metric_name FROM metrics ORDER BY metric_name")
    assert [r["metric_name"] for r in rows] == ["a", "b", "c"]
