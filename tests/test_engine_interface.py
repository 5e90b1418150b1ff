"""The SQLite engine and the facade satisfy the interface the services are written against.

mypy checks the functions below (``make lint``); the tests check the same at run time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from abathur_memkit import Database
from abathur_memkit.engines.interface import Connection, Engine, Store
from abathur_memkit.engines.sqlite.engine import SQLiteEngine
from abathur_memkit.errors import InvalidInputError, MemkitError


def _engine_is_an_engine(engine: SQLiteEngine) -> Engine:
    return engine


def _facade_is_a_store(db: Database) -> Store:
    return db


def _sqlite3_is_a_connection(conn: sqlite3.Connection) -> Connection:
    return conn


async def test_a_service_runs_on_the_engine_without_the_facade() -> None:
    from abathur_memkit import MemoryService

    async with SQLiteEngine(":memory:") as engine:
        memory = MemoryService(_engine_is_an_engine(engine))
        await memory.add_memory("user:alice", "k", 1, "semantic", "test")
        assert (await memory.get_memory("user:alice", "k") or {})["value"] == 1
        assert await engine.read(lambda conn: conn.execute(
            "SELECT count(*) FROM audit").fetchone()[0]) == 1


def test_the_facade_and_the_engine_are_stores() -> None:
    assert isinstance(Database(), Store)
    assert isinstance(SQLiteEngine(), Store)
    assert _facade_is_a_store(Database()).dialect == "sqlite"
    assert _sqlite3_is_a_connection(sqlite3.connect(":memory:")).in_transaction is False


async def test_a_dsn_opens_postgresql_and_a_path_sqlite(pg_memkit_dsn: str) -> None:
    async with Database(pg_memkit_dsn) as db:
        assert db.dialect == "postgresql" and not db.in_memory and db.extensions == ()
        assert await db.fetchone("SELECT 1 AS one") == {"one": 1}
        with pytest.raises(MemkitError, match="vacuum is a SQLite feature"):
            await db.vacuum()
    async with Database() as db:
        assert db.dialect == "sqlite"


def test_postgresql_takes_no_sqlite_settings() -> None:
    with pytest.raises(InvalidInputError, match="SQLite settings"):
        Database("postgresql://u@h/db", extensions=["vec"])


@pytest.mark.parametrize("dsn", ["host=/tmp dbname=agents user=me", "dbname=a port=5432"])
def test_a_keyword_dsn_is_refused_not_made_a_file(dsn: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError, match="key=value connection string"):
        Database(dsn)
    assert list(tmp_path.iterdir()) == []
