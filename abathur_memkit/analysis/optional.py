"""The optional libraries the analysis toolkit needs, imported on first use.

pandas and matplotlib are not dependencies of ``abathur-memkit`` itself: they
come with the ``notebooks`` extra. Importing ``abathur_memkit.analysis`` works
without them; calling a function that needs one raises
``MissingDependencyError`` saying what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ..errors import MemkitError

__all__ = [
    "INSTALL_HINT",
    "MissingDependencyError",
    "dates",
    "new_figure",
    "pandas",
    "require",
]

INSTALL_HINT = "pip install 'abathur-memkit[notebooks]'"


class MissingDependencyError(MemkitError, ImportError):
    """An optional library of the ``notebooks`` extra is not installed."""


def require(module: str, purpose: str = "abathur_memkit.analysis") -> ModuleType:
    """Import ``module`` (of the ``notebooks`` extra), or say what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: {INSTALL_HINT}"
        ) from exc


def pandas() -> Any:
    """The ``pandas`` module."""
    return require("pandas")


def dates() -> Any:
    """The ``matplotlib.dates`` module."""
    return require("matplotlib.dates")


def new_figure(width: float = 8.0, height: float = 4.5) -> Any:
    """A matplotlib ``Figure`` drawn by the Agg backend (no pyplot, no global state).

    Figures made this way are never registered with pyplot, so a loop that
    makes many of them leaks nothing; ``fig.savefig`` renders with Agg, and
    Jupyter shows them inline (``%matplotlib inline`` registers the formatter).
    """
    figure = require("matplotlib.figure")
    agg = require("matplotlib.backends.backend_agg")
    fig = figure.Figure(figsize=(width, height), layout="constrained")
    agg.FigureCanvasAgg(fig)
    return fig
