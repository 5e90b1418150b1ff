"""The CLI and the analysis toolkit on a PostgreSQL DSN: init, validate, stats, loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from abathur_memkit import Database, analysis
from abathur_memkit.analysis.report import key_numbers
from abathur_memkit.cli import main
from abathur_memkit.transfer import copy_database


def _validate(dsn: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict]]:
    capsys.readouterr()
    code = main(["validate", dsn, "--json"])
    report = json.loads(capsys.readouterr().out)
    return code, {check["name"]: check for check in report["checks"]}


def test_init_then_validate_a_dsn(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", pg_dsn]) == 0
    assert "applied migrations [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in capsys.readouterr().out
    assert main(["init", pg_dsn]) == 0
    assert "already up to date" in capsys.readouterr().out
    code, checks = _validate(pg_dsn, capsys)
    assert code == 0
    assert not [name for name in checks if name.startswith(("pragma:", "wal:"))]
    assert {"integrity_check", "constraints", "indexes_valid", "index_count",
            "jsonb:memory_entries.value", "lookup:memory_by_namespace_key",
            "explain:idx_memory_namespace_key_version"} <= set(checks)
    assert all(check["passed"] for check in checks.values())
    plan = checks["explain:idx_audit_agent"]["detail"]
    assert "Index Scan using idx_audit_agent on audit" in plan
    # memory_entries' primary key is the seeds' index (migration 008), reported by name.
    assert "using idx_memory_entries_pk on memory_entries" in checks[
        "explain:idx_memory_entries_pk"]["detail"]


def test_validate_names_a_dropped_index(pg_memkit_dsn: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(pg_memkit_dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX idx_audit_agent")
    code, checks = _validate(pg_memkit_dsn, capsys)
    assert code == 1
    assert not checks["index_count"]["passed"]
    assert "missing: idx_audit_agent" in checks["index_count"]["detail"]
    assert not checks["explain:idx_audit_agent"]["passed"]
    assert checks["explain:idx_audit_task"]["passed"]


def test_validate_fails_a_constraint_never_validated(pg_memkit_dsn: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(pg_memkit_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE metrics ADD CONSTRAINT probe CHECK (metric_value < 1e9) "
                     "NOT VALID")
    code, checks = _validate(pg_memkit_dsn, capsys)
    assert code == 1
    assert "1 not validated" in checks["constraints"]["detail"]
    assert "constraint probe on metrics is not validated" in checks["integrity_check"]["detail"]


async def test_database_validate_dispatches_by_engine(pg_memkit_dsn: str) -> None:
    with_password = pg_memkit_dsn.replace("postgres:@", "postgres:s3cret@")  # trust auth
    assert "s3cret" in with_password
    async with Database(with_password, read_only=True) as db:
        report = await db.validate()
    assert report["ok"] and report["engine"] == "postgresql"
    assert "dbname=" in report["path"] and "s3cret" not in report["path"]


@pytest.mark.parametrize("argv", [
    ["backup", "{dsn}", "copy.db"],
    ["restore", "backup.db", "{dsn}"],
    ["archive", "{dsn}", "--older-than", "90d"],
    ["doctor", "{dsn}"],
])
def test_sqlite_only_commands_refuse_a_dsn(argv: list[str], capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    dsn = "postgresql://memkit:secret@localhost:1/agents"
    (tmp_path / "backup.db").write_bytes(b"")
    args = [a.format(dsn=dsn) if "{" in a else str(tmp_path / a) if "." in a else a
            for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"memkit {argv[0]}" in err and "works on SQLite files" in err


async def _populated(tmp_path: Path, dsn: str) -> Path:
    source = tmp_path / "src.db"
    async with Database(source) as db:
        await db.sessions.create_session("s1", "app", "alice")
        await db.sessions.append_event("s1", {"type": "msg"})
        for i in range(5):
            await db.memory.add_memory("user:alice", f"k{i}", {"n": i}, "episodic", "agent")
        await db.memory.delete_memory("user:alice", "k0", "agent")
    await copy_database(source, dsn)
    return source


async def test_loaders_read_a_dsn_as_they_read_the_file(tmp_path: Path, pg_dsn: str) -> None:
    source = await _populated(tmp_path, pg_dsn)
    for load in (analysis.load_memories_sync, analysis.load_audit_sync,
                 analysis.load_sessions_sync, analysis.load_events_sync):
        pd.testing.assert_frame_equal(load(pg_dsn), load(source), check_dtype=False)
    growth_file, growth_pg = analysis.memory_growth(source), analysis.memory_growth(pg_dsn)
    rows = ["kind", "day", "scope", "memory_type", "rows"]
    assert growth_pg[rows].to_dict("records") == growth_file[rows].to_dict("records")
    assert growth_pg["bytes"].gt(0).all()
    storage = analysis.storage_breakdown(pg_dsn)
    assert "idx_memory_namespace_key_version" in set(storage["name"])


async def test_notebook_inputs_and_report_numbers_take_a_dsn(tmp_path: Path,
                                                             pg_dsn: str) -> None:
    source = await _populated(tmp_path, pg_dsn)
    inputs = analysis.notebook_inputs(pg_dsn)
    assert inputs.database == pg_dsn
    from_pg, from_file = key_numbers(inputs), key_numbers(analysis.notebook_inputs(source))
    assert (from_pg["memories"], from_pg["sessions"]) == ("4", "1")
    assert (from_file["memories"], from_file["sessions"]) == ("4", "1")


def test_stats_on_a_dsn(tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    asyncio.run(_populated(tmp_path, pg_dsn))
    capsys.readouterr()
    assert main(["stats", pg_dsn, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"]["memory_entries"] == 5
    assert stats["memory"]["deleted_rows"] == 1
    assert stats["database"]["bytes"] > 0 and stats["schema_version"] == 10
    assert main(["stats", pg_dsn]) == 0
    assert "(PostgreSQL 16" in capsys.readouterr().out


def test_memkit_report_runs_the_notebooks_on_a_dsn(tmp_path: Path, pg_dsn: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for module in ("nbclient", "nbconvert", "ipykernel", "papermill"):
        pytest.importorskip(module)
    import asyncio
    import shutil

    sample = tmp_path / "sample.db"
    shutil.copy(Path(__file__).parent.parent / "notebooks" / "data" / "agents.sqlite3", sample)

    async def prepare() -> None:
        async with Database(sample):  # the sample predates the newest migrations
            pass
        await copy_database(sample, pg_dsn)

    asyncio.run(prepare())
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["report", "--db", pg_dsn, "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in report["notebooks"]] == ["performance", "capacity", "audit"]
    assert report["numbers"]["memories"] == "600"
    assert (out / "audit.html").is_file()
