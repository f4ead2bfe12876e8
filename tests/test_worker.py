"""The REAL worker script (runner/_worker/worker.py) driven end to end with a FAKE framework.

Every test here spawns ``python -I worker.py`` under ``$COMPAT_WORKER_PYTHON`` (default:
this interpreter) through ``execute.run_cells`` / ``execute.probe``; the fake keras and
tensorflow packages (tests/fakes) are put on the worker's path by the request's
``extra_sys_path``, and misbehave on demand through ``COMPAT_FAKE_BEHAVIOR``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    FAKE_SCENARIOS,
    FAKES,
    REAL_SCENARIOS,
    WORKER_PYTHON,
    FakeStack,
    by_id,
    live_pids_mentioning,
)

from runner import execute, judge, scenario_catalog
from runner._worker import worker as w

KERAS3 = {"version": "3.6.0", "tf_version": "2.18.0"}
UNKNOWN_LAYER_PREFIX = (
    "Unknown layer: 'compat_scenarios>ScaleShift'. Please ensure you are using a "
    "`keras.utils.custom_object_scope`"
)
KERAS3_FORMAT_MESSAGE = (
    "Keras 3 only supports V3 `.keras` files and legacy H5 format files (`.h5` extension)."
)


@pytest.fixture(scope="session")
def worker_version() -> str:
    out = subprocess.run([WORKER_PYTHON, "-c", "import platform; print(platform.python_version())"],
                         check=True, capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def _spawn_with_fakes(argv: Sequence[str], log_path: Path,
                      env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """probe() has no extra_sys_path: put the fakes into its request before starting it."""
    request_path = Path(argv[-1]) / w.REQUEST_FILE
    request = json.loads(request_path.read_text())
    request["extra_sys_path"] = [str(FAKES)]
    request_path.write_text(json.dumps(request))
    with log_path.open("ab") as log:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)


def _events(ctl: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ctl / w.EVENTS_FILE).read_text().splitlines()]


def _leftovers(art: str) -> list[str]:
    """Entries next to an artifact dir that belong to it (temp dirs, half artifacts)."""
    path = Path(art)
    if not path.parent.exists():
        return []
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "."))


def _outcomes(results: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {r["cell_id"]: r["outcome"] for r in results}


# ----------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("fmt", "written_as", "model_file"), [
    ("h5", "h5", "model.h5"),
    ("keras", "keras_v3", "model.keras"),
    ("savedmodel", "savedmodel", "savedmodel"),
])
def test_save_then_load_round_trip(fake: FakeStack, worker_version: str, fmt: str,
                                   written_as: str, model_file: str) -> None:
    save = fake.save_cell("mlp-rt", "mlp", fmt)
    [res] = fake.run("save", [save])
    assert res["cell_id"] == save["cell_id"]
    assert (res["outcome"], res["phase"], res["error"]) == ("ok", "save", None)
    assert res["details"] == {"written_as": written_as, "model_file": model_file, "first_in_worker": True}
    assert res["warnings"] == []
    assert res["duration_s"] >= 0
    env = res["env"]
    assert env["python"] == worker_version
    assert (env["keras"], env["tensorflow"], env["keras_api"], env["backend"]) == (
        "2.15.0", "2.15.0", "keras", "tensorflow")

    art = Path(save["artifact_dir"])
    assert sorted(p.name for p in art.iterdir()) == sorted(
        [model_file, w.REFERENCE_FILE, w.SAVE_INFO_FILE])
    assert _leftovers(save["artifact_dir"]) == []
    info = json.loads((art / w.SAVE_INFO_FILE).read_text())
    assert info["scenario"] == "mlp" and info["format"] == fmt
    assert (info["written_as"], info["model_file"]) == (written_as, model_file)
    assert (info["n_inputs"], info["n_outputs"], info["output_shapes"]) == (1, 1, [[6, 2]])
    assert info["env"]["python"] == worker_version
    with np.load(art / w.REFERENCE_FILE) as ref:
        assert sorted(ref.files) == ["x0", "y0"]
        assert ref["x0"].shape == (6, 4) and ref["y0"].shape == (6, 2)
        assert np.isfinite(ref["y0"]).all() and np.abs(ref["y0"]).max() > 0

    [lres] = fake.run("load", [fake.load_cell(save)])
    assert (lres["outcome"], lres["phase"], lres["error"]) == ("ok", "compare", None)
    assert lres["max_abs_diff"] == 0.0
    assert lres["details"] == {"loaded_class": "Sequential", "written_as": written_as, "first_in_worker": True,
                               "prediction": "match"}  # an untrained model: no training verdict
    assert lres["env"]["python"] == worker_version


def test_events_follow_the_protocol(fake: FakeStack) -> None:
    cells = [fake.save_cell("p1"), fake.save_cell("p2", "unbuildable")]
    fake.run("save", cells)
    [ctl] = sorted(fake.last_workdir.iterdir())
    events = _events(ctl)
    assert [e["event"] for e in events] == ["ready", "started", "result", "started", "result",
                                            "done"]
    assert [e.get("cell_id") for e in events[1:5]] == ["save:p1"] * 2 + ["save:p2"] * 2
    ready = events[0]
    assert ready["import_s"] >= 0 and ready["env"]["keras"] == "2.15.0"
    for result in (events[2], events[4]):
        assert set(result) >= {"event", "cell_id", "outcome", "phase", "error", "warnings",
                               "max_abs_diff", "duration_s", "details"}
        assert result["outcome"] in w.WORKER_OUTCOMES
    request = json.loads((ctl / w.REQUEST_FILE).read_text())
    assert request["protocol"] == w.PROTOCOL_VERSION and request["phase"] == "save"
    assert request["parent_pid"] == os.getpid()
    assert request["extra_sys_path"] == [str(FAKES)]


def test_reference_outputs_do_not_depend_on_the_run(fake: FakeStack) -> None:
    """Weights are overwritten with seeded values: two saves give identical references."""
    first, second = fake.save_cell("det-1"), fake.save_cell("det-2")
    fake.save_ok([first])
    fake.save_ok([fake.save_cell("other", "custom"), second])  # different batch position
    with np.load(Path(first["artifact_dir"]) / w.REFERENCE_FILE) as a, \
            np.load(Path(second["artifact_dir"]) / w.REFERENCE_FILE) as b:
        np.testing.assert_array_equal(a["y0"], b["y0"])


def test_real_scenarios_round_trip_under_the_fake(fake: FakeStack) -> None:
    """The repository's scenarios, read by the host like the matrix does, run in the worker."""
    names = ("dense", "functional", "custom_layer")
    scenarios = {s.name: s for s in scenario_catalog.discover_scenarios(REAL_SCENARIOS)}
    assert set(names) <= set(scenarios), sorted(scenarios)
    saves = [fake.save_cell(f"{name}-{fmt}", name, fmt, scenarios=REAL_SCENARIOS)
             for name in names for fmt in ("h5", "keras")]
    fake.save_ok(saves)
    loads = [fake.load_cell(s, variant, atol=scenarios[s["scenario"]].atol,
                            rtol=scenarios[s["scenario"]].rtol)
             for s in saves for variant in scenarios[s["scenario"]].variants]
    results = by_id(fake.run("load", loads))
    assert len(results) == len(loads)
    for cell in loads:
        res = results[cell["cell_id"]]
        if cell["scenario"] == "custom_layer" and cell["variant"] == "default":
            assert res["outcome"] == "load_error", res
            assert res["error"]["message"].startswith(UNKNOWN_LAYER_PREFIX)
        else:
            assert (res["outcome"], res["max_abs_diff"]) == ("ok", 0.0), res
    assert {c["variant"] for c in loads if c["scenario"] == "custom_layer"} == {
        "default", "custom_objects"}


