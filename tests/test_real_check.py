"""Real tier: ``check`` of models saved by a real stack, and the regression gate on a real run.

Stacks: ``tf2.15`` saves the models (Keras 2); ``tf2.21-tfkeras`` (Keras 2 again, through
tf_keras) and ``keras3.15-jax`` (standalone Keras 3, no TensorFlow) load them. The venvs
are shared through ``$COMPAT_ENVS_DIR`` (default ``<repo>/.matrix/envs``).

Run: ``pytest -m real tests/test_real_check.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import gate
from runner.envs import ensure_env
from runner.records import Store
from runner.stacks import load_catalog, select

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parent.parent
ENVS_DIR = os.environ.get("COMPAT_ENVS_DIR") or str(REPO / ".matrix" / "envs")

SAVE_SCRIPT = '''
import os, sys
import tensorflow as tf
keras = tf.keras
out = sys.argv[1]
inp = keras.Input(shape=(8,), name="x")
h = keras.layers.Dense(16, activation="relu")(inp)
m = keras.Model(inp, keras.layers.Dense(3)(h))
m.compile(optimizer="adam", loss="mse")   # the string loss Keras 3 cannot deserialize
m.save(os.path.join(out, "dense.h5"))


# The user's layer module: the same file later handed to check as --custom-objects.
sys.path.insert(0, out)
from my_layers import custom_objects  # noqa: E402
ScaleShift = custom_objects(keras)["ScaleShift"]
inp = keras.Input(shape=(4,))
keras.Model(inp, ScaleShift(2.0)(keras.layers.Dense(5)(inp))).save(os.path.join(out, "custom.h5"))

# Strided 'same' average pooling on an odd input: Keras 3.3's torch backend pads it differently.
inp = keras.Input(shape=(9, 9, 3))
h = keras.layers.AveragePooling2D(2, strides=2, padding="same")(keras.layers.Conv2D(4, 3, padding="same")(inp))
conv = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
conv.compile(optimizer="adam", loss="mse")
conv.save(os.path.join(out, "conv.h5"))
conv.save(os.path.join(out, "conv_noprov.h5"))
import h5py  # noqa: E402
with h5py.File(os.path.join(out, "conv_noprov.h5"), "a") as fh:  # a file that names no saver
    del fh.attrs["keras_version"]
    del fh.attrs["backend"]

# float32 conv over 44,544 inputs per example: other releases' kernels sum in another order.
inp = keras.Input(shape=(116, 128, 3))
h = keras.layers.Conv2D(16, 5, activation="relu")(inp)
big = keras.Model(inp, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h)))
big.save(os.path.join(out, "bigconv.h5"))

# A Lambda whose function writes a marker file when it runs (its bytecode is in the file).
marker = os.path.join(out, "marker.txt")
ns = {}
exec(chr(10).join(["def touch(x):", "    open(%r, 'a').write('ran')" % marker, "    return x", ""]), ns)
inp = keras.Input(shape=(3,))
keras.Model(inp, keras.layers.Lambda(ns["touch"])(keras.layers.Dense(2)(inp))).save(os.path.join(out, "lambda.h5"))
os.remove(marker)  # building the model ran it once, here, on purpose

# A Keras 2 SavedModel (model.save(dir)): Keras 3 cannot load_model it.
m.save(os.path.join(out, "dense_sm"), save_format="tf")
'''

CUSTOM_OBJECTS = '''
def custom_objects(keras):
    class ScaleShift(keras.layers.Layer):
        def __init__(self, init_scale=1.0, **kw):
            super().__init__(**kw)
            self.init_scale = float(init_scale)

        def build(self, s):
            self.scale = self.add_weight(name="scale", shape=(int(s[-1]),), initializer="ones")
            self.shift = self.add_weight(name="shift", shape=(int(s[-1]),), initializer="zeros")

        def call(self, x):
            return x * self.scale * self.init_scale + self.shift

        def get_config(self):
            c = super().get_config()
            c["init_scale"] = self.init_scale
            return c

    return {"ScaleShift": ScaleShift}
'''


def _runner(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    # The venv stacks of $COMPAT_ENVS_DIR (the docker sandbox has its own tier: tests/docker).
    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR, "COMPAT_CHECK_SANDBOX": "off"}
    proc = subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"runner {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by their first cell; a remedy row is "<stack> <remedy>" (its ↳ line follows the stack)."""
    out: dict[str, list[str]] = {}
    last = ""
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| stack "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0].startswith("↳"):
                out[f"{last} {cells[0][2:]}"] = cells
            else:
                last = cells[0]
                out[last] = cells
    return out


