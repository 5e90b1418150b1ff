"""Capacity: the grower and its lookup measurements, at a tiny size.

The real run is ``memkit capacity --size 1GB`` (or 10GB, the seeds' plan); its
p50 ratio is a benchmark figure, not something a timed unit test can judge on
a shared CI machine (SPEC §6), so here only the mechanics are checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abathur_memkit import Database, InvalidInputError
from abathur_memkit.cli import main
from abathur_memkit.workloads.capacity import CapacityConfig, ProgressBar, parse_size, run_capacity


@pytest.mark.parametrize(("text", "size"), [
    ("1GB", 10**9), ("1 GB", 10**9), ("500MB", 5 * 10**8), ("2GiB", 2 * 2**30),
    ("1.5GB", 15 * 10**8), ("10gb", 10**10), ("4096", 4096), ("64KiB", 65536), (1234, 1234),
])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "1PB", "one GB", "1e9", "0", "1 G B", "nan"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError, match="Invalid size"):
        parse_size(text)


async def test_capacity_grows_to_the_size_and_measures(tmp_path: Path) -> None:
    path = tmp_path / "cap.db"
    config = CapacityConfig(size=6 * 10**6, baseline_rows=1000, batch=500, samples=200,
                            value_bytes=300, namespaces=50)
    report = await run_capacity(path, config, bar=False)
    assert report["file_bytes"] >= config.size
    assert report["baseline"]["rows"] == 1000 and report["full"]["rows"] == report["rows"] > 1000
    for size in ("baseline", "full"):
        for kind in ("api", "sql"):
            m = report[size][kind]
            assert m["n"] == 200 and 0 < m["p50_us"] <= m["p95_us"] <= m["p99_us"]
    assert report["p50_ratio_api"] > 0 and report["integrity_check"] == ["ok"]
    assert report["target_reached"] and 0 < report["build_seconds"] <= report["seconds"]
    # Scope-wide queries timed at both sizes, and the file's bytes by table and index.
    assert set(report["scope_queries"]) == {
        'search_memories("")', 'search_memories("user")', 'list_namespaces("")'}
    for m in report["scope_queries"].values():
        assert m["baseline"]["n"] == m["full"]["n"] == config.scope_rounds
        assert 0 < m["full"]["p50_us"] <= m["full"]["p99_us"]
    btrees = {b["name"]: b for b in report["btrees"]}
    assert {"memory_entries", "memory_heads", "audit"} <= set(btrees)
    assert any(b["type"] == "index" for b in btrees.values())
    assert btrees["memory_entries"]["bytes"] > btrees["agents"]["bytes"]
    assert [b["bytes"] for b in report["btrees"]] == sorted(
        (b["bytes"] for b in report["btrees"]), reverse=True)
    assert sum(b["bytes"] for b in report["btrees"]) <= report["file_bytes"]
    # Rows went in through add_memories, each with its audit row.
    async with Database(path) as db:
        counts = await db.fetchone(
            "SELECT (SELECT count(*) FROM memory_entries) AS rows, "
            "(SELECT count(*) FROM audit WHERE action_type = 'memory_create') AS audits")
        assert counts == {"rows": report["rows"], "audits": report["rows"]}
        assert (await db.validate())["ok"]
    with pytest.raises(InvalidInputError, match="exists"):
        await run_capacity(path, config, bar=False)


def test_capacity_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["capacity", "--size", "3MB", "--baseline-rows", "500", "--batch", "500",
                 "--samples", "100", "--no-progress", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)  # 1 only if this machine's noise broke the ratio
    assert report["file_bytes"] >= 3 * 10**6 and report["baseline"]["rows"] == 500
    code = main(["capacity", "--size", "2MB", "--baseline-rows", "300", "--samples", "50",
                 "--db", str(tmp_path / "kept.db")])
    out = capsys.readouterr().out
    assert "p50 full/baseline" in out and (tmp_path / "kept.db").exists()


async def test_capacity_stops_at_max_seconds_and_measures_what_it_has(tmp_path: Path) -> None:
    config = CapacityConfig(size=10**12, baseline_rows=300, batch=100, samples=50,
                            value_bytes=200, namespaces=20, max_seconds=0.5, scope_rounds=3)
    report = await run_capacity(tmp_path / "cut.db", config, bar=False)
    assert not report["target_reached"] and not report["ok"]
    assert report["file_bytes"] < config.size and report["full"]["rows"] == report["rows"]
    assert report["rows"] >= 300 and report["integrity_check"] == ["ok"]
    assert report["scope_queries"]['list_namespaces("")']["full"]["n"] == 3


def test_capacity_command_says_when_the_size_was_not_reached(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["capacity", "--size", "1TB", "--baseline-rows", "200", "--batch", "100",
                 "--samples", "20", "--scope-rounds", "2", "--max-seconds", "1",
                 "--no-progress", "--db", str(tmp_path / "cut.db")])
    out = capsys.readouterr().out
    assert code == 1 and "NOT REACHED: stopped at" in out
    assert 'search_memories("user")' in out and "memory_entries" in out


def test_progress_bar_lines_when_not_a_terminal() -> None:
    import io

    stream = io.StringIO()
    bar = ProgressBar(100, "grow", stream=stream)
    for done in range(0, 101, 5):
        bar.update(done, "x rows")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("grow 100.0%")
