"""Diagnosis rules against real messages (fast tier).

``tests/data/diagnose_cases.json`` holds real failing cells of the published matrix runs
(message, traceback tail, versions on both sides), a few distinct signatures per category,
each with the category a human reviewer assigned. Every rule must have at least one real
case; a rule change that moves a real message to another category fails here. The cases
marked ``"source": "published table ..."`` are taken from ``reports/results.json.gz``
(message head 600, traceback tail 800 characters, as the table keeps them): Keras 3's
wrapped errors as a report reads them, the innermost cause at the end of the tail. The
older cases come from the store (message head 2,048, traceback tail 8,000), among them one
full-length 4-layer .keras dump (sequential_input_shape:keras:tf2.15->keras3.3-torch).
tests/test_diagnose_published.py checks the rules against every failing cell of the table.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from runner import diagnose
from runner.records import ErrorInfo, Outcome, Record

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parent / "data" / "diagnose_cases.json").read_text(encoding="utf-8"))


def _record(case: dict[str, Any]) -> Record:
    error = (ErrorInfo(case["error_type"], case["message"], case["traceback"])
             if case["error_type"] else None)
    kind = case.get("record_type") or ("load" if "->" in case["cell_id"] else "save")
    return Record(
        record_type=kind, cell_id=case["cell_id"], stack="x", outcome=Outcome(case["outcome"]),
        saver=case.get("saver"), loader=case.get("loader"), format=case.get("format"),
        variant=case.get("variant", "default"), phase=case.get("phase"), error=error,
        env={"keras": case.get("loader_keras"), "backend": case.get("loader_backend"),
             "tensorflow": case.get("loader_tensorflow")},
        saver_env={"keras": case.get("saver_keras"), "backend": case.get("saver_backend"),
                   "tensorflow": case.get("saver_tensorflow")},
        details={**({} if error else {"reason": case["message"]}), **case.get("details", {})})


@pytest.mark.parametrize("case", CASES, ids=[f"{c['expected']}:{c['cell_id']}" for c in CASES])
def test_real_message_gets_its_category(case: dict[str, Any]) -> None:
    diag = diagnose.diagnose(_record(case))
    assert diag is not None
    assert diag.category == case["expected"], (case["message"][:300], diag.category)
    if "remedies" in case:  # the remedies the runner will verify, where the case says
        assert [r.id for r in diag.remedies] == case["remedies"], case["cell_id"]


def test_every_rule_has_a_real_case() -> None:
    covered = {c["expected"] for c in CASES}
    missing = [r.category for r in diagnose.RULES if r.category not in covered]
    assert not missing, f"rules without a real message in diagnose_cases.json: {missing}"
    assert len(diagnose.RULES) >= 15


def test_every_category_explains_itself() -> None:
    for rule in (*diagnose.RULES, diagnose.OTHER):
        assert len(rule.explanation) > 60, rule.category
        assert rule.title and rule.family in (
            "custom_object", "version", "backend", "safety", "numeric", "environment", "other")
        assert all(r in diagnose.REMEDIES for r in rule.remedies), rule.category


def test_unmatched_failure_falls_into_other() -> None:
    rec = Record(record_type="load", cell_id="a:h5:s->l:default", stack="l", outcome=Outcome.LOAD_ERROR,
                 error=ErrorInfo("builtins.RuntimeError", "a message no rule knows"),
                 env={"keras": "2.15.0"}, saver_env={"keras": "2.15.0"})
    diag = diagnose.diagnose(rec)
    assert diag is not None and diag.category == "other" and diag.remedies == ()


def test_success_is_not_diagnosed() -> None:
    for outcome in (Outcome.OK, Outcome.NOT_APPLICABLE):
        assert diagnose.diagnose(Record(record_type="load", cell_id="c", stack="s", outcome=outcome)) is None


def test_direction_decides_added_or_removed_config_keys() -> None:
    def rec(saver: str, loader: str) -> Record:
        return Record(record_type="load", cell_id="c", stack="s", outcome=Outcome.LOAD_ERROR,
                      error=ErrorInfo("builtins.ValueError",
                                      "('Unrecognized keyword arguments:', dict_keys(['batch_shape']))"),
                      env={"keras": loader}, saver_env={"keras": saver})
    assert diagnose.diagnose(rec("3.6.0", "2.15.0")).category == "config_key_added"  # type: ignore[union-attr]
    assert diagnose.diagnose(rec("2.4.0", "3.6.0")).category == "config_key_removed"  # type: ignore[union-attr]


def test_builtin_versus_custom_class_names() -> None:
    def rec(message: str) -> Record:
        return Record(record_type="load", cell_id="c", stack="s", outcome=Outcome.LOAD_ERROR,
                      error=ErrorInfo("builtins.TypeError", message),
                      env={"keras": "3.6.0"}, saver_env={"keras": "2.15.0"})
    loc = "Could not locate class '{}'. Make sure custom classes are decorated"
    assert diagnose.diagnose(rec(loc.format("Sequential"))).category == "keras_major_class_path"  # type: ignore[union-attr]
    assert diagnose.diagnose(rec(loc.format("TwoLayerNet"))).category == "custom_object_unknown"  # type: ignore[union-attr]


def _load_failure(message: str, saver: str = "2.10.0", loader: str = "2.5.0", fmt: str = "h5",
                  loader_env: dict[str, Any] | None = None) -> Record:
    return Record(record_type="load", cell_id=f"s:{fmt}:a->b:default", stack="b", outcome=Outcome.LOAD_ERROR,
                  saver="a", loader="b", scenario="s", format=fmt, variant="default", phase="load",
                  error=ErrorInfo("builtins.ValueError", message),
                  env=loader_env or {"keras": loader, "backend": "tensorflow"},
                  saver_env={"keras": saver, "backend": "tensorflow"})


def test_builtin_versus_custom_optimizer_names() -> None:
    """Keras 2.11-2.15 register their own optimizers as ``Custom>Adam``; TF 2.2-2.4 report
    "Unknown optimizer: Custom>Adam", TF 2.5-2.7 the same plus ". Please ensure ..." (both
    real, in diagnose_cases.json). A built-in name is a training-config problem either way;
    any other name is a custom object, with or without a package prefix or the period."""
    tail = " Please ensure this object is passed to the `custom_objects` argument."
    for name in ("Custom>Adam", "Adam", "Custom>SGD", "Custom>RMSprop", "'Custom>Nadam'", "AdamW"):
        for end in ("", "." + tail):
            diag = diagnose.diagnose(_load_failure(f"Unknown optimizer: {name}{end}", "2.13.1", "2.7.0"))
            assert diag is not None and diag.category == "compile_config", (name, end)
            assert [r.id for r in diag.remedies] == ["compile_false"]
    for name in ("RAdam", "Custom>MyAdam", "Addons>RectifiedAdam", "'compat_scenarios>Adam2'"):
        for end in ("", "." + tail):
            diag = diagnose.diagnose(_load_failure(f"Unknown optimizer: {name}{end}", "2.13.1", "2.7.0"))
            assert diag is not None and diag.category == "custom_object_unknown", (name, end)


def _alternatives(pattern: str) -> list[str]:
    """The top-level ``|`` alternatives of a regular expression."""
    out, depth, cur, i = [], 0, "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            cur += pattern[i:i + 2]
            i += 2
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "|" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    return [*out, cur]


def test_savedmodel_internal_alternatives_are_separate() -> None:
    """Each of the two _UserObject alternatives matches on its own: the TF <= 2.5 wording
    (real: rnn:savedmodel:tf2.2->tf1.15) and the Keras 2.6-2.15 wording of the same failure
    (keras/src/engine/sequential.py: "Received: layer={layer} of type {type(layer)}.").
    Neither a traceback frame "in _recreate_base_user_object" (every SavedModel load passes
    it: savedmodel_metadata_moved's real cases) nor a keras/tf.keras mix-up
    (keras-team/keras#13773) is a SavedModel object graph this release cannot rebuild."""
    rule = diagnose.CATEGORIES["savedmodel_internal"]
    alts = [re.compile(a, re.S) for a in _alternatives(rule.pattern)]
    user_object = "<tensorflow.python.saved_model.load.Loader._recreate_base_user_object.<locals>._UserObject"
    tf1 = next(c["message"] for c in CASES if c["cell_id"] == "rnn:savedmodel:tf2.2->tf1.15:default")
    keras26 = (f"The added layer must be an instance of class Layer. Received: layer={user_object} object at "
               f"0x7f63f83c2e50> of type <class '{user_object[1:]}'>.")
    found = next(a for a in alts if a.pattern.startswith("The added layer"))
    repr_alt = next(a for a in alts if a.pattern.startswith("_recreate_base_user_object"))
    assert found.search(tf1) and not found.search(keras26)
    assert repr_alt.search(keras26)
    for message in (tf1, keras26):
        diag = diagnose.diagnose(_load_failure(message, "2.3.0-tf", "2.2.4-tf", "savedmodel"))
        assert diag is not None and diag.category == "savedmodel_internal"
    mixed = "The added layer must be an instance of class Layer. Found: <keras.engine.training.Model object at 0x1CE0C>"
    assert not any(a.search(mixed) for a in alts)
    frame = "Expecting value: line 1 column 1 (char 0)\n  in _recreate_base_user_object\n    metadata = json"
    assert not any(a.search(frame) for a in alts)


def test_keras2_file_in_keras3_on_tensorflow_names_tf_keras() -> None:
    """Issue 11 item 4: a Keras 2 file failing in a Keras 3 stack on TensorFlow (which can have
    a -tfkeras sibling) names the tf_keras remedy, whatever the version category; not without
    TensorFlow, not for a Keras 2 loader, not where the sibling cannot change the outcome."""
    add_slot = "'_UserObject' object has no attribute 'add_slot'"
    k3_tf = {"keras": "3.0.5", "backend": "tensorflow", "tensorflow": "2.16.2"}
    k3_jax = {"keras": "3.0.5", "backend": "jax"}

    def ids(message: str, fmt: str, env: dict[str, Any], saver: str = "2.3.0-tf") -> list[str]:
        diag = diagnose.diagnose(_load_failure(message, saver, fmt=fmt, loader_env=env))
        assert diag is not None
        return [r.id for r in diag.remedies]

    assert ids(add_slot, "export", k3_tf) == ["tfsm", "tf_keras"]
    assert ids(add_slot, "export", {**k3_tf, "keras": "3.13.2"}, saver="2.16.0") == ["tfsm", "tf_keras"]
    assert ids(add_slot, "export", k3_jax) == ["tfsm"]  # no TensorFlow: no tf_keras
    assert ids(add_slot, "export", {"keras": "2.15.0", "backend": "tensorflow"}) == ["tfsm"]
    assert ids(add_slot, "export", k3_tf, saver="3.6.0") == ["tfsm"]  # a Keras 3 file
    assert ids("Unknown optimizer: Custom>Adam", "h5", k3_tf) == ["compile_false", "tf_keras"]
    assert ids("a message no rule knows", "h5", k3_tf) == ["tf_keras"]  # other
    assert ids("requires a `tags=` argument", "export", k3_tf) == []  # same TF in the sibling
    assert ids("Unknown layer: 'Affine'. Please ensure", "h5", k3_tf) == ["custom_objects", "compile_false"]
    # rules that name tf_keras already keep it once
    assert ids("File format not supported: filepath=x. Keras 3 only supports V3 `.keras` files",
               "savedmodel", k3_tf) == ["tfsm", "tf_keras"]
    assert not diagnose.tf_keras_for_keras2(diagnose.CATEGORIES["safe_mode_lambda"])
    # verified in the loader's sibling, and only where the catalog has one
    rec = _load_failure(add_slot, "2.3.0-tf", fmt="export", loader_env=k3_tf)
    sib = {"b": [("b-tfkeras", "tf_keras")]}
    got = [(r.id, lo, v) for r, lo, v in diagnose.remedy_targets(rec, diagnose.diagnose(rec),
                                                                  has_custom_objects=False, siblings=sib)]
    assert got == [("tf_keras", "b-tfkeras", "default")]  # tfsm: no SavedModel format here
    assert diagnose.remedy_targets(rec, diagnose.diagnose(rec), has_custom_objects=False, siblings={}) == []


def test_remedy_targets_variants_and_siblings() -> None:
    rec = Record(record_type="load", cell_id="d:savedmodel:tf2.15->tf2.16:default", stack="tf2.16",
                 outcome=Outcome.LOAD_ERROR, saver="tf2.15", loader="tf2.16", scenario="d",
                 format="savedmodel", variant="default",
                 error=ErrorInfo("builtins.ValueError", "File format not supported: filepath=x. "
                                 "Keras 3 only supports V3 `.keras` files and legacy H5 format files"),
                 env={"keras": "3.0.5"}, saver_env={"keras": "2.15.0"})
    diag = diagnose.diagnose(rec)
    sib = {"tf2.16": [("tf2.16-tfkeras", "tf_keras")], "tf1.15-cpu": [("tf1.15-cpu-h5py2", "pin_h5py2")]}
    got = [(r.id, lo, v) for r, lo, v in diagnose.remedy_targets(rec, diag, has_custom_objects=False,
                                                                  siblings=sib)]
    assert got == [("tfsm", "tf2.16", "tfsm"), ("tf_keras", "tf2.16-tfkeras", "default")]
    # tfsm only for SavedModel directories; custom_objects only where the scenario has them
    h5 = dataclasses_replace(rec, format="h5")
    assert [r.id for r, _, _ in diagnose.remedy_targets(h5, diag, has_custom_objects=False, siblings=sib)] == [
        "tf_keras"]


def dataclasses_replace(rec: Record, **kw: Any) -> Record:
    import dataclasses
    return dataclasses.replace(rec, **kw)


def test_remedy_results_report_only_what_ran() -> None:
    rec = Record(record_type="load", cell_id="c:h5:a->b:default", stack="b", outcome=Outcome.LOAD_ERROR,
                 saver="a", loader="b", scenario="c", format="h5", variant="default",
                 error=ErrorInfo("builtins.ValueError", "Unknown layer: 'Affine'. Please ensure"),
                 env={"keras": "3.6.0"}, saver_env={"keras": "3.6.0"})
    diag = diagnose.diagnose(rec)
    assert diag is not None and [r.id for r in diag.remedies] == ["custom_objects", "compile_false"]
    ok = Record(record_type="load", cell_id="x", stack="b", outcome=Outcome.OK)
    runs = {("b", "custom_objects"): ok}
    results = diagnose.remedy_results(rec, diag, lambda lo, v: runs.get((lo, v)),
                                      has_custom_objects=True, siblings={})
    assert [r.text() for r in results] == ["fixed by custom_objects (verified)"]  # compile_false never ran


def test_combine_variant_is_canonical() -> None:
    assert diagnose.combine_variant("default", "compile_false") == "compile_false"
    assert diagnose.combine_variant("compile_false", "custom_objects") == "custom_objects+compile_false"
    assert diagnose.combine_variant("custom_objects", "custom_objects") == "custom_objects"


def test_signature_drops_what_varies_by_cell() -> None:
    a = diagnose.normalise("Unable to open file '/x/y/tf2.15/model.h5' at 0x7f00aa, 12 bytes")
    b = diagnose.normalise("Unable to open file '/z/tf2.4/model.h5' at 0x7f11bb, 3 bytes")
    assert a == b == "Unable to open file '<path>' at 0x…, N bytes"


def test_issue15_families_have_their_own_categories() -> None:
    """The failure families the issue-15 scenarios brought (real messages in
    diagnose_cases.json): Keras 3 refusing a Keras 2 layer's ``batch_input_shape`` (the
    ``input_shape=`` Sequential), Keras 2.13-2.15 unable to read their own serialized
    function, and a layer the saver's backend cannot run."""
    batch = "Unrecognized keyword arguments passed to Dense: {'batch_input_shape': [None, 8]}"
    for loader_env in ({"keras": "3.15.1", "backend": "jax"}, {"keras": "3.6.0", "backend": "tensorflow",
                                                                 "tensorflow": "2.18.1"}):
        diag = diagnose.diagnose(_load_failure(batch, "2.15.0", loader_env=loader_env))
        assert diag is not None and diag.category == "keras3_batch_input_shape"
        assert [r.id for r in diag.remedies] == ["tf_keras"]
    # the generic direction rules still take other removed keys (time_major has its own rule)
    other = diagnose.diagnose(_load_failure("Unrecognized keyword arguments passed to Conv2DTranspose: {'groups': 1}",
                                            "2.4.0", "3.0.5"))
    assert other is not None and other.category == "config_key_removed"
    fn = ("Error when deserializing class 'Dense' using config={'activation': {'module': 'builtins', "
          "'class_name': 'function', 'config': 'scaled_tanh', 'registered_name': 'function'}}.\n\n"
          "Exception encountered: Unknown activation function: 'function'. Please ensure you are using a "
          "`keras.utils.custom_object_scope`")
    diag = diagnose.diagnose(_load_failure(fn, "2.15.0", "2.15.0"))
    assert diag is not None and diag.category == "function_config_unreadable" and diag.remedies == ()
    # an unknown function that has a real name stays a custom object
    named = diagnose.diagnose(_load_failure("Unknown activation function: 'scaled_tanh'. Please ensure",
                                            "2.4.0", "2.4.0"))
    assert named is not None and named.category == "custom_object_unknown"
    save = Record(record_type="save", cell_id="s:h5:keras3.3-torch", stack="keras3.3-torch",
                  outcome=Outcome.SAVE_ERROR, phase="predict",
                  error=ErrorInfo("builtins.AttributeError", "Exception encountered when calling LSTM.call().\n\n"
                                  "'tuple' object has no attribute 'shape'"),
                  env={"keras": "3.3.3", "backend": "torch"})
    diag = diagnose.diagnose(save)
    assert diag is not None and diag.category == "layer_call_fails" and diag.family == "backend"


def test_tfsm_layer_positional_inputs_in_both_spellings() -> None:
    """keras#20813 as the republish measured it: TF <= 2.18 says "too many positional
    arguments"; a TF 1.15 export in TF >= 2.19 says a named input is missing. Both are the
    TFSMLayer cause with its remedy; a missing argument outside TFSMLayer.call() is not."""
    head = "Exception encountered when calling TFSMLayer.call().\n\n\x1b[1mBinding inputs to tf.function failed due to "
    for tail in ("`too many positional arguments`. Received args: ([<tf.Tensor: shape=(10, 6)",
                 "`missing a required argument: 'features'`. Received args: ([<tf.Tensor: shape=(10, 6)"):
        rec = dataclasses.replace(_load_failure(head + tail, "2.21.0", "3.13.2", fmt="export"), phase="predict",
                                  error=ErrorInfo("builtins.TypeError", head + tail))
        diag = diagnose.diagnose(rec)
        assert diag is not None and diag.category == "tfsm_positional_inputs", tail
        assert diag.remedies[0].id == "signature"
    other = ("Exception encountered when calling Dense.call().\n\nBinding inputs to tf.function failed due to "
             "`missing a required argument: 'training'`")
    rec = dataclasses.replace(_load_failure(other, "2.21.0", "3.13.2", fmt="export"), phase="predict",
                              error=ErrorInfo("builtins.TypeError", other))
    diag = diagnose.diagnose(rec)
    assert diag is None or diag.category != "tfsm_positional_inputs"


def _case(cell_id: str) -> dict[str, Any]:
    return next(c for c in CASES if c["cell_id"] == cell_id)


def test_rules_never_read_an_embedded_config_dump() -> None:
    """Issue 23: Keras 3 wraps a .keras load error 4-5 times, each wrapper quoting the config
    it was rebuilding; the outer dumps hold the whole model config, compile config included,
    so compile_config's steps_per_execution matched every such message. The real full-length
    case below has it in its dumps; the rules' text does not, and its innermost message is
    the one line the loader objected to."""
    case = _case("sequential_input_shape:keras:tf2.15->keras3.3-torch:default")
    raw = case["message"] + case["traceback"]
    assert raw.count("Exception encountered: ") >= 3 and "steps_per_execution" in raw
    assert re.search(diagnose.CATEGORIES["compile_config"].pattern, raw, re.S)  # what the old text matched
    got = diagnose.error_text(_record(case))
    assert got.innermost == "Unrecognized keyword arguments passed to Dense: {'batch_input_shape': [None, 8]}"
    assert "steps_per_execution" not in got.text and "'registered_name'" not in got.text
    assert "Error when deserializing class 'Dense'" in got.headers
    assert "serialization_lib.py\", line 720, in deserialize_keras_object" in got.frames
    # the same wrapping around a Keras 3.13 file's cause in Keras 3.0 (derived from the real
    # case: only the innermost line and the versions differ) is that cause, not compile_config
    quant = "Unrecognized keyword arguments passed to Dense: {'quantization_config': None}"
    derived = {**case, "message": case["message"].replace(got.innermost, quant),
               "traceback": case["traceback"].replace(got.innermost, quant),
               "saver_keras": "3.13.2", "loader_keras": "3.0.5"}
    diag = diagnose.diagnose(_record(derived))
    assert diag is not None and diag.category == "keras3_quantization_config" and diag.remedies == ()


@pytest.mark.parametrize(("message", "traceback", "innermost"), [
    # a Keras 3 layer-call wrapper (bold ANSI codes included) around the cause
    ("Exception encountered when calling Conv2DTranspose.call().\n\n\x1b[1mtuple index out of range\x1b[0m"
     "\n\nArguments received by Conv2DTranspose.call():\n  • args=('<KerasTensor>',)", "",
     "tuple index out of range"),
    # Keras 2.13+'s wording, nested
    ("Exception encountered when calling layer 'outer' (type Sequential).\n\nException encountered when "
     "calling layer 'd' (type Dense).\n\nIncompatible shapes\n\nCall arguments received by layer 'd' (type "
     "Dense):\n  • inputs=tf.Tensor(shape=(None, 3))\n\nCall arguments received by layer 'outer'", "",
     "Incompatible shapes"),
    # the tail begins inside the last marker ("...untered: "), the head inside a dump
    ("Error when deserializing class 'Dense' using config={'name': 'd', 'units': 3, 'kernel_init",
     "ered: Could not locate class 'Affine'. Make sure custom classes are decorated. Full object config: "
     "{'module': None, 'class_name': 'Affine', 'config': {'units': 3}}",
     "Could not locate class 'Affine'. Make sure custom classes are decorated. Full object config: {…}"),
    # an unwrapped message longer than the head: head and tail of the same message, joined
    ("Graph execution error:\n\nDetected at node compile_loss/sparse_categorical_crossentropy defined at "
     "(most recent call last):\n  File \"w.py\", line 1, in <module>\n",
     '  File "w.py", line 1, in <module>\n\nReceived a label value of -1 which is outside the valid range',
     "Graph execution error:\n\nDetected at node compile_loss/sparse_categorical_crossentropy defined at "
     "(most recent call last):\n  File \"w.py\", line 1, in <module>\n…\nReceived a label value of -1 which "
     "is outside the valid range"),
])
def test_innermost_message(message: str, traceback: str, innermost: str) -> None:
    rec = Record(record_type="load", cell_id="c", stack="s", outcome=Outcome.LOAD_ERROR,
                 error=ErrorInfo("builtins.ValueError", message, traceback))
    assert diagnose.error_text(rec).innermost == innermost


@pytest.mark.parametrize(("message", "saver", "loader", "expected"), [
    ("Unrecognized keyword arguments passed to Dense: {'quantization_config': None}", "3.13.2", "3.11.2",
     "keras3_quantization_config"),
    ("Unrecognized keyword arguments passed to Embedding: {'quantization_config': None}", "3.15.1", "3.0.5",
     "keras3_quantization_config"),
    # outside the span the generic direction rules decide
    ("Unrecognized keyword arguments passed to Dense: {'quantization_config': None}", "3.11.2", "3.0.5",
     "config_key_added"),
    ("GlorotUniform.__init__() got an unexpected keyword argument 'input_axes'", "3.15.1", "3.13.2",
     "keras3_initializer_axes"),
    ("HeNormal.__init__() got an unexpected keyword argument 'output_axes'", "3.15.1", "3.4.1",
     "keras3_initializer_axes"),
    ("functional_from_config.<locals>.get_tensor() missing 2 required positional arguments: 'node_index' and "
     "'tensor_index'", "3.11.2", "3.3.3", "keras3_functional_layout"),
    ("functional_from_config.<locals>.get_tensor() takes 3 positional arguments but 8 were given", "3.13.2",
     "3.0.5", "keras3_functional_layout"),
    ("functional_from_config.<locals>.get_tensor() takes 3 positional arguments but 8 were given", "3.13.2",
     "3.4.1", "newer_minor_file"),
    ("int() argument must be a string, a bytes-like object or a real number, not 'list'", "2.15.0", "3.6.0",
     "batchnorm_axis_list"),
    ("Could not locate class 'FloatDTypePolicy'. Make sure custom classes are decorated", "3.6.0", "3.0.5",
     "dtype_policy_config"),
])
def test_keras3_forward_breaks_keep_to_their_versions(message: str, saver: str, loader: str, expected: str) -> None:
    diag = diagnose.diagnose(_load_failure(message, saver, loader, "keras",
                                           {"keras": loader, "backend": "jax"}))
    assert diag is not None and diag.category == expected
    if expected.startswith("keras3_"):
        assert diag.remedies == ()  # no load flag or sibling stack reads a newer Keras's config


def test_a_failing_training_step_is_its_own_category() -> None:
    def diag(reason: str) -> diagnose.Diagnosis:
        rec = Record(record_type="load", cell_id="t:h5:a->b:default", stack="b", outcome=Outcome.MISMATCH,
                     phase="compare", format="h5", details={"reason": reason},
                     env={"keras": "3.6.0", "backend": "tensorflow"}, saver_env={"keras": "3.6.0"})
        got = diagnose.diagnose(rec)
        assert got is not None
        return got
    unknown = ("training could not resume: ValueError: Unknown variable: <Variable path=hidden/kernel>. This "
               "optimizer can only be called for the variables it was originally built with.")
    assert diag(unknown).category == "training_resume_fails" and diag(unknown).remedies == ()
    assert diag("training could not resume: AttributeError: module 'jax' has no attribute 'spmd_mode'"
                ).category == "dependency_api_removed"
    assert diag("the loaded model has no optimizer (not compiled): optimizer state lost"
                ).category == "optimizer_state_lost"


@pytest.mark.parametrize("message", [
    "Unknown activation function: 'function'. Please ensure this object is passed",  # Keras >= 2.11
    "Unknown activation function: function. Please ensure this object is passed",  # Keras 2.5-2.10
    "Unknown activation function: function",  # Keras 2.4
    "Unknown activation: function",  # TF 1.15-2.3
])
def test_a_function_named_function_is_no_custom_object(message: str) -> None:
    diag = diagnose.diagnose(_load_failure(message, "2.13.1", "2.4.0"))
    assert diag is not None and diag.category == "function_config_unreadable" and diag.remedies == ()
    named = diagnose.diagnose(_load_failure(message.replace(": function", ": functional_relu")
                                            .replace("'function'", "'functional_relu'"), "2.13.1", "2.4.0"))
    assert named is not None and named.category != "function_config_unreadable"


# ---------------------------------------------- process failures: what was seen, split


@pytest.mark.parametrize(("outcome", "etype", "message", "category"), [
    (Outcome.TIMEOUT, "runner.timeout", "cell exceeded its 60 s limit; interrupted inside the worker",
     "timeout_full_limit"),
    (Outcome.TIMEOUT, "runner.timeout", "cell exceeded its 60 s limit and did not answer the worker's watchdog "
     "within 10 s (stuck outside Python); worker process group killed", "timeout_full_limit"),
    (Outcome.CRASH, "runner.crash", "worker died during this cell (killed by signal SIGKILL)", "process_died"),
    (Outcome.CRASH, "runner.crash", "worker died during this cell (exit code 1)", "process_died"),
    (Outcome.PROTOCOL_ERROR, "runner.control_tampered", "the worker tampered with its control folder: "
     "events.jsonl in the worker's folder is a FIFO: not read; worker killed", "control_tampered"),
    (Outcome.PROTOCOL_ERROR, "runner.artifact_changed", "the artifact <store>/artifacts/tf2.15/dense/keras "
     "changed while this batch loaded it (a loader wrote to it): this load is not a result", "artifact_changed"),
    (Outcome.PROTOCOL_ERROR, "runner.protocol_error", "worker reported unknown outcome 'great'", "protocol_broken"),
    (Outcome.PROTOCOL_ERROR, "runner.protocol_error", "worker exited between cells (exit code 0)",
     "protocol_broken"),
])
def test_process_failures_are_named_by_what_was_seen(outcome: Outcome, etype: str, message: str,
                                                     category: str) -> None:
    """No more hang_or_crash: a timeout at the full limit, a dead process and each kind of
    protocol error are categories of their own (the runner's own messages: runner/execute.py)."""
    rec = _load_failure(message, "2.15.0", "3.6.0")
    rec = dataclasses.replace(rec, outcome=outcome, error=ErrorInfo(etype, message), phase=None)
    diag = diagnose.diagnose(rec)
    assert diag is not None and diag.category == category
    assert "hang_or_crash" not in diagnose.CATEGORIES


def test_a_training_verdict_is_diagnosed_the_same_under_either_outcome() -> None:
    """Schema-3 records call a resumed training step's verdict training_mismatch; tables of
    schema <= 3 (the gate's baselines) call it mismatch: the same category either way."""
    cases = [c for c in CASES if c["outcome"] == "mismatch" and c["message"] and not c["error_type"]]
    assert len(cases) >= 5
    for case in cases:
        old = _record(case)
        new = dataclasses.replace(old, outcome=Outcome.TRAINING_MISMATCH)
        got = [diagnose.diagnose(r) for r in (old, new)]
        assert [d.category if d else None for d in got] == [case["expected"]] * 2, case["cell_id"]


def test_a_timeout_is_named_by_whether_it_held_at_the_full_limit() -> None:
    """Same message, same versions: one held at the full limit, one was only interrupted at
    an adaptive limit below it (the memo must not hand one the other's category)."""
    base = dataclasses.replace(_load_failure("cell exceeded its 12 s limit; interrupted inside the worker"),
                               outcome=Outcome.TIMEOUT, phase="compare")
    short = dataclasses.replace(base, details={"limit_s": 12.0, "full_limit_s": 60.0})
    full = dataclasses.replace(base, details={"limit_s": 60.0, "full_limit_s": 60.0})
    confirmed = dataclasses.replace(base, details={**short.details, "confirmed_by": "x"})
    got = [diagnose.diagnose(r) for r in (short, full, confirmed, short)]
    assert [d.category if d else None for d in got] == [
        "timeout_not_final", "timeout_full_limit", "timeout_full_limit", "timeout_not_final"]
    assert got[0] is not None and got[0].remedies == ()


def test_issue25_rnn_time_major_and_nested_functional_in_sequential() -> None:
    """The two breaks of issue 25 item 2 (real messages in diagnose_cases.json). Keras 3
    refusing a Keras 2 LSTM/GRU's ``time_major`` (keras-team/keras#20750) is its own category
    whatever the layer, with the remedies the matrix verified: custom_objects (a subclass that
    drops the key: fixes .h5, not .keras) and tf_keras. A Keras 3 Sequential rebuilding a
    nested Functional model with two inputs to the next layer (keras-team/keras#19959) has no
    remedy to try but tf_keras for a Keras 2 file, and the same wording from a Keras 2 loader is
    not that break."""
    for layer in ("GRU", "LSTM"):
        msg = f"Unrecognized keyword arguments passed to {layer}: {{'time_major': False}}"
        for saver, loader in (("2.15.0", "3.15.1"), ("2.13.1", "3.4.1"), ("2.21.0", "3.13.2")):
            diag = diagnose.diagnose(_load_failure(msg, saver, loader))
            assert diag is not None and diag.category == "keras3_rnn_time_major", (layer, saver, loader)
            assert [r.id for r in diag.remedies] == ["custom_objects", "tf_keras"]
    # another removed key next to time_major is still time_major's cause
    both = "Unrecognized keyword arguments passed to GRU: {'implementation': 2, 'time_major': False}"
    assert diagnose.diagnose(_load_failure(both, "2.15.0", "3.15.1")).category == "keras3_rnn_time_major"  # type: ignore[union-attr]
    two = ('Layer "dense" expects 1 input(s), but it received 2 input tensors. Inputs received: '
           "[<KerasTensor shape=(None, 8, 8, 4), dtype=float32, sparse=False, name=keras_tensor_14>, ...]")
    old = "Layer 'dense' expected 1 input(s). Received 2 instead."
    for msg in (two, old):
        for saver, loader in (("3.4.1", "3.4.1"), ("3.3.3", "3.15.1"), ("2.15.0", "3.13.2")):
            diag = diagnose.diagnose(_load_failure(msg, saver, loader, fmt="keras"))
            assert diag is not None and diag.category == "functional_in_sequential"
            # only a Keras 2 file has one: tf_keras next to the same TensorFlow (verified in the matrix)
            assert [r.id for r in diag.remedies] == (["tf_keras"] if saver.startswith("2.") else [])
    keras2 = diagnose.diagnose(_load_failure(two, "2.15.0", "2.15.0"))
    assert keras2 is not None and keras2.category != "functional_in_sequential"
    # a layer expecting one input and given three is another matter
    three = diagnose.diagnose(_load_failure(two.replace("received 2", "received 3"), "3.4.1", "3.4.1"))
    assert three is not None and three.category != "functional_in_sequential"
