"""Run the seed design's own code examples against memkit, through a module-path shim.

The examples import ``abathur.infrastructure.database``; ``shim/`` maps that
path to abathur_memkit and nothing else. The examples are copied from the
seed text as written, one function per example, with the section they come
from; the only harness here is the shim and closing the databases the
examples leave open (their connection threads would keep pytest alive).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from abathur_memkit import Database

sys.path.insert(0, str(Path(__file__).parent / "shim"))


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``Path.home()`` and ``~`` are a fresh folder: the seeds' ~/.abathur is created there."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture(autouse=True)
async def close_left_open(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    opened: list[Database] = []
    initialize = Database.initialize

    async def tracked(self: Database) -> Any:
        opened.append(self)
        return await initialize(self)

    monkeypatch.setattr(Database, "initialize", tracked)
    yield
    for db in opened:
        await db.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.endswith("test_seed_001_as_written.py::test_memory_versioning"):
            item.add_marker(pytest.mark.xfail(
                raises=NameError, strict=True,
                reason="the seed's example calls json.loads without importing json"))
