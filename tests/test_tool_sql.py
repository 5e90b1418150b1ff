"""Tools and the CLI leave the services' tables to the services.

Every SQL string in ``abathur_memkit/cli``, ``bench`` and ``analysis`` is read
from the source (string constants and the literal parts of f-strings); one
that reads or writes a service's table must live in the analysis read model or
be one of the listed exceptions, each with its reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import abathur_memkit

PACKAGE = Path(abathur_memkit.__file__).parent
TOOLS = ("cli", "bench", "analysis", "workloads")
SERVICE_TABLES = (
    "agents", "app_states", "audit", "checkpoints", "chunks_vectors", "document_chunks",
    "document_chunks_fts", "document_index", "memories_vectors", "memory_entries", "memory_fts",
    "memory_heads", "memory_namespaces", "memory_search_items", "memory_search_queue", "metrics",
    "session_events", "sessions", "state", "tasks", "user_states", "vector_garbage",
    "vector_indexes",
)
_SQL = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN)\s+\"?(" + "|".join(SERVICE_TABLES) + r")\b\"?(?!\()"
)
#: The analysis toolkit's one read model: its loaders hand whole tables to pandas.
READ_MODEL = "analysis/queries.py"
#: Left as they are, and why.
EXCEPTIONS = {
    # Its own tables in the peer stores' databases, not memkit's.
    "bench/peers.py": {"sessions"},
    # The search service's tables: they move with search/ (documents and search as one).
    "bench/ingest.py": {"document_chunks"},
    "bench/quality.py": {"document_chunks", "document_index", "chunks_vectors"},
    # The statements a crash test kills the process inside: text to match, never run.
    "workloads/stress/crash.py": {"audit", "session_events", "memory_entries", "sessions"},
}


def _strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _tables_named(path: Path) -> set[str]:
    text = " ".join(_strings(path))  # adjacent literals of one statement meet here
    return {m.group(1) for m in _SQL.finditer(text)}


def test_tools_query_no_service_table() -> None:
    # memkit stats counted rows with its own SQL; bench core and scope wrote
    # theirs; the analysis loaders kept theirs beside the pandas code.
    found: dict[str, set[str]] = {}
    for folder in TOOLS:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            name = path.relative_to(PACKAGE).as_posix()
            tables = _tables_named(path) - EXCEPTIONS.get(name, set())
            if tables and name != READ_MODEL:
                found[name] = tables
    assert found == {}


def test_the_check_sees_sql() -> None:
    # The read model and the listed exceptions do name the tables they are excused for.
    assert {"audit", "memory_entries", "sessions", "session_events"} <= _tables_named(
        PACKAGE / READ_MODEL)
    for name, tables in EXCEPTIONS.items():
        assert tables <= _tables_named(PACKAGE / name), name
