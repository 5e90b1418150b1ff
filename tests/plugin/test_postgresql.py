"""The plugin on PostgreSQL: options, a database per test cloned from a template, plans."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from abathur_memkit import Database
from pytest_abathur import Op, QueryPlanError, assert_no_full_scan, assert_uses_index, explain
from pytest_abathur.plan import parse_plan
from pytest_abathur.sync import SyncDatabase

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LATEST = (
    "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
    "ORDER BY version DESC LIMIT 1"
)
BY_TYPE = "SELECT * FROM memory_entries WHERE memory_type = ?"  # no index serves it
LATEST_INDEX = "idx_memory_namespace_key_version"


def _memkit_databases(server: str) -> list[str]:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'memkit\\_%' ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


# -- fixtures on PostgreSQL ----------------------------------------------------------------


def test_memkit_db_is_a_fresh_clone_of_one_template_per_test(
    suite: pytest.Pytester, pg_server: str
) -> None:
    suite.makepyfile(
        """
        seen = []
        TEMPLATES = ("SELECT datname FROM pg_database "
                     "WHERE datname LIKE 'memkit\\\\_template\\\\_%'")

        async def templates(db):
            return [r["datname"] for r in await db.fetchall(TEMPLATES)]

        async def test_first(memkit_db):
            assert memkit_db.dialect == "postgresql"
            assert memkit_db.path.startswith("postgresql://")
            assert await memkit_db.schema_version() > 0
            name = (await memkit_db.fetchone("SELECT current_database() AS d"))["d"]
            assert name.startswith("memkit_test_")
            await memkit_db.write(lambda conn: conn.execute(
                "INSERT INTO metrics (timestamp, metric_name, metric_value) "
                "VALUES ('2025-01-01', 'm', 1)"))
            seen.append((name, await templates(memkit_db)))

        async def test_second_sees_none_of_it(memkit_db):
            row = await memkit_db.fetchone("SELECT count(*) AS n FROM metrics")
            assert row["n"] == 0
            name = (await memkit_db.fetchone("SELECT current_database() AS d"))["d"]
            first, first_templates = seen[0]
            assert name != first
            gone = await memkit_db.fetchone(
                "SELECT count(*) AS n FROM pg_database WHERE datname = ?", (first,))
            assert gone["n"] == 0  # the first test's database was dropped after it
            assert len(first_templates) == 1
            assert await templates(memkit_db) == first_templates  # built once

        def test_sync(memkit_sync_db, memkit_db_path):
            assert memkit_sync_db.path == memkit_db_path
            assert memkit_sync_db.fetchall("SELECT count(*) AS n FROM memory_entries") == [
                {"n": 0}]
        """
    )
    before = _memkit_databases(pg_server)
    result = suite.runpytest_inprocess("-p", "no:randomly", f"--memkit-dsn={pg_server}")
    result.assert_outcomes(passed=3)
    assert _memkit_databases(pg_server) == before  # template and clones dropped


def test_ini_memkit_dsn_and_the_plan_assertions(
    pytester: pytest.Pytester, ini: Callable[..., None], pg_server: str
) -> None:
    ini(memkit_dsn=pg_server)
    pytester.makepyfile(
        f"""
        import pytest
        from pytest_abathur import QueryPlanError

        LATEST = {LATEST!r}

        async def test_plans(memkit_db, memkit_plan):
            assert memkit_db.dialect == "postgresql"
            await memkit_plan.assert_uses_index(
                memkit_db, LATEST, ("user:a", "k"), index="{LATEST_INDEX}")
            await memkit_plan.assert_no_full_scan(memkit_db, LATEST, ("user:a", "k"))
            with pytest.raises(QueryPlanError, match="full scan of memory_entries"):
                await memkit_plan.assert_no_full_scan(
                    memkit_db, {BY_TYPE!r}, ("semantic",))
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_memkit_latency_times_postgresql_without_vm_steps(
    suite: pytest.Pytester, pg_server: str
) -> None:
    suite.makepyfile(
        """
        async def test_timed(memkit_db, memkit_latency):
            stats = await memkit_latency(
                lambda: memkit_db.fetchone("SELECT count(*) AS n FROM metrics"), rounds=5)
            assert stats.rounds == 5 and stats.vm_steps is None and stats.driver is None
        """
    )
    result = suite.runpytest_inprocess(
        f"--memkit-dsn={pg_server}", "--memkit-autosave=no", "--memkit-warmup=0"
    )
    result.assert_outcomes(passed=1)


