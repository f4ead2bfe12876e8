"""Spawn and supervise stack workers: timeouts, crash attribution, fresh restarts.

Stdlib only. One worker process handles a whole batch of cells (importing TensorFlow
costs seconds; a further cell costs milliseconds). The worker writes a ``started`` line
before each cell and a ``result`` line after it, so when the process dies or hangs the
host knows exactly which cell was in flight: that cell gets a ``crash``/``timeout``
result (exit code or signal name, log tail), the process group is killed, and a fresh
worker continues with the cells not yet done. ``isolate=True`` runs one process per cell.

Recycling: a worker whose resident memory (``/proc``) is over a limit after a cell's
result is retired between cells and a fresh one takes the cells not yet done (see
:data:`RSS_LIMIT_VAR`); no cell is interrupted, repeated or recorded twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from runner import safefs
from runner._worker import worker as _w

__all__ = [
    "WORKER_PATH",
    "Cancelled",
    "ProbeResult",
    "Spawn",
    "WorkerProcess",
    "child_env",
    "host_spawn",
    "kill_live_workers",
    "probe",
    "recycled_workers",
    "rss_limit_from_env",
    "run_cells",
]

WORKER_PATH = Path(_w.__file__).resolve()
LOG_TAIL_CHARS = 3000
POLL_S = 0.05
DONE_GRACE_S = 10.0  # a worker that wrote "done" gets this long to exit before it is killed
# A cell over its limit is first interrupted by the worker's own watchdog (the worker
# survives, no re-import); only if no result arrives this much later is the process group
# killed (a hang inside C code never returns to the interpreter). Short limits (tests) get
# a grace as long as the limit itself.
WATCHDOG_GRACE_S = 10.0
EVENTS_CAP = 64 << 20  # bytes of new events one poll reads; more is a flood, recorded as tampering
TAMPERED = "runner.control_tampered"  # the error type of cells whose worker planted links in its folder
HEARTBEAT_EVERY_S = 5.0  # how often the supervisor touches the control dir's heartbeat file
# Recycling (issue 24): TF 1.15 loaders grew to 4.4 GB over thousands of cells in one worker
# and then spent most of their time in the worker's full gc.collect(). After each result
# the supervisor reads the worker's resident memory; over the limit, it retires the worker
# by the protocol's own between-cells exit (the heartbeat made stale: the worker finishes
# the cell it is in, then exits with status 3 before starting another) and a fresh worker
# takes the cells not yet done. Such a worker is started with no parent_pid, so it watches
# the heartbeat (as in a container); on Linux the kernel still kills it the moment this
# process dies (the worker's PR_SET_PDEATHSIG).
RSS_LIMIT_VAR = "COMPAT_WORKER_RSS_LIMIT"  # "3g", "2048m", bytes; "off" or 0: never recycle
RSS_LIMIT_CAP = 3 << 30  # the default: 3 GiB, or a quarter of the machine's memory if less,
RSS_LIMIT_FLOOR = 1 << 30  # but not under 1 GiB (a TensorFlow import alone is ~0.5 GiB)
# A batch this small keeps the pid-based orphan check and is never recycled: a fresh
# framework import costs more than what so few cells can leave behind.
RECYCLE_MIN_CELLS = 32
_RECYCLED = 0  # workers retired for memory by this process (all runs)
_RECYCLED_LOCK = threading.Lock()


def _grace(limit: float) -> float:
    return min(WATCHDOG_GRACE_S, limit)
# Variables that must not leak from the user's shell into a stack: they would change
# which interpreter, packages or Keras a stack sees.
_SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
             "KERAS_BACKEND", "TF_USE_LEGACY_KERAS", "KERAS_HOME", "CONDA_PREFIX")



class WorkerProcess(Protocol):
    """What the supervisor needs of a started worker: ``subprocess.Popen`` has it; the
    docker runtime's container handle (runner/runtime_docker.py) too, plus ``kill_group``
    (used instead of killing the host process group ``pid``)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | Any: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


# A spawn may carry two attributes the supervisor honours: ``in_container`` (the worker
# cannot see the host's pid, so the request names no parent_pid) and ``record_env`` (a
# dict merged into every result's ``env``: the docker image id and digest).
Spawn = Callable[[Sequence[str], Path, Mapping[str, str]], WorkerProcess]


