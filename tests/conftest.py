"""Fixtures shared by memkit's own tests (the plugin's fixtures are tested in tests/plugin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from abathur_memkit import Database

# The plugin's own tests (tests/plugin) run throwaway suites with pytester;
# tests/pg.py starts a PostgreSQL server for the tests that ask for one.
pytest_plugins = ["pytester", "pg"]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, initialized file database in WAL mode."""
    async with Database(tmp_path / "test.db") as database:
        yield database


@pytest.fixture
async def policy_db(tmp_path: Path) -> AsyncIterator[Database]:
    """Like ``db``, with the memory write policy switched on."""
    async with Database(tmp_path / "test.db", write_policy=True) as database:
        yield database


@pytest.fixture
async def memdb() -> AsyncIterator[Database]:
    async with Database(":memory:") as database:
        yield database

