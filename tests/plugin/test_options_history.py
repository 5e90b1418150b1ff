"""Options as pytest-benchmark users expect them: every ini option on the command
line, gate modes, fixture factories, run history, comparison and histograms."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

MEASURE = """
import os

async def test_lookup(memkit_db, memkit_latency):
    stats = await memkit_latency(lambda: memkit_db.fetchone("SELECT 1"))
    print("ROUNDS", stats.rounds, "WARMUP", stats.warmup)
"""


def _runs(root: Path) -> list[Path]:
    return sorted((root / ".memkit" / "runs").glob("*/*.json"))


def test_every_ini_option_has_a_command_line_flag_that_wins(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    ini(memkit_rounds="7", memkit_warmup="1", memkit_p99_ms="0.000001")
    pytester.makepyfile(MEASURE)
    failed = pytester.runpytest_inprocess("-s")
    failed.assert_outcomes(failed=1)  # the ini gate
    result = pytester.runpytest_inprocess(
        "-s", "--memkit-rounds=5", "--memkit-warmup=0", "--memkit-p99-ms=10000"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ROUNDS 5 WARMUP 0*"])
    help_text = pytester.runpytest_inprocess("--help").stdout.str()
    for flag in (
        "--memkit-baseline", "--memkit-gates", "--memkit-rounds", "--memkit-warmup",
        "--memkit-vm-rounds", "--memkit-p50-ms", "--memkit-p95-ms", "--memkit-p99-ms",
        "--memkit-mean-ms", "--memkit-max-ms", "--memkit-max-regression", "--memkit-alpha",
        "--memkit-seed-file", "--memkit-storage", "--memkit-autosave",
        "--memkit-compare", "--memkit-compare-fail", "--memkit-histogram",
    ):
        assert flag in help_text, flag


def test_seed_file_from_the_command_line(suite: pytest.Pytester) -> None:
    suite.makefile(
        ".json",
        extra=json.dumps([{"namespace": "user:z:prefs", "key": "k", "value": 1,
                           "memory_type": "semantic", "created_by": "cli"}]),
    )
    suite.makepyfile(
        """
        async def test_seeded(memkit_seeded_db):
            assert (await memkit_seeded_db.memory.get_memory("user:z:prefs", "k"))["value"] == 1
        """
    )
    suite.runpytest_inprocess("--memkit-seed-file", "extra.json").assert_outcomes(passed=1)
    suite.runpytest_inprocess().assert_outcomes(failed=1)


def test_gates_warn_reports_without_failing(suite: pytest.Pytester) -> None:
    suite.makepyfile(MEASURE)
    result = suite.runpytest_inprocess("--memkit-gates=warn", "--memkit-p99-ms=0.000001",
                                       "--memkit-rounds=5")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*LatencyGateWarning: memkit latency gate failed*",
                                 "test_lookup * 5 * WARN"])


def test_gates_off_runs_each_function_once_untimed(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        calls = []

        async def test_lookup(memkit_db, memkit_latency):
            async def op():
                calls.append(1)
                await memkit_db.fetchone("SELECT 1")
            stats = await memkit_latency(op, rounds=200, warmup=20, p99_ms=0.000001)
            assert len(calls) == 1 and stats.rounds == 1
        """
    )
    result = suite.runpytest_inprocess("--memkit-gates=off")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["memkit: 1 measurement(s) ran once, untimed*"])
    assert _runs(suite.path) == []  # nothing measured, nothing saved


def test_bad_gate_mode_is_a_usage_error(suite: pytest.Pytester) -> None:
    suite.makepyfile(MEASURE)
    result = suite.runpytest_inprocess("--memkit-gates=loud")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*memkit_gates must be one of fail, warn, vm, off*"])


def test_runs_are_saved_with_machine_info_and_compared(suite: pytest.Pytester) -> None:
    suite.makepyfile(MEASURE)
    suite.runpytest_inprocess("--memkit-rounds=5").assert_outcomes(passed=1)
    (first,) = _runs(suite.path)
    assert first.name.startswith("0001_")
    doc = json.loads(first.read_text())
    info = doc["machine_info"]
    for key in ("node", "processor", "machine", "python_implementation", "python_version",
                "release", "system", "cpu"):
        assert key in info, key
    assert doc["benchmarks"][0]["fullname"].endswith("test_lookup")

    result = suite.runpytest_inprocess("--memkit-rounds=5", "--memkit-compare")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["memkit: compared with *0001_*.json", "test_lookup * p50 *"])
    assert [p.name[:4] for p in _runs(suite.path)] == ["0001", "0002"]

    by_number = suite.runpytest_inprocess("--memkit-rounds=5", "--memkit-compare=2",
                                          "--memkit-autosave=no")
    by_number.stdout.fnmatch_lines(["memkit: compared with *0002_*.json"])
    assert len(_runs(suite.path)) == 2  # autosave off


