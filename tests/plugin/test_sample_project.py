"""The sample project passes using only the installed plugin (no imports from our tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample_project"


def test_sample_project_passes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",  # leave no .pytest_cache in the example
            "-p",
            "no:benchmark",  # pytest-benchmark, when installed, makes a .benchmarks dir
            "--basetemp",
            str(tmp_path / "basetemp"),
            "--memkit-json",
            str(tmp_path / "sample.json"),
            "--memkit-storage",
            str(tmp_path / "runs"),  # the run history, outside the example
        ],
        cwd=SAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout
    assert "test_lookup_latency" in result.stdout  # the terminal summary
    assert (tmp_path / "sample.json").is_file()
    assert len(list((tmp_path / "runs").glob("*/0001_*.json"))) == 1
    assert not (SAMPLE / ".memkit").exists()
    # The sample imports nothing from this repository's tests.
    for path in SAMPLE.rglob("*.py"):
        text = path.read_text()
        assert "from tests" not in text and "import tests" not in text, path
