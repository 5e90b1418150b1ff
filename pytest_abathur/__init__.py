"""pytest plugin for abathur-memkit: fixtures, query-plan assertions, latency gates.

The plugin registers itself (entry point ``pytest11: memkit``); the names here
are for code that wants the pieces without fixtures.
"""

from typing import TYPE_CHECKING, Any

from .assertions import QueryPlanError, assert_no_full_scan, assert_uses_index, explain
from .guard import QueryGuard, QueryGuardError
from .latency import LatencyGateError, LatencyGateWarning, MemkitBaselineWarning
from .plan import Op, PlanNode, QueryPlan, parse_plan
from .sync import SyncDatabase

if TYPE_CHECKING:
    from abathur_memkit.stats import LatencyStats

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # LatencyStats is the library's: loading the plugin must not import abathur_memkit.
    if name == "LatencyStats":
        from abathur_memkit.stats import LatencyStats

        return LatencyStats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
