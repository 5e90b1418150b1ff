"""``memkit seed`` / ``memkit init --seed`` and ``seed_initial_memories``: idempotent."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest

from abathur_memkit import Database
from abathur_memkit.cli import main
from abathur_memkit.engines.sqlite.driver import select_driver
from abathur_memkit.seed import INITIAL_MEMORIES, SEED_TASK_ID, seed_initial_memories


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def _seeded_rows(path: Path) -> tuple[int, int]:
    with closing(select_driver().connect(str(path))) as conn:
        memories = conn.execute("SELECT count(*) FROM memory_entries").fetchone()[0]
        audits = conn.execute("SELECT count(*) FROM audit WHERE task_id = ?",
                              (SEED_TASK_ID,)).fetchone()[0]
    return memories, audits


async def test_seed_twice_adds_once(db: Database) -> None:
    first = await seed_initial_memories(db)
    assert len(first) == len(INITIAL_MEMORIES)
    assert await seed_initial_memories(db) == []
    rows = await db.fetchall("SELECT namespace, key, version FROM memory_entries")
    assert len(rows) == len(INITIAL_MEMORIES) and {r["version"] for r in rows} == {1}


async def test_seed_keeps_changed_keys_and_fills_missing(db: Database) -> None:
    kept, removed = INITIAL_MEMORIES[0], INITIAL_MEMORIES[1]
    await db.memory.add_memory(kept["namespace"], kept["key"], {"mine": True},
                               kept["memory_type"], "system")
    added = await seed_initial_memories(db)
    assert len(added) == len(INITIAL_MEMORIES) - 1
    mine = await db.memory.get_memory(kept["namespace"], kept["key"])
    assert mine is not None and mine["value"] == {"mine": True}
    await db.memory.delete_memory(removed["namespace"], removed["key"], "system")
    assert len(await seed_initial_memories(db)) == 1  # a deleted key comes back


def test_cli_seed_and_init_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "a.db")
    code, out = run(capsys, "init", path, "--seed", "--json")
    assert code == 0 and out["seed"] == {  # type: ignore[comparison-overlap]
        "added": 3, "ids": [1, 2, 3], "present": 0}
    code, out = run(capsys, "seed", path, "--json")
    assert code == 0 and (out["added"], out["present"]) == (0, 3)


def test_cli_seed_writes_rows_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.db"
    main(["init", str(path)])
    main(["seed", str(path)])
    main(["seed", str(path)])
    capsys.readouterr()
    assert _seeded_rows(path) == (len(INITIAL_MEMORIES), len(INITIAL_MEMORIES))


def test_cli_seed_needs_an_existing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["seed", str(tmp_path / "missing.db")])
    assert code != 0 and "memkit init" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()
