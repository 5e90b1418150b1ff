"""pytest plugin for abathur-memkit: fixtures, query-plan assertions, latency gates.

The plugin registers itself (entry point ``pytest11: memkit``); the names here
are for code that wants the pieces without fixtures.
"""

from .assertions import QueryPlanError, assert_no_full_scan, assert_uses_index, explain
from .guard import QueryGuard, QueryGuardError
from .latency import LatencyGateError, LatencyGateWarning, LatencyStats, MemkitBaselineWarning
from .plan import Op, PlanNode, QueryPlan, parse_plan
from .sync import SyncDatabase

__version__ = "0.1.0"

__all__ = [
    "LatencyGateError",
    "LatencyGateWarning",
    "LatencyStats",
    "MemkitBaselineWarning",
    "Op",
    "PlanNode",
    "QueryGuard",
    "QueryGuardError",
    "QueryPlan",
    "QueryPlanError",
    "SyncDatabase",
    "__version__",
    "assert_no_full_scan",
    "assert_uses_index",
    "explain",
    "parse_plan",
]
