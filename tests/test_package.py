"""``pip install .`` gives a ``compat-matrix`` command that works outside the checkout.

The wheel is built from a copy of the package's sources (so the checkout gets no build/),
installed into a fresh venv, and run from an unrelated directory: it must carry the
catalog, the worker and the scenarios, and keep the exact exit codes CI relies on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.envs import find_uv

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = find_uv()
    if uv is None:
        pytest.skip("uv not found: it builds and installs the wheel")
    root = tmp_path_factory.mktemp("package")
    src = root / "src"
    for name in ("runner", "scenarios"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run([*uv, "build", "--wheel", "-q", "-o", str(root / "dist"), str(src)],
                   check=True, env=env, capture_output=True)
    [wheel] = (root / "dist").glob("*.whl")
    venv = root / "venv"
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    subprocess.run([*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
                   check=True, env=env, capture_output=True)
    return venv / "bin" / "compat-matrix"


def _run(cmd: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(cmd), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_console_command_carries_catalog_worker_and_scenarios(installed: Path, tmp_path: Path) -> None:
    res = _run(installed, "stacks", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)) >= 33
    probe = ("import runner, runner.scenario_catalog as m, runner.execute as e; "
             "print(runner.__file__); print(m.DEFAULT_SCENARIOS); print(e.WORKER_PATH); "
             "print(len(m.discover_scenarios()))")
    out = subprocess.run([str(installed.parent / "python"), "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert str(REPO) not in " ".join(out)  # the installed copy, not the checkout
    assert out[1].endswith("runner/scenarios") and Path(out[2]).is_file() and int(out[3]) >= 17


def test_exit_codes_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    bad = _run(installed, "check", "missing.h5", "--stacks", "tf2.15", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("runner: error: "), bad.stderr
    from runner.report import JSON_COLUMNS

    base = tmp_path / "base.json"
    base.write_text(json.dumps({"schema_version": 2, "columns": JSON_COLUMNS, "stacks": {}, "errors": [],
                                "cells": []}))
    gate = _run(installed, "gate", "--baseline", str(base), "--current", str(base), cwd=tmp_path)
    assert gate.returncode == 3, (gate.stdout, gate.stderr)  # compared nothing: never a pass
    usage = _run(installed, "matrix", "--jobs", "0", cwd=tmp_path)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1
    assert not (tmp_path / ".matrix").exists()


def test_the_site_assets_travel_as_package_data(installed: Path, tmp_path: Path) -> None:
    probe = ("import runner.site as s; print(*sorted(p.name for p in s.ASSETS.iterdir()), "
             "str(s.ASSETS).startswith(str(__import__('pathlib').Path(runner.__file__).parent)))")
    out = subprocess.run([str(installed.parent / "python"), "-c", "import runner; " + probe], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["app.js", "history.js", "index.html", "style.css", "True"]
