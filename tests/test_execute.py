"""Host-side supervisor (runner/execute.py) with scripted stand-in workers.

The ``spawn`` seam starts a tiny ``sys.executable -c`` script instead of the real worker;
it reads the real request.json, then follows a plan: which cells succeed, crash, hang,
or how the process misbehaves before/after the cells. No numpy, no fake framework.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import by_id, consume, spawned_batches

from runner import execute
from runner._worker import worker as w

READY_ENV = {"python": "scripted", "keras": "0.0-scripted"}

# argv: <control_dir> <plan JSON>. Plan keys: "_start" (before the first cell),
# "_end" (after the last), "_delay" (seconds before anything), a cell id -> action.
SCRIPT = r"""
import json, os, signal, subprocess, sys, time
ctl, plan = sys.argv[1], json.loads(sys.argv[2])
with open(os.path.join(ctl, "request.json")) as fh:
    request = json.load(fh)
events = open(os.path.join(ctl, "events.jsonl"), "a")

def write(obj):
    events.write(json.dumps(obj) + "\n")
    events.flush()

def hang():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.path.join(ctl, "grandchild.pid"), "w") as fh:
        fh.write(str(child.pid))
    time.sleep(120)

def act(what):
    if what == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif what == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif what.startswith("exit") and what[4:].isdigit():
        os._exit(int(what[4:]))
    elif what == "hang":
        hang()

print("scripted worker says hello on stdout", flush=True)
time.sleep(plan.get("_delay", 0))
start = plan.get("_start", "ready")
if start == "import_error":
    err = {"type": "builtins.ImportError", "message": "no tf", "traceback": ""}
    write({"event": "import_error", "error": err})
    for cell in request["cells"]:
        write({"event": "started", "cell_id": cell["cell_id"]})
        write({"event": "result", "cell_id": cell["cell_id"], "outcome": "load_error",
               "phase": "import", "error": err, "warnings": [], "max_abs_diff": None,
               "duration_s": 0.0, "details": {}})
    write({"event": "done"})
    sys.exit(0)
if start not in ("ready", "ready_then_exit0", "ready_then_done", "ready_then_hang"):
    act(start)
    sys.exit(0)
write({"event": "ready", "env": READY_ENV, "import_s": 0.0})
if start == "ready_then_exit0":
    os._exit(0)
if start == "ready_then_done":
    write({"event": "done"})
    os._exit(0)
if start == "ready_then_hang":
    hang()
for cell in request["cells"]:
    cid = cell["cell_id"]
    what = plan.get(cid, "ok")
    if what == "hang_before":
        hang()
    write({"event": "started", "cell_id": cid})
    if what == "garbage":
        events.write("this is not json\n{\"event\": \n")
        events.flush()
    if what in ("sigkill", "segv", "hang") or (what.startswith("exit") and what[4:].isdigit()):
        act(what)
    result = {"event": "result", "cell_id": cid, "outcome": "ok", "phase": "compare",
              "error": None, "warnings": [], "max_abs_diff": 0.0, "duration_s": 0.01,
              "details": {"pid": os.getpid()}}
    if what == "foreign":  # a result for a cell that is not in this batch
        result = dict(result, cell_id="not-" + cid)
    write(result)
    if what == "duplicate":
        write(dict(result, outcome="mismatch"))
    if what == "exit_after":
        os._exit(0)
    if what == "hang_after":
        hang()
end = plan.get("_end", "done")
if end == "hang_after_done":
    write({"event": "done"})
    hang()
if end == "done":
    write({"event": "done"})
