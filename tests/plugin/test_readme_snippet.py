"""The README's plugin snippet passes as copied, in pytest-asyncio's strict and auto modes."""

from __future__ import annotations

import pytest
from readme_snippets import readme_plugin_snippet


@pytest.mark.parametrize("mode", ["strict", "auto", None])
def test_readme_snippet_passes_as_copied(pytester: pytest.Pytester, mode: str | None) -> None:
    # A new project: no conftest, no memkit settings; None = no ini at all (strict).
    if mode is not None:
        pytester.makeini(f"[pytest]\nasyncio_mode = {mode}\n")
    pytester.makepyfile(test_memkit=readme_plugin_snippet())
    # Gates on VM steps only: wall-time gates on a shared CI machine would be noise.
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--memkit-autosave=no", "--memkit-gates=vm"
    )
    result.assert_outcomes(passed=3)
