"""Analysis toolkit: benchmark, audit and memory data in pandas, a capacity model, plots.

pandas and matplotlib come with the ``notebooks`` extra
(``pip install 'abathur-memkit[notebooks]'``); this package imports without
them and says what to install when a function needs one.

In a notebook::

    from abathur_memkit import analysis

    bench = analysis.load_benchmarks("memkit-demo/bench/*.json")
    audit = analysis.load_audit_sync("memkit-demo/agents.db")   # or: await analysis.load_audit(db)
    growth = analysis.memory_growth("memkit-demo/agents.db")
    projection = analysis.capacity_projection(growth, limit_gb=10)
    analysis.plot_capacity(projection)
"""

from .activity import memory_operations, memory_writes, top_namespaces, writers
from .benchmarks import latest_run, load_benchmarks
from .capacity import CapacityProjection, capacity_projection
from .growth import memory_growth
from .loaders import (
    load_audit,
    load_audit_sync,
    load_events,
    load_events_sync,
    load_memories,
    load_memories_sync,
    load_metrics,
    load_metrics_sync,
    load_sessions,
    load_sessions_sync,
    load_table,
    load_table_sync,
)
from .optional import INSTALL_HINT, MissingDependencyError
from .plots import (
    plot_capacity,
    plot_growth,
    plot_latency,
    plot_memory_operations,
    plot_operation_latency,
    plot_ratios,
    plot_runs,
    plot_storage,
    plot_top_namespaces,
    plot_writers,
)
from .regressions import compare_runs, describe_comparison, detect_regressions
from .sources import NotebookInputs, notebook_inputs
from .storage import storage_breakdown

__all__ = [
    "INSTALL_HINT",
    "CapacityProjection",
    "MissingDependencyError",
    "NotebookInputs",
    "capacity_projection",
    "compare_runs",
    "describe_comparison",
    "detect_regressions",
    "latest_run",
    "load_audit",
    "load_audit_sync",
    "load_benchmarks",
    "load_events",
    "load_events_sync",
    "load_memories",
    "load_memories_sync",
    "load_metrics",
    "load_metrics_sync",
    "load_sessions",
    "load_sessions_sync",
    "load_table",
    "load_table_sync",
    "memory_growth",
    "memory_operations",
    "memory_writes",
    "notebook_inputs",
    "plot_capacity",
    "plot_growth",
    "plot_latency",
    "plot_memory_operations",
    "plot_operation_latency",
    "plot_ratios",
    "plot_runs",
    "plot_storage",
    "plot_top_namespaces",
    "plot_writers",
    "storage_breakdown",
    "top_namespaces",
    "writers",
]