def child_env(stack_env: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a worker runs with: the host's, scrubbed, plus the stack's."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _SCRUBBED}
    env.update({
        "PIP_USER": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",  # TF's C++ INFO/WARNING chatter
        "CUDA_VISIBLE_DEVICES": "",  # same numbers on every machine: CPU only
        "PYTHONNOUSERSITE": "1",
    })
    env.update(stack_env)
    return env


def _parse_size(text: str) -> int | None:
    """Bytes of ``text`` ("3g", "2048M", "3GiB", "1500000000"); 0 for off/none/0; None if unreadable."""
    t = text.strip().lower().replace(" ", "")
    if t in ("", "off", "none", "no", "false", "0"):
        return 0
    t = t[:-1] if t.endswith("b") else t
    t = t[:-1] if t.endswith("i") else t
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}.get(t[-1:], 1)
    number = t[:-1] if scale > 1 else t
    try:
        value = float(number)
    except ValueError:
        return None
    return int(value * scale) if value >= 0 else None


def _machine_memory() -> int | None:
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_rss_limit() -> int:
    """3 GiB, or a quarter of this machine's memory when that is less (two workers at the
    default ``--jobs 2`` then hold at most half of it), never under 1 GiB."""
    total = _machine_memory()
    return RSS_LIMIT_CAP if total is None else max(RSS_LIMIT_FLOOR, min(RSS_LIMIT_CAP, total // 4))


_WARNED: set[str] = set()


def rss_limit_from_env(environ: Mapping[str, str] | None = None) -> int:
    """The worker memory limit in bytes: ``$COMPAT_WORKER_RSS_LIMIT`` or the default;
    0 means never recycle. An unreadable value is said once on stderr and not used."""
    text = (os.environ if environ is None else environ).get(RSS_LIMIT_VAR)
    if text is None:
        return default_rss_limit()
    value = _parse_size(text)
    if value is None:
        if text not in _WARNED:
            _WARNED.add(text)
            print(f"runner: warning: {RSS_LIMIT_VAR}={text!r} is not a size (e.g. 3g, 2048m, off); "
                  f"using the default {default_rss_limit() / (1 << 30):.2g} GiB", file=sys.stderr)
        return default_rss_limit()
    return value


def recycled_workers() -> int:
    """How many workers this process retired for memory so far (all runs)."""
    return _RECYCLED


def _tree_rss(pid: int) -> int | None:
    """Resident bytes of ``pid`` and its descendants (``/proc``); None when unreadable."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    total, todo = 0, [pid]
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen or len(seen) > 256:
            continue
        seen.add(p)
        try:
            total += int(Path(f"/proc/{p}/statm").read_text(encoding="ascii").split()[1]) * page
        except (OSError, ValueError, IndexError):
            if p == pid:
                return None
            continue
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    todo.extend(int(c) for c in (task / "children").read_text(encoding="ascii").split())
    return total


def _host_pid(proc: WorkerProcess) -> int | None:
    """The host pid whose process tree is the worker: a host process's own; a container's
    init process (Docker's ``State.Pid``), when it is in this machine's pid namespace and
    really the container's (its cgroup names the container). None: memory not readable."""
    container = getattr(proc, "container", None)
    if container is None:
        return proc.pid if proc.pid > 0 else None
    try:
        container.reload()
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        ours = str(container.id) in Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8")
    except Exception:  # no engine attrs, another pid namespace (Docker Desktop's VM), a remote engine
        return None
    return pid if pid > 0 and ours else None


class _Recycler:
    """Reads a worker's memory after each result; retires it once over ``limit``."""

    def __init__(self, proc: WorkerProcess, limit: int) -> None:
        self.proc = proc
        self.limit = limit
        self._pid: int | bool | None = False  # False: not looked up yet
        self.retiring: dict[str, Any] | None = None  # set once: why, after which cell

    def check(self, cell_id: str) -> dict[str, Any] | None:
        """After ``cell_id``'s result: the retirement note if the worker is now over the limit."""
        if self.retiring is not None or self.limit <= 0:
            return None
        if self._pid is False:
            self._pid = _host_pid(self.proc)
        if not self._pid:
            return None
        rss = _tree_rss(int(self._pid))
        if rss is None or rss <= self.limit:
            return None
        mib = 1 << 20  # rounded up, so a worker just over its limit never reads as at it
        self.retiring = {"rss_mib": -(-rss // mib), "limit_mib": self.limit // mib, "after": cell_id}
        return self.retiring


def _retire(beat: Path) -> None:
    """Make the heartbeat stale (mtime 0): the worker exits, status 3, before its next cell."""
    # safefs's own open: no link, FIFO or hard-linked file planted by the worker is followed.
    with safefs._open(beat.parent, beat.name, os.O_WRONLY | os.O_CREAT) as (fd, _):
        os.utime(fd, (0, 0))


def _default_spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str],
                   cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A host process in its own session (``cwd``: e.g. ``check``'s throwaway HOME)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env), cwd=cwd, start_new_session=True, close_fds=True,
        )


host_spawn = _default_spawn


class Cancelled(Exception):
    """The run was interrupted: workers were killed and nothing was recorded for their cells."""


_LIVE: set[WorkerProcess] = set()  # every worker this process supervises now
_LIVE_LOCK = threading.Lock()


def _register(proc: WorkerProcess) -> None:
    with _LIVE_LOCK:
        _LIVE.add(proc)


def _unregister(proc: WorkerProcess) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def kill_live_workers() -> int:
    """SIGKILL the process group of every worker this process supervises (Ctrl-C);
    return how many there were. Safe from any thread."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        _signal_group(proc)
    return len(procs)


def _signal_group(proc: WorkerProcess) -> None:
    kill_group = getattr(proc, "kill_group", None)
    if kill_group is not None:  # a container: removed with everything in it
        kill_group()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _kill_group(proc: WorkerProcess) -> None:
    _signal_group(proc)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    """The log's last ``limit`` bytes, never through a link the worker planted."""
    return _read_log(path, limit)[0]


def _read_log(path: Path, limit: int = LOG_TAIL_CHARS) -> tuple[str, str]:
    """(the log's tail, what the worker planted in its place: "" when nothing)."""
    try:
        return safefs.read_tail(path.parent, path.name, limit), ""
    except safefs.Tampered as exc:
        return f"[log not read: {exc.strerror}]", str(exc.strerror)
    except OSError:
        return "", ""


def _exit_text(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


class _EventReader:
    """Reads complete JSON lines appended to the events file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        """Raises :class:`safefs.Tampered` when the file is not the worker's plain file."""
        try:
            data = safefs.read_bytes(self.path.parent, self.path.name, EVENTS_CAP, self.offset)
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn or foreign line: the cell it belonged to gets no result
            if isinstance(event, dict):
                events.append(event)
        return events


class _BatchState:
    """What one worker process has reported so far."""

    def __init__(self, cell_ids: set[str], limits: Mapping[str, float] | None = None) -> None:
        self.cell_ids = cell_ids  # results for any other cell id are not this batch's
        self.limits = dict(limits or {})  # per-cell limits (a cell's "timeout_s")
        self.done: set[str] = set()
        self.ready = False
        self.ready_env: dict[str, Any] | None = None
        self.in_flight: str | None = None
        self.first: str | None = None  # the first cell this process started (it gets the warm-up allowance)
        self.t_cell = 0.0
        self.t_event = time.monotonic()
        self.finished = False
        self.tampered = ""  # what the worker planted in its control folder, when it did

    def limit(self, cell_id: str, default: float) -> float:
        """The cell's limit as the worker enforces it: its own, but at least ``default``
        for the process's first cell (the backend's warm-up; see the worker)."""
        own = self.limits.get(cell_id, default)
        return max(own, default) if cell_id == self.first else own

    def take(self, events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Update the state from new events; yield each cell's first result."""
        for event in events:
            self.t_event = time.monotonic()
            kind = event.get("event")
            if kind == "ready":
                self.ready, self.ready_env = True, event.get("env") or {}
            elif kind == "import_error":
                self.ready = True
            elif kind == "started" and event.get("cell_id") in self.cell_ids:
                self.in_flight, self.t_cell = str(event.get("cell_id")), time.monotonic()
                self.first = self.first or self.in_flight
            elif (kind == "result" and event.get("cell_id") in self.cell_ids
                  and event.get("cell_id") not in self.done):
                event.setdefault("env", self.ready_env or {})
                self.done.add(str(event["cell_id"]))
                if event.get("cell_id") == self.in_flight:
                    self.in_flight = None
                yield event
            elif kind == "done":
                self.finished = True


def _synth(cell_id: str, outcome: str, reason: str, *, phase: str | None, rc: int | None,
           log_tail: str, env: dict[str, Any] | None, duration: float | None,
           error_type: str | None = None) -> dict[str, Any]:
    return {
        "event": "result",
        "cell_id": cell_id,
        "outcome": outcome,
        "phase": phase,
        "error": {"type": error_type or f"runner.{outcome}", "message": reason, "traceback": ""},
        "warnings": [],
        "max_abs_diff": None,
        "duration_s": None if duration is None else round(duration, 3),
        "details": {"returncode": rc, "exit": _exit_text(rc), "log_tail": log_tail},
        "env": env or {},
    }


def _write_request(ctl: Path, command: str, cells: Sequence[Mapping[str, Any]],
                   keras_module: str, extra_sys_path: Sequence[str], *, in_container: bool = False,
                   cell_timeout: float | None = None) -> None:
    ctl.mkdir(parents=True, exist_ok=True)
    request = {
        "protocol": _w.PROTOCOL_VERSION,
        "phase": command,
        "cell_timeout": cell_timeout,
        "keras_module": keras_module,
        "parent_pid": None if in_container else os.getpid(),
        "extra_sys_path": list(extra_sys_path),
        "seed": _w.DEFAULT_SEED,
        "cells": list(cells),
    }
    (ctl / _w.REQUEST_FILE).write_text(json.dumps(request, indent=1))


def _supervise(proc: WorkerProcess, state: _BatchState, reader: _EventReader,
               t_spawn: float, cell_timeout: float, import_timeout: float,
               cancel: threading.Event | None,
               recycler: _Recycler | None = None) -> Generator[dict[str, Any], None, str | None]:
    """Yield the batch's results until the worker exits or is killed; return why it was
    killed (``cell``, ``import``, ``idle``, ``tampered``: a file of its control folder was
    replaced by a link, FIFO or flood, ``state.tampered`` says which) or None.

    Raises:
        Cancelled: ``cancel`` was set; the worker was killed and nothing is synthesised.
    """
    try:
        return (yield from _watch(proc, state, reader, t_spawn, cell_timeout, import_timeout, cancel,
                                  recycler))
    except safefs.Tampered as exc:
        _kill_group(proc)
        state.tampered = str(exc.strerror)
        return "tampered"


def _watch(proc: WorkerProcess, state: _BatchState, reader: _EventReader,
           t_spawn: float, cell_timeout: float, import_timeout: float,
           cancel: threading.Event | None,
           recycler: _Recycler | None = None) -> Generator[dict[str, Any], None, str | None]:
    killed_for: str | None = None
    beat = reader.path.parent / _w.HEARTBEAT_FILE
    last_beat = 0.0
    while True:
        retiring = recycler is not None and recycler.retiring is not None
        if time.monotonic() - last_beat > HEARTBEAT_EVERY_S and not retiring:
            # A worker that cannot see our pid (in a container) exits between cells once this
            # goes stale, so a killed runner leaves no container running for long.
            try:
                safefs.touch(beat.parent, beat.name)
            except safefs.Tampered:
                raise
            except OSError:
                pass
            last_beat = time.monotonic()
        results = list(state.take(reader.read()))
        if results and recycler is not None and len(state.done) < len(state.cell_ids):
            # The memory now: after the last result this poll read (fast cells come in groups).
            res = results[-1]
            note = recycler.check(str(res["cell_id"]))
            if note is not None:
                # Said in the record of the cell after which the worker was over the limit
                # (its outcome and key are untouched). The worker is asked to end before its
                # next cell: it does, unless it finished its batch first (fast cells).
                res["details"] = {**(res.get("details") or {}),
                                  "worker_over_limit": {k: note[k] for k in ("rss_mib", "limit_mib")}}
                with contextlib.suppress(OSError):  # (a planted link raises Tampered)
                    _retire(beat)
        yield from results
        if cancel is not None and cancel.is_set():
            _kill_group(proc)
            raise Cancelled("run interrupted")
        rc = proc.poll()
        if rc is not None:
            yield from state.take(reader.read())  # what was written just before exit
            return None
        now = time.monotonic()
        if state.in_flight is not None:
            limit = state.limit(state.in_flight, cell_timeout)
            if now - state.t_cell > limit + _grace(limit):
                killed_for = "cell"
        elif not state.ready:
            if now - t_spawn > import_timeout:
                killed_for = "import"
        elif now - state.t_event > (min(DONE_GRACE_S, cell_timeout) if state.finished else cell_timeout):
            # Quiet with no cell in flight: stuck between cells (clear_session, gc) or
            # after "done" (atexit hooks). Nothing to blame; the rest gets a fresh worker.
            killed_for = "idle"
        if killed_for:
            _kill_group(proc)
            yield from state.take(reader.read())
            return killed_for
        time.sleep(POLL_S)


def run_cells(
    python: str,
    command: str,
    cells: Sequence[Mapping[str, Any]],
    *,
    workdir: Path,
    env: Mapping[str, str],
    keras_module: str = "auto",
    cell_timeout: float = 300.0,
    import_timeout: float = 600.0,
    isolate: bool = False,
    extra_sys_path: Sequence[str] = (),
    spawn: Spawn | None = None,
    worker_path: Path = WORKER_PATH,
    cancel: threading.Event | None = None,
    rss_limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Run ``cells`` in workers of the stack whose interpreter is ``python``.

    Yields one result dict per cell, as each finishes, in the worker's format (see the
    worker's docstring), with ``env`` (the worker's installed versions) added. Cells the
    worker could not finish get synthesised ``timeout``/``crash``/``protocol_error``
    results. Never raises for anything that happens inside the stack.

    Args:
        python: the stack's interpreter (absolute path).
        command: ``save`` or ``load``.
        cells: worker cell dicts, each with a unique ``cell_id``.
        workdir: where control directories and logs go (emptied first).
        env: the complete child environment (see :func:`child_env`).
        cell_timeout: seconds one cell may take once the framework is imported (a cell's
            own ``timeout_s`` overrides it). The worker's watchdog interrupts the cell at
            the limit; the process group is killed only if no result follows within
            :data:`WATCHDOG_GRACE_S` (or the limit, if shorter).
        import_timeout: seconds the worker may take to import the framework.
        isolate: one worker process per cell instead of one per batch.
        spawn: process factory (a seam for tests; the docker runtime's container spawn);
            None is a host process. Its ``record_env`` (if any) is merged into every
            result's ``env``.
        worker_path: the worker script (``check`` runs ``_worker/check_worker.py``, which
            follows the same protocol).
        cancel: when set (Ctrl-C elsewhere), the worker is killed within one poll and
            :class:`Cancelled` is raised: its in-flight cell gets no (false) crash result.
        rss_limit: bytes of resident memory (the worker's process tree) over which a worker
            of a batch of at least :data:`RECYCLE_MIN_CELLS` cells is retired between cells
            and a fresh one continues; None: ``$COMPAT_WORKER_RSS_LIMIT`` or
            :func:`default_rss_limit`; 0: never. The result after which a worker was found
            over the limit carries ``details["worker_over_limit"]`` (``rss_mib``,
            ``limit_mib``); the worker then ends before its next cell, if it has one.
    """
    if command not in ("save", "load", "check"):
        raise ValueError(f"command must be save or load (or check, with the check worker), not {command!r}")
    spawn = spawn or _default_spawn
    extra_env = dict(getattr(spawn, "record_env", None) or {})
    limit = rss_limit_from_env() if rss_limit is None else max(0, int(rss_limit))
    with contextlib.closing(_run_cells(python, command, cells, workdir, env, keras_module, cell_timeout,
                                       import_timeout, isolate, extra_sys_path, spawn, worker_path,
                                       cancel, limit)) as results:
        for res in results:
            if extra_env:
                res["env"] = {**(res.get("env") or {}), **extra_env}
            yield res


def _run_cells(python: str, command: str, cells: Sequence[Mapping[str, Any]], workdir: Path,
               env: Mapping[str, str], keras_module: str, cell_timeout: float, import_timeout: float,
               isolate: bool, extra_sys_path: Sequence[str], spawn: Spawn, worker_path: Path,
               cancel: threading.Event | None, rss_limit: int = 0) -> Generator[dict[str, Any], None, None]:
    global _RECYCLED  # noqa: PLW0603 - a count for the whole process, read by recycled_workers()
    in_container = bool(getattr(spawn, "in_container", False))
    can_read_memory = Path("/proc/self/statm").is_file()
    shutil.rmtree(workdir, ignore_errors=True)
    pending = [dict(c) for c in cells]
    spawn_no = 0
    while pending:
        batch = pending[:1] if isolate else pending
        spawn_no += 1
        ctl = workdir / f"w{spawn_no:03d}"
        recyclable = (rss_limit > 0 and not isolate and can_read_memory
                      and len(batch) >= RECYCLE_MIN_CELLS)
        # A recyclable host worker gets no parent_pid: it then obeys the heartbeat, whose
        # staleness is the protocol's between-cells exit (see RSS_LIMIT_VAR's comment).
        _write_request(ctl, command, batch, keras_module, extra_sys_path,
                       in_container=in_container or recyclable, cell_timeout=cell_timeout)
        log_path = ctl / _w.LOG_FILE
        argv = [python, "-I", str(worker_path), command, str(ctl)]
        reader = _EventReader(ctl / _w.EVENTS_FILE)
        t_spawn = time.monotonic()
        try:
            proc = spawn(argv, log_path, env)
        except OSError as exc:
            # Nothing can start in this stack: every cell still owed gets a result.
            for cell in pending:
                yield _synth(cell["cell_id"], "crash", f"could not start the worker: {exc}",
                             phase="import", rc=None, log_tail="", env=None, duration=0.0)
            return
        _register(proc)
        try:
            limits = {str(c["cell_id"]): float(c["timeout_s"]) for c in batch if c.get("timeout_s")}
            state = _BatchState({str(c["cell_id"]) for c in batch}, limits)
            recycler = _Recycler(proc, rss_limit) if recyclable else None
            killed_for = yield from _supervise(proc, state, reader, t_spawn, cell_timeout,
                                               import_timeout, cancel, recycler)
        finally:
            # Ctrl-C in the consumer, the generator closed early, a cancelled run: the
            # worker's process group never outlives its supervisor.
            if proc.poll() is None:
                _kill_group(proc)
            _unregister(proc)
        done, ready, ready_env = state.done, state.ready, state.ready_env
        in_flight, t_cell, finished = state.in_flight, state.t_cell, state.finished
        rc = proc.returncode
        tail, planted = _read_log(log_path)
        if planted and killed_for != "tampered":
            killed_for, state.tampered = "tampered", planted
        remaining = [c for c in batch if c["cell_id"] not in done]
        blamed: list[str] = []
        retired = recycler.retiring if recycler is not None else None
        if retired and killed_for is None and in_flight is None and remaining:
            # Retired as asked: between cells, nothing in flight, nobody to blame.
            with _RECYCLED_LOCK:
                _RECYCLED += 1
            pid = f" (pid {proc.pid})" if proc.pid > 0 else ""
            note = (f"[recycle] {workdir.name}: worker {ctl.name}{pid} retired after {len(done)} cells: "
                    f"{retired['rss_mib']} MiB resident after {retired['after']}, "
                    f"over the {retired['limit_mib']} MiB limit (${RSS_LIMIT_VAR}); a fresh worker "
                    f"takes the other {len(remaining)}")
            with contextlib.suppress(OSError):
                safefs.append_text(log_path.parent, log_path.name, "\n" + note + "\n")
            print(note, file=sys.stderr, flush=True)
        if killed_for == "tampered":
            # The code under test attacked the protocol: every cell it still owed is that
            # attack, and no fresh worker gets the chance to repeat it.
            blamed = [c["cell_id"] for c in remaining]
            for cid in blamed:
                yield _synth(cid, "protocol_error", f"the worker tampered with its control folder: "
                             f"{state.tampered}; worker killed", phase=None, rc=rc, log_tail=tail,
                             env=ready_env, duration=None, error_type=TAMPERED)
        elif killed_for == "cell" and in_flight is not None:
            blamed = [in_flight]
            limit = state.limit(in_flight, cell_timeout)
            yield _synth(in_flight, "timeout", f"cell exceeded its {limit:g} s limit and did not answer "
                         f"the worker's watchdog within {_grace(limit):g} s (stuck outside Python); "
                         "worker process group killed", phase=None, rc=rc, log_tail=tail,
                         env=ready_env, duration=time.monotonic() - t_cell)
        elif killed_for == "import":
            blamed = [c["cell_id"] for c in remaining]
            for cid in blamed:
                yield _synth(cid, "timeout", f"worker did not import the framework within "
                             f"{import_timeout:g} s", phase="import", rc=rc, log_tail=tail,
                             env=None, duration=import_timeout)
        elif in_flight is not None and finished and rc == 0:
            blamed = [in_flight]
            yield _synth(in_flight, "protocol_error", "worker reported done without a result "
                         "for this cell", phase=None, rc=rc, log_tail=tail, env=ready_env,
                         duration=None)
        elif in_flight is not None:
            blamed = [in_flight]
            yield _synth(in_flight, "crash", f"worker died during this cell ({_exit_text(rc)})",
                         phase=None, rc=rc, log_tail=tail, env=ready_env,
                         duration=time.monotonic() - t_cell)
        elif remaining and not ready:
            # Died before the first cell: while importing the framework. Every cell of
            # the batch would die the same way; blame them all instead of looping.
            blamed = [c["cell_id"] for c in remaining]
            outcome = "crash" if rc != 0 else "protocol_error"
            for cid in blamed:
                yield _synth(cid, outcome, f"worker exited before its first cell "
                             f"({_exit_text(rc)})", phase="import", rc=rc, log_tail=tail,
                             env=None, duration=None)
        elif remaining and not done:
            # Ready, no cell in flight, no progress: blame the next cell so we always advance.
            # (A kill for idleness after some progress blames nobody: a fresh worker goes on.)
            blamed = [remaining[0]["cell_id"]]
            if killed_for == "idle":
                reason = f"worker went quiet for {cell_timeout:g} s outside any cell and was killed"
            elif finished:
                reason = "worker reported done without a result for this cell"
            else:
                reason = f"worker exited between cells ({_exit_text(rc)})"
            yield _synth(blamed[0], "protocol_error", reason, phase=None, rc=rc,
                         log_tail=tail, env=ready_env, duration=None)
        resolved = done | set(blamed)
        if not resolved and remaining:  # never respawn without progress
            resolved = {remaining[0]["cell_id"]}
            yield _synth(remaining[0]["cell_id"], "protocol_error", "worker made no progress on "
                         f"its batch ({_exit_text(rc)})", phase=None, rc=rc, log_tail=tail,
                         env=ready_env, duration=None)
        pending = [c for c in pending if c["cell_id"] not in resolved]


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    ok: bool
    env: dict[str, Any]
    error: dict[str, Any] | None
    import_s: float | None
    log_tail: str


def probe(python: str, *, workdir: Path, env: Mapping[str, str], keras_module: str = "auto",
          timeout: float = 600.0, extra_sys_path: Sequence[str] = (),
          spawn: Spawn | None = None) -> ProbeResult:
    """Import the stack's framework in a worker and report the installed versions."""
    spawn = spawn or _default_spawn
    shutil.rmtree(workdir, ignore_errors=True)
    ctl = workdir / "probe"
    _write_request(ctl, "probe", [], keras_module, extra_sys_path,
                   in_container=bool(getattr(spawn, "in_container", False)))
    log_path = ctl / _w.LOG_FILE
    try:
        proc = spawn([python, "-I", str(WORKER_PATH), "probe", str(ctl)], log_path, env)
    except OSError as exc:
        return ProbeResult(False, {}, {"type": "builtins.OSError", "message": str(exc)}, None, "")
    _register(proc)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return ProbeResult(False, {}, {"type": "runner.timeout",
                                       "message": f"framework import took over {timeout:g} s"},
                           None, _tail(log_path))
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        _unregister(proc)
    tail = _tail(log_path)
    try:
        events = _EventReader(ctl / _w.EVENTS_FILE).read()
    except safefs.Tampered as exc:
        return ProbeResult(False, {}, {"type": TAMPERED, "message": str(exc.strerror)}, None, tail)
    for event in events:
        if event.get("event") == "ready":
            return ProbeResult(True, event.get("env") or {}, None, event.get("import_s"), tail)
        if event.get("event") == "import_error":
            return ProbeResult(False, {}, event.get("error"), None, tail)
    return ProbeResult(False, {}, {"type": f"runner.{'crash' if proc.returncode else 'protocol_error'}",
                                   "message": f"probe worker wrote no result ({_exit_text(proc.returncode)})"},
                       None, tail)