# --------------------------------------------------------------------------- errors


def test_load_error_carries_the_real_keras_message(fake: FakeStack) -> None:
    save = fake.save_cell("custom-h5", "custom", "h5")
    fake.save_ok([save])
    results = by_id(fake.run("load", [fake.load_cell(save, "default"),
                                      fake.load_cell(save, "custom_objects")]))
    res = results["load:custom-h5:default"]
    assert (res["outcome"], res["phase"]) == ("load_error", "load")
    assert res["error"]["type"] == "builtins.ValueError"
    assert res["error"]["message"].startswith(UNKNOWN_LAYER_PREFIX)
    assert "load_model" in res["error"]["traceback"]
    assert res["error"]["traceback"].rstrip().splitlines()[-1].startswith("ValueError: Unknown layer")
    assert res["max_abs_diff"] is None
    ok = results["load:custom-h5:custom_objects"]
    assert (ok["outcome"], ok["max_abs_diff"], ok["details"]["loaded_class"]) == ("ok", 0.0, "Model")


def test_keras3_cannot_load_a_savedmodel(fake: FakeStack) -> None:
    """Saved by a Keras 2 stack, loaded by a Keras 3 one: Keras 3's own refusal is the data."""
    saves = [fake.save_cell("mlp-sm", "mlp", "savedmodel"), fake.save_cell("mlp-h5", "mlp", "h5")]
    fake.save_ok(saves)
    results = by_id(fake.run("load", [fake.load_cell(s) for s in saves], KERAS3))
    res = results["load:mlp-sm:default"]
    assert (res["outcome"], res["phase"]) == ("load_error", "load")
    assert res["error"]["type"] == "builtins.ValueError"
    model_path = os.path.join(saves[0]["artifact_dir"], "savedmodel")
    assert res["error"]["message"].startswith(f"File format not supported: filepath={model_path}. ")
    assert KERAS3_FORMAT_MESSAGE in res["error"]["message"]
    assert res["env"]["keras"] == "3.6.0"
    assert results["load:mlp-h5:default"]["outcome"] == "ok"


def test_knob_raises_the_format_message_for_one_cell_only(fake: FakeStack) -> None:
    saves = [fake.save_cell("fmt-a"), fake.save_cell("fmt-b")]
    fake.save_ok(saves)
    results = by_id(fake.run("load", [fake.load_cell(s) for s in saves],
                             {"load": {"match": "/fmt-b/", "action": "raise_format"}}))
    assert results["load:fmt-a:default"]["outcome"] == "ok"
    err = results["load:fmt-b:default"]["error"]
    assert results["load:fmt-b:default"]["outcome"] == "load_error"
    assert err["type"] == "builtins.ValueError"
    assert err["message"].startswith("File format not supported: filepath=")
    assert "fmt-b/model.h5" in err["message"] and KERAS3_FORMAT_MESSAGE in err["message"]


def test_error_messages_are_truncated(fake: FakeStack) -> None:
    save = fake.save_cell("long")
    fake.save_ok([save])
    [res] = fake.run("load", [fake.load_cell(save)], {"load": {"action": "raise", "arg": "x" * 5000}})
    assert res["error"]["type"] == "builtins.RuntimeError"
    assert len(res["error"]["message"]) <= w.MESSAGE_LIMIT
    assert res["error"]["message"].endswith("[truncated]")


@pytest.mark.parametrize(("command", "behavior", "phase"), [
    ("save", {"build": "raise"}, "build"),
    ("save", {"predict": "raise"}, "predict"),
    ("save", {"save": "raise"}, "save"),
    ("load", {"load": "raise"}, "load"),
    # only a loaded model's predict context holds the file it came from
    ("load", {"predict": {"match": "model.h5", "action": "raise"}}, "predict"),
])
def test_failure_phase_is_attributed(fake: FakeStack, command: str, behavior: dict[str, Any],
                                     phase: str) -> None:
    save = fake.save_cell("phase")
    if command == "load":
        fake.save_ok([save])
    cell = save if command == "save" else fake.load_cell(save)
    [res] = fake.run(command, [cell], behavior)
    assert res["outcome"] == f"{command}_error"
    assert res["phase"] == phase
    assert res["error"]["type"] == "builtins.RuntimeError"
    assert res["error"]["message"] == "fake framework failure"
    if command == "save":
        assert not Path(save["artifact_dir"]).exists()


@pytest.mark.parametrize(("fmt", "behavior", "outcome"), [
    ("savedmodel", KERAS3, "not_applicable"),  # NotApplicable raised inside _save_model
    ("h5", {"save": "raise"}, "save_error"),
])
def test_failed_save_leaves_no_temp_dir(fake: FakeStack, fmt: str, behavior: dict[str, Any],
                                        outcome: str) -> None:
    """The worker writes into ``<artifact_dir>.tmp-<pid>`` and renames; a save that fails
    (or is not applicable) after the temp dir exists must not leave it in the store."""
    cell = fake.save_cell("failed", "mlp", fmt)
    [res] = fake.run("save", [cell], behavior)
    assert res["outcome"] == outcome
    assert not Path(cell["artifact_dir"]).exists()
    assert _leftovers(cell["artifact_dir"]) == []


