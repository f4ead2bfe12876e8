"""Real tier: ``config_scan`` inside real stacks, on files real stacks saved.

Each stack (``tf2.15``: TF 2.15.1/Keras 2.15; ``keras3.15-jax``: Keras 3.15.1 on JAX;
``tf2.21-tfkeras``: tf_keras 2.21, skipped when its venv cannot be had) builds its own
``builtin_allowlist`` from the Keras its users import (the matrix worker's
``import_framework``) and scans:

- every artifact the matrix's own scenarios save there (``python -m runner save``, formats
  h5, keras, savedmodel, json+weights): the benign scenarios give zero findings; those
  that really hold a Lambda or custom objects give findings naming them, and with the
  names the scenario's custom objects define or register, only the Lambda ones remain;
- hand-built models: a benign one (nested Sequential, TimeDistributed, Bidirectional LSTM,
  compiled; in Keras 2 also TF-op layers and ``activation=tf.nn.relu``) scans clean and
  LOADS, and its twin with a Lambda is refused; in tf2.15 the ``\\u006cambda`` respelling
  of a real h5 (rewritten with h5py; the JSON is the same model) is refused, and loading
  it really runs the file's code (a marker file appears); a TFOpLambda retargeted at
  ``io.write_file`` and a .keras whose activation names ``os.system`` are refused; a
  SavedModel rewritten to the TF 2.0-2.4 layout (metadata in the object graph of
  ``saved_model.pb``, with the real protobuf classes) scans like the original and loads.

Run: ``pytest -m real tests/test_real_config_scan.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.envs import StackEnv, ensure_env
from runner.records import Store
from runner.stacks import load_catalog, select

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parent.parent
ENVS_DIR = os.environ.get("COMPAT_ENVS_DIR") or str(REPO / ".matrix" / "envs")
CONFIG_SCAN = REPO / "runner" / "_worker" / "config_scan.py"
WORKER = REPO / "runner" / "_worker" / "worker.py"
STACKS = ("tf2.15", "keras3.15-jax", "tf2.21-tfkeras")
OPTIONAL = ("tf2.21-tfkeras",)
FORMATS = ("h5", "keras", "savedmodel", "json+weights")
# Scenarios that hold code or custom objects, and what a finding about them names; the
# formats that store none of it in Keras 2 (its model JSON has no compile config; Keras 3's has).
EXPECTED = {
    "lambda_layer": ("Lambda",), "custom_layer": ("ScaleShift",), "custom_layer_unregistered": ("Affine",),
    "registered_custom_layer": ("GatedDense",), "subclassed_model": ("TwoLayerNet",),
    "train_step_override": ("CustomFit",), "regularizers_constraints": ("scaled_tanh",),
    "custom_loss_metric": ("scaled_mse", "mean_abs_error_x2"),
}
NOT_STORED = {("custom_loss_metric", "json+weights")}

# Runs inside a stack: python -I stack_script.py MODE WORKER CONFIG_SCAN KERAS_MODULE ARGS_JSON OUT_JSON
STACK_SCRIPT = r'''
import importlib.util, json, os, shutil, sys, zipfile

mode, worker_path, scan_path, keras_module, args_path, out_path = sys.argv[1:7]


def by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = by_path("compat_matrix_worker", worker_path)
cs = by_path("config_scan", scan_path)
fw = W.import_framework(keras_module)
keras, tf = fw.keras, fw.tf
allowed = cs.builtin_allowlist(keras, tf)  # before any scenario registers anything
args = json.load(open(args_path))
out = {"allowlist": {"classes": len(allowed.classes), "functions": len(allowed.functions),
                     "identifiers": len(allowed.identifiers), "keras_version": allowed.keras_version}}


def findings(path, fmt, names=frozenset()):
    return [[f.path, f.reason, f.kind] for f in cs.scan(cs.stored_configs(path, fmt), allowed, names)]


def load_and_predict(path, fmt, x):
    if fmt == "json+weights":
        with open(path) as fh:
            model = keras.models.model_from_json(fh.read())
        model.load_weights(os.path.join(os.path.dirname(path), args["weights"]))
    else:
        model = keras.models.load_model(path)
    return [float(v) for v in fw.np.asarray(model.predict(x, verbose=0)).ravel()[:4]]


if mode == "matrix":
    out["artifacts"] = {}
    for job in args["jobs"]:
        scenario = W.load_scenario("compat_scenario_" + job["scenario"], job["scenario_path"])
        provider = getattr(scenario, "custom_objects", None)
        objects = provider(keras) if callable(provider) else {}
        names = cs.custom_names_of(objects, keras)
        out["artifacts"][job["id"]] = {"default": findings(job["path"], job["fmt"]),
                                       "custom": findings(job["path"], job["fmt"], names)}

if mode == "models":
    np = fw.np
    d = args["dir"]
    layers = keras.layers
    keras2 = not hasattr(keras, "ops")
    x = np.random.RandomState(0).uniform(-1, 1, size=(2, 6)).astype("float32")

    def build(with_lambda):
        inp = keras.Input(shape=(6,), name="x")
        inner = keras.Sequential([layers.Dense(6, activation="relu", name="inner_dense")], name="inner")
        h = inner(inp)
        if with_lambda:
            # Keras 2 dumps any function's bytecode; Keras 3 only a real lambda's
            h = layers.Lambda(MARKED if keras2 else (lambda t: t + 1.0), name="evil")(h)
        if keras2 and tf is not None:  # TF-op layers: TFOpLambda, SlicingOpLambda
            h = tf.concat([h * 2.0, tf.reshape(h, (-1, 6))[:, :3]], axis=-1)
            h = layers.Dense(6, activation=tf.nn.relu, name="tf_relu")(h)
        seq = layers.Reshape((3, 2))(h)
        seq = layers.TimeDistributed(layers.Dense(2, name="td_dense"), name="td")(seq)
        seq = layers.Bidirectional(layers.LSTM(2, name="lstm"), name="bi")(seq)
        model = keras.Model(inp, layers.Dense(1, name="out")(seq), name="benign" if not with_lambda else "evil")
        if keras2:
            model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        else:  # Keras 3.15 cannot read back its own h5 compiled with loss="mse" (keras.metrics.mse)
            model.compile(optimizer=keras.optimizers.Adam(), loss=keras.losses.MeanSquaredError(),
                          metrics=[keras.metrics.MeanAbsoluteError()])
        return model

    marker = os.path.join(d, "marker.txt")
    ns = {}
    exec("def marked(t):\n    open(%r, 'a').write('ran')\n    return t\n" % marker, ns)
    MARKED = ns["marked"]
    formats = ["h5", "keras", "json+weights"] + (["savedmodel"] if keras2 else [])
    files = {"h5": "model.h5", "keras": "model.keras", "json+weights": "model.json", "savedmodel": "sm"}
    results = out["models"] = {}
    for kind in ("benign", "lambda"):
        model = build(kind == "lambda")
        for fmt in formats:
            path = os.path.join(d, kind + "-" + files[fmt])
            if fmt == "json+weights":
                with open(path, "w") as fh:
                    fh.write(model.to_json())
                model.save_weights(os.path.join(d, args["weights"]))
            elif fmt == "savedmodel":
                model.save(path, save_format="tf")
            elif fmt == "h5" and keras2:
                model.save(path, save_format="h5")
            else:
                model.save(path)
            entry = results[kind + ":" + fmt] = {"findings": findings(path, fmt)}
            if kind == "benign":  # the benign twin really loads, the way check loads it
                entry["predict"] = load_and_predict(path, fmt, x)
    if os.path.exists(marker):
        os.remove(marker)  # building the Lambda model ran it once, here, on purpose

    if keras2:
        import h5py

        # the regex bypass: the same JSON, respelled; Keras reads it as the same model
        evil = os.path.join(d, "lambda-model.h5")
        respelled = os.path.join(d, "respelled.h5")
        shutil.copy(evil, respelled)
        with h5py.File(respelled, "a") as fh:
            text = fh.attrs["model_config"]
            text = text.decode() if isinstance(text, bytes) else text
            new = text.replace('"function_type": "lambda"', '"function_type": "\\u006cambda"')
            new = new.replace('"class_name": "Lambda"', '"class_name" : "Lambda"')
            fh.attrs["model_config"] = new.encode()
        out["respelled"] = {"changed": new != text and '"function_type": "lambda"' not in new,
                            "same_json": json.loads(new) == json.loads(text),
                            "findings": findings(respelled, "h5")}
        keras.models.load_model(respelled).predict(x, verbose=0)  # what a load without the scan does
        out["respelled"]["code_ran"] = os.path.exists(marker)

        # a TFOpLambda retargeted at tf.io.write_file, and its twin
        benign_h5 = os.path.join(d, "benign-model.h5")
        retarget = os.path.join(d, "write_file.h5")
        shutil.copy(benign_h5, retarget)
        with h5py.File(retarget, "a") as fh:
            text = fh.attrs["model_config"]
            text = text.decode() if isinstance(text, bytes) else text
            config = json.loads(text)
            ops = [l for l in config["config"]["layers"] if l["class_name"] in ("TFOpLambda", "SlicingOpLambda")]
            out["tf_ops"] = sorted(l["class_name"] + ":" + l["config"]["function"] for l in ops)
            ops = [l for l in ops if l["class_name"] == "TFOpLambda"]
            ops[0]["config"]["function"] = "io.write_file"
            fh.attrs["model_config"] = json.dumps(config).encode()
        out["write_file"] = findings(retarget, "h5")

        # malformed and oversized HDF5 configs: one-line BadConfig / ConfigTooLarge
        errors = out["h5_errors"] = {}
        odd = os.path.join(d, "odd.h5")
        shutil.copy(benign_h5, odd)
        with h5py.File(odd, "a") as fh:
            fh.attrs["model_config"] = fw.np.arange(3)
        for name, path, limits in (("int_array", odd, None), ("too_large", benign_h5, {"config_bytes": 100})):
            try:
                cs.read_stored(path, "h5", limits)
                errors[name] = None
            except cs.BadConfig as exc:
                errors[name] = [type(exc).__name__, str(exc)]

        # a SavedModel in the TF 2.0-2.4 layout: Keras metadata in the object graph
        from keras.protobuf import saved_metadata_pb2
        from tensorflow.core.protobuf import saved_model_pb2

        for kind in ("benign", "lambda"):
            src, dst = os.path.join(d, kind + "-sm"), os.path.join(d, kind + "-sm24")
            shutil.copytree(src, dst)
            meta = saved_metadata_pb2.SavedMetadata()
            with open(os.path.join(dst, "keras_metadata.pb"), "rb") as fh:
                meta.ParseFromString(fh.read())
            sm = saved_model_pb2.SavedModel()
            with open(os.path.join(dst, "saved_model.pb"), "rb") as fh:
                sm.ParseFromString(fh.read())
            nodes = sm.meta_graphs[0].object_graph_def.nodes
            for node in meta.nodes:
                nodes[node.node_id].user_object.metadata = node.metadata
            with open(os.path.join(dst, "saved_model.pb"), "wb") as fh:
                fh.write(sm.SerializeToString())
            os.remove(os.path.join(dst, "keras_metadata.pb"))
            entry = out[kind + ":sm24"] = {"findings": findings(dst, "savedmodel"),
                                           "nodes": len(meta.nodes)}
            if kind == "benign":
                entry["predict"] = load_and_predict(dst, "savedmodel", x)
    else:
        # Keras 3: a .keras whose activation names os.system, and its twin
        src = os.path.join(d, "benign-model.keras")
        dst = os.path.join(d, "os_system.keras")
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
            for item in zin.infolist():
                data = zin.read(item.filename)
                if item.filename == "config.json":
                    config = json.loads(data)
                    layer = [l for l in config["config"]["layers"] if l["config"].get("name") == "out"][0]
                    layer["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system",
                                                     "registered_name": None}
                    data = json.dumps(config).encode()
                zout.writestr(item, data)
        out["os_system"] = findings(dst, "keras")

json.dump(out, open(out_path, "w"), indent=1)
'''


def _stack_env(stack_id: str, tmp: Path) -> tuple[StackEnv, dict[str, str]]:
    (stack,) = select(load_catalog(), [stack_id])
    senv = ensure_env(stack, Store(tmp / "envs-store", envs_dir=ENVS_DIR))
    if not senv.ok or not senv.python:
        if stack_id in OPTIONAL:
            pytest.skip(f"{stack_id} unavailable: {senv.reason}")
        raise AssertionError(f"{stack_id} unavailable: {senv.reason}")
    env = {**os.environ, **dict(stack.env), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return senv, env


def run_in_stack(stack_id: str, mode: str, args: dict[str, Any], tmp: Path) -> dict[str, Any]:
    senv, env = _stack_env(stack_id, tmp)
    script, args_path, out_path = tmp / "stack_script.py", tmp / f"{mode}-args.json", tmp / f"{mode}-out.json"
    script.write_text(STACK_SCRIPT)
    args_path.write_text(json.dumps(args))
    proc = subprocess.run([str(senv.python), "-I", str(script), mode, str(WORKER), str(CONFIG_SCAN),
                           senv.stack.keras_module, str(args_path), str(out_path)],
                          env=env, capture_output=True, text=True, timeout=1800, check=False, cwd=tmp)
    if proc.returncode != 0:
        raise AssertionError(f"{stack_id} {mode} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(json.loads(out_path.read_text()))


# ============================================================== the matrix's own scenarios


@pytest.fixture(scope="module")
def matrix_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("cfgscan-store")
    stacks = []
    for stack_id in STACKS:
        (stack,) = select(load_catalog(), [stack_id])
        senv = ensure_env(stack, Store(path / "probe", envs_dir=ENVS_DIR))
        if senv.ok:
            stacks.append(stack_id)
        elif stack_id not in OPTIONAL:
            raise AssertionError(f"{stack_id} unavailable: {senv.reason}")
    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR}
    proc = subprocess.run([sys.executable, "-m", "runner", "save", "--stacks", ",".join(stacks), "--formats",
                           ",".join(FORMATS), "--store", str(path)], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path, stacks


@pytest.mark.parametrize("stack_id", STACKS)
def test_matrix_scenarios_scan_clean_except_code_and_custom_objects(
        stack_id: str, matrix_store: tuple[Path, list[str]], tmp_path: Path) -> None:
    store, stacks = matrix_store
    if stack_id not in stacks:
        pytest.skip(f"{stack_id} unavailable")
    jobs = []
    for save_json in sorted((store / "artifacts" / stack_id).glob("*/*/save.json")):
        info = json.loads(save_json.read_text())
        scenario, fmt = info["scenario"], info["format"]
        jobs.append({"id": f"{scenario}:{fmt}", "scenario": scenario, "fmt": fmt,
                     "path": str(save_json.parent / info["model_file"]),
                     "scenario_path": str(REPO / "scenarios" / f"{scenario}.py")})
    assert len(jobs) >= 60, f"only {len(jobs)} artifacts saved in {stack_id}"
    out = run_in_stack(stack_id, "matrix", {"jobs": jobs, "weights": ""}, tmp_path)
    assert out["allowlist"]["classes"] > 100 and out["allowlist"]["identifiers"] > 100
    for job in jobs:
        got = out["artifacts"][job["id"]]
        scenario, fmt = job["scenario"], job["fmt"]
        if scenario not in EXPECTED or ((scenario, fmt) in NOT_STORED and not stack_id.startswith("keras3")):
            assert got["default"] == [], (job["id"], got["default"])
            continue
        assert got["default"], f"{job['id']}: no finding"
        named = " ".join(reason for _, reason, _ in got["default"])
        assert all(n in named for n in EXPECTED[scenario]), (job["id"], got["default"])
        if scenario == "lambda_layer":  # never allowed by a user's names
            assert got["custom"] and all(reason.startswith("Lambda layer") for _, reason, _ in got["custom"])
            assert all(kind == "code" for _, _, kind in got["default"])
        else:
            assert got["custom"] == [], (job["id"], got["custom"])


# ============================================================== hand-built models


@pytest.mark.parametrize("stack_id", ["tf2.15", "keras3.15-jax"])
def test_hand_built_models_and_their_hostile_twins(stack_id: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    weights = "model.weights.h5" if stack_id.startswith("keras3") else "weights.h5"
    out = run_in_stack(stack_id, "models", {"dir": str(models), "weights": weights}, tmp_path)
    got = out["models"]
    formats = ("h5", "keras", "json+weights", *(("savedmodel",) if stack_id == "tf2.15" else ()))
    for fmt in formats:
        assert got[f"benign:{fmt}"]["findings"] == [], (fmt, got[f"benign:{fmt}"]["findings"])
        assert len(got[f"benign:{fmt}"]["predict"]) == 2  # loaded and ran
        evil = got[f"lambda:{fmt}"]["findings"]
        assert evil and all(r == "Lambda layer: serialized Python bytecode" for _, r, _ in evil), (fmt, evil)
    if stack_id == "tf2.15":
        # TF-op layers of a benign model are within the allowlist; io.write_file is not
        assert out["tf_ops"] == ["SlicingOpLambda:__operators__.getitem", "TFOpLambda:concat",
                                 "TFOpLambda:math.multiply", "TFOpLambda:reshape"]
        assert [r for _, r, _ in out["write_file"]] == [
            "TFOpLambda calls tf.io.write_file, outside the allowlist of pure tensor ops"]
        assert out["h5_errors"]["int_array"] == ["BadConfig", "model_config is an array of 3 values, not one string"]
        kind, message = out["h5_errors"]["too_large"]
        assert kind == "ConfigTooLarge" and message.startswith("model_config has ") and "\n" not in message
        resp = out["respelled"]
        assert resp["changed"] and resp["same_json"]
        assert [(p, r) for p, r, _ in resp["findings"]] == [
            ("model_config/config/layers/2", "Lambda layer: serialized Python bytecode")]
        assert resp["code_ran"], "the respelled file should really run its code when loaded without the scan"
        assert out["benign:sm24"]["findings"] == [] and out["benign:sm24"]["nodes"] > 3
        assert len(out["benign:sm24"]["predict"]) == 2
        assert any(r.startswith("Lambda layer") for _, r, _ in out["lambda:sm24"]["findings"])
    else:
        assert [(r, k) for _, r, k in out["os_system"]] == [("Python function os.system, imported on load", "code")]
