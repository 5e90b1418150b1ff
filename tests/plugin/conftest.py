"""The plugin's own tests run throwaway test suites with pytester (registered in
tests/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

# In-process pytester runs drop the modules they imported when they end, and
# numpy (imported by the embedders) and matplotlib cannot be imported twice in one process:
# import the heavy modules here, once, before any inner run. Hypothesis' plugin,
# when installed, imports hypothesis at each run's end (about 1 s) otherwise.
with contextlib.suppress(ImportError):
    import abathur_memkit.embeddings  # noqa: F401
with contextlib.suppress(ImportError):
    import hypothesis.internal.observability  # noqa: F401
with contextlib.suppress(ImportError):  # --memkit-histogram imports it in inner runs
    import matplotlib.pyplot  # noqa: F401


INI = """[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error::ResourceWarning
    error::pytest.PytestUnraisableExceptionWarning
{extra}
"""


@pytest.fixture
def ini(pytester: pytest.Pytester) -> Callable[..., None]:
    """Write the throwaway project's pytest.ini: ``ini(mode="strict", memkit_rounds="5")``."""

    def write(mode: str = "auto", **options: str) -> None:
        extra = "\n".join(f"{k} = {v}" for k, v in options.items())
        pytester.makeini(INI.format(mode=mode, extra=extra))

    return write


@pytest.fixture
def suite(pytester: pytest.Pytester, ini: Callable[..., None]) -> pytest.Pytester:
    """A pytester project in asyncio auto mode that fails on unclosed connections."""
    ini()
    return pytester