# --------------------------------------------------------------------------- mismatch


def test_mismatch_reports_max_abs_diff(fake: FakeStack) -> None:
    save = fake.save_cell("mm")
    fake.save_ok([save])
    [res] = fake.run("load", [fake.load_cell(save)], {"load": {"action": "perturb", "arg": 0.25}})
    assert (res["outcome"], res["phase"], res["error"]) == ("mismatch", "compare", None)
    assert res["max_abs_diff"] == pytest.approx(0.25, abs=1e-6)
    assert res["details"]["loaded_class"] == "Sequential"


def test_tolerances_come_from_the_cell(fake: FakeStack) -> None:
    save = fake.save_cell("tol")
    fake.save_ok([save])
    loose = fake.load_cell(save, suffix="-loose", atol=1e-2, rtol=0.0)
    tight = fake.load_cell(save, suffix="-tight", atol=1e-4, rtol=1e-4)
    results = by_id(fake.run("load", [loose, tight], {"load": {"action": "perturb", "arg": 1e-3}}))
    assert results[loose["cell_id"]]["outcome"] == "ok"
    assert results[tight["cell_id"]]["outcome"] == "mismatch"
    for res in results.values():
        assert res["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)


# ------------------------------------------------------- a trained model: two facts

TRAINED = FAKES / "trained"


def _trained(fake: FakeStack, tag: str, fmt: str = "h5") -> dict[str, Any]:
    save = fake.save_cell(tag, "trained_mlp", fmt, scenarios=TRAINED)
    fake.save_ok([save])
    return save


def test_a_trained_model_that_resumes_is_ok_with_both_facts(fake: FakeStack) -> None:
    save = _trained(fake, "tr-ok")
    with np.load(Path(save["artifact_dir"]) / w.REFERENCE_FILE) as ref:
        assert {"tx0", "ty0", "z0"} <= set(ref.files)
        assert not np.allclose(ref["z0"], ref["y0"])  # the extra step moved the saver's model
    [res] = fake.run("load", [fake.load_cell(save)])
    assert (res["outcome"], res["phase"], res["error"]) == ("ok", "compare", None), res
    assert res["max_abs_diff"] == 0.0
    d = res["details"]
    assert (d["prediction"], d["training"], d["training_diff"]) == ("match", "resumed", 0.0)
    assert "training_reason" not in d and "reason" not in d


@pytest.mark.parametrize(("behavior", "verdict", "why", "has_diff"), [
    ({"load": "drop_optimizer"}, "state_lost", "step count is 1, expected 2", True),
    ({"load": "no_optimizer"}, "state_lost", "has no optimizer", False),
    ({"load": "skew_optimizer"}, "diverges", "although the step count was restored (2)", True),
    ({"fit": {"action": "raise", "arg": "cannot apply the gradients"}}, "cannot_resume",
     "training could not resume: RuntimeError: cannot apply the gradients", False),
])
def test_a_training_only_failure_keeps_the_prediction_fact(fake: FakeStack, behavior: dict[str, Any],
                                                           verdict: str, why: str, has_diff: bool) -> None:
    """Predictions match, the resumed step does not: outcome training_mismatch, the
    prediction's max |diff| stays the cell's (it was overwritten by the step's before)."""
    save = _trained(fake, "tr-" + verdict)
    [res] = fake.run("load", [fake.load_cell(save)], behavior)
    assert res["outcome"] == "training_mismatch", res
    assert res["error"] is None and res["max_abs_diff"] == 0.0
    d = res["details"]
    assert (d["prediction"], d["training"]) == ("match", verdict)
    assert why in d["training_reason"] and d["reason"] == d["training_reason"]
    assert (d["training_diff"] is not None and d["training_diff"] > 1e-6) if has_diff else d["training_diff"] is None


def test_predictions_that_differ_leave_training_unchecked(fake: FakeStack) -> None:
    save = _trained(fake, "tr-mm")
    [res] = fake.run("load", [fake.load_cell(save)], {"load": {"action": "perturb", "arg": 0.25}})
    assert res["outcome"] == "mismatch"
    assert res["max_abs_diff"] == pytest.approx(0.25, abs=1e-6)
    d = res["details"]
    assert (d["prediction"], d["training"]) == ("differ", "not_checked")
    assert "predictions differ" in d["training_reason"] and "training_diff" not in d


def test_an_inference_only_variant_says_training_was_not_checked(fake: FakeStack) -> None:
    save = _trained(fake, "tr-cf")
    [res] = fake.run("load", [fake.load_cell(save, "compile_false")], {"load": "drop_optimizer"})
    assert (res["outcome"], res["max_abs_diff"]) == ("ok", 0.0)
    d = res["details"]
    assert (d["prediction"], d["training"]) == ("match", "not_checked")
    assert d["training_reason"].startswith("inference only (compile_false)")


def test_a_hang_in_the_training_step_is_a_timeout_that_keeps_the_prediction(fake: FakeStack) -> None:
    save = _trained(fake, "tr-hang")
    plain = fake.save_cell("plain")
    fake.save_ok([plain])
    cells = [fake.load_cell(plain), {**fake.load_cell(save), "timeout_s": 1.0}]
    results = by_id(fake.run("load", cells, {"fit": {"action": "hang", "match": "tr-hang"}}))
    res = results[cells[1]["cell_id"]]
    assert (res["outcome"], res["phase"]) == ("timeout", "train"), res
    assert res["max_abs_diff"] == 0.0
    assert res["details"]["prediction"] == "match" and "training" not in res["details"]


# ---------------------------------------------------------------------- not applicable


def test_build_not_implemented_is_not_applicable(fake: FakeStack) -> None:
    save = fake.save_cell("nope", "unbuildable")
    [res] = fake.run("save", [save])
    assert (res["outcome"], res["phase"]) == ("not_applicable", "build")
    assert res["error"]["type"].endswith(".NotApplicable")
    assert res["error"]["message"] == "needs keras.layers.Imaginary, which this stack lacks"
    assert not Path(save["artifact_dir"]).exists()


def test_not_implemented_raised_by_the_framework_is_a_save_error(fake: FakeStack) -> None:
    """Only the scenario's own NotImplementedError means "cannot exist here": the same
    exception from inside Keras/TF during build is a failure a user meets (TF 1.15's
    LSTM under numpy >= 1.20 raises it)."""
    save = fake.save_cell("lib", "mlp")
    [res] = fake.run("save", [save], {"build": {"action": "not_implemented",
                                                "arg": "Cannot convert a symbolic Tensor"}})
    assert (res["outcome"], res["phase"]) == ("save_error", "build")
    assert res["error"]["type"] == "builtins.NotImplementedError"


def test_format_outside_scenario_formats_is_not_applicable(fake: FakeStack) -> None:
    cells = [fake.save_cell("h5only-keras", "h5_only", "keras"),
             fake.save_cell("h5only-h5", "h5_only", "h5")]
    results = by_id(fake.run("save", cells))
    res = results["save:h5only-keras"]
    assert (res["outcome"], res["phase"]) == ("not_applicable", "build")
    assert "does not support format keras" in res["error"]["message"]
    assert not Path(cells[0]["artifact_dir"]).exists()
    assert results["save:h5only-h5"]["outcome"] == "ok"


def test_keras3_savedmodel_save_is_not_applicable_and_h5_needs_no_save_format(
        fake: FakeStack) -> None:
    """Under Keras 3 the worker must not pass save_format (the fake refuses it, as Keras 3)."""
    cells = [fake.save_cell(f"k3-{fmt}", "mlp", fmt) for fmt in ("h5", "savedmodel", "keras")]
    results = by_id(fake.run("save", cells, KERAS3))
    assert _outcomes(results.values()) == {"save:k3-h5": "ok", "save:k3-savedmodel": "not_applicable",
                                           "save:k3-keras": "ok"}
    assert "legacy TF SavedModel" in results["save:k3-savedmodel"]["error"]["message"]
    assert results["save:k3-keras"]["details"]["written_as"] == "keras_v3"


def test_a_format_the_stack_cannot_write_is_not_applicable_before_building(fake: FakeStack) -> None:
    """trained_adam x savedmodel on Keras 3.0 was a save_error (training failed first) where
    the format cannot exist; the format is checked before the scenario is built or trained."""
    cells = [fake.save_cell("k3-broken-savedmodel", "broken", "savedmodel"),
             fake.save_cell("k3-broken-h5", "broken", "h5")]
    results = by_id(fake.run("save", cells, KERAS3))
    assert results["save:k3-broken-savedmodel"]["outcome"] == "not_applicable"
    assert "legacy TF SavedModel" in results["save:k3-broken-savedmodel"]["error"]["message"]
    assert results["save:k3-broken-h5"]["outcome"] == "save_error"  # the scenario's own bug


def test_keras_name_written_as_hdf5_is_noted(fake: FakeStack) -> None:
    save = fake.save_cell("old-keras", "mlp", "keras")
    [res] = fake.run("save", [save], {"keras_as_h5": True})
    assert res["outcome"] == "ok"
    assert res["details"]["written_as"] == "h5"
    assert "not the Keras v3 zip format" in res["details"]["note"]
    [lres] = fake.run("load", [fake.load_cell(save)])
    assert (lres["outcome"], lres["details"]["written_as"]) == ("ok", "h5")


# ------------------------------------------------------------------ warnings, stdout


def test_warnings_are_captured_per_cell(fake: FakeStack) -> None:
    hdf5_warning = ("You are saving your model as an HDF5 file via `model.save()`. This file "
                    "format is considered legacy.")
    cells = [fake.save_cell("noisy", "noisy"), fake.save_cell("quiet"),
             fake.save_cell("framework-warns")]
    behavior = {"save": [{"match": "/framework-warns.", "action": "warn", "arg": hdf5_warning}] * 2}
    results = by_id(fake.run("save", cells, behavior))
    assert _outcomes(results.values()) == dict.fromkeys(results, "ok")
    assert results["save:noisy"]["warnings"] == [
        {"category": "UserWarning",
         "message": "`build()` was called on a layer that already has weights"},
        {"category": "DeprecationWarning", "message": "fake: this API is deprecated"},
    ]
    assert results["save:quiet"]["warnings"] == []
    assert results["save:framework-warns"]["warnings"] == [
        {"category": "UserWarning", "message": hdf5_warning}]


def test_stdout_garbage_does_not_change_results(fake: FakeStack) -> None:
    garbage = dict.fromkeys(("import", "build", "predict", "save", "load"), "garbage")
    saves = [fake.save_cell("g-h5", "mlp", "h5"), fake.save_cell("g-noisy", "noisy", "keras"),
             fake.save_cell("g-custom", "custom", "savedmodel")]
    clean = _outcomes(fake.run("save", saves))
    dirty = fake.run("save", saves, garbage)
    assert _outcomes(dirty) == clean == dict.fromkeys(clean, "ok")
    loads = [fake.load_cell(s, v) for s in saves for v in ("default", "custom_objects")]
    clean_loads = by_id(fake.run("load", loads))
    dirty_loads = by_id(fake.run("load", loads, garbage))
    for cid, res in clean_loads.items():
        assert (dirty_loads[cid]["outcome"], dirty_loads[cid]["max_abs_diff"]) == (
            res["outcome"], res["max_abs_diff"])
    assert len(fake.batches()) == 1
    [ctl] = sorted(fake.last_workdir.iterdir())
    log = (ctl / w.LOG_FILE).read_text(errors="replace")
    assert '"cell_id": "*"' in log and "not json at all" in log
    events = _events(ctl)  # every line parses, none of the garbage got in
    assert all(e.get("cell_id") != "*" for e in events)


# ---------------------------------------------------------------- crashes and hangs


def test_sigsegv_in_one_cell_of_four(fake: FakeStack) -> None:
    cells = [fake.save_cell(f"cell-{i}") for i in range(1, 5)]
    results = fake.run("save", cells, {"save": {"match": "/cell-2.", "action": "segv"}})
    assert [r["cell_id"] for r in results] == [c["cell_id"] for c in cells]
    assert _outcomes(results) == {"save:cell-1": "ok", "save:cell-2": "crash",
                                  "save:cell-3": "ok", "save:cell-4": "ok"}
    crash = results[1]
    assert "SIGSEGV" in crash["error"]["message"]
    assert crash["error"]["type"] == "runner.crash"
    assert crash["details"]["returncode"] == -signal.SIGSEGV
    assert crash["details"]["exit"] == "killed by signal SIGSEGV"
    assert "Segmentation fault" in crash["details"]["log_tail"]  # faulthandler's dump
    assert crash["env"]["keras"] == "2.15.0"
    # the cells after the crash ran in a fresh worker
    assert fake.batches() == [[c["cell_id"] for c in cells], ["save:cell-3", "save:cell-4"]]
    assert not Path(cells[1]["artifact_dir"]).exists()  # no half artifact
    for i in (0, 2, 3):
        assert (Path(cells[i]["artifact_dir"]) / w.SAVE_INFO_FILE).exists()


def test_sigsegv_while_loading_blames_that_cell(fake: FakeStack) -> None:
    saves = [fake.save_cell(f"ld-{i}") for i in range(1, 4)]
    fake.save_ok(saves)
    loads = [fake.load_cell(s) for s in saves]
    results = fake.run("load", loads, {"load": {"match": "/ld-1/", "action": "segv"}})
    assert [r["outcome"] for r in results] == ["crash", "ok", "ok"]
    assert fake.batches() == [[c["cell_id"] for c in loads], [c["cell_id"] for c in loads[1:]]]


def test_hang_is_interrupted_inside_the_worker_which_goes_on(fake: FakeStack) -> None:
    """A pure-Python hang: the worker's watchdog turns it into a timeout result and the same
    process runs the next cells (no respawn, no second framework import)."""
    cells = [fake.save_cell(f"hang-{i}") for i in range(1, 4)]
    t0 = time.monotonic()
    results = fake.run("save", cells, {"save": {"match": "/hang-2.", "action": "hang"}},
                       cell_timeout=2.0)
    elapsed = time.monotonic() - t0
    assert _outcomes(results) == {"save:hang-1": "ok", "save:hang-2": "timeout",
                                  "save:hang-3": "ok"}
    timeout = results[1]
    assert timeout["error"]["type"] == "runner.timeout"
    assert "2 s limit; interrupted inside the worker" in timeout["error"]["message"]
    assert timeout["duration_s"] >= 2.0
    assert timeout["details"]["interrupted_in_worker"] is True
    assert "returncode" not in timeout["details"]
    assert "after_interrupt" not in results[0]["details"]
    assert results[2]["details"]["after_interrupt"] == 1  # told apart from a fresh worker's
    assert fake.batches() == [[c["cell_id"] for c in cells]]
    assert elapsed < 15
    assert live_pids_mentioning(str(fake.last_workdir)) == []


def test_hang_deaf_to_the_watchdog_kills_the_group_and_the_rest_continue(fake: FakeStack) -> None:
    """Stuck where the watchdog cannot reach (C code): the host kills the process group at
    limit + grace and a fresh worker goes on."""
    cells = [fake.save_cell(f"hangc-{i}") for i in range(1, 4)]
    t0 = time.monotonic()
    results = fake.run("save", cells, {"save": {"match": "/hangc-2.", "action": "hang_c"}},
                       cell_timeout=2.0)
    elapsed = time.monotonic() - t0
    assert _outcomes(results) == {"save:hangc-1": "ok", "save:hangc-2": "timeout",
                                  "save:hangc-3": "ok"}
    timeout = results[1]
    assert timeout["error"]["type"] == "runner.timeout"
    assert "2 s limit and did not answer the worker's watchdog" in timeout["error"]["message"]
    assert timeout["duration_s"] >= 4.0  # limit + grace (the grace is the limit when shorter)
    assert timeout["details"]["returncode"] == -signal.SIGKILL
    assert fake.batches() == [[c["cell_id"] for c in cells], ["save:hangc-3"]]
    assert elapsed < 25
    assert live_pids_mentioning(str(fake.last_workdir)) == []


def test_exit0_mid_cell(fake: FakeStack) -> None:
    cells = [fake.save_cell(f"ex-{i}") for i in range(1, 4)]
    results = fake.run("save", cells, {"save": {"match": "/ex-2.", "action": "exit0"}})
    assert _outcomes(results) == {"save:ex-1": "ok", "save:ex-2": "crash", "save:ex-3": "ok"}
    assert results[1]["details"]["returncode"] == 0
    assert "exit code 0" in results[1]["error"]["message"]
    assert fake.batches() == [[c["cell_id"] for c in cells], ["save:ex-3"]]


def test_exit0_during_import(fake: FakeStack) -> None:
    cells = [fake.save_cell(f"imp-{i}") for i in range(1, 4)]
    results = fake.run("save", cells, {"import": "exit0"})
    assert [r["outcome"] for r in results] == ["protocol_error"] * 3
    assert {r["phase"] for r in results} == {"import"}
    assert len(fake.batches()) == 1


# ------------------------------------------------------------------------- import


def test_import_failure_is_data(fake: FakeStack) -> None:
    behavior = {"import": {"action": "raise_import", "arg": "libcudart.so.11.0: cannot open"}}
    pr = execute.probe(WORKER_PYTHON, workdir=fake.tmp / "probe", env=fake.env(behavior),
                       timeout=60, spawn=_spawn_with_fakes)
    assert pr.ok is False
    assert pr.error is not None and pr.error["type"] == "builtins.ImportError"
    assert pr.error["message"] == "libcudart.so.11.0: cannot open"

    saves = [fake.save_cell("if-1"), fake.save_cell("if-2")]
    results = fake.run("save", saves, behavior)
    assert [(r["outcome"], r["phase"]) for r in results] == [("save_error", "import")] * 2
    assert {r["error"]["type"] for r in results} == {"builtins.ImportError"}
    assert len(fake.batches()) == 1
    fake.save_ok(saves)
    loads = [fake.load_cell(s) for s in saves]
    results = fake.run("load", loads, behavior)
    assert [(r["outcome"], r["phase"]) for r in results] == [("load_error", "import")] * 2
    assert results[0]["error"]["message"] == "libcudart.so.11.0: cannot open"


def test_sigsegv_during_import(fake: FakeStack) -> None:
    pr = execute.probe(WORKER_PYTHON, workdir=fake.tmp / "probe", env=fake.env({"import": "segv"}),
                       timeout=60, spawn=_spawn_with_fakes)
    assert pr.ok is False and pr.error is not None
    assert pr.error["type"] == "runner.crash" and "SIGSEGV" in pr.error["message"]
    results = fake.run("save", [fake.save_cell("is-1"), fake.save_cell("is-2")], {"import": "segv"})
    assert [(r["outcome"], r["phase"]) for r in results] == [("crash", "import")] * 2
    assert "SIGSEGV" in results[0]["error"]["message"]
    assert len(fake.batches()) == 1


def test_hang_during_import_times_out(fake: FakeStack) -> None:
    results = fake.run("save", [fake.save_cell("ih-1"), fake.save_cell("ih-2")],
                       {"import": "hang"}, import_timeout=1.0)
    assert [(r["outcome"], r["phase"]) for r in results] == [("timeout", "import")] * 2
    assert len(fake.batches()) == 1
    assert live_pids_mentioning(str(fake.last_workdir)) == []
    pr = execute.probe(WORKER_PYTHON, workdir=fake.tmp / "probe", env=fake.env({"import": "hang"}),
                       timeout=1.0, spawn=_spawn_with_fakes)
    assert pr.ok is False and pr.error is not None and pr.error["type"] == "runner.timeout"
    assert live_pids_mentioning(str(fake.tmp / "probe")) == []


@pytest.mark.parametrize(("keras_module", "tensorflow"), [("auto", "2.18.0"), ("tf.keras", "2.18.0"),
                                                         ("keras", None)])
def test_probe_reports_the_installed_versions(fake: FakeStack, worker_version: str,
                                              keras_module: str, tensorflow: str | None) -> None:
    pr = execute.probe(WORKER_PYTHON, workdir=fake.tmp / "probe",
                       env=fake.env(KERAS3, {"KERAS_BACKEND": "jax"}), keras_module=keras_module,
                       timeout=60, spawn=_spawn_with_fakes)
    assert pr.ok is True and pr.error is None
    assert pr.import_s is not None and pr.import_s >= 0
    env = pr.env
    assert (env["python"], env["keras"], env["tensorflow"]) == (worker_version, "3.6.0", tensorflow)
    assert (env["keras_api"], env["backend"]) == ("keras", "jax")
    assert env["env_vars"] == {"KERAS_BACKEND": "jax"}
    if tuple(int(p) for p in worker_version.split(".")[:2]) >= (3, 8):  # importlib.metadata
        assert env["dists"]["numpy"] == env["numpy"]
    else:
        assert env["dists"] == {}


def test_host_keras_backend_does_not_leak_into_the_worker(fake: FakeStack,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    [res] = fake.run("save", [fake.save_cell("leak")], KERAS3)
    assert res["outcome"] == "ok"
    assert res["env"]["env_vars"] == {}
    assert res["env"]["backend"] == "tensorflow"


# ------------------------------------------------------------------- command line


def _run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WORKER_PYTHON, "-I", str(execute.WORKER_PATH), *args],
                          check=False, capture_output=True, text=True, timeout=timeout,
                          env=execute.child_env({}))


