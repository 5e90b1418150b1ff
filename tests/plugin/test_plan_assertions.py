"""memkit_plan and memkit_query_guard, passing and failing, as a user's suite sees them."""

from __future__ import annotations

import pytest

LOOKUP = (
    "SELECT * FROM memory_entries WHERE namespace = ? AND key = ? AND is_deleted = 0 "
    "ORDER BY version DESC LIMIT 1"
)


def test_assert_uses_index_passes_on_the_named_index(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        f"""
        async def test_lookup(memkit_seeded_db, memkit_plan):
            plan = await memkit_plan.assert_uses_index(
                memkit_seeded_db, {LOOKUP!r}, ("user:a:prefs", "theme"),
                index="idx_memory_namespace_key_version")
            assert plan.indexes == ["idx_memory_namespace_key_version"]
            await memkit_plan.assert_no_full_scan(memkit_seeded_db, {LOOKUP!r}, ("a:b", "k"))
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_scan_fails_with_sql_params_and_plan(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        async def test_scan(memkit_db, memkit_plan):
            await memkit_plan.assert_uses_index(
                memkit_db, "SELECT * FROM memory_entries WHERE value = ?", ('"dark"',),
                index="idx_memory_namespace_key_version")
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memkit: the plan does not use index idx_memory_namespace_key_version*",
            "*SQL:    SELECT * FROM memory_entries WHERE value = ?",
            "*params: ('\"dark\"',)",
            "*QUERY PLAN",
            "*`--SCAN memory_entries   <-- full table scan",
        ]
    )


def test_an_index_used_only_to_scan_does_not_count(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        async def test_count(memkit_db, memkit_plan):
            plan = await memkit_plan.explain(memkit_db, "SELECT count(*) FROM audit")
            (index,) = plan.indexes
            await memkit_plan.assert_uses_index(
                memkit_db, "SELECT count(*) FROM audit", index=index)
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*is used only to scan (every entry is read), not to search*"])


def test_assert_no_full_scan_named_tables(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        SQL = ("SELECT s.id FROM sessions s JOIN memory_entries m ON m.created_by = s.id "
               "WHERE m.namespace = ? AND m.key = ?")

        async def test_other_table_scanned_only(memkit_db, memkit_plan):
            plan = await memkit_plan.explain(memkit_db, SQL, ("n:x", "k"))
            assert [n.table for n in plan.full_scans()] == ["sessions"] or \\
                   [n.table for n in plan.full_scans()] == []
            await memkit_plan.assert_no_full_scan(
                memkit_db, SQL, ("n:x", "k"), tables=["memory_entries"])

        async def test_alias_named_table_fails(memkit_db, memkit_plan):
            await memkit_plan.assert_no_full_scan(
                memkit_db, "SELECT * FROM audit AS a WHERE a.result = ?", ("ok",),
                tables=["audit"])
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*memkit: full scan of audit*", "*`--SCAN a   <-- full table scan"]
    )


def test_plan_assertions_on_plain_connections(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import sqlite3, pytest
        from pytest_abathur import QueryPlanError, assert_uses_index

        async def test_sqlite3(memkit_plan):
            conn = sqlite3.connect(":memory:")
            try:
                conn.execute("CREATE TABLE t (a, b)")
                conn.execute("CREATE INDEX t_a ON t (a)")
                await assert_uses_index(conn, "SELECT * FROM t WHERE a = ?", (1,), index="t_a")
                with pytest.raises(QueryPlanError):
                    await memkit_plan.assert_no_full_scan(conn, "SELECT * FROM t WHERE b = 1")
                plan = memkit_plan.explain_sync(conn, "SELECT * FROM t WHERE a = 1")
                assert plan.indexes == ["t_a"]
            finally:
                conn.close()
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=1)


def test_query_guard_catches_a_scan_in_async_with(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        async def test_guarded(memkit_seeded_db, memkit_query_guard):
            db = memkit_seeded_db
            async with memkit_query_guard(db) as guard:
                await db.memory.get_memory("app:abathur:config", "memory_lifecycle_policies")
                await db.fetchall("SELECT * FROM audit WHERE result = ?", ("ok",))
            raise AssertionError("the guard should have failed")
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memkit: the query guard saw 1 statement(s) that fully scan audit",
            "*SQL:    SELECT * FROM audit WHERE result = 'ok'",
            "*`--SCAN audit   <-- full table scan",
            '*memkit_allow_scan("audit", reason="...")',
        ]
    )
    assert "the guard should have failed" not in result.stdout.str()


def test_query_guard_passes_indexed_code_and_records_statements(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        async def test_guarded(memkit_seeded_db, memkit_query_guard):
            db = memkit_seeded_db
            async with memkit_query_guard(db) as guard:
                m = await db.memory.get_memory("app:abathur:config", "memory_lifecycle_policies")
                await db.memory.add_memory("user:alice", "k", {"v": 1}, "semantic", "alice")
            assert m is not None
            assert any("memory_entries" in s for s in guard.statements)
            assert guard.report.explained >= 1 and not guard.report.violations

        async def test_sync_with_form(memkit_db, memkit_query_guard):
            with memkit_query_guard(memkit_db) as guard:
                await memkit_db.fetchall("SELECT * FROM sessions WHERE id = ?", ("s1",))
            assert guard.report.explained == 1
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=2)


def test_sync_with_form_fails_on_scan(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        async def test_guarded(memkit_db, memkit_query_guard):
            with memkit_query_guard(memkit_db):
                await memkit_db.fetchall("SELECT * FROM document_index WHERE title = 'x'")
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fully scan document_index*"])


def test_allow_scan_marker_needs_a_reason_and_then_allows(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_allow_scan("audit", reason="nightly report")
        async def test_allowed(memkit_db, memkit_query_guard):
            async with memkit_query_guard(memkit_db) as guard:
                await memkit_db.fetchall("SELECT * FROM audit WHERE result = 'x'")
            assert [v.scans[0].table for v in guard.report.allowed] == ["audit"]

        @pytest.mark.memkit_allow_scan("audit", reason="nightly report")
        async def test_other_table_still_fails(memkit_db, memkit_query_guard):
            async with memkit_query_guard(memkit_db):
                await memkit_db.fetchall("SELECT * FROM tasks WHERE prompt = 'x'")

        @pytest.mark.memkit_allow_scan("audit")
        async def test_no_reason(memkit_db, memkit_query_guard):
            pass
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*memkit_allow_scan needs table names and a reason*"])


def test_query_guard_marker_guards_the_whole_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_query_guard
        async def test_scans(memkit_seeded_db):
            await memkit_seeded_db.fetchall("SELECT * FROM agents WHERE model = 'm'")

        @pytest.mark.memkit_query_guard
        async def test_clean(memkit_seeded_db):
            await memkit_seeded_db.memory.get_memory("app:abathur:defaults",
                                                     "user_preference_template")

        @pytest.mark.memkit_query_guard
        @pytest.mark.memkit_allow_scan("agents", reason="tiny table in this test")
        async def test_allowed(memkit_db):
            await memkit_db.fetchall("SELECT * FROM agents WHERE model = 'm'")

        @pytest.mark.memkit_query_guard
        def test_without_a_memkit_database():
            pass
        """
    )
    result = suite.runpytest_inprocess()
    # The scan fails the test itself (FAILED), not its teardown (ERROR).
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*_ test_scans _*", "*fully scan agents*"])
    result.stdout.fnmatch_lines(["FAILED *::test_scans*"])
    assert "at teardown" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*the memkit_query_guard marker guards memkit_db*"])


def test_query_guard_marker_leaves_the_tests_own_failure_alone(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_query_guard
        async def test_scans_then_fails(memkit_db):
            await memkit_db.fetchall("SELECT * FROM agents WHERE model = 'm'")
            assert 1 == 2, "the test's own failure"
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the test's own failure*"])
    assert "QueryGuardError" not in result.stdout.str()


def test_guard_on_memory_database_with_async_with(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest
        from pytest_abathur import QueryGuard, QueryGuardError
        from pytest_abathur.factories import database

        async def test_memory():
            async with database(":memory:") as db:
                with pytest.raises(QueryGuardError):
                    async with QueryGuard(db):
                        await db.fetchall("SELECT * FROM metrics WHERE metric_value > 1")
                with pytest.raises(RuntimeError, match="trace is not installed"):
                    with QueryGuard(db):
                        pass
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=1)
