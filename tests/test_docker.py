"""Fast tier of the docker runtime: a fake Docker client (no engine), real host workers.

Image naming and reuse, base-image precedence, option handling, the reasons a docker
stack is unavailable, mounts and environment of a worker container, exit-status mapping
(signal, OOM), and the executor's container seams (no parent pid, image ids in records).
The real engine is tests/test_docker_real.py (marker ``docker``).
"""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKES, consume

from runner import cli, envs, execute, matrix, scenario_catalog
from runner import runtime_docker as rd
from runner.records import Store
from runner.stacks import Stack

docker = pytest.importorskip("docker", reason="the Docker SDK for Python is not installed (pip install docker)")


class FakeImage:
    def __init__(self, image_id: str, tags: list[str] | None = None, digests: list[str] | None = None) -> None:
        self.id = image_id
        self.tags = tags or []
        self.attrs = {"RepoDigests": digests or []}


class FakeContainer:
    def __init__(self, client: FakeClient, status: int = 0, logs: bytes = b"", oom: bool = False,
                 block: bool = False) -> None:
        self.client = client
        self.status = status
        self._logs = logs
        self.attrs: dict[str, Any] = {"State": {"OOMKilled": oom}}
        self.removed = False
        self.committed: dict[str, Any] | None = None
        self.release = threading.Event()
        if not block:
            self.release.set()

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        self.release.wait(30)
        return {"StatusCode": 137 if self.removed else self.status}

    def logs(self, **_: Any) -> bytes:
        return self._logs

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False) -> None:
        self.removed = True
        self.release.set()

    def commit(self, repository: str, tag: str, **kwargs: Any) -> FakeImage:
        self.committed = {"repository": repository, "tag": tag, **kwargs}
        img = FakeImage(f"sha256:built-{tag}", [f"{repository}:{tag}"])
        self.client.images.store[f"{repository}:{tag}"] = img
        return img


class FakeImages:
    def __init__(self) -> None:
        self.store: dict[str, FakeImage] = {}
        self.pulls: list[str] = []

    def get(self, name: str) -> FakeImage:
        if name in self.store:
            return self.store[name]
        raise docker.errors.ImageNotFound(name)

    def pull(self, name: str) -> FakeImage:
        self.pulls.append(name)
        raise docker.errors.APIError(f"pull access denied for {name}")


class FakeContainers:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.runs: list[dict[str, Any]] = []
        self.next: list[FakeContainer] = []

    def run(self, image: str, command: list[str], **kwargs: Any) -> FakeContainer:
        self.runs.append({"image": image, "command": command, **kwargs})
        return self.next.pop(0) if self.next else FakeContainer(self.client)

    def list(self, **_: Any) -> list[Any]:
        return []


class FakeClient:
    def __init__(self) -> None:
        self.images = FakeImages()
        self.containers = FakeContainers(self)

    def ping(self) -> bool:
        return True


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> rd.Engine:
    client = FakeClient()
    monkeypatch.setattr(rd._Cached, "engine", None)
    monkeypatch.setattr(rd._Cached, "error", None)
    return rd.engine(lambda: client)


def _stack(**kw: Any) -> Stack:
    return Stack(id=kw.pop("id", "s1"), python=kw.pop("python", "3.11"),
                 requirements=tuple(kw.pop("requirements", ("numpy",))), **kw)


# ------------------------------------------------------------------------ naming


def test_image_tag_is_a_content_hash_of_base_and_python() -> None:
    tag = rd.image_tag("sha256:aaa", "3.11")
    assert tag == rd.image_tag("sha256:aaa", "3.11")  # reused while nothing changed
    repo, digest = tag.split(":")
    assert repo == "compat-matrix/python3.11" and len(digest) == 16
    assert rd.image_tag("sha256:bbb", "3.11") != tag  # a rebuilt base is a new image
    assert rd.image_tag("sha256:aaa", "3.12").startswith("compat-matrix/python3.12:")


def test_base_image_precedence() -> None:
    assert rd.base_image_name("3.9") == "python:3.9-slim-bookworm"
    assert rd.base_image_name("3.9", "my/py:{python}") == "my/py:3.9"
    assert rd.base_image_name("3.9", "my/py:{python}", "local/base:{python}-x") == "local/base:3.9-x"


