"""Diagnosis rules against real messages (fast tier).

``tests/data/diagnose_cases.json`` holds real failing cells of the published matrix runs
(message, traceback tail, versions on both sides), at most three distinct signatures per
category, each with the category a human reviewer assigned. Every rule must have at least
one real case; a rule change that moves a real message to another category fails here.
"""

from __future__ import annotations

import json
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
        variant="default", phase=case.get("phase"), error=error,
        env={"keras": case.get("loader_keras"), "backend": case.get("loader_backend")},
        saver_env={"keras": case.get("saver_keras"), "backend": case.get("saver_backend")},
        details={} if error else {"reason": case["message"]})


@pytest.mark.parametrize("case", CASES, ids=[f"{c['expected']}:{c['cell_id']}" for c in CASES])
def test_real_message_gets_its_category(case: dict[str, Any]) -> None:
    diag = diagnose.diagnose(_record(case))
    assert diag is not None
    assert diag.category == case["expected"], (case["message"][:300], diag.category)


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
