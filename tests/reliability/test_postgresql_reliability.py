"""The stress and SIGKILL runs against one PostgreSQL database, several processes on it.

CI sizes (well under a minute together); the long versions are ``memkit stress
--db DSN`` and ``memkit crash --db DSN --kills N``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from abathur_memkit import Database, InvalidInputError
from abathur_memkit.cli import main
from abathur_memkit.workloads.stress import CrashConfig, StressConfig, run_crash, run_stress


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if not c["passed"]]


def test_stress_on_postgresql(pg_memkit_dsn: str) -> None:
    # 12 agents here and 3 worker processes x 3 agents, on one database.
    config = StressConfig(agents=12, processes=3, agents_per_process=3, operations=25,
                          worker_operations=60, tasks=80, backups=1, seed=11)
    report = asyncio.run(run_stress(pg_memkit_dsn, config))
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, indent=1))
    assert not failed(report), failed(report)
    assert report["ok"] is True and report["errors"] == 0
    assert report["agents"] == 21 and report["processes"] == 4
    assert report["operations"] == 12 * 25 + 9 * 60
    assert report["backups"] == 0  # a server's backups are not the library's
    assert report["all_processes_writing_together_seconds"] > 0
    names = {c["name"] for c in report["checks"]}
    assert {
        "no_errors_reached_callers", "every_write_present", "versions_gapless_unique",
        "shared_key_versions_unique", "one_audit_row_per_memory_write",
        "one_audit_row_per_memory_row", "no_task_claimed_twice", "task_claims_audited_once",
        "every_event_present", "shared_session_seqs_unique", "integrity_check",
        "soft_deletes_match_audit", "event_and_state_change_together",
    } <= names
    assert report["path"].startswith("PostgreSQLEngine(")


async def test_sigkill_mid_transaction_on_postgresql(pg_memkit_dsn: str) -> None:
    report = await run_crash(pg_memkit_dsn, CrashConfig(kills=12, workers=3, seed=5,
                                                        self_kill_share=0.7))
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, indent=1))
    assert report["failures"] == [], report["failures"]
    assert not failed(report), failed(report)
    assert report["kills"] == 12
    assert report["checks_after_kills"] >= 6  # every 5th round kills every worker at once
    assert report["kills_inside_transaction"] >= 3  # self-kills at a statement of a write
    names = {c["name"] for c in report["checks"]}
    assert {"versions_gapless_unique", "one_audit_row_per_memory_row",
            "task_claims_audited_once", "event_seqs_gapless"} <= names
    committed = report["committed"]
    assert committed["memory_rows"] > 10 and committed["events"] > 0


async def test_runs_need_an_empty_database(pg_memkit_dsn: str) -> None:
    async with Database(pg_memkit_dsn) as db:
        await db.sessions.create_session("s", "app", "u")
    with pytest.raises(InvalidInputError, match="holds memkit rows"):
        await run_stress(pg_memkit_dsn, StressConfig(agents=1, processes=0, tasks=0))
    with pytest.raises(InvalidInputError, match="holds memkit rows"):
        await run_crash(pg_memkit_dsn, CrashConfig(kills=1))



@pytest.mark.parametrize("command", [
    ["stress", "--agents", "4", "--processes", "1", "--agents-per-process", "2",
     "--operations", "8", "--tasks", "10"],
    ["crash", "--kills", "2"],
], ids=["stress", "crash"])
def test_commands_take_a_dsn(
    pg_dsn: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A new, empty PostgreSQL database: the run migrates it.
    assert main([*command, "--db", pg_dsn, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["path"].startswith("PostgreSQLEngine(")