def test_one_image_for_stacks_with_different_requirements(fake_engine: rd.Engine) -> None:
    client = fake_engine.client
    client.images.store["local/base:3.11"] = FakeImage("sha256:base", digests=["local/base@sha256:dd"])
    info = rd.ensure_image(fake_engine, "local/base:3.11", "3.11")
    assert info.built and info.tag == rd.image_tag("sha256:base", "3.11")
    assert info.base_digest == "local/base@sha256:dd"
    build = client.containers.runs[0]
    assert build["image"] == "sha256:base" and "environment" not in build  # nothing to commit
    committed = client.containers.next or []
    assert not committed
    # The commit carries fixed settings only: no value of the host's environment.
    assert all(not c.startswith("ENV PIP_") for c in rd._COMMIT_CHANGES)
    # A second stack (other requirements, same base and Python) and a fresh process reuse it.
    fake_engine._images.clear()
    again = rd.ensure_image(fake_engine, "local/base:3.11", "3.11")
    assert again.tag == info.tag and not again.built and len(client.containers.runs) == 1
    env = again.record_env()
    assert env["runtime"] == "docker" and env["docker_image_id"] == again.id and env["docker_base_id"] == "sha256:base"


def test_build_settings_travel_in_a_mounted_file(fake_engine: rd.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://user:secret@mirror.invalid/simple")
    fake_engine.client.images.store["b"] = FakeImage("sha256:b")
    seen: dict[str, str] = {}
    real_run = fake_engine.client.containers.run

    def run(image: str, command: list[str], **kwargs: Any) -> FakeContainer:
        for m in kwargs["mounts"]:
            if m["Target"] == "/compat-build":
                seen["env.sh"] = (Path(m["Source"]) / "env.sh").read_text()
        return real_run(image, command, **kwargs)

    monkeypatch.setattr(fake_engine.client.containers, "run", run)
    container = FakeContainer(fake_engine.client)
    fake_engine.client.containers.next.append(container)
    rd.ensure_image(fake_engine, "b", "3.11")
    assert "PIP_INDEX_URL='https://user:secret@mirror.invalid/simple'" in seen["env.sh"]
    build = fake_engine.client.containers.runs[0]
    assert "environment" not in build and "secret" not in json.dumps(container.committed)


# ------------------------------------------------------------------ unavailable


def test_sandbox_unavailable_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rd._Cached, "engine", None)
    monkeypatch.setattr(rd._Cached, "error", "no Docker engine answers (x)")
    assert rd.sandbox_unavailable() == "no Docker engine answers (x)"


def test_no_engine_makes_the_stack_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rd._Cached, "engine", None)
    monkeypatch.setattr(rd._Cached, "error", "no Docker engine answers (ConnectionError: refused)")
    senv = envs.ensure_env(_stack(), Store(tmp_path / "store"),
                           runtime=rd.RuntimeSettings(runtime="docker"))
    assert not senv.ok and senv.error_type == "runner.NoDockerEngine"
    assert senv.reason == "docker runtime: no Docker engine answers (ConnectionError: refused)"


def test_engine_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rd._Cached, "engine", None)
    monkeypatch.setattr(rd._Cached, "error", None)

    def broken() -> Any:
        raise docker.errors.DockerException("Error while fetching server API version")

    with pytest.raises(rd.DockerUnavailable, match="no Docker engine answers"):
        rd.engine(broken)
    with pytest.raises(rd.DockerUnavailable, match="no Docker engine answers"):  # cached
        rd.engine()


def test_missing_base_is_unavailable_with_the_reason(fake_engine: rd.Engine, tmp_path: Path) -> None:
    senv = envs.ensure_env(_stack(image="nope/python:{python}", runtime="docker"), Store(tmp_path / "s"))
    assert not senv.ok and senv.error_type == "runner.DockerBaseMissing"
    assert "base image nope/python:3.11 is not on this Docker engine and could not be pulled" in (senv.reason or "")
    assert fake_engine.client.images.pulls == ["nope/python:3.11"]


