"""Helpers of the reliability tests: hypothesis profiles and a sync Database harness.

Hypothesis profiles (chosen with ``MEMKIT_HYPOTHESIS_PROFILE``):

- ``reliability-ci`` (default): a bounded number of examples per property, no
  deadline (a 2-core CI machine has slow moments), no example database on disk.
- ``reliability-long``: many more examples, for a run by hand.

The profiles are applied per test (``@PROFILE``), not loaded globally, so other
test suites' hypothesis settings are untouched.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from abathur_memkit import Database

T = TypeVar("T")

settings.register_profile(
    "reliability-ci", max_examples=75, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "reliability-long", max_examples=2000, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The settings every property test of this suite runs with.
PROFILE = settings.get_profile(os.environ.get("MEMKIT_HYPOTHESIS_PROFILE", "reliability-ci"))

#: Inputs tried per test, printed at the end of the session (see conftest.py).
TRIED: Counter[str] = Counter()


class Harness:
    """A Database driven from synchronous code (hypothesis tests are sync).

    One event loop for the harness's life, so the Database's connections stay
    bound to it across examples.
    """

    def __init__(self, path: Path) -> None:
        self.runner = asyncio.Runner()
        self.db = Database(path)
        self.run(self.db.initialize())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def close(self) -> None:
        self.run(self.db.close())
        self.runner.close()