def test_query_guard_skips_on_postgresql_saying_why(suite: pytest.Pytester, pg_server: str) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_query_guard
        async def test_guarded(memkit_db):
            pass
        """
    )
    result = suite.runpytest_inprocess("-rs", f"--memkit-dsn={pg_server}")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*memkit_query_guard reads SQLite's trace*"])


def test_seeded_db_on_postgresql(suite: pytest.Pytester, pg_server: str) -> None:
    suite.makepyfile(
        """
        async def test_seeded(memkit_seeded_db):
            row = await memkit_seeded_db.fetchone("SELECT count(*) AS n FROM memory_entries")
            assert row["n"] == 3
            assert await memkit_seeded_db.memory.get_memory(
                "app:abathur:config", "memory_lifecycle_policies") is not None
        """
    )
    suite.runpytest_inprocess(f"--memkit-dsn={pg_server}").assert_outcomes(passed=1)


def test_factory_fixtures_clone_on_postgresql(suite: pytest.Pytester, pg_server: str) -> None:
    suite.makepyfile(
        """
        from pytest_abathur import factories

        other_template = factories.memkit_template(scope="module")
        other_db = factories.memkit_db(template="other_template")
        other_sync_db = factories.memkit_sync_db(template="other_template")

        async def test_async(other_db, memkit_db):
            assert other_db.dialect == "postgresql" and other_db.path != memkit_db.path
            assert await other_db.schema_version() > 0

        def test_sync(other_sync_db):
            assert other_sync_db.path.startswith("postgresql://")
        """
    )
    before = _memkit_databases(pg_server)
    suite.runpytest_inprocess(f"--memkit-dsn={pg_server}").assert_outcomes(passed=2)
    assert _memkit_databases(pg_server) == before


# -- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memkit-engine=oracle"], "memkit_engine must be one of sqlite, postgresql*"),
        (["--memkit-dsn=host=localhost"], "memkit_dsn must be a postgresql:// *"),
    ],
)
def test_bad_engine_options_are_usage_errors(
    suite: pytest.Pytester, args: list[str], message: str
) -> None:
    suite.makepyfile("def test_nothing(): pass")
    result = suite.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_sqlite_stays_the_default_and_wins_when_asked(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    ini(memkit_dsn="postgresql://nobody@unreachable.invalid/db")
    pytester.makepyfile(
        """
        async def test_engine(memkit_db):
            assert memkit_db.dialect == "sqlite"
        """
    )
    pytester.runpytest_inprocess("--memkit-engine=sqlite").assert_outcomes(passed=1)


def test_engine_postgresql_without_pgserver_skips_saying_why(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("pgserver", "pgserver.postgres_server"):
        monkeypatch.setitem(sys.modules, name, None)
    suite.makepyfile("async def test_db(memkit_db): pass")
    result = suite.runpytest_inprocess("-rs", "--memkit-engine=postgresql")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*starts a server with pgserver, which is not installed*"])


def test_engine_postgresql_starts_a_server(suite: pytest.Pytester) -> None:
    pytest.importorskip("pgserver", reason="the plugin starts its server with pgserver")
    suite.makepyfile(
        """
        async def test_db(memkit_db):
            assert memkit_db.dialect == "postgresql"
            assert await memkit_db.schema_version() > 0
        """
    )
    suite.runpytest_inprocess("--memkit-engine=postgresql").assert_outcomes(passed=1)


# -- plan assertions on PostgreSQL ------------------------------------------------------------


@pytest.fixture
async def pg_db(pg_memkit_dsn: str) -> AsyncIterator[Database]:
    async with Database(pg_memkit_dsn) as db:
        yield db


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(tmp_path / "plans.db") as db:
        yield db


async def test_assert_uses_index_passes_for_an_indexed_lookup_on_an_empty_table(
    pg_db: Database,
) -> None:
    plan = await assert_uses_index(
        pg_db, LATEST, ("user:a", "k"), index=LATEST_INDEX, table="memory_entries"
    )
    (node,) = plan.index_uses(LATEST_INDEX)
    assert node.op is Op.SEARCH and node.table == "memory_entries"
    assert "namespace = 'user:a'" in (node.constraints or "")
    assert not plan.full_scans()


async def test_assert_uses_index_fails_on_a_seq_scan_as_on_sqlite(
    pg_db: Database, sqlite_db: Database
) -> None:
    messages = []
    for db in (sqlite_db, pg_db):
        with pytest.raises(QueryPlanError) as info:
            await assert_uses_index(
                db, BY_TYPE, ("semantic",), index=LATEST_INDEX, table="memory_entries"
            )
        messages.append(str(info.value).splitlines())
    sqlite_lines, pg_lines = messages
    title = (
        f"memkit: the plan does not use index {LATEST_INDEX} on memory_entries (indexes used: none)"
    )
    assert pg_lines[0] == sqlite_lines[0] == title
    assert (
        pg_lines[1:5]
        == sqlite_lines[1:5]
        == [f"  SQL:    {BY_TYPE}", "  params: ('semantic',)", "  plan:", "    QUERY PLAN"]
    )
    assert pg_lines[5:] == ["    `--Seq Scan on memory_entries   <-- full table scan"]


async def test_a_walk_of_a_whole_index_is_a_full_scan(pg_db: Database) -> None:
    # With sequential scans off, count(*) reads a whole index into a bitmap.
    with pytest.raises(QueryPlanError, match="full scan of memory_entries") as info:
        await assert_no_full_scan(pg_db, "SELECT count(*) FROM memory_entries")
    assert "Bitmap Index Scan on" in str(info.value)
    assert "<-- full scan of index" in str(info.value)


async def test_explain_leaves_seqscan_on_for_the_database(pg_db: Database) -> None:
    await explain(pg_db, BY_TYPE, ("semantic",))
    setting = await pg_db.fetchone("SELECT current_setting('enable_seqscan') AS s")
    assert setting == {"s": "on"}
    assert await pg_db.query_plan("SELECT count(*) FROM memory_entries") == [
        (1, 0, "Aggregate"),
        (2, 1, "Seq Scan on memory_entries"),
    ]


def test_explain_reads_a_write_through_the_sync_facade(pg_memkit_dsn: str) -> None:
    with SyncDatabase.open(pg_memkit_dsn) as facade:
        plan = facade.run(
            explain(
                facade,
                "UPDATE memory_entries SET is_deleted = 1 WHERE namespace = ? AND key = ?",
                ("user:a", "k"),
            )
        )
    assert [n.index for n in plan.accesses()] == [LATEST_INDEX]
    assert not plan.full_scans()


# -- parsing PostgreSQL's steps -------------------------------------------------------------


def test_pg_steps_parse_into_plan_nodes() -> None:
    rows = [
        (1, 0, "Nested Loop"),
        (2, 1, "Index Only Scan using idx_a on a (Index Cond: (x = 1))"),
        (3, 1, "Bitmap Heap Scan on b"),
        (4, 3, "BitmapOr"),
        (5, 4, "Bitmap Index Scan on idx_b1 (Index Cond: (y = a.x))"),
        (6, 4, "Bitmap Index Scan on idx_b2"),
        (7, 1, "Index Scan using idx_c on c"),
        (8, 1, "Tid Scan on d"),
        (9, 1, "Seq Scan on pg_class"),
        (10, 1, "CTE Scan"),
    ]
    plan = parse_plan(rows, dialect="postgresql")
    a, b1, b2, c, d, catalog = plan.accesses()
    assert (a.op, a.index, a.table, a.covering, a.constraints) == (
        Op.SEARCH,
        "idx_a",
        "a",
        True,
        "(x = 1)",
    )
    assert (b1.op, b1.index, b1.table, b1.bitmap) == (Op.SEARCH, "idx_b1", "b", True)
    assert (b2.op, b2.table, b2.full_scan_reason) == (Op.SCAN, "b", "full scan of index idx_b2")
    assert c.full_scan_reason == "full scan in the order of index idx_c"
    assert d.op is Op.SEARCH and d.rowid and not d.is_full_scan
    assert not catalog.is_full_scan  # PostgreSQL's own tables, as sqlite_* on SQLite
    assert [n.target for n in plan.full_scans()] == ["b", "c"]
    assert plan.full_scans(["a"]) == []
    assert plan.indexes == ["idx_a", "idx_b1", "idx_b2", "idx_c"]
    assert [n.op for n in plan.nodes if not n.is_access] == [Op.OTHER] * 4


def test_readme_documents_the_engine_options() -> None:
    from pytest_abathur.plugin import _INI_OPTIONS

    readme = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    options = readme.split("### Options", 1)[1].split("\n### ", 1)[0]
    for name, flag, *_ in _INI_OPTIONS:
        if name in ("memkit_engine", "memkit_dsn"):
            assert f"| `{name}` | `{flag} " in options, name
    assert "### Options" in readme and "**On PostgreSQL.**" in readme
