"""The wheel ships the sql/ files: built, installed in a fresh venv, run elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    (built,) = out.glob("abathur_memkit-*.whl")
    return built


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    sql = sorted(n for n in names if n.startswith("abathur_memkit/sql/"))
    assert sql == sorted(f"abathur_memkit/sql/{p.name}" for p in (ROOT / "sql").glob("*.sql"))
    assert any(n.startswith("pytest_abathur/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]" in text and "pytest_abathur.plugin" in text
    assert "memkit = abathur_memkit.cli:main" in text


def test_wheel_in_a_fresh_venv_creates_a_database(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "import asyncio, json\n"
        "from abathur_memkit import Database\n"
        "async def main():\n"
        "    async with Database('agents.db') as db:\n"
        "        print(json.dumps(await db.validate()))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([str(python), "-c", script], cwd=elsewhere,
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["ok"] is True
    assert (elsewhere / "agents.db").exists()
    cli = subprocess.run([str(env_dir / "bin" / "memkit"), "validate", "agents.db", "--json"],
                         cwd=elsewhere, capture_output=True, text=True)
    assert cli.returncode == 0 and json.loads(cli.stdout)["ok"] is True
