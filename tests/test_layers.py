"""The package's import graph: no cycles, and no module imports a higher layer.

Layers, lowest first: the foundation (errors, values, the engine interface...),
the engines, the services, the ``Database`` facade, then the tools and the CLI;
the pytest plugin sits above the library, which never imports it. Every
import counts, also those under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("abathur_memkit", "pytest_abathur")

# The layer of each module: the longest matching name prefix wins.
LAYERS: dict[str, int] = {
    "abathur_memkit.errors": 0,
    "abathur_memkit.values": 0,
    "abathur_memkit.inputs": 0,
    "abathur_memkit.namespaces": 0,
    "abathur_memkit.rows": 0,
    "abathur_memkit.lifecycle": 0,
    "abathur_memkit.stats": 0,
    "abathur_memkit.machine": 0,
    "abathur_memkit.extras": 0,
    "abathur_memkit.embeddings": 0,
    "abathur_memkit.engines": 1,
    "abathur_memkit.engines.interface": 0,
    "abathur_memkit.sessions": 2,
    "abathur_memkit.memory": 2,
    "abathur_memkit.tasks": 2,
    "abathur_memkit.agents": 2,
    "abathur_memkit.checkpoints": 2,
    "abathur_memkit.metrics": 2,
    "abathur_memkit.audit": 2,
    "abathur_memkit.archive": 2,
    "abathur_memkit.seed": 2,
    "abathur_memkit.baselines": 2,
    "abathur_memkit.search": 2,
    "abathur_memkit.database": 3,
    "abathur_memkit": 3,  # the package's __init__: the public names
    "abathur_memkit.workloads": 4,
    "abathur_memkit.bench": 4,
    "abathur_memkit.analysis": 4,
    "abathur_memkit.cli": 4,
    "abathur_memkit.transfer": 4,
    "pytest_abathur": 5,
}
NAMES = ("foundation", "engine", "service", "facade", "tool", "plugin")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` imports (a package's name for its __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from pkg import mod" imports the module pkg.mod when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # "import a.b.c" names a.b.c or a parent
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer(name: str) -> int:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len,
               default=None)
    if best is None:
        raise AssertionError(f"{name} has no layer: add it to LAYERS in {__file__}")
    return LAYERS[best]


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_every_module_has_a_layer() -> None:
    for name in GRAPH:
        layer(name)


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_module_imports_a_higher_layer(name: str) -> None:
    upward = sorted(t for t in GRAPH[name] if layer(t) > layer(name))
    assert not upward, (
        f"{name} ({NAMES[layer(name)]}) imports a higher layer: "
        + ", ".join(f"{t} ({NAMES[layer(t)]})" for t in upward)
    )


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target):], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_the_graph_sees_imports() -> None:
    # The walk itself: a relative, a TYPE_CHECKING-free absolute and a package import.
    assert "abathur_memkit.engines.sqlite.engine" in GRAPH["abathur_memkit.database"]
    assert "abathur_memkit.errors" in GRAPH["abathur_memkit.memory"]
    assert "abathur_memkit.database" in GRAPH["abathur_memkit"]
