"""Real tier: the scenarios of issue 15 round-trip in a Keras 2 and a Keras 3 stack.

Every scenario added for issue 15 (the models people actually save) is saved and loaded
in ``tf2.15`` (Keras 2.15) and ``keras3.15-numpy`` (Keras 3.15, no TensorFlow), as h5 and
.keras. The NumPy backend cannot fit, so the three trained scenarios round-trip in
``keras3.15-jax`` (the JAX backend compiles every op on first use: MobileNet alone takes
20-60 s there, so the untrained ones stay on NumPy); ``string_lookup`` needs string
tensors, which Keras 3 has on TensorFlow only, so it round-trips in ``tf2.18`` (Keras 3.6).
Same-stack failures that are real Keras behaviour (not scenario bugs) are asserted as
such, and so is the Keras 2 -> Keras 3 ``input_shape=`` family with its category. The two
scenarios of issue 25 item 2 (``gru_time_major``, ``nested_sequential``) get their own light
run: each reported break where it happens, and its benign twin.

Run: ``pytest -m real tests/test_real_scenarios.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import diagnose
from runner.records import Outcome, Record, Store

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parent.parent
ENVS_DIR = os.environ.get("COMPAT_ENVS_DIR") or str(REPO / ".matrix" / "envs")
NEW_SCENARIOS = (
    "sequential_input_shape", "strided_same_padding", "depthwise_only", "batchnorm_trained",
    "masked_bidirectional_rnn", "transformer_block", "normalization_adapted", "string_lookup",
    "registered_custom_layer", "applications_mobilenet", "multi_output_losses",
    "train_step_override", "regularizers_constraints",
)
STACKS = "tf2.15,keras3.15-numpy"
FORMATS = ("h5", "keras")
TRAINED = ("batchnorm_trained", "multi_output_losses", "train_step_override")
# (scenario, stack, format) -> outcome, for same-stack round trips that fail for a real,
# documented Keras reason (see each scenario's docstring); everything else must be ok.
KNOWN = {
    # Keras 2.13-2.15 write a function as {"class_name": "function", "config": name}, which
    # their own HDF5 reader cannot resolve even given custom_objects ("Unknown activation
    # function: 'function'", keras-team/keras#20833); the .keras file of the same model loads.
    ("regularizers_constraints", "tf2.15", "h5"): "load_error",
    # Keras 3 cannot rebuild the string loss "mse" from its own HDF5 compile config.
    ("sequential_input_shape", "keras3.15-numpy", "h5"): "load_error",
    # The NumPy backend cannot fit (checked in keras3.15-jax instead).
    **{(sc, "keras3.15-numpy", fmt): "not_applicable" for sc in TRAINED for fmt in FORMATS},
    # Keras 3 has no string tensors without TensorFlow (checked in tf2.18 instead).
    ("string_lookup", "keras3.15-numpy", "h5"): "not_applicable",
    ("string_lookup", "keras3.15-numpy", "keras"): "not_applicable",
}


def _runner(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR}
    proc = subprocess.run([sys.executable, "-m", "runner", *args, "--store", str(store)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"runner {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _records(store: Path) -> dict[str, Record]:
    return {rec.cell_id: rec for rec in Store(store).iter_records()}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("real-new-scenarios")
    _runner("matrix", "--stacks", STACKS, "--scenarios", ",".join(NEW_SCENARIOS),
            "--formats", ",".join(FORMATS), "--no-report", store=path)
    # the trained scenarios on a Keras 3 backend that can fit, string_lookup on a Keras 3
    # stack with TensorFlow (string tensors): one run, .keras only
    _runner("matrix", "--stacks", "keras3.15-jax,tf2.18", "--scenarios", ",".join((*TRAINED, "string_lookup")),
            "--formats", "keras", "--no-report", store=path)
    return path


def _same_stack(recs: dict[str, Record], scenario: str, stack: str, fmt: str) -> Record:
    save = recs[f"{scenario}:{fmt}:{stack}"]
    variant = "custom_objects" if f"{scenario}:{fmt}:{stack}->{stack}:custom_objects" in recs else "default"
    return recs.get(f"{scenario}:{fmt}:{stack}->{stack}:{variant}") or save


def test_scenario_library_has_the_new_scenarios() -> None:
    from runner.scenario_catalog import discover_scenarios

    names = {s.name for s in discover_scenarios()}
    assert set(NEW_SCENARIOS) <= names
    assert len(names) >= 28


@pytest.mark.parametrize("scenario", NEW_SCENARIOS)
def test_new_scenario_round_trips_in_keras2_and_keras3(store: Path, scenario: str) -> None:
    recs = _records(store)
    for stack in STACKS.split(","):
        for fmt in FORMATS:
            rec = _same_stack(recs, scenario, stack, fmt)
            expected = KNOWN.get((scenario, stack, fmt), "ok")
            assert rec.outcome.value == expected, (rec.cell_id, rec.error, rec.details.get("reason"))
            if expected == "ok":
                assert rec.max_abs_diff is not None and rec.max_abs_diff <= 1e-4, rec.cell_id
    # at least one Keras 2 and one Keras 3 round trip is ok
    keras2 = [_same_stack(recs, scenario, "tf2.15", f).outcome for f in FORMATS]
    keras3 = [_same_stack(recs, scenario, s, f).outcome for s, f in
              (("keras3.15-numpy", "h5"), ("keras3.15-numpy", "keras"), ("keras3.15-jax", "keras"),
               ("tf2.18", "keras"))
              if f"{scenario}:{f}:{s}" in recs]
    assert Outcome.OK in keras2 and Outcome.OK in keras3, (keras2, keras3)


def test_not_applicable_says_why(store: Path) -> None:
    recs = _records(store)
    rec = recs["string_lookup:keras:keras3.15-numpy"]
    assert rec.outcome is Outcome.NOT_APPLICABLE
    assert rec.error and "string tensors only on the TensorFlow backend" in rec.error.message
    fit = recs["batchnorm_trained:keras:keras3.15-numpy"]
    assert fit.outcome is Outcome.NOT_APPLICABLE and fit.error and "cannot fit" in fit.error.message


def test_input_shape_family_in_keras3(store: Path) -> None:
    """A Keras 2 ``Sequential([Dense(..., input_shape=...)])`` .keras file in Keras 3: the
    first layer's ``batch_input_shape`` is refused, and the failure has its own category.
    (Keras 3's legacy HDF5 reader accepts the key; there the string loss "mse" fails.)"""
    rec = _records(store)["sequential_input_shape:keras:tf2.15->keras3.15-numpy:default"]
    assert rec.outcome is Outcome.LOAD_ERROR
    assert rec.error and "batch_input_shape" in rec.error.message
    diag = diagnose.diagnose(rec)
    assert diag is not None and diag.category == "keras3_batch_input_shape"


def test_keras36_routes_a_loss_dict_by_sorted_key(store: Path) -> None:
    """Keras 3.6 (tf2.18) pairs ``loss={"score": ..., "label": ...}`` with list outputs in
    sorted key order: the sparse cross-entropy gets the regression targets and fit fails.
    Keras 3.15 routes by name (the same scenario trains in keras3.15-jax)."""
    recs = _records(store)
    rec = recs["multi_output_losses:keras:tf2.18"]
    assert rec.outcome is Outcome.SAVE_ERROR and rec.phase == "build"
    diag = diagnose.diagnose(rec)
    assert diag is not None and diag.category == "loss_dict_misrouted"
    assert recs["multi_output_losses:keras:keras3.15-jax->keras3.15-jax:default"].outcome is Outcome.OK


# ---------------------------------------------------------------- issue 25 item 2
# Two breaks users reported, each with its benign twin, in light stacks only: Keras 2.15
# (tf2.15), Keras 3.3.3 and 3.15.1 on the NumPy backend. The Keras 3.4.1 failure of
# nested_sequential (its own files too) needs tf2.17 and was observed in a matrix run of
# tf2.15, keras3.3-numpy, keras3.5-jax, keras3.15-jax, tf2.17, tf2.18, tf2.21, tf2.21-tfkeras.
ISSUE25_STACKS = "tf2.15,keras3.3-numpy,keras3.15-numpy"
ISSUE25_SCENARIOS = ("gru_time_major", "nested_sequential")
TIME_MAJOR = "Unrecognized keyword arguments passed to GRU: {'time_major': False}"
TWO_INPUTS = 'Layer "dense" expects 1 input(s), but it received 2 input tensors'


@pytest.fixture(scope="module")
def store25(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("real-issue25")
    _runner("matrix", "--stacks", ISSUE25_STACKS, "--scenarios", ",".join(ISSUE25_SCENARIOS),
            "--formats", ",".join(FORMATS), "--no-report", store=path)
    return path


def _ok(rec: Record) -> None:
    assert rec.outcome is Outcome.OK, (rec.cell_id, rec.error, rec.details.get("reason"))
    assert rec.max_abs_diff is not None and rec.max_abs_diff <= 1e-4, rec.cell_id


def _fails(rec: Record, text: str, category: str, phase: str = "load") -> None:
    assert rec.outcome is Outcome.LOAD_ERROR and rec.phase == phase, (rec.cell_id, rec.outcome, rec.phase, rec.error)
    assert rec.error and text in rec.error.message, (rec.cell_id, rec.error)
    diag = diagnose.diagnose(rec)
    assert diag is not None and diag.category == category, (rec.cell_id, diag)


def test_keras2_gru_time_major_refused_by_keras3(store25: Path) -> None:
    """keras-team/keras#20750: a Keras 2 GRU (.h5 and .keras) in Keras 3.15 fails on
    ``time_major``; Keras 3.3 stops earlier (the Orthogonal initializer). Twin: the same files
    load and match in Keras 2.15, and Keras 3 loads its own GRU files. The custom_objects
    remedy (a GRU that drops the key) is verified: it fixes the .h5 file, not the .keras one."""
    recs = _records(store25)
    for fmt in FORMATS:
        _fails(recs[f"gru_time_major:{fmt}:tf2.15->keras3.15-numpy:default"], TIME_MAJOR, "keras3_rnn_time_major")
        old = recs[f"gru_time_major:{fmt}:tf2.15->keras3.3-numpy:default"]
        _fails(old, "Could not interpret initializer identifier", "builtin_renamed")
        _ok(recs[f"gru_time_major:{fmt}:tf2.15->tf2.15:default"])
        for stack in ("keras3.3-numpy", "keras3.15-numpy"):
            _ok(recs[f"gru_time_major:{fmt}:{stack}->{stack}:default"])
    _ok(recs["gru_time_major:h5:tf2.15->keras3.15-numpy:custom_objects"])
    _fails(recs["gru_time_major:keras:tf2.15->keras3.15-numpy:custom_objects"], TIME_MAJOR, "keras3_rnn_time_major")


def test_functional_in_sequential_not_rebuilt_by_newer_keras3(store25: Path) -> None:
    """keras-team/keras#19959: a Sequential holding a Sequential block and a Functional base.
    Keras 3.15 feeds the base's output twice to the next Dense when it reads the file of
    Keras 3.3.3 (.h5 and .keras) or Keras 2.15 (.h5). Twin: Keras 3.3 reads all of them (its
    own and Keras 2's .h5), and each release reads its own file."""
    recs = _records(store25)
    for fmt in FORMATS:
        _fails(recs[f"nested_sequential:{fmt}:keras3.3-numpy->keras3.15-numpy:default"], TWO_INPUTS,
               "functional_in_sequential")
        for stack in ("tf2.15", "keras3.3-numpy", "keras3.15-numpy"):
            _ok(recs[f"nested_sequential:{fmt}:{stack}->{stack}:default"])
    _fails(recs["nested_sequential:h5:tf2.15->keras3.15-numpy:default"], TWO_INPUTS,
           "functional_in_sequential")
    _ok(recs["nested_sequential:h5:tf2.15->keras3.3-numpy:default"])


# Issue 25 item 2, the two opt-in formats: a TF checkpoint of weights + Adam state, and a
# .keras file with model.weights.h5 beside it (Keras 3.4.1 is tf2.17's Keras).
OPT_IN_STACKS = "tf2.15,tf2.17"
OPT_IN_SCENARIOS = ("tf_checkpoint_adam", "keras_weights_beside")
DELETED = "keras.models.load_model('model.keras') deleted model.weights.h5, the weights file beside it"


@pytest.fixture(scope="module")
def store_opt_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("real-opt-in")
    _runner("matrix", "--stacks", OPT_IN_STACKS, "--scenarios", ",".join(OPT_IN_SCENARIOS), "--no-report",
            store=path)
    return path


def test_keras34_deletes_the_weights_file_beside_a_keras_file(store_opt_in: Path) -> None:
    """keras-team/keras#19921: Keras 3.4.1 (tf2.17) loads a .keras file and removes the
    user's model.weights.h5 beside it, for a Keras 2 file and for its own. Twin: Keras 2.15
    loads the same pair (its own) and the weights file, and matches. The store's artifacts
    still hold the file afterwards: the loader worked on its own copy, so no later cell is
    affected, and no load was voided."""
    recs = _records(store_opt_in)
    for saver in ("tf2.15", "tf2.17"):
        _fails(recs[f"keras_weights_beside:keras+weights:{saver}->tf2.17:default"], DELETED,
               "keras_deletes_weights_beside")
    _ok(recs["keras_weights_beside:keras+weights:tf2.15->tf2.15:default"])
    assert not any(r.error and "artifact_changed" in r.error.type for r in recs.values())
    for saver in ("tf2.15", "tf2.17"):
        art = Store(store_opt_in).artifact_dir(saver, "keras_weights_beside", "keras+weights")
        assert (art / "model.weights.h5").is_file() and (art / "model.keras").is_file(), art
    # Only the scenarios that name an opt-in format have its cells, and only in it.
    assert not any(r.format == "tf_checkpoint" and r.scenario == "keras_weights_beside" for r in recs.values())


def test_tf_checkpoint_carries_weights_and_adam_within_keras2_not_across(store_opt_in: Path) -> None:
    """A TF checkpoint written by Keras 2.15 (save_weights) reads back in Keras 2.15 with
    Adam's state (the resumed step matches). Keras 3.4's reader (tf.train.Checkpoint) pairs
    variables of other shapes; Keras 2.15 reads Keras 3.4's checkpoint without an error but
    with the layers' weights not restored: predictions differ, with its own category."""
    recs = _records(store_opt_in)
    own = recs["tf_checkpoint_adam:tf_checkpoint:tf2.15->tf2.15:default"]
    _ok(own)
    assert own.details.get("training") == "resumed", own.details  # Adam's moments and step came back
    _fails(recs["tf_checkpoint_adam:tf_checkpoint:tf2.15->tf2.17:default"],
           "when attempting to restore variable", "tf_checkpoint_keras2_layout")
    _ok(recs["tf_checkpoint_adam:tf_checkpoint:tf2.17->tf2.17:default"])
    half = recs["tf_checkpoint_adam:tf_checkpoint:tf2.17->tf2.15:default"]
    assert half.outcome is Outcome.MISMATCH, (half.outcome, half.error)
    diag = diagnose.diagnose(half)
    assert diag is not None and diag.category == "tf_checkpoint_partial_restore"


@pytest.fixture(scope="module")
def store_signature(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("real-signature")
    _runner("matrix", "--stacks", "tf2.15,tf2.17", "--scenarios", "multi_io", "--formats", "savedmodel,export",
            "--no-report", store=path)
    return path


def test_multi_input_savedmodel_chain_of_remedies_in_keras3(store_signature: Path) -> None:
    """keras-team/keras#20813: Keras 3 (3.4.1) reads a SavedModel through TFSMLayer, whose
    positional call a multi-input signature refuses. A legacy SavedModel: the default load is
    refused, the tfsm remedy gets further and fails so, and the next remedy round (tfsm +
    signature: the serving signature called with named inputs) loads and matches. An export:
    signature fixes it in one step. Twin: Keras 2.15 loads both."""
    recs = _records(store_signature)
    cell = "multi_io:{fmt}:tf2.15->{loader}:{variant}"
    refused = recs[cell.format(fmt="savedmodel", loader="tf2.17", variant="default")]
    assert refused.outcome is Outcome.LOAD_ERROR, refused.error
    _fails(recs[cell.format(fmt="savedmodel", loader="tf2.17", variant="tfsm")],
           "too many positional arguments", "tfsm_positional_inputs", phase="predict")
    _ok(recs[cell.format(fmt="savedmodel", loader="tf2.17", variant="tfsm+signature")])
    _fails(recs[cell.format(fmt="export", loader="tf2.17", variant="default")],
           "too many positional arguments", "tfsm_positional_inputs", phase="predict")
    _ok(recs[cell.format(fmt="export", loader="tf2.17", variant="signature")])
    for fmt in ("savedmodel", "export"):
        _ok(recs[cell.format(fmt=fmt, loader="tf2.15", variant="default")])