def test_compare_fail_fails_the_session_on_a_regression(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(
        """
        import os, time

        async def test_lookup(memkit_db, memkit_latency):
            delay = float(os.environ.get("DELAY", "0"))
            async def op():
                time.sleep(delay)
            await memkit_latency(op, rounds=5, warmup=0)
        """
    )
    suite.runpytest_inprocess().assert_outcomes(passed=1)
    monkeypatch.setenv("DELAY", "0.02")  # 20 ms a call against microseconds
    result = suite.runpytest_inprocess("--memkit-compare-fail=p50:10%")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["memkit: performance regressed against 0001_*", "  test_lookup: p50 * (+*% > p50:10%)"]
    )
    # Within the limit: an absolute limit of 10 s passes.
    ok = suite.runpytest_inprocess("--memkit-compare-fail=p50:10000")
    assert ok.ret == pytest.ExitCode.OK


def test_compare_fail_rejects_unknown_fields(suite: pytest.Pytester) -> None:
    suite.makepyfile(MEASURE)
    result = suite.runpytest_inprocess("--memkit-compare-fail=median:5%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected FIELD:N% or FIELD:N (ms)*p50*"])


def test_compare_without_saved_runs_says_so(suite: pytest.Pytester) -> None:
    suite.makepyfile(MEASURE)
    result = suite.runpytest_inprocess("--memkit-rounds=3", "--memkit-compare")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["memkit: cannot compare: no saved memkit runs in *"])


def test_histogram_is_written_on_request(suite: pytest.Pytester) -> None:
    pytest.importorskip("matplotlib")
    suite.makepyfile(MEASURE)
    result = suite.runpytest_inprocess("--memkit-rounds=20", "--memkit-histogram=plots/h")
    result.assert_outcomes(passed=1)
    (png,) = (suite.path / "plots").glob("h-*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result.stdout.fnmatch_lines(["memkit: 1 histogram(s) written: *plots/h-*.png"])


def test_histogram_without_matplotlib_says_what_to_install(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    suite.makepyfile(MEASURE)
    result = suite.runpytest_inprocess("--memkit-rounds=3", "--memkit-histogram")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["memkit: --memkit-histogram needs matplotlib*"])
    assert not list(suite.path.glob("memkit-histogram*"))


def test_fixture_factories(pytester: pytest.Pytester, ini: Callable[..., None]) -> None:
    ini(mode="strict")
    pytester.mkdir("seeds")
    (pytester.path / "seeds" / "team.json").write_text(json.dumps(
        {"sessions": [{"session_id": "s1", "app_name": "app", "user_id": "u1"}],
         "memories": [{"namespace": "user:u1:prefs", "key": "theme", "value": "dark",
                       "memory_type": "semantic", "created_by": "seed"}]}))
    pytester.makeconftest(
        """
        from pytest_abathur import factories

        team_template = factories.memkit_template(seed=["initial", "seeds/team.json"])
        team_db = factories.memkit_db(template="team_template")
        extra_db = factories.memkit_db(seed={"memories": [
            {"namespace": "user:u2:prefs", "key": "k", "value": 2,
             "memory_type": "semantic", "created_by": "t"}]})
        team_sync_db = factories.memkit_sync_db(template="team_template")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_team(team_db, memkit_latency):
            assert (await team_db.memory.get_memory("user:u1:prefs", "theme"))["value"] == "dark"
            assert (await team_db.sessions.get_session("s1"))["user_id"] == "u1"
            assert team_db.path.endswith("team_db.db")
            stats = await memkit_latency(lambda: team_db.fetchone("SELECT 1"), rounds=3)
            assert stats.vm_steps is not None  # counted on the factory's database

        @pytest.mark.asyncio
        async def test_two_at_once(team_db, extra_db):
            assert team_db.path != extra_db.path
            assert await extra_db.memory.get_memory("user:u1:prefs", "theme") is None
            assert (await extra_db.memory.get_memory("user:u2:prefs", "k"))["value"] == 2

        @pytest.mark.asyncio
        async def test_fresh_per_test(team_db):
            rows = await team_db.fetchall("SELECT count(*) AS n FROM memory_entries")
            assert rows == [{"n": 4}]  # three initial + the team seed, nothing from before
            await team_db.memory.add_memory("user:u1:prefs", "x", 1, "semantic", "t")

        def test_sync(team_sync_db):
            assert team_sync_db.memory.get_memory("user:u1:prefs", "theme")["value"] == "dark"
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=4)


def test_template_factory_from_an_existing_database_leaves_it_untouched(
    pytester: pytest.Pytester, ini: Callable[..., None]
) -> None:
    import sqlite3

    ini()
    source = pytester.path / "snapshot.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE legacy (x)")
    conn.execute("INSERT INTO legacy VALUES (42)")
    conn.commit()
    conn.close()
    before = source.read_bytes()
    pytester.makeconftest(
        """
        from pytest_abathur import factories

        snap_template = factories.memkit_template(source="snapshot.db")
        snap_db = factories.memkit_db(template="snap_template")
        """
    )
    pytester.makepyfile(
        """
        async def test_snapshot(snap_db):
            assert (await snap_db.fetchone("SELECT x FROM legacy"))["x"] == 42
            assert await snap_db.schema_version() > 0  # migrated copy
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=1)
    assert source.read_bytes() == before
