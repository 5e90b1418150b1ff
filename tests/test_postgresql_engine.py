"""The PostgreSQL engine on a real server (tests/pg.py starts it): migrations,
transactions, placeholders, rows, concurrency, errors, plans and vectors."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit.engines.interface import Connection, Engine, Fetched, Statements, Store
from abathur_memkit.errors import InvalidInputError, MemkitError, SchemaError

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL tests need the postgres extra")

from abathur_memkit.engines.postgresql import PostgreSQLEngine, schema  # noqa: E402
from abathur_memkit.engines.postgresql.connection import convert  # noqa: E402

INSERT_MEMORY = (
    "INSERT INTO memory_entries (namespace, key, value, memory_type, version, updated_at) "
    "VALUES (?, ?, ?, 'semantic', ?, ?) RETURNING id"
)
AT = "2026-12-01 05:19:11.123400"
# The named indexes of SQLite's schema, which PostgreSQL's must have too.
SQLITE_INDEXES = set(re.findall(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+IF\s+NOT\s+EXISTS\s+(\w+)",
    "".join(p.read_text() for p in (Path(__file__).parent.parent / "sql").glob("*.sql")),
))


def _count(conn: Connection, table: str = "memory_entries") -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture
async def engine(pg_memkit_dsn: str) -> Any:
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=4) as eng:
        yield eng


# -- placeholders (no server) ---------------------------------------------


@pytest.mark.parametrize(
    ("sql", "named", "expected"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", False, "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT '?', 'it''s ?' WHERE a = ?", False, "SELECT '?', 'it''s ?' WHERE a = %s"),
        ("SELECT \"odd?col\" FROM t WHERE a = ?", False, "SELECT \"odd?col\" FROM t WHERE a = %s"),
        ("SELECT E'it\\'s ?' WHERE a = ?", False, "SELECT E'it\\'s ?' WHERE a = %s"),
        ("SELECT $$ ? $$, $q$ ' ? $q$ WHERE a = ?", False,
         "SELECT $$ ? $$, $q$ ' ? $q$ WHERE a = %s"),
        ("SELECT 1 -- why?\nWHERE a = ?", False, "SELECT 1 -- why?\nWHERE a = %s"),
        ("SELECT /* ? */ a WHERE a = ?", False, "SELECT /* ? */ a WHERE a = %s"),
        ("SELECT a WHERE b LIKE 'x%' AND c = ? AND d % 2 = 0", False,
         "SELECT a WHERE b LIKE 'x%%' AND c = %s AND d %% 2 = 0"),
        ("SELECT a::text WHERE b = :b AND c = ':c'", True,
         "SELECT a::text WHERE b = %(b)s AND c = ':c'"),
        ("SELECT a::text WHERE b = :b", False, "SELECT a::text WHERE b = :b"),
    ],
)
def test_placeholders_convert_outside_literals_only(sql: str, named: bool, expected: str) -> None:
    assert convert(sql, named) == expected


# -- migrations ------------------------------------------------------------


async def test_migrations_apply_once_and_again_change_nothing(pg_dsn: str) -> None:
    first = PostgreSQLEngine(pg_dsn)
    assert await first.initialize() == [m.version for m in schema.migrations()]
    try:
        assert await first.schema_version() == schema.schema_version() == 10
        async with PostgreSQLEngine(pg_dsn) as second:
            assert await second.schema_version() == 10
        again = PostgreSQLEngine(pg_dsn)
        assert await again.initialize() == []
        await again.close()
        assert await first.integrity_check() == ["ok"]
    finally:
        await first.close()


async def test_engines_starting_together_migrate_once(pg_dsn: str) -> None:
    engines = [PostgreSQLEngine(pg_dsn) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(e.initialize() for e in engines))
    finally:
        for e in engines:
            await e.close()
    assert sorted(applied, key=len) == [[], [], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]


async def test_without_migrate_an_empty_database_is_refused(pg_dsn: str) -> None:
    with pytest.raises(SchemaError, match="not an up-to-date memkit database"):
        await PostgreSQLEngine(pg_dsn, migrate=False).initialize()


async def test_schema_has_sqlite_named_indexes_and_tables(engine: PostgreSQLEngine) -> None:
    def names(conn: Connection) -> tuple[set[str], set[str]]:
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        return indexes, tables

    indexes, tables = await engine.read(names)
    assert len(SQLITE_INDEXES) >= 32 and indexes >= SQLITE_INDEXES
    assert set(schema.tables()) <= tables
    assert {"memory_heads", "memory_namespaces", "app_states", "user_states"} <= tables


async def test_engine_satisfies_the_interface(engine: PostgreSQLEngine) -> None:
    assert isinstance(engine, Store)
    typed: Engine = engine
    assert typed.dialect == "postgresql"


# -- read, write, rows -------------------------------------------------------


async def test_write_commits_and_rows_read_by_name_and_position(engine: PostgreSQLEngine) -> None:
    new_id = await engine.write(
        lambda c: c.execute(INSERT_MEMORY, ("user:a", "k", '{"b":1,"a":[2]}', 1, AT)).fetchone()[0]
    )
    row = await engine.read(
        lambda c: c.execute("SELECT * FROM memory_entries WHERE id = ?", (new_id,)).fetchone())
    assert row["id"] == row[0] == new_id
    assert row["namespace"] == "user:a" and row["is_deleted"] == 0
    assert row["value"] == '{"a": [2], "b": 1}'  # JSON as text, as on SQLite
    assert row["updated_at"] == AT  # timestamps as text in memkit's layout
    assert dict(row)["key"] == "k" and row.keys()[:3] == ["id", "namespace", "key"]
    summary = await engine.read(lambda c: c.execute(
        "SELECT sum(version) AS s, avg(version) AS a, ? AS flag FROM memory_entries",
        (True,)).fetchone())
    assert (summary["s"], summary["a"], summary["flag"]) == (1, 1.0, 1)
    assert type(summary["s"]) is int


async def test_placeholders_inside_literals_stay_text(engine: PostgreSQLEngine) -> None:
    row = await engine.read(lambda c: c.execute(
        "SELECT '?' AS q, 'a%b' AS p, ?::text AS v, $$?$$ AS d -- ?", ("x",)).fetchone())
    assert tuple(row) == ("?", "a%b", "x", "?")
    named = await engine.read(lambda c: c.execute(
        "SELECT :v::text AS v, ':v' AS lit", {"v": "y"}).fetchone())
    assert tuple(named) == ("y", ":v")


async def test_write_rolls_back_when_fn_raises(engine: PostgreSQLEngine) -> None:
    def half(conn: Connection) -> None:
        conn.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT))
        raise ValueError("stop")

    with pytest.raises(ValueError, match="stop"):
        await engine.write(half)
    assert await engine.read(_count) == 0
    assert await engine.read(lambda c: _count(c, "memory_heads")) == 0


async def test_integrity_error_is_invalid_input_and_writes_nothing(
    engine: PostgreSQLEngine,
) -> None:
    def duplicate(conn: Connection) -> None:
        conn.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT))
        conn.execute(INSERT_MEMORY, ("user:a", "k", "2", 1, AT))

    with pytest.raises(InvalidInputError, match="constraint"):
        await engine.write(duplicate)
    assert await engine.read(_count) == 0


async def test_bad_json_is_invalid_input(engine: PostgreSQLEngine) -> None:
    with pytest.raises(InvalidInputError, match="json"):
        await engine.write(lambda c: c.execute(INSERT_MEMORY, ("user:a", "k", "{nope", 1, AT)))
    assert await engine.read(_count) == 0


async def test_an_error_caught_inside_fn_still_fails_the_write(engine: PostgreSQLEngine) -> None:
    def swallow(conn: Connection) -> None:
        conn.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT))
        with contextlib.suppress(psycopg.IntegrityError):
            conn.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT)).fetchone()
        conn.execute(INSERT_MEMORY, ("user:a", "k2", "1", 1, AT))

    with pytest.raises(MemkitError, match="rolled the whole transaction back"):
        await engine.write(swallow)
    assert await engine.read(_count) == 0


async def test_an_error_of_a_statement_never_read_fails_the_write_at_commit(
    engine: PostgreSQLEngine,
) -> None:
    reached = []

    def unread(conn: Connection) -> None:
        conn.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT))
        conn.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT))  # pipelined: no wait here
        reached.append(True)

    with pytest.raises(InvalidInputError, match="constraint"):
        await engine.write(unread)
    assert reached == [True]
    assert await engine.read(_count) == 0


async def test_rowcount_and_description_wait_for_their_statement(
    engine: PostgreSQLEngine,
) -> None:
    def two(conn: Connection) -> tuple[int, int, str]:
        conn.execute(INSERT_MEMORY, ("user:a", "k1", "1", 1, AT))
        conn.execute(INSERT_MEMORY, ("user:a", "k2", "1", 1, AT))
        cursor = conn.execute("UPDATE memory_entries SET value = '2' WHERE namespace = ?",
                              ("user:a",))
        named = conn.execute("SELECT key AS k FROM memory_entries LIMIT 1")
        plain = conn.cursor()
        plain.execute("DELETE FROM memory_entries WHERE key = ?", ("k1",))
        return cursor.rowcount, plain.rowcount, named.description[0][0]

    assert await engine.write(two) == (2, 1, "k")


async def test_a_write_function_that_commits_is_reported(engine: PostgreSQLEngine) -> None:
    def rogue(conn: Connection) -> None:
        conn.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT))
        conn.execute("COMMIT")

    with pytest.raises(MemkitError, match="ended its own transaction"):
        await engine.write(rogue)


async def test_a_read_cannot_write(engine: PostgreSQLEngine) -> None:
    with pytest.raises(MemkitError, match="read tried to write"):
        await engine.read(lambda c: c.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT)))
    assert await engine.read(_count) == 0


async def test_read_only_engine_refuses_writes(pg_memkit_dsn: str) -> None:
    async with PostgreSQLEngine(pg_memkit_dsn, read_only=True) as eng:
        with pytest.raises(MemkitError, match="read-only"):
            await eng.write(lambda c: None)
        assert await eng.read(_count) == 0


async def test_snapshot_read_sees_one_state(engine: PostgreSQLEngine, pg_memkit_dsn: str) -> None:
    def two_counts(conn: Connection) -> tuple[int, int]:
        before = _count(conn)
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as other:
            other.execute("INSERT INTO memory_entries (namespace, key, value, memory_type) "
                          "VALUES ('user:a', %s, '1', 'semantic')", (f"k{before}",))
        return before, _count(conn)

    assert await engine.read(two_counts, snapshot=True) == (0, 0)
    assert await engine.read(two_counts) == (1, 2)


# -- reads given as Statements: from the event loop -------------------------


async def test_statements_read_runs_on_the_event_loop(engine: PostgreSQLEngine) -> None:
    await engine.write(lambda c: c.execute(INSERT_MEMORY, ("user:a", "k", '{"v": 1}', 1, AT)))
    threads_before = {t.name for t in threading.enumerate()}
    get = ("SELECT key, value, updated_at FROM memory_entries WHERE key = ?", ("k",))
    (found,) = await engine.read(Statements("get", get, named=True))
    assert found == Fetched(("key", "value", "updated_at"), [("k", '{"v": 1}', AT)])
    assert await engine.read(Statements("get", get)) == [Fetched((), found.rows)]
    assert engine._loop is not None and engine._loop._opened == 1
    assert {t.name for t in threading.enumerate()} == threads_before
    # The same rows as the function path gives.
    assert await engine.read(Statements("get", ("SELECT key FROM memory_entries", ()))) == \
        await engine.read(lambda c: Statements("get", ("SELECT key FROM memory_entries", ()))(c))


async def test_statements_in_a_snapshot_share_one_transaction(engine: PostgreSQLEngine) -> None:
    same = ("SELECT now(), current_setting('transaction_isolation')", ())
    first, second = await engine.read(Statements("snap", same, same), snapshot=True)
    assert first.rows == second.rows and first.rows[0][1] == "repeatable read"
    one, two = await engine.read(Statements("plain", ("SELECT clock_timestamp()", ()),
                                            ("SELECT clock_timestamp()", ())))
    assert one.rows != two.rows


async def test_statements_errors_leave_the_connection_usable(engine: PostgreSQLEngine) -> None:
    with pytest.raises(InvalidInputError, match="no_such_table"):
        await engine.read(Statements("bad", ("SELECT 1", ()), ("SELECT * FROM no_such_table", ())),
                          snapshot=True)
    with pytest.raises(MemkitError, match="read tried to write"):
        await engine.read(Statements("w", (INSERT_MEMORY, ("user:a", "k", "1", 1, AT))))
    assert await engine.read(_count) == 0
    (found,) = await engine.read(Statements("ok", ("SELECT 2", ())))
    assert found.rows == [(2,)]


async def test_statements_survive_a_dropped_connection(pg_memkit_dsn: str) -> None:
    pid_sql = Statements("pid", ("SELECT pg_backend_pid()", ()))
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=1) as eng:
        (first,) = await eng.read(pid_sql)
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first.rows[0][0],))
        (second,) = await eng.read(pid_sql)
        assert second.rows[0][0] != first.rows[0][0]
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=1, retries=0) as eng:
        (first,) = await eng.read(pid_sql)
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first.rows[0][0],))
        with pytest.raises(MemkitError, match="cannot use"):
            await eng.read(pid_sql)
        assert (await eng.read(pid_sql))[0].rows  # the lost connection was replaced


async def test_a_dead_idle_connection_is_replaced_before_a_write(pg_memkit_dsn: str) -> None:
    pid_sql = Statements("pid", ("SELECT pg_backend_pid()", ()))
    put = Statements("put", (INSERT_MEMORY, ("user:a", "k", "1", 1, AT)))
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=1) as eng:
        (first,) = await eng.read(pid_sql)
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first.rows[0][0],))
        assert eng._loop is not None
        eng._loop.check_after_idle = 0.0  # every idle connection is checked
        (written,) = await eng.write(put)  # on a new connection, not reported as lost
        assert len(written.rows) == 1 and await eng.read(_count) == 1
        eng._loop.check_after_idle = 3600.0  # unchecked: the write is reported, not retried
        (second,) = await eng.write(pid_sql)  # the connection a write of one statement takes
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (second.rows[0][0],))
        with pytest.raises(MemkitError, match="may or may not have been applied"):
            await eng.write(Statements("put", (INSERT_MEMORY, ("user:a", "k2", "1", 1, AT))))


async def test_statements_wait_for_a_connection_when_all_are_busy(pg_memkit_dsn: str) -> None:
    sleep = Statements("sleep", ("SELECT pg_sleep(0.05), pg_backend_pid()", ()))
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=2) as eng:
        results = await asyncio.gather(*(eng.read(sleep) for _ in range(6)))
        assert len({r[0].rows[0][1] for r in results}) == 2
        assert eng._loop is not None and eng._loop._opened == 2
        waiting = asyncio.gather(*(eng.read(sleep) for _ in range(4)))
        await asyncio.sleep(0.01)
        waiting.cancel()  # waiters that leave must not take a connection with them
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert len(await asyncio.gather(*(eng.read(sleep) for _ in range(4)))) == 4


_SETTINGS = Statements("settings", (
    "SELECT current_setting('transaction_read_only'), current_setting('transaction_isolation'), "
    "pg_backend_pid()", ()))


@pytest.mark.parametrize("isolation", ["read committed", "serializable"])
async def test_a_write_of_one_statement_is_its_own_read_write_transaction(
        pg_memkit_dsn: str, isolation: str) -> None:
    # One connection, so each call below switches it to the other kind and back.
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=1, isolation=isolation) as eng:
        (read,) = await eng.read(_SETTINGS)
        (written,) = await eng.write(_SETTINGS)
        (again,) = await eng.read(_SETTINGS)
        assert read.rows[0][:2] == again.rows[0][:2] == ("on", "read committed")
        assert written.rows[0][:2] == ("off", isolation)
        assert read.rows[0][2] == written.rows[0][2] == again.rows[0][2]
        # A read on a connection a write used still cannot write.
        with pytest.raises(MemkitError, match="read-only transaction"):
            await eng.read(Statements("put", (INSERT_MEMORY, ("user:a", "k", "1", 1, AT))))
        assert await eng.read(_count) == 0


async def test_a_connection_lost_while_idle_is_not_switched_over(pg_memkit_dsn: str) -> None:
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=1) as eng:
        (read,) = await eng.read(_SETTINGS)
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (read.rows[0][2],))
        # Nothing of the write was sent on the lost connection: it runs on a new one.
        (written,) = await eng.write(Statements(
            "put", (INSERT_MEMORY, ("user:a", "k", "1", 1, AT))))
        assert len(written.rows) == 1 and await eng.read(_count) == 1


_PUT_XMIN = INSERT_MEMORY.replace("RETURNING id", "RETURNING id, xmin::text")


def _put(key: str, version: int = 1) -> Statements:
    return Statements("put", (_PUT_XMIN, ("user:a", key, "1", version, AT)))


async def _slow_write(eng: PostgreSQLEngine) -> None:
    # A write of one statement that holds the writer while the others queue.
    await eng.write(Statements("slow", ("SELECT pg_sleep(0.2)", ())))


@pytest.mark.parametrize("group_commit", [True, False])
async def test_writes_that_arrive_together_share_a_transaction(
        pg_memkit_dsn: str, group_commit: bool) -> None:
    async with PostgreSQLEngine(pg_memkit_dsn, group_commit=group_commit) as eng:
        slow = asyncio.ensure_future(_slow_write(eng))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(eng.write(_put(f"k{n}")) for n in range(10)))
        await slow
        ids = [r[0].rows[0][0] for r in results]
        transactions = {r[0].rows[0][1] for r in results}
        assert len(set(ids)) == 10 and await eng.read(_count) == 10
        # Grouped: the ten queued behind the slow write commit in one transaction.
        assert len(transactions) == (1 if group_commit else 10)


async def test_a_write_that_fails_in_a_group_fails_alone(pg_memkit_dsn: str) -> None:
    async with PostgreSQLEngine(pg_memkit_dsn) as eng:
        await eng.write(_put("taken"))
        slow = asyncio.ensure_future(_slow_write(eng))
        await asyncio.sleep(0.05)
        keys = ["k0", "k1", "taken", "k3"]  # "taken" breaks the unique (namespace, key, version)
        results = await asyncio.gather(*(eng.write(_put(k)) for k in keys),
                                       return_exceptions=True)
        await slow
        assert isinstance(results[2], InvalidInputError)
        assert [isinstance(r, list) for r in results] == [True, True, False, True]
        assert await eng.read(_count) == 4  # "taken" once, and the three others


async def test_a_write_cancelled_while_queued_is_dropped(pg_memkit_dsn: str) -> None:
    async with PostgreSQLEngine(pg_memkit_dsn) as eng:
        slow = asyncio.ensure_future(_slow_write(eng))
        await asyncio.sleep(0.05)
        dropped = asyncio.ensure_future(eng.write(_put("dropped")))
        kept = asyncio.ensure_future(eng.write(_put("kept")))
        await asyncio.sleep(0.01)
        dropped.cancel()
        await slow
        await kept
        with pytest.raises(asyncio.CancelledError):
            await dropped
        assert await eng.read(_count) == 1


async def test_close_runs_the_queued_writes_first(pg_memkit_dsn: str) -> None:
    eng = PostgreSQLEngine(pg_memkit_dsn)
    await eng.initialize()
    slow = asyncio.ensure_future(_slow_write(eng))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(eng.write(_put(f"k{n}"))) for n in range(5)]
    await asyncio.sleep(0.01)
    await eng.close()
    assert slow.done() and all(write.done() for write in queued)
    await asyncio.gather(slow, *queued)
    async with PostgreSQLEngine(pg_memkit_dsn) as again:
        assert await again.read(_count) == 5


async def test_statements_write_in_one_transaction(engine: PostgreSQLEngine) -> None:
    put = (INSERT_MEMORY, ("user:a", "k", "1", 1, AT))
    first, second = await engine.write(Statements("put", put, (INSERT_MEMORY.replace(
        "RETURNING id", "RETURNING version"), ("user:a", "k", "2", 2, AT))))
    assert len(first.rows) == 1 and second.rows == [(2,)]
    assert await engine.read(_count) == 2
    # The second statement breaks a constraint: the first is rolled back with it.
    with pytest.raises(InvalidInputError, match="constraint"):
        await engine.write(Statements("dup", (INSERT_MEMORY, ("user:b", "k", "1", 1, AT)),
                                      (INSERT_MEMORY, ("user:a", "k", "1", 1, AT))))
    assert await engine.read(_count) == 2
    # The failed connection was closed, not pooled: the next call opens another.
    assert engine._loop is not None and engine._loop._opened == 0
    assert (await engine.read(Statements("one", ("SELECT 1", ()))))[0].rows == [(1,)]


async def test_statements_writes_retry_serialization_failures(pg_memkit_dsn: str) -> None:
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=4, isolation="serializable",
                                retries=100) as eng:
        await eng.write(lambda c: c.execute(
            "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES (?, 'n', 0)", (AT,)))
        bump = Statements("bump", ("UPDATE metrics SET metric_value = metric_value + 1 "
                                   "RETURNING metric_value", ()))
        await asyncio.gather(*(eng.write(bump) for _ in range(12)))
        (total,) = await eng.read(Statements("n", ("SELECT metric_value FROM metrics", ())))
    assert total.rows == [(12,)]


async def test_a_read_only_engine_refuses_statements_writes(pg_memkit_dsn: str) -> None:
    async with PostgreSQLEngine(pg_memkit_dsn, read_only=True) as eng:
        with pytest.raises(MemkitError, match="read-only"):
            await eng.write(Statements("put", (INSERT_MEMORY, ("user:a", "k", "1", 1, AT))))


def test_statements_from_another_event_loop_use_the_threads(pg_memkit_dsn: str) -> None:
    sql = Statements("one", ("SELECT 1", ()))

    async def first() -> PostgreSQLEngine:
        eng = PostgreSQLEngine(pg_memkit_dsn)
        await eng.initialize()
        assert (await eng.read(sql))[0].rows == [(1,)]
        return eng

    eng = asyncio.run(first())
    assert asyncio.run(eng.read(sql))[0].rows == [(1,)]  # another loop: through a thread
    put = Statements("put", (INSERT_MEMORY, ("user:a", "k", "1", 1, AT)))
    assert len(asyncio.run(eng.write(put))[0].rows) == 1
    assert asyncio.run(eng.read(_count)) == 1
    asyncio.run(eng.close())


async def test_statement_errors_are_invalid_input(engine: PostgreSQLEngine) -> None:
    with pytest.raises(InvalidInputError, match="no_such_table"):
        await engine.read(lambda c: c.execute("SELECT * FROM no_such_table"))
    with pytest.raises(InvalidInputError):
        await engine.read(lambda c: c.execute("SELECT ? + ?", (1,)))


# -- concurrency and retries ----------------------------------------------


async def test_concurrent_writers_with_row_locks_lose_no_update(engine: PostgreSQLEngine) -> None:
    await engine.write(lambda c: c.execute(
        "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES (?, 'n', 0)", (AT,)))

    def bump(conn: Connection) -> None:
        value = conn.execute(
            "SELECT metric_value FROM metrics WHERE metric_name = 'n' FOR UPDATE").fetchone()[0]
        conn.execute("UPDATE metrics SET metric_value = ? WHERE metric_name = 'n'", (value + 1,))

    await asyncio.gather(*(engine.write(bump) for _ in range(40)))
    total = await engine.read(
        lambda c: c.execute("SELECT metric_value FROM metrics WHERE metric_name = 'n'").fetchone())
    assert total[0] == 40


async def test_serializable_conflicts_are_retried(pg_memkit_dsn: str) -> None:
    # Without row locks, concurrent read-modify-writes conflict; each
    # serialization failure runs the write again until none is lost.
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=4, isolation="serializable",
                                retries=100) as eng:
        await eng.write(lambda c: c.execute(
            "INSERT INTO metrics (timestamp, metric_name, metric_value) VALUES (?, 'n', 0)", (AT,)))
        runs = 0

        def bump(conn: Connection) -> None:
            nonlocal runs
            runs += 1
            value = conn.execute("SELECT metric_value FROM metrics").fetchone()[0]
            conn.execute("UPDATE metrics SET metric_value = ?", (value + 1,))

        await asyncio.gather(*(eng.write(bump) for _ in range(24)))
        total = await eng.read(lambda c: c.execute("SELECT metric_value FROM metrics").fetchone())
    assert total[0] == 24
    assert runs >= 24


async def _kill_pooled_connection(eng: PostgreSQLEngine, dsn: str) -> None:
    pid = await eng.read(lambda c: c.execute("SELECT pg_backend_pid()").fetchone()[0])
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_a_dropped_connection_is_replaced_and_the_write_runs(pg_memkit_dsn: str) -> None:
    put = lambda c: c.execute(INSERT_MEMORY, ("user:a", "k", "1", 1, AT)).fetchone()[0]  # noqa: E731
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=1, retries=0) as eng:
        await _kill_pooled_connection(eng, pg_memkit_dsn)
        with pytest.raises(MemkitError, match="cannot use"):
            await eng.write(put)
    async with PostgreSQLEngine(pg_memkit_dsn, pool_size=1) as eng:
        await _kill_pooled_connection(eng, pg_memkit_dsn)
        assert await eng.write(put) is not None
        assert await eng.read(_count) == 1


# -- plans, integrity, vectors --------------------------------------------


async def test_query_plan_names_the_index(engine: PostgreSQLEngine) -> None:
    plan = await engine.query_plan(
        "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
        "ORDER BY version DESC LIMIT 1", ("user:a", "k"))
    details = [detail for _, _, detail in plan]
    assert plan[0][:2] == (1, 0) and plan[1][1] == 1
    assert any("using idx_memory_namespace_key_version on memory_entries" in d for d in details)
    assert not any(d.startswith("Seq Scan") for d in details)


async def test_integrity_check_reports_an_invalid_index(
    engine: PostgreSQLEngine, pg_memkit_dsn: str,
) -> None:
    assert await engine.integrity_check() == ["ok"]
    with psycopg.connect(pg_memkit_dsn, autocommit=True) as admin:
        admin.execute("UPDATE pg_index SET indisvalid = false "
                      "WHERE indexrelid = 'idx_audit_timestamp'::regclass")
    assert await engine.integrity_check() == [
        "index idx_audit_timestamp is not valid: REINDEX INDEX idx_audit_timestamp"]


async def test_vector_table_answers_nearest_by_cosine_with_hnsw(engine: PostgreSQLEngine) -> None:
    def build(conn: Connection) -> str:
        table = schema.create_vector_table(conn, "chunks", 3)
        conn.executemany(f"INSERT INTO {table} (id, embedding) VALUES (?, ?::vector)",
                         [(1, "[1,0,0]"), (2, "[0,1,0]"), (3, "[0.9,0.1,0]")])
        return table

    table = await engine.write(build)

    def nearest(conn: Connection) -> tuple[list[int], list[str]]:
        conn.execute("SET enable_seqscan = off")
        try:
            sql = f"SELECT id FROM {table} ORDER BY embedding <=> ?::vector LIMIT 2"
            ids = [r[0] for r in conn.execute(sql, ("[1,0,0]",))]
            plan = [r[0] for r in conn.execute(f"EXPLAIN {sql}", ("[1,0,0]",))]
        finally:
            conn.execute("RESET enable_seqscan")
        return ids, plan

    ids, plan = await engine.read(nearest)
    assert ids == [1, 3]
    assert any("chunks_vectors_hnsw" in line for line in plan)
    with pytest.raises(SchemaError):
        await engine.write(lambda c: schema.create_vector_table(c, "bad name;", 3))


async def test_memory_heads_follow_versions_and_deletes(engine: PostgreSQLEngine) -> None:
    def write_versions(conn: Connection) -> None:
        for version in (1, 2, 3):
            conn.execute(INSERT_MEMORY, ("user:a", "k", str(version), version, AT))
        conn.execute("UPDATE memory_entries SET is_deleted = 1 WHERE version = 3")

    await engine.write(write_versions)
    head = await engine.read(lambda c: c.execute(
        "SELECT version FROM memory_heads WHERE namespace = 'user:a' AND key = 'k'").fetchone())
    assert head[0] == 2
    await engine.write(lambda c: c.execute("DELETE FROM memory_entries"))
    assert await engine.read(lambda c: _count(c, "memory_heads")) == 0
    assert await engine.read(lambda c: _count(c, "memory_namespaces")) == 0
    assert await engine.read(lambda c: _count(c, "memory_search_queue")) == 1


def test_a_namespace_stays_listed_while_another_transaction_adds_to_it(
    pg_memkit_dsn: str,
) -> None:
    # A deletes the namespace's only key while B, not yet committed, adds
    # another: A must wait for B and keep the namespace listed.
    insert = ("INSERT INTO memory_entries (namespace, key, value, memory_type) "
              "VALUES ('user:x', %s, '1', 'semantic')")
    with psycopg.connect(pg_memkit_dsn, autocommit=True) as setup:
        setup.execute(insert, ("a",))
    with psycopg.connect(pg_memkit_dsn) as b, psycopg.connect(pg_memkit_dsn) as a:
        b.execute(insert, ("b",))
        a_pid = a.info.backend_pid
        remover = threading.Thread(target=lambda: (
            a.execute("DELETE FROM memory_entries WHERE key = 'a'"), a.commit()))
        remover.start()
        with psycopg.connect(pg_memkit_dsn, autocommit=True) as watch:
            while remover.is_alive() and not watch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                (a_pid,),
            ).fetchone():
                time.sleep(0.01)
        b.commit()
        remover.join()
    with psycopg.connect(pg_memkit_dsn) as check:
        heads = check.execute("SELECT key FROM memory_heads").fetchall()
        listed = check.execute("SELECT namespace FROM memory_namespaces").fetchall()
    assert heads == [("b",)]
    assert listed == [("user:x",)]
