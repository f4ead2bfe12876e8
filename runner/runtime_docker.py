"""The ``docker`` runtime: a stack's worker runs in a container of the stack's Python.

Uses the Docker SDK for Python (``docker`` package, imported lazily: the venv runtime
never needs it), never a shelled ``docker`` command.

Images and venvs
    One image per (base image, Python), tagged ``compat-matrix/python<X.Y>:<hash>`` where
    the hash covers the base image's id, the Python version and the build recipe below
    (the requirements are not part of it). The recipe adds only uv to the base; it is made
    by running the recipe in a container of the base (network on) and committing it, so the
    host's CA bundle and package-index settings reach the build through a mounted directory
    and never a layer or the image config. A stack's venv is built by uv *inside* a
    container of that image, into ``<envs>/docker/`` — a host directory bind-mounted at
    the same path that also holds uv's cache (``<envs>/docker/uv-cache``), so uv hard-links
    (one mount: DOCKER-FACTS.md) and a TensorFlow wheel is unpacked once for every stack.
    Network is on for builds only.

Running workers
    Every mount is at its host path, so the worker protocol needs no path translation:
    the worker script's directory, scenario directories and ``extra_sys_path`` read-only,
    the stack's venv read-only, the control directory read-write, artifacts read-write
    for a save and read-only for a load. Which paths: read from the request the host wrote
    (``request.json``), so callers of :func:`runner.execute.run_cells` change nothing but
    the ``spawn``. Containers run with network none, a non-root user (the host's uid, or
    65534 when the host runs as root), a read-only root filesystem with a tmpfs ``/tmp``
    (also ``HOME``), all capabilities dropped, ``docker-init`` as PID 1 (so a worker
    killed by a signal reports it), optional memory/CPU limits, and are always removed.
    A container killed or OOM-killed reports ``-SIGKILL`` (a ``crash`` with its signal).

Sandbox (``check --sandbox``): :func:`sandbox_spawn` — the same container with only the
files the request names (model file, outputs dir) mounted, nothing else of the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import safefs

__all__ = [
    "DEFAULT_BASE",
    "RUN_RUNTIMES",
    "ContainerProcess",
    "ContainerSpawn",
    "DockerUnavailable",
    "Engine",
    "ImageInfo",
    "RuntimeSettings",
    "base_image_name",
    "build_venv",
    "engine",
    "ensure_image",
    "image_tag",
    "sandbox_spawn",
    "sandbox_unavailable",
]

RUN_RUNTIMES = ("venv", "docker", "auto")
DEFAULT_BASE = "python:{python}-slim-bookworm"
IMAGE_REPO = "compat-matrix/python{python}"
UV_REQUIREMENT = "uv==0.13.9"
NOBODY = "65534:65534"
BUILD_TIMEOUT_S = 3600
LABEL = "compat-matrix"
# The host variables that say where packages come from: forwarded by name into build
# containers (values never enter an image), local folders among them mounted read-only.
INDEX_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_INDEX_URL",
              "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_DEFAULT_INDEX", "UV_INDEX",
              "PIP_TRUSTED_HOST", "UV_INSECURE_HOST", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "no_proxy")
CA_IN_CONTAINER = "/run/compat-ca/ca.pem"
_RUNNER_VARS = ("PIP_USER", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "PYTHONNOUSERSITE")
_HOST_PATH_VARS = ("HOME", "TMPDIR", "TMP", "TEMP", "KERAS_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR",
                   "PATH", "PWD", "OLDPWD", "SHELL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")

# pip's options for installing uv into the image. uv's wheel is a standalone binary
# (py3-none-<platform>) but declares Requires-Python >= 3.8, so without
# --ignore-requires-python a 3.7 base (the catalog's TF 1.15 stacks) fails with "No
# matching distribution found for uv"; uv itself then creates 3.7 venvs, as on the host.
UV_PIP_OPTIONS = ("--quiet", "--no-cache-dir", "--disable-pip-version-check", "--ignore-requires-python")
# The recipe: run in a container of the base image, then committed. $1 = X.Y.
RECIPE = r"""set -eu
[ -f /compat-build/env.sh ] && . /compat-build/env.sh
PY="$(command -v "python$1" || true)"
if [ -z "$PY" ]; then
    echo "COMPAT-NO-PYTHON: $(python3 --version 2>&1 || echo 'no python3')"; exit 3