def _delta(cell: str) -> float:
    return float(cell.split(" ", maxsplit=1)[0])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    (stack,) = select(load_catalog(), ["tf2.15"])
    senv = ensure_env(stack, Store(out / "store", envs_dir=ENVS_DIR))
    assert senv.ok and senv.python, senv.reason
    (out / "my_layers.py").write_text(CUSTOM_OBJECTS)
    (out / "save.py").write_text(SAVE_SCRIPT)
    subprocess.run([senv.python, "-I", str(out / "save.py"), str(out)], check=True, capture_output=True,
                   timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    return out


def test_model_saved_by_one_stack_checked_in_two_others(models: Path, tmp_path: Path) -> None:
    proc = _runner("check", models / "dense.h5", "--stacks", "tf2.15,tf2.18,keras3.15-jax",
                   "--store", tmp_path / "store", "--out", tmp_path / "report")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "provenance: keras_version 2.15.0, backend tensorflow" in proc.stdout
    assert "reference: tf2.15" in proc.stdout
    rows = _rows(proc.stdout)
    assert rows["tf2.15"][1] == "ok (reference)"
    jax = rows["keras3.15-jax"]
    assert jax[1:3] == ["load_error", "compile_config"]  # categorised by runner.diagnose
    assert rows["keras3.15-jax compile_false"][1] == "fixed (verified)"
    assert _delta(rows["keras3.15-jax compile_false"][3]) <= 1e-5
    md = (tmp_path / "report" / "check.md").read_text()
    assert "fixed (verified)" in md and str(tmp_path) not in md
    # Records use the matrix schema, in the check's own store; a second run is all cache, same bytes.
    records = list(Store(tmp_path / "store").iter_records())
    assert {r.loader for r in records} == {"tf2.15", "tf2.18", "keras3.15-jax"}
    again = _runner("check", models / "dense.h5", "--stacks", "tf2.15,tf2.18,keras3.15-jax",
                    "--store", tmp_path / "store")
    assert again.returncode == 1 and "loading with" not in again.stderr and again.stdout == proc.stdout


def test_custom_layer_with_and_without_custom_objects(models: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    plain = _runner("check", models / "custom.h5", "--stacks", "tf2.15,keras3.15-jax", "--store", store)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    rows = _rows(plain.stdout)
    for stack in ("tf2.15", "keras3.15-jax"):
        assert rows[stack][1:3] == ["load_error", "custom_object_unknown"], rows[stack]
    assert "pass --custom-objects FILE" in plain.stdout and "ScaleShift" in plain.stdout
    fixed = _runner("check", models / "custom.h5", "--stacks", "tf2.15,keras3.15-jax", "--store", store,
                    "--custom-objects", models / "my_layers.py")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    rows = _rows(fixed.stdout)
    assert rows["tf2.15"][1] == "ok (reference)" and rows["keras3.15-jax"][1] == "ok"


def test_backend_difference_never_verified_without_reference_and_a_mismatch_with_one(
        models: Path, tmp_path: Path) -> None:
    # No provenance in the file: no reference, so the loads are unverified, never "fixed (verified)".
    bare = _runner("check", models / "conv_noprov.h5", "--stacks", "keras3.3-torch,keras3.15-jax",
                   "--store", tmp_path / "store")
    assert bare.returncode == 1, bare.stdout + bare.stderr
    assert "reference: none: the file names no Keras or TensorFlow version" in bare.stdout
    rows = _rows(bare.stdout)
    assert rows["keras3.3-torch compile_false"][1] == "loads (unverified: no reference)"
    assert "verified)" not in bare.stdout
    assert "disagrees with keras3.3-torch compile_false: output 0: max |Δ|" in bare.stdout
    # The same model with its provenance: tf2.15 is added as the reference; torch's fix is a mismatch.
    ref = _runner("check", models / "conv.h5", "--stacks", "keras3.3-torch", "--store", tmp_path / "store")
    assert ref.returncode == 1, ref.stdout + ref.stderr
    assert "reference: tf2.15 (TF 2.15.1, Keras 2.15.0): same Keras major.minor as the file's; not selected, " \
           "added to the run as the reference" in ref.stdout
    rows = _rows(ref.stdout)
    assert rows["keras3.3-torch"][1:3] == ["load_error", "compile_config"]
    torch = rows["keras3.3-torch compile_false"]
    assert torch[1] == "mismatch" and _delta(torch[3]) > 1e-2, ref.stdout
    assert "1 of 1 stacks" not in ref.stdout and "0 of 1 stacks" in ref.stdout


def test_float_noise_across_tf_releases_is_ok(models: Path, tmp_path: Path) -> None:
    proc = _runner("check", models / "bigconv.h5", "--stacks", "tf2.15,tf2.18", "--store", tmp_path / "store")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(proc.stdout)
    assert rows["tf2.15"][1] == "ok (reference)" and rows["tf2.18"][1] == "ok"
    assert "tolerance: |Δ| ≤ atol + rtol·|ref| per output" in proc.stdout


def test_lambda_code_is_refused_in_every_stack_without_unsafe(models: Path, tmp_path: Path) -> None:
    marker = models / "marker.txt"
    assert not marker.exists()
    stacks = ("tf2.15", "tf2.18", "keras3.15-jax")
    proc = _runner("check", models / "lambda.h5", "--stacks", ",".join(stacks), "--store", tmp_path / "store")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not marker.exists(), "code from the model file ran without --unsafe"
    rows = _rows(proc.stdout)
    for stack in stacks:
        assert rows[stack][1:3] == ["load_error", "refused_unsafe"], proc.stdout
    assert "Lambda layer: serialized Python bytecode" in proc.stdout
    assert "safe mode on" not in proc.stdout
    assert "safe mode: none (no safe mode for h5 files) in keras3.15-jax, tf2.15, tf2.18" in proc.stdout
    # With --unsafe the user said so: the file's code runs, inside the stack.
    unsafe = _runner("check", models / "lambda.h5", "--stacks", "tf2.15", "--unsafe", "--store", tmp_path / "store")
    assert marker.exists() and "refused_unsafe" not in unsafe.stdout, unsafe.stdout
    marker.unlink()


RESPELL = r'''
import sys, h5py
src, dst, form = sys.argv[1], sys.argv[2], sys.argv[3]
import shutil, json
shutil.copy(src, dst)
with h5py.File(dst, "a") as fh:
    original = fh.attrs["model_config"]
    original = original.decode() if isinstance(original, bytes) else original
    text, before = original, json.loads(original)
    if form == "escape":
        text = text.replace('"function_type": "lambda"', '"function_type": "\\u006cambda"')
    else:
        text = text.replace('"function_type": "lambda"', '"function_type" : "lambda"')
    assert text != original and json.loads(text) == before, "not respelled"
    fh.attrs["model_config"] = text.encode()
'''


@pytest.mark.parametrize("form", ["escape", "space_before_colon"])
def test_a_respelled_lambda_h5_is_refused_in_every_stack(models: Path, tmp_path: Path, form: str) -> None:
    """Issue 22 item 1, the two bypasses found: the same model_config spelled with a JSON
    escape or a space before a colon was loaded in tf2.15 without --unsafe and its Lambda
    ran. Refused in every stack now; the marker is never written."""
    (stack,) = select(load_catalog(), ["tf2.15"])
    senv = ensure_env(stack, Store(tmp_path / "envs-store", envs_dir=ENVS_DIR))
    assert senv.python
    respelled = tmp_path / f"lambda-{form}.h5"
    subprocess.run([senv.python, "-c", RESPELL, str(models / "lambda.h5"), str(respelled), form], check=True,
                   capture_output=True, timeout=300)
    marker = models / "marker.txt"
    stacks = ("tf2.15", "keras3.15-jax")
    proc = _runner("check", respelled, "--stacks", ",".join(stacks), "--store", tmp_path / "store")
    assert not marker.exists(), "the respelled Lambda ran without --unsafe"
    rows = _rows(proc.stdout)
    for sid in stacks:
        assert rows[sid][1:3] == ["load_error", "refused_unsafe"], proc.stdout
    assert "model_config/config/layers/2: Lambda layer: serialized Python bytecode" in proc.stdout, proc.stdout
    import tamper

    tamper.note("check (real stacks)", f"a real tf2.15 Lambda .h5 respelled: {form} (a bypass of the old text "
                "search)", "refused in tf2.15 and keras3.15-jax; the Lambda's marker never written",
                " ".join(f"{sid}: `{rows[sid][1]}` `{rows[sid][2]}`" for sid in stacks) + "; marker absent")
    tamper.write_section()


def test_keras2_savedmodel_in_a_keras3_tf_is_fixed_by_its_tf_keras_sibling(models: Path, tmp_path: Path) -> None:
    proc = _runner("check", models / "dense_sm", "--stacks", "tf2.21", "--store", tmp_path / "store")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "reference: tf2.15 (TF 2.15.1, Keras 2.15.0)" in proc.stdout
    rows = _rows(proc.stdout)
    assert rows["tf2.21"][1] == "load_error"
    assert rows["tf2.21 tf2.21-tfkeras"][1] == "fixed (verified)", proc.stdout  # built on demand
    assert "remedy tf_keras (sibling stack tf2.21-tfkeras)" in proc.stdout
    assert rows["tf2.21 tfsm"][1] == "fixed (verified)", proc.stdout  # TFSMLayer: not the default call


TF24_SAVE = """
import sys
import tensorflow as tf
inp = tf.keras.Input(shape=(6,))
m = tf.keras.Model(inp, tf.keras.layers.Dense(3)(tf.keras.layers.Dense(8, activation="relu")(inp)))
m.compile(optimizer="adam", loss="mse")
m.save(sys.argv[1])  # TF 2.4: a Keras SavedModel without keras_metadata.pb
"""


@pytest.fixture(scope="module")
def sm24(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled Keras SavedModel written by TF 2.4 (the tf2.4 stack)."""
    out = tmp_path_factory.mktemp("tf24")
    (stack,) = select(load_catalog(), ["tf2.4"])
    senv = ensure_env(stack, Store(out / "envs-store", envs_dir=ENVS_DIR))
    assert senv.ok and senv.python, senv.reason
    (out / "save24.py").write_text(TF24_SAVE)
    subprocess.run([senv.python, "-I", str(out / "save24.py"), str(out / "sm24")], check=True,
                   capture_output=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert not (out / "sm24" / "keras_metadata.pb").exists()
    return out / "sm24"


def test_tf24_keras_savedmodel_is_loaded_as_a_keras_model(sm24: Path, tmp_path: Path) -> None:
    proc = _runner("check", sm24, "--stacks", "tf2.15,tf2.18", "--store", tmp_path / "store")
    assert "model: sm24 (savedmodel," in proc.stdout, proc.stdout + proc.stderr
    assert "keras_version 2.4.0" in proc.stdout and "the object graph of saved_model.pb" in proc.stdout
    assert "reference: tf2.4 (TF 2.4." in proc.stdout and "added to the run" in proc.stdout
    rows = _rows(proc.stdout)
    assert rows["tf2.15"][1] == "ok", proc.stdout  # load_model, checked against TF 2.4's own outputs
    assert rows["tf2.18"][1] == "load_error" and rows["tf2.18 tfsm"][1] == "fixed (verified)", proc.stdout
    loaded = {r.loader: r.details.get("loaded_class") for r in Store(tmp_path / "store").iter_records()}
    assert loaded["tf2.15"] == "Functional"  # keras load_model, not tf.saved_model.load


def test_tf24_keras_savedmodel_needs_compile_false_in_tf22(sm24: Path, tmp_path: Path) -> None:
    """Every Keras 2 TF that reads the TF 2.4 file (2.7, 2.11, 2.15, 2.21-tfkeras) loads it by
    default; TF 2.2 (Keras 2.3) is the catalog's stack whose load_model fails on the file's
    compile config (KeyError 'sample_weight_mode') and loads it with compile=False."""
    proc = _runner("check", sm24, "--stacks", "tf2.2", "--store", tmp_path / "store")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "reference: tf2.4 (TF 2.4.4, Keras 2.4.0): same Keras major.minor as the file's; not selected, " \
           "added to the run as the reference" in proc.stdout
    rows = _rows(proc.stdout)
    assert rows["tf2.4"][1] == "ok (reference)", proc.stdout
    assert rows["tf2.2"][1:3] == ["load_error", "compile_config"], proc.stdout
    assert rows["tf2.2 compile_false"][1] == "fixed (verified)" and _delta(rows["tf2.2 compile_false"][3]) <= 1e-4
    assert "KeyError: 'sample_weight_mode'" in proc.stdout and "remedy compile_false" in proc.stdout
    assert "0 of 1 stacks load the model and match the reference; 1 remedy verified; exit 1." in proc.stdout
    recs = {r.variant: r for r in Store(tmp_path / "store").iter_records() if r.loader == "tf2.2"}
    assert recs["default"].phase == "load" and recs["default"].error is not None  # load_model was tried
    assert recs["default"].error.type == "builtins.KeyError"
    assert recs["compile_false"].details.get("loaded_class") == "Model"  # keras load_model, not tf.saved_model


def test_gate_flags_an_injected_regression_and_honours_expected_failures(tmp_path: Path) -> None:
    store, first, second = tmp_path / "store", tmp_path / "first", tmp_path / "second"
    sel = ("--stacks", "tf2.15,tf2.21-tfkeras", "--scenarios", "dense", "--formats", "h5")
    _runner("matrix", *sel, "--store", store, "--out", first, check=True)
    # Inject a regression: a baseline in which a cell that fails today passed. (Damaging the
    # artifact no longer works: the matrix sees its digest change and saves it again.)
    rows = list(gate.results_rows(json.loads(gate.read_results_text(first / gate.RESULTS_JSON))))
    row = next(r for r in rows if r["outcome"] == "load_error" and r["variant"] == "default")
    saver, loader = row["saver"], row["loader"]
    victim = f"dense:h5:{saver}->{loader}:default"
    row["outcome"], row["category"] = "ok", ""
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"schema_version": 1, "cells": rows}))  # the gate reads schema 1 too
    assert gate.load_results(baseline)[victim].outcome == "ok"
    proc = _runner("matrix", *sel, "--store", store, "--out", second, "--baseline", baseline)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"REGRESSIONS (passed in the baseline, fail now, not expected): 1\n  {victim}: load_error" in proc.stdout

    allow = tmp_path / "expected_failures.toml"
    allow.write_text(f'[[expected]]\nsaver = "{saver}"\nloader = "{loader}"\nscenario = "dense"\nformat = "h5"\n'
                     'reason = "injected on purpose by the real-tier test"\nuntil = 2030-01-31\n')
    current = second / gate.RESULTS_JSON
    ok = _runner("gate", "--baseline", baseline, "--current", current, "--expected-failures", allow,
                 "--today", "2030-01-31")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "expected failures (regressions excused by an entry): 1" in ok.stdout
    expired = _runner("gate", "--baseline", baseline, "--current", current, "--expected-failures", allow,
                      "--today", "2030-02-01")
    assert expired.returncode == 1, expired.stdout
    assert "EXPIRED expected-failure entries" in expired.stdout
    assert "(expired expected-failure #1, until 2030-01-31)" in expired.stdout
    # The same from the store's records, without a results file.
    from_store = _runner("gate", "--baseline", baseline, "--store", store, "--expected-failures", allow,
                         "--today", "2030-01-01")
    assert from_store.returncode == 0, from_store.stdout + from_store.stderr
