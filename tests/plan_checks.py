"""Pin a service query's plan: a SEARCH on the named index, or a known scan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from abathur_memkit import Database


async def details(db: Database, sql: str, params: Sequence[Any]) -> list[str]:
    return [detail for _, _, detail in await db.query_plan(sql, params)]


async def assert_searches(
    db: Database, sql: str, params: Sequence[Any], table: str, index: str
) -> None:
    """The plan SEARCHes ``table`` (or its alias) on ``index`` and scans no table."""
    plan = await details(db, sql, params)
    assert any(d.startswith("SEARCH ") and f" INDEX {index} " in f"{d} " for d in plan), plan
    assert not any(d.startswith(f"SCAN {table}") for d in plan), plan
