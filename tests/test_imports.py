"""The package's import graph, read from the source (function-local imports included): no cycles, and the layers
import one way (the zoo knows no weights files; nothing below the tasks imports a task; no task imports
another)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mobilenets"


def _module_name(path: Path) -> str:
    parts = ["mobilenets", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """The modules of the package that `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = f"{base}.{node.module}" if node.level and node.module else base if node.level else node.module
            for alias in node.names:  # `from . import x` imports the submodule x when there is one
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    return next((found for module in sorted(GRAPH) if module not in state and (found := visit(module))), None)


def test_the_graph_is_read():
    assert "mobilenets.engine" in GRAPH["mobilenets.tasks.classification.task"]
    assert "mobilenets.tasks" in GRAPH["mobilenets.serve.servable"]
    assert "mobilenets.engine.loop" in GRAPH["mobilenets.deploy.qat"]
    assert "mobilenets.weights.io" in GRAPH["mobilenets.factory"]


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle() or [])


# the layers below the tasks may use the registry (`mobilenets.tasks`), never a task's package
BELOW_THE_TASKS = ("mobilenets.models", "mobilenets.weights", "mobilenets.data", "mobilenets.engine",
                   "mobilenets.deploy", "mobilenets.serve", "mobilenets.experiments")
TASKS = ("mobilenets.tasks.classification", "mobilenets.tasks.detection")


@pytest.mark.parametrize(("importer", "forbidden"), [
    ("mobilenets.models", "mobilenets.weights"),
    ("mobilenets.data", "mobilenets.engine"),
    *((layer, "mobilenets.tasks.") for layer in BELOW_THE_TASKS),
    *((task, other) for task in TASKS for other in TASKS if other != task),
])
def test_layers_import_one_way(importer, forbidden):
    offenders = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if m.startswith(importer)
                       for t in targets if t.startswith(forbidden))
    assert not offenders, offenders


def test_no_module_outside_a_task_names_its_model():
    """A task is looked up in the registry, not recognised by its network's name (prose may still name it)."""
    for path in PACKAGE.rglob("*.py"):
        if "tasks/detection" not in path.as_posix():
            assert '"centernet"' not in path.read_text(), path
