"""nox sessions: the stack catalog turned into sessions, nothing more.

    nox -s matrix                 every stack: build, save, load, re-run remedies, then reports/
    nox -s matrix -- --stacks tf2.15,tf2.18 --scenarios dense --formats h5,keras
    nox -t quick                  save(...) sessions then load(...) sessions of the quick stacks, one after another
    nox -s "save(tf2.15)" "load(tf2.18)"
    nox -s report                 tables from the records already in .matrix/
    nox -s explain -- CELL        one cell: versions, error, category, verified remedies
    nox -s repro -- CELL --out D  a standalone reproduction (setup.sh + repro.py)
    nox -s check -- model.h5 --stacks tf2.15,tf2.18   is my own model safe to upgrade?
    nox -s matrix -- --baseline reports/results.json.gz  fail on regressions (expected_failures.toml)
    nox -s tests                  fast, fault-injection, docker, browser, then real tier (pytest args after --)
    nox -s lint

Stack environments are built by the runner (``runner/envs.py``) with uv and the one
shared uv cache, not by nox: one venv serves a stack's save, load and matrix runs, and
an install failure is recorded as ``env_unavailable`` instead of failing the session
(a failed nox session would abort nothing else, but it would hide the reason from the
table). Sessions are never chained with ``requires=``, so one broken stack cannot abort
the others.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import nox

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # explicit: do not rely on nox's cwd handling

from runner.envs import find_uv  # noqa: E402
from runner.stacks import find_python, load_catalog, natural_key  # noqa: E402

nox.needs_version = ">=2026.8.10"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["matrix"]

CATALOG = load_catalog()
# One list of each, in pyproject.toml: what the runner imports on the host (pandas, tabulate,
# tqdm for the report and progress, docker for the docker runtime, numpy for check), and
# the test and lint extras.
_PROJECT = tomllib.loads((HERE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
HOST_DEPS = tuple(_PROJECT["dependencies"])
TEST_DEPS = (*HOST_DEPS, *_PROJECT["optional-dependencies"]["test"])
LINT_DEPS = (*HOST_DEPS, *_PROJECT["optional-dependencies"]["lint"])


def _uv_env() -> dict[str, str]:
    """``UV`` for child processes: the uv nox itself uses builds the stack venvs too."""
    found = find_uv()
    return {"UV": found[0]} if found and len(found) == 1 and not os.environ.get("UV") else {}


def _runner(session: nox.Session, *args: str) -> None:
    """Run ``python -m runner`` with the session's interpreter (or nox's, for python=False)."""
    python = "python" if session.python is not False and session.virtualenv.is_sandboxed else sys.executable
    session.run(python, "-m", "runner", *args, *session.posargs, external=True, env=_uv_env())


@nox.session
def matrix(session: nox.Session) -> None:
    """Build every selected stack, save, load, compare, and write reports/ (pass runner options after --)."""
    session.install(*HOST_DEPS)
    _runner(session, "matrix")


@nox.session(default=False)
def check(session: nox.Session) -> None:
    """Load YOUR model file in the selected stacks and compare predictions: nox -s check -- model.h5 [options]."""
    session.install(*HOST_DEPS)
    _runner(session, "check")


@nox.session(python=False, default=False)
def explain(session: nox.Session) -> None:
    """One cell's full story: nox -s explain -- 'custom_layer:h5:tf2.15->tf2.18:default'."""
    _runner(session, "explain")


@nox.session(python=False, default=False)
def repro(session: nox.Session) -> None:
    """Standalone reproduction of one cell: nox -s repro -- CELL --out DIR (then bash DIR/setup.sh)."""
    _runner(session, "repro")


@nox.session(python=False, tags=["save"])
@nox.parametrize("stack", [nox.param(s.id, id=s.id, tags=list(s.tags)) for s in CATALOG])
def save(session: nox.Session, stack: str) -> None:
    """Build one stack and save every scenario in every format it supports."""
    _runner(session, "save", "--stacks", stack)


@nox.session(python=False, tags=["load"])
@nox.parametrize("stack", [nox.param(s.id, id=s.id, tags=list(s.tags)) for s in CATALOG])
def load(session: nox.Session, stack: str) -> None:
    """Load every artifact already saved (by any stack) in one stack and compare."""
    _runner(session, "load", "--stacks", stack)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Write reports/ from the records already in the store (runs nothing in stacks)."""
    session.install(*HOST_DEPS)
    _runner(session, "report")


@nox.session(default=False)
def tests(session: nox.Session) -> None:
    """Fast tier (fake frameworks), fault injection, docker, browser, then real tier; pytest args after --."""
    session.install(*TEST_DEPS)
    env = _uv_env()
    if session.posargs:
        session.run("pytest", *session.posargs, env=env)
        return
    # Fast tier on every core (pytest-xdist): its tests spawn workers and wait on them.
    session.run("pytest", "-m", "not real and not faults and not browser", "-q", "-n", "auto", env=env)
    session.run("pytest", "-m", "faults", "-q", env=env)
    # Docker tier: skipped with the reason when no engine or base image (.ci/run provides both).
    session.run("pytest", "-m", "docker", "-q", env=env)
    # Browser tier: the report's site in the system Chromium (.ci/run installs Debian's);
    # skipped with the reason when no Chromium is found.
    session.run("pytest", "-m", "browser", "-q", env=env)
    session.run("pytest", "-m", "real", "-q", env=env)


@nox.session(default=False)
def worker_floor(session: nox.Session) -> None:
    """Run the fake-framework worker tests with the worker under the catalog's oldest Python."""
    oldest = min((s.python for s in CATALOG), key=natural_key)
    interpreter = find_python(oldest)
    if interpreter is None:
        session.error(f"no Python {oldest} interpreter found for the worker floor")
    session.install(*TEST_DEPS)
    floor = Path(session.create_tmp()) / f"floor-py{oldest}"
    session.run("uv", "venv", "--quiet", "--clear", "--python", interpreter, str(floor), external=True)
    session.run("uv", "pip", "install", "--quiet", "--python", str(floor / "bin" / "python"),
                "numpy", external=True)
    session.run("pytest", "-q", "-m", "not real", "tests/test_worker.py", *session.posargs,
                env={"COMPAT_WORKER_PYTHON": str(floor / "bin" / "python")})


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Time env builds, batched vs isolated loads and the warm no-op on real stacks; prints a table.
    With the test dependencies: ``--site`` drives Chromium through playwright."""
    session.install(*TEST_DEPS)
    session.run("python", "bench/matrix_bench.py", *session.posargs, env=_uv_env())


@nox.session(default=False)
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict on the host package; the component lock current; the generated workflow fresh,
    actionlint- and schema-valid."""
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("python", "-m", "runner", "ci-workflow", "--check")
    # Every cache key is made of component digests: a change of any is a reviewed lock diff.
    session.run("python", "-m", "runner", "components", "--check")
    session.run("actionlint", "--no-color", ".github/workflows/compat-matrix.yml")
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows",
                ".github/workflows/compat-matrix.yml")

