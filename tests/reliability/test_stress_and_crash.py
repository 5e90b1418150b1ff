"""Concurrency and crash safety: nothing lost, nothing half-written.

CI sizes (a few seconds each on 2 cores); the long versions are
``memkit stress``, ``memkit soak --minutes N`` and ``memkit crash --kills N``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database, MemoryItem
from abathur_memkit.cli import main
from abathur_memkit.workloads.stress import (
    CrashConfig,
    StressConfig,
    run_crash,
    run_stress,
    structural_checks,
)

REPORTS: dict[str, Any] = {}


def failed(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if not c["passed"]]


# -- concurrency ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stress_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run for the module: 50 agents here + 4 worker processes x 5 agents, one file."""
    path = tmp_path_factory.mktemp("stress") / "stress.db"
    # Group commit makes the 50 agents here faster than 5 agents in a process:
    # they get twice the operations, so the processes' writing windows overlap.
    config = StressConfig(agents=50, processes=4, agents_per_process=5, operations=40,
                          worker_operations=200, tasks=300, backups=2, seed=7)
    return asyncio.run(run_stress(path, config))


def test_stress_loses_nothing(stress_report: dict[str, Any]) -> None:
    report = stress_report
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, indent=1))
    assert not failed(report), failed(report)
    assert report["ok"] is True
    assert report["errors"] == 0  # "database is locked" included: no error reached a caller
    assert report["agents"] == 70 and report["processes"] == 5
    assert report["operations"] == 50 * 40 + 20 * 200  # bounded: every agent ran its share
    kinds = report["operations_by_kind"]
    for kind in ("add", "update", "delete", "batch", "publish", "shared_update", "event",
                 "shared_event", "claim", "read"):
        assert kinds.get(kind, 0) > 0, f"the mix never ran {kind}"
    # The five processes really overlapped (the workers wait for a go signal).
    assert report["all_processes_writing_together_seconds"] > 0


def test_stress_checks_cover_the_promises(stress_report: dict[str, Any]) -> None:
    names = {c["name"] for c in stress_report["checks"]}
    assert {
        "no_errors_reached_callers", "every_write_present", "versions_gapless_unique",
        "shared_key_versions_unique", "one_audit_row_per_memory_write",
        "one_audit_row_per_memory_row", "no_task_claimed_twice", "task_claims_audited_once",
        "every_event_present", "shared_session_seqs_unique", "integrity_check",
        "foreign_key_check", "soft_deletes_match_audit",
    } <= names
    # Backups taken while the agents ran, restored and validated.
    backups = [c for c in stress_report["checks"] if c["name"].startswith("backup_restores:")]
    assert backups and all(c["passed"] for c in backups)


def test_stress_and_soak_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["stress", "--agents", "6", "--processes", "2", "--agents-per-process", "2",
                 "--operations", "8", "--tasks", "10", "--backups", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["operations"] == 6 * 8 + 2 * 2 * 24
    code = main(["soak", "--minutes", "0.03", "--agents", "4", "--processes", "1",
                 "--agents-per-process", "2", "--tasks", "5", "--backups", "1",
                 "--db", str(tmp_path / "soak.db")])
    out = capsys.readouterr().out
    assert code == 0 and "OK: nothing lost" in out
    assert (tmp_path / "soak.db").exists()  # --db keeps the file for inspection


# -- crash safety -------------------------------------------------------------------------


async def test_sigkill_mid_transaction_leaves_a_sound_database(tmp_path: Path) -> None:
    report = await run_crash(tmp_path / "crash.db", CrashConfig(kills=40, workers=2, seed=3))
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, indent=1))
    assert report["failures"] == [], report["failures"]
    assert not failed(report), failed(report)
    assert report["kills"] == 40
    assert report["kills_inside_transaction"] >= 8  # self-kills at a statement inside BEGIN..COMMIT
    assert report["checks_after_kills"] >= 30
    committed = report["committed"]
    assert committed["memory_rows"] > 100 and committed["events"] > 50


def test_crash_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crash", "--kills", "3"]) == 0
    assert "OK: every kill left a sound database" in capsys.readouterr().out


# -- the checker catches what it claims to catch -------------------------------------------
# A crash test is only as good as its invariants: each torn state below is one a
# missing transaction would leave, written by hand; structural_checks must flag it.


async def _torn(db: Database, sql: str) -> set[str]:
    await db.execute(sql)
    checks = await db.read(structural_checks, snapshot=True)
    return {c["name"] for c in checks if not c["passed"]}


@pytest.fixture
async def workload(db: Database) -> Database:
    await db.sessions.create_session("c", "app", "u", metadata={"counter": True})
    await db.sessions.append_event("c", {"n": 1}, {"n": 1})
    await db.memory.add_memory("user:u", "counter", {"n": 1}, "semantic", "w",
                               metadata={"counter": True})
    await db.memory.add_memories([MemoryItem("user:u", f"b{i}", i, "semantic",
                                             {"batch": "b", "size": 3}) for i in range(3)], "w")
    await db.memory.add_memory("user:u", "flip", 1, "semantic", "w")
    await db.memory.delete_memory("user:u", "flip")
    task = await db.tasks.submit("t", task_id="t1")
    await db.tasks.claim()
    assert task == "t1"
    checks = await db.read(structural_checks, snapshot=True)
    assert all(c["passed"] for c in checks), checks
    return db


@pytest.mark.parametrize(("sql", "flagged"), [
    ("INSERT INTO memory_entries (namespace, key, value, memory_type, version) "
     "VALUES ('user:u', 'x', '1', 'semantic', 1)", "one_audit_row_per_memory_row"),
    ("INSERT INTO memory_entries (namespace, key, value, memory_type, version) "
     "VALUES ('user:u', 'counter', '{\"n\": 5}', 'semantic', 3)", "versions_gapless_unique"),
    ("UPDATE memory_entries SET value = '{\"n\": 9}' WHERE key = 'counter'",
     "memory_counters_match_versions"),
    ("DELETE FROM audit WHERE action_type = 'memory_delete'", "soft_deletes_match_audit"),
    ("UPDATE memory_entries SET is_deleted = 1 WHERE key = 'b0'", "soft_deletes_match_audit"),
    ("INSERT INTO session_events (session_id, seq, event) VALUES ('c', 2, '{\"n\": 2}')",
     "event_and_state_change_together"),
    ("UPDATE sessions SET state = '{\"n\": 2}' WHERE id = 'c'", "event_and_state_change_together"),
    ("INSERT INTO session_events (session_id, seq, event) VALUES ('c', 5, '{\"n\": 5}')",
     "event_seqs_gapless"),
    ("DELETE FROM memory_entries WHERE key = 'b2'", "batches_all_or_nothing"),
    ("DELETE FROM audit WHERE action_type = 'task_claimed'", "task_claims_audited_once"),
    ("UPDATE tasks SET status = 'pending' WHERE id = 't1'", "task_claims_audited_once"),
    ("INSERT INTO audit (timestamp, action_type, memory_operation_type) "
     "VALUES ('2000-01-01 00:00:00', 'memory_update', 'update')",
     "memory_audit_rows_point_at_rows"),
])
async def test_structural_checks_flag_torn_states(workload: Database, sql: str,
                                                  flagged: str) -> None:
    assert flagged in await _torn(workload, sql)
