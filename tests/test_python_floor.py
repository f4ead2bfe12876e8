"""Code that runs inside the stacks must stay Python 3.7 and stdlib-only at import.

``runner/_worker/``, ``scenarios/``, ``runner/judge.py`` (a repro's compat_judge.py) and
``tests/fakes/`` (when it exists) execute under the stack's interpreter, which can be as
old as 3.7 (TF 1.15). Checked statically here:

* parses with ``feature_version=(3, 7)`` (walrus, positional-only parameters, ``match``,
  ``f"{x=}"``, parenthesised context managers, ``except*`` are all rejected), plus an
  explicit AST walk for the same nodes;
* no annotations at all unless the module has ``from __future__ import annotations``
  (so ``X | Y`` and ``list[int]`` can never be evaluated at runtime), and no runtime
  subscripting of builtins such as ``list[int]`` anywhere;
* the worker imports only standard-library modules at module level (and none that
  appeared after 3.7).

The checker itself is exercised on bad snippets so that it demonstrably can fail.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FLOOR = (3, 7)
FLOOR_DIRS = [REPO / "runner" / "_worker", REPO / "scenarios", REPO / "tests" / "fakes"]
WORKER_DIR = REPO / "runner" / "_worker"

# Standard-library modules that do not exist in Python 3.7.
NEWER_STDLIB = {"graphlib", "tomllib", "zoneinfo", "_zoneinfo", "importlib.metadata",
                "importlib.resources.abc", "wsgiref.types"}
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}


# Host modules that also run inside a stack: a repro copies judge.py beside the worker.
FLOOR_FILES = [REPO / "runner" / "judge.py"]


def _floor_files() -> list[Path]:
    files: list[Path] = list(FLOOR_FILES)
    for d in FLOOR_DIRS:
        if d.is_dir():
            files += sorted(p for p in d.rglob("*.py") if "__pycache__" not in p.parts)
    return files


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO))


def floor_violations(source: str, filename: str = "<src>") -> list[str]:
    """Every reason ``source`` would not run on Python 3.7 (empty when it is fine)."""
    try:
        tree = ast.parse(source, filename=filename, feature_version=FLOOR)
    except SyntaxError as exc:
        return [f"{filename}:{exc.lineno}: not Python {FLOOR[0]}.{FLOOR[1]} syntax: {exc.msg}"]
    future_annotations = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body)
    problems = []
    # Under the future import annotations are strings, never evaluated: skip them.
    unevaluated: set[int] = set()
    if future_annotations:
        for node in ast.walk(tree):
            anns: list[ast.expr | None] = []
            if isinstance(node, ast.AnnAssign):
                anns.append(node.annotation)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                anns.append(node.returns)
            elif isinstance(node, ast.arg):
                anns.append(node.annotation)
            for ann in anns:
                if ann is not None:
                    unevaluated.update(id(n) for n in ast.walk(ann))

    def bad(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.NamedExpr):
            bad(node, "walrus operator (3.8+)")
        elif isinstance(node, ast.Match):
            bad(node, "match statement (3.10+)")
        elif isinstance(node, ast.TryStar):
            bad(node, "except* (3.11+)")
        elif isinstance(node, ast.arguments) and node.posonlyargs:
            bad(node, "positional-only parameters (3.8+)")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id in BUILTIN_GENERICS and id(node) not in unevaluated:
            bad(node, f"subscripted builtin {node.value.id}[...] (3.9+ at runtime)")
        if not future_annotations:
            if isinstance(node, ast.AnnAssign):
                bad(node, "variable annotation evaluated at runtime")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                params = [*args.posonlyargs, *args.args, *args.kwonlyargs,
                          *([args.vararg] if args.vararg else []),
                          *([args.kwarg] if args.kwarg else [])]
                if node.returns is not None or any(a.annotation is not None for a in params):
                    bad(node, f"annotations on {node.name}() evaluated at runtime")
    return problems


def _module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Modules imported at module level (including inside top-level if/try blocks)."""
    found: list[tuple[int, str]] = []

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.append((node.lineno, "." * node.level + (node.module or "")))
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def non_stdlib_imports(source: str, filename: str = "<src>") -> list[str]:
    tree = ast.parse(source, filename=filename)
    problems = []
    for lineno, name in _module_level_imports(tree):
        top = name.split(".")[0]
        if name.startswith("."):
            problems.append(f"{filename}:{lineno}: relative import {name!r} "
                            "(the worker is executed by path)")
        elif top not in sys.stdlib_module_names:
            problems.append(f"{filename}:{lineno}: non-stdlib module {name!r}")
        elif name in NEWER_STDLIB or top in NEWER_STDLIB:
            problems.append(f"{filename}:{lineno}: {name!r} is not in Python 3.7")
    return problems


