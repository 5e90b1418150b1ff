"""Stress, soak and crash runs: many agents on one file, then proof that nothing was lost.

``run_stress`` starts agents (asyncio tasks) in this process and in worker
processes on the same database file. Each agent does a mixed workload through
the public services (memory add/update/delete/restore/rollback/batch/publish,
event appends, task claims, reads) and keeps a model of what it wrote; agents
also contend on shared keys, a shared session and the task queue. Afterwards
``verify_stress`` checks the database against every agent's model and
``structural_checks`` checks the invariants that must hold in *any* state the
database can be seen in (versions gapless, one audit row per memory write,
soft deletes backed by their audit rows, events gapless, each claim audited
once, batches all-or-nothing, counters equal to their state).

``run_crash`` SIGKILLs worker processes at random points, many of them inside
a write transaction, and after every kill opens the database and runs
``integrity_check``, the foreign-key check and ``structural_checks``.

One module per job: ``checks`` (the invariants and the model comparison),
``workload`` (the agents), ``runner`` (stress and soak runs), ``crash`` (the
SIGKILL harness). Used by ``memkit stress``, ``memkit soak`` and ``memkit
crash`` and by ``tests/reliability``. Worker processes run
``python -m abathur_memkit.workloads.stress``.
"""

from .checks import structural_checks, verify_stress
from .crash import CrashConfig, run_crash
from .runner import run_stress
from .workload import StressConfig

__all__ = [
    "CrashConfig",
    "StressConfig",
    "run_crash",
    "run_stress",
    "structural_checks",
    "verify_stress",
]
