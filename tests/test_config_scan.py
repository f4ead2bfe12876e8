"""Fast tier: ``runner/_worker/config_scan.py`` refuses stored configs by structure.

No TensorFlow: the allowlist is built by ``builtin_allowlist`` from a small fake Keras
namespace, and the configs are written by hand in the shapes real Keras 2/3 files have
(the real tier, ``test_real_config_scan.py``, scans files real stacks saved). Every
refusal has a benign twin: the same config without the hostile part, through the same
code (``parse_json`` + ``scan``, or ``read_stored`` + ``scan``), with zero findings.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import struct
import sys
import tracemalloc
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest

from runner._worker import config_scan as cs

MODULE = Path(cs.__file__).resolve()


# ============================================================== a fake Keras namespace


def _cls(ns: types.ModuleType, name: str, module: str) -> type:
    cls = type(name, (), {})
    cls.__module__ = module
    setattr(ns, name, cls)
    return cls


def _fn(ns: types.ModuleType, name: str, module: str, alias: str | None = None) -> None:
    def fn(*args: Any) -> Any:
        return args

    fn.__name__ = name
    fn.__module__ = module
    setattr(ns, alias or name, fn)


def fake_keras(monkeypatch: pytest.MonkeyPatch | None = None) -> types.ModuleType:
    """``keras`` with a few layers, activations, initializers, losses, metrics, optimizers."""
    keras = types.ModuleType("keras")
    keras.__version__ = "9.9.9"  # type: ignore[attr-defined]
    spaces = {}
    for name in ("layers", "models", "activations", "initializers", "losses", "metrics", "optimizers",
                 "regularizers", "constraints"):
        spaces[name] = types.ModuleType("keras." + name)
        setattr(keras, name, spaces[name])
    layers = spaces["layers"]
    for name in ("Dense", "InputLayer", "TimeDistributed", "Bidirectional", "LSTM", "Activation", "Dropout"):
        _cls(layers, name, "keras.src.layers.core")
    for name in ("Lambda", "TFSMLayer"):  # exported, never allowed by class name
        _cls(layers, name, "keras.src.layers.core")
    _cls(layers, "Path", "pathlib")  # not a Keras class: never allowed
    seq = _cls(spaces["models"], "Sequential", "keras.src.models.sequential")
    _cls(spaces["models"], "Model", "keras.src.models.model")
    keras.Sequential = seq  # type: ignore[attr-defined]
    for name in ("relu", "tanh", "softmax", "linear", "sigmoid"):
        _fn(spaces["activations"], name, "keras.src.activations.activations")
    _fn(spaces["activations"], "get", "keras.src.activations")  # never a built-in function
    _fn(spaces["activations"], "system", "os")  # a function from outside Keras
    for name in ("GlorotUniform", "Zeros", "Ones"):
        _cls(spaces["initializers"], name, "keras.src.initializers.initializers")
    spaces["initializers"].glorot_uniform = spaces["initializers"].GlorotUniform  # type: ignore[attr-defined]
    _cls(spaces["losses"], "MeanSquaredError", "keras.src.losses.losses")
    _fn(spaces["losses"], "mean_squared_error", "keras.src.losses.losses")
    _fn(spaces["losses"], "mean_squared_error", "keras.src.losses.losses", alias="mse")
    _cls(spaces["metrics"], "MeanMetricWrapper", "keras.src.metrics.reduction_metrics")
    _fn(spaces["metrics"], "mean_absolute_error", "keras.src.losses.losses")
    _cls(spaces["optimizers"], "Adam", "keras.src.optimizers.adam")
    _cls(spaces["regularizers"], "L2", "keras.src.regularizers.regularizers")
    _cls(spaces["constraints"], "MaxNorm", "keras.src.constraints.constraints")
    if monkeypatch is not None:  # Functional: an internal class, found by module path
        functional = types.ModuleType("keras.src.models.functional")
        _cls(functional, "Functional", "keras.src.models.functional")
        monkeypatch.setitem(sys.modules, "keras", keras)
        monkeypatch.setitem(sys.modules, "keras.src.models.functional", functional)
    return keras


@pytest.fixture
def allowed(monkeypatch: pytest.MonkeyPatch) -> cs.Allowlist:
    return cs.builtin_allowlist(fake_keras(monkeypatch))


def scan_text(text: str, allowed: cs.Allowlist, source: str = "model_config", **kw: Any) -> list[cs.Finding]:
    return cs.scan([(source, cs.parse_json(text, source))], allowed, **kw)


# ============================================================== hand-written configs


def dense(name: str = "dense", activation: Any = "relu") -> dict[str, Any]:
    return {"class_name": "Dense", "config": {
        "name": name, "units": 4, "activation": activation,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": "zeros" if False else {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None, "kernel_constraint": None}}


LAMBDA = {"class_name": "Lambda", "config": {
    "name": "evil", "function": ["4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMIAAAAfABkARQAUwApAk4=", None, None],
    "function_type": "lambda", "module": "__main__", "output_shape": None, "output_shape_type": "raw",
    "output_shape_module": None, "arguments": {}}}


def sequential(*layers: dict[str, Any], name: str = "seq") -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": name, "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32", "name": "in"}},
        *layers]}, "keras_version": "2.15.0", "backend": "tensorflow"}


def dumps(obj: Any) -> str:
    return json.dumps(obj)


# ============================================================== the allowlist


def test_allowlist_from_a_fake_namespace_keeps_inert_keras_builtins_only(allowed: cs.Allowlist) -> None:
    for name in ("Dense", "InputLayer", "TimeDistributed", "Bidirectional", "Sequential", "Model", "Adam",
                 "GlorotUniform", "glorot_uniform", "MeanMetricWrapper", "Functional"):
        assert allowed.class_ok(name), name
    for name in ("Lambda", "TFSMLayer", "Path"):  # Lambda-like, loads files, not Keras
        assert not allowed.class_ok(name), name
    assert allowed.class_ok("Dense", "keras.layers") and allowed.class_ok("Dense", "keras.src.layers.core")
    assert not allowed.class_ok("Dense", "keras.utils") and not allowed.class_ok("Dense", "os")
    assert allowed.function_ok("relu", "keras.activations") and not allowed.function_ok("relu", "os")
    assert not allowed.function_ok("get") and not allowed.function_ok("system")
    assert {"relu", "mse", "mean_squared_error", "glorot_uniform", "adam", "accuracy"} <= allowed.identifiers
    assert "system" not in allowed.identifiers and "lambda" not in allowed.identifiers
    again = cs.Allowlist.from_json(json.loads(json.dumps(allowed.to_json())))
    assert again.to_json() == allowed.to_json() and again.keras_version == "9.9.9"
    assert not allowed.class_ok(["Dense"]) and not allowed.class_ok("Dense", ["keras.layers"])  # type: ignore[arg-type]


# ============================================================== Lambda in every spelling and place

BENIGN_SEQ = sequential(dense("d1"), dense("d2", activation="linear"))


def test_benign_sequential_has_no_findings(allowed: cs.Allowlist) -> None:
    assert scan_text(dumps(BENIGN_SEQ), allowed) == []


@pytest.mark.parametrize("spelling", [
    '"function_type": "\\u006cambda"',  # the regex bypass: a JSON escape of "l"
    '"function_type"  :\t"lambda"',  # whitespace around the colon
    '"function_type":\n"\\u006c\\u0061mbda"',
])
def test_lambda_respelled_is_refused(allowed: cs.Allowlist, spelling: str) -> None:
    text = dumps(sequential(dense("d1"), LAMBDA)).replace('"function_type": "lambda"', spelling)
    assert spelling in text and '"function_type": "lambda"' not in text  # what the old regex looked for
    found = scan_text(text, allowed)
    assert found == [("model_config/config/layers/2", "Lambda layer: serialized Python bytecode")]
    assert found[0].kind == "code"
    assert scan_text(dumps(sequential(dense("d1"))), allowed) == []  # the twin: no Lambda


def test_lambda_with_reordered_keys_and_spaced_class_name(allowed: cs.Allowlist) -> None:
    text = ('{"config": {"name": "s", "layers": [{"config": {"arguments": {}, "function": ["AAAA", null, null], '
            '"name": "x", "function_type" : "lambda"} , "class_name" : "Lambda"}]}, "class_name": "Sequential"}')
    assert [p for p, _ in scan_text(text, allowed)] == ["model_config/config/layers/0"]
    assert scan_text(text.replace('"Lambda"', '"Dropout"').replace('"function_type" : "lambda"', '"rate": 0.5')
                     .replace('"function": ["AAAA", null, null], ', ""), allowed) == []


def test_lambda_named_function_from_a_module_is_refused(allowed: cs.Allowlist) -> None:
    named = {"class_name": "Lambda", "config": {"name": "n", "function": "system", "function_type": "function",
                                                 "module": "os", "arguments": {}}}
    (found,) = scan_text(dumps(sequential(named)), allowed)
    assert found.reason == "Lambda layer: Python function os.system" and found.kind == "code"


def test_lambda_inside_nested_models_and_wrappers(allowed: cs.Allowlist) -> None:
    def model(inner: dict[str, Any]) -> dict[str, Any]:
        return {"class_name": "Functional", "config": {"name": "outer", "layers": [
            {"class_name": "InputLayer", "config": {"name": "in"}, "inbound_nodes": []},
            {**sequential(dense("a"), inner, name="inner"), "inbound_nodes": [[["in", 0, 0, {}]]]},
            {"class_name": "TimeDistributed", "config": {"name": "td", "layer": inner}},
            {"class_name": "Bidirectional", "config": {"name": "bi", "layer": {"class_name": "LSTM", "config": {
                "name": "f", "units": 2, "activation": "tanh"}}, "backward_layer": inner}}],
            "input_layers": [["in", 0, 0]], "output_layers": [["bi", 0, 0]]}}

    paths = [p for p, _ in cs.scan([("model_config", model(LAMBDA))], allowed)]
    assert paths == ["model_config/config/layers/1/config/layers/2", "model_config/config/layers/2/config/layer",
                     "model_config/config/layers/3/config/backward_layer"]
    benign = {"class_name": "LSTM", "config": {"name": "b", "units": 2, "go_backwards": True}}
    assert cs.scan([("model_config", model(benign))], allowed) == []


def test_keras3_lambda_is_one_finding(allowed: cs.Allowlist) -> None:
    k3 = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None, "config": {
        "name": "l", "function": {"class_name": "__lambda__", "config": {"value": ["4wEAAAAA", None, None]}},
        "arguments": {}}}
    found = scan_text(dumps({"module": "keras", "class_name": "Sequential", "registered_name": None,
                             "config": {"name": "s", "layers": [k3]}}), allowed, source="config.json")
    assert found == [("config.json/config/layers/0", "Lambda layer: serialized Python bytecode")]


# ============================================================== functions, classes, names


@pytest.mark.parametrize(("hostile", "twin", "kind"), [
    ({"class_name": "function", "config": "system", "module": "os"},
     {"class_name": "function", "config": "relu", "module": "keras.activations", "registered_name": "relu"}, "code"),
    ({"class_name": "function", "config": "eval", "module": "builtins", "registered_name": None},
     {"class_name": "function", "config": "tanh", "module": "builtins", "registered_name": None}, "custom"),
    ({"class_name": "__lambda__", "config": {"value": ["4wEAAAAA", None, None]}}, "softmax", "code"),
    ("my_act", "relu", "custom"),
    ({"class_name": "function", "config": "get", "module": "keras.activations"}, "sigmoid", "custom"),
])
def test_custom_activation_is_refused(allowed: cs.Allowlist, hostile: Any, twin: Any, kind: str) -> None:
    (found,) = scan_text(dumps(sequential(dense(activation=hostile))), allowed)
    assert found.path == "model_config/config/layers/1/config/activation" and found.kind == kind
    assert scan_text(dumps(sequential(dense(activation=twin))), allowed) == []


def test_unknown_class_is_refused_unless_the_user_defines_it(allowed: cs.Allowlist) -> None:
    evil = {"class_name": "EvilLayer", "config": {"name": "e"}}
    assert scan_text(dumps(sequential(evil)), allowed) == [
        ("model_config/config/layers/1", "class EvilLayer is not a built-in of this Keras")]
    assert scan_text(dumps(sequential(evil)), allowed, custom_names={"EvilLayer"}) == []
    assert scan_text(dumps(sequential(dense())), allowed) == []


def test_custom_string_activation_passes_with_custom_names(allowed: cs.Allowlist) -> None:
    text = dumps(sequential(dense(activation="my_act")))
    assert [f.reason for f in scan_text(text, allowed)] == [
        "'my_act' is not a built-in name of this Keras (only a custom-object registry could resolve it)"]
    assert scan_text(text, allowed, custom_names=frozenset(["my_act"])) == []


def test_custom_loss_and_metric_in_training_config(allowed: cs.Allowlist) -> None:
    def training(loss: Any, fn: str) -> str:
        return dumps({"loss": loss, "metrics": [[{"class_name": "MeanMetricWrapper", "config": {
            "name": "m", "dtype": "float32", "fn": fn}}]], "weighted_metrics": None, "loss_weights": None,
            "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}})

    found = scan_text(training({"out": "my_loss"}, "my_metric"), allowed, source="training_config")
    assert [f.path for f in found] == ["training_config/loss/out", "training_config/metrics/0/0/config/fn"]
    assert scan_text(training({"out": "mse"}, "mean_absolute_error"), allowed, source="training_config") == []
    assert scan_text(training({"out": "my_loss"}, "my_metric"), allowed, source="training_config",
                     custom_names={"my_loss", "my_metric"}) == []


@pytest.mark.parametrize(("function", "ok"), [
    ("io.write_file", False), ("compat.v1.io.write_file", False), ("py_function", False), ("numpy_function", False),
    ("math.multiply", True), ("compat.v1.transpose", True), ("__operators__.getitem", True), ("reshape", True)])
def test_tf_op_layers_name_only_pure_ops(allowed: cs.Allowlist, function: str, ok: bool) -> None:
    layer = {"class_name": "TFOpLambda", "config": {"name": "op", "trainable": True, "dtype": "float32",
                                                     "function": function}}
    found = scan_text(dumps(sequential(layer)), allowed)
    assert (found == []) is ok
    if not ok:
        assert found[0].kind == "code" and ("tf." + function) in found[0].reason
    # never allowed as a user-defined name either
    assert (scan_text(dumps(sequential(layer)), allowed, custom_names={"TFOpLambda", function}) == []) is ok


def test_registered_names_and_modules(allowed: cs.Allowlist) -> None:
    def k3(module: str, class_name: str, registered: Any) -> str:
        return dumps({"module": "keras", "class_name": "Sequential", "registered_name": None, "config": {
            "name": "s", "layers": [{"module": module, "class_name": class_name, "registered_name": registered,
                                     "config": {"name": "x", "units": 2}}]}})

    assert scan_text(k3("keras.layers", "Dense", None), allowed, "config.json") == []  # the twin
    assert scan_text(k3("keras.src.layers.core", "Dense", "Dense"), allowed, "config.json") == []
    (found,) = scan_text(k3("keras.layers", "Dense", "Custom>X"), allowed, "config.json")
    assert found.kind == "custom" and "Custom>X" in found.reason
    (found,) = scan_text(k3("my_pkg.layers", "X", "Custom>X"), allowed, "config.json")
    assert found.kind == "code" and "my_pkg.layers" in found.reason
    assert scan_text(k3("my_pkg.layers", "X", "Custom>X"), allowed, "config.json", custom_names={"Custom>X"}) == []
    # a class name the user defines does not cover a module Keras would import for another name
    assert scan_text(k3("my_pkg.layers", "X", None), allowed, "config.json", custom_names={"X"})
    (found,) = scan_text(k3("keras.utils", "Dense", None), allowed, "config.json")
    assert "keras.utils" in found.reason
    (found,) = scan_text(dumps(sequential({"class_name": "Custom>X", "config": {}})), allowed)
    assert found.reason == "custom class Custom>X (a registered name)"
    assert scan_text(dumps(sequential({"class_name": "pkg>X", "config": {}})), allowed, custom_names={"X"}) == []


def test_keras3_special_forms_are_data(allowed: cs.Allowlist) -> None:
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "dtype": "float32",
                                                           "keras_history": ["in", 0, 0]}}
    args = [tensor, {"class_name": "__numpy__", "config": {"value": [1, 2], "dtype": "int32"}},
            {"class_name": "__slice__", "config": {"start": None, "stop": 2, "step": None}},
            {"class_name": "__ellipsis__", "config": {}}, {"class_name": "__bytes__", "config": {"value": "x"}},
            {"class_name": "__tensor__", "config": {"value": [1.0], "dtype": "float32"}},
            {"class_name": "TensorShape", "items": [None, 4]}, {"class_name": "__tuple__", "items": [1, 2]}]
    config = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
              "config": {"name": "d", "units": 2}, "inbound_nodes": [{"args": args, "kwargs": {}}]}
    assert cs.scan([("config.json", config)], allowed) == []
    hidden = [*args, {"class_name": "__slice__", "config": {"start": LAMBDA, "stop": None, "step": None}}]
    config["inbound_nodes"] = [{"args": hidden, "kwargs": {}}]
    assert [p for p, _ in cs.scan([("config.json", config)], allowed)] == [
        "config.json/inbound_nodes/0/args/8/config/start"]


def test_vocabulary_file_path_is_a_finding(allowed: cs.Allowlist, monkeypatch: pytest.MonkeyPatch) -> None:
    _cls(sys.modules["keras"].layers, "StringLookup", "keras.src.layers.preprocessing.string_lookup")
    allowed = cs.builtin_allowlist(sys.modules["keras"])
    layer = {"class_name": "StringLookup", "config": {"name": "s", "vocabulary": "/etc/passwd"}}
    (found,) = cs.scan([("c", layer)], allowed)
    assert found.kind == "file" and "/etc/passwd" in found.reason
    layer["config"]["vocabulary"] = ["a", "b"]
    assert cs.scan([("c", layer)], allowed) == []


def test_unsafe_returns_nothing_and_describe_is_one_line(allowed: cs.Allowlist) -> None:
    text = dumps(sequential(LAMBDA, LAMBDA, dense(activation="x"), {"class_name": "Evil", "config": {}}, LAMBDA))
    found = scan_text(text, allowed)
    assert len(found) == 5
    assert scan_text(text, allowed, unsafe=True) == []
    line = cs.describe(found)
    assert "\n" not in line and line.endswith(" and 2 more") and line.count("model_config/") == 3
    assert cs.describe(found[:1]) == "model_config/config/layers/1: Lambda layer: serialized Python bytecode"


def test_findings_are_tuples_with_a_kind() -> None:
    f = cs.Finding("a/b", "why", "code")
    assert f == ("a/b", "why") and tuple(f) == ("a/b", "why") and f.kind == "code" and f.path == "a/b"
    path, reason = f
    assert (path, reason) == ("a/b", "why")


# ============================================================== parsing limits and malformed configs


def test_deep_nesting_is_bad_config_not_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(cs.ConfigTooLarge, match="nests deeper than 200"):
        cs.parse_json(deep, "model_config")
    deep_obj = '{"a":' * 100_000 + "1" + "}" * 100_000
    with pytest.raises(cs.BadConfig):
        cs.parse_json(deep_obj, "model_config")
    # brackets inside strings do not count; the twin parses
    assert cs.parse_json('{"s": "' + "[" * 1000 + '"}', "c") == {"s": "[" * 1000}
    assert cs.parse_json("[" * 150 + "]" * 150, "c") is not None


def test_scan_walks_a_deep_tree_iteratively(allowed: cs.Allowlist) -> None:
    tree: Any = dict(LAMBDA)
    for _ in range(50_000):
        tree = {"x": [tree]}
    (found,) = cs.scan([("c", tree)], allowed)
    assert found.reason.startswith("Lambda layer")
    with pytest.raises(cs.ConfigTooLarge):
        cs.scan([("c", tree)], allowed, limits={"nodes": 1000})


@pytest.mark.parametrize(("raw", "match"), [
    (b'{"a": NaN}', "NaN"), (b'{"a": -Infinity}', "Infinity"), (b'{"a": "\xff\xfe"}', "UTF-8"),
    (b'{"class_name": "Dense", "class_name": "Lambda"}', "twice"), (b'{"a": 1', "not valid JSON"),
    (b'{"a": 1}]]]]', "not valid JSON"), (b"[" + b"1," * 2000 + b"1]", "JSON nodes"),
])
def test_malformed_configs_are_bad_config(raw: bytes, match: str) -> None:
    with pytest.raises(cs.BadConfig, match=match):
        cs.parse_json(raw, "config.json", limits={"nodes": 1000})
    assert cs.parse_json(b'{"a": 1.5, "b": "\xc3\xa9"}', "config.json") == {"a": 1.5, "b": "\u00e9"}


# ============================================================== .keras zips


def keras_zip(path: Path, config: Any, metadata: Any = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(config))
        if metadata is not None:
            zf.writestr("metadata.json", json.dumps(metadata))
        zf.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    return path


def test_keras_zip_configs_and_provenance(tmp_path: Path, allowed: cs.Allowlist) -> None:
    meta = {"keras_version": "3.15.1", "date_saved": "2026-01-01@00:00:00"}
    path = keras_zip(tmp_path / "m.keras", sequential(dense()), meta)
    prov, configs = cs.read_stored(str(path), "keras")
    assert prov == {"keras_version": "3.15.1", "date_saved": "2026-01-01@00:00:00",
                    "source": "metadata.json in the .keras zip"}
    assert [s for s, _ in configs] == ["config.json", "metadata.json"]
    assert cs.provenance(str(path), "keras") == prov and cs.scan(configs, allowed) == []
    hostile = keras_zip(tmp_path / "h.keras", sequential(dense(), LAMBDA), meta)
    assert [p for p, _ in cs.scan(cs.stored_configs(str(hostile), "keras"), allowed)] == [
        "config.json/config/layers/2"]


def test_list_shaped_metadata_json_is_bad_config(tmp_path: Path) -> None:
    path = keras_zip(tmp_path / "m.keras", sequential(dense()), ["keras_version", "3.15.1"])
    with pytest.raises(cs.BadConfig, match=r"metadata.json is a JSON list, not an object"):
        cs.read_stored(str(path), "keras")
    assert cs.read_stored(str(keras_zip(tmp_path / "ok.keras", sequential(dense()), {"keras_version": "3"})),
                          "keras")[0]["keras_version"] == "3"


def test_zip_without_config_or_with_two_is_bad_config(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.keras", "w") as zf:
        zf.writestr("other.json", "{}")
    with pytest.raises(cs.BadConfig, match="without config\\.json"):
        cs.read_stored(str(tmp_path / "a.keras"), "keras")
    with zipfile.ZipFile(tmp_path / "b.keras", "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("config.json", "{}")
        zf.writestr("config.json", json.dumps(LAMBDA))
    with pytest.raises(cs.BadConfig, match="appears 2 times"):
        cs.read_stored(str(tmp_path / "b.keras"), "keras")
    (tmp_path / "c.keras").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(cs.BadConfig, match="not a readable zip"):
        cs.read_stored(str(tmp_path / "c.keras"), "keras")


def zip_bomb(path: Path, size: int) -> None:
    """config.json of ``size`` zero bytes, deflated (about 1000:1), written in chunks."""
    chunk = b"0" * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("config.json", "w") as fh:
        for _ in range(size // len(chunk)):
            fh.write(chunk)


def _lie_about_size(path: Path, declared: int) -> None:
    """Rewrite config.json's uncompressed size in the local header and the central directory."""
    data = bytearray(path.read_bytes())
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, declared)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)
    path.write_bytes(bytes(data))


