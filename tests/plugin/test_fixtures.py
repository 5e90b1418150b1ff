"""The fixtures, run inside throwaway suites (pytester), in auto and strict mode."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest


def test_memkit_db_is_fresh_initialized_wal_in_tmp_path(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import os
        seen = []

        async def test_first(memkit_db, tmp_path):
            assert (await memkit_db.fetchone("PRAGMA journal_mode"))["journal_mode"] == "wal"
            assert await memkit_db.schema_version() > 0
            assert os.path.dirname(memkit_db.path) == str(tmp_path)
            tables = {r["name"] for r in await memkit_db.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert {"sessions", "memory_entries", "audit"} <= tables
            await memkit_db.execute(
                "INSERT INTO metrics (timestamp, metric_name, metric_value) "
                "VALUES ('2025-01-01', 'm', 1)")
            seen.append(memkit_db.path)

        async def test_second_sees_none_of_it(memkit_db):
            row = await memkit_db.fetchone("SELECT count(*) AS n FROM metrics")
            assert row["n"] == 0
            assert memkit_db.path != seen[0]
            # the first test's database was closed: its WAL was checkpointed away
            assert not os.path.exists(seen[0] + "-wal")
        """
    )
    result = suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_memkit_db_works_in_strict_mode_and_sync_tests(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    ini(mode="strict")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_async(memkit_db):
            assert await memkit_db.schema_version() > 0

        def test_sync(memkit_sync_db):
            rows = memkit_sync_db.fetchall("SELECT count(*) AS n FROM memory_entries")
            assert rows == [{"n": 0}]
            assert memkit_sync_db.path.endswith("memkit.db")

        @pytest.mark.memkit_seed("initial")
        def test_sync_seeded(memkit_sync_db):
            rows = memkit_sync_db.fetchall("SELECT count(*) AS n FROM memory_entries")
            assert rows == [{"n": 3}]  # seeded once from the template, not twice

        def test_path_only(memkit_db_path):
            import sqlite3
            conn = sqlite3.connect(memkit_db_path)
            try:
                assert conn.execute("PRAGMA user_version").fetchone()[0] > 0
            finally:
                conn.close()
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=4)


def test_template_is_built_once_and_copied(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import hashlib, pytest
        paths = set()

        @pytest.mark.parametrize("i", range(3))
        def test_clone(memkit_template, memkit_db_path, i):
            paths.add(memkit_template)
            assert memkit_db_path.read_bytes() == memkit_template.read_bytes()
            assert len(paths) == 1
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=3)


def test_seeded_db_has_the_initial_memories(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        async def test_seeded(memkit_seeded_db, memkit_db):
            assert memkit_seeded_db is memkit_db  # one database per test
            for ns, key in [
                ("app:abathur:agent_instructions", "default_workflow"),
                ("app:abathur:config", "memory_lifecycle_policies"),
                ("app:abathur:defaults", "user_preference_template"),
            ]:
                memory = await memkit_seeded_db.memory.get_memory(ns, key)
                assert memory is not None, (ns, key)
            config = await memkit_seeded_db.memory.get_memory(
                "app:abathur:config", "memory_lifecycle_policies")
            assert config["value"]["episodic_ttl_days"] == 90
            assert config["memory_type"] == "procedural"

        async def test_unseeded(memkit_db):
            row = await memkit_db.fetchone("SELECT count(*) AS n FROM memory_entries")
            assert row["n"] == 0
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=2)


