"""Shared fixtures of the fast tier: the fake framework and a helper that drives the worker.

The worker interpreter is ``$COMPAT_WORKER_PYTHON`` (the ``worker_floor`` nox session
points it at a venv of the catalog's oldest Python that has numpy) or this interpreter.
The fakes reach the worker through the request's ``extra_sys_path``, never PYTHONPATH
(which ``child_env`` scrubs and ``python -I`` ignores anyway).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not add the cwd
    sys.path.insert(0, str(ROOT))

from runner import execute, judge  # noqa: E402

FAKES = TESTS / "fakes"
FAKE_SCENARIOS = FAKES / "scenarios"
REAL_SCENARIOS = ROOT / "scenarios"
BEHAVIOR_VAR = "COMPAT_FAKE_BEHAVIOR"
WORKER_PYTHON = os.environ.get("COMPAT_WORKER_PYTHON", sys.executable)
RUN_DEADLINE_S = 120.0  # no single run_cells call of the fast tier comes near this


@pytest.fixture(autouse=True)
def _no_behavior_leak(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No fake behaviour reaches a worker unless the test asks for it (child_env copies
    the host environment)."""
    monkeypatch.delenv(BEHAVIOR_VAR, raising=False)
    yield
    os.environ.pop(BEHAVIOR_VAR, None)


@pytest.fixture(scope="session")
def worker_python() -> str:
    return WORKER_PYTHON