def test_compat_docker_base_is_the_default_override(fake_engine: rd.Engine, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPAT_DOCKER_BASE", "local/py:{python}")
    senv = envs.ensure_env(_stack(image="other:{python}", runtime="docker"), Store(tmp_path / "s"))
    assert "base image local/py:3.11 is not on this Docker engine" in (senv.reason or "")
    senv = envs.ensure_env(_stack(runtime="docker"), Store(tmp_path / "s"),
                           runtime=rd.RuntimeSettings(docker_base="cli/py:{python}"))
    assert "base image cli/py:3.11 is not" in (senv.reason or "")


def test_base_without_the_python(fake_engine: rd.Engine) -> None:
    fake_engine.client.images.store["b"] = FakeImage("sha256:b")
    fake_engine.client.containers.next.append(
        FakeContainer(fake_engine.client, status=3, logs=b"COMPAT-NO-PYTHON: Python 3.9.2\n"))
    with pytest.raises(rd.DockerUnavailable, match=r"base image b has no Python 3.11 \(python3 there: Python 3.9.2\)"):
        rd.ensure_image(fake_engine, "b", "3.11")


def test_failed_build_names_the_output(fake_engine: rd.Engine) -> None:
    fake_engine.client.images.store["b"] = FakeImage("sha256:b")
    fake_engine.client.containers.next.append(
        FakeContainer(fake_engine.client, status=1, logs=b"ERROR: Could not find a version that satisfies uv\n"))
    with pytest.raises(rd.DockerUnavailable, match="Could not find a version") as err:
        rd.ensure_image(fake_engine, "b", "3.11")
    assert err.value.error_type == "runner.DockerBuildFailed"


# ----------------------------------------------------------------------- options


def test_uv_installs_into_a_base_whose_python_uv_does_not_declare(tmp_path: Path) -> None:
    """The recipe's pip options install uv's wheel even where its Requires-Python excludes the
    base's interpreter (uv 0.13 declares >= 3.8; the catalog's TF 1.15 stacks are 3.7, and
    uv's wheel is a standalone binary that then makes their venvs). Real pip, offline: a
    wheel declaring a Python newer than this one stands in for uv on 3.7."""
    import subprocess
    import sys
    import zipfile

    assert " ".join(rd.UV_PIP_OPTIONS) in rd.RECIPE
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    dist = "uv-0.13.9.dist-info"
    files = {"uv/__init__.py": "",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: uv\nVersion: 0.13.9\nRequires-Python: >=3.99\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(wheels / "uv-0.13.9-py3-none-any.whl", "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
    # Real pip: this interpreter's, or (a uv-made test venv has none) the base interpreter's.
    from runner.stacks import find_python

    pythons = [sys.executable, find_python(f"{sys.version_info.major}.{sys.version_info.minor}")]
    python = next((p for p in pythons if p and subprocess.run([p, "-m", "pip", "--version"],
                                                              capture_output=True, check=False).returncode == 0), None)
    if python is None:
        pytest.skip("no interpreter with pip found to run the recipe's pip options")
    base = [python, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
            "--target", str(tmp_path / "t")]
    # (Without --ignore-requires-python this exits 1: "No matching distribution found for uv".)
    proc = subprocess.run([*base, *rd.UV_PIP_OPTIONS, rd.UV_REQUIREMENT], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t" / "uv" / "__init__.py").exists()


def test_runtime_settings_validate() -> None:
    with pytest.raises(ValueError, match="runtime must be one of"):
        rd.RuntimeSettings(runtime="podman")
    with pytest.raises(ValueError, match="docker_memory"):
        rd.RuntimeSettings(docker_memory="lots")
    assert rd.parse_memory("512m") == 512 << 20 and rd.parse_memory("4g") == 4 << 30
    assert rd.parse_memory("2GB") == 2 << 30 and rd.parse_memory("-1") is None


def test_runtime_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.stacks.find_python", lambda v: "/usr/bin/python3.11" if v == "3.11" else None)
    auto = rd.RuntimeSettings(runtime="auto")
    assert auto.runtime_for("venv", "3.11") == "venv"
    assert auto.runtime_for("venv", "3.7") == "docker"
    assert rd.RuntimeSettings().runtime_for("docker", "3.11") == "docker"  # the catalog's choice
    assert rd.RuntimeSettings(runtime="venv").runtime_for("docker", "3.11") == "venv"  # the run's


def test_cli_options_reach_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli._parser().parse_args(["matrix", "--runtime", "docker", "--docker-base", "local/py:{python}",
                                     "--docker-memory", "2g", "--docker-cpus", "1.5"])
    assert (args.runtime, args.docker_base, args.docker_memory, args.docker_cpus) == \
        ("docker", "local/py:{python}", "2g", 1.5)
    opt = matrix.Options(runtime="docker", docker_base="b", docker_memory="2g", docker_cpus=1.5)
    assert opt.runtime_settings() == rd.RuntimeSettings("docker", "b", "2g", 1.5)
    for bad in (["--runtime", "podman"], ["--docker-memory", "lots"], ["--docker-cpus", "0"]):
        with pytest.raises(SystemExit) as exc:
            cli._parser().parse_args(["matrix", *bad])
        assert exc.value.code == 2


def test_run_matrix_passes_the_runtime_to_ensure_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[Any] = []

    def fake_ensure(stack: Stack, store: Store, **kw: Any) -> envs.StackEnv:
        seen.append(kw.get("runtime"))
        return envs.StackEnv(stack=stack, ok=False, reason="x")

    monkeypatch.setattr(matrix, "ensure_env", fake_ensure)
    sc = scenario_catalog.discover_scenarios(FAKES / "scenarios")[:1]
    matrix.run_matrix([_stack()], sc, ["h5"], Store(tmp_path / "s"),
                      matrix.Options(runtime="docker", docker_base="b:{python}"), out=io.StringIO())
    assert seen == [rd.RuntimeSettings(runtime="docker", docker_base="b:{python}")]


# -------------------------------------------------------------- worker containers


def _spawn(tmp_path: Path, eng: rd.Engine, sandbox: bool = False, **kw: Any) -> rd.ContainerSpawn:
    image = rd.ImageInfo("compat-matrix/python3.11:abc", "sha256:img", "b", "sha256:b", None, False, 0.0)
    return rd.ContainerSpawn(eng, image, tmp_path / "envs" / "docker" / "py3.11-x", {"KERAS_BACKEND": "jax"},
                             sandbox=sandbox, **kw)


def _request(ctl: Path, phase: str, cells: list[dict[str, Any]], extra: list[str] | None = None) -> None:
    ctl.mkdir(parents=True, exist_ok=True)
    (ctl / "request.json").write_text(json.dumps({"phase": phase, "cells": cells, "extra_sys_path": extra or []}))


def test_save_mounts_artifacts_rw_load_ro(tmp_path: Path, fake_engine: rd.Engine) -> None:
    spawn = _spawn(tmp_path, fake_engine)
    art = tmp_path / "store" / "artifacts" / "s1"
    scen = tmp_path / "scen"
    scen.mkdir()
    cells = [{"cell_id": f"c{i}", "scenario_path": str(scen / "mlp.py"), "artifact_dir": str(art / sc / "h5")}
             for i, sc in enumerate(("mlp", "conv"))]
    ctl = tmp_path / "runs" / "w001"
    _request(ctl, "save", cells, [str(FAKES)])
    worker = execute.WORKER_PATH
    mounts = spawn.mounts(["py", "-I", str(worker), "save", str(ctl)])
    assert mounts[str(art)] == "rw" and mounts[str(ctl)] == "rw"
    assert mounts[str(scen)] == "ro" and mounts[str(worker.parent)] == "ro" and mounts[str(FAKES)] == "ro"
    assert mounts[str(spawn.venv)] == "ro"
    for c in cells:
        Path(c["artifact_dir"]).mkdir(parents=True)
    _request(ctl, "load", cells)
    mounts = spawn.mounts(["py", "-I", str(worker), "load", str(ctl)])
    assert mounts[str(art)] == "ro"


def test_sandbox_mounts_only_what_the_cells_name(tmp_path: Path, fake_engine: rd.Engine) -> None:
    spawn = _spawn(tmp_path, fake_engine, sandbox=True)
    model = tmp_path / "store" / "models" / "m1" / "model.h5"  # check's staged copy
    model.parent.mkdir(parents=True)
    model.write_bytes(b"x")
    user = tmp_path / "home" / "me"
    user.mkdir(parents=True)
    (user / "custom.py").write_text("x = 1")
    (user / "id_rsa").write_text("secret")
    out = tmp_path / "store" / "outputs" / "m1"
    ctl = tmp_path / "runs" / "w001"
    _request(ctl, "check", [{"cell_id": "c", "model_path": str(model), "out_dir": str(out),
                             "custom_objects_path": str(user / "custom.py")}])
    mounts = spawn.mounts(["py", "-I", str(execute.WORKER_PATH), "check", str(ctl)])
    assert mounts[str(model.parent)] == "ro" and mounts[str(user / "custom.py")] == "ro"
    assert str(user) not in mounts and str(tmp_path / "store") not in mounts
    assert mounts[str(out)] == "rw" and out.is_dir()
    assert set(mounts) == {str(model.parent), str(user / "custom.py"), str(out), str(ctl), str(spawn.venv),
                           str(execute.WORKER_PATH.parent)}


def test_container_environment_is_the_stacks_not_the_hosts(tmp_path: Path, fake_engine: rd.Engine,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    spawn = _spawn(tmp_path, fake_engine)
    env = spawn.environment(execute.child_env({"KERAS_BACKEND": "jax", "COMPAT_X": "1"}))
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["KERAS_BACKEND"] == "jax" and env["COMPAT_X"] == "1" and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert env["HOME"] == "/tmp" and env["PATH"].startswith(str(spawn.venv))


def test_worker_container_settings(tmp_path: Path, fake_engine: rd.Engine) -> None:
    spawn = _spawn(tmp_path, fake_engine, memory="256m", cpus=1.0)
    ctl = tmp_path / "runs" / "w001"
    _request(ctl, "probe", [])
    proc = spawn(["py", "-I", str(execute.WORKER_PATH), "probe", str(ctl)], ctl / "worker.log", {})
    assert proc.wait(5) == 0
    run = fake_engine.client.containers.runs[-1]
    assert run["network_mode"] == "none" and run["read_only"] and run["init"]
    assert run["user"] != "0:0" and not run["user"].startswith("0:")
    assert run["cap_drop"] == ["ALL"] and "/tmp" in run["tmpfs"]
    assert run["mem_limit"] == "256m" and run["memswap_limit"] == "256m" and run["nano_cpus"] == 1_000_000_000
    assert run["command"][:2] == ["/bin/sh", "-c"] and run["command"][-1] == str(ctl)


@pytest.mark.parametrize(("status", "oom", "rc"), [(0, False, 0), (1, False, 1), (137, False, -9),
                                                   (139, False, -11), (0, True, -9)])
def test_container_exit_status(tmp_path: Path, fake_engine: rd.Engine, status: int, oom: bool, rc: int) -> None:
    log = tmp_path / "worker.log"
    log.touch()
    container = FakeContainer(fake_engine.client, status=status, oom=oom)
    proc = rd.ContainerProcess(container, log, "256m")
    assert proc.wait(5) == rc and container.removed
    assert ("OOM-killed (memory limit 256m)" in log.read_text()) == oom
    assert execute._exit_text(rc) == {0: "exit code 0", 1: "exit code 1", -9: "killed by signal SIGKILL",
                                      -11: "killed by signal SIGSEGV"}[rc]


def test_ctrl_c_removes_live_containers(tmp_path: Path, fake_engine: rd.Engine) -> None:
    container = FakeContainer(fake_engine.client, block=True)
    proc = rd.ContainerProcess(container, tmp_path / "log", None)
    assert proc.poll() is None
    execute._register(proc)
    try:
        assert execute.kill_live_workers() >= 1
    finally:
        execute._unregister(proc)
    assert proc.wait(5) == -signal.SIGKILL and container.removed


def test_ctrl_c_removes_running_build_containers(fake_engine: rd.Engine) -> None:
    """Venv/image builds run in the run's worker threads; Ctrl-C's kill_live_workers must
    remove their containers too (it left them installing until the next run swept them)."""
    build = FakeContainer(fake_engine.client, block=True)
    fake_engine.client.containers.next.append(build)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rd._run_to_end(fake_engine, "img", ["true"], timeout=30)
        except rd.DockerUnavailable as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 5
    while not execute._LIVE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert execute.kill_live_workers() == 1
    thread.join(5)
    assert build.removed and not thread.is_alive()
    assert errors and "interrupted" in str(errors[0])
    assert not execute._LIVE


def test_executor_seams_for_containers(fake: Any, tmp_path: Path) -> None:
    """A spawn marked in_container gets no parent_pid (no host pid inside) and its
    record_env lands in every result's env, synthesised ones included."""
    from runner.execute import _default_spawn

    def spawn(argv: Any, log: Path, env: Any) -> Any:
        return _default_spawn(argv, log, env)

    spawn.in_container = True  # type: ignore[attr-defined]
    spawn.record_env = {"runtime": "docker", "docker_image_id": "sha256:x"}  # type: ignore[attr-defined]
    cells = [fake.save_cell("a"), fake.save_cell("b")]
    workdir = tmp_path / "w"
    results = consume(execute.run_cells(
        fake.python, "save", cells, workdir=workdir, env=fake.env({"save": {"action": "segv", "match": "artifacts/b"}}),
        extra_sys_path=[str(FAKES)], spawn=spawn, cell_timeout=30), workdir)
    request = json.loads((workdir / "w001" / "request.json").read_text())
    assert request["parent_pid"] is None
    by = {r["cell_id"]: r for r in results}
    assert all(r["env"]["docker_image_id"] == "sha256:x" for r in results)
    assert by["save:a"]["outcome"] == "ok" and by["save:a"]["env"].get("keras")
    assert by["save:b"]["outcome"] == "crash" and "SIGSEGV" in by["save:b"]["error"]["message"]
