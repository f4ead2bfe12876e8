"""End to end with real processes and a fake framework: a catalog of fake stacks.

Every stack is a real uv venv (built once per test session into a shared envs dir) with
``tests/fakes`` installed as a distribution (keras + tensorflow fakes); the runner runs
as ``python -m runner`` in a subprocess, its workers are real processes, its store and
reports are real files. Only Keras is fake. Used by tests/test_faults.py and
tests/test_readme_order.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "fakes"
FAKE_SCENARIOS = FAKES / "scenarios"
HOST_PY = f"{sys.version_info.major}.{sys.version_info.minor}"
SCENARIOS = "mlp,h5_only"


def _fakes_dist() -> Path:
    """A copy of the fake frameworks to install from: building a local directory writes
    build/ and *.egg-info into it, which must not happen inside the checkout."""
    dest = Path(tempfile.gettempdir()) / f"compat-fake-frameworks-{os.getuid()}-{_source_digest()}"
    if not (dest / "pyproject.toml").is_file():
        tmp = Path(tempfile.mkdtemp(prefix="compat-fakes-"))
        for name in ("keras", "tensorflow"):
            shutil.copytree(FAKES / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(FAKES / "pyproject.toml", tmp / "pyproject.toml")
        try:
            tmp.rename(dest)
        except OSError:  # another test session made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([*FAKES.glob("keras/*.py"), *FAKES.glob("tensorflow/*.py"), FAKES / "pyproject.toml"]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def catalog_text(behaviors: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Three fake stacks: a Keras 2 and a Keras 3 with TF, and a Keras 3 without."""
    behaviors = behaviors or {}
    stacks = [("fk2.15", {"version": "2.15.0"}, ["quick", "keras2"]),
              ("fk3.5", {"version": "3.5.0", "tf_version": "2.18.0"}, ["quick", "keras3"]),
              ("fk3.9", {"version": "3.9.0", "tf_version": "2.19.0"}, ["keras3"])]
    out = []
    req = f"compat-fake-frameworks @ {_fakes_dist().as_uri()}"
    for sid, behavior, tags in stacks:
        merged = {**behavior, **behaviors.get(sid, {})}
        out.append("\n".join([
            "[[stack]]", f'id = "{sid}"', f'python = "{HOST_PY}"',
            f'requirements = ["numpy", "{req}"]',
            f'why = {{ "numpy" = "the fakes compute with numpy", "{req}" = "the fake Keras" }}',
            f"env = {{ COMPAT_FAKE_BEHAVIOR = {json.dumps(json.dumps(merged))} }}",
            f"tags = {json.dumps(tags)}", f'description = "fake {sid}"', ""]))
    return "\n".join(out)


def write_catalog(path: Path, behaviors: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    path.write_text(catalog_text(behaviors))
    return path


def runner_env(envs_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COMPAT_FAULT"}
    env.update({"COMPAT_ENVS_DIR": str(envs_dir), "PYTHONPATH": str(REPO)})
    env.update(extra or {})
    return env


def matrix_argv(catalog: Path, store: Path, out: Path | None, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "runner", "matrix", "--catalog", str(catalog),
            "--scenario-dir", str(FAKE_SCENARIOS), "--scenarios", SCENARIOS,
            "--store", str(store), "--load-timeout", "20", *extra]
    if out is not None:
        argv += ["--out", str(out)]
    return argv


def run_matrix(catalog: Path, store: Path, out: Path | None, envs_dir: Path, *extra: str,
               env: Mapping[str, str] | None = None, cwd: Path = REPO,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(matrix_argv(catalog, store, out, *extra), cwd=cwd,
                          env=runner_env(envs_dir, env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def table(out: Path) -> dict[str, tuple[Any, ...]]:
    """cell -> (outcome, category, remedy) from a report's results.json.gz: what a reader sees."""
    from runner import gate

    rows = list(gate.results_rows(json.loads(gate.read_results_text(out / gate.RESULTS_JSON))))
    return {(r["scenario"], r["format"], r["saver"], r["loader"], r["variant"], r["source"]):
            (r["outcome"], r["category"], r["remedy"]) for r in rows}


def report_files(out: Path) -> dict[str, bytes]:
    """Every file of a report folder (it has subfolders) by relative path, temp files aside."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.endswith(".tmp")}


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*.tmp")) if root.exists() else []


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"


def records_by_id(store: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((store / "records").rglob("*.json")):
        data = json.loads(path.read_text())
        out[data["cell_id"]] = data
    return out


def kinds(records: Mapping[str, Mapping[str, Any]]) -> Sequence[str]:
    return sorted({r["outcome"] for r in records.values()})


def checkout_copy(dest: Path, *, fake_defaults: bool = True) -> Path:
    """The work tree's files (tracked and new, not ignored) copied to ``dest``,
    committed in a fresh git repo; with ``fake_defaults`` the fake catalog and scenarios
    become the copy's default catalog and scenarios (a second commit)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)  # never a hard link: a write in the copy would reach the repo
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    if fake_defaults:
        (dest / "runner" / "stacks.toml").unlink()
        write_catalog(dest / "runner" / "stacks.toml")
        shutil.rmtree(dest / "scenarios")
        shutil.copytree(FAKE_SCENARIOS, dest / "scenarios",
                        ignore=shutil.ignore_patterns("__pycache__", "broken.py", "unbuildable.py"))
        subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
        subprocess.run([*git, "commit", "-qm", "fakes"], cwd=dest, check=True)
    return dest


def one_error_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Bad input's contract: exit 2 and one ``runner: error:`` line holding ``fragments``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, describe(proc)
    assert len(lines) == 1 and lines[0].startswith("runner: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
