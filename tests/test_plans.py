"""Each hot query of the seeds is a SEARCH on its named index, never a SCAN."""

from __future__ import annotations

import pytest

from abathur_memkit import Database
from abathur_memkit.validation import INDEX_SAMPLES, searches

# (table, index, sql, params): the samples the validation report explains.
HOT_QUERIES = INDEX_SAMPLES


@pytest.mark.parametrize(("table", "index", "sql", "params"), HOT_QUERIES,
                         ids=[q[1].split('|')[0] for q in HOT_QUERIES])
async def test_hot_query_searches_its_index(
    db: Database, table: str, index: str, sql: str, params: tuple[object, ...]
) -> None:
    plan = await db.query_plan(sql, params)
    details = [detail for _, _, detail in plan]
    assert searches(details, table, index), details


async def test_like_prefix_is_a_scan(db: Database) -> None:
    # Why the services never use LIKE: the seed's prefix query scans the table.
    plan = await db.query_plan(
        "SELECT * FROM memory_entries WHERE namespace LIKE ? AND is_deleted = 0", ("user:a%",))
    assert any(d.startswith("SCAN memory_entries") for _, _, d in plan)