def _write_request(ctl: Path, **overrides: Any) -> None:
    ctl.mkdir(parents=True, exist_ok=True)
    request = {"protocol": w.PROTOCOL_VERSION, "phase": "save", "keras_module": "auto",
               "parent_pid": None, "extra_sys_path": [str(FAKES)], "seed": 1234, "cells": []}
    request.update(overrides)
    (ctl / w.REQUEST_FILE).write_text(json.dumps(request))


@pytest.mark.parametrize("case", ["no-args", "unknown-command", "missing-dir-arg", "extra-arg",
                                  "no-request", "bad-json", "wrong-protocol", "wrong-phase"])
def test_bad_command_line_exits_2(tmp_path: Path, case: str) -> None:
    ctl = tmp_path / "ctl"
    _write_request(ctl)
    args: tuple[str, ...] = ("save", str(ctl))
    if case == "no-args":
        args = ()
    elif case == "unknown-command":
        args = ("train", str(ctl))
    elif case == "missing-dir-arg":
        args = ("save",)
    elif case == "extra-arg":
        args = ("save", str(ctl), "more")
    elif case == "no-request":
        args = ("save", str(tmp_path / "nowhere"))
    elif case == "bad-json":
        (ctl / w.REQUEST_FILE).write_text("{not json")
    elif case == "wrong-protocol":
        _write_request(ctl, protocol=w.PROTOCOL_VERSION + 1)
    elif case == "wrong-phase":
        _write_request(ctl, phase="load")
    proc = _run_worker(*args)
    assert proc.returncode == w.EXIT_BAD_REQUEST, proc.stderr
    assert "usage: worker.py <probe|save|load> <control_dir>" in proc.stderr
    assert not (ctl / w.EVENTS_FILE).exists()


