"""Build (or reuse) one virtualenv per stack with uv, and probe what it really holds.

Stdlib only. Stacks with the same interpreter and requirements share one venv (their
env vars differ, e.g. ``KERAS_BACKEND``), and every venv is hard-linked from the one
shared uv cache, so a TensorFlow wheel is downloaded once per machine. A venv is reused
while its marker file says it was completed for the same interpreter and requirements;
a killed install leaves no marker and is redone. Any failure (no interpreter, no uv,
unresolvable pins, import crash) becomes a :class:`StackEnv` with ``ok=False`` and the
reason — never an exception that could stop the other stacks.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import components, execute
from runner.records import Store, atomic_write_text
from runner.runtime_docker import RuntimeSettings
from runner.stacks import Stack, find_python, find_uv

__all__ = ["RuntimeSettings", "StackEnv", "ensure_env", "find_uv", "forget_probe"]

MARKER = ".compat-env.json"
INSTALL_TIMEOUT_S = 3600


@dataclasses.dataclass(frozen=True)
class StackEnv:
    """A stack's runtime as built on this machine."""

    stack: Stack
    ok: bool
    python: str | None = None  # the venv's interpreter
    fingerprint: str = ""  # hash of what is installed + env vars: part of every cache key
    versions: dict[str, Any] = dataclasses.field(default_factory=dict)
    reason: str | None = None  # why it is unavailable (one paragraph)
    error_type: str | None = None
    build_s: float = 0.0
    reused: bool = False
    freeze: str = ""
    runtime: str = "venv"
    # How its workers start: None is a host process; the docker runtime's container spawn.
    spawn: execute.Spawn | None = None


def _unavailable(stack: Stack, reason: str, error_type: str, t0: float) -> StackEnv:
    return StackEnv(stack=stack, ok=False, reason=reason, error_type=error_type,
                    build_s=round(time.monotonic() - t0, 2))


