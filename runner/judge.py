"""Judgement on the host: a load's observations against its saver's reference.

A worker only observes: the loaded model's predictions on the saver's inputs and, for a
trained scenario, what one more training step gives (``Record.observed``). Whether they
match — the tolerance, NaN handling, the training-resume verdict — is decided here, on the
host, from the load record and its save record (which holds the saver's outputs), so a
tolerance or comparison change re-judges stored observations without re-running a load:
each judged record carries ``judged_with`` (:func:`judged_with`), and a record judged
otherwise than today is judged again (``matrix`` rewrites it; nothing runs).

This file also runs alone, as compat_judge.py of a repro (``explain --repro``), in a
stack's own Python (3.7+): stdlib and numpy only at module level.

The arrays travel and are stored as the worker encodes them (dtype, shape, zlib + base64
of the bytes; :func:`decode_arrays`), so a record stays one inspectable JSON file.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "compare_outputs",
    "decode_arrays",
    "judge_load",
    "judged_with",
    "reference_of",
    "rejudge",
]

OBSERVED = "observed"  # the worker's outcome "loaded and predicted: judge me", and its details key


def decode_arrays(encoded: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The arrays the worker's ``_encode_arrays`` wrote (dtype, shape, and zlib + base64 of
    the bytes, or a list for non-numeric dtypes).

    Raises:
        ValueError: an entry is malformed (wrong size, unknown dtype).
    """
    import numpy as np

    out = []
    for e in encoded:
        dtype, shape = np.dtype(e["dtype"]), tuple(int(n) for n in e["shape"])
        if "zlib" in e:
            raw = zlib.decompress(base64.b64decode(e["zlib"]))
            out.append(np.frombuffer(raw, dtype=dtype).reshape(shape))
        else:
            out.append(np.asarray(e["list"], dtype=dtype).reshape(shape))
    return out


def compare_outputs(got: Sequence[Any], ref: Sequence[Any], atol: float, rtol: float
                    ) -> tuple[str, float | None, dict[str, Any]]:
    """(outcome, max |Δ|, details) of predictions against a reference: numpy's allclose per
    output, NaN only where the reference has NaN; "ok" or "mismatch"."""
    import numpy as np

    if len(got) != len(ref):
        return "mismatch", None, {"reason": f"{len(got)} outputs, reference has {len(ref)}"}
    worst = 0.0
    close = True
    for g_in, r_in in zip(got, ref):  # noqa: B905 - a repro runs this in a stack's Python (3.7+)
        g, r = np.asarray(g_in), np.asarray(r_in)
        if g.shape != r.shape:
            return "mismatch", None, {"reason": f"output shape {list(g.shape)}, reference {list(r.shape)}"}
        if g.size == 0:
            continue
        diff = np.abs(g.astype("float64") - r.astype("float64"))
        if np.isnan(diff).any() and not np.array_equal(np.isnan(g), np.isnan(r)):
            return "mismatch", None, {"reason": "NaN where the reference has numbers"}
        worst = max(worst, float(np.nanmax(diff)) if not np.isnan(diff).all() else 0.0)
        close = close and bool(np.allclose(g, r, atol=atol, rtol=rtol, equal_nan=True))
    return ("ok" if close else "mismatch"), worst, {}


def judged_with(atol: float, rtol: float) -> str:
    """What a verdict depends on besides the observations: this file's code and the
    tolerances (a different value re-judges the record)."""
    from runner.codehash import code_digest  # here, not at the top: a repro runs this file alone

    return hashlib.sha256(f"{code_digest(Path(__file__))} atol={atol!r} rtol={rtol!r}".encode()).hexdigest()


def _training(facts: Mapping[str, Any], zs: Sequence[Any], atol: float, rtol: float
              ) -> tuple[str, float | None, str | None]:
    """The training-resume verdict from what the worker saw after one more step:
    ``resumed`` / ``state_lost`` / ``diverges`` / ``cannot_resume``, its |Δ|, the reason."""
    if facts.get("no_model"):
        return "cannot_resume", None, "the format restores no Keras model, so training cannot resume"
    if facts.get("no_optimizer"):
        return "state_lost", None, "the loaded model has no optimizer (not compiled): optimizer state lost"
    if facts.get("error") is not None:
        return "cannot_resume", None, f"training could not resume: {facts['error']}"
    try:
        got = decode_arrays(facts.get("outputs") or [])
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        return "cannot_resume", None, f"the observed training step cannot be read: {type(exc).__name__}: {exc}"
    outcome, diff, _ = compare_outputs(got, zs, atol, rtol)
    steps = facts.get("steps")
    if outcome != "ok":
        if steps is None or steps == 2:
            # The step count came back, so the loss of state is not the whole story: the
            # slot variables or the release's update rule differ.
            return "diverges", diff, (
                "one more training step diverges from the saver's although the step count was restored "
                f"({'unknown' if steps is None else steps}): the optimizer's slot variables or its update "
                "rule differ")
        return "state_lost", diff, (f"one more training step diverges from the saver's: the optimizer's step "
                                    f"count is {steps}, expected 2 (optimizer state not restored)")
    # Adam's step from a fresh state can land close to the resumed one on the same batch,
    # so the step count decides: the saver trained once before saving, the loader once more.
    if steps is not None and steps != 2:
        return "state_lost", diff, (f"the optimizer's step count is {steps} after resuming, expected 2: optimizer "
                                    "state was not restored (training restarted from a fresh optimizer)")
    return "resumed", diff, None