def _peak_while(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_zip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb.keras"
    zip_bomb(path, 96 << 20)  # 96 MiB of zeros, ~100 KB on disk; the default cap is 64 MiB
    assert path.stat().st_size < 1 << 20

    def refuse() -> None:
        with pytest.raises(cs.ConfigTooLarge, match=r"config.json has 100663296 bytes \(declared\)"):
            cs.read_stored(str(path), "keras")

    assert _peak_while(refuse) < 4 << 20  # nothing near the inflated size was ever held
    # a header that lies (says 1000 bytes): zipfile stops there and the CRC fails
    _lie_about_size(path, 1000)

    def refuse_liar() -> None:
        with pytest.raises(cs.BadConfig, match="cannot be read from the zip"):
            cs.read_stored(str(path), "keras")

    assert _peak_while(refuse_liar) < 4 << 20
    # under a small cap, a declared size over it is refused the same way; the twin passes
    small = keras_zip(tmp_path / "small.keras", sequential(dense()), {"keras_version": "3"})
    assert cs.read_stored(str(small), "keras", limits={"config_bytes": 1 << 20})[1]
    with pytest.raises(cs.ConfigTooLarge):
        cs.read_stored(str(small), "keras", limits={"config_bytes": 100})


def test_zip_member_that_inflates_past_its_declared_size_stops_at_the_cap() -> None:
    class Endless(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            b[:] = b"0" * len(b)
            return len(b)

    class FakeZip:
        def infolist(self) -> list[Any]:
            return [types.SimpleNamespace(filename="config.json", file_size=10)]

        def open(self, info: Any) -> Any:
            return io.BufferedReader(Endless())

    def refuse() -> None:
        with pytest.raises(cs.ConfigTooLarge, match="inflates past the limit of 2097152"):
            cs._zip_member(FakeZip(), "config.json", 2 << 20, "config.json")

    assert _peak_while(refuse) < 8 << 20


# ============================================================== architecture JSON and SavedModels


def test_architecture_json(tmp_path: Path, allowed: cs.Allowlist) -> None:
    path = tmp_path / "model.json"
    path.write_text(dumps(sequential(dense())))
    prov, configs = cs.read_stored(str(path), "json+weights")
    assert prov == {"keras_version": "2.15.0", "backend": "tensorflow", "source": "the architecture JSON"}
    assert cs.scan(configs, allowed) == []
    path.write_text(dumps(sequential(dense())).replace('"Dense"', '"Lambda"'))
    assert [p for p, _ in cs.scan(cs.stored_configs(str(path), "json+weights"), allowed)] == [
        "model.json/config/layers/1"]
    with pytest.raises(cs.ConfigTooLarge):
        cs.read_stored(str(path), "json+weights", limits={"config_bytes": 10})
    link = tmp_path / "link.json"
    link.symlink_to(path)
    with pytest.raises(cs.BadConfig, match="not a regular file"):
        cs.read_stored(str(link), "json+weights")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def keras_metadata(*nodes: tuple[str, Any]) -> bytes:
    """SavedMetadata{nodes=1: SavedObject{node_id=2, node_path=3, identifier=4, metadata=5}}."""
    return b"".join(_field(1, _field(2, i) + _field(3, path.encode()) + _field(4, b"_tf_keras_layer")
                               + _field(5, json.dumps(meta).encode())) for i, (path, meta) in enumerate(nodes))


def saved_model(*user_objects: tuple[str, Any]) -> bytes:
    """SavedModel{meta_graphs=2: MetaGraphDef{object_graph_def=7: SavedObjectGraph{nodes=1:
    SavedObject{user_object=4: SavedUserObject{identifier=1, metadata=3}}}}}."""
    nodes = b"".join(_field(1, _field(4, _field(1, ident.encode()) + (_field(3, json.dumps(meta).encode())
                                                                       if meta is not None else b"")))
                     for ident, meta in user_objects)
    return _field(1, 1) + _field(2, _field(1, b"") + _field(7, nodes))


def test_savedmodel_keras_metadata(tmp_path: Path, allowed: cs.Allowlist) -> None:
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(saved_model(("trackable_list_wrapper", None)))
    root = {**sequential(dense()), "class_name": "Sequential", "training_config": {"loss": "mse"}}
    (sm / "keras_metadata.pb").write_bytes(keras_metadata(("root", root), ("root.layer-0", dense())))
    prov, configs = cs.read_stored(str(sm), "savedmodel")
    assert prov == {"keras_version": "2.15.0", "backend": "tensorflow"}
    assert [s for s, _ in configs] == ["keras_metadata.pb/nodes/0(root)", "keras_metadata.pb/nodes/1(root.layer-0)"]
    assert cs.scan(configs, allowed) == []
    (sm / "keras_metadata.pb").write_bytes(keras_metadata(("root", root), ("root.layer-1", LAMBDA)))
    assert [p for p, _ in cs.scan(cs.stored_configs(str(sm), "savedmodel"), allowed)] == [
        "keras_metadata.pb/nodes/1(root.layer-1)"]
    (sm / "keras_metadata.pb").write_bytes(_field(1, _field(3, b"root") + _field(5, b"not json")))
    with pytest.raises(cs.BadConfig, match=r"keras_metadata\.pb/nodes/0\(root\) is not valid JSON"):
        cs.read_stored(str(sm), "savedmodel")
    (sm / "keras_metadata.pb").write_bytes(b"\x0a\xff\xff\xff\x0f")  # a length past the end
    with pytest.raises(cs.BadConfig, match=r"keras_metadata\.pb does not parse"):
        cs.read_stored(str(sm), "savedmodel")


def test_savedmodel_object_graph_metadata_tf24(tmp_path: Path, allowed: cs.Allowlist) -> None:
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(saved_model(("_tf_keras_sequential", sequential(dense())),
                                                    ("_tf_keras_layer", dense())))
    prov, configs = cs.read_stored(str(sm), "savedmodel")
    assert prov["keras_version"] == "2.15.0" and len(configs) == 2
    assert configs[0][0] == ("saved_model.pb/meta_graphs/0/object_graph_def/nodes/0(_tf_keras_sequential)"
                             "/user_object/metadata")
    assert cs.scan(configs, allowed) == []
    (sm / "saved_model.pb").write_bytes(saved_model(("_tf_keras_sequential", sequential(dense())),
                                                    ("_tf_keras_layer", LAMBDA)))
    (found,) = cs.scan(cs.stored_configs(str(sm), "savedmodel"), allowed)
    assert "nodes/1(_tf_keras_layer)" in found.path and found.kind == "code"


def test_export_has_no_keras_config(tmp_path: Path) -> None:
    assert cs.read_stored(str(tmp_path), "export") == ({}, [])


# ============================================================== the module itself


def test_module_is_python37_syntax() -> None:
    ast.parse(MODULE.read_text(), feature_version=(3, 7))


def test_module_loads_by_path_like_the_worker_does(allowed: cs.Allowlist) -> None:
    name = "config_scan_by_path_test"
    spec = importlib.util.spec_from_file_location(name, MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        assert module.pbwire.__name__ == "compat_matrix_pbwire"  # its sibling, loaded by path too
        text = dumps(sequential(LAMBDA))
        assert module.scan([("c", module.parse_json(text, "c"))], allowed) == [
            ("c/config/layers/1", "Lambda layer: serialized Python bytecode")]
    finally:
        sys.modules.pop("compat_matrix_pbwire", None)


# ==================================================== as the check worker scans (resolves=...)



@pytest.mark.parametrize(("layer", "twin"), [
    ({"class_name": "Lambda", "config": {"name": "l", "function": ["4wEA", None, None], "function_type": "lambda"}},
     None),
    ({"class_name": "TFOpLambda", "config": {"name": "op", "function": "io.write_file"}},
     {"class_name": "TFOpLambda", "config": {"name": "op", "function": "math.multiply"}}),
    ({"class_name": "SlicingOpLambda", "config": {"name": "op", "function": "io.read_file"}},
     {"class_name": "SlicingOpLambda", "config": {"name": "op", "function": "__operators__.getitem"}}),
    ({"class_name": "InstanceProperty", "config": {"name": "p", "attr_name": "__class__"}},
     {"class_name": "InstanceProperty", "config": {"name": "p", "attr_name": "shape"}}),
    ({"class_name": "InstanceMethod", "config": {"name": "m", "attr_name": "_private"}},
     {"class_name": "InstanceMethod", "config": {"name": "m", "attr_name": "numpy"}}),
    ({"class_name": "ClassMethod", "config": {"name": "c", "cls_symbol": "io.gfile.GFile", "method_name": "write"}},
     None),
    ({"class_name": "TensorFlowOpLayer", "config": {"name": "t", "node_def": {"op": "WriteFile"}}}, None),
    ({"class_name": "__lambda__", "config": {"code": "4wEA"}}, None),
], ids=lambda v: (v or {}).get("class_name", "none") if isinstance(v, dict) or v is None else str(v))
def test_code_forms_are_refused_even_where_nothing_would_resolve(allowed: cs.Allowlist, layer: dict[str, Any],
                                                                 twin: dict[str, Any] | None) -> None:
    """The check worker drops `custom` findings that nothing can resolve (Keras fails on them
    itself); a layer that runs code is a `code` finding by its own name, so it is refused
    even then — a renamed check here would let it through to the loader."""
    found = scan_text(dumps(sequential(layer)), allowed, resolves=lambda module, name: False)
    assert [f.kind for f in found] == ["code"], found
    if twin is not None:
        assert scan_text(dumps(sequential(twin)), allowed, resolves=lambda module, name: False) == []


def test_not_builtin_names_are_refused_only_where_they_would_resolve(allowed: cs.Allowlist) -> None:
    k3 = {"module": "keras.src.engine.functional", "class_name": "Functional", "registered_name": None,
          "config": {"name": "f", "layers": []}}
    assert [f.kind for f in scan_text(dumps(k3), allowed)] == ["custom"]  # no resolver: every name counts
    assert scan_text(dumps(k3), allowed, resolves=lambda module, name: False) == []  # another release's path
    assert [f.kind for f in scan_text(dumps(k3), allowed, resolves=lambda module, name: True)] == ["custom"]
    unknown = sequential({"class_name": "MyLayer", "config": {"name": "m"}}, dense(activation="my_act"))
    assert len(scan_text(dumps(unknown), allowed)) == 2
    assert scan_text(dumps(unknown), allowed, resolves=lambda module, name: True) == []  # nothing names a module
    imported = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    assert [f.kind for f in scan_text(dumps(sequential(dense(activation=imported))), allowed,
                                      resolves=lambda module, name: False)] == ["code"]


def test_resolvable_in_stack_imports_nothing_new() -> None:
    assert cs.resolvable_in_stack("os", "system") is True  # not a Keras path: always counts
    assert cs.resolvable_in_stack("json", "loads") is True
    assert cs.resolvable_in_stack("keras.src.engine.no_such_module_here", "Functional") is False
    before = set(sys.modules)
    cs.resolvable_in_stack("tensorflow.python.no_such_thing", "X")
    assert not {m for m in set(sys.modules) - before if m.startswith(("keras", "tensorflow"))} - {"tensorflow",
                                                                                                 "keras"}