def _last_lines(text: str, n: int = 12) -> str:
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builds of one venv across processes (two stores sharing $COMPAT_ENVS_DIR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _read_marker(venv: Path) -> dict[str, Any]:
    try:
        data = json.loads((venv / MARKER).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _pip_settings() -> list[str]:
    """uv ignores pip's configuration: carry over the user's pip index and find-links
    variables (a corporate mirror, a local folder of wheels such as a CPU-only torch)."""
    args: list[str] = []
    if os.environ.get("PIP_INDEX_URL") and not os.environ.get("UV_INDEX_URL"):
        args += ["--index-url", os.environ["PIP_INDEX_URL"]]
    if not os.environ.get("UV_FIND_LINKS"):
        for location in os.environ.get("PIP_FIND_LINKS", "").split():
            args += ["--find-links", location]
    return args


def _install(uv: list[str], interpreter: str, stack: Stack, venv: Path,
             log_path: Path) -> tuple[bool, str]:
    """Create the venv and install the stack's requirements; (ok, error text)."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.setdefault("UV_COMPILE_BYTECODE", "1")  # without .pyc every TF import is 3-4x slower
    commands = [
        [*uv, "venv", "--quiet", "--clear", "--python", interpreter, str(venv)],
        [*uv, "pip", "install", "--python", str(_venv_python(venv)), *_pip_settings(),
         *stack.requirements],
    ]
    with log_path.open("w") as log:
        for argv in commands:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            try:
                returncode, output = _run_install_step(argv, env)
            except subprocess.TimeoutExpired:
                return False, f"`{' '.join(argv[len(uv):len(uv) + 2])}` took over {INSTALL_TIMEOUT_S} s"
            log.write(output)
            if returncode != 0:
                return False, _last_lines(output)
    return True, ""


def _run_install_step(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run one uv command in its own process group, registered with the executor like a
    worker: Ctrl-C or SIGTERM (``execute.kill_live_workers``) ends it and whatever it
    started, even from the run's build threads, which the interrupt never reaches.

    Raises:
        subprocess.TimeoutExpired: it took over INSTALL_TIMEOUT_S (its group is killed).
    """
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    execute._register(proc)
    try:
        output, _ = proc.communicate(timeout=INSTALL_TIMEOUT_S)
    except BaseException:  # a timeout, or Ctrl-C/SIGTERM in the thread running it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        execute._unregister(proc)
    return proc.returncode, output


def ensure_env(stack: Stack, store: Store, *, rebuild: bool = False,
               probe_timeout: float = 600.0, runtime: RuntimeSettings | None = None) -> StackEnv:
    """Build or reuse the stack's venv, then probe it. Never raises for stack problems.

    ``runtime`` places the stack (default: its catalog ``runtime``): ``venv`` builds from
    a host interpreter, ``docker`` builds and runs it in a container of its Python
    (runner/runtime_docker.py); a docker stack whose image cannot be had is unavailable
    with the reason."""
    t0 = time.monotonic()
    settings = runtime or RuntimeSettings()
    if settings.runtime_for(stack.runtime, stack.python) == "docker":
        return _ensure_docker_env(stack, store, settings, rebuild, probe_timeout, t0)
    interpreter = find_python(stack.python)
    if interpreter is None:
        return _unavailable(
            stack, f"no Python {stack.python} interpreter found (looked at "
            f"$COMPAT_PYTHON_{stack.python.replace('.', '_')}, python{stack.python} on PATH, "
            "$PYENV_ROOT/versions and `uv python find`)", "runner.NoInterpreter", t0)
    uv = find_uv()
    if uv is None:
        return _unavailable(stack, "uv not found (pip install uv, or set $UV)",
                            "runner.NoUv", t0)
    spec = {"interpreter": interpreter, "requirements": list(stack.requirements)}
    env_key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    venv = store.envs_dir / f"py{stack.python}-{env_key}"
    reused = False
    with _locked(store.envs_dir / f"py{stack.python}-{env_key}.lock"):
        marker = _read_marker(venv)
        if not rebuild and marker.get("spec") == spec and _venv_python(venv).exists():
            reused = True
        else:
            (venv / MARKER).unlink(missing_ok=True)
            ok, err = _install(uv, interpreter, stack, venv, venv.parent / f"{venv.name}.install.log")
            if not ok:
                return _unavailable(stack, f"installing {' '.join(stack.requirements)} on "
                                    f"Python {stack.python} failed:\n{err}",
                                    "runner.InstallFailed", t0)
            freeze_cmd = [*uv, "pip", "freeze", "--python", str(_venv_python(venv))]
            try:
                frozen = subprocess.run(freeze_cmd, capture_output=True, text=True, check=False,
                                        timeout=300)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return _unavailable(stack, f"`uv pip freeze` failed: {exc}", "runner.FreezeFailed", t0)
            freeze = frozen.stdout
            if frozen.returncode != 0 or not freeze.strip():
                # The freeze is part of every cell's fingerprint: an empty one would let
                # two different installs share cache keys. No marker: rebuilt next run.
                return _unavailable(stack, f"`uv pip freeze` failed (exit {frozen.returncode}): "
                                    f"{_last_lines(frozen.stderr or frozen.stdout) or 'no output'}",
                                    "runner.FreezeFailed", t0)
            marker = {"spec": spec, "freeze": freeze, "probes": {}}
            atomic_write_text(venv / MARKER, json.dumps(marker, indent=1, sort_keys=True))

        damage = verify_installed(venv, marker.get("freeze", ""))
        cached = _probe_cached(stack, store, venv, marker, probe_timeout, None) if not damage else {}
    if damage or not cached["ok"]:
        if reused:
            # A venv that imported before and fails now was damaged (a deleted file, a
            # half-finished manual change): rebuild it once from the uv cache, re-probe.
            return ensure_env(stack, store, rebuild=True, probe_timeout=probe_timeout, runtime=runtime)
        if damage:
            return _unavailable(stack, f"the stack installed but its files do not match what was installed: "
                                f"{damage}", "runner.EnvDamaged", t0)
        failure: dict[str, Any] = cached.get("error") or {}
        return _unavailable(stack, f"the stack installed but importing its framework failed: "
                            f"{failure.get('type', '?')}: {failure.get('message', '')}",
                            str(failure.get("type") or "runner.ImportFailed"), t0)
    fingerprint = _fingerprint(stack, marker, cached["env"])
    return StackEnv(stack=stack, ok=True, python=str(_venv_python(venv)),
                    fingerprint=fingerprint, versions=cached["env"],
                    build_s=round(time.monotonic() - t0, 2), reused=reused,
                    freeze=marker.get("freeze", ""))


def peek_env(stack: Stack, store: Store, runtime: RuntimeSettings | None = None) -> StackEnv:
    """The stack's environment as it stands, without building, installing or importing
    anything (``matrix --dry-run``): ok with the fingerprint ``ensure_env`` would compute
    when its venv is built, verified intact and probed by this worker code; otherwise not
    ok, with the reason (a real run would build or probe it first)."""
    t0 = time.monotonic()
    settings = runtime or RuntimeSettings()
    if settings.runtime_for(stack.runtime, stack.python) == "docker":
        return _unavailable(stack, "a docker stack: its image is not inspected by a dry run",
                            "runner.NotPeeked", t0)
    interpreter = find_python(stack.python)
    if interpreter is None:
        return _unavailable(stack, f"no Python {stack.python} interpreter found", "runner.NoInterpreter", t0)
    spec = {"interpreter": interpreter, "requirements": list(stack.requirements)}
    env_key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    venv = store.envs_dir / f"py{stack.python}-{env_key}"
    marker = _read_marker(venv)
    if marker.get("spec") != spec or not _venv_python(venv).exists():
        return _unavailable(stack, "its environment is not built yet", "runner.NotBuilt", t0)
    damage = verify_installed(venv, marker.get("freeze", ""))
    if damage:
        return _unavailable(stack, f"its environment is damaged and would be rebuilt: {damage}",
                            "runner.EnvDamaged", t0)
    probe_key = _probe_key(stack)
    cached = (marker.get("probes") or {}).get(stack.id)
    if not cached or cached.get("key") != probe_key:
        return _unavailable(stack, "its environment would be probed again (the probe's code changed)",
                            "runner.NotProbed", t0)
    return StackEnv(stack=stack, ok=True, python=str(_venv_python(venv)),
                    fingerprint=_fingerprint(stack, marker, cached["env"]), versions=cached["env"],
                    reused=True, freeze=marker.get("freeze", ""))


def _probe_key(stack: Stack) -> str:
    return hashlib.sha256(json.dumps(
        [sorted(components.probe_parts().items()), stack.env, stack.keras_module]).encode()).hexdigest()


def _fingerprint(stack: Stack, marker: dict[str, Any], probed: dict[str, Any],
                 runtime: dict[str, Any] | None = None) -> str:
    """The environment's part of every cell key: the interpreter's exact version (3.11.4 and
    3.11.9 are different stacks), the verified installed set (the freeze, checked against the
    files by :func:`verify_installed` before this is called), the stack's env vars and Keras
    module, and for docker stacks the image."""
    parts: list[Any] = [stack.python, probed.get("python"), probed.get("platform"), marker.get("freeze", ""),
                        stack.env, stack.keras_module]
    if runtime:
        parts.append(runtime)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _probe_cached(stack: Stack, store: Store, venv: Path, marker: dict[str, Any], probe_timeout: float,
                  spawn: execute.Spawn | None) -> dict[str, Any]:
    """The stack's probe (one framework import, seconds), cached in the venv's marker per
    stack, keyed by what could change its answer: the worker code a probe runs (the framework
    import and version report, not the whole worker), the env vars, the Keras module."""
    probe_key = _probe_key(stack)
    probes = marker.setdefault("probes", {})
    cached: dict[str, Any] | None = probes.get(stack.id)
    if cached is None or cached.get("key") != probe_key:
        result = execute.probe(
            str(_venv_python(venv)), workdir=store.root / "runs" / f"probe-{stack.id}",
            env=execute.child_env(stack.env_dict), keras_module=stack.keras_module,
            timeout=probe_timeout, spawn=spawn)
        cached = {"key": probe_key, "ok": result.ok, "env": result.env,
                  "error": result.error, "import_s": result.import_s,
                  "log_tail": result.log_tail[-1500:]}
        if result.ok:  # a failed import may be a damaged venv or a slow disk: retried
            probes[stack.id] = cached
            atomic_write_text(venv / MARKER, json.dumps(marker, indent=1, sort_keys=True))
    return cached


def _ensure_docker_env(stack: Stack, store: Store, settings: RuntimeSettings, rebuild: bool,
                       probe_timeout: float, t0: float) -> StackEnv:
    """The docker runtime's ensure_env: image, venv built by uv in a container, probe in one."""
    from runner import runtime_docker as rd

    try:
        eng = rd.engine()
        base = rd.base_image_name(stack.python, stack.image,
                                  settings.docker_base or os.environ.get("COMPAT_DOCKER_BASE"))
        image = rd.ensure_image(eng, base, stack.python)
    except rd.DockerUnavailable as exc:
        return _unavailable(stack, f"docker runtime: {exc}", exc.error_type, t0)
    spec = {"runtime": "docker", "image": image.tag, "requirements": list(stack.requirements)}
    env_key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = rd.docker_envs_root(store.envs_dir)
    venv = root / f"py{stack.python}-{env_key}"
    reused = False
    spawn = rd.ContainerSpawn(eng, image, venv, stack.env_dict, memory=settings.docker_memory,
                              cpus=settings.docker_cpus)
    with _locked(root / f"py{stack.python}-{env_key}.lock"):
        marker = _read_marker(venv)
        # The venv's python links to the image's interpreter: it may dangle on the host.
        if not rebuild and marker.get("spec") == spec and os.path.lexists(_venv_python(venv)):
            reused = True
        else:
            (venv / MARKER).unlink(missing_ok=True)
            ok, freeze, err = rd.build_venv(eng, image, stack.python, stack.requirements, venv,
                                            venv.parent / f"{venv.name}.install.log", _pip_settings())
            if not ok:
                return _unavailable(stack, f"installing {' '.join(stack.requirements)} on Python "
                                    f"{stack.python} in {image.tag} failed:\n{err}",
                                    "runner.InstallFailed", t0)
            if not freeze.strip():
                return _unavailable(stack, "`uv pip freeze` in the container printed nothing",
                                    "runner.FreezeFailed", t0)
            marker = {"spec": spec, "freeze": freeze, "probes": {}}
            atomic_write_text(venv / MARKER, json.dumps(marker, indent=1, sort_keys=True))
        damage = verify_installed(venv, marker.get("freeze", ""))
        cached = _probe_cached(stack, store, venv, marker, probe_timeout, spawn) if not damage else {}
    if damage or not cached["ok"]:
        if reused:
            return _ensure_docker_env(stack, store, settings, True, probe_timeout, t0)
        if damage:
            return _unavailable(stack, f"the stack installed (docker, {image.tag}) but its files do not match "
                                f"what was installed: {damage}", "runner.EnvDamaged", t0)
        failure: dict[str, Any] = cached.get("error") or {}
        return _unavailable(stack, f"the stack installed (docker, {image.tag}) but importing its "
                            f"framework failed: {failure.get('type', '?')}: {failure.get('message', '')}",
                            str(failure.get("type") or "runner.ImportFailed"), t0)
    # The image's tag names what it was built from; the base's id is content-addressed
    # (the image's own id is not: it changes with every rebuild of the same content).
    fingerprint = _fingerprint(stack, marker, cached["env"], {"runtime": "docker", "image": image.tag,
                                                              "base_id": image.base_id})
    return StackEnv(stack=stack, ok=True, python=str(_venv_python(venv)), fingerprint=fingerprint,
                    versions={**cached["env"], **image.record_env()},
                    build_s=round(time.monotonic() - t0, 2), reused=reused,
                    freeze=marker.get("freeze", ""), runtime="docker", spawn=spawn)


def _site_packages(venv: Path) -> list[Path]:
    return sorted(p for p in venv.glob("lib/python*/site-packages") if p.is_dir())


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def verify_installed(venv: Path, freeze: str) -> str:
    """Why the venv no longer holds what was installed ("" when it does): every distribution
    of the recorded freeze has its metadata, and every file its ``RECORD`` lists exists with
    the recorded size. A few stat calls per file (TensorFlow: ~20,000 files, ~0.2 s), so it
    runs every time a venv is reused; the probe imports only the framework, and a deleted
    ``h5py/`` next to an intact ``h5py-*.dist-info`` imports fine until a save needs it."""
    found: dict[str, Path] = {}
    for site in _site_packages(venv):
        for info in site.glob("*.dist-info"):
            found[_dist_name(info.name[:-len(".dist-info")].split("-")[0])] = info
    wanted = [_dist_name(re.split(r"\s*(?:==|@)\s*", line.strip())[0]) for line in freeze.splitlines()
              if line.strip() and not line.startswith(("#", "-e "))]
    missing = [name for name in wanted if name not in found]
    if missing:
        return f"{len(missing)} installed distribution(s) gone: {', '.join(sorted(missing)[:5])}"
    bad: list[str] = []
    for name in wanted:
        info = found[name]
        try:
            rows = (info / "RECORD").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            bad.append(f"{name} (no RECORD)")
            continue
        for row in csv.reader(rows):
            if not row or row[0].endswith(".pyc") or "__pycache__" in row[0]:
                continue
            path = info.parent / row[0]
            size = row[2] if len(row) > 2 else ""
            try:
                st = path.lstat()
            except OSError:
                bad.append(f"{name}: {row[0]} missing")
                break
            if size.isdigit() and not path.is_symlink() and st.st_size != int(size):
                bad.append(f"{name}: {row[0]} has {st.st_size} bytes, {size} were installed")
                break
        if len(bad) >= 5:
            break
    return "; ".join(bad)


def damaged_module(python: str, message: str) -> str:
    """The module of an ``ImportError`` message (``No module named 'x.y'``) when the venv of
    ``python`` installed it and one of its files is gone now (damage, not a cell's result);
    "" otherwise — a module the stack never had (``keras.src`` in Keras 2) is the cell's."""
    match = re.search(r"No module named '([\w.]+)'", message)
    if not match:
        return ""
    parts = match.group(1).split(".")
    for site in _site_packages(Path(python).parent.parent):
        for record in site.glob("*.dist-info/RECORD"):
            listed = [row[0] for row in csv.reader(record.read_text(encoding="utf-8", errors="replace").splitlines())
                      if row]
            for n in range(len(parts), 0, -1):  # the deepest part this distribution installed
                stem = "/".join(parts[:n])
                files = [f for f in listed if f.startswith(stem + "/") or f.split(".", 1)[0] == stem]
                if files:
                    return ".".join(parts[:n]) if any(not (site / f).exists() for f in files) else ""
    return ""


def forget_probe(senv: StackEnv) -> None:
    """Drop the cached probe of ``senv``'s venv: its worker failed to import the framework
    although the probe had succeeded (the venv was damaged since). The next run probes
    again, and a failing probe of a reused venv rebuilds it."""
    if senv.python is None:
        return
    venv = Path(senv.python).parent.parent
    with _locked(venv.parent / f"{venv.name}.lock"):  # the builder's lock (with_suffix cut at "3.11")
        marker = _read_marker(venv)
        if marker.get("probes", {}).pop(senv.stack.id, None) is not None:
            atomic_write_text(venv / MARKER, json.dumps(marker, indent=1, sort_keys=True))
