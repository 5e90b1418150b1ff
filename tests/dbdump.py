"""Compare a database before and after: proof that a failed call changed nothing."""

from __future__ import annotations

from typing import Any

from abathur_memkit import Database


def _dump(conn: Any) -> list[Any]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    out: list[Any] = [tuple(r) for r in conn.execute(
        "SELECT type, name, sql FROM sqlite_master ORDER BY name")]
    for table in tables:
        out.append((table, [tuple(r) for r in conn.execute(f'SELECT * FROM "{table}"')]))
    return out


async def dump(database: Database) -> list[Any]:
    """Schema and every row of every table, read in one snapshot."""
    return await database.read(_dump, snapshot=True)