# ------------------------------------------------------------------------- the code


def test_there_is_code_to_check() -> None:
    files = [_rel(p) for p in _floor_files()]
    assert "runner/_worker/worker.py" in files
    assert any(f.startswith("scenarios/") for f in files)


@pytest.mark.parametrize("path", _floor_files(), ids=_rel)
def test_runs_on_python_37(path: Path) -> None:
    assert floor_violations(path.read_text(encoding="utf-8"), _rel(path)) == []


@pytest.mark.parametrize("path", sorted(WORKER_DIR.rglob("*.py")), ids=_rel)
def test_worker_imports_only_stdlib_at_module_level(path: Path) -> None:
    assert non_stdlib_imports(path.read_text(encoding="utf-8"), _rel(path)) == []


def test_worker_imports_something() -> None:
    tree = ast.parse((WORKER_DIR / "worker.py").read_text(encoding="utf-8"))
    names = {n for _, n in _module_level_imports(tree)}
    assert {"json", "os", "sys"} <= names  # the import walk really sees the imports


# ------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize("snippet", [
    "if (n := 3):\n    pass\n",
    "def f(a, /, b):\n    pass\n",
    "match x:\n    case 1:\n        pass\n",
    "print(f'{x=}')\n",
    "with (open('a') as f, open('b') as g):\n    pass\n",
    "try:\n    pass\nexcept* ValueError:\n    pass\n",
    "def f(x: int | None) -> list[int]:\n    return []\n",
    "def f(x: int):\n    pass\n",
    "def f() -> int:\n    return 1\n",
    "def f(*a: int, **k: str):\n    pass\n",
    "x: int = 1\n",
    "Alias = dict[str, int]\n",
    "isinstance(x, tuple[int, ...])\n",
], ids=["walrus", "posonly", "match", "fstring_eq", "paren_with", "except_star",
        "union_annotation", "param_annotation", "return_annotation", "star_annotation",
        "ann_assign", "generic_alias", "generic_isinstance"])
def test_checker_rejects(snippet: str) -> None:
    assert floor_violations(snippet) != []


def test_checker_accepts_37_code() -> None:
    ok = (
        "from __future__ import print_function\n"
        "import json\n"
        "def f(a, b=1, *args, c, **kw):\n"
        "    x = [i for i in range(3)]\n"
        "    return '{}'.format(x), f'{a}'\n"
        "class C(object):\n"
        "    async def g(self):\n"
        "        return typing.List[int]\n"
    )
    assert floor_violations(ok) == []


def test_checker_allows_annotations_under_future_import() -> None:
    src = ("from __future__ import annotations\n"
           "def f(x: int | None, *a: tuple[int, ...]) -> list[int]:\n"
           "    y: dict[str, int] = {}\n"
           "    return []\n")
    assert floor_violations(src) == []
    # ...but a runtime use of list[int] is still evaluated
    assert floor_violations(src + "Alias = list[int]\n") != []


@pytest.mark.parametrize(("snippet", "ok"), [
    ("import os, sys\nfrom collections import OrderedDict\n", True),
    ("from __future__ import print_function\nimport importlib.util\n", True),
    ("import numpy as np\n", False),
    ("try:\n    import tensorflow\nexcept ImportError:\n    pass\n", False),
    ("if True:\n    from keras import layers\n", False),
    ("from . import helpers\n", False),
    ("import tomllib\n", False),
    ("import importlib.metadata\n", False),
    ("def f():\n    import numpy\n", True),  # inside a function: the documented pattern
])
def test_stdlib_checker(snippet: str, ok: bool) -> None:
    assert (non_stdlib_imports(snippet) == []) is ok


# ------------------------------------------------ a real 3.7 interpreter, when present


@pytest.fixture(scope="module")
def python37() -> str:
    from runner.stacks import find_python

    found = find_python("3.7")
    if found is None:
        pytest.skip("no Python 3.7 interpreter here (COMPAT_PYTHON_3_7, PATH, pyenv or uv)")
    return found


def test_compiles_and_imports_under_a_real_python37(python37: str, tmp_path: Path) -> None:
    import subprocess

    files = [str(p) for p in _floor_files()]
    compiled = subprocess.run(
        [python37, "-I", "-c",
         "import sys\nfor p in sys.argv[1:]:\n    compile(open(p, encoding='utf-8').read(), p, 'exec')",
         *files], capture_output=True, text=True, timeout=60, check=False)
    assert compiled.returncode == 0, compiled.stderr
    # the worker's module-level code runs on 3.7: with no arguments it prints its usage, exit 2
    usage = subprocess.run([python37, "-I", str(WORKER_DIR / "worker.py")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=False)
    assert usage.returncode == 2, usage.stderr
    assert "usage: worker.py" in usage.stderr
