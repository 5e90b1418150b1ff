"""The query guard: capture every statement code runs, fail on full scans.

SQLite's trace callback reports each statement as it starts, with its bound
parameters expanded into literals; the guard explains each distinct captured
statement that can read a table (SELECT, WITH, UPDATE, DELETE, INSERT ...
SELECT) and fails on any full scan of a table not explicitly allowed.

``async with QueryGuard(db):`` works on any ``abathur_memkit.Database``.
``with QueryGuard(db):`` works inside async tests too, but it cannot await, so
the trace must already be installed (the ``memkit_db`` fixtures do that when a
test asks for ``memkit_query_guard``) and the plans are read through a private
read-only connection to the same file.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

from .assertions import QueryPlanError, explain, explain_sync
from .plan import PlanNode, QueryPlan

__all__ = [
    "GuardReport",
    "GuardViolation",
    "QueryGuard",
    "QueryGuardError",
    "install_trace",
    "remove_trace",
]

_EXPLAINABLE = frozenset({"SELECT", "WITH", "UPDATE", "DELETE", "INSERT", "REPLACE", "VALUES"})
_FIRST_WORD = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*([A-Za-z]+)", re.DOTALL)


class QueryGuardError(QueryPlanError):
    """The guarded code ran a statement that fully scans a table."""


class _Dispatcher:
    """The one trace callback installed per Database; fans out to active guards.

    Called from the connections' worker threads: the sink list is swapped, never
    mutated in place, so a callback never sees it half-changed.
    """

    def __init__(self) -> None:
        self.sinks: tuple[list[str], ...] = ()
        self._lock = threading.Lock()

    def __call__(self, sql: str) -> None:
        for sink in self.sinks:
            sink.append(sql)

    def add(self, sink: list[str]) -> None:
        with self._lock:
            self.sinks = (*self.sinks, sink)

    def remove(self, sink: list[str]) -> None:
        with self._lock:
            self.sinks = tuple(s for s in self.sinks if s is not sink)


_DISPATCHERS: weakref.WeakKeyDictionary[Any, _Dispatcher] = weakref.WeakKeyDictionary()


async def install_trace(db: Any) -> None:
    """Install the guard's trace callback on ``db`` (idempotent).

    SQLite has one trace callback per connection: this replaces any other.
    """
    if db not in _DISPATCHERS:
        dispatcher = _Dispatcher()
        await db.set_trace_callback(dispatcher)
        _DISPATCHERS[db] = dispatcher


async def remove_trace(db: Any) -> None:
    if _DISPATCHERS.pop(db, None) is not None:
        await db.set_trace_callback(None)


def _explainable(sql: str) -> bool:
    m = _FIRST_WORD.match(sql)
    return m is not None and m.group(1).upper() in _EXPLAINABLE


@dataclass
class GuardViolation:
    sql: str
    plan: QueryPlan
    scans: list[PlanNode]


@dataclass
class GuardReport:
    """What a guard saw: scans that fail, scans allowed, statements it could not explain."""

    violations: list[GuardViolation] = field(default_factory=list)
    allowed: list[GuardViolation] = field(default_factory=list)
    unexplained: dict[str, str] = field(default_factory=dict)
    explained: int = 0


class QueryGuard:
    """Capture the statements run on ``db`` inside the block; fail on full scans.

    ``allow`` maps table names to the reason their scans are acceptable.
    """

    def __init__(self, db: Any, *, allow: Mapping[str, str] | None = None) -> None:
        for table, reason in (allow or {}).items():
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError(f"allowing scans of {table!r} needs a reason")
        self.db = db
        self.allow = {t.lower(): r for t, r in (allow or {}).items()}
        self.statements: list[str] = []
        self.report = GuardReport()
        self._installed_here = False

    # -- capture -------------------------------------------------------------

    def start(self) -> None:
        """Start capturing; the trace must be installed (see ``install_trace``)."""
        dispatcher = _DISPATCHERS.get(self.db)
        if dispatcher is None:
            raise RuntimeError(
                "the query trace is not installed on this database: use "
                "`async with memkit_query_guard(db):`, or a memkit_db fixture"
            )
        dispatcher.add(self.statements)

    def stop(self) -> None:
        dispatcher = _DISPATCHERS.get(self.db)
        if dispatcher is not None:
            dispatcher.remove(self.statements)

    def _distinct(self) -> list[str]:
        return [s for s in dict.fromkeys(self.statements) if _explainable(s)]

    # -- checking --------------------------------------------------------------

    def _classify(self, sql: str, plan: QueryPlan) -> None:
        scans = plan.full_scans()
        if not scans:
            return
        allowed = [n for n in scans if self._allowed(n)]
        bad = [n for n in scans if not self._allowed(n)]
        if bad:
            self.report.violations.append(GuardViolation(sql, plan, bad))
        if allowed:
            self.report.allowed.append(GuardViolation(sql, plan, allowed))

    def _allowed(self, node: PlanNode) -> bool:
        names = {x.lower() for x in (node.table, node.name, node.alias) if x}
        return bool(names & self.allow.keys())

    async def check(self) -> GuardReport:
        """Explain what was captured (through ``db``) and fill ``report``."""
        for sql in self._distinct():
            try:
                plan = await explain(self.db, sql, None)
            except Exception as exc:  # the driver's own errors: temp objects, dropped tables
                self.report.unexplained[sql] = str(exc)
                continue
            self.report.explained += 1
            self._classify(sql, plan)
        return self.report

    def check_sync(self) -> GuardReport:
        """Like ``check``, through a private read-only connection to the file."""
        path = getattr(self.db, "path", ":memory:")
        if getattr(self.db, "in_memory", False) or path == ":memory:":
            raise RuntimeError(
                "`with memkit_query_guard(db)` needs a file database; "
                "use `async with` for ':memory:'"
            )
        module = self.db.driver.module
        conn = module.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            for sql in self._distinct():
                try:
                    plan = explain_sync(conn, sql, ())
                except module.Error as exc:
                    self.report.unexplained[sql] = str(exc)
                    continue
                self.report.explained += 1
                self._classify(sql, plan)
        finally:
            conn.close()
        return self.report

    def raise_for_violations(self) -> None:
        __tracebackhide__ = True
        violations = self.report.violations
        if not violations:
            return
        tables = sorted({n.target or "?" for v in violations for n in v.scans})
        parts = [
            f"memkit: the query guard saw {len(violations)} statement(s) "
            f"that fully scan {', '.join(tables)}"
        ]
        for v in violations[:5]:
            sql = " ".join(v.sql.split())
            reasons = "; ".join(f"{n.target}: {n.full_scan_reason}" for n in v.scans)
            tree = "\n".join("    " + line for line in v.plan.render().splitlines())
            parts.append(
                f"\n  SQL:    {sql}\n  params: (inlined by SQLite's trace)\n"
                f"  why:    {reasons}\n  plan:\n{tree}"
            )
        if len(violations) > 5:
            parts.append(f"\n  ... and {len(violations) - 5} more")
        example = tables[0]
        parts.append(
            f"\n  add an index, or allow it: "
            f'@pytest.mark.memkit_allow_scan("{example}", reason="...")'
        )
        raise QueryGuardError("\n".join(parts), violations[0].plan)

    # -- context managers -------------------------------------------------------

    async def __aenter__(self) -> QueryGuard:
        if self.db not in _DISPATCHERS:
            await install_trace(self.db)
            self._installed_here = True
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        self.stop()
        try:
            if exc_type is None:
                await self.check()
        finally:
            if self._installed_here:
                await remove_trace(self.db)
        if exc_type is None:
            self.raise_for_violations()

    def __enter__(self) -> QueryGuard:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        self.stop()
        if exc_type is None:
            self.check_sync()
            self.raise_for_violations()
