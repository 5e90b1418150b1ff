"""The memkit CLI skeleton: init, validate, doctor."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from abathur_memkit.cli import main
from abathur_memkit.engines.sqlite.schema import migrations


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_then_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "agents.db")
    code, out, _ = run(capsys, "init", path)
    versions = [m.version for m in migrations()]
    assert code == 0 and f"applied migrations {versions}" in out
    code, out, _ = run(capsys, "init", path, "--json")
    assert code == 0 and json.loads(out)["applied"] == []
    code, out, _ = run(capsys, "validate", path, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert all(c["passed"] for c in report["checks"])
    code, out, _ = run(capsys, "validate", path)
    assert code == 0 and out.strip().endswith(f"{len(report['checks'])} checks passed")


def test_validate_exit_code_on_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agents.db"
    run(capsys, "init", str(path))
    from abathur_memkit.engines.sqlite.driver import select_driver

    conn = select_driver().connect(str(path))
    conn.execute("DROP INDEX idx_audit_agent")
    conn.close()
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 1 and "FAIL  index_count" in out


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", str(tmp_path / "missing.db"))
    assert code == 2 and err.startswith("memkit: error: no database at")
    bad = tmp_path / "bad.db"
    bad.write_text("hello " * 200)
    code, out, _ = run(capsys, "validate", str(bad), "--json")
    assert code == 2 and "not a usable SQLite database" in json.loads(out)["error"]


def test_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert code == 0
    assert report["driver"] in ("sqlite3", "sqlean")
    assert report["extensions"]["vec"]["loads"] is True
    assert set(report["extensions"]) == {"vec", "vss"}
    assert report["ollama"]["reachable"] in (True, False)
    code, out, _ = run(capsys, "doctor")
    assert "sqlite driver" in out and "extension vec" in out


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "memkit"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("memkit ")


def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "agents.db"
    exe = Path(sys.executable).parent / "memkit"
    subprocess.run([str(exe), "init", str(path)], check=True, capture_output=True)
    # head -n 0 exits before memkit writes anything; head -1 after the first line.
    for reader in ("head -n 0", "head -1"):
        result = subprocess.run(f"'{exe}' stats '{path}' | {reader}", shell=True,
                                capture_output=True, text=True, timeout=120)
        assert result.stderr == "", (reader, result.stderr)
        if reader == "head -1":
            assert result.stdout.startswith(str(path.resolve()))


@pytest.mark.parametrize(("error", "code", "says"), [
    (OSError(28, "No space left on device"), 1, "No space left on device"),
    (PermissionError(13, "Permission denied", "/x/agents.db"), 2,
     "/x/agents.db: Permission denied"),
    (sqlite3.OperationalError("database or disk is full"), 1, "database or disk is full"),
])
def test_ordinary_failures_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, error: Exception,
                                        code: int, says: str) -> None:
    path = str(tmp_path / "agents.db")
    run(capsys, "init", path)

    async def fails(db: object) -> None:
        raise error

    monkeypatch.setattr("abathur_memkit.cli.admin.collect_stats", fails)
    got, out, err = run(capsys, "stats", path)
    assert (got, out) == (code, "") and err.count("\n") == 1
    assert err.startswith("memkit: error: ") and says in err
    got, out, _ = run(capsys, "stats", path, "--json")
    assert got == code and says in json.loads(out)["error"]