def test_good_command_line_exits_0(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    _write_request(ctl, phase="probe")
    proc = _run_worker("probe", str(ctl))
    assert proc.returncode == w.EXIT_OK, proc.stderr
    assert [e["event"] for e in _events(ctl)] == ["ready", "done"]


# --------------------------------------------------------------- batch == isolated


def _comparable(res: Mapping[str, Any]) -> tuple[Any, ...]:
    err = res["error"] or {}
    diff = res["max_abs_diff"]
    return (res["outcome"], res["phase"], err.get("type"), err.get("message"),
            None if diff is None else round(diff, 6), res["details"].get("loaded_class"))


def test_batched_and_isolated_runs_agree(fake: FakeStack) -> None:
    saves = [fake.save_cell("iso-custom", "custom", "h5"),
             fake.save_cell("iso-mlp", "mlp", "keras"),
             fake.save_cell("iso-perturbed", "mlp", "h5"),
             fake.save_cell("iso-segv", "mlp", "savedmodel"),
             fake.save_cell("iso-custom-sm", "custom", "savedmodel")]
    fake.save_ok(saves)
    c_custom, c_mlp, c_pert, c_segv, c_custom_sm = saves
    loads = [
        fake.load_cell(c_custom, "custom_objects"),  # registers ScaleShift ...
        fake.load_cell(c_custom, "default"),  # ... which must be gone again here
        fake.load_cell(c_pert),
        fake.load_cell(c_segv),
        fake.load_cell(c_mlp),
        fake.load_cell(c_custom_sm, "custom_objects"),
        fake.load_cell(c_custom_sm, "default"),
    ]
    behavior = {"load": [{"match": "/iso-perturbed/", "action": "perturb", "arg": 0.5},
                         {"match": "/iso-segv/", "action": "segv"}]}
    batched = by_id(fake.run("load", loads, behavior))
    assert len(fake.batches()) == 2  # one restart after the crash
    isolated = by_id(fake.run("load", loads, behavior, isolate=True))
    assert fake.batches() == [[c["cell_id"]] for c in loads]
    assert list(batched) == list(isolated) == [c["cell_id"] for c in loads]
    for cid in batched:
        assert _comparable(batched[cid]) == _comparable(isolated[cid]), cid
    assert _outcomes(batched.values()) == {
        "load:iso-custom:custom_objects": "ok",
        "load:iso-custom:default": "load_error",
        "load:iso-perturbed:default": "mismatch",
        "load:iso-segv:default": "crash",
        "load:iso-mlp:default": "ok",
        "load:iso-custom-sm:custom_objects": "ok",
        "load:iso-custom-sm:default": "load_error",
    }


def test_registry_is_restored_between_save_cells(fake: FakeStack) -> None:
    """Each save cell re-imports the scenario, which registers ScaleShift again; the fake
    (like tf.keras <= 2.12) refuses a second registration unless the worker restored the
    registry after the previous cell."""
    cells = [fake.save_cell(f"reg-{fmt}", "custom", fmt) for fmt in ("h5", "keras", "savedmodel")]
    results = fake.run("save", cells)
    assert [r["outcome"] for r in results] == ["ok"] * 3, [r["error"] for r in results]
    assert len(fake.batches()) == 1


def test_fake_registry_would_leak_without_the_restore(fake: FakeStack) -> None:
    """Control for the two tests above: in one process without the worker's restore, a
    registered class *does* make a later default load succeed, and registers only once."""
    save = fake.save_cell("control", "custom", "h5")
    fake.save_ok([save])
    script = "\n".join([
        "import importlib.util, sys",
        "sys.path.insert(0, sys.argv[1])",
        "import keras",
        "spec = importlib.util.spec_from_file_location('s', sys.argv[2])",
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)",
        "try:",
        "    keras.models.load_model(sys.argv[3])",
        "except ValueError as exc:",
        "    print('before:', str(exc)[:14])",
        "mod.custom_objects(keras)",
        "print('after:', type(keras.models.load_model(sys.argv[3])).__name__)",
        "try:",
        "    mod.custom_objects(keras)",
        "except ValueError as exc:",
        "    print('twice:', exc)",
    ])
    proc = subprocess.run([WORKER_PYTHON, "-I", "-c", script, str(FAKES),
                           str(FAKE_SCENARIOS / "custom.py"),
                           os.path.join(save["artifact_dir"], "model.h5")],
                          check=False, capture_output=True, text=True, timeout=60,
                          env=execute.child_env({}))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "before: Unknown layer:"
    assert lines[1] == "after: Model"
    assert lines[2].startswith("twice: compat_scenarios>ScaleShift has already been registered")


