"""Records: serialisation, outcomes, schema upgrade (v1 -> v2 -> v3) and the atomic store.

The v1 files under ``tests/data/raw_v1/`` are hand-written golden inputs following the
layout documented by ``runner.records._upgrade_to_2`` (stacks named ``saver_env`` /
``loader_env``, no ``variant`` or ``cell_id``, ``returncode``/``log_tail`` at the top
level). They must never be regenerated from the current code.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import pytest

from runner import records
from runner.records import (
    SCHEMA_VERSION,
    ErrorInfo,
    NewerSchemaError,
    Outcome,
    Record,
    RecordError,
    Store,
    StoreBusyError,
    load_cell_id,
    save_cell_id,
)

RAW_V1 = Path(__file__).resolve().parent / "data" / "raw_v1"


def _full_record(outcome: Outcome, record_type: str = "load") -> Record:
    """A record with every field set to a non-default value."""
    if record_type == "env":
        return Record(record_type="env", cell_id="env:tf2.15", stack="tf2.15", outcome=outcome,
                      key="k" * 64, phase="import",
                      error=ErrorInfo("runner.EnvUnavailable", "no interpreter", "tb"),
                      duration_s=12.5, env={"python": "3.11.7", "env_vars": {"A": "1"}},
                      worker_sha256="w" * 64, details={"reused": True, "requirements": ["x==1"]})
    saver, loader = "tf2.4", "tf2.15"
    if record_type == "save":
        return Record(record_type="save", cell_id=save_cell_id("dense", "h5", saver),
                      stack=saver, outcome=outcome, key="a" * 64, saver=saver,
                      scenario="dense", format="h5", phase="save",
                      error=ErrorInfo("builtins.OSError", "disk full", "Traceback ...\n"),
                      warnings=(("UserWarning", "h5 is legacy"),), duration_s=0.75,
                      env={"python": "3.8.18", "tensorflow": "2.4.4"},
                      worker_sha256="w" * 64, scenario_sha256="s" * 64,
                      details={"written_as": "h5"})
    return Record(
        record_type="load",
        cell_id=load_cell_id("custom_layer", "keras", saver, loader, "custom_objects"),
        stack=loader, outcome=outcome, key="b" * 64, saver=saver, loader=loader,
        scenario="custom_layer", format="keras", variant="custom_objects", phase="predict",
        error=ErrorInfo("builtins.ValueError", "Unknown layer: 'ScaleShift'\nmore", "tb tail"),
        warnings=(("DeprecationWarning", "old api"), ("UserWarning", "w2")),
        max_abs_diff=0.125, duration_s=2.5,
        env={"python": "3.11.7", "tensorflow": "2.15.1", "keras": "2.15.0", "backend": None},
        saver_env={"python": "3.8.18", "tensorflow": "2.4.4"},
        worker_sha256="w" * 64, scenario_sha256="s" * 64,
        details={"returncode": 0, "nested": {"list": [1, 2.5, None, "x"]}},
    )


# -------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.value)
@pytest.mark.parametrize("record_type", ["save", "load", "env"])
def test_round_trip_every_outcome(outcome: Outcome, record_type: str) -> None:
    rec = _full_record(outcome, record_type)
    d = rec.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION
    assert d["outcome"] == outcome.value  # serialised as the plain lower-case string
    text = json.dumps(d)  # no custom encoder needed
    back = Record.from_dict(json.loads(text))
    assert back == rec
    assert back.outcome is outcome
    assert back.to_dict() == d


def test_round_trip_minimal_record() -> None:
    rec = Record(record_type="env", cell_id="env:x", stack="x", outcome=Outcome.OK)
    back = Record.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec
    assert back.error is None and back.warnings == () and back.env == {}


def test_to_dict_is_plain_json_types() -> None:
    d = _full_record(Outcome.MISMATCH).to_dict()

    def check(obj: object) -> None:
        assert obj is None or isinstance(obj, str | int | float | bool | list | dict), type(obj)
        if isinstance(obj, dict):
            for k, v in obj.items():
                assert isinstance(k, str)
                check(v)
        elif isinstance(obj, list):
            for v in obj:
                check(v)

    check(d)
    assert d["warnings"] == [{"category": "DeprecationWarning", "message": "old api"},
                             {"category": "UserWarning", "message": "w2"}]
    assert d["error"] == {"type": "builtins.ValueError",
                          "message": "Unknown layer: 'ScaleShift'\nmore", "traceback": "tb tail"}


# ----------------------------------------------------------------------------- outcome


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.value)
def test_only_facts_about_the_cell_are_final(outcome: Outcome) -> None:
    per_run = {Outcome.TIMEOUT, Outcome.CRASH, Outcome.PROTOCOL_ERROR, Outcome.ENV_UNAVAILABLE,
               Outcome.NOT_RUN}
    assert outcome.final is (outcome not in per_run)


def test_outcome_values_are_lower_case_and_unique() -> None:
    values = [o.value for o in Outcome]
    assert len(set(values)) == len(values)
    assert all(v == v.lower() for v in values)


@pytest.mark.parametrize("bad", ["OK", "passed", "", None, 1])
def test_unknown_outcome_is_record_error(bad: object) -> None:
    d = _full_record(Outcome.OK).to_dict()
    d["outcome"] = bad
    with pytest.raises(RecordError, match="unknown outcome"):
        Record.from_dict(d)


def test_missing_outcome_is_record_error() -> None:
    d = _full_record(Outcome.OK).to_dict()
    del d["outcome"]
    with pytest.raises(RecordError, match="unknown outcome"):
        Record.from_dict(d)


def test_unknown_record_type_is_record_error() -> None:
    d = _full_record(Outcome.OK).to_dict()
    d["record_type"] = "probe"
    with pytest.raises(RecordError, match="record_type"):
        Record.from_dict(d)


@pytest.mark.parametrize("key", ["cell_id", "stack"])
def test_missing_ids_are_record_error(key: str) -> None:
    d = _full_record(Outcome.OK).to_dict()
    d[key] = ""
    with pytest.raises(RecordError, match=key):
        Record.from_dict(d)


# ----------------------------------------------------------------------- schema version


def test_newer_schema_is_a_clear_record_error() -> None:
    d = _full_record(Outcome.OK).to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(RecordError) as info:
        Record.from_dict(d)
    msg = str(info.value)
    assert f"schema_version {SCHEMA_VERSION + 1}" in msg
    assert "newer" in msg
    assert str(SCHEMA_VERSION) in msg
    assert "upgrade the runner" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("version", [None, "2", 2.0, True])
def test_non_integer_schema_version_is_record_error(version: object) -> None:
    d = _full_record(Outcome.OK).to_dict()
    if version is None:
        del d["schema_version"]
    else:
        d["schema_version"] = version
    with pytest.raises(RecordError, match="schema_version"):
        Record.from_dict(d)


def test_unknown_old_version_has_no_upgrade_path() -> None:
    d = _full_record(Outcome.OK).to_dict()
    d["schema_version"] = 0
    with pytest.raises(RecordError, match="no upgrade path from schema_version 0"):
        Record.from_dict(d)


def _v1(name: str) -> dict[str, object]:
    raw = json.loads((RAW_V1 / name).read_text(encoding="utf-8"))
    assert raw["schema_version"] == 1  # the golden input really is v1
    return raw


def test_upgrade_v1_load_record() -> None:
    raw = _v1("load_v1.json")
    before = copy.deepcopy(raw)
    rec = Record.from_dict(raw)
    assert raw == before, "upgrading must not mutate the caller's dict"
    assert rec.record_type == "load"
    assert rec.saver == "tf2.4"
    assert rec.loader == "tf2.15"
    assert rec.stack == "tf2.15"  # a load record belongs to the loader
    assert rec.variant == "default"
    assert rec.cell_id == "dense:h5:tf2.4->tf2.15:default"
    assert rec.cell_id == load_cell_id("dense", "h5", "tf2.4", "tf2.15", "default")
    assert rec.outcome is Outcome.LOAD_ERROR
    assert rec.phase == "load"
    assert rec.error == ErrorInfo("builtins.ValueError", "Unknown layer: ScaleShift",
                                  "Traceback (most recent call last):\n  ...\n"
                                  "ValueError: Unknown layer: ScaleShift\n")
    assert rec.warnings == (("DeprecationWarning", "`layer.updates` will be removed"),)
    assert rec.key == ""  # v1 had no cache key: never a cache hit
    assert rec.duration_s == 1.5
    assert rec.env["tensorflow"] == "2.15.1"
    # returncode/log_tail moved under details, merged with what was already there
    assert rec.details == {"written_as": "h5", "returncode": 0,
                           "log_tail": "2024-01-01 oneDNN custom operations are on.\n"}
    d = rec.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION
    assert not {"loader_env", "returncode", "log_tail"} & set(d)
    assert d["saver_env"] == {}  # v2: the saver's versions dict, no longer the stack name
    assert Record.from_dict(json.loads(json.dumps(d))) == rec


def test_upgrade_v1_save_record() -> None:
    rec = Record.from_dict(_v1("save_v1.json"))
    assert rec.record_type == "save"
    assert rec.saver == "tf2.4" and rec.loader is None and rec.stack == "tf2.4"
    assert rec.cell_id == "functional:savedmodel:tf2.4"
    assert rec.variant is None
    assert rec.outcome is Outcome.OK
    assert rec.error is None
    assert rec.key == ""
    assert rec.details == {"returncode": 0, "log_tail": ""}
    # in v2, saver_env is the *versions* dict of the saving stack, not its name
    assert rec.saver_env == {}
    assert rec.env["tensorflow"] == "2.4.4"


def test_upgrade_v1_env_record() -> None:
    rec = Record.from_dict(_v1("env_v1.json"))
    assert rec.record_type == "env"
    assert rec.stack == "tf2.18"
    assert rec.cell_id == "env:tf2.18"
    assert rec.outcome is Outcome.ENV_UNAVAILABLE
    assert rec.error is not None and rec.error.message == "no Python 3.12 interpreter found"
    assert rec.details == {"returncode": 1}


def test_v1_records_in_a_store_are_upgraded_on_read(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    target = store.load_record_path("tf2.15", "tf2.4", "dense", "h5", "default")
    target.parent.mkdir(parents=True)
    target.write_text((RAW_V1 / "load_v1.json").read_text(encoding="utf-8"), encoding="utf-8")
    (rec,) = list(store.iter_records())
    assert rec.cell_id == "dense:h5:tf2.4->tf2.15:default"
    assert store.read(target) == rec
    # the upgraded record maps back onto the same file; writing it stores the current schema in place
    assert store.record_path(rec) == target
    store.write(rec)
    assert json.loads(target.read_text(encoding="utf-8"))["schema_version"] == SCHEMA_VERSION
    assert [p.name for p in store.records_dir.rglob("*") if p.is_file()] == [target.name]


# ------------------------------------------- v2 -> v3: a load's two facts kept apart


def _v2_load(outcome: str, diff: float | None, **details: object) -> dict[str, object]:
    """A load record as the schema-2 worker wrote it (a trained scenario: ``trained_adam``)."""
    return {"schema_version": 2, "record_type": "load",
            "cell_id": load_cell_id("trained_adam", "savedmodel", "tf2.4", "tf2.15", "default"),
            "stack": "tf2.15", "outcome": outcome, "key": "k", "saver": "tf2.4", "loader": "tf2.15",
            "scenario": "trained_adam", "format": "savedmodel", "variant": "default", "phase": "compare",
            "error": None, "warnings": [], "max_abs_diff": diff, "duration_s": 1.0, "env": {},
            "saver_env": {}, "worker_sha256": "w", "scenario_sha256": "s",
            "details": {"loaded_class": "Sequential", "written_as": "savedmodel", **details}}


LOST_DIVERGING = ("one more training step diverges from the saver's: the optimizer's step count is 1, "
                  "expected 2 (optimizer state not restored)")


@pytest.mark.parametrize(("reason", "diff", "verdict", "prediction_diff", "training_diff"), [
    # the step diverged: its max |diff| had replaced the prediction's, which is unknown (within tolerance)
    (LOST_DIVERGING, 0.0123, "state_lost", None, 0.0123),
    ("one more training step diverges from the saver's although the step count was restored (2): the "
     "optimizer's slot variables or its update rule differ", 0.5, "diverges", None, 0.5),
    # no step ran or it landed within tolerance: max_abs_diff was the prediction's all along
    ("the optimizer's step count is 0 after resuming, expected 2: optimizer state was not restored "
     "(training restarted from a fresh optimizer)", 0.0, "state_lost", 0.0, None),
    ("the loaded model has no optimizer (not compiled): optimizer state lost", 1e-7, "state_lost", 1e-7, None),
    ("training could not resume: NotImplementedError: fit not implemented for NumPy backend.", 0.0,
     "cannot_resume", 0.0, None),
])
def test_a_v2_training_verdict_becomes_training_mismatch(reason: str, diff: float, verdict: str,
                                                        prediction_diff: float | None,
                                                        training_diff: float | None) -> None:
    raw = _v2_load("mismatch", diff, reason=reason, check="optimizer_state")
    before = copy.deepcopy(raw)
    rec = Record.from_dict(raw)
    assert raw == before, "upgrading must not mutate the caller's dict"
    assert rec.outcome is Outcome.TRAINING_MISMATCH and rec.outcome.failed and rec.outcome.final
    assert (rec.prediction, rec.training, rec.training_diff, rec.max_abs_diff) == (
        "match", verdict, training_diff, prediction_diff)
    assert rec.details["training_reason"] == rec.details["reason"] == reason
    assert "check" not in rec.details
    d = rec.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION == 4 and d["key_parts"] == {}
    assert Record.from_dict(json.loads(json.dumps(d))) == rec


def test_v2_prediction_verdicts_are_kept_as_they_were() -> None:
    mismatch = Record.from_dict(_v2_load("mismatch", 0.25))
    assert (mismatch.outcome, mismatch.prediction, mismatch.training, mismatch.max_abs_diff) == (
        Outcome.MISMATCH, "differ", None, 0.25)
    ok = Record.from_dict(_v2_load("ok", 0.0))
    # an ok v2 load does not say whether a trained model's training was checked: left unknown
    assert (ok.outcome, ok.prediction, ok.training) == (Outcome.OK, "match", None)
    note = "inference only (compile_false): optimizer state not loaded, by choice"
    inference = Record.from_dict(_v2_load("ok", 0.0, note=note))
    assert (inference.prediction, inference.training, inference.details["training_reason"]) == (
        "match", "not_checked", note)
    failed = Record.from_dict({**_v2_load("load_error", None), "error": {"type": "x.E", "message": "m"}})
    assert (failed.prediction, failed.training) == (None, None)


@pytest.mark.parametrize(("key", "value"), [("prediction", "same"), ("training", "lost"),
                                            ("training_diff", "0.1"), ("training_diff", True)])
def test_a_training_field_of_another_kind_is_a_record_error(key: str, value: object) -> None:
    d = _full_record(Outcome.TRAINING_MISMATCH).to_dict()
    d["details"][key] = value
    with pytest.raises(RecordError, match=key):
        Record.from_dict(d)


@pytest.mark.parametrize("raw", [
    [], None, "record",
    {"schema_version": 1, "record_type": "load", "saver_env": "a", "loader_env": "b",
     "format": "h5", "outcome": "ok"},  # v1 load without its scenario: no cell id possible
], ids=["list", "null", "string", "v1_load_without_scenario"])
def test_malformed_record_is_record_error(raw: object) -> None:
    # The documented contract: anything unusable is a RecordError (a ValueError), which
    # Store.read turns into "absent" and Store.iter_records into a named error.
    with pytest.raises(RecordError):
        Record.from_dict(raw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- store


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_store_layout_and_paths(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    for rtype in ("env", "save", "load"):
        store.write(_full_record(Outcome.OK, rtype))
    assert _files(store.root) == [
        "records/env/tf2.15.json",
        "records/load/tf2.15/tf2.4/custom_layer__keras__custom_objects.json",
        "records/save/tf2.4/dense__h5.json",
    ]


def test_store_write_is_atomic_and_overwrites(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    first = _full_record(Outcome.LOAD_ERROR)
    path = store.write(first)
    assert store.read(path) == first
    second = dataclasses.replace(first, outcome=Outcome.OK, error=None)
    assert store.write(second) == path  # same cell, same file
    assert store.read(path) == second
    assert _files(store.root) == [str(path.relative_to(store.root))]  # no temp files, no dupes
    assert [r.cell_id for r in store.iter_records()] == [first.cell_id]
    # the file is plain, readable JSON ending in a newline, and not 0600 as mkstemp makes it
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert json.loads(text)["outcome"] == "ok"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_store_write_failure_keeps_old_record_and_leaves_no_temp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "s")
    old = _full_record(Outcome.OK, "save")
    path = store.write(old)
    before = path.read_bytes()

    def boom(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(records.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        store.write(dataclasses.replace(old, outcome=Outcome.SAVE_ERROR))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _files(store.root) == [str(path.relative_to(store.root))]


def test_store_iter_records_sorted_and_empty(tmp_path: Path) -> None:
    store = Store(tmp_path / "missing")
    assert list(store.iter_records()) == []
    assert not store.root.exists()  # reading never creates the store
    for rtype in ("save", "env", "load"):
        store.write(_full_record(Outcome.OK, rtype))
    paths = [store.record_path(r) for r in store.iter_records()]
    assert paths == sorted(paths)


def test_store_ensure_marks_work_dir(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    store.ensure()
    store.ensure()  # idempotent
    assert (store.root / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (store.root / "CACHEDIR.TAG").read_text().startswith(
        "Signature: 8a477f597d28d172789f06886806bc55")


CORRUPT = {
    "truncated": b'{"schema_version": 2, "record_type": "env", "cell_id": "env:x"',
    "empty": b"",
    "not_utf8": b"\xff\xfe\x00{",
    "json_list": b"[]",
    "json_null": b"null",
    "unknown_outcome": json.dumps({**_full_record(Outcome.OK, "env").to_dict(),
                                   "outcome": "exploded"}).encode(),
    "newer_schema": json.dumps({**_full_record(Outcome.OK, "env").to_dict(),
                                "schema_version": SCHEMA_VERSION + 7}).encode(),
    "v1_load_without_scenario": json.dumps({"schema_version": 1, "record_type": "load",
                                            "saver_env": "a", "loader_env": "b",
                                            "format": "h5", "outcome": "ok"}).encode(),
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=list(CORRUPT))
def test_iter_records_names_the_corrupt_file(tmp_path: Path, content: bytes) -> None:
    store = Store(tmp_path / "s")
    store.write(_full_record(Outcome.OK, "save"))
    bad = store.env_record_path("broken")
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(content)
    with pytest.raises(RecordError) as info:
        list(store.iter_records())
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("content", [v for k, v in CORRUPT.items() if k != "newer_schema"],
                         ids=[k for k in CORRUPT if k != "newer_schema"])
def test_store_read_treats_unusable_record_as_absent(tmp_path: Path, content: bytes) -> None:
    store = Store(tmp_path / "s")
    bad = store.env_record_path("broken")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(content)
    assert store.read(bad) is None
    assert store.read(store.env_record_path("never-written")) is None


def test_a_new_run_removes_temp_files_a_killed_run_left(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    stale = store.records_dir / "save" / "tf2.15" / ".dense__h5.json.abc123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("{half a rec")
    with store.running():
        assert not stale.exists()


def test_a_second_run_on_the_store_is_refused_naming_the_holder(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with (store.running(), pytest.raises(StoreBusyError, match=rf"in use by pid {os.getpid()}.*--wait"),
          Store(tmp_path / "store").running()):
        pass
    with store.running():  # released: the next run gets it
        pass


def test_a_second_run_in_another_process_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = Store(tmp_path / "store")
    code = ("import sys; from runner.records import Store, StoreBusyError\n"
            "try:\n    Store(sys.argv[1]).running().__enter__()\n"
            "except StoreBusyError as e:\n    print(e); sys.exit(3)\n")
    with store.running():
        proc = subprocess.run([sys.executable, "-c", code, str(store.root)], capture_output=True,
                              text=True, check=False, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 3, proc.stderr
    assert f"pid {os.getpid()}" in proc.stdout


def test_newer_schema_stops_instead_of_being_overwritten(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    path = store.env_record_path("future")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema_version": 99, "record_type": "env"}))
    with pytest.raises(NewerSchemaError, match=str(path)):
        store.read(path)
    assert store.unreadable == []


def test_unreadable_records_are_remembered(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    path = store.env_record_path("torn")
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 2, "rec')
    assert store.read(path) is None
    assert store.unreadable == [path]