VERDICT_KEYS = ("prediction", "training", "training_diff", "training_reason", "reason")


def rejudge(record_outcome_details: Mapping[str, Any], observed: Mapping[str, Any],
            reference: Mapping[str, Sequence[Any]] | None, fmt: str, variant: str, atol: float, rtol: float
            ) -> dict[str, Any] | None:
    """A stored load judged again (new tolerances or judging code): the result event
    :func:`judge_load` gives for its observations, or None when the stored observations
    came from an interrupted cell (it runs again instead)."""
    if observed.get("worker_outcome") != OBSERVED:
        return None
    details = {k: v for k, v in record_outcome_details.items() if k not in VERDICT_KEYS}
    details[OBSERVED] = {k: v for k, v in observed.items() if k != "worker_outcome"}
    return judge_load({"outcome": OBSERVED, "error": None, "details": details}, reference, fmt, variant, atol, rtol)


def reference_of(artifact_dir: Path | str) -> dict[str, list[Any]] | None:
    """The saver's observations, from its artifact: ``outputs`` (its predictions on the
    inputs) and, for a trained scenario, ``trained_outputs`` (after one more step); None
    when the artifact has no readable reference."""
    import json

    import numpy as np

    art = Path(artifact_dir)
    try:
        saved = json.loads((art / "save.json").read_text(encoding="utf-8"))
        with np.load(art / "reference.npz", allow_pickle=False) as npz:
            ref = {k: npz[k] for k in npz.files}
        out = {"outputs": [ref[f"y{i}"] for i in range(int(saved["n_outputs"]))]}
        if "n_z" in saved:
            out["trained_outputs"] = [ref[f"z{i}"] for i in range(int(saved["n_z"]))]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out


def judge_load(result: Mapping[str, Any], reference: Mapping[str, Sequence[Any]] | None, fmt: str, variant: str,
               atol: float, rtol: float) -> dict[str, Any]:
    """The worker ``result`` event of a load with its verdict: ``outcome``, ``max_abs_diff``
    and the verdict's ``details`` (prediction, training, training_diff, training_reason,
    reason) from its ``observed`` predictions (and training step) against the saver's
    ``reference`` (:func:`reference_of`).

    A result without observations (an error, a crash) is returned as it is. A timeout
    during the training step whose predictions already differ is the mismatch it was
    before the step began. Without a reference nothing can be judged: ``protocol_error``."""
    out = dict(result)
    details = dict(result.get("details") or {})
    observed = details.pop(OBSERVED, None)
    out["details"] = details
    if isinstance(observed, Mapping):
        # Kept with the record (``Record.observed``), with the worker's own outcome.
        out[OBSERVED] = {**observed, "worker_outcome": result.get("outcome")}
    if not isinstance(observed, Mapping) or "outputs" not in observed:
        return out
    if not isinstance(reference, Mapping) or "outputs" not in reference:
        out.update(outcome="protocol_error", max_abs_diff=None,
                   error={"type": "runner.no_reference", "traceback": "",
                          "message": "the artifact holds no readable reference to judge this load against"})
        return out
    try:
        got = decode_arrays(observed["outputs"])
        outcome, diff, more = compare_outputs(got, reference["outputs"], atol, rtol)
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        out.update(outcome="protocol_error", max_abs_diff=None,
                   error={"type": "runner.bad_observation", "traceback": "",
                          "message": f"an observed array cannot be read: {type(exc).__name__}: {exc}"})
        return out
    details.update(more)
    details["prediction"] = "match" if outcome == "ok" else "differ"
    trained = "trained_outputs" in reference
    interrupted = result.get("outcome") != OBSERVED
    if interrupted:
        # A timeout (or a crash) after the predictions: in the training step.
        if outcome != "ok":
            details.pop("interrupted_in_worker", None)
            details["training"] = "not_checked"
            details["training_reason"] = "predictions differ from the saver's, so the resumed step was not needed"
            out.update(outcome="mismatch", error=None, max_abs_diff=diff, details=details, phase="compare")
        else:
            out.update(max_abs_diff=diff, details=details)
        return out
    if trained:
        inference = sorted(set(variant.split("+")) & {"compile_false", "tfsm", "signature"})
        if outcome != "ok":
            details["training"] = "not_checked"
            details["training_reason"] = "predictions differ from the saver's, so the resumed step was not tried"
        elif fmt == "export":
            details["training"] = "not_checked"
            details["training_reason"] = "inference-only export: optimizer state is not part of the format"
        elif inference:
            details["training"] = "not_checked"
            details["training_reason"] = f"inference only ({'+'.join(inference)}): optimizer state not loaded, " \
                                         "by choice"
        else:
            verdict, train_diff, reason = _training(observed.get("training") or {}, reference["trained_outputs"],
                                                    atol, rtol)
            details["training"] = verdict
            details["training_diff"] = train_diff
            if reason:
                outcome = "training_mismatch"
                details["training_reason"] = reason
                details["reason"] = reason  # what a cell without an exception says (and is diagnosed by)
    out.update(outcome=outcome, max_abs_diff=diff, details=details, phase="compare")  # the host's phase
    return out
