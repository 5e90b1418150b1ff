"""Query-plan assertions: explain a statement, parse the plan, check it.

Works with an ``abathur_memkit.Database`` (anything with an async ``query_plan``
and ``fetchall``) on SQLite or PostgreSQL, an aiosqlite connection, or a plain
DB-API connection (``sqlite3``, ``sqlean``, ``pysqlite3``): no assumption about
the connection class.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

from .plan import Op, PlanNode, QueryPlan, parse_plan

__all__ = [
    "PlanAssertions",
    "QueryPlanError",
    "assert_no_full_scan",
    "assert_uses_index",
    "explain",
    "explain_sync",
    "format_failure",
]

# sqlite_master, not sqlite_schema: the older name works on every version.
_TABLES_SQL = (
    "SELECT name FROM sqlite_master WHERE type = 'table' "
    "UNION ALL SELECT name FROM sqlite_temp_master WHERE type = 'table'"
)


class QueryPlanError(AssertionError):
    """A plan assertion failed; the message has the SQL, parameters and plan tree."""

    def __init__(self, message: str, plan: QueryPlan | None = None) -> None:
        super().__init__(message)
        self.plan = plan


def _params_text(params: object) -> str:
    if params is None:
        return "(none: literals inlined in the SQL by SQLite's trace)"
    return repr(tuple(params)) if isinstance(params, list | tuple) else repr(params)


def format_failure(title: str, plan: QueryPlan, hint: str | None = None) -> str:
    """The text of a plan failure: what, the SQL, its parameters, the marked tree."""
    sql = " ".join((plan.sql or "").split())
    body = "\n".join("    " + line for line in plan.render().splitlines())
    lines = [f"memkit: {title}", f"  SQL:    {sql}", f"  params: {_params_text(plan.params)}"]
    lines += ["  plan:", body]
    if hint:
        lines.append(f"  {hint}")
    return "\n".join(lines)


def _is_async_callable(obj: object) -> bool:
    # __wrapped__: aiosqlite wraps its coroutine methods (functools.wraps).
    return any(
        inspect.iscoroutinefunction(f)
        for f in (obj, getattr(obj, "__call__", None), getattr(obj, "__wrapped__", None))  # noqa: B004
    )


def explain_sync(conn: Any, sql: str, params: Any = ()) -> QueryPlan:
    """Explain ``sql`` on a DB-API connection (sqlite3, sqlean, ...)."""
    from abathur_memkit.engines.sqlite.engine import (
        plan_rows,  # not at import: the plugin loads everywhere
    )

    bound = () if params is None else params  # None: literals already in the SQL
    rows = plan_rows(conn, sql, bound)
    tables = [str(r[0]) for r in conn.execute(_TABLES_SQL).fetchall()]
    return parse_plan(rows, sql=sql, params=params, known_tables=tables)


def _pg_plan_rows(conn: Any, sql: str, params: Any) -> list[tuple[int, int, str]]:
    """PostgreSQL's plan of ``sql`` as the assertions judge it: sequential scans off.

    On a test's tiny tables the planner rightly prefers a Seq Scan to any index,
    so the plan it would pick says nothing about the index. With
    ``enable_seqscan`` off (for this read-only snapshot transaction only: SET
    LOCAL ends with it) an index is taken whenever one can serve the query, and
    a Seq Scan is left only where none can: what the assertions ask.
    """
    from abathur_memkit.engines.postgresql.engine import plan_rows  # not at import, as above

    conn.execute("SET LOCAL enable_seqscan = off")
    return plan_rows(conn, sql, params)


async def explain(db: Any, sql: str, params: Any = ()) -> QueryPlan:
    """Explain ``sql`` with ``params`` on ``db`` and return the parsed plan.

    ``params=None`` means the SQL carries its values inline (as the trace gives it).
    """
    bound = () if params is None else params
    db = getattr(db, "__memkit_async__", db)  # a SyncDatabase: its async Database
    if getattr(db, "dialect", None) == "postgresql":
        pg_rows = await db.read(lambda conn: _pg_plan_rows(conn, sql, bound), snapshot=True)
        return parse_plan(pg_rows, sql=sql, params=params, dialect="postgresql")
    query_plan = getattr(db, "query_plan", None)
    fetchall = getattr(db, "fetchall", None)
    if query_plan is not None and fetchall is not None:  # abathur_memkit.Database
        rows: list[Any] = list(await query_plan(sql, bound))
        table_rows = await fetchall(_TABLES_SQL)
        tables = [str(r["name"] if isinstance(r, dict) else r[0]) for r in table_rows]
        return parse_plan(rows, sql=sql, params=params, known_tables=tables)
    execute = getattr(db, "execute", None)
    if execute is None:
        raise TypeError(f"cannot explain on {db!r}: not a Database nor a DB-API connection")
    if not _is_async_callable(execute):
        return explain_sync(db, sql, params)
    # aiosqlite-style: async execute returning a cursor with async fetchall.
    from abathur_memkit.engines.sqlite.engine import RELOAD_SCHEMA  # as plan_rows does

    await execute(RELOAD_SCHEMA)
    cursor = await execute(f"EXPLAIN QUERY PLAN {sql}", bound)
    rows = [tuple(r) for r in await cursor.fetchall()]
    cursor = await execute(_TABLES_SQL)
    tables = [str(r[0]) for r in await cursor.fetchall()]
    return parse_plan(rows, sql=sql, params=params, known_tables=tables)


async def assert_uses_index(
    db: Any, sql: str, params: Any = (), *, index: str, table: str | None = None
) -> QueryPlan:
    """Fail unless the plan SEARCHes through the named index (of ``table``, if given).

    An index used only to SCAN (every entry read, e.g. for ORDER BY or count(*))
    does not pass: that is a full scan wearing an index name.
    """
    __tracebackhide__ = True  # failures point at the test line, not at this helper
    plan = await explain(db, sql, params)
    uses = plan.index_uses(index)
    if table is not None:
        wanted = table.lower()
        uses = [n for n in uses if wanted in {x.lower() for x in (n.table, n.name) if x}]
    if any(n.op is Op.SEARCH for n in uses):
        return plan
    if uses:
        title = f"index {index} is used only to scan (every entry is read), not to search"
    else:
        used = ", ".join(plan.indexes) or "none"
        where = f" on {table}" if table else ""
        title = f"the plan does not use index {index}{where} (indexes used: {used})"
    raise QueryPlanError(format_failure(title, plan), plan)


async def assert_no_full_scan(
    db: Any, sql: str, params: Any = (), *, tables: Iterable[str] | None = None
) -> QueryPlan:
    """Fail if the plan fully scans any table (or any of ``tables``)."""
    __tracebackhide__ = True
    plan = await explain(db, sql, params)
    scans = plan.full_scans(tables)
    if scans:
        raise QueryPlanError(format_failure(_scan_title(scans), plan), plan)
    return plan


def _scan_title(scans: Sequence[PlanNode]) -> str:
    names = sorted({n.target or "?" for n in scans})
    return f"full scan of {', '.join(names)}"


class PlanAssertions:
    """What the ``memkit_plan`` fixture gives: the assertions as methods."""

    explain = staticmethod(explain)
    explain_sync = staticmethod(explain_sync)
    assert_uses_index = staticmethod(assert_uses_index)
    assert_no_full_scan = staticmethod(assert_no_full_scan)

    @staticmethod
    def parse(rows: Iterable[Any], sql: str | None = None, dialect: str = "sqlite") -> QueryPlan:
        """Parse recorded ``EXPLAIN QUERY PLAN`` rows, or PostgreSQL's
        (``query_plan`` rows, ``dialect="postgresql"``); see ``plan.parse_plan``."""
        return parse_plan(rows, sql=sql, dialect=dialect)
