"""Real tier: ``runner/_worker/graph_scan.py`` on SavedModels written by real TensorFlow.

* Hostile twins, made in the ``tf2.15`` stack: a ``tf.Module`` and a Keras model whose call
  reads a file, writes one, lists a directory, ``tf.print``s to a ``file://`` stream, runs a
  ``tf.py_function`` or writes a checkpoint with ``SaveV2``, saved with
  ``tf.saved_model.save``. Each is refused with its op named, and its benign twin (the same
  model without that op; one that ``tf.print``s to stderr) has no finding. The same stack
  then loads and calls every twin: the hostile ones really touch the files or call into
  Python (so the scan refuses real behaviour) and the benign ones load and compute ``x * w``.
* Every scenario of the matrix saved as ``savedmodel`` and ``export`` by ``tf2.15``,
  ``tf2.4`` and ``tf1.15``: no finding at all.
* The field numbers graph_scan reads, against TensorFlow's own generated protobuf modules.
* ``graph_ops.json`` is what tests/gen_graph_ops.py generates from the releases it lists.

Run: ``pytest -m real tests/test_real_graph_scan.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner._worker.graph_scan import describe, scan_savedmodel
from runner.envs import ensure_env
from runner.records import Store
from runner.stacks import load_catalog, select

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parent.parent
ENVS_DIR = os.environ.get("COMPAT_ENVS_DIR") or str(REPO / ".matrix" / "envs")
TF_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}

HOSTILE = {  # twin -> the op that must be named
    "read_file": "ReadFile",
    "write_file": "WriteFile",
    "matching_files": "MatchingFiles",
    "print_file": "PrintV2",
    "py_function": "EagerPyFunc",
    "save_v2": "SaveV2",
}
BENIGN = ["plain", "print_stderr"]
STYLES = ["module", "keras"]

TWINS = r'''
import os, sys
import tensorflow as tf
out, target = sys.argv[1], sys.argv[2]


def effect(kind, x):
    if kind == "read_file":
        return x + 0.0 * tf.cast(tf.strings.length(tf.io.read_file(os.path.join(target, "secret.txt"))), x.dtype)
    if kind == "write_file":
        tf.io.write_file(os.path.join(target, "written.txt"), "written by the model")
    if kind == "matching_files":
        return x + 0.0 * tf.cast(tf.size(tf.io.matching_files(os.path.join(target, "*"))), x.dtype)
    if kind == "print_file":
        tf.print("printed by the model", output_stream="file://" + os.path.join(target, "printed.txt"))
    if kind == "print_stderr":
        tf.print("printed by the model to stderr")
    if kind == "py_function":
        y = tf.py_function(lambda a: a, [x], tf.float32)
        y.set_shape(x.shape)
        return y
    if kind == "save_v2":  # SaveV2 is not stateful to tf.function: without the dependency it is pruned
        save = tf.raw_ops.SaveV2(prefix=os.path.join(target, "ckpt"), tensor_names=["x"], shape_and_slices=[""],
                                 tensors=[x])
        with tf.control_dependencies([save]):
            return tf.identity(x)
    return x


class Twin(tf.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.w = tf.Variable(tf.constant([1.0, 2.0, 3.0]))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def __call__(self, x):
        return effect(self.kind, x * self.w)


class Effect(tf.keras.layers.Layer):
    def __init__(self, kind, **kw):
        super().__init__(**kw)
        self.kind = kind

    def build(self, shape):
        self.w = self.add_weight(name="w", shape=(3,), initializer=tf.keras.initializers.Constant([1.0, 2.0, 3.0]))

    def call(self, x):
        return effect(self.kind, x * self.w)


for kind in sys.argv[3].split(","):
    m = Twin(kind)
    tf.saved_model.save(m, os.path.join(out, "module-" + kind), signatures=m.__call__.get_concrete_function())
    inp = tf.keras.Input(shape=(3,))
    model = tf.keras.Model(inp, Effect(kind)(inp))
    tf.saved_model.save(model, os.path.join(out, "keras-" + kind))
'''

CALL = r'''
import json, os, shutil, sys
import numpy as np
import tensorflow as tf
out, target = sys.argv[1], sys.argv[2]
x = np.array([[1.0, 1.0, 1.0], [2.0, 0.5, -1.0]], dtype="float32")
result = {}
for name in sorted(os.listdir(out)):
    for f in os.listdir(target):
        if f != "secret.txt":
            os.remove(os.path.join(target, f)) if os.path.isfile(os.path.join(target, f)) else shutil.rmtree(
                os.path.join(target, f))
    try:
        fn = tf.saved_model.load(os.path.join(out, name)).signatures["serving_default"]
        y = list(fn(tf.constant(x)).values())[0].numpy()
        result[name] = {"y": y.tolist(), "touched": sorted(f for f in os.listdir(target) if f != "secret.txt")}
    except Exception as exc:  # recorded, asserted on by the test
        result[name] = {"error": "%s: %s" % (type(exc).__name__, exc)}
print("TWINS " + json.dumps(result))
'''


def _stack_python(stack_id: str, tmp: Path) -> str:
    (stack,) = select(load_catalog(), [stack_id])
    senv = ensure_env(stack, Store(tmp / "store", envs_dir=ENVS_DIR))
    if not (senv.ok and senv.python):
        pytest.fail(f"{stack_id} unavailable: {senv.reason}")
    return str(senv.python)


@pytest.fixture(scope="module")
def tf215(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _stack_python("tf2.15", tmp_path_factory.mktemp("env"))


@pytest.fixture(scope="module")
def twins(tf215: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("twins")
    target = tmp_path_factory.mktemp("target")
    (target / "secret.txt").write_text("secret")
    script = out.parent / "twins.py"
    script.write_text(TWINS)
    kinds = ",".join([*HOSTILE, *BENIGN])
    proc = subprocess.run([tf215, "-I", str(script), str(out), str(target), kinds], capture_output=True, text=True,
                          env=TF_ENV, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, target


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_twin_is_refused_with_its_op_named(twins: tuple[Path, Path], kind: str, style: str) -> None:
    findings = scan_savedmodel(twins[0] / f"{style}-{kind}")
    assert findings, f"{style}-{kind}: no finding"
    assert {op for _, op, _ in findings} == {HOSTILE[kind]}, findings
    assert all(where.startswith("function __inference_") for where, _, _ in findings), findings
    assert f"{HOSTILE[kind]} in function __inference_" in describe(findings)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("kind", BENIGN)
def test_benign_twin_has_no_finding(twins: tuple[Path, Path], kind: str, style: str) -> None:
    assert scan_savedmodel(twins[0] / f"{style}-{kind}") == []


def test_the_twins_do_what_the_scan_says(tf215: str, twins: tuple[Path, Path]) -> None:
    out, target = twins
    script = out.parent / "call.py"
    script.write_text(CALL)
    proc = subprocess.run([tf215, "-I", str(script), str(out), str(target)], capture_output=True, text=True,
                          env=TF_ENV, timeout=900, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("TWINS ")), None)
    assert line is not None, proc.stderr[-4000:]
    got = json.loads(line[len("TWINS "):])
    expected_y = [[1.0, 2.0, 3.0], [2.0, 1.0, -3.0]]
    touched = {"write_file": ["written.txt"], "print_file": ["printed.txt"],
               "save_v2": ["ckpt.data-00000-of-00001", "ckpt.index"]}
    for style in STYLES:
        # The graph calls back into Python under a registry key: a fresh process has none
        # (in one that registered a py_function under that key, it would run that).
        assert "callback with key=pyfunc_" in got[f"{style}-py_function"].get("error", ""), got
        for kind in [*BENIGN, *(k for k in HOSTILE if k != "py_function")]:
            res = got[f"{style}-{kind}"]
            assert "error" not in res, (style, kind, res)
            assert res["y"] == expected_y, (style, kind, res)
            assert res["touched"] == touched.get(kind, []), (style, kind, res)


@pytest.mark.parametrize("stack_id", ["tf2.15", "tf2.4", "tf1.15"])
def test_every_matrix_savedmodel_has_no_finding(stack_id: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR}
    proc = subprocess.run([sys.executable, "-m", "runner", "save", "--stacks", stack_id, "--formats",
                           "savedmodel,export", "--store", str(store)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dirs = sorted(p.parent for p in (store / "artifacts" / stack_id).rglob("saved_model.pb"))
    assert len(dirs) >= 40, (len(dirs), proc.stdout[-2000:])
    found = {str(d.relative_to(store)): describe(f) for d in dirs if (f := scan_savedmodel(d))}
    assert found == {}


FIELDS = {  # (module, message path, field) -> the number graph_scan.py reads
    ("saved_model_pb2", "SavedModel", "meta_graphs"): 2,
    ("meta_graph_pb2", "MetaGraphDef", "meta_info_def"): 1,
    ("meta_graph_pb2", "MetaGraphDef", "graph_def"): 2,
    ("meta_graph_pb2", "MetaGraphDef", "saver_def"): 3,
    ("meta_graph_pb2", "MetaGraphDef", "collection_def"): 4,
    ("meta_graph_pb2", "MetaGraphDef", "signature_def"): 5,
    ("meta_graph_pb2", "MetaGraphDef", "asset_file_def"): 6,
    ("meta_graph_pb2", "MetaGraphDef", "object_graph_def"): 7,
    ("meta_graph_pb2", "MetaGraphDef.MetaInfoDef", "function_aliases"): 8,
    ("meta_graph_pb2", "MetaGraphDef.MetaInfoDef", "stripped_op_list"): 2,
    ("saver_pb2", "SaverDef", "save_tensor_name"): 2,
    ("saver_pb2", "SaverDef", "restore_op_name"): 3,
    ("graph_pb2", "GraphDef", "node"): 1,
    ("graph_pb2", "GraphDef", "library"): 2,
    ("function_pb2", "FunctionDefLibrary", "function"): 1,
    ("function_pb2", "FunctionDefLibrary", "gradient"): 2,
    ("function_pb2", "FunctionDefLibrary", "registered_gradients"): 3,
    ("function_pb2", "GradientDef", "function_name"): 1,
    ("function_pb2", "GradientDef", "gradient_func"): 2,
    ("function_pb2", "RegisteredGradient", "gradient_func"): 1,
    ("function_pb2", "FunctionDef", "signature"): 1,
    ("function_pb2", "FunctionDef", "node_def"): 3,
    ("function_pb2", "FunctionDef", "attr"): 5,
    ("op_def_pb2", "OpDef", "name"): 1,
    ("node_def_pb2", "NodeDef", "name"): 1,
    ("node_def_pb2", "NodeDef", "op"): 2,
    ("node_def_pb2", "NodeDef", "input"): 3,
    ("node_def_pb2", "NodeDef", "attr"): 5,
    ("attr_value_pb2", "AttrValue", "list"): 1,
    ("attr_value_pb2", "AttrValue", "s"): 2,
    ("attr_value_pb2", "AttrValue", "func"): 10,
    ("attr_value_pb2", "AttrValue.ListValue", "func"): 9,
    ("attr_value_pb2", "NameAttrList", "name"): 1,
    ("attr_value_pb2", "NameAttrList", "attr"): 2,
}

FIELDS_SCRIPT = r'''
import json, sys
import importlib
out = {}
for mod, path, field in json.loads(sys.argv[1]):
    pkg = "tensorflow.core.protobuf." if mod in ("saved_model_pb2", "meta_graph_pb2", "saver_pb2") else \
        "tensorflow.core.framework."
    cls = importlib.import_module(pkg + mod)
    for part in path.split("."):
        cls = getattr(cls, part, None)
    f = cls.DESCRIPTOR.fields_by_name.get(field) if cls is not None else None  # None: of a later release
    out["|".join((mod, path, field))] = f.number if f is not None else None
print("FIELDS " + json.dumps(out))
'''


@pytest.mark.parametrize("stack_id", ["tf2.15", "tf1.15"])
def test_field_numbers_match_tensorflows_protos(stack_id: str, tmp_path: Path) -> None:
    python = _stack_python(stack_id, tmp_path)
    proc = subprocess.run([python, "-I", "-c", FIELDS_SCRIPT, json.dumps([list(k) for k in FIELDS])],
                          capture_output=True, text=True, env=TF_ENV, timeout=600, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("FIELDS ")), None)
    assert line is not None, proc.stderr[-3000:]
    got = json.loads(line[len("FIELDS "):])
    absent = {k for k, v in got.items() if v is None}
    if stack_id == "tf2.15":
        assert absent == set()
    else:  # TF 1.15 predates these fields; the numbers of the others are the same
        assert absent <= {"meta_graph_pb2|MetaGraphDef.MetaInfoDef|function_aliases",
                          "function_pb2|FunctionDefLibrary|registered_gradients",
                          "function_pb2|RegisteredGradient|gradient_func"}, absent
    assert {k: v for k, v in got.items() if v is not None} == {
        "|".join(k): v for k, v in FIELDS.items() if "|".join(k) not in absent}


def test_the_allowlist_is_what_the_generator_makes_from_its_releases() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import gen_graph_ops as gen
    finally:
        sys.path.remove(str(REPO / "tests"))
    doc = json.loads((REPO / "runner" / "_worker" / "graph_ops.json").read_text())
    pythons = gen.find_pythons()
    versions = {gen.dump(p)[0]: p for p in pythons}
    missing = sorted(set(doc["tensorflow_versions"]) - set(versions))
    if missing:
        pytest.skip(f"no venv here with TensorFlow {', '.join(missing)}: cannot regenerate the list")
    selected = [versions[v] for v in doc["tensorflow_versions"]]
    args = [sys.executable, str(REPO / "tests" / "gen_graph_ops.py"), "--check"]
    for p in selected:
        args += ["--python", p]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _check(model: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    import sys

    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR}
    return subprocess.run([sys.executable, "-m", "runner", "check", str(model), "--stacks", "tf2.15",
                           "--sandbox", "off", "--store", str(tmp / "store"), "--out", str(tmp / "out"), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)


def test_check_refuses_a_file_writing_graph_on_the_host_and_loads_its_twin(twins: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    """Issue 22 item 2, through `check`: the write_file twin is refused before any stack
    loads it (nothing written), with the op named; its benign twin loads in the same
    configuration; with --unsafe the hostile one really writes (the refusal was real)."""
    out, target = twins
    (target / "written.txt").unlink(missing_ok=True)  # left by test_the_twins_do_what_the_scan_says
    refused = _check(out / "module-write_file", tmp_path / "hostile")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused_unsafe" in refused.stdout and "WriteFile in function" in refused.stdout, refused.stdout
    assert "graph: scanned on the host" in refused.stdout
    assert not (target / "written.txt").exists()
    twin = _check(out / "module-plain", tmp_path / "twin")
    assert "graph: scanned on the host against the allowlist of inert ops: every op is inert" in twin.stdout
    assert "refused" not in twin.stdout.split("safety:", 1)[1].split("\n", 1)[0]
    row = next(line for line in twin.stdout.splitlines() if line.startswith("| tf2.15"))
    assert "load_error" not in row and ("ok" in row or "loads" in row), twin.stdout
    unsafe = _check(out / "module-write_file", tmp_path / "unsafe", "--unsafe")
    assert "refused_unsafe" not in unsafe.stdout, unsafe.stdout
    assert (target / "written.txt").exists(), unsafe.stdout  # the payload is real
    (target / "written.txt").unlink()
    import tamper

    tamper.note("check (real stacks)", "a tf2.15 SavedModel whose call writes a file, --sandbox off",
                "refused on the host with its op named; the benign twin loads; with --unsafe it really writes",
                "`load_error` `refused_unsafe` (WriteFile named), nothing written; twin loads; --unsafe wrote the file")
    tamper.write_section()
