"""Docker tier (marker ``docker``): the docker runtime against a real Docker engine.

Needs an engine and a base image with Python 3.11: ``$COMPAT_DOCKER_BASE`` (default
``compat-test/python:3.11``, built without a registry by tests/docker/build_base.py;
.ci/run starts the engine and builds it). Without them every test here is skipped with
the reason (``-ra`` prints it) — never silently.

- the fake catalog of tests/e2e.py (real uv venvs, fake Keras) gives the same table in
  docker as in venvs, and every docker record names its image;
- a worker container SIGKILLed from outside, one OOM-killed, one killed by its own
  SIGSEGV: ``crash`` with the signal; a hang: ``timeout`` and the container is gone;
- a scenario that opens a socket fails inside (network none);
- the sandbox spawn: a payload that writes markers (host path, /tmp, HOME, its own
  model dir) writes nothing on the host;
- one real light stack (keras3.15-numpy) saves and loads the same in docker as in a venv.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e
import pytest
from conftest import FAKE_SCENARIOS, REAL_SCENARIOS, consume

from runner import envs, execute
from runner import runtime_docker as rd
from runner.records import Store
from runner.stacks import load_catalog

pytestmark = pytest.mark.docker

BASE = os.environ.get("COMPAT_DOCKER_BASE", "compat-test/python:{python}")


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> Iterator[rd.Engine]:
    markexpr = str(request.config.getoption("markexpr") or "")
    if "docker" not in markexpr.replace("not docker", ""):
        pytest.skip("docker tier: selected only by -m docker (nox -s tests runs it after the fast tier)")
    rd.reset_engine()
    try:
        eng = rd.engine()
    except rd.DockerUnavailable as exc:
        pytest.skip(f"docker tier: {exc} (run tests/docker/engine.sh, as .ci/run does)")
    base = rd.base_image_name("3.11", override=BASE)
    if eng.image(base) is None:
        pytest.skip(f"docker tier: base image {base} missing (python3 tests/docker/build_base.py builds it)")
    yield eng


@pytest.fixture(scope="module")
def envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(os.environ.get("COMPAT_DOCKER_ENVS_DIR") or tmp_path_factory.mktemp("docker-envs"))


@pytest.fixture(scope="module")
def fake_docker_env(engine: rd.Engine, envs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> envs.StackEnv:
    """fk3.5 of the fake catalog, built and probed in docker."""
    catalog = e2e.write_catalog(tmp_path_factory.mktemp("cat") / "catalog.toml")
    stack = next(s for s in load_catalog(catalog) if s.id == "fk3.5")
    store = Store(tmp_path_factory.mktemp("store"), envs_dir=envs_dir)
    senv = envs.ensure_env(stack, store, runtime=rd.RuntimeSettings("docker", BASE))
    assert senv.ok, senv.reason
    return senv


def _containers(eng: rd.Engine) -> list[Any]:
    return [c for c in eng.client.containers.list(all=True, filters={"label": f"{rd.LABEL}.pid={os.getpid()}"})
            if c.labels.get(rd.LABEL) in ("worker", "sandbox")]


def _run(senv: envs.StackEnv, tmp: Path, command: str, cells: list[dict[str, Any]],
         behavior: dict[str, Any] | None = None, spawn: Any = None, **kw: Any) -> dict[str, dict[str, Any]]:
    env = dict(senv.stack.env_dict)
    if behavior is not None:
        env[e2e_behavior_var()] = json.dumps({**json.loads(env.get(e2e_behavior_var(), "{}")), **behavior})
    workdir = tmp / "runs" / f"{command}-{uuid.uuid4().hex[:6]}"
    assert senv.python is not None
    gen = execute.run_cells(senv.python, command, cells, workdir=workdir, env=execute.child_env(env),
                            keras_module=senv.stack.keras_module, spawn=spawn or senv.spawn, **kw)
    return {r["cell_id"]: r for r in consume(gen, workdir, deadline=240)}


def e2e_behavior_var() -> str:
    return "COMPAT_FAKE_BEHAVIOR"


def _save_cell(tmp: Path, tag: str, scenario: str = "mlp", scenarios: Path = FAKE_SCENARIOS) -> dict[str, Any]:
    return {"cell_id": f"save:{tag}", "scenario": scenario, "scenario_path": str(scenarios / f"{scenario}.py"),
            "format": "h5", "artifact_dir": str(tmp / "artifacts" / tag)}


# --------------------------------------------------------------------- equality


def test_fake_catalog_same_table_in_docker_and_venvs(engine: rd.Engine, envs_dir: Path, fake_envs_dir: Path,
                                                    tmp_path: Path) -> None:
    catalog = e2e.write_catalog(tmp_path / "catalog.toml")
    tables = {}
    for runtime in ("venv", "docker"):
        extra = ["--runtime", runtime, "--docker-base", BASE] if runtime == "docker" else []
        proc = e2e.run_matrix(catalog, tmp_path / f"store-{runtime}", tmp_path / f"out-{runtime}",
                              envs_dir if runtime == "docker" else fake_envs_dir, *extra, timeout=900)
        assert proc.returncode == 0, e2e.describe(proc)
        tables[runtime] = e2e.table(tmp_path / f"out-{runtime}")
    assert tables["docker"] == tables["venv"]
    assert {v[0] for v in tables["docker"].values()} >= {"ok", "load_error", "not_applicable"}
    records = e2e.records_by_id(tmp_path / "store-docker")
    cells = [r for r in records.values() if r["record_type"] in ("save", "load") and r["outcome"] == "ok"]
    assert cells and all(r["env"]["runtime"] == "docker" and r["env"]["docker_image_id"].startswith("sha256:")
                         for r in cells)
    assert not _containers(engine)


# ----------------------------------------------------------------- crash/timeout


def test_container_killed_from_outside_is_a_crash(engine: rd.Engine, fake_docker_env: envs.StackEnv,
                                                 tmp_path: Path) -> None:
    cells = [_save_cell(tmp_path, "a"), _save_cell(tmp_path, "b"), _save_cell(tmp_path, "c")]
    stop = threading.Event()

    def killer() -> None:  # SIGKILL the container (from outside, like `docker kill`) while cell b hangs
        while not stop.is_set():
            if any('"save:b"' in p.read_text() for p in tmp_path.glob("runs/*/w*/events.jsonl")):
                for c in _containers(engine):
                    c.kill()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    res = _run(fake_docker_env, tmp_path, "save", cells,
               {"save": {"action": "hang", "match": "artifacts/b"}}, cell_timeout=120)
    stop.set()
    assert res["save:a"]["outcome"] == "ok" and res["save:c"]["outcome"] == "ok"
    assert res["save:b"]["outcome"] == "crash"
    assert "killed by signal SIGKILL" in res["save:b"]["error"]["message"]
    assert not _containers(engine)


def test_own_signal_and_hang(engine: rd.Engine, fake_docker_env: envs.StackEnv, tmp_path: Path) -> None:
    cells = [_save_cell(tmp_path, "segv"), _save_cell(tmp_path, "hang"), _save_cell(tmp_path, "ok")]
    res = _run(fake_docker_env, tmp_path, "save", cells,
               {"save": [{"action": "segv", "match": "artifacts/segv"}, {"action": "hang", "match": "artifacts/hang"}]},
               cell_timeout=5)
    assert res["save:segv"]["outcome"] == "crash" and "SIGSEGV" in res["save:segv"]["error"]["message"]
    assert res["save:hang"]["outcome"] == "timeout"
    assert res["save:ok"]["outcome"] == "ok"
    assert not _containers(engine)


def test_oom_is_a_crash_with_sigkill(engine: rd.Engine, fake_docker_env: envs.StackEnv, tmp_path: Path) -> None:
    scen = tmp_path / "scen"
    scen.mkdir()
    (scen / "hog.py").write_text(
        "def build(keras):\n"
        "    blocks = [bytearray(64 << 20) for _ in range(16)]  # 1 GiB, touched\n"
        "    return blocks\n\n"
        "def inputs(np):\n    return np.zeros((1, 4), 'float32')\n")
    spawn = rd.ContainerSpawn(engine, fake_docker_env.spawn.image, fake_docker_env.spawn.venv,  # type: ignore[union-attr]
                              fake_docker_env.stack.env_dict, memory="256m")
    res = _run(fake_docker_env, tmp_path, "save", [_save_cell(tmp_path, "hog", "hog", scen)], spawn=spawn)
    rec = res["save:hog"]
    assert rec["outcome"] == "crash" and "killed by signal SIGKILL" in rec["error"]["message"]
    assert "OOM-killed (memory limit 256m)" in rec["details"]["log_tail"]


def test_no_network_inside(engine: rd.Engine, fake_docker_env: envs.StackEnv, tmp_path: Path) -> None:
    scen = tmp_path / "scen"
    scen.mkdir()
    (scen / "phone_home.py").write_text(
        "import socket\n\n"
        "def build(keras):\n"
        "    socket.create_connection(('pypi.org', 443), timeout=5)\n\n"
        "def inputs(np):\n    return np.zeros((1, 4), 'float32')\n")
    res = _run(fake_docker_env, tmp_path, "save", [_save_cell(tmp_path, "net", "phone_home", scen)])
    rec = res["save:net"]
    assert rec["outcome"] == "save_error", rec
    assert "socket" in rec["error"]["type"] or "OSError" in rec["error"]["type"], rec["error"]


def test_ctrl_c_removes_every_worker_container(engine: rd.Engine, envs_dir: Path, tmp_path: Path) -> None:
    """SIGINT to `python -m runner matrix --runtime docker` while two containers hang in a
    cell: exit 130, no container of that run left, no false crash/timeout record."""
    hanging = e2e.write_catalog(tmp_path / "hang.toml",
                                {"fk3.9": {"load": {"action": "hang"}}, "fk3.5": {"load": {"action": "hang"}}})
    store = tmp_path / "store"
    argv = e2e.matrix_argv(hanging, store, None, "-j", "2", "--no-report", "--runtime", "docker",
                           "--docker-base", BASE)
    proc = subprocess.Popen(argv, cwd=e2e.REPO, env=e2e.runner_env(envs_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def mine() -> list[Any]:
        return engine.client.containers.list(all=True, filters={"label": f"{rd.LABEL}.pid={proc.pid}"})

    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if sum('"started"' in p.read_text() for p in store.glob("runs/load-*/w*/events.jsonl")) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the two hanging loaders never started")
        time.sleep(0.5)
        assert len(mine()) == 2
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    stdout, stderr = proc.communicate()
    assert rc == 130, (stdout[-2000:], stderr[-2000:])
    assert mine() == [], "worker containers outlived the run"
    assert took < 10, took
    recs = e2e.records_by_id(store)
    assert not {r["outcome"] for r in recs.values()} & {"crash", "timeout", "protocol_error"}


# ----------------------------------------------------------------------- sandbox


def test_sandbox_payload_writes_nothing_on_the_host(engine: rd.Engine, fake_docker_env: envs.StackEnv,
                                                   tmp_path: Path) -> None:
    """A Lambda-like payload (code that runs when the worker loads what it was given) in
    the sandbox: every marker it tries to write — a host path, /tmp, HOME, next to its own
    file — is refused or lands in the throwaway container."""
    token = uuid.uuid4().hex
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    host_targets = [tmp_path / f"marker-{token}", Path("/tmp") / f"marker-{token}",
                    Path.home() / f"marker-{token}", model_dir / f"marker-{token}"]
    (model_dir / "payload.py").write_text(
        "import os\n\n"
        "def build(keras):\n"
        "    wrote, refused = [], []\n"
        f"    for path in {[str(p) for p in host_targets]!r} + [os.path.join(os.environ['HOME'], 'marker-{token}')]:\n"
        "        try:\n"
        "            with open(path, 'w') as fh:\n"
        "                fh.write('pwned')\n"
        "            wrote.append(path)\n"
        "        except OSError as exc:\n"
        "            refused.append('%s: %s' % (path, exc.strerror))\n"
        "    raise RuntimeError('payload ran; wrote %s; refused %s; uid %d' % (wrote, refused, os.getuid()))\n\n"
        "def inputs(np):\n    return np.zeros((1, 4), 'float32')\n")
    spawn = rd.sandbox_spawn(fake_docker_env, memory="1g")
    res = _run(fake_docker_env, tmp_path, "save", [_save_cell(tmp_path, "payload", "payload", model_dir)],
               spawn=spawn)
    message = res["save:payload"]["error"]["message"]
    assert "payload ran" in message and "uid 0" not in message, message
    for target in host_targets:
        assert not target.exists(), (target, message)
    assert not _containers(engine)


# ------------------------------------------------ attacks on the protocol, contained


CONTROL_FILE = {"heartbeat-symlink": "heartbeat", "log-symlink": "log.txt", "log-hardlink": "log.txt",
                "events-symlink": "events.jsonl", "events-fifo": "events.jsonl", "events-flood": "events.jsonl",
                "oom-log-symlink": "log.txt"}


@pytest.mark.parametrize("attack", sorted(CONTROL_FILE))
def test_an_attack_from_the_sandbox_leaves_the_host_untouched(engine: rd.Engine, fake_docker_env: envs.StackEnv,
                                                             tmp_path: Path, attack: str) -> None:
    """Issue 22: code in the container replaced its control files with links to host paths
    and the root host followed them (created, appended to, read host files). Each attack of
    tests/tamper.py, in the sandbox: the host follows nothing, the cell is the attack."""
    import tamper

    spawn = rd.sandbox_spawn(fake_docker_env, memory="256m")
    body = tamper.OOM_ATTACK if attack == "oom-log-symlink" else tamper.ATTACKS[attack]
    result, target, secret, before = tamper.run_attack(
        tmp_path / "attack", attack, body,
        lambda cells: _run(fake_docker_env, tmp_path, "save", cells, spawn=spawn, cell_timeout=40))
    tamper.check_host(result, target, secret, before, CONTROL_FILE[attack])
    assert not _containers(engine)
    tamper.observe("docker sandbox", attack, "host file untouched, no secret in the record; the cell is the "
                   "attack", result)
    tamper.write_section()


def test_the_attacks_benign_twin_saves_in_the_sandbox(engine: rd.Engine, fake_docker_env: envs.StackEnv,
                                                     tmp_path: Path) -> None:
    import tamper

    spawn = rd.sandbox_spawn(fake_docker_env, memory="256m")
    result, _, _, _ = tamper.run_attack(tmp_path / "twin", "benign", tamper.BENIGN,
                                        lambda cells: _run(fake_docker_env, tmp_path, "save", cells, spawn=spawn))
    assert result["outcome"] == "ok", result
    assert (tmp_path / "twin" / "artifacts" / "benign" / "model.h5").is_file()
    tamper.observe("docker sandbox", "benign twin (same scenario, no attack)", "saves ok", result)
    tamper.write_section()


# -------------------------------------------------------------- a real stack


@pytest.mark.skipif(os.environ.get("COMPAT_DOCKER_REAL_STACK", "1") == "0", reason="COMPAT_DOCKER_REAL_STACK=0")
def test_real_light_stack_same_outcomes(engine: rd.Engine, envs_dir: Path, tmp_path: Path) -> None:
    stack = next(s for s in load_catalog() if s.id == "keras3.15-numpy")
    if stack.python != "3.11":
        stack = dataclasses.replace(stack, python="3.11")
    results: dict[str, dict[str, tuple[str, str | None]]] = {}
    for runtime in ("venv", "docker"):
        store = Store(tmp_path / f"store-{runtime}", envs_dir=envs_dir / runtime)
        senv = envs.ensure_env(stack, store, runtime=rd.RuntimeSettings(runtime, BASE))
        if runtime == "venv" and not senv.ok:
            pytest.skip(f"no venv of {stack.id} on Python 3.11 to compare with: {senv.reason}")
        assert senv.ok, senv.reason
        saves = [{"cell_id": f"save:{sc}:{fmt}", "scenario": sc, "scenario_path": str(REAL_SCENARIOS / f"{sc}.py"),
                  "format": fmt, "artifact_dir": str(tmp_path / runtime / "art" / sc / fmt)}
                 for sc in ("dense", "multi_io") for fmt in ("h5", "keras")]
        out = _run(senv, tmp_path, "save", saves, cell_timeout=120, import_timeout=300)
        loads = [{**c, "cell_id": c["cell_id"].replace("save:", "load:"), "variant": "default",
                  "atol": 1e-6, "rtol": 1e-6} for c in saves if out[c["cell_id"]]["outcome"] == "ok"]
        out.update(_run(senv, tmp_path, "load", loads, cell_timeout=120, import_timeout=300))
        results[runtime] = {cid: (r["outcome"], (r.get("error") or {}).get("type")) for cid, r in out.items()}
    assert results["docker"] == results["venv"]
    assert any(v[0] == "ok" for v in results["docker"].values())



# ------------------------------------------------------------ check --sandbox, for real

SAVE_SCRIPT = '''
import os, sys
import tensorflow as tf
keras = tf.keras
out, marker = sys.argv[1], sys.argv[2]
inp = keras.Input(shape=(8,), name="x")
m = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Dense(16, activation="relu")(inp)))
m.save(os.path.join(out, "dense.h5"))
m.save(os.path.join(out, "dense.keras"))
m.save(os.path.join(out, "dense_sm"), save_format="tf")
with open(os.path.join(out, "dense.json"), "w") as fh:
    fh.write(m.to_json())
m.save_weights(os.path.join(out, "dense.weights.h5"))
m.export(os.path.join(out, "dense_export"))

# A Lambda that writes `marker` (an absolute /tmp path: the host's /tmp outside the sandbox,
# the container's own tmpfs inside) and outputs 1.0 when that write worked, -1.0 otherwise.
ns = {}
exec(chr(10).join([
    "def touch(x):",
    "    import os, tensorflow as tf",
    "    try:",
    "        open(%r, 'a').write('ran')" % marker,
    "        ok = 1.0",
    "    except OSError:",
    "        ok = -1.0",
    "    return tf.zeros_like(x) + ok", ""]), ns)
inp = keras.Input(shape=(3,))
keras.Model(inp, keras.layers.Lambda(ns["touch"])(keras.layers.Dense(2)(inp))).save(os.path.join(out, "lambda.h5"))
os.remove(marker)  # building the model ran it once, here, on purpose
'''
MODELS = {"h5": "dense.h5", "keras": "dense.keras", "savedmodel": "dense_sm", "json+weights": "dense.json",
          "export": "dense_export"}


@pytest.fixture(scope="module")
def saved_models(engine: rd.Engine, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(models folder, the Lambda's marker path, the venvs dir): saved by the real tf2.15 venv."""
    envs_dir = Path(os.environ.get("COMPAT_ENVS_DIR") or e2e.REPO / ".matrix" / "envs")
    models = tmp_path_factory.mktemp("models")
    stack = next(s for s in load_catalog() if s.id == "tf2.15")
    saver = envs.ensure_env(stack, Store(models / "save-store", envs_dir=envs_dir))
    assert saver.ok and saver.python, saver.reason
    marker = Path("/tmp") / f"compat-lambda-marker-{uuid.uuid4().hex}"
    proc = subprocess.run([saver.python, "-c", SAVE_SCRIPT, str(models), str(marker)], capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all((models / name).exists() for name in MODELS.values()) and not marker.exists()
    return models, marker, envs_dir


def _check(models: Path, envs_dir: Path, model: str, sandbox: str, store: Path, *extra: str,
           stacks: str = "tf2.15,keras3.15-jax") -> tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]:
    """``check MODEL --sandbox X``: (the process, the rows of check.csv)."""
    import csv
    import sys

    out = store / "out"
    env = {**os.environ, "COMPAT_ENVS_DIR": str(envs_dir), "COMPAT_DOCKER_BASE": BASE}
    proc = subprocess.run([sys.executable, "-m", "runner", "check", str(models / model), "--stacks", stacks,
                           "--sandbox", sandbox, "--store", str(store), "--out", str(out), *extra],
                          cwd=e2e.REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    with (out / "check.csv").open() as fh:
        return proc, list(csv.DictReader(fh))


@pytest.mark.parametrize("fmt", sorted(MODELS))
def test_check_verdict_is_the_same_in_the_sandbox_and_the_venvs(saved_models: tuple[Path, Path, Path],
                                                                 tmp_path: Path, fmt: str) -> None:
    """Issue 22: the sandbox loaded nothing (every stack: FileNotFoundError on the staged
    symlink) and its test passed because it only asserted that a marker was absent. Here
    a benign file of each format gets the same verdict table with and without the sandbox,
    in two stacks, and at least one stack really loads and matches it."""
    models, _, envs_dir = saved_models
    boxed, boxed_rows = _check(models, envs_dir, MODELS[fmt], "on", tmp_path / "on")
    _plain, plain_rows = _check(models, envs_dir, MODELS[fmt], "off", tmp_path / "off")
    sandbox_line = next(line for line in boxed.stdout.splitlines() if line.startswith("sandbox: "))
    assert sandbox_line.startswith("sandbox: docker") and "off in" not in sandbox_line, sandbox_line
    assert "tf2.15" in sandbox_line and "keras3.15-jax" in sandbox_line, sandbox_line
    verdict = [(r["stack"], r["outcome"], r["category"]) for r in plain_rows]
    assert [(r["stack"], r["outcome"], r["category"]) for r in boxed_rows] == verdict
    assert any(outcome.startswith("ok") for _, outcome, _ in verdict), verdict
    assert "FileNotFoundError" not in boxed.stdout, boxed.stdout[-3000:]
    import tamper

    tamper.note("docker sandbox", f"a benign {fmt} file, --sandbox on vs off (the sandbox loaded nothing before)",
                "the same verdict table; at least one stack loads", "same table: "
                + "; ".join(f"{s} {o}" + (f" ({c})" if c else "") for s, o, c in verdict))
    tamper.write_section()


def test_check_sandbox_lets_an_unsafe_lambda_run_inside_the_container_only(saved_models: tuple[Path, Path, Path],
                                                                           tmp_path: Path) -> None:
    """--unsafe in the sandbox: the Lambda really runs (its outputs say its write worked, in
    the container's scratch /tmp) and the marker never appears on the host; without the
    sandbox the same payload writes the host's /tmp; without --unsafe it is refused."""
    import numpy as np

    models, marker, envs_dir = saved_models
    boxed, rows = _check(models, envs_dir, "lambda.h5", "on", tmp_path / "on", "--unsafe", stacks="tf2.15")
    assert rows[0]["outcome"].startswith(("ok", "loads")), boxed.stdout[-3000:]
    assert not marker.exists(), "the Lambda wrote on the host from inside the sandbox"
    (outputs,) = (tmp_path / "on").glob("outputs/*/tf2.15/*/outputs.npz")
    with np.load(outputs) as npz:
        assert (npz["y0"] == 1.0).all(), npz["y0"]  # it ran, and its write succeeded inside

    refused, rows = _check(models, envs_dir, "lambda.h5", "on", tmp_path / "safe", stacks="tf2.15")
    assert rows[0]["category"] == "refused_unsafe", refused.stdout[-3000:]
    assert not marker.exists()

    plain, _ = _check(models, envs_dir, "lambda.h5", "off", tmp_path / "off", "--unsafe", stacks="tf2.15")
    assert marker.exists(), plain.stdout[-3000:]  # the same payload outside the sandbox does write
    marker.unlink()
    import tamper

    tamper.note("docker sandbox", "a Lambda .h5 that writes /tmp/<marker>, --unsafe --sandbox on",
                "runs only inside: marker absent on the host, its write worked in the container",
                "outputs all 1.0 (the write worked inside); host marker absent; without --unsafe refused_unsafe; "
                "--sandbox off --unsafe wrote the host marker")
    tamper.write_section()


GRAPH_SCRIPT = '''
import os, sys
import tensorflow as tf
out, target = sys.argv[1], sys.argv[2]


class Writes(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.constant([1.0, 2.0, 3.0]))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        tf.io.write_file(os.path.join(target, "written.txt"), "written by the graph")
        return x * self.w


m = Writes()
tf.saved_model.save(m, os.path.join(out, "writes"), signatures=m.__call__.get_concrete_function())
'''


def test_a_file_writing_graph_runs_in_the_sandbox_and_is_refused_outside(saved_models: tuple[Path, Path, Path],
                                                                         tmp_path: Path) -> None:
    """Issue 22 item 2: a SavedModel whose graph writes files is refused on the host
    without the sandbox; in the sandbox it runs (no --unsafe needed: nothing of the host is
    in reach) and its write lands in the container's scratch /tmp, never the host's."""
    models, _, envs_dir = saved_models
    target = Path("/tmp") / f"compat-graph-marker-{uuid.uuid4().hex}"
    stack = next(s for s in load_catalog() if s.id == "tf2.15")
    saver = envs.ensure_env(stack, Store(tmp_path / "save-store", envs_dir=envs_dir))
    assert saver.python
    proc = subprocess.run([saver.python, "-c", GRAPH_SCRIPT, str(models), str(target)], capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    boxed, rows = _check(models, envs_dir, "writes", "on", tmp_path / "on", stacks="tf2.15")
    assert "WriteFile in function" in boxed.stdout and "loaded in the sandbox in tf2.15" in boxed.stdout, boxed.stdout
    assert rows[0]["outcome"].startswith(("ok", "loads")), boxed.stdout[-3000:]  # it ran, inside
    assert not target.exists(), "the graph wrote on the host from inside the sandbox"
    plain, rows = _check(models, envs_dir, "writes", "off", tmp_path / "off", stacks="tf2.15")
    assert rows[0]["category"] == "refused_unsafe", plain.stdout[-3000:]
    assert not target.exists()
    import tamper

    tamper.note("docker sandbox", "a SavedModel whose call writes a file, --sandbox on", "runs inside (no --unsafe "
                "needed), its write lands in the container's /tmp, never the host's",
                "loaded and matched in the sandbox; host path absent; --sandbox off: refused_unsafe")
    tamper.write_section()
