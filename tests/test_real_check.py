"""Real tier: ``check`` of models saved by a real stack, and the regression gate on a real run.

Stacks: ``tf2.15`` saves the models (Keras 2); ``tf2.21-tfkeras`` (Keras 2 again, through
tf_keras) and ``keras3.15-jax`` (standalone Keras 3, no TensorFlow) load them. The venvs
are shared through ``$COMPAT_ENVS_DIR`` (default ``<repo>/.matrix/envs``).

Run: ``pytest -m real tests/test_real_check.py``.
"""

from __future__ import annotations

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
    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR}
    proc = subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"runner {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _rows(stdout: str) -> dict[str, list[str]]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| stack "):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            out[cells[0]] = cells
    return out


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
    proc = _runner("check", models / "dense.h5", "--stacks", "tf2.15,tf2.21-tfkeras,keras3.15-jax",
                   "--store", tmp_path / "store", "--out", tmp_path / "report")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "provenance: keras_version 2.15.0, backend tensorflow" in proc.stdout
    assert "reference: tf2.15" in proc.stdout
    rows = _rows(proc.stdout)
    assert rows["tf2.15"][2] == "ok (reference)"
    assert rows["tf2.21-tfkeras"][2] == "ok"
    assert float(rows["tf2.21-tfkeras"][5]) <= 1e-5
    jax = rows["keras3.15-jax"]
    assert jax[2] == "load_error"
    assert jax[3] == "compile_config"  # categorised by runner.diagnose
    assert "fixed by compile_false (verified" in jax[4]
    assert "mse" in jax[6]
    md = (tmp_path / "report" / "check.md").read_text()
    assert "fixed by compile_false (verified" in md and str(tmp_path) not in md
    assert (tmp_path / "report" / "check.csv").read_text().count("\n") == 4
    # Records use the matrix schema, in the check's own store; a second run is all cache.
    records = list(Store(tmp_path / "store").iter_records())
    assert {r.loader for r in records} == {"tf2.15", "tf2.21-tfkeras", "keras3.15-jax"}
    again = _runner("check", models / "dense.h5", "--stacks", "tf2.15,tf2.21-tfkeras,keras3.15-jax",
                    "--store", tmp_path / "store")
    assert again.returncode == 1 and "loading with" not in again.stdout, again.stdout


def test_custom_layer_with_and_without_custom_objects(models: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    plain = _runner("check", models / "custom.h5", "--stacks", "tf2.15,keras3.15-jax", "--store", store)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    rows = _rows(plain.stdout)
    for stack in ("tf2.15", "keras3.15-jax"):
        assert rows[stack][2] == "load_error", rows[stack]
        assert rows[stack][3] == "custom_object_unknown", rows[stack]
        assert "pass --custom-objects FILE" in rows[stack][4]
        assert "ScaleShift" in rows[stack][6]
    fixed = _runner("check", models / "custom.h5", "--stacks", "tf2.15,keras3.15-jax", "--store", store,
                    "--custom-objects", models / "my_layers.py")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    rows = _rows(fixed.stdout)
    assert rows["tf2.15"][2] == "ok (reference)" and rows["keras3.15-jax"][2] == "ok"
    assert float(rows["keras3.15-jax"][5]) <= 1e-5


def test_gate_flags_an_injected_regression_and_honours_expected_failures(tmp_path: Path) -> None:
    store, first, second = tmp_path / "store", tmp_path / "first", tmp_path / "second"
    sel = ("--stacks", "tf2.15,tf2.21-tfkeras", "--scenarios", "dense", "--formats", "h5")
    _runner("matrix", *sel, "--store", store, "--out", first, check=True)
    baseline = first / "results.json"
    cells = gate.load_results(baseline)
    victim = "dense:h5:tf2.15->tf2.21-tfkeras:default"
    assert cells[victim].outcome == "ok"

    # Inject a regression: the artifact is damaged, and the loader re-runs.
    model = store / "artifacts" / "tf2.15" / "dense" / "h5" / "model.h5"
    model.write_bytes(model.read_bytes()[:400])
    _runner("load", "--stacks", "tf2.21-tfkeras", "--scenarios", "dense", "--formats", "h5", "--fresh",
            "--store", store, check=True)
    proc = _runner("matrix", *sel, "--store", store, "--out", second, "--baseline", baseline)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"REGRESSIONS (passed in the baseline, fail now, not expected): 1\n  {victim}: load_error" in proc.stdout

    allow = tmp_path / "expected_failures.toml"
    allow.write_text('[[expected]]\nsaver = "tf2.15"\nloader = "tf2.21-*"\nscenario = "dense"\nformat = "h5"\n'
                     'reason = "damaged on purpose by the real-tier test"\nuntil = 2030-01-31\n')
    current = second / "results.json"
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
