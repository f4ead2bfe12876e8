"""The host's judgement of a load's observations (runner/judge.py): verdicts, re-judging,
and observations or references it cannot trust."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
import pytest

from runner import judge
from runner._worker import worker as w

REF = {"outputs": [np.array([[1.0, 2.0]], "float32")]}
TRAINED = {**REF, "trained_outputs": [np.array([[1.5, 2.5]], "float32")]}


def _observed(outputs: list[Any], training: dict[str, Any] | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {"outputs": w._encode_arrays(np, outputs)}
    if training is not None:
        obs["training"] = training
    return {"outcome": "observed", "cell_id": "c", "phase": "predict", "error": None,
            "details": {"observed": obs, "loaded_class": "Sequential"}}


def test_the_worker_encoding_round_trips_every_dtype() -> None:
    arrays = [np.arange(6, dtype="float64").reshape(2, 3), np.array([1, 2], "int64"), np.array([True]),
              np.array(["a", "bc"]), np.zeros((0, 4), "float16")]
    back = judge.decode_arrays(w._encode_arrays(np, arrays))
    for a, b in zip(arrays, back, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize(("training", "verdict", "outcome"), [
    ({"outputs": w._encode_arrays(np, [TRAINED["trained_outputs"][0]]), "steps": 2}, "resumed", "ok"),
    ({"outputs": w._encode_arrays(np, [TRAINED["trained_outputs"][0]]), "steps": 1}, "state_lost",
     "training_mismatch"),
    ({"outputs": w._encode_arrays(np, [TRAINED["trained_outputs"][0] + 1]), "steps": 2}, "diverges",
     "training_mismatch"),
    ({"no_optimizer": True}, "state_lost", "training_mismatch"),
    ({"error": "RuntimeError: boom"}, "cannot_resume", "training_mismatch"),
])
def test_training_verdicts(training: dict[str, Any], verdict: str, outcome: str) -> None:
    res = judge.judge_load(_observed([REF["outputs"][0]], training), TRAINED, "h5", "default", 1e-6, 1e-6)
    assert (res["outcome"], res["details"]["prediction"], res["details"]["training"]) == (outcome, "match", verdict)
    assert res["phase"] == "compare" and res["max_abs_diff"] == 0.0
    # An inference-only variant never judges the step, whatever it observed.
    inf = judge.judge_load(_observed([REF["outputs"][0]], training), TRAINED, "h5", "compile_false", 1e-6, 1e-6)
    assert (inf["outcome"], inf["details"]["training"]) == ("ok", "not_checked")


def test_differing_predictions_leave_the_step_unjudged_even_after_a_training_timeout() -> None:
    obs = _observed([REF["outputs"][0] + 1])
    assert judge.judge_load(obs, TRAINED, "h5", "default", 1e-6, 1e-6)["details"]["training"] == "not_checked"
    timeout = {**obs, "outcome": "timeout", "phase": "train", "error": {"type": "runner.timeout", "message": "x"}}
    res = judge.judge_load(timeout, TRAINED, "h5", "default", 1e-6, 1e-6)
    assert (res["outcome"], res["error"], res["details"]["prediction"]) == ("mismatch", None, "differ")
    # Matching predictions: the timeout in the step stands (the verdict is not known).
    same = {**_observed([REF["outputs"][0]]), "outcome": "timeout", "phase": "train"}
    assert judge.judge_load(same, TRAINED, "h5", "default", 1e-6, 1e-6)["outcome"] == "timeout"


def test_an_observation_or_reference_it_cannot_read_is_a_protocol_error() -> None:
    bad = _observed([REF["outputs"][0]])
    bad["details"]["observed"]["outputs"][0]["zlib"] = base64.b64encode(zlib.compress(b"123")).decode()
    res = judge.judge_load(bad, REF, "h5", "default", 1e-6, 1e-6)
    assert res["outcome"] == "protocol_error" and res["error"]["type"] == "runner.bad_observation"
    none = judge.judge_load(_observed([REF["outputs"][0]]), None, "h5", "default", 1e-6, 1e-6)
    assert none["outcome"] == "protocol_error" and none["error"]["type"] == "runner.no_reference"
    # Its benign twin: the same observation, intact, judged ok.
    assert judge.judge_load(_observed([REF["outputs"][0]]), REF, "h5", "default", 1e-6, 1e-6)["outcome"] == "ok"


def test_rejudging_an_interrupted_cell_is_refused() -> None:
    res = judge.judge_load({**_observed([REF["outputs"][0]]), "outcome": "timeout"}, TRAINED, "h5", "default",
                           1e-6, 1e-6)
    assert judge.rejudge(res["details"], res["observed"], TRAINED, "h5", "default", 1, 1) is None
    ok = judge.judge_load(_observed([REF["outputs"][0] + 1e-3]), REF, "h5", "default", 1e-6, 1e-6)
    assert ok["outcome"] == "mismatch"
    again = judge.rejudge(ok["details"], ok["observed"], REF, "h5", "default", 1e-2, 0)
    assert again is not None and again["outcome"] == "ok"


def test_judged_with_names_the_tolerances() -> None:
    assert judge.judged_with(1e-6, 1e-6) != judge.judged_with(1e-5, 1e-6)
    assert judge.judged_with(1e-6, 1e-6) == judge.judged_with(1e-6, 1e-6)
