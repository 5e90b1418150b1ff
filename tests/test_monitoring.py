"""WAL size and readers (validate, doctor), EXPLAIN samples, the 20 ms memory gate."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from abathur_memkit import Database
from abathur_memkit.cli import main
from abathur_memkit.engines.sqlite import monitoring, validation
from abathur_memkit.engines.sqlite.schema import named_indexes

needs_proc_locks = pytest.mark.skipif(not Path("/proc/locks").exists(),
                                      reason="reader detection reads /proc/locks (Linux)")

_HOLD_READ = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM sessions").fetchone()
print("reading", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def reader(db: Database) -> Iterator[subprocess.Popen[str]]:
    """Another process inside a read transaction on ``db`` until the test ends."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_READ, db.path], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == "reading\n"
    yield proc
    proc.communicate("\n", timeout=30)


def _check(report: dict[str, object], name: str) -> dict[str, object]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return next(c for c in checks if c["name"] == name)


async def test_memory_lookup_gate_is_20_ms(db: Database) -> None:
    report = await db.validate()
    assert "(floor 20.0 ms)" in str(_check(report, "lookup:memory_by_namespace_key")["detail"])


async def test_validation_explains_every_named_index(db: Database) -> None:
    report = await db.validate()
    for index in named_indexes():
        check = _check(report, f"explain:{index}")
        assert check["passed"], check
        assert str(check["detail"]).startswith("SEARCH ") and "sql" in check


async def test_big_wal_is_a_warning_not_a_failure(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await db.sessions.create_session("s", "app", "u")
    monkeypatch.setattr(monitoring, "WAL_WARN_BYTES", 0)
    report = await db.validate()
    size = _check(report, "wal:size")
    assert size["passed"] is False and size["warning"] is True
    assert report["ok"] is True


@needs_proc_locks
async def test_a_reader_in_another_process_is_reported(
    db: Database, reader: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert monitoring.wal_readers(db.path) == [reader.pid]
    check = _check(await db.validate(), "wal:readers")
    assert check["passed"] is False and f"pid {reader.pid}" in str(check["detail"])
    assert await asyncio.to_thread(main, ["doctor", db.path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["wal"]["readers"] == [reader.pid]


@needs_proc_locks
async def test_no_reader_no_report(db: Database) -> None:
    await db.sessions.create_session("s", "app", "u")
    assert monitoring.wal_readers(db.path) == []
    assert _check(await db.validate(), "wal:readers")["passed"] is True


def test_wal_readers_reads_the_lock_table(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    (tmp_path / "a.db-shm").write_bytes(b"")
    st = os.stat(tmp_path / "a.db-shm")
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    locks = tmp_path / "locks"
    locks.write_text(
        f"1: POSIX  ADVISORY  READ 101 {dev} 124 124\n"     # a read mark: a reader
        f"2: POSIX  ADVISORY  READ 102 {dev} 128 128\n"     # the DMS byte: just open
        f"3: POSIX  ADVISORY  WRITE 103 {dev} 120 120\n"    # the writer
        f"4: POSIX  ADVISORY  READ 104 fe:00:1 124 124\n"   # another file
        f"4: -> POSIX  ADVISORY  READ 105 {dev} 123 123\n"  # waiting, listed anyway
    )
    assert monitoring.wal_readers(str(path), locks) == [101, 105]
    assert monitoring.wal_readers(str(path), tmp_path / "none") is None


def test_doctor_without_path_has_no_wal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    assert "wal" not in json.loads(capsys.readouterr().out)


def test_validation_has_a_sample_for_every_named_index() -> None:
    sampled = {name for _, index, _, _ in validation.INDEX_SAMPLES for name in index.split("|")}
    assert set(named_indexes()) <= sampled
