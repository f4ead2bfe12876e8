"""runner/ has no import cycle, and the readers of records never import the matrix.

The graph is read with ``ast`` from the source, not from ``sys.modules``: every
``import``/``from ... import`` anywhere in a module counts, at module level or inside a
function (a function-local import that closes a cycle only defers it to run time). A
``from P import name`` is an edge to the module ``P.name`` when that is one, else to ``P``;
importing a submodule runs its packages' ``__init__`` too, so those are edges as well.

The twins build the same graph of a small package written to a temporary directory and
prove the checker sees what it must: a cycle closed by a function-local import, a
relative import, and a reach of the matrix through a module in between.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent.parent / "runner"

# Modules that read records, results and scenarios: none may import the matrix's planning
# and execution (runner.matrix), not even through another module.
READERS = ("runner.report", "runner.explain", "runner.merge", "runner.gate")


def _module_names(package: Path) -> dict[str, Path]:
    """Dotted name → file of every module of ``package`` (a directory with __init__.py)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of ``package`` → the modules of ``package`` it imports (anywhere in its
    source, function-local imports included); no module is its own edge."""
    modules = _module_names(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets.update(_with_parents(alias.name))
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's own package, up level - 1
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets.update(_with_parents(source))
                targets.update(f"{source}.{alias.name}" for alias in node.names
                               if f"{source}.{alias.name}" in modules)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def reach(graph: Mapping[str, Iterable[str]], start: str, target: str) -> list[str] | None:
    """The import chain from ``start`` to ``target`` (both included), or None."""
    seen = {start}
    chains = [[start]]
    while chains:
        chain = chains.pop(0)
        for nxt in sorted(graph.get(chain[-1], ())):
            if nxt == target:
                return [*chain, nxt]
            if nxt not in seen:
                seen.add(nxt)
                chains.append([*chain, nxt])
    return None


# ------------------------------------------------------------------------------ runner/


def test_the_graph_holds_module_level_and_function_local_imports() -> None:
    """The checker is not vacuous: it sees runner's modules, their module-level imports and
    a function-local one (cli imports the report, and its pandas, only when it writes one)."""
    graph = import_graph(RUNNER)
    assert {"runner.cli", "runner.matrix", "runner.report", "runner._worker.worker"} <= set(graph)
    assert "runner.matrix" in graph["runner.cli"]  # from runner import ..., matrix, ... (module level)
    assert "runner.report" in graph["runner.cli"]  # from runner import report (inside a function)
    assert "runner.records" in graph["runner.report"]


def test_runner_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(RUNNER))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("reader", READERS)
def test_readers_of_records_never_import_the_matrix(reader: str) -> None:
    chain = reach(import_graph(RUNNER), reader, "runner.matrix")
    assert chain is None, f"{reader} imports the matrix: " + " -> ".join(chain or [])


# ------------------------------------------------------------------------ the twins


def _package(root: Path, files: Mapping[str, str]) -> Path:
    pkg = root / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text, encoding="utf-8")
    return pkg


def test_twin_a_cycle_closed_by_a_function_local_import_is_found(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "a.py": "from pkg import b\n",
        "b.py": "def late():\n    from pkg.a import thing\n    return thing\n",
        "c.py": "import pkg.a\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg", "pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


def test_twin_a_relative_import_cycle_is_found(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "sub/__init__.py": "",
        "sub/x.py": "from .. import y\n",
        "y.py": "def f():\n    from .sub.x import g\n",
    })
    graph = import_graph(pkg)
    assert "pkg.y" in graph["pkg.sub.x"] and "pkg.sub.x" in graph["pkg.y"]
    assert find_cycle(graph) is not None


def test_twin_an_acyclic_package_passes(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "a.py": "from pkg import b\n",
        "b.py": "def f():\n    import pkg.c\n",
        "c.py": "import os\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg", "pkg.c"} and find_cycle(graph) is None


def test_twin_a_reader_reaching_the_matrix_through_another_module_is_found(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "report.py": "from pkg import cells\n",
        "cells.py": "def f():\n    from pkg.matrix import run\n",
        "matrix.py": "from pkg.cells import f\n",
    })
    graph = import_graph(pkg)
    assert reach(graph, "pkg.report", "pkg.matrix") == ["pkg.report", "pkg.cells", "pkg.matrix"]
    assert reach(graph, "pkg.matrix", "pkg.report") is None
