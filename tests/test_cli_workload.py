"""memkit simulate and memkit demo (small), in process with main([...])."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abathur_memkit.cli import main


def test_simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "swarm.db"
    code = main(["simulate", str(path), "--agents", "4", "--operations", "300", "--days", "2",
                 "--no-progress", "--json"])
    out, _ = capsys.readouterr()
    result = json.loads(out)
    assert code == 0 and result["operations"] == 300 and result["path"] == str(path.resolve())
    assert sum(result["by_operation"].values()) == 300 and result["span"] is not None
    code = main(["simulate", str(path), "--agents", "2", "--operations", "50", "--days", "0"])
    out, err = capsys.readouterr()
    assert code == 0 and "50 operations in" in out and "simulate" in err  # the progress bar
    assert "timestamps spread" not in out
    with pytest.raises(SystemExit) as exit_info:  # argparse: exit 2 on bad arguments
        main(["simulate", str(path), "--operations", "0"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["simulate", str(path), "--operations", "5", "--minutes", "1"])
    capsys.readouterr()


def test_demo_without_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pandas")
    out_dir = tmp_path / "demo"
    code = main(["demo", "--output", str(out_dir), "--agents", "5", "--operations", "400",
                 "--days", "3", "--quick-bench", "--no-report", "--no-progress", "--json"])
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == 0 and result["ok"] is True and err == ""
    steps = [s["name"] for s in result["steps"]]
    assert steps == ["init", "seed", "simulate", "search", "bench", "validate"]
    assert (out_dir / "agents.db").is_file() and (out_dir / "validate.json").is_file()
    assert json.loads((out_dir / "summary.json").read_text())["steps"][0]["name"] == "init"
    bench_files = list((out_dir / "bench").glob("core-*.json"))
    assert len(bench_files) == 1 and result["paths"]["benchmark JSON"] == str(bench_files[0])
    assert result["numbers"]["memory keys (live)"] != "0"
    assert "reaches 10 GB" in result["numbers"]

    from abathur_memkit import analysis

    memories = analysis.load_memories_sync(out_dir / "agents.db")
    seeded = memories[memories["created_by"] == "system"]
    assert sorted(seeded["key"]) == ["default_workflow", "memory_lifecycle_policies",
                                     "user_preference_template"]
    # Seeded before the swarm, so backdated with it: the first day of the span.
    assert seeded["created_at"].max() <= memories["created_at"].min() + __import__(
        "pandas").Timedelta(seconds=1)
    bench = analysis.load_benchmarks(out_dir / "bench")
    assert set(bench["flavour"]) == {"memkit"} and bench["ratio"].notna().sum() == 6

    # A second run replaces the database and keeps the benchmark history.
    code = main(["demo", "--output", str(out_dir), "--agents", "2", "--operations", "50",
                 "--quick-bench", "--no-report", "--no-progress"])
    out, _ = capsys.readouterr()
    assert code == 0 and "validate" in out and "total" in out
    assert str(out_dir / "agents.db") in out
    assert len(list((out_dir / "bench").glob("core-*.json"))) == 2
