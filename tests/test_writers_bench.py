"""A tiny run of ``memkit bench writers`` (the real sizes take a minute: not in the suite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abathur_memkit import Database
from abathur_memkit.bench.writers import WritersSizes, run_writers
from abathur_memkit.cli import main

TINY = WritersSizes(writers=5, chunk=50, rounds=2, latency_rounds=10, warmup=5)


async def test_writers_bench_measures_every_mode_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "writers.db"
    result = await run_writers(path, TINY, pin=False)

    names = [r.name for r in result.report.results]
    assert names == ["serial_writes", "writers_5_group_commit", "writers_5_no_group_commit",
                     "floor_raw_batches_of_5", "single_writer_group_commit",
                     "single_writer_no_group_commit"]
    serial, grouped, ungrouped, floor, single, _ = result.report.results
    assert grouped.extra["vs_no_group_commit"] == pytest.approx(grouped.ops / ungrouped.ops)
    assert len(serial.samples_ns) == len(grouped.samples_ns) == 2  # one chunk per round
    assert grouped.extra["baseline"] == "serial_writes"
    assert grouped.extra["ratio"] == pytest.approx(grouped.ops / serial.ops)
    assert single.extra["baseline"] == "single_writer_no_group_commit"
    assert [t[0] for t in result.targets] == [
        "writers_5_group_commit vs serial", "writers_5_group_commit with audit",
        "single-writer p50 vs group_commit=False"]
    assert floor.extra["vs_serial"] == pytest.approx(floor.ops / serial.ops)
    table = result.table()
    assert "per round" in table and "load average" in table
    assert "floor: the same rows by raw batches" in table
    assert "12,000/s allows 83 µs" in table
    # Every write committed with its audit row: warm-up + 4 modes x 2 rounds + 2 x latency.
    async with Database(path) as db:
        row = await db.fetchone("SELECT (SELECT count(*) FROM memory_entries) AS rows, "
                                "(SELECT count(*) FROM audit) AS audit")
        floors = await db.fetchall(
            "SELECT m.key, a.memory_entry_id FROM memory_entries m LEFT JOIN audit a "
            "ON a.memory_entry_id = m.id WHERE m.namespace LIKE 'app:bench:floor%'")
        heads = await db.fetchone("SELECT count(*) AS n FROM memory_heads "
                                  "WHERE namespace LIKE 'app:bench:floor%'")
    assert row == {"rows": 5 + 4 * 2 * 50 + 2 * (10 + 5), "audit": 5 + 4 * 2 * 50 + 2 * 15}
    # The floor wrote what a write writes: a row, its audit row, and the triggers' head.
    assert len(floors) == 2 * 50 and all(r["memory_entry_id"] is not None for r in floors)
    assert len({r["key"] for r in floors}) == 100 and heads == {"n": 100}


def test_bench_writers_command_prints_targets_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "writers.json"
    code = main(["bench", "writers", "--quick", "--no-pin", "--db", str(tmp_path / "w.db"),
                 "--output", str(out), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code in (0, 1)  # 1: a target missed on this machine (not a test of speed)
    assert [t["name"] for t in document["targets"]] == [
        "writers_50_group_commit vs serial", "writers_50_group_commit with audit",
        "single-writer p50 vs group_commit=False"]
    assert code == (1 if any(not t["met"] for t in document["targets"]) else 0)
    assert json.loads(out.read_text())["targets"] == document["targets"]


async def test_single_writer_sides_write_the_same_mix(tmp_path: Path) -> None:
    # Paired call by call on one shared count, one side used to get every add
    # and the other every update: their p50s compared different writes.
    from abathur_memkit.bench import writers

    calls: list[tuple[bool, str]] = []
    async with Database(tmp_path / "mix.db") as db:
        add, update = db.memory.add_memory, db.memory.update_memory

        async def spy_add(*args: object, **kwargs: object) -> int:
            calls.append((db.group_commit, "add"))
            return await add(*args, **kwargs)  # type: ignore[arg-type]

        async def spy_update(*args: object, **kwargs: object) -> int:
            calls.append((db.group_commit, "update"))
            return await update(*args, **kwargs)  # type: ignore[arg-type]

        db.memory.add_memory = spy_add  # type: ignore[method-assign]
        db.memory.update_memory = spy_update  # type: ignore[method-assign]
        await writers._single_writer(db, writers._Workload(db), TINY)
    for side in (True, False):
        ops = [op for group_commit, op in calls if group_commit is side]
        assert len(ops) == TINY.latency_rounds + TINY.warmup
        assert abs(ops.count("add") - ops.count("update")) <= 1
