"""Backups are atomic; ``memkit restore`` puts one in place, never over a live database."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from abathur_memkit import Database, DatabaseFileError, InvalidInputError
from abathur_memkit.cli import main
from abathur_memkit.engines.sqlite.files import restore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "agents.db"

    async def build() -> None:
        async with Database(path) as db:
            await db.memory.add_memory("user:a", "k", {"v": 1}, "semantic", "t")

    asyncio.run(build())
    return path


# A backup whose process is SIGKILLed once SQLite has copied every page, before
# the copy is in place (the progress callback runs after the copy step).
_KILLED_BACKUP = """
import asyncio, os, signal, sys
from abathur_memkit import Database

async def main() -> None:
    async with Database(sys.argv[1]) as db:
        await db.backup(sys.argv[2],
                        progress=lambda *_: os.kill(os.getpid(), signal.SIGKILL))

asyncio.run(main())
"""


def test_a_killed_backup_leaves_nothing_at_the_destination(
        source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "backup.db"
    done = subprocess.run([sys.executable, "-c", _KILLED_BACKUP, str(source), str(dest)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not dest.exists()
    assert not any(p.name.startswith("backup.db-") for p in tmp_path.iterdir())
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".backup.db.")]
    assert len(leftovers) == 1 and leftovers[0].endswith(".memkit-tmp")  # clearly named
    # The next backup to the same place removes the dead process's leftovers.
    code, out, _ = run(capsys, "backup", str(source), str(dest))
    assert code == 0 and "quick_check ok" in out
    assert not any(p.name.startswith(".backup.db.") for p in tmp_path.iterdir())
    assert run(capsys, "validate", str(dest))[0] == 0


def test_backup_destination_errors_are_one_line(
        source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "taken.db").write_text("x")
    (tmp_path / "stale.db-wal").write_bytes(b"\0" * 32)  # would be applied to a new stale.db
    cases = {
        str(tmp_path / "missing" / "b.db"): "Backup directory does not exist",
        str(tmp_path / "a_dir"): "Backup destination is a directory",
        str(source): "Backup destination is the database itself",
        str(tmp_path / "taken.db"): "Backup destination exists",
        str(tmp_path / "stale.db"): "stale.db-wal exists without stale.db",
    }
    for dest, says in cases.items():
        code, out, err = run(capsys, "backup", str(source), dest)
        assert code == 2 and out == "" and err.count("\n") == 1, (dest, err)
        assert err.startswith("memkit: error: ") and says in err, (dest, err)
    assert not (tmp_path / "stale.db").exists()


@pytest.mark.parametrize("suffix", [".db", ".db.gz"])
def test_backup_then_restore(source: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    backup = tmp_path / f"backup{suffix}"
    assert run(capsys, "backup", str(source), str(backup))[0] == 0
    if suffix.endswith(".gz"):
        assert gzip.decompress(backup.read_bytes()).startswith(b"SQLite format 3\x00")
    restored = tmp_path / "restored.db"
    code, out, _ = run(capsys, "restore", str(backup), str(restored), "--json")
    assert code == 0 and json.loads(out)["quick_check"] == "ok"
    code, out, _ = run(capsys, "memory", "get", str(restored), "user:a", "k", "--json")
    assert code == 0 and json.loads(out)["value"] == {"v": 1}
    assert run(capsys, "validate", str(restored))[0] == 0


def test_restore_refuses_to_replace_a_database(source: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    backup = tmp_path / "backup.db"
    assert run(capsys, "backup", str(source), str(backup))[0] == 0
    before = source.read_bytes()
    code, _, err = run(capsys, "restore", str(backup), str(source))
    assert code == 2 and "Restore destination exists" in err and "--overwrite" in err
    assert source.read_bytes() == before

    async def while_open() -> None:
        async with Database(source) as db:
            await db.memory.get_memory("user:a", "k")  # a live reader holds the file
            with pytest.raises(DatabaseFileError, match="in use by another process"):
                restore(backup, source, overwrite=True)

    asyncio.run(while_open())
    assert source.read_bytes() == before
    code, _, err = run(capsys, "restore", str(backup), str(source), "--overwrite")
    assert code == 0, err  # nothing has it open now


def test_restore_refuses_what_is_not_a_sound_backup(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE foo (a)")
    conn.close()
    broken_gz = tmp_path / "broken.db.gz"
    broken_gz.write_bytes(gzip.compress(b"SQLite format 3\x00" + os.urandom(5000))[:2000])
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    for backup, says in ((foreign, "not a memkit database"), (broken_gz, "gzip"),
                         (text, "not a usable SQLite database"),
                         (tmp_path / "missing.db", "no backup at")):
        code, out, err = run(capsys, "restore", str(backup), str(tmp_path / "new.db"))
        assert code == 2 and out == "" and says in err, (backup, err)
        assert err.count("\n") == 1
        assert not (tmp_path / "new.db").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.db")]


def test_restore_in_python(source: Path, tmp_path: Path) -> None:
    backup = tmp_path / "b.db.gz"

    async def take() -> None:
        async with Database(source, read_only=True) as db:  # a backup needs only reads
            await db.backup(backup)

    asyncio.run(take())
    target = restore(backup, tmp_path / "r.db")
    assert target == tmp_path / "r.db" and target.read_bytes()[:16] == b"SQLite format 3\x00"
    with pytest.raises(InvalidInputError, match="exists"):
        restore(backup, target)


async def test_backup_refuses_a_destination_that_is_not_a_path(source: Path) -> None:
    async with Database(source, read_only=True) as db:
        for dest in (b"copy.db", 42, "bad\x00name.db", ""):
            with pytest.raises(InvalidInputError, match=r"[Bb]ackup destination"):
                await db.backup(dest)  # type: ignore[arg-type]