""".replace("READY_ENV", json.dumps(READY_ENV))


class Scripted:
    """A spawn function that runs SCRIPT with a plan and remembers what it started."""

    def __init__(self, plan: Mapping[str, Any] | None = None,
                 popen: type[subprocess.Popen[bytes]] = subprocess.Popen) -> None:
        self.plan = dict(plan or {})
        self.popen = popen
        self.procs: list[subprocess.Popen[bytes]] = []
        self.argvs: list[list[str]] = []

    def __call__(self, argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        self.argvs.append(list(argv))
        with log_path.open("ab") as log:
            proc = self.popen([sys.executable, "-c", SCRIPT, argv[-1], json.dumps(self.plan)],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(env), start_new_session=True)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    made: list[Scripted] = []

    class Tracked(Scripted):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    yield Tracked
    for spawn in made:
        spawn.cleanup()


def cells(n: int) -> list[dict[str, Any]]:
    return [{"cell_id": f"c{i}", "scenario": "s", "scenario_path": "/nonexistent/s.py",
             "format": "h5", "artifact_dir": f"/nonexistent/c{i}", "variant": "default",
             "atol": 1e-6, "rtol": 1e-6} for i in range(1, n + 1)]


def run(spawn: Any, tmp_path: Path, n: int = 3, **kwargs: Any) -> list[dict[str, Any]]:
    kwargs.setdefault("cell_timeout", 10.0)
    kwargs.setdefault("import_timeout", 10.0)
    return consume(execute.run_cells("/unused/python", "load", cells(n), workdir=tmp_path / "work",
                                     env=execute.child_env({}), spawn=spawn, **kwargs),
                   tmp_path / "work", deadline=60)


def outcomes(results: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(r["cell_id"], r["outcome"]) for r in results]


def consume_with_deadline(gen: Iterator[dict[str, Any]], spawn: Scripted,
                          limit: float) -> tuple[list[dict[str, Any]], bool]:
    """Consume a run_cells generator in a thread; after ``limit`` seconds kill what the
    spawn started (so the generator can end) and return (results, finished in time)."""
    results: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: results.extend(gen), daemon=True)
    thread.start()
    thread.join(limit)
    finished = not thread.is_alive()
    while thread.is_alive():  # unblock the supervisor loop; it may start fresh workers
        spawn.cleanup()
        thread.join(0.2)
    return list(results), finished


# --------------------------------------------------------------------- happy path


def test_all_cells_ok_in_one_worker(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted()
    results = run(spawn, tmp_path, 3)
    assert outcomes(results) == [("c1", "ok"), ("c2", "ok"), ("c3", "ok")]
    assert all(r["env"] == READY_ENV for r in results)
    assert len(spawn.procs) == 1
    argv = spawn.argvs[0]
    assert argv[:4] == ["/unused/python", "-I", str(execute.WORKER_PATH), "load"]
    ctl = Path(argv[4])
    request = json.loads((ctl / w.REQUEST_FILE).read_text())
    assert request["protocol"] == w.PROTOCOL_VERSION and request["phase"] == "load"
    assert request["parent_pid"] == os.getpid()
    assert [c["cell_id"] for c in request["cells"]] == ["c1", "c2", "c3"]
    assert "scripted worker says hello" in (ctl / w.LOG_FILE).read_text()


def test_request_carries_options(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted()
    run(spawn, tmp_path, 1, keras_module="tf.keras", extra_sys_path=["/x", "/y"])
    request = json.loads((Path(spawn.argvs[0][4]) / w.REQUEST_FILE).read_text())
    assert request["keras_module"] == "tf.keras"
    assert request["extra_sys_path"] == ["/x", "/y"]
    assert request["seed"] == w.DEFAULT_SEED


def test_workdir_is_emptied_first(scripted: type[Scripted], tmp_path: Path) -> None:
    stale = tmp_path / "work" / "w009" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    run(scripted(), tmp_path, 1)
    assert not stale.exists()
    assert spawned_batches(tmp_path / "work") == [["c1"]]


def test_results_stream_as_cells_finish(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted({"c2": "hang"})
    gen = execute.run_cells("/unused/python", "load", cells(2), workdir=tmp_path / "work",
                            env={}, spawn=spawn, cell_timeout=5.0)
    t0 = time.monotonic()
    first = next(gen)
    assert first["cell_id"] == "c1" and time.monotonic() - t0 < 4.0
    spawn.cleanup()
    rest = list(gen)
    assert [r["cell_id"] for r in rest] == ["c2"]


def test_isolate_runs_one_process_per_cell(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted()
    results = run(spawn, tmp_path, 3, isolate=True)
    assert outcomes(results) == [("c1", "ok"), ("c2", "ok"), ("c3", "ok")]
    assert spawned_batches(tmp_path / "work") == [["c1"], ["c2"], ["c3"]]
    assert len({r["details"]["pid"] for r in results}) == 3


def test_invalid_command_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="save or load"):
        list(execute.run_cells("/unused", "probe", cells(1), workdir=tmp_path, env={}))


# ------------------------------------------------------------------ dying workers


@pytest.mark.parametrize(("start", "outcome", "exit_text"), [
    ("sigkill", "crash", "killed by signal SIGKILL"),
    ("exit1", "crash", "exit code 1"),
    ("exit0", "protocol_error", "exit code 0"),
])
def test_worker_dies_before_first_cell(scripted: type[Scripted], tmp_path: Path, start: str,
                                       outcome: str, exit_text: str) -> None:
    """All cells are blamed at once: a worker that cannot import would die every time."""
    spawn = scripted({"_start": start})
    results = run(spawn, tmp_path, 4)
    assert outcomes(results) == [(f"c{i}", outcome) for i in range(1, 5)]
    assert len(spawn.procs) == 1
    for res in results:
        assert res["phase"] == "import"
        assert res["error"]["type"] == f"runner.{outcome}"
        assert exit_text in res["error"]["message"]
        assert res["details"]["exit"] == exit_text
        assert "scripted worker says hello" in res["details"]["log_tail"]


@pytest.mark.parametrize(("start", "reason"), [
    ("ready_then_exit0", "worker exited between cells (exit code 0)"),
    ("ready_then_done", "worker reported done without a result for this cell"),
])
def test_worker_that_makes_no_progress_still_terminates(scripted: type[Scripted], tmp_path: Path,
                                                        start: str, reason: str) -> None:
    """Imported, then exited 0 without a result: the next cell is blamed each time, so
    every spawn resolves one cell and run_cells cannot loop forever."""
    spawn = scripted({"_start": start})
    results = run(spawn, tmp_path, 3)
    assert outcomes(results) == [("c1", "protocol_error"), ("c2", "protocol_error"),
                                 ("c3", "protocol_error")]
    assert [r["error"]["message"] for r in results] == [reason] * 3
    assert all(r["env"] == READY_ENV for r in results)
    assert spawned_batches(tmp_path / "work") == [["c1", "c2", "c3"], ["c2", "c3"], ["c3"]]


@pytest.mark.parametrize(("action", "exit_text"), [
    ("segv", "killed by signal SIGSEGV"),
    ("sigkill", "killed by signal SIGKILL"),
    ("exit0", "exit code 0"),
    ("exit7", "exit code 7"),
])
def test_crash_mid_batch_blames_that_cell_and_restarts(scripted: type[Scripted], tmp_path: Path,
                                                       action: str, exit_text: str) -> None:
    spawn = scripted({"c2": action})
    results = run(spawn, tmp_path, 4)
    assert outcomes(results) == [("c1", "ok"), ("c2", "crash"), ("c3", "ok"), ("c4", "ok")]
    crash = results[1]
    assert crash["error"]["message"] == f"worker died during this cell ({exit_text})"
    assert crash["phase"] is None and crash["env"] == READY_ENV
    assert crash["details"]["exit"] == exit_text
    assert "scripted worker says hello" in crash["details"]["log_tail"]
    assert spawned_batches(tmp_path / "work") == [["c1", "c2", "c3", "c4"], ["c3", "c4"]]
    assert results[0]["details"]["pid"] != results[2]["details"]["pid"]


def test_exit_between_cells_continues_without_blame(scripted: type[Scripted],
                                                    tmp_path: Path) -> None:
    spawn = scripted({"c1": "exit_after"})
    results = run(spawn, tmp_path, 3)
    assert outcomes(results) == [("c1", "ok"), ("c2", "ok"), ("c3", "ok")]
    assert spawned_batches(tmp_path / "work") == [["c1", "c2", "c3"], ["c2", "c3"]]


def test_import_error_results_pass_through(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted({"_start": "import_error"})
    results = run(spawn, tmp_path, 2)
    assert outcomes(results) == [("c1", "load_error"), ("c2", "load_error")]
    assert all(r["phase"] == "import" and r["env"] == {} for r in results)
    assert len(spawn.procs) == 1


def test_spawn_failure_gives_every_cell_a_result(tmp_path: Path) -> None:
    def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str]) -> Any:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    results = run(spawn, tmp_path, 3)
    assert outcomes(results) == [("c1", "crash"), ("c2", "crash"), ("c3", "crash")]
    assert all("could not start the worker" in r["error"]["message"] for r in results)


def test_spawn_failure_gives_every_cell_a_result_when_isolated(tmp_path: Path) -> None:
    """run_cells promises one result per cell; with isolate=True the batch is one cell."""
    results = list(execute.run_cells(str(tmp_path / "no-such-python"), "save", cells(3),
                                     workdir=tmp_path / "work", env=execute.child_env({}),
                                     isolate=True))
    assert outcomes(results) == [("c1", "crash"), ("c2", "crash"), ("c3", "crash")]


# ----------------------------------------------------------------------- timeouts


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_cell_timeout_kills_the_process_group(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted({"c2": "hang"})
    t0 = time.monotonic()
    results = run(spawn, tmp_path, 3, cell_timeout=1.0)
    assert time.monotonic() - t0 < 10
    assert outcomes(results) == [("c1", "ok"), ("c2", "timeout"), ("c3", "ok")]
    timeout = results[1]
    assert timeout["error"]["message"].startswith("cell exceeded its 1 s limit")
    assert timeout["details"]["returncode"] == -signal.SIGKILL
    assert timeout["duration_s"] >= 1.0
    grandchild = int((Path(spawn.argvs[0][4]) / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while _pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(grandchild), "the hung cell's child process survived"
    assert spawned_batches(tmp_path / "work") == [["c1", "c2", "c3"], ["c3"]]


def test_import_timeout_blames_every_cell_once(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted({"_start": "hang"})
    results = run(spawn, tmp_path, 3, import_timeout=0.5)
    assert outcomes(results) == [("c1", "timeout"), ("c2", "timeout"), ("c3", "timeout")]
    assert all(r["phase"] == "import" for r in results)
    assert "within 0.5 s" in results[0]["error"]["message"]
    assert len(spawn.procs) == 1 and spawn.procs[0].returncode == -signal.SIGKILL


def test_slow_import_is_not_a_cell_timeout(scripted: type[Scripted], tmp_path: Path) -> None:
    """cell_timeout starts at a cell's ``started`` line, not at the spawn."""
    results = run(scripted({"_delay": 1.0}), tmp_path, 2, cell_timeout=0.5, import_timeout=10)
    assert outcomes(results) == [("c1", "ok"), ("c2", "ok")]


