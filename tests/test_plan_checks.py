"""tests/plan_checks.py reads plans with the plugin's parser, aliases included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from plan_checks import assert_searches, details

from abathur_memkit import Database

INDEX = "idx_sessions_user_created"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with Database(tmp_path / "plans.db") as database:
        yield database


async def test_a_scan_under_an_alias_fails(db: Database) -> None:
    # "SCAN b" reads every session; matching "SCAN sessions" as text missed it.
    sql = ("SELECT a.id FROM sessions AS a, sessions AS b "
           "WHERE a.user_id = ? AND b.status = 'x'")
    assert "SCAN b" in await details(db, sql, ("u",))
    with pytest.raises(AssertionError, match="full scan of sessions"):
        await assert_searches(db, sql, ("u",), "sessions", INDEX)


async def test_a_search_under_an_alias_passes(db: Database) -> None:
    await assert_searches(db, "SELECT s.id FROM sessions s WHERE s.user_id = ?", ("u",),
                          "sessions", INDEX)