fi
"$PY" -m venv /opt/compat-uv
/opt/compat-uv/bin/python -m pip install @UV_PIP_OPTIONS@ "$2"
ln -sf /opt/compat-uv/bin/uv /usr/local/bin/uv
ln -sf "$PY" /usr/local/bin/compat-python
# nothing of the build stays in the layer: the builder's cache and temp files
rm -rf "$HOME/.cache" "$("$PY" -c 'import tempfile; print(tempfile.gettempdir())')"/* 2>/dev/null || true
"""
RECIPE = RECIPE.replace("@UV_PIP_OPTIONS@", " ".join(UV_PIP_OPTIONS))
# The committed image's config: no value of the build's environment.
_COMMIT_CHANGES = ["ENV LANG=C.UTF-8", "ENV UV_COMPILE_BYTECODE=1", "ENV UV_PYTHON_DOWNLOADS=never",
                   'CMD ["compat-python"]']

# The venv build, in a container of the image: $1 = venv, $2 = X.Y, the rest = uv pip args.
VENV_SCRIPT = r"""set -eu
venv="$1"; py="$2"; shift 2
uv venv --quiet --clear --python "python$py" "$venv"
uv pip install --python "$venv/bin/python" "$@"
uv pip freeze --python "$venv/bin/python" > "$venv/.compat-freeze.txt"
chmod -R a+rX "$venv"
"""


class DockerUnavailable(Exception):
    """No image can be had for a stack (no SDK, no engine, base missing, build failed):
    the stack is ``env_unavailable`` with this message."""

    def __init__(self, message: str, error_type: str = "runner.DockerUnavailable") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclasses.dataclass(frozen=True)
class RuntimeSettings:
    """How a run places its stacks: ``runtime`` None follows each stack's catalog entry;
    ``venv``/``docker`` force one; ``auto`` is venv where the interpreter exists, docker
    otherwise. ``docker_base`` replaces every stack's base image (``{python}`` is filled
    in); ``docker_memory`` (e.g. ``4g``) and ``docker_cpus`` limit each worker container."""

    runtime: str | None = None
    docker_base: str | None = None
    docker_memory: str | None = None
    docker_cpus: float | None = None

    def __post_init__(self) -> None:
        if self.runtime is not None and self.runtime not in RUN_RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUN_RUNTIMES)}, not {self.runtime!r}")
        if self.docker_cpus is not None and not self.docker_cpus > 0:
            raise ValueError(f"docker_cpus must be positive, not {self.docker_cpus}")
        if self.docker_memory is not None and parse_memory(self.docker_memory) is None:
            raise ValueError(f"docker_memory must look like 512m or 4g, not {self.docker_memory!r}")

    def runtime_for(self, stack_runtime: str, python: str) -> str:
        """``venv`` or ``docker`` for a stack whose catalog says ``stack_runtime``."""
        chosen = self.runtime or stack_runtime
        if chosen == "auto":
            from runner.stacks import find_python

            return "venv" if find_python(python) is not None else "docker"
        return chosen


def parse_memory(text: str) -> int | None:
    """``512m``/``4g``/``1073741824`` → bytes; None when it is not a size."""
    text = text.strip().lower()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    mult = 1
    if text[-1:] in units:
        mult, text = units[text[-1]], text[:-1]
    elif text[-2:-1] in units and text[-1:] == "b":
        mult, text = units[text[-2]], text[:-2]
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value * mult) if value > 0 else None


def base_image_name(python: str, stack_image: str = "", override: str | None = None) -> str:
    """The base image of a stack: ``override`` (``--docker-base``, else ``$COMPAT_DOCKER_BASE``)
    over the catalog's ``image`` over the official ``python:X.Y-slim-bookworm``; ``{python}``
    in any of them becomes ``X.Y``."""
    return (override or stack_image or DEFAULT_BASE).replace("{python}", python)


def image_tag(base_id: str, python: str) -> str:
    """The runtime image's name: a content hash of (base image id, Python, recipe), so it
    is reused while all three are unchanged and never depends on a stack's requirements."""
    digest = hashlib.sha256(json.dumps(
        {"base": base_id, "python": python, "recipe": RECIPE, "uv": UV_REQUIREMENT,
         "commit": _COMMIT_CHANGES}, sort_keys=True).encode()).hexdigest()[:16]
    return f"{IMAGE_REPO.format(python=python)}:{digest}"


# ------------------------------------------------------------------------------ engine


class Engine:
    """The Docker client plus what this process learned about it (one per process)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._images: dict[tuple[str, str], ImageInfo] = {}
        self.lock = threading.Lock()

    def image(self, name: str) -> Any | None:
        import docker.errors

        try:
            return self.client.images.get(name)
        except docker.errors.ImageNotFound:
            return None


class _Cached:
    engine: Engine | None = None
    error: str | None = None


_ENGINE_LOCK = threading.Lock()


def engine(client_factory: Any = None) -> Engine:
    """The process's Docker engine (cached, and so is a failure), or :class:`DockerUnavailable`
    saying why. ``client_factory`` (tests) replaces ``docker.from_env(version="auto")``."""
    with _ENGINE_LOCK:
        if _Cached.engine is not None:
            return _Cached.engine
        if _Cached.error is not None:
            raise DockerUnavailable(_Cached.error, "runner.NoDockerEngine")
        if client_factory is None:
            try:
                import docker
            except ImportError:
                _Cached.error = "the docker runtime needs the Docker SDK for Python (pip install docker)"
                raise DockerUnavailable(_Cached.error, "runner.NoDockerSdk") from None
            client_factory = lambda: docker.from_env(version="auto", timeout=120)  # noqa: E731
        try:
            client = client_factory()
            client.ping()
        except Exception as exc:  # DockerException, requests errors: no engine answers
            _Cached.error = f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:300]})"
            raise DockerUnavailable(_Cached.error, "runner.NoDockerEngine") from None
        _Cached.engine = Engine(client)
        _sweep_orphans(_Cached.engine)
        return _Cached.engine


def reset_engine() -> None:
    """Forget the cached engine and its error (tests; a run after an engine was started)."""
    with _ENGINE_LOCK:
        _Cached.engine, _Cached.error = None, None


def _sweep_orphans(eng: Engine) -> None:
    """Remove worker containers left by a runner of this host that is gone (SIGKILLed)."""
    with contextlib.suppress(Exception):
        for c in eng.client.containers.list(all=True, filters={"label": f"{LABEL}.pid"}):
            labels = c.labels or {}
            if labels.get(f"{LABEL}.host") != socket.gethostname():
                continue
            pid = int(labels.get(f"{LABEL}.pid", "0"))
            try:
                os.kill(pid, 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            with contextlib.suppress(Exception):
                c.remove(force=True)


def _mounts(volumes: Mapping[str, Mapping[str, str]]) -> list[Any]:
    """Bind mounts as HostConfig mounts: the SDK's ``volumes=`` would also declare them as
    the container's volumes, and a commit would turn those into the image's VOLUMEs."""
    from docker.types import Mount

    return [Mount(target=spec["bind"], source=src, type="bind", read_only=spec.get("mode") == "ro")
            for src, spec in volumes.items()]


def _labels(kind: str) -> dict[str, str]:
    return {LABEL: kind, f"{LABEL}.host": socket.gethostname(), f"{LABEL}.pid": str(os.getpid())}


# ----------------------------------------------------------------- host settings by name


def host_ca_bundle() -> Path | None:
    """The host's CA bundle (its proxy's CA included), by the usual variables or Python's
    default; mounted read-only for builds so HTTPS through the same proxy works."""
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value).resolve()
    default = ssl.get_default_verify_paths().cafile
    if default and Path(default).is_file():
        return Path(default).resolve()
    fallback = Path("/etc/ssl/certs/ca-certificates.crt")
    return fallback if fallback.is_file() else None


def _index_env() -> dict[str, str]:
    return {k: os.environ[k] for k in INDEX_VARS if os.environ.get(k)}


def _local_dirs(values: Sequence[str]) -> list[Path]:
    """Local folders/files named by index settings or requirements (``file://`` URLs,
    absolute paths): mounted read-only at the same path."""
    found = []
    for value in values:
        for part in value.replace(",", " ").split():
            text = part.split("@", 1)[1].strip() if "@" in part and " @ " not in part else part
            if text.startswith("file://"):
                text = text[len("file://"):]
            if text.startswith("/") and Path(text).exists():
                found.append(Path(text).resolve())
    return found


def _ca_volume() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    ca = host_ca_bundle()
    if ca is None:
        return {}, {}
    env = {"SSL_CERT_FILE": CA_IN_CONTAINER, "PIP_CERT": CA_IN_CONTAINER,
           "REQUESTS_CA_BUNDLE": CA_IN_CONTAINER}
    return {str(ca): {"bind": CA_IN_CONTAINER, "mode": "ro"}}, env


# --------------------------------------------------------------------------- images


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    tag: str
    id: str
    base: str
    base_id: str
    base_digest: str | None
    built: bool
    build_s: float

    def record_env(self) -> dict[str, Any]:
        """What every record of a docker stack carries next to the installed versions."""
        return {"runtime": "docker", "docker_image": self.tag, "docker_image_id": self.id,
                "docker_base": self.base, "docker_base_id": self.base_id,
                "docker_base_digest": self.base_digest}


class _BuildHandle:
    """A build container in the executor's live registry while it runs, so Ctrl-C
    (``execute.kill_live_workers``) removes it too: builds run in the run's worker threads,
    which the KeyboardInterrupt never reaches, and the container would go on installing."""

    pid = -1
    returncode: int | None = None

    def __init__(self, container: Any) -> None:
        self.container = container
        self.killed = False

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode if self.returncode is not None else -signal.SIGKILL

    def kill(self) -> None:
        self.kill_group()

    def kill_group(self) -> None:
        self.killed = True
        with contextlib.suppress(Exception):
            self.container.remove(force=True)


def _run_to_end(eng: Engine, image: str, command: Sequence[str], *, timeout: float,
                **kwargs: Any) -> tuple[int, str, Any]:
    """Run a container to completion; (exit status, output, container). The caller removes it."""
    from runner import execute

    container = eng.client.containers.run(image, list(command), detach=True, labels=_labels("build"),
                                          **kwargs)
    handle = _BuildHandle(container)
    execute._register(handle)
    try:
        status = container.wait(timeout=timeout)
        code = int(status.get("StatusCode", 1)) if isinstance(status, dict) else int(status)
    except Exception as exc:  # the read timed out: the build hung
        with contextlib.suppress(Exception):
            container.remove(force=True)
        raise DockerUnavailable(f"a build container of {image} did not finish within {timeout:g} s "
                                f"({type(exc).__name__})", "runner.DockerBuildFailed") from None
    finally:
        execute._unregister(handle)
    if handle.killed:
        raise DockerUnavailable(f"a build container of {image} was removed: the run was interrupted",
                                "runner.DockerBuildFailed")
    output = container.logs(stdout=True, stderr=True)
    return code, output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output), container


def ensure_image(eng: Engine, base: str, python: str) -> ImageInfo:
    """The runtime image of (base, Python): reused when its tag exists, else built.

    Raises:
        DockerUnavailable: the base cannot be had (not local, not pullable), it has no
            Python ``python``, or the build failed — with the reason.
    """
    with eng.lock:
        cached = eng._images.get((base, python))
        if cached is not None:
            return cached
        t0 = time.monotonic()
        base_img = eng.image(base)
        if base_img is None:
            try:
                base_img = eng.client.images.pull(base)
            except Exception as exc:
                raise DockerUnavailable(
                    f"base image {base} is not on this Docker engine and could not be pulled "
                    f"({type(exc).__name__}: {str(exc)[:200]}); build or pull it, or name another "
                    "with --docker-base / the catalog's image", "runner.DockerBaseMissing") from None
        digests = (getattr(base_img, "attrs", {}) or {}).get("RepoDigests") or []
        tag = image_tag(base_img.id, python)
        img = eng.image(tag)
        built = False
        if img is None:
            img = _build_image(eng, base, base_img.id, python, tag)
            built = True
        info = ImageInfo(tag=tag, id=img.id, base=base, base_id=base_img.id,
                         base_digest=digests[0] if digests else None, built=built,
                         build_s=round(time.monotonic() - t0, 2))
        eng._images[(base, python)] = info
        return info


def _build_image(eng: Engine, base: str, base_id: str, python: str, tag: str) -> Any:
    volumes, ca_env = _ca_volume()
    index = _index_env()
    with tempfile.TemporaryDirectory(prefix="compat-image-build-") as tmp:
        Path(tmp).chmod(0o755)
        # The build's settings travel in a mounted file: a container's environment would
        # be committed into the image config.
        lines = [f"export {k}={_sh_quote(v)}" for k, v in {**index, **ca_env}.items()]
        (Path(tmp) / "env.sh").write_text("\n".join(lines) + "\n")
        (Path(tmp) / "recipe.sh").write_text(RECIPE)
        volumes = {**volumes, tmp: {"bind": "/compat-build", "mode": "ro"}}
        for local in _local_dirs(list(index.values())):
            volumes[str(local)] = {"bind": str(local), "mode": "ro"}
        code, output, container = _run_to_end(
            eng, base_id, ["/bin/sh", "/compat-build/recipe.sh", python, UV_REQUIREMENT],
            timeout=BUILD_TIMEOUT_S, mounts=_mounts(volumes), user="0:0", entrypoint=[], working_dir="/")
        try:
            if code == 3 and "COMPAT-NO-PYTHON" in output:
                found = output.split("COMPAT-NO-PYTHON:", 1)[1].strip().splitlines()[0]
                raise DockerUnavailable(f"base image {base} has no Python {python} (python3 there: {found})",
                                        "runner.DockerBaseWrongPython")
            if code != 0:
                raise DockerUnavailable(f"building the runtime image for Python {python} from {base} "
                                        f"failed (exit {code}):\n{_last_lines(output)}",
                                        "runner.DockerBuildFailed")
            repo, _, version = tag.partition(":")
            container.commit(repository=repo, tag=version, changes=_COMMIT_CHANGES,
                             conf={"Labels": {LABEL: "runtime-image", f"{LABEL}.base": base,
                                              f"{LABEL}.python": python}})
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)
    img = eng.image(tag)
    if img is None:
        raise DockerUnavailable(f"the runtime image {tag} was committed but is not found",
                                "runner.DockerBuildFailed")
    return img


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _last_lines(text: str, n: int = 12) -> str:
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------- venvs


def docker_envs_root(envs_dir: Path) -> Path:
    """Venvs of docker stacks and their uv cache: one directory, one bind mount."""
    return envs_dir / "docker"


def _user() -> str:
    uid, gid = os.getuid(), os.getgid()
    return NOBODY if uid == 0 else f"{uid}:{gid}"


def build_venv(eng: Engine, image: ImageInfo, python: str, requirements: Sequence[str],
               venv: Path, log_path: Path, uv_args: Sequence[str] = ()) -> tuple[bool, str, str]:
    """Create ``venv`` (a host path, the same inside) with uv in a container of ``image``;
    (ok, freeze, error text). Network on; the host's CA and index settings forwarded."""
    root = venv.parent
    cache = root / "uv-cache"
    cache.mkdir(parents=True, exist_ok=True)
    volumes, ca_env = _ca_volume()
    index = _index_env()
    volumes[str(root)] = {"bind": str(root), "mode": "rw"}
    for local in _local_dirs([*index.values(), *uv_args]):
        volumes.setdefault(str(local), {"bind": str(local), "mode": "ro"})
    for local in _local_dirs(list(requirements)):  # a source tree: its build writes into it, as on the host
        volumes[str(local)] = {"bind": str(local), "mode": "rw"}
    env = {**index, **ca_env, "UV_CACHE_DIR": str(cache), "HOME": "/tmp", "UV_COMPILE_BYTECODE": "1",
           "UV_LINK_MODE": "hardlink", "UV_PYTHON_DOWNLOADS": "never"}
    uid = os.getuid()
    user = "0:0" if uid == 0 else f"{uid}:{os.getgid()}"
    try:
        code, output, container = _run_to_end(
            eng, image.id, ["/bin/sh", "-c", VENV_SCRIPT, "sh", str(venv), python, *uv_args, *requirements],
            timeout=BUILD_TIMEOUT_S, mounts=_mounts(volumes), environment=env, user=user, entrypoint=[],
            working_dir="/tmp")
    except DockerUnavailable as exc:
        return False, "", str(exc)
    with contextlib.suppress(Exception):
        container.remove(force=True)
    log_path.write_text(f"$ uv pip install {' '.join(requirements)} (in {image.tag})\n{output}")
    if code != 0:
        return False, "", _last_lines(output)
    try:
        freeze = (venv / ".compat-freeze.txt").read_text()
    except OSError as exc:
        return False, "", f"the build wrote no freeze: {exc}"
    return True, freeze, ""


# ---------------------------------------------------------------------- worker runs


def _collapse(paths: Mapping[str, str]) -> dict[str, str]:
    """Drop a mount whose ancestor is already mounted with the same mode."""
    out: dict[str, str] = {}
    for path in sorted(paths, key=lambda p: (len(Path(p).parts), p)):
        mode = paths[path]
        if any(mode == m and Path(path).is_relative_to(a) for a, m in out.items()):
            continue
        out[path] = mode
    return out


def _common_dir(paths: Sequence[str]) -> list[str]:
    """One shared ancestor for many sibling dirs (a stack's artifacts), unless that would
    be shallower than the dirs' grandparents' level minus one (then each on its own)."""
    if len(paths) <= 1:
        return list(paths)
    common = os.path.commonpath(paths)
    depth = min(len(Path(p).parts) for p in paths)
    return [common] if len(Path(common).parts) >= max(3, depth - 3) else list(paths)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    with contextlib.suppress(OSError):
        os.chown(path, uid, gid)
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                with contextlib.suppress(OSError):
                    os.lchown(Path(root) / name, uid, gid)


class ContainerProcess:
    """A worker container with the slice of ``subprocess.Popen`` the executor uses
    (``poll``, ``wait``, ``kill``, ``returncode``) plus ``kill_group`` (remove it)."""

    def __init__(self, container: Any, log_path: Path, memory: str | None) -> None:
        self.container = container
        self.log_path = log_path
        self.memory = memory
        self.pid = -1  # no host process group: the executor calls kill_group()
        self.returncode: int | None = None
        self._killed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._wait, daemon=True, name="container-wait")
        self._thread.start()

    def _wait(self) -> None:
        code: int | None = None
        oom = False
        try:
            status = self.container.wait()
            code = int(status.get("StatusCode", 1)) if isinstance(status, dict) else int(status)
            with contextlib.suppress(Exception):
                self.container.reload()
                oom = bool(self.container.attrs.get("State", {}).get("OOMKilled"))
        except Exception:  # removed under us (kill_group) or the engine went away
            code = None
        with contextlib.suppress(Exception):
            self.container.remove(force=True)
        if oom or self._killed or code is None:
            rc = -signal.SIGKILL
        elif code > 128 and (code - 128) in {s.value for s in signal.Signals}:
            rc = -(code - 128)  # docker-init reports a child killed by signal N as 128+N
        else:
            rc = code
        if oom:
            self._note(f"[docker runtime] the container was OOM-killed (memory limit {self.memory or 'none'})")
        elif code is None and not self._killed:
            self._note("[docker runtime] lost the container (the engine stopped or removed it)")
        self.returncode = rc
        self._done.set()

    def _note(self, text: str) -> None:
        # The log is in the container-writable control folder: never through a planted link.
        with contextlib.suppress(OSError):
            safefs.append_text(self.log_path.parent, self.log_path.name, "\n" + text + "\n")

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired("container", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL and remove the container (the executor's kill of a process group)."""
        self._killed = True
        with contextlib.suppress(Exception):
            self.container.remove(force=True)


class ContainerSpawn:
    """An :data:`runner.execute.Spawn` that starts the worker in a container of ``image``.

    Mounts come from the request in the control directory (see the module docstring).
    ``sandbox=True`` mounts single files where a cell names files (model, custom objects,
    inputs) and nothing of the host beyond what the request names.
    """

    in_container = True  # the executor writes no parent_pid (no host pid inside)

    def __init__(self, eng: Engine, image: ImageInfo, venv: Path, stack_env: Mapping[str, str], *,
                 memory: str | None = None, cpus: float | None = None, sandbox: bool = False,
                 pids_limit: int | None = 4096) -> None:
        self.eng = eng
        self.image = image
        self.venv = venv
        self.stack_env = dict(stack_env)
        self.memory = memory
        self.cpus = cpus
        self.sandbox = sandbox
        self.pids_limit = pids_limit
        self.record_env = image.record_env()

    def mounts(self, argv: Sequence[str]) -> dict[str, str]:
        worker, ctl = Path(argv[2]), Path(argv[-1])
        paths: dict[str, str] = {str(self.venv): "ro", str(worker.parent): "ro", str(ctl): "rw"}
        try:
            request = json.loads((ctl / "request.json").read_text())
        except (OSError, ValueError):
            request = {}
        phase = request.get("phase")
        for entry in request.get("extra_sys_path") or []:
            if Path(entry).exists():
                paths.setdefault(str(Path(entry)), "ro")
        cells = request.get("cells") or []
        arts = [str(c["artifact_dir"]) for c in cells if c.get("artifact_dir")]
        if phase == "save":
            parents = sorted({str(Path(a).parent) for a in arts})
            for parent in parents:
                Path(parent).mkdir(parents=True, exist_ok=True)
            for p in _common_dir(parents):
                paths[p] = "rw"
        else:
            for p in _common_dir(sorted({a for a in arts if Path(a).exists()})):
                paths.setdefault(p, "ro")
        for cell in cells:
            if cell.get("scenario_path"):
                paths.setdefault(str(Path(cell["scenario_path"]).parent), "ro")
            if cell.get("model_path"):
                # check stages the user's model (and its weights file) alone in a folder.
                paths.setdefault(str(Path(cell["model_path"]).parent), "ro")
            for key in ("custom_objects_path", "inputs_path"):
                value = cell.get(key)
                if value and Path(value).exists():
                    # In the sandbox exactly the file, else its folder.
                    paths.setdefault(str(Path(value) if self.sandbox else Path(value).parent), "ro")
            if cell.get("out_dir"):
                Path(cell["out_dir"]).mkdir(parents=True, exist_ok=True)
                paths[str(cell["out_dir"])] = "rw"
        return _collapse(paths)

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The stack's variables, the runner's, and what the caller set beyond the host's;
        nothing else of the host (host paths would be wrong inside anyway)."""
        out = {k: v for k, v in env.items()
               if k in _RUNNER_VARS or k in self.stack_env or os.environ.get(k) != v}
        for name in _HOST_PATH_VARS:
            out.pop(name, None)
        out.update({"HOME": "/tmp", "TMPDIR": "/tmp", "KERAS_HOME": "/tmp/.keras",
                    "XDG_CACHE_HOME": "/tmp/.cache", "MPLCONFIGDIR": "/tmp", "LANG": "C.UTF-8",
                    "PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin"})
        return out

    def __call__(self, argv: Sequence[str], log_path: Path, env: Mapping[str, str]) -> ContainerProcess:
        mounts = self.mounts(argv)
        user = _user()
        safefs.touch(log_path.parent, log_path.name)
        if os.getuid() == 0:  # the worker runs as nobody: it must write its rw mounts
            uid, gid = (int(x) for x in NOBODY.split(":"))
            for path, mode in mounts.items():
                if mode == "rw":
                    _chown_tree(Path(path), uid, gid)
        kwargs: dict[str, Any] = {}
        if self.memory:
            kwargs["mem_limit"] = self.memory
            kwargs["memswap_limit"] = self.memory  # no swap: over the limit is an OOM kill
        if self.cpus:
            kwargs["nano_cpus"] = int(self.cpus * 1e9)
        if self.pids_limit:
            kwargs["pids_limit"] = self.pids_limit
        # sh only redirects output to the log (like the venv runtime), then execs the worker.
        command = ["/bin/sh", "-c", 'exec "$@" >>"$0" 2>&1', str(log_path), *argv]
        try:
            container = self.eng.client.containers.run(
                self.image.id, command, detach=True, entrypoint=[], user=user,
                environment=self.environment(env), network_mode="none", read_only=True,
                tmpfs={"/tmp": "rw,exec,nosuid,nodev"}, working_dir="/tmp", init=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges"],
                mounts=_mounts({p: {"bind": p, "mode": m} for p, m in mounts.items()}),
                labels=_labels("sandbox" if self.sandbox else "worker"), **kwargs)
        except Exception as exc:
            raise OSError(f"docker: could not start the worker container: {type(exc).__name__}: "
                          f"{str(exc)[:300]}") from None
        return ContainerProcess(container, log_path, self.memory)


def sandbox_unavailable() -> str | None:
    """Why no sandbox can run here (no SDK, no engine), or None when an engine answers."""
    try:
        engine()
    except DockerUnavailable as exc:
        return str(exc)
    return None


def sandbox_spawn(senv: Any, *, memory: str | None = "4g", cpus: float | None = None) -> ContainerSpawn:
    """A spawn for ``check --sandbox``: pass it to ``execute.run_cells(..., spawn=...)``
    with the check worker. ``senv`` is a docker :class:`runner.envs.StackEnv` (built with
    ``ensure_env(stack, store, runtime=RuntimeSettings(runtime="docker", ...))``).

    The container has no network, runs as a non-root user with all capabilities dropped,
    a read-only root filesystem and a tmpfs ``/tmp`` as HOME; it sees only the stack's venv
    (read-only), the worker scripts (read-only), what the cells name — the folder the model
    was staged in (``model_path``'s parent: the model and its weights file only), the
    custom-objects and inputs files alone — read-only, its out_dir and
    control dir read-write; its environment is the stack's variables and the runner's
    (no host variable), and it is removed when the worker exits or is killed.

    Raises:
        DockerUnavailable: ``senv`` is not a docker stack env.
    """
    spawn = getattr(senv, "spawn", None)
    if not isinstance(spawn, ContainerSpawn):
        raise DockerUnavailable(f"stack {senv.stack.id} is not built for the docker runtime")
    return ContainerSpawn(spawn.eng, spawn.image, spawn.venv, spawn.stack_env, memory=memory,
                          cpus=cpus, sandbox=True)
