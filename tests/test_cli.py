"""The memkit CLI skeleton: init, validate, doctor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from abathur_memkit.cli import main
from abathur_memkit.schema import migrations


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
    from abathur_memkit.driver import select_driver

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