# ------------------------------------------------------------------------- orphans


def test_worker_whose_parent_is_not_the_requester_exits_3(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    _write_request(ctl, parent_pid=1 if os.getpid() != 1 else 2)
    proc = _run_worker("save", str(ctl))
    assert proc.returncode == w.EXIT_ORPHANED, proc.stderr
    assert not (ctl / w.EVENTS_FILE).exists()


def test_worker_without_a_parent_pid_exits_3_once_the_heartbeat_is_stale(fake: FakeStack, tmp_path: Path) -> None:
    """Inside a container the worker cannot see the host's pid: the host touches a heartbeat
    file at every poll, and the worker exits between cells once it is stale (a killed
    runner leaves no container working for long). No heartbeat file: an older host, go on."""
    ctl = tmp_path / "ctl"
    _write_request(ctl, cells=[fake.save_cell("beat")])
    beat = ctl / w.HEARTBEAT_FILE
    beat.touch()
    old = time.time() - w.HEARTBEAT_STALE_S - 5
    os.utime(beat, (old, old))
    proc = _run_worker("save", str(ctl))
    assert proc.returncode == w.EXIT_ORPHANED, proc.stderr
    assert not (ctl / w.EVENTS_FILE).exists()
    beat.touch()  # fresh: the worker runs its cells
    proc = _run_worker("save", str(ctl))
    assert proc.returncode == 0, proc.stderr
    assert '"outcome": "ok"' in (ctl / w.EVENTS_FILE).read_text()


def test_the_supervisor_touches_the_heartbeat(fake: FakeStack) -> None:
    [res] = fake.run("save", [fake.save_cell("beat2")])
    assert res["outcome"] == "ok"
    beats = list(fake.last_workdir.glob(f"w*/{w.HEARTBEAT_FILE}"))
    assert len(beats) == 1 and time.time() - beats[0].stat().st_mtime < 60


_ORPHANER = r"""
import json, os, subprocess, sys, time
python, worker, ctl = sys.argv[1:4]
path = os.path.join(ctl, "request.json")
with open(path) as fh:
    request = json.load(fh)
request["parent_pid"] = os.getpid()
with open(path, "w") as fh:
    json.dump(request, fh)
with open(os.path.join(ctl, "log.txt"), "ab") as log:
    proc = subprocess.Popen([python, "-I", worker, "save", ctl], stdout=log, stderr=log,
                            start_new_session=True)
print(proc.pid, flush=True)
deadline = time.time() + 60
while time.time() < deadline:
    try:
        with open(os.path.join(ctl, "events.jsonl")) as fh:
            if '"started"' in fh.read():
                break
    except OSError:
        pass
    time.sleep(0.05)
os._exit(0)  # the worker's parent goes away while it is inside a hanging cell
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_orphaned_worker_exits(fake: FakeStack) -> None:
    ctl = fake.tmp / "ctl"
    _write_request(ctl, cells=[fake.save_cell("orphan")])
    proc = subprocess.run([sys.executable, "-c", _ORPHANER, WORKER_PYTHON,
                           str(execute.WORKER_PATH), str(ctl)],
                          check=False, capture_output=True, text=True, timeout=90,
                          env=fake.env({"save": "hang"}))
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.strip())
    assert '"started"' in (ctl / w.EVENTS_FILE).read_text()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid in live_pids_mentioning(str(ctl)):
            time.sleep(0.05)
        assert pid not in live_pids_mentioning(str(ctl)), "orphaned worker still running"
    finally:
        if pid in live_pids_mentioning(str(ctl)):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------ worker helpers (in-process)


def test_compare_outputs() -> None:
    """The host's comparison (runner/judge.py): the worker observes, it does not compare."""
    ref = [np.array([[1.0, 2.0]], "float32")]
    assert judge.compare_outputs([ref[0].copy()], ref, 1e-6, 1e-6) == ("ok", 0.0, {})
    outcome, diff, _ = judge.compare_outputs([ref[0] + 0.5], ref, 1e-6, 1e-6)
    assert outcome == "mismatch" and math.isclose(diff, 0.5)
    assert judge.compare_outputs([ref[0], ref[0]], ref, 1, 1)[0] == "mismatch"
    outcome, diff, details = judge.compare_outputs([ref[0].T], ref, 1, 1)
    assert (outcome, diff) == ("mismatch", None) and "shape" in details["reason"]
    nan = np.array([[np.nan, 2.0]], "float32")
    assert judge.compare_outputs([nan], ref, 1, 1)[0] == "mismatch"
    assert judge.compare_outputs([nan], [nan.copy()], 1e-6, 1e-6) == ("ok", 0.0, {})
    assert not hasattr(w, "compare_outputs")


def test_the_worker_only_observes_and_the_host_judges(fake: FakeStack) -> None:
    """A load's worker result is "observed" with its predictions, whatever the tolerance;
    the same observation is ok or a mismatch only by the host's judgement."""
    save = fake.save_cell("observe")
    fake.save_ok([save])
    cell = fake.load_cell(save)
    res = by_id(fake.run("load", [cell], {"load": {"action": "perturb", "arg": 1e-3}}, raw=True))[cell["cell_id"]]
    assert res["outcome"] == "observed" and res["max_abs_diff"] is None
    got = judge.decode_arrays(res["details"]["observed"]["outputs"])
    ref = judge.reference_of(save["artifact_dir"])
    assert ref is not None and len(got) == len(ref["outputs"])
    assert float(np.max(np.abs(got[0] - ref["outputs"][0]))) == pytest.approx(1e-3, rel=1e-3)
    loose = judge.judge_load(res, ref, "h5", "default", 1e-2, 0.0)
    tight = judge.judge_load(res, ref, "h5", "default", 1e-4, 1e-4)
    assert (loose["outcome"], tight["outcome"]) == ("ok", "mismatch")
    assert loose["observed"]["worker_outcome"] == "observed" and "observed" not in loose["details"]
    # Judged again later (a new tolerance): the same verdicts from the stored observations.
    again = judge.rejudge(tight["details"], tight["observed"], ref, "h5", "default", 1e-2, 0.0)
    assert again is not None and again["outcome"] == "ok" and again["details"]["prediction"] == "match"


def test_sniff_artifact(tmp_path: Path) -> None:
    (tmp_path / "a.h5").write_bytes(b"\x89HDF\r\n\x1a\n rest")
    (tmp_path / "a.keras").write_bytes(b"PK\x03\x04 rest")
    (tmp_path / "junk").write_bytes(b"junk")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    assert [w.sniff_artifact(str(tmp_path / n)) for n in ("a.h5", "a.keras", "junk", "sm", "dir",
                                                          "missing")] == [
        "h5", "keras_v3", "unknown", "savedmodel", "directory", "missing"]


def test_a_cells_own_limit_applies_except_to_the_first_cell_of_a_process(fake: FakeStack) -> None:
    """``timeout_s`` (the matrix's adaptive load limit) overrides the request's limit; the
    process's first cell gets at least the request's limit (it pays the backend warm-up)."""
    cells = [dict(fake.save_cell(f"own-{i}"), timeout_s=1.0) for i in range(1, 4)]
    results = fake.run("save", cells, {"save": {"match": "/own-", "action": "hang"}}, cell_timeout=3.0)
    assert [r["outcome"] for r in results] == ["timeout"] * 3
    assert results[0]["error"]["message"].startswith("cell exceeded its 3 s limit")
    assert results[0]["details"]["first_in_worker"] is True
    assert [r["error"]["message"][:30] for r in results[1:]] == ["cell exceeded its 1 s limit; i"] * 2
    assert 3.0 <= results[0]["duration_s"] < 4.5 and all(1.0 <= r["duration_s"] < 2.5 for r in results[1:])
    assert len(fake.batches()) == 1


def test_an_interrupt_swallowed_by_the_cell_is_still_a_timeout(fake: FakeStack) -> None:
    """Library code with a bare ``except:`` swallows the watchdog's exception (seen: a TF
    SavedModel save finished at 64.8 s under a 60 s limit). The watchdog re-fires, and a
    cell that finishes after it fired is a timeout, as the host's deadline would make it."""
    cells = [fake.save_cell(f"sw-{i}") for i in range(1, 3)]
    results = fake.run("save", cells, {"save": {"match": "/sw-1.", "action": "swallow", "arg": 3.0}},
                       cell_timeout=2.0)  # the host's deadline: 2 s + 2 s grace
    assert [r["outcome"] for r in results] == ["timeout", "ok"]
    assert "swallowed the interrupt and finished after" in results[0]["error"]["message"]
    assert results[0]["details"]["swallowed_outcome"] == "ok"
    assert results[1]["details"]["after_interrupt"] == 1
    assert len(fake.batches()) == 1


def test_restore_between_cells_skips_keras3s_full_gc() -> None:
    """Keras >= 3.3's clear_session() runs a full gc.collect() unless told not to: 0.45 s a
    cell in a JAX worker. The worker asks for free_memory=False where the signature has it,
    and calls the old signature (Keras 2, Keras 3.0) as it is."""
    from types import SimpleNamespace
    calls: list[dict[str, Any]] = []

    def keras3(free_memory: bool = True) -> None:
        calls.append({"free_memory": free_memory})

    def keras2() -> None:
        calls.append({})

    for clear in (keras3, keras2):
        fw = SimpleNamespace(keras=SimpleNamespace(backend=SimpleNamespace(clear_session=clear)),
                             tf=None)
        state = w._GlobalState(fw)
        state.restore()
    assert calls == [{"free_memory": False}, {}]
