"""Fixtures of the reliability tests (helpers live in reliability_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_support import TRIED, Harness


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One file database for a module's property tests, driven synchronously."""
    h = Harness(tmp_path_factory.mktemp("reliability") / "harness.db")
    try:
        yield h
    finally:
        h.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TRIED:
        total = sum(TRIED.values())
        terminalreporter.write_line(
            f"reliability: {total} generated inputs tried "
            f"({', '.join(f'{k} {v}' for k, v in sorted(TRIED.items()))})")