def test_seed_files_from_marker_and_ini(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    ini(memkit_seed_files="seeds/everyone.json")
    pytester.mkdir("seeds")
    (pytester.path / "seeds" / "everyone.json").write_text(
        json.dumps(
            [
                {
                    "namespace": "project:demo",
                    "key": "owner",
                    "value": {"name": "ada"},
                    "memory_type": "semantic",
                    "created_by": "seed",
                }
            ]
        )
    )
    (pytester.path / "extra.json").write_text(
        json.dumps(
            {
                "memories": [
                    {
                        "namespace": "user:alice:preferences",
                        "key": "theme",
                        "value": "dark",
                        "memory_type": "semantic",
                        "created_by": "seed",
                        "metadata": {"source": "fixture"},
                    }
                ]
            }
        )
    )
    (pytester.path / "broken.json").write_text(json.dumps({"memories": [{"namespace": "x"}]}))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.memkit_seed("extra.json")
        async def test_marker_and_ini(memkit_seeded_db):
            m = await memkit_seeded_db.memory.get_memory("user:alice:preferences", "theme")
            assert m["value"] == "dark"
            assert (await memkit_seeded_db.memory.get_memory("project:demo", "owner")) is not None
            assert (await memkit_seeded_db.memory.get_memory(
                "app:abathur:config", "memory_lifecycle_policies")) is not None

        async def test_ini_only(memkit_seeded_db):
            assert (await memkit_seeded_db.memory.get_memory(
                "user:alice:preferences", "theme")) is None
            assert (await memkit_seeded_db.memory.get_memory("project:demo", "owner")) is not None

        @pytest.mark.memkit_seed("broken.json")
        async def test_broken_seed(memkit_seeded_db):
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*broken.json: memories[[]0[]] lacks*"])


def test_memkit_embedder_is_deterministic(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        async def test_embed(memkit_embedder):
            a = await memkit_embedder.embed_documents(["session memory", "other"])
            b = await memkit_embedder.embed_documents(["session memory", "other"])
            assert a.shape == (2, memkit_embedder.dimensions)
            assert (a == b).all()
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=1)


def test_factories_for_custom_setups(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        from pytest_abathur import factories

        async def test_async_factory(tmp_path):
            async with factories.database(tmp_path / "a.db", seed="initial") as db:
                rows = await db.fetchall("SELECT namespace FROM memory_entries ORDER BY 1")
                assert [r["namespace"] for r in rows] == [
                    "app:abathur:agent_instructions", "app:abathur:config",
                    "app:abathur:defaults"]
            assert db._writer is None

        async def test_memory_factory():
            async with factories.database() as db:
                assert db.path == ":memory:"

        def test_sync_factory(tmp_path):
            with factories.sync_database(tmp_path / "b.db", seed=["initial"]) as db:
                memory = db.memory.get_memory("app:abathur:defaults", "user_preference_template")
                assert memory["value"]["code_comments"] is True
                assert db.run(db.db.schema_version()) > 0

        def test_embedder_factory():
            emb = factories.embedder("hashing", dimensions=64)
            assert emb.dimensions == 64

        async def test_database_with_embedder(tmp_path, memkit_embedder):
            async with factories.database(tmp_path / "e.db", embedder=memkit_embedder) as db:
                assert db.embedder is memkit_embedder

        async def test_sessions_in_a_seed(tmp_path):
            seed = {
                "sessions": [{"session_id": "s1", "app_name": "app", "user_id": "alice"}],
                "memories": [{"namespace": "session:s1", "key": "k", "value": [1],
                              "memory_type": "episodic", "created_by": "alice"}],
            }
            async with factories.database(tmp_path / "s.db", seed=seed) as db:
                session = await db.sessions.get_session("s1")
                assert session["user_id"] == "alice"
                assert (await db.memory.get_memory("session:s1", "k"))["value"] == [1]
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=6)


def test_async_fixture_without_asyncio_marker_in_strict_mode_is_not_silently_passed(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    # Strict mode, no marker: pytest-asyncio does not run the test; it must not pass
    # as if it had (it is reported as skipped/failed by pytest, never as a pass).
    ini(mode="strict")
    pytester.makepyfile(
        """
        async def test_forgot_marker(memkit_db):
            assert False
        """
    )
    result = pytester.runpytest_inprocess()
    assert result.parseoutcomes().get("passed", 0) == 0


def test_sync_fixtures_work_without_pytest_asyncio(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        def test_sync(memkit_sync_db, memkit_plan):
            plan = memkit_sync_db.run(memkit_plan.explain(
                memkit_sync_db, "SELECT * FROM sessions WHERE id = ?", ("s",)))
            assert not plan.full_scans()
        """
    )
    result = suite.runpytest_inprocess("-p", "no:asyncio", "-o", "asyncio_mode=")
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pytest_abathur.plugin\n"
        "heavy = [m for m in ('abathur_memkit', 'aiosqlite', 'numpy', 'sqlean', 'psycopg', "
        "'pgserver') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
