"""Fixtures shared by memkit's own tests (the plugin's fixtures are tested in tests/plugin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from abathur_memkit import Database

# The plugin's own tests (tests/plugin) run throwaway suites with pytester;
# tests/pg.py starts a PostgreSQL server for the tests that ask for one.
pytest_plugins = ["pytester", "pg"]


#: The test modules whose ``db`` and ``policy_db`` run on both engines: each
#: test once on a SQLite file and once on a fresh PostgreSQL database. A test
#: of what only SQLite has is marked ``@pytest.mark.sqlite_only("why")``.
TWO_ENGINES: set[str] = {
    "test_agents_checkpoints",
    "test_audit_metrics",
    "test_documents",
    "test_hostile_folders",
    "test_hostile_search",
    "test_memory",
    "test_memory_heads",
    "test_namespace_ids",
    "test_read_back",
    "test_search",
    "test_search_settings",
    "test_session_scopes",
    "test_sessions",
    "test_stress_and_crash",
    "test_tasks",
}

ENGINES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if module not in TWO_ENGINES or metafunc.definition.get_closest_marker("sqlite_only"):
        return
    # One engine per test: a module's own ``db`` may be built on ``policy_db``.
    names = [name for name in ("db", "policy_db", "db_target") if name in metafunc.fixturenames]
    if names:
        metafunc.parametrize(names, [(engine,) * len(names) for engine in ENGINES],
                             indirect=True, ids=ENGINES)


def _target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where the test's database lives: a file, or a new PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return str(request.getfixturevalue("pg_memkit_dsn"))
    return tmp_path / "test.db"


@pytest.fixture
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh, initialized database: a WAL file, or (two-engine modules) PostgreSQL."""
    async with Database(_target(request, tmp_path)) as database:
        yield database


@pytest.fixture
async def policy_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """Like ``db``, with the memory write policy switched on."""
    async with Database(_target(request, tmp_path), write_policy=True) as database:
        yield database


@pytest.fixture
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a test opens a Database of its own (with an embedder, say): a
    file, or (two-engine modules) a fresh PostgreSQL database's DSN."""
    return _target(request, tmp_path)


@pytest.fixture
async def memdb() -> AsyncIterator[Database]:
    async with Database(":memory:") as database:
        yield database