def test_worker_hanging_after_done_does_not_block(scripted: type[Scripted],
                                                  tmp_path: Path) -> None:
    """All results and ``done`` written, then the process never exits (TF's atexit hangs
    are a known case): run_cells must still finish."""
    spawn = scripted({"_end": "hang_after_done"})
    gen = execute.run_cells("/unused/python", "load", cells(2), workdir=tmp_path / "work",
                            env={}, spawn=spawn, cell_timeout=1.0, import_timeout=1.0)
    results, finished = consume_with_deadline(gen, spawn, 5)
    assert outcomes(results) == [("c1", "ok"), ("c2", "ok")]
    assert finished, "run_cells never returned: a worker stuck after 'done' is not supervised"


def test_worker_hanging_between_cells_is_supervised(scripted: type[Scripted],
                                                    tmp_path: Path) -> None:
    """After a result and before the next ``started`` line no cell is in flight; a hang
    there (clear_session, gc) must still hit a timeout."""
    spawn = scripted({"c1": "hang_after"})
    gen = execute.run_cells("/unused/python", "load", cells(3), workdir=tmp_path / "work",
                            env={}, spawn=spawn, cell_timeout=1.0, import_timeout=1.0)
    results, finished = consume_with_deadline(gen, spawn, 5)
    assert finished, "run_cells never returned: a worker hanging between cells is not supervised"
    got = by_id(results)
    assert list(got) == ["c1", "c2", "c3"]
    assert got["c1"]["outcome"] == "ok"
    assert got["c3"]["outcome"] == "ok"


