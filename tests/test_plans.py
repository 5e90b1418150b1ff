"""Each hot query of the seeds is a SEARCH on its named index, never a SCAN."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiosqlite
import pytest

from abathur_memkit import Database
from abathur_memkit.engines.sqlite.engine import plan_rows
from abathur_memkit.engines.sqlite.validation import INDEX_SAMPLES, searches
from pytest_abathur.assertions import QueryPlanError, assert_uses_index, explain, explain_sync

# (table, index, sql, params): the samples the validation report explains.
HOT_QUERIES = INDEX_SAMPLES


@pytest.mark.parametrize(("table", "index", "sql", "params"), HOT_QUERIES,
                         ids=[q[1].split('|')[0] for q in HOT_QUERIES])
async def test_hot_query_searches_its_index(
    db: Database, table: str, index: str, sql: str, params: tuple[object, ...]
) -> None:
    plan = await db.query_plan(sql, params)
    details = [detail for _, _, detail in plan]
    assert searches(details, table, index), details


async def test_like_prefix_is_a_scan(db: Database) -> None:
    # Why the services never use LIKE: the seed's prefix query scans the table.
    plan = await db.query_plan(
        "SELECT * FROM memory_entries WHERE namespace LIKE ? AND is_deleted = 0", ("user:a%",))
    assert any(d.startswith("SCAN memory_entries") for _, _, d in plan)


# -- plans follow schema and statistics changes, on every connection ----------------------

PAIR_QUERY = "SELECT * FROM pairs WHERE a = ? AND b > ?"


def _in_another_process(path: str, sql: str) -> None:
    code = "import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, path, sql], check=True, timeout=60)


async def _plans_of_every_reader(db: Database) -> list[list[str]]:
    # Readers are taken in turn: one plan per reader, twice over.
    return [await db.explain_query_plan(PAIR_QUERY, (1, 5)) for _ in range(2 * 3)]


async def test_plans_follow_create_and_drop_index_on_every_reader(tmp_path: Path) -> None:
    async with Database(tmp_path / "plans.db", readers=3) as db:
        await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
        for round_ in range(3):
            await db.execute(f"CREATE INDEX pairs_a_{round_} ON pairs (a)")
            for plan in await _plans_of_every_reader(db):
                assert plan == [f"SEARCH pairs USING INDEX pairs_a_{round_} (a=?)"]
            for _ in range(3):
                await assert_uses_index(db, PAIR_QUERY, (1, 5), index=f"pairs_a_{round_}")
            await db.execute(f"DROP INDEX pairs_a_{round_}")
            for plan in await _plans_of_every_reader(db):
                assert plan == ["SCAN pairs"]
            for _ in range(3):
                with pytest.raises(QueryPlanError, match="indexes used: none"):
                    await assert_uses_index(db, PAIR_QUERY, (1, 5), index=f"pairs_a_{round_}")


async def test_plans_follow_ddl_and_analyze_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    async with Database(path, readers=3) as db:
        await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
        await db.execute("CREATE INDEX pairs_a ON pairs (a)")
        await db.analyze()  # creates sqlite_stat1; the next ANALYZE changes no schema
        assert set(map(tuple, await _plans_of_every_reader(db))) == {
            ("SEARCH pairs USING INDEX pairs_a (a=?)",)
        }

        _in_another_process(str(path), "CREATE INDEX pairs_b ON pairs (b)")
        _in_another_process(
            str(path),
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
            "INSERT INTO pairs SELECT i % 2, i FROM n",
        )
        before = await _plans_of_every_reader(db)  # every reader has loaded the new schema
        _in_another_process(str(path), "ANALYZE")

        fresh = db.driver.connect(str(path))
        try:
            expected = [detail for _, _, detail in plan_rows(fresh, PAIR_QUERY, (1, 5))]
        finally:
            fresh.close()
        assert before == [before[0]] * 6
        assert expected != before[0]  # the new statistics change the plan
        assert await _plans_of_every_reader(db) == [expected] * 6


async def test_explain_sync_follows_ddl_of_another_connection(db: Database) -> None:
    await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
    await db.execute("CREATE INDEX pairs_a ON pairs (a)")
    conn = db.driver.connect(db.path)
    try:
        assert explain_sync(conn, PAIR_QUERY, (1, 5)).indexes == ["pairs_a"]
        await db.execute("DROP INDEX pairs_a")
        assert explain_sync(conn, PAIR_QUERY, (1, 5)).indexes == []
    finally:
        conn.close()


async def test_explain_on_an_aiosqlite_connection_follows_ddl_of_another(db: Database) -> None:
    await db.execute("CREATE TABLE pairs (a INTEGER, b INTEGER)")
    await db.execute("CREATE INDEX pairs_a ON pairs (a)")
    async with aiosqlite.connect(db.path) as conn:
        assert (await explain(conn, PAIR_QUERY, (1, 5))).indexes == ["pairs_a"]
        await db.execute("DROP INDEX pairs_a")
        assert (await explain(conn, PAIR_QUERY, (1, 5))).indexes == []