def by_id(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for res in results:
        assert res["cell_id"] not in out, f"two results for {res['cell_id']}"
        out[res["cell_id"]] = dict(res)
    return out


def spawned_batches(workdir: Path) -> list[list[str]]:
    """The cell ids of each worker process a run_cells call started, in order."""
    batches = []
    for ctl in sorted(p for p in workdir.iterdir() if p.is_dir()):
        request = json.loads((ctl / "request.json").read_text())
        batches.append([c["cell_id"] for c in request["cells"]])
    return batches


def live_pids_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line mentions ``text`` (a test's own
    workdir, so only processes the test started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state not in ("Z", "X"):
            pids.append(int(proc.name))
    return pids


def consume(gen: Iterator[dict[str, Any]], workdir: Path,
            deadline: float = RUN_DEADLINE_S) -> list[dict[str, Any]]:
    """list(gen), but a supervisor that never returns fails the test instead of hanging
    the suite: after ``deadline`` the workers under ``workdir`` are killed."""
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.extend(gen)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    hung = thread.is_alive()
    while thread.is_alive():
        for pid in live_pids_mentioning(str(workdir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        thread.join(0.2)
    if errors:
        raise errors[0]
    if hung:
        pytest.fail(f"run_cells did not return within {deadline:g} s (workers killed)")
    return results


class FakeStack:
    """Builds worker cells against the fake framework and runs them with the real worker."""

    def __init__(self, tmp: Path, python: str) -> None:
        self.tmp = tmp
        self.python = python
        self.runs = 0
        self.last_workdir: Path | None = None

    # ------------------------------------------------------------------- cells
    def artifact_dir(self, tag: str) -> Path:
        return self.tmp / "artifacts" / tag

    def save_cell(self, tag: str, scenario: str = "mlp", fmt: str = "h5", *,
                  scenarios: Path = FAKE_SCENARIOS) -> dict[str, Any]:
        """A save cell whose artifact dir ends in ``tag`` (so a rule can match it)."""
        return {"cell_id": f"save:{tag}", "scenario": scenario,
                "scenario_path": str(scenarios / f"{scenario}.py"), "format": fmt,
                "artifact_dir": str(self.artifact_dir(tag))}

    @staticmethod
    def load_cell(saved: Mapping[str, Any], variant: str = "default", *, suffix: str = "",
                  atol: float = 1e-6, rtol: float = 1e-6) -> dict[str, Any]:
        tag = saved["cell_id"].split(":", 1)[1]
        return {"cell_id": f"load:{tag}:{variant}{suffix}", "scenario": saved["scenario"],
                "scenario_path": saved["scenario_path"], "format": saved["format"],
                "artifact_dir": saved["artifact_dir"], "variant": variant,
                "atol": atol, "rtol": rtol}

    # --------------------------------------------------------------------- run
    @staticmethod
    def env(behavior: Mapping[str, Any] | None = None,
            stack_env: Mapping[str, str] | None = None) -> dict[str, str]:
        extra = dict(stack_env or {})
        if behavior is not None:
            extra[BEHAVIOR_VAR] = json.dumps(behavior)
        return execute.child_env(extra)

    def run(self, command: str, cells: Sequence[Mapping[str, Any]],
            behavior: Mapping[str, Any] | None = None, *,
            stack_env: Mapping[str, str] | None = None, keras_module: str = "auto",
            cell_timeout: float = 30.0, import_timeout: float = 60.0,
            isolate: bool = False, raw: bool = False) -> list[dict[str, Any]]:
        """The cells' result events; a load's judged on the host as the matrix does
        (runner/judge.py, with the cell's atol/rtol), unless ``raw`` (what the worker wrote)."""
        self.runs += 1
        workdir = self.tmp / "runs" / f"{self.runs:02d}-{command}"
        self.last_workdir = workdir
        gen = execute.run_cells(
            self.python, command, cells, workdir=workdir,
            env=self.env(behavior, stack_env), keras_module=keras_module,
            cell_timeout=cell_timeout, import_timeout=import_timeout, isolate=isolate,
            extra_sys_path=[str(FAKES)])
        results = consume(gen, workdir)
        if command != "load" or raw:
            return results
        by_id = {c["cell_id"]: c for c in cells}
        judged = []
        for res in results:
            cell = by_id[res["cell_id"]]
            judged.append(judge.judge_load(res, judge.reference_of(cell["artifact_dir"]), cell["format"],
                                           cell.get("variant", "default"), cell.get("atol", 1e-6),
                                           cell.get("rtol", 1e-6)))
        return judged

    def save_ok(self, cells: Sequence[Mapping[str, Any]],
                behavior: Mapping[str, Any] | None = None) -> None:
        """Save ``cells`` and insist that every one succeeded (set-up for load tests)."""
        results = self.run("save", cells, behavior)
        bad = {r["cell_id"]: (r["outcome"], r["error"]) for r in results if r["outcome"] != "ok"}
        assert not bad, bad

    def batches(self) -> list[list[str]]:
        assert self.last_workdir is not None
        return spawned_batches(self.last_workdir)


@pytest.fixture
def fake(tmp_path: Path, worker_python: str) -> FakeStack:
    return FakeStack(tmp_path, worker_python)


@pytest.fixture(scope="session")
def fake_envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stack venvs of tests/e2e.py's fake catalog, built once per test session."""
    return tmp_path_factory.mktemp("fake-envs")


@pytest.fixture(scope="module")
def envs_dir(fake_envs_dir: Path) -> Path:
    """The envs dir the end-to-end modules run their fake catalogs with (a module may
    define its own, as the docker tier does)."""
    return fake_envs_dir


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/e2e.py's fake catalog (three stacks), written once per module."""
    import e2e

    return e2e.write_catalog(tmp_path_factory.mktemp("fake-catalog") / "catalog.toml")


# In CI (CI=true) a tier that cannot get its engine fails instead of skipping: .ci/run
# installs and starts everything the docker, browser and real tiers need, so a skip there
# means a tier silently did not run. Only the "selected only by -m ..." skips (a tier's
# tests collected by another tier's run) stay skips.
_TIERS_THAT_MUST_RUN = ("docker", "browser", "real")
_SELECTION_SKIP = "selected only by -m"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped:
        return
    if not any(item.get_closest_marker(m) for m in _TIERS_THAT_MUST_RUN):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if _SELECTION_SKIP in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true: this tier must run, but it skipped: {reason}"