# ----------------------------------------------------------- event-file robustness


def test_bad_lines_and_duplicate_results_are_ignored(scripted: type[Scripted],
                                                     tmp_path: Path) -> None:
    spawn = scripted({"c1": "garbage", "c2": "duplicate"})
    results = run(spawn, tmp_path, 3)
    assert outcomes(results) == [("c1", "ok"), ("c2", "ok"), ("c3", "ok")]
    assert len(spawn.procs) == 1


class _ExitsBeforePoll(subprocess.Popen):  # type: ignore[type-arg]
    """The child finishes between the supervisor's read of the events file and its poll():
    the widest possible version of a real race (a fast worker, a slow consumer)."""

    def poll(self) -> int | None:
        self.wait()
        return self.returncode


def test_events_written_just_before_exit_keep_the_ready_env(scripted: type[Scripted],
                                                            tmp_path: Path) -> None:
    spawn = scripted({"_delay": 0.3}, popen=_ExitsBeforePoll)
    results = run(spawn, tmp_path, 2)
    assert outcomes(results) == [("c1", "ok"), ("c2", "ok")]
    assert [r["env"] for r in results] == [READY_ENV, READY_ENV]


def test_ready_just_before_exit_is_not_an_import_failure(scripted: type[Scripted],
                                                         tmp_path: Path) -> None:
    spawn = scripted({"_delay": 0.3, "_start": "ready_then_exit0"}, popen=_ExitsBeforePoll)
    results = run(spawn, tmp_path, 3)
    assert [r["phase"] for r in results] != ["import"] * 3, (
        "a worker that wrote 'ready' was reported as failing to import")
    assert outcomes(results)[0] == ("c1", "protocol_error")


