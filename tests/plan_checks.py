"""Pin a service query's plan: a SEARCH on the named index, or a known scan.

The plan is read with the plugin's parser (``pytest_abathur.plan``), which
resolves aliases and compares fields, never substrings of the detail text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from abathur_memkit import Database
from pytest_abathur.assertions import assert_no_full_scan, assert_uses_index, explain


async def details(db: Database, sql: str, params: Sequence[Any]) -> list[str]:
    """The plan's steps as SQLite prints them, in tree order (for exact pins)."""
    return [node.detail for node in (await explain(db, sql, params)).nodes]


async def assert_searches(
    db: Database, sql: str, params: Sequence[Any], table: str, index: str
) -> None:
    """The plan SEARCHes on ``index`` and never fully scans ``table`` (or an alias of it).

    An index name is unique in the schema, so it names its table.
    """
    __tracebackhide__ = True
    await assert_uses_index(db, sql, params, index=index)
    await assert_no_full_scan(db, sql, params, tables=[table])
