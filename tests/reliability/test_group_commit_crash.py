"""SIGKILL during group commit: every write acknowledged before the kill is on disk."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from abathur_memkit import Database
from abathur_memkit.workloads.stress import structural_checks

WRITER = Path(__file__).with_name("group_commit_writer.py")

Ack = tuple[str, str, int]


def run_until_killed(path: Path, round_: int, acks_before_kill: int) -> list[Ack]:
    """Start the 50-writer child, SIGKILL it after that many acks; return every ack it printed."""
    proc = subprocess.Popen([sys.executable, str(WRITER), str(path), str(round_)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    try:
        while len(lines) < acks_before_kill:
            line = proc.stdout.readline()
            assert line, f"the writer stopped before the kill: {proc.communicate()[1]}"
            lines.append(line)
    finally:
        proc.kill()
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == -9, err
    # Lines still in the pipe were acknowledged too; a torn last line never is.
    lines += rest.splitlines(keepends=True)
    return [(ns, key, int(version)) for ns, key, version in
            (line.rstrip("\n").split("\t") for line in lines if line.endswith("\n"))]


def missing(conn: Any, acks: list[Ack]) -> list[Ack]:
    """Acknowledged writes without their memory row or without its audit row."""
    found = {
        (r[0], r[1], r[2]) for r in conn.execute(
            "SELECT m.namespace, m.key, m.version FROM memory_entries m "
            "JOIN audit a ON a.memory_entry_id = m.id "
            "AND a.action_type IN ('memory_create', 'memory_update')")
    }
    return [ack for ack in acks if ack not in found]


async def check(path: Path, acks: list[Ack]) -> tuple[list[Ack], list[Any], list[str]]:
    async with Database(path) as db:  # recovers the WAL of the killed process
        return (await db.read(lambda conn: missing(conn, acks)),
                await db.read(structural_checks), await db.integrity_check())


async def create(path: Path) -> None:
    async with Database(path):
        pass


def test_sigkill_mid_group_commit_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "kill.db"
    asyncio.run(create(path))  # once; each child opens it as it is
    acks: list[Ack] = []
    for round_, acks_before_kill in enumerate((60, 700, 2500)):
        acks += run_until_killed(path, round_, acks_before_kill)
        lost, checks, integrity = asyncio.run(check(path, acks))
        assert len(acks) >= acks_before_kill
        assert lost == [], f"acknowledged but not on disk after kill {round_ + 1}: {lost[:5]}"
        assert [c for c in checks if not c["passed"]] == []  # versions gapless, audit rows
        assert integrity == ["ok"]