# -------------------------------------------------------------------------- probe


def _probe(spawn: Any, tmp_path: Path, timeout: float = 10.0) -> execute.ProbeResult:
    return execute.probe("/unused/python", workdir=tmp_path / "probe", env={}, timeout=timeout,
                         spawn=spawn)


def test_probe_ready(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted()
    pr = _probe(spawn, tmp_path)
    assert (pr.ok, pr.env, pr.error, pr.import_s) == (True, READY_ENV, None, 0.0)
    assert spawn.argvs[0][3] == "probe"
    request = json.loads((Path(spawn.argvs[0][4]) / w.REQUEST_FILE).read_text())
    assert request["phase"] == "probe" and request["cells"] == []
    assert "scripted worker says hello" in pr.log_tail


@pytest.mark.parametrize(("start", "error_type"), [
    ("import_error", "builtins.ImportError"),
    ("sigkill", "runner.crash"),
    ("exit3", "runner.crash"),
    ("exit0", "runner.protocol_error"),
])
def test_probe_failures(scripted: type[Scripted], tmp_path: Path, start: str,
                        error_type: str) -> None:
    pr = _probe(scripted({"_start": start}), tmp_path)
    assert pr.ok is False and pr.env == {}
    assert pr.error is not None and pr.error["type"] == error_type


def test_probe_timeout_kills_the_worker(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted({"_start": "hang"})
    pr = _probe(spawn, tmp_path, timeout=0.5)
    assert pr.ok is False and pr.error is not None and pr.error["type"] == "runner.timeout"
    assert spawn.procs[0].returncode == -signal.SIGKILL


def test_probe_spawn_failure(tmp_path: Path) -> None:
    pr = execute.probe(str(tmp_path / "no-such-python"), workdir=tmp_path / "probe", env={})
    assert pr.ok is False and pr.error is not None and pr.error["type"] == "builtins.OSError"


# ---------------------------------------------------------------------- child_env


def test_child_env_scrubs_and_applies_the_stack_env() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/root", "PYTHONPATH": "/evil", "PYTHONHOME": "/evil",
            "VIRTUAL_ENV": "/venv", "KERAS_BACKEND": "torch", "TF_USE_LEGACY_KERAS": "1",
            "KERAS_HOME": "/k", "CONDA_PREFIX": "/c", "PYTHONSTARTUP": "/s",
            "PYTHONUSERBASE": "/u", "CUDA_VISIBLE_DEVICES": "0", "LANG": "C.UTF-8"}
    before = dict(base)
    env = execute.child_env({"KERAS_BACKEND": "jax", "EXTRA": "1"}, base=base)
    assert base == before, "child_env mutated its base"
    assert env == {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8",
        "KERAS_BACKEND": "jax", "EXTRA": "1",  # the stack's own settings win
        "PIP_USER": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
        "PYTHONNOUSERSITE": "1",
    }


def test_child_env_stack_env_overrides_defaults() -> None:
    env = execute.child_env({"TF_CPP_MIN_LOG_LEVEL": "0", "TF_USE_LEGACY_KERAS": "1"}, base={})
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0" and env["TF_USE_LEGACY_KERAS"] == "1"


def test_child_env_defaults_to_the_host_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setenv("COMPAT_TEST_MARKER", "kept")
    env = execute.child_env({})
    assert "PYTHONPATH" not in env and "KERAS_BACKEND" not in env
    assert env["COMPAT_TEST_MARKER"] == "kept"
    assert os.environ["PYTHONPATH"] == "/somewhere"  # the host's own env is untouched


def test_child_env_reaches_the_worker(scripted: type[Scripted], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What run_cells is given is exactly the worker's environment."""
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    seen: list[dict[str, str]] = []
    spawn = scripted()

    def recording(argv: Sequence[str], log_path: Path, env: Mapping[str, str]) -> Any:
        seen.append(dict(env))
        return spawn(argv, log_path, env)

    env = execute.child_env({"TF_USE_LEGACY_KERAS": "1"})
    list(execute.run_cells("/unused", "save", cells(1), workdir=tmp_path / "w", env=env,
                           spawn=recording))
    assert seen == [env]
    assert "KERAS_BACKEND" not in seen[0] and seen[0]["TF_USE_LEGACY_KERAS"] == "1"


# ------------------------------------------------------------- batch integrity, cancel


def test_results_for_cells_outside_the_batch_are_not_taken(scripted: type[Scripted],
                                                           tmp_path: Path) -> None:
    spawn = scripted({"c2": "foreign"})
    results = run(spawn, tmp_path, 3)
    assert [r["cell_id"] for r in results] == ["c1", "c3", "c2"] or sorted(
        r["cell_id"] for r in results) == ["c1", "c2", "c3"]
    got = by_id(results)
    assert got["c2"]["outcome"] == "protocol_error"
    assert all(not r["cell_id"].startswith("not-") for r in results)


def test_a_worker_that_only_answers_for_unknown_cells_cannot_respawn_forever(
        scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted({"c1": "foreign", "c2": "foreign", "c3": "foreign"})
    results = run(spawn, tmp_path, 3)
    assert sorted(outcomes(results)) == [("c1", "protocol_error"), ("c2", "protocol_error"),
                                         ("c3", "protocol_error")]
    assert len(spawn.procs) <= 3


def test_cancel_kills_the_worker_and_records_nothing_for_its_cell(scripted: type[Scripted],
                                                                  tmp_path: Path) -> None:
    import threading
    import time as _time

    spawn = scripted({"c2": "hang"})
    cancel = threading.Event()
    gen = execute.run_cells("/unused/python", "load", cells(3), workdir=tmp_path / "work",
                            env=execute.child_env({}), spawn=spawn, cell_timeout=60,
                            import_timeout=60, cancel=cancel)
    got = [next(gen)]
    assert got[0]["cell_id"] == "c1"
    threading.Timer(0.5, cancel.set).start()
    t0 = _time.monotonic()
    with pytest.raises(execute.Cancelled):
        got.extend(gen)
    assert _time.monotonic() - t0 < 2.0
    assert [r["cell_id"] for r in got] == ["c1"]  # no false crash/timeout for c2
    assert spawn.procs[0].poll() is not None
    grandchild = int((tmp_path / "work" / "w001" / "grandchild.pid").read_text())
    _time.sleep(0.2)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(
        f"/proc/{grandchild}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_closing_the_generator_kills_the_worker(scripted: type[Scripted], tmp_path: Path) -> None:
    spawn = scripted({"c2": "hang"})
    gen = execute.run_cells("/unused/python", "load", cells(3), workdir=tmp_path / "work",
                            env=execute.child_env({}), spawn=spawn, cell_timeout=60,
                            import_timeout=60)
    assert next(gen)["cell_id"] == "c1"
    gen.close()  # what a KeyboardInterrupt in the consumer does
    assert spawn.procs[0].poll() is not None
    assert execute.kill_live_workers() == 0
