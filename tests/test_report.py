"""The report: one row per cell, derived outcomes, the written files, golden tables.

A small store is built from hand-made records (three stacks, one of them unavailable;
saves and loads covering every interesting outcome) with a scenario directory of two
hand-made scenarios, so nothing here depends on the shipped scenarios or catalog.

Golden files: ``tests/data/golden/`` holds the exact expected README.md, scenario pages,
errors.md, CHANGES.md and (decompressed) results.csv for that store. After an intended change to the report,
regenerate them with::

    UPDATE_GOLDEN=1 python3 -m pytest -q tests/test_report.py

then review the diff (``git diff tests/data/golden``) before committing it.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import gzip
import html
import html.parser
import io
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tabulate import tabulate

from runner import gate, heatmap, report
from runner.records import ErrorInfo, Outcome, Record, Store, load_cell_id, save_cell_id

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
REPORT_FILES = report.REPORT_FILES

ENVS = {
    "tf2.4": {"python": "3.8.18", "tensorflow": "2.4.4", "keras": "2.4.0",
              "backend": "tensorflow", "keras_api": "tf.keras", "env_vars": {}},
    "tf2.15": {"python": "3.11.7", "tensorflow": "2.15.1", "keras": "2.15.0",
               "backend": "tensorflow", "keras_api": "tf.keras",
               "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}},
}

SCENARIO_DENSE = '''"""Plain MLP (test fixture)."""

ATOL = 1e-5


def build(keras):
    return None


def inputs(np):
    return None
'''

SCENARIO_CUSTOM = '''"""Custom layer (test fixture)."""

LOAD_VARIANTS = ("default", "custom_objects")


def build(keras):
    return None


def inputs(np):
    return None


def custom_objects(keras):
    return {}
'''


class Paths:
    """The machine paths that must never reach a published file."""

    def __init__(self, root: Path) -> None:
        self.store = root / "store"
        self.home = root / "home"
        self.pyenv = root / "pyenv-root"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    p = Paths(tmp_path)
    monkeypatch.setenv("HOME", str(p.home))
    monkeypatch.setenv("PYENV_ROOT", str(p.pyenv))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    return p


def write_scenarios(root: Path, names: tuple[str, ...] = ("dense", "custom")) -> Path:
    """``root/scenarios`` holding the test scenarios ``names`` (dense, custom): the
    scenario folder every report, site and history test writes its table against."""
    d = root / "scenarios"
    d.mkdir()
    for name in names:
        (d / f"{name}.py").write_text({"dense": SCENARIO_DENSE, "custom": SCENARIO_CUSTOM}[name])
    return d


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    d = write_scenarios(tmp_path)
    (d / "_helper.py").write_text("X = 1\n")
    return d


def _open_error(p: Paths, saver: str, scenario: str) -> ErrorInfo:
    art = p.store / "artifacts" / saver / scenario / "h5"
    return ErrorInfo(
        "builtins.OSError",
        f"Unable to open file '{art}/model.h5' (log {p.store}/runs/load-tf2.4/worker.log, "
        f"home {p.home}/.keras, python {p.pyenv}/versions/3.8.18/bin/python)\nsecond line",
        f'Traceback (most recent call last):\n  File "{p.pyenv}/versions/3.8.18/lib/h5py.py", '
        f"line 1\nOSError: Unable to open file '{art}/model.h5'\n")


def _save(saver: str, scenario: str, fmt: str, outcome: Outcome,
          error: ErrorInfo | None = None) -> Record:
    return Record(record_type="save", cell_id=save_cell_id(scenario, fmt, saver), stack=saver,
                  outcome=outcome, key=f"key-{saver}-{scenario}-{fmt}", saver=saver,
                  scenario=scenario, format=fmt, phase="save", error=error, duration_s=1.5,
                  env=ENVS.get(saver, {}), details={"written_as": _written_as(saver, fmt)})


def _written_as(saver: str, fmt: str) -> str:
    """What the worker's magic-byte sniff reports; TF <= 2.12 writes HDF5 for '.keras'."""
    if fmt == "keras":
        return "h5" if saver == "tf2.4" else "keras_v3"
    return fmt


def _load(saver: str, loader: str, scenario: str, variant: str, outcome: Outcome,
          error: ErrorInfo | None = None, diff: float | None = None,
          details: dict[str, Any] | None = None) -> Record:
    return Record(record_type="load", cell_id=load_cell_id(scenario, "h5", saver, loader, variant),
                  stack=loader, outcome=outcome, key="k", saver=saver, loader=loader,
                  scenario=scenario, format="h5", variant=variant,
                  phase=None if outcome is Outcome.OK else "load", error=error,
                  max_abs_diff=diff, duration_s=0.25, env=ENVS.get(loader, {}),
                  saver_env=ENVS.get(saver, {}), details=details or {})


STATE_LOST = ("one more training step diverges from the saver's: the optimizer's step count is 1, expected 2 "
              "(optimizer state not restored)")
# A trained model whose predictions match but whose resumed step does not; one that resumes;
# a timeout interrupted at an adaptive limit below the full one (not final: shown as not_run).
TRAINED_LOST = {"prediction": "match", "training": "state_lost", "training_diff": 0.03125,
                "training_reason": STATE_LOST, "reason": STATE_LOST}
TRAINED_OK = {"prediction": "match", "training": "resumed", "training_diff": 0.0}
BELOW_FULL = {"limit_s": 12.0, "full_limit_s": 60.0}


def make_records(p: Paths) -> list[Record]:
    unavailable = ErrorInfo(
        "runner.EnvUnavailable",
        f"no Python 3.12 interpreter (looked in {p.pyenv}/versions and {p.home}/.local/bin)\n"
        "install it with pyenv")
    return [
        Record(record_type="env", cell_id="env:tf2.4", stack="tf2.4", outcome=Outcome.OK,
               env=ENVS["tf2.4"], duration_s=30.0),
        Record(record_type="env", cell_id="env:tf2.15", stack="tf2.15", outcome=Outcome.OK,
               env=ENVS["tf2.15"], duration_s=40.0),
        Record(record_type="env", cell_id="env:tf2.18", stack="tf2.18",
               outcome=Outcome.ENV_UNAVAILABLE, phase="import", error=unavailable,
               duration_s=0.5),
        # saves
        _save("tf2.4", "dense", "h5", Outcome.OK),
        _save("tf2.15", "dense", "h5", Outcome.OK),
        _save("tf2.18", "dense", "h5", Outcome.ENV_UNAVAILABLE, unavailable),
        _save("tf2.4", "dense", "keras", Outcome.NOT_APPLICABLE,
              ErrorInfo("compat.NotApplicable", "the .keras format needs Keras >= 2.13")),
        _save("tf2.15", "dense", "keras", Outcome.SAVE_ERROR,
              ErrorInfo("builtins.ValueError", "Unable to serialize | pipe in message")),
        _save("tf2.18", "dense", "keras", Outcome.ENV_UNAVAILABLE, unavailable),
        _save("tf2.4", "custom", "h5", Outcome.OK),
        _save("tf2.15", "custom", "h5", Outcome.OK),
        # loads
        _load("tf2.4", "tf2.4", "dense", "default", Outcome.OK, diff=0.0, details=TRAINED_OK),
        _load("tf2.4", "tf2.15", "dense", "default", Outcome.OK, diff=1e-7),
        _load("tf2.15", "tf2.4", "dense", "default", Outcome.LOAD_ERROR,
              _open_error(p, "tf2.15", "dense")),
        _load("tf2.15", "tf2.15", "dense", "default", Outcome.MISMATCH, diff=0.5),
        _load("tf2.4", "tf2.4", "custom", "default", Outcome.CRASH,
              ErrorInfo("runner.crash", "worker died with signal 11 (SIGSEGV)")),
        _load("tf2.4", "tf2.15", "custom", "default", Outcome.TIMEOUT,
              ErrorInfo("runner.timeout", "cell exceeded 300 s")),
        _load("tf2.15", "tf2.15", "custom", "default", Outcome.OK, diff=0.0),
        _load("tf2.15", "tf2.18", "custom", "default", Outcome.ENV_UNAVAILABLE, unavailable),
        _load("tf2.4", "tf2.4", "custom", "custom_objects", Outcome.LOAD_ERROR,
              _open_error(p, "tf2.4", "custom")),
        _load("tf2.4", "tf2.15", "custom", "custom_objects", Outcome.TRAINING_MISMATCH, diff=0.0,
              details=TRAINED_LOST),
        _load("tf2.15", "tf2.15", "custom", "custom_objects", Outcome.TIMEOUT,
              ErrorInfo("runner.timeout", "cell exceeded its 12 s limit; interrupted inside the worker"),
              details=BELOW_FULL),
    ]


def make_store(p: Paths, reverse: bool = False) -> Store:
    store = Store(p.store)
    recs = make_records(p)
    for rec in reversed(recs) if reverse else recs:
        store.write(rec)
    return store


# (scenario, format, variant, saver) -> outcome per loader tf2.4, tf2.15, tf2.18
EXPECTED = {
    ("dense", "h5", "default", "tf2.4"): ("ok", "ok", "env_unavailable"),
    ("dense", "h5", "default", "tf2.15"): ("load_error", "mismatch", "env_unavailable"),
    ("dense", "h5", "default", "tf2.18"): ("env_unavailable",) * 3,
    ("dense", "keras", "default", "tf2.4"): ("not_applicable",) * 3,
    ("dense", "keras", "default", "tf2.15"): ("save_error",) * 3,
    ("dense", "keras", "default", "tf2.18"): ("env_unavailable",) * 3,
    ("custom", "h5", "default", "tf2.4"): ("crash", "timeout", "env_unavailable"),
    ("custom", "h5", "default", "tf2.15"): ("not_run", "ok", "env_unavailable"),
    ("custom", "h5", "custom_objects", "tf2.4"): ("load_error", "training_mismatch", "env_unavailable"),
    ("custom", "h5", "custom_objects", "tf2.15"): ("not_run", "not_run", "env_unavailable"),
}
LOADERS = ("tf2.4", "tf2.15", "tf2.18")


def _frame(p: Paths, **kw: object) -> pd.DataFrame:
    store = make_store(p)
    return report.build_frame(store.iter_records(), report._Scrubber(store), **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ build_frame


def test_one_row_per_cell_with_derived_outcomes(paths: Paths) -> None:
    df = _frame(paths, scenarios={"custom": report.ScenarioInfo(("default", "custom_objects"))})
    assert list(df.columns) == report.COLUMNS
    assert len(df) == sum(len(v) for v in EXPECTED.values()) == 30
    keys = list(zip(df.scenario, df.format, df.variant, df.saver, df.loader, strict=True))
    assert len(set(keys)) == len(keys), "one row per (saver artifact, loader, variant)"
    got = dict(zip(keys, df.outcome, strict=True))
    want = {(*k, lo): o for k, outs in EXPECTED.items() for lo, o in zip(LOADERS, outs, strict=True)}
    assert got == want
    assert set(df.cell_id) == {load_cell_id(s, f, sv, lo, v) for (s, f, v, sv, lo) in want}


def test_rows_say_where_the_outcome_came_from(paths: Paths) -> None:
    df = _frame(paths).set_index("cell_id")
    assert df.loc["dense:h5:tf2.15->tf2.4:default", "source"] == "load"
    assert df.loc["dense:keras:tf2.15->tf2.4:default", "source"] == "save"
    assert df.loc["dense:keras:tf2.15->tf2.4:default", "error_message"] == \
        "Unable to serialize | pipe in message"
    assert df.loc["dense:h5:tf2.4->tf2.18:default", "source"] == "env"
    assert df.loc["dense:h5:tf2.4->tf2.18:default", "error_type"] == "runner.EnvUnavailable"
    assert df.loc["dense:h5:tf2.18->tf2.4:default", "source"] == "save"
    assert df.loc["custom:h5:tf2.15->tf2.18:default", "source"] == "load"
    nr = df.loc["custom:h5:tf2.15->tf2.4:default"]
    assert (nr.outcome, nr.source) == ("not_run", "none")
    assert nr.saver_tensorflow == "2.15.1" and nr.loader_tensorflow == "2.4.4"
    ld = df.loc["dense:h5:tf2.4->tf2.15:default"]
    assert ld.saver_python == "3.8.18" and ld.loader_python == "3.11.7"
    assert ld.max_abs_diff == pytest.approx(1e-7)
    assert df.loc["dense:h5:tf2.15->tf2.15:default", "max_abs_diff"] == 0.5


def test_rows_are_in_natural_order(paths: Paths) -> None:
    df = _frame(paths)
    dense_h5 = df[(df.scenario == "dense") & (df.format == "h5")]
    assert list(zip(dense_h5.saver, dense_h5.loader, strict=True)) == [
        (s, lo) for s in LOADERS for lo in LOADERS]
    assert list(dict.fromkeys(zip(df.scenario, df.format, df.variant, strict=True))) == [
        ("custom", "h5", "default"), ("custom", "h5", "custom_objects"),
        ("dense", "h5", "default"), ("dense", "keras", "default")]


def test_variants_come_from_records_and_scenarios(paths: Paths) -> None:
    # custom_objects is known from the load records even without scenario metadata
    df = _frame(paths)
    assert len(df) == 30
    # a declared variant without any record yet shows as not_run (or the save/env reason)
    df = _frame(paths, scenarios={"dense": report.ScenarioInfo(("default", "custom_objects"))})
    extra = df[(df.scenario == "dense") & (df.variant == "custom_objects")]
    assert len(extra) == 18
    sel = extra[(extra.saver == "tf2.4") & (extra.format == "h5")]
    assert list(sel.outcome) == ["not_run", "not_run", "env_unavailable"]
    assert list(sel.source) == ["none", "none", "env"]


def test_stack_ids_filter(paths: Paths) -> None:
    df = _frame(paths, stack_ids=["tf2.4", "tf2.15"])
    assert set(df.saver) | set(df.loader) == {"tf2.4", "tf2.15"}
    assert len(df) == 16


def test_empty_store(tmp_path: Path, scenario_dir: Path) -> None:
    store = Store(tmp_path / "empty")
    df = report.write_reports(store, tmp_path / "out", scenario_dir)
    assert df.empty
    assert all((tmp_path / "out" / f).is_file() for f in REPORT_FILES)
    assert "(no cells)" in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "no previous table" in (tmp_path / "out" / "CHANGES.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------------- the files


def _write(p: Paths, scenario_dir: Path, out: Path, reverse: bool = False) -> pd.DataFrame:
    return report.write_reports(make_store(p, reverse), out, scenario_dir)


def _files(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` by relative path (the gzip'd CSV decompressed)."""
    got = {}
    for path in sorted(out.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            got[path.relative_to(out).as_posix()] = gzip.decompress(data) if path.suffix == ".gz" else data
    return got


def _csv(out: Path) -> tuple[str, list[dict[str, str]]]:
    """(the selection the report states, results.csv.gz's rows): the CSV starts with its header."""
    body = gzip.decompress((out / "results.csv.gz").read_bytes()).decode("utf-8")
    said = json.loads(gate.read_results_text(out / "results.json.gz"))["selection"]
    return "# " + said, list(csv.DictReader(io.StringIO(body)))


SET = {*REPORT_FILES, "grids/custom.md", "grids/dense.md", "heatmaps/h5.svg", "heatmaps/keras.svg",
       "site/app.js", "site/style.css", "data/meta.js", "data/h5.js", "data/h5.tb.js", "data/keras.js",
       "data/keras.tb.js", "site/history.js", "data/history.js"}


# explain's upgrade verdicts per format and saver (the site), and each grid page's page of cell ids
VERDICT_FILES = {f"data/verdicts/{f}/{s}.js" for f in ("h5", "keras") for s in ("tf2.4", "tf2.15", "tf2.18")}
CELL_PAGES = {"grids/cells/custom.md", "grids/cells/dense.md"}


def test_write_reports_files(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    df = _write(paths, scenario_dir, out)
    assert set(_files(out)) == SET | VERDICT_FILES | CELL_PAGES  # no temp files
    first, rows = _csv(out)
    assert first.startswith("# Selection: a subset, NOT the published table: ")
    assert len(rows) == len(df) == 30
    assert list(rows[0]) == report.CSV_COLUMNS
    header = gzip.decompress((out / "results.csv.gz").read_bytes()).decode("utf-8").split("\n", 1)[0]
    assert header == ",".join(report.CSV_COLUMNS)  # the first line is the header row, no "#" line
    assert pd.read_csv(out / "results.csv.gz").shape == (30, len(report.CSV_COLUMNS))  # docs/reports-schema.md
    # the CSV keeps a message's first line only; results.json.gz the whole (bounded) message
    assert {r["error_message"] for r in rows if r["cell_id"] == "custom:h5:tf2.4->tf2.4:custom_objects"} \
        == {"Unable to open file '<artifact>/model.h5' (log <store>/runs/load-tf2.4/worker.log, home "
            "~/.keras, python <pyenv>/versions/3.8.18/bin/python)"}
    packed = (out / "results.json.gz").read_bytes()
    assert packed[:10] == gzip.compress(b"", mtime=0)[:10]  # no name or time in the header: same bytes per rerun
    text = gzip.decompress(packed).decode("utf-8")
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in results.json.gz"))
    assert data["schema_version"] == 4 and data["columns"] == report.JSON_COLUMNS
    assert data["selection"] == first[2:]
    for name in ("README.md", "matrix.md", "errors.md", "CHANGES.md", "grids/dense.md"):
        assert first[2:] in (out / name).read_text(encoding="utf-8")[:1000], name
    assert first[2:] in (out / "data" / "meta.js").read_text(encoding="utf-8")
    assert len(data["cells"]) == 30
    assert text.split("\"cells\": [")[1].count("\n  [") == 30  # one cell per line: diffs show changed cells
    assert data["stacks"]["tf2.15"]["tensorflow"] == "2.15.1"
    rows3 = list(gate.results_rows(data))
    assert [r["cell_id"] for r in rows3] == list(df["cell_id"])
    crash = next(r for r in rows3 if r["outcome"] == "crash")
    assert crash["max_abs_diff"] is None  # NaN is written as null
    assert (crash["error_type"], crash["error_message"]) == ("runner.crash", "worker died with signal 11 (SIGSEGV)")
    mismatch = next(r for r in rows3 if r["outcome"] == "mismatch")
    assert mismatch["max_abs_diff"] == 0.5
    # each distinct error, message and traceback once
    for key in ("errors", "messages", "tracebacks"):
        assert len(data[key]) == len({json.dumps(e) for e in data[key]}), key
    cells = gate.load_results(out / "results.json.gz")  # the gate reads it back
    assert cells["custom:h5:tf2.4->tf2.4:default"].message == "worker died with signal 11 (SIGSEGV)"
    dense = (out / "grids" / "dense.md").read_text(encoding="utf-8")
    for title in ("## `dense` · `h5`", "## `dense` · `keras`"):
        assert f"\n{title}\n" in dense
    custom = (out / "grids" / "custom.md").read_text(encoding="utf-8")
    for title in ("## `custom` · `h5`", "## `custom` · `h5` · load variant `custom_objects`"):
        assert f"\n{title}\n" in custom
    assert (out / "index.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_gate_reads_every_results_schema(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    """Schema 3 is what the report writes; schema 2 is the table published before it (the
    gate's baseline on the first publication of schema 3) and must stay readable."""
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    data = json.loads(gate.read_results_text(out / "results.json.gz"))
    rows = list(gate.results_rows(data))
    v2 = {"schema_version": 2, "columns": report.JSON_COLUMNS, "stacks": data["stacks"], "errors": [],
          "cells": []}
    errors: dict[tuple[str, str, str], int] = {}
    for r in rows:
        eid = None
        if r["error_id"] is not None:
            eid = errors.setdefault((r["error_type"], r["error_message"], r["traceback_tail"]), len(errors))
        v2["cells"].append([r[c] for c in report.JSON_COLUMNS[:-1]] + [eid])
    v2["errors"] = [list(k) for k in errors]
    v1 = {"schema_version": 1, "cells": rows}
    want = gate.load_results(out / "results.json.gz")
    for n, doc in (("v2", v2), ("v1", v1)):
        path = tmp_path / f"{n}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        assert gate.load_results(path) == want, n
    bad = dict(data, cells=[[999] * len(report.JSON_COLUMNS)])
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(gate.GateError, match="outside"):
        gate.load_results(tmp_path / "bad.json")


def test_golden_files(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    # The golden pages are the *correct* tables: a "|" inside a cell is escaped as "\|"
    # (see test_markdown_tables_keep_their_columns), e.g. in the legend's "max \|diff\|".
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    update = os.environ.get("UPDATE_GOLDEN") == "1"
    files = _files(out)
    for name in ("README.md", "grids/dense.md", "grids/custom.md", "results.csv.gz", "errors.md", "CHANGES.md"):
        got = files[name].decode("utf-8")
        golden = GOLDEN / name.replace("/", "-").removesuffix(".gz")
        if update:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(got, encoding="utf-8")
        assert golden.is_file(), f"{golden} missing: run with UPDATE_GOLDEN=1 to create it"
        want = golden.read_text(encoding="utf-8")
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            f"golden/{name}", f"generated/{name}"))
        assert got == want, (f"{name} differs from the golden file (if intended, rerun with "
                             f"UPDATE_GOLDEN=1):\n{diff}")


def test_reports_are_deterministic(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    _write(paths, scenario_dir, tmp_path / "a")
    once = {p: (tmp_path / "a" / p).read_bytes() for p in _files(tmp_path / "a")}
    _write(paths, scenario_dir, tmp_path / "a")  # rewriting in place changes no byte (CHANGES.md kept)
    assert {p: (tmp_path / "a" / p).read_bytes() for p in _files(tmp_path / "a")} == once
    # a second store at another path, written in the opposite order
    other = Paths(tmp_path / "elsewhere" / "deeper")
    other.home, other.pyenv = paths.home, paths.pyenv
    _write(other, scenario_dir, tmp_path / "b", reverse=True)
    _write(paths, scenario_dir, tmp_path / "c")
    for name, data in once.items():
        assert data == (tmp_path / "b" / name).read_bytes(), name
        assert data == (tmp_path / "c" / name).read_bytes(), name


def test_no_machine_paths_leak(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    df = _write(paths, scenario_dir, out).set_index("cell_id")
    repo = str(Path(report.__file__).resolve().parent.parent)
    for name, data in _files(out).items():
        text = data.decode("utf-8")
        for leak in (str(tmp_path), str(paths.store), str(paths.home), str(paths.pyenv), repo):
            assert leak not in text, f"{leak} in {name}"
    msg = df.loc["dense:h5:tf2.15->tf2.4:default", "error_message"]
    assert msg == ("Unable to open file '<artifact>/model.h5' (log "
                   "<store>/runs/load-tf2.4/worker.log, home ~/.keras, python "
                   "<pyenv>/versions/3.8.18/bin/python)\nsecond line")
    tb = df.loc["dense:h5:tf2.15->tf2.4:default", "traceback_tail"]
    assert '"<pyenv>/versions/3.8.18/lib/h5py.py"' in tb and "'<artifact>/model.h5'" in tb
    # one error through different artifacts is one footnote per category and page, not one per saver
    # (tf2.15's file in tf2.4 is newer_minor_file, tf2.4's own file is other)
    pages = "".join((out / "grids" / n).read_text(encoding="utf-8") for n in ("custom.md", "dense.md"))
    assert pages.count("`builtins.OSError`: `Unable to open file '<artifact>/model.h5'") == 2
    assert pages.count("**other** · `builtins.OSError`: `Unable to open file '<artifact>/model.h5'") == 1
    assert "unavailable: no Python 3.12 interpreter (looked in <pyenv>/versions and " \
           "~/.local/bin)" in (out / "README.md").read_text(encoding="utf-8")


def _failing_ids(df: pd.DataFrame) -> set[str]:
    cells = report.table_cells(df)
    return set(cells[cells["outcome"].isin([o.value for o in Outcome if o.failed])
                     & (cells["error_type"].fillna("") != "")]["cell_id"])


def test_pages_name_every_failing_cell_in_a_footnote(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    df = _write(paths, scenario_dir, out)
    failing = _failing_ids(df)
    assert len(failing) >= 10
    for cid in failing:
        scenario = cid.split(":")[0]
        page = (out / "grids" / "cells" / f"{scenario}.md").read_text(encoding="utf-8")  # linked from the grid page
        assert cid in _footnote_ids(scenario, page), cid


def _footnote_ids(scenario: str, notes: str) -> set[str]:
    """The cell ids a page's footnotes name: `FORMAT` [· `VARIANT`]: `SAVER->LOADER`, … per grid,
    read back the way the page tells a reader to (the form must be unambiguous)."""
    found = set()
    for line in re.findall(r"^   cells \(\d+\): (.*)$", notes, flags=re.M):
        for group in line.split("; "):
            head, _, pairs = group.partition(": ")
            fmt, _, variant = head.partition(" · ")
            for pair in re.findall(r"`([^`]+->[^`]+)`", pairs):
                found.add(f"{scenario}:{fmt.strip('`')}:{pair}:{variant.strip('`') or 'default'}")
    return found


def test_a_page_over_its_size_limit_lists_fewer_ids(paths: Paths, scenario_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base = _frame(paths, scenarios={"custom": report.ScenarioInfo(("default", "custom_objects"))})
    # 40 copies of each loader: footnotes of dozens of cells, as in the full catalog's pages
    df = pd.concat([base.assign(loader=base["loader"] + f"-{i}") for i in range(40)], ignore_index=True)
    full = report.scenario_files(df)["cells/dense.md"]
    monkeypatch.setattr(report, "PAGE_MAX_BYTES", len(full.encode("utf-8")) * 2 // 3)
    short = report.scenario_files(df)["cells/dense.md"]
    assert len(short.encode("utf-8")) <= report.PAGE_MAX_BYTES
    assert re.search(r", \+\d+ more$", short, flags=re.M)
    assert "every cell is in `results.csv.gz` and the site's search" in short
    assert "every cell is in" not in full


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(text: str) -> set[str]:
    return set(re.findall(r'<a name="([^"]+)"></a>', text))


def test_markdown_links_and_anchors_resolve(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    checked = 0
    for page in [out / "README.md", out / "matrix.md", out / "errors.md", *(out / "grids").rglob("*.md")]:
        for link in _LINK.findall(page.read_text(encoding="utf-8")):
            assert not re.match(r"[a-z]+:", link), f"{page.name}: external link {link}"
            target, _, anchor = link.partition("#")
            path = (page.parent / target).resolve() if target else page
            if target.startswith("../docs/"):  # the schema doc lives beside the repo's reports/
                continue
            assert path.exists(), f"{page.name}: {link}"
            if anchor:
                assert anchor in _anchors(path.read_text(encoding="utf-8")), f"{page.name}: {link}"
            checked += 1
    assert checked > 20


def test_sizes_stay_within_limits(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    assert (out / "README.md").stat().st_size <= report.INDEX_MAX_BYTES
    for page in (out / "grids").rglob("*.md"):
        assert page.stat().st_size <= report.PAGE_MAX_BYTES, page.name


def test_stale_files_of_the_set_are_removed(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("an earlier layout\n")
    (out / "notes.txt").write_text("not the report's\n")
    (out / "grids").mkdir()
    (out / "grids" / "gone.md").write_text("a scenario no longer in the table\n")
    _write(paths, scenario_dir, out)
    assert not (out / "results.csv").exists() and not (out / "grids" / "gone.md").exists()
    assert (out / "notes.txt").read_text() == "not the report's\n"
    # a rewrite without the custom scenario removes its page
    store = Store(paths.store)
    for path in store.records_dir.rglob("*custom*"):
        path.unlink()
    report.write_reports(store, out, scenario_dir)
    assert not (out / "grids" / "custom.md").exists() and (out / "grids" / "dense.md").exists()
    got = set(_files(out))  # a table published over another: history/ holds both (tests/test_history.py)
    assert {f for f in got if not f.startswith("history/")} == (SET - {"grids/custom.md"}) | VERDICT_FILES | {
        "grids/cells/dense.md", "notes.txt"}
    assert len(json.loads((out / "history" / "index.json").read_text())["publications"]) == 2


# ------------------------------------------------------------------- what changed


def test_changes_lists_flipped_cells_by_stack_and_category(paths: Paths, scenario_dir: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    store = make_store(paths)
    report.write_reports(store, out, scenario_dir)
    first = (out / "CHANGES.md").read_text(encoding="utf-8")
    assert "Nothing to compare with: there was no previous table" in first
    # a cell that loaded now fails, and a failing cell now loads
    store.write(_load("tf2.4", "tf2.15", "dense", "default", Outcome.LOAD_ERROR,
                      ErrorInfo("builtins.ValueError", "Unknown layer: 'Dense'")))
    store.write(_load("tf2.15", "tf2.4", "dense", "default", Outcome.OK, diff=0.0))
    report.write_reports(store, out, scenario_dir)
    text = (out / "CHANGES.md").read_text(encoding="utf-8")
    assert "| now failing (was ok)                    |       1 |" in text
    assert "| now ok (was failing)                    |       1 |" in text
    assert "- `dense:h5:tf2.4->tf2.15:default`: ok → load_error" in text
    assert "- `dense:h5:tf2.15->tf2.4:default`: load_error [newer_minor_file] → ok" in text
    assert "## By loader stack" in text and "## By category" in text
    loaders = text.split("## By loader stack", 1)[1].split("##", 1)[0]
    assert re.search(r"\| `tf2\.15` +\| +1 \| +0 \|", loaders) and re.search(r"\| `tf2\.4` +\| +0 \| +1 \|", loaders)
    # the site shows the same text
    assert json.dumps(text, ensure_ascii=False)[1:-1] in (out / "data" / "meta.js").read_text(encoding="utf-8")
    # a no-op rewrite keeps it (it describes the last real change)
    report.write_reports(store, out, scenario_dir)
    assert (out / "CHANGES.md").read_text(encoding="utf-8") == text


def test_changes_against_an_unreadable_previous_table(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json.gz").write_bytes(gzip.compress(b"{nope"))
    _write(paths, scenario_dir, out)
    assert "the previous `results.json.gz` was unreadable" in (out / "CHANGES.md").read_text(encoding="utf-8")


def test_changes_against_an_earlier_layouts_plain_results_json(paths: Paths, scenario_dir: Path,
                                                                 tmp_path: Path) -> None:
    """The first publication of results.json.gz compares with the plain results.json the
    folder held (schema 2 then), and removes it: one results file per folder."""
    first, out = tmp_path / "first", tmp_path / "out"
    _write(paths, scenario_dir, first)
    out.mkdir()
    (out / "results.json").write_text(gate.read_results_text(first / "results.json.gz"), encoding="utf-8")
    _write(paths, scenario_dir, out)
    changes = (out / "CHANGES.md").read_text(encoding="utf-8")
    assert "Nothing to compare with" not in changes and "unreadable" not in changes, changes
    assert not (out / "results.json").exists() and (out / "results.json.gz").is_file()


# ------------------------------------------------------------------ heatmap, site


def test_heatmap_svg(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    svg = (out / "heatmap.svg").read_text(encoding="utf-8")
    root = ET.fromstring(svg)  # well-formed
    assert root.tag.endswith("svg")
    assert "<image" not in svg and "@font-face" not in svg and "base64" not in svg
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert {"tf2.4", "tf2.15", "tf2.18"} <= set(texts)
    # tf2.4 -> tf2.4 over every scenario: dense ok, custom crash + load_error (not_applicable excluded)
    assert heatmap.colour(0) == "#440154" and heatmap.colour(1) == "#fde725"
    assert heatmap.text_colour("#440154") == "#ffffff" and heatmap.text_colour("#fde725") == "#000000"
    assert "format h5" in (out / "heatmaps" / "h5.svg").read_text(encoding="utf-8")


def test_symbols_need_no_emoji_font() -> None:
    allowed = [(0x20, 0x7E), (0xA0, 0xFF), (0x2000, 0x206F), (0x2200, 0x22FF), (0x25A0, 0x25FF),
               (0x2713, 0x2713), (0x2717, 0x2717)]
    for ch in [*report.SYMBOLS.values(), report.FIXED_MARK]:
        assert len(ch) == 1 and any(lo <= ord(ch) <= hi for lo, hi in allowed), (ch, hex(ord(ch)))
    assert len(set(report.SYMBOLS.values())) == len(report.SYMBOLS)


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster"):
                self.refs.append((tag, name, value or ""))


def test_site_is_offline_and_complete(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    page = (out / "index.html").read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(page)
    for tag, _name, ref in parser.refs:
        assert not re.match(r"\s*([a-z]+:)?//", ref, re.I), ref
        if not ref.startswith(("#", "data:")):
            assert (out / ref).exists(), (tag, ref)
    for name in ("site/app.js", "site/style.css", "data/meta.js", "data/h5.js"):
        text = (out / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://|@import|url\(", text), name
    app = (out / "site" / "app.js").read_text(encoding="utf-8")
    assert ".innerHTML" not in app and "fetch(" not in app and "eval(" not in app
    meta = (out / "data" / "meta.js").read_text(encoding="utf-8")
    for name in re.findall(r'"(data/[^"]+\.js)"', meta):
        assert (out / name).is_file(), name


def _data(out: Path, name: str) -> Any:
    text = (out / "data" / f"{name}.js").read_text(encoding="utf-8")
    m = re.search(r"^window\.COMPAT_DATA\[(\"[^\"]+\")\] = (.*);$", text, re.M)
    assert m is not None
    return json.loads(m.group(2))


def _s(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def test_site_data_matches_the_table(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    """Decoding data/<format>.js as app.js does gives every table cell's outcome, note and remedy."""
    out = tmp_path / "out"
    df = report.table_cells(_write(paths, scenario_dir, out)).set_index("cell_id")
    meta = _data(out, "meta")
    stacks = [s["id"] for s in meta["stacks"]]
    outcomes = [o["id"] for o in meta["outcomes"]]
    seen = 0
    for fmt in meta["formats"]:
        data = _data(out, fmt)
        tbs = _data(out, f"{fmt}.tb")
        for g in data["grids"]:
            for i, s in enumerate(g["sv"]):
                for j, lo in enumerate(g["lo"]):
                    stride = meta["stride"]
                    o, note, rem, diff, tdiff = g["c"][(i * len(g["lo"]) + j) * stride:][:stride]
                    cid = f"{meta['scenarios'][g['s']]}:{fmt}:{stacks[s]}->{stacks[lo]}:{g['v']}"
                    row = df.loc[cid]
                    cat, _phase, etype, msg, source, tb, prediction, training, why, sig, *bisect = data["notes"][note]
                    assert data["msgs"][sig] == (report.error_signature(row.error_type, row.error_message, row.outcome)
                                                 if _s(row.error_type) or _s(row.error_message) else ""), cid
                    assert bisect == [_s(getattr(row, c, "")) for c in report.site.BISECT_KEYS], cid
                    assert (outcomes[o], cat, etype, source) == (row.outcome, _s(row.category),
                                                                 _s(row.error_type), row.source), cid
                    assert (prediction, training, data["msgs"][why]) == (
                        _s(row.prediction), _s(row.training), _s(row.training_reason)), cid
                    assert (data["diffs"][diff - 1] if diff else None) == (
                        None if _s(row.max_abs_diff) == "" else float(f"{row.max_abs_diff:.3g}")), cid
                    assert (data["diffs"][tdiff - 1] if tdiff else None) == (
                        None if _s(row.training_diff) == "" else float(f"{row.training_diff:.3g}")), cid
                    assert data["msgs"][msg] == _s(row.error_message)
                    assert tbs[tb] == _s(row.traceback_tail)[-report.JSON_TRACEBACK_CHARS:]
                    assert (data["remedies"][rem - 1] if rem else "") == _s(row.remedy)
                    seen += 1
    assert seen == len(df)


def test_site_data_keeps_record_text_as_data(tmp_path: Path, scenario_dir: Path) -> None:
    store = Store(tmp_path / "s")
    nasty = "<!--<script>alert('x')</SCRIPT><b>bold</b> & \"q\"\u2028"
    store.write(Record(record_type="env", cell_id="env:a", stack="a", outcome=Outcome.OK,
                       env=ENVS["tf2.4"]))
    store.write(_save("a", "dense", "h5", Outcome.OK))
    store.write(_load("a", "a", "dense", "default", Outcome.LOAD_ERROR,
                      ErrorInfo("x.Err", nasty, nasty)))
    out = tmp_path / "out"
    report.write_reports(store, out, scenario_dir)
    assert "alert" not in (out / "index.html").read_text(encoding="utf-8")
    data = _data(out, "h5")
    assert nasty in data["msgs"]
    assert _data(out, "h5.tb") == [nasty]


def test_scrubber_with_the_real_environment(tmp_path: Path) -> None:
    store = Store(tmp_path / "st")
    scrub = report._Scrubber(store)
    home = str(Path.home())
    text = f"{store.root}/records/x.json {store.root}/artifacts/a/b/c/model.keras"
    assert scrub(text) == "<store>/records/x.json <artifact>/model.keras"
    if len(home) > 1 and not str(store.root).startswith(home):
        assert scrub(f"{home}/.cache/thing") == "~/.cache/thing"
    assert scrub(None) == ""
    site = "/lib/python3.8/site-packages/keras/x.py"
    other = tmp_path / "elsewhere" / "store"  # a merged part's store, or COMPAT_ENVS_DIR
    assert scrub(f"{store.root}/envs/py3.8-0123abcd4567{site}") == f"<env>{site}"
    assert scrub(f"{other}/envs/py3.8-0123abcd4567{site}") == f"<env>{site}"
    cut = str(store.root)[:-3]  # the worker cut the text inside a path
    assert scrub(f'File "{cut} ...[truncated]') == 'File "<store> ...[truncated]'
    assert scrub("see /usr/li ...[truncated]") == "see /usr/li ...[truncated]"  # no path of this machine


def test_a_mismatch_reason_is_scrubbed_like_an_error(tmp_path: Path) -> None:
    """A mismatch has no exception but a reason, and a reason can quote a TF error with
    its "defined at" stack (the published table had one naming the worker's path)."""
    store = Store(tmp_path / "st")
    repo = Path(report.__file__).resolve().parent.parent
    rec = dataclasses.replace(_load("tf2.4", "tf2.15", "dense", "default", Outcome.MISMATCH, diff=0.5),
                              details={"reason": f'training could not resume: File "{repo}/runner/_worker/worker.py"'})
    row = report._row(rec, report._Scrubber(store))
    assert str(repo) not in json.dumps(row) and "<repo>/runner/_worker/worker.py" in row["error_message"]


def _table_blocks(md: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def test_markdown_tables_keep_their_columns(tmp_path: Path, scenario_dir: Path) -> None:
    """In GitHub Markdown an unescaped ``|`` inside a cell (even in backticks) starts a
    new cell, so every row must have as many unescaped pipes as the header."""
    store = Store(tmp_path / "s")
    store.write(Record(record_type="env", cell_id="env:a", stack="a", outcome=Outcome.OK,
                       env=ENVS["tf2.4"]))
    store.write(Record(record_type="env", cell_id="env:b", stack="b",
                       outcome=Outcome.ENV_UNAVAILABLE,
                       error=ErrorInfo("runner.EnvUnavailable", "pip failed: a | b")))
    store.write(_save("a", "dense", "h5", Outcome.OK))
    store.write(_load("a", "a", "dense", "default", Outcome.MISMATCH, diff=0.5))
    report.write_reports(store, tmp_path / "out", scenario_dir)
    md = "\n\n".join((tmp_path / "out" / n).read_text(encoding="utf-8")
                     for n in ("README.md", "grids/dense.md", "errors.md", "CHANGES.md"))
    blocks = _table_blocks(md)
    assert len(blocks) >= 5  # stacks, legend, summary, overview, one grid
    broken = []
    for block in blocks:
        header = len(re.findall(r"(?<!\\)\|", block[0]))
        broken += [line for line in block[1:] if len(re.findall(r"(?<!\\)\|", line)) != header]
    assert broken == []


def test_terminal_summary(paths: Paths) -> None:
    text = report.terminal_summary(_frame(paths))
    said, *lines = text.splitlines()
    assert said.startswith("30 grid cells — load and match: 3 (ok), of which trained models that resume "
                           "training: 1; predictions differ: 1 "
                           "(mismatch); predictions match, training does not resume: 1 (training_mismatch) — "
                           "optimizer state lost: 1;"), said
    assert said.endswith("; not run: 3 (not_run), of which not final (timed out below the full limit): 1."), said
    header = lines[0].split()
    assert header[0] == "loader"
    assert header[1:] == [o for o in report.SYMBOLS if o in set(EXPECTED_OUTCOMES)]
    body = {ln.split()[0]: [int(x) for x in ln.split()[1:]] for ln in lines[2:]}
    assert list(body) == ["tf2.4", "tf2.15", "tf2.18", "all"]
    assert sum(body["all"]) == 30
    assert [sum(v) for k, v in body.items() if k != "all"] == [10, 10, 10]


EXPECTED_OUTCOMES = {o for outs in EXPECTED.values() for o in outs}


def test_pair_overview_rounds_down_and_skips_impossible_cells() -> None:
    rows = ([{"saver": "a", "loader": "b", "outcome": "ok"}] * 199
            + [{"saver": "a", "loader": "b", "outcome": "load_error"}]
            + [{"saver": "b", "loader": "a", "outcome": "not_applicable"}] * 3
            + [{"saver": "b", "loader": "b", "outcome": "ok"}] * 2
            + [{"saver": "a", "loader": "a", "outcome": "save_error"}])
    table = report._pair_overview(pd.DataFrame(rows), "github").splitlines()
    assert [c.strip() for c in table[2].strip("|").split("|")] == ["**a**", "0", "99"]  # 199/200
    assert [c.strip() for c in table[3].strip("|").split("|")] == ["**b**", "–", "100"]


def test_pair_overview_of_a_wide_catalog_fits_the_index() -> None:
    """The index holds the overview once for all formats and once per format: with 45
    stacks and 7 formats the padded tables alone were over GitHub's limit (the republish of
    41 stacks: 217 kB). Unpadded, each row is one cell per loader and every row has as many
    cells as the header."""
    stacks = [f"keras3.{i}-jax0.4" for i in range(45)]
    rows = [{"saver": s, "loader": lo, "outcome": "ok" if (i + j) % 3 else "load_error"}
            for i, s in enumerate(stacks) for j, lo in enumerate(stacks)]
    table = report._pair_overview(pd.DataFrame(rows), "github")
    lines = table.splitlines()
    assert len(lines) == 2 + len(stacks)
    assert {line.count("|") for line in lines} == {len(stacks) + 2}
    assert lines[1] == "|:--" + "|--:" * len(stacks) + "|"
    padded = tabulate([ln.strip("|").split("|") for ln in lines[2:]], headers=lines[0].strip("|").split("|"),
                      tablefmt="github")
    assert 8 * len(table.encode()) < report.INDEX_MAX_BYTES // 2 < 8 * len(padded.encode()), len(table)


# ------------------------------------------------------- report integrity (issue 23 item 7)


def test_unusable_record_files_are_skipped_and_named(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    """A wrong-typed field, a stray .json and a stray copy of a record are skipped (the
    report names them), never a traceback; every other cell is as before."""
    out, clean = tmp_path / "out", tmp_path / "clean"
    want = _write(paths, scenario_dir, clean)
    store = Store(paths.store)
    victim = next(p for p in sorted(store.records_dir.rglob("*__default.json")) if "/load/" in p.as_posix())
    data = json.loads(victim.read_text())
    victim.write_text(json.dumps({**data, "warnings": 5}))
    (store.records_dir / "notes.json").write_text('{"a": 1}')
    (store.records_dir / "stray" / "x.json").parent.mkdir()
    (store.records_dir / "stray" / "x.json").write_text("{")
    copy = victim.with_name("copy__" + victim.name)
    copy.write_text(json.dumps(data))
    df = report.write_reports(store, out, scenario_dir)
    skipped = dict(df.attrs["skipped"])
    assert sorted(skipped) == sorted(p.relative_to(store.root).as_posix() for p in
                                     (victim, copy, store.records_dir / "notes.json",
                                      store.records_dir / "stray" / "x.json"))
    assert "field 'warnings' is int" in skipped[victim.relative_to(store.root).as_posix()]
    assert "whose file is records/" in skipped[copy.relative_to(store.root).as_posix()]
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "**4 record file(s) of this selection could not be used" in readme
    assert str(paths.store) not in readme
    gone = data["cell_id"]
    assert list(df["cell_id"]) == list(want["cell_id"])
    assert list(df.loc[df["cell_id"] == gone, "source"]) == ["none"]  # not_run: its record is not used
    keep_df, keep_want = df[df["cell_id"] != gone], want[want["cell_id"] != gone]
    assert list(keep_df["outcome"]) == list(keep_want["outcome"])


def test_record_types_are_checked(tmp_path: Path) -> None:
    from runner.records import RecordError

    rec = Record(record_type="load", cell_id="c", stack="s", outcome=Outcome.OK).to_dict()
    for field, value in (("error", "boom"), ("warnings", 5), ("warnings", ["w"]), ("env", []),
                         ("max_abs_diff", "0.1"), ("duration_s", True), ("scenario", 3),
                         ("details", "x"), ("error", {"type": 1}), ("outcome", ["ok"])):
        with pytest.raises(RecordError):
            Record.from_dict({**rec, field: value})
    assert Record.from_dict({**rec, "max_abs_diff": 1, "error": None, "warnings": None}).max_abs_diff == 1.0


def test_a_rewrite_is_a_swapped_in_plain_folder(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    """The report is written beside the folder and swapped in: a plain directory with the
    report's files and the user's, its mode kept, nothing left beside it."""
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    first = _files(out)
    out.chmod(0o750)
    (out / "notes.txt").write_text("mine\n")
    (out / "matrix.md").unlink()  # something to write (a rewrite that changes no byte touches nothing)
    inode = out.stat().st_ino
    _write(paths, scenario_dir, out)
    assert out.stat().st_ino != inode and out.is_dir() and not out.is_symlink()
    assert oct(out.stat().st_mode & 0o777) == oct(0o750)
    assert _files(out) == {**first, "notes.txt": b"mine\n"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_report_folder_behind_a_symlink_keeps_the_link(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "reports"
    target.mkdir(parents=True)
    link = tmp_path / "out"
    link.symlink_to(target)
    _write(paths, scenario_dir, link)
    assert link.is_symlink() and (target / "README.md").is_file() and not target.is_symlink()


def test_without_rename_exchange_the_old_folder_is_renamed_aside(paths: Paths, scenario_dir: Path,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    first = _files(out)
    monkeypatch.setattr(report, "_renameat2", None)
    (out / "README.md").write_text("changed")
    _write(paths, scenario_dir, out)
    assert _files(out) == first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


# ------------------------------------------ two facts, and timeouts that are not final


def test_the_two_facts_are_columns_and_the_headline_says_which_is_which(
        paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    df = _write(paths, scenario_dir, out).set_index("cell_id")
    lost = df.loc["custom:h5:tf2.4->tf2.15:custom_objects"]
    assert (lost.outcome, lost.prediction, lost.training, lost.training_diff, lost.max_abs_diff) == (
        "training_mismatch", "match", "state_lost", 0.03125, 0.0)
    assert lost.training_reason == STATE_LOST and lost.category == "optimizer_state_lost"
    resumed = df.loc["dense:h5:tf2.4->tf2.4:default"]
    assert (resumed.outcome, resumed.prediction, resumed.training, resumed.training_reason) == (
        "ok", "match", "resumed", "")
    differ = df.loc["dense:h5:tf2.15->tf2.15:default"]
    assert (differ.outcome, differ.prediction, differ.training) == ("mismatch", "differ", "")
    _said, rows = _csv(out)
    csv_lost = next(r for r in rows if r["cell_id"] == "custom:h5:tf2.4->tf2.15:custom_objects")
    assert {k: csv_lost[k] for k in ("outcome", "max_abs_diff", "prediction", "training", "training_diff")} == {
        "outcome": "training_mismatch", "max_abs_diff": "0.0", "prediction": "match", "training": "state_lost",
        "training_diff": "0.03125"}
    data = json.loads(gate.read_results_text(out / "results.json.gz"))
    assert data["schema_version"] == 4
    row = next(r for r in gate.results_rows(data) if r["cell_id"] == "custom:h5:tf2.4->tf2.15:custom_objects")
    assert (row["outcome"], row["prediction"], row["training"], row["training_diff"]) == (
        "training_mismatch", "match", "state_lost", 0.03125)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "predictions differ: 1 (`mismatch`); predictions match, training does not resume: 1 " \
           "(`training_mismatch`) — optimizer state lost: 1" in readme
    assert _data(out, "meta")["headline"] == report.headline(_frame(paths, scenarios={
        "custom": report.ScenarioInfo(("default", "custom_objects"), True)}))


def test_a_timeout_below_the_full_limit_is_not_final(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    """Interrupted at the adaptive 12 s limit, never confirmed at the full 60 s one: the
    report shows not_run with why, no category, and it verifies no remedy."""
    out = tmp_path / "out"
    df = _write(paths, scenario_dir, out).set_index("cell_id")
    cell = df.loc["custom:h5:tf2.15->tf2.15:custom_objects"]
    assert (cell.outcome, cell.category, cell.error_type, cell.source) == ("not_run", "", "", "load")
    assert cell.error_message == "not final: timed out at the adaptive 12 s limit, not confirmed at the full 60 s limit"
    held = df.loc["custom:h5:tf2.4->tf2.15:default"]  # no full_limit_s recorded: it held
    assert (held.outcome, held.category) == ("timeout", "timeout_full_limit")
    page = (out / "grids" / "custom.md").read_text(encoding="utf-8")
    assert "`not final: timed out at the adaptive 12 s limit, not confirmed at the full 60 s limit`" in page
    base = report.not_final_reason(make_records(paths)[-1])
    assert base is not None and base.startswith(report.NOT_FINAL)
    for details in ({"limit_s": 60.0, "full_limit_s": 60.0}, {"limit_s": 12.0, "full_limit_s": 60.0,
                                                              "confirmed_by": "x"},
                    {"limit_s": 12.0, "full_limit_s": 60.0, "first_in_worker": True}, {}):
        rec = dataclasses.replace(make_records(paths)[-1], details=details)
        assert report.not_final_reason(rec) is None, details


def test_a_remedy_that_timed_out_below_the_full_limit_verifies_nothing(tmp_path: Path, scenario_dir: Path) -> None:
    store = Store(tmp_path / "s")
    for sid in ("tf2.15", "tf2.16"):  # the sibling's loads are remedy runs of tf2.16's cells
        store.write(Record(record_type="env", cell_id=f"env:{sid}", stack=sid, outcome=Outcome.OK,
                           env={**ENVS["tf2.15"], "keras": "3.0.5" if sid == "tf2.16" else "2.15.0"}))
    store.write(_save("tf2.15", "dense", "h5", Outcome.OK))
    store.write(_load("tf2.15", "tf2.16", "dense", "default", Outcome.TIMEOUT,
                      ErrorInfo("runner.timeout", "cell exceeded its 60 s limit"), details={"limit_s": 60.0,
                                                                                           "full_limit_s": 60.0}))
    sibling = _load("tf2.15", "tf2.16-tfkeras", "dense", "default", Outcome.TIMEOUT,
                    ErrorInfo("runner.timeout", "cell exceeded its 12 s limit"), details=BELOW_FULL)
    store.write(sibling)
    from runner.stacks import Stack

    catalog = [Stack(id="tf2.16-tfkeras", python="3.11", requirements=("x",), sibling_of="tf2.16",
                     remedy="tf_keras")]
    df = report.build_frame(store.iter_records(), report._Scrubber(store),
                            siblings=report.diagnose.sibling_map(catalog)).set_index("cell_id")
    assert df.loc["dense:h5:tf2.15->tf2.16:default", "remedy"] == ""
    store.write(dataclasses.replace(sibling, outcome=Outcome.OK, error=None, details={}))
    df = report.build_frame(store.iter_records(), report._Scrubber(store),
                            siblings=report.diagnose.sibling_map(catalog)).set_index("cell_id")
    assert df.loc["dense:h5:tf2.15->tf2.16:default", "remedy"] == "fixed by tf_keras in tf2.16-tfkeras (verified)"


def test_a_v2_store_is_reported_with_the_two_facts(tmp_path: Path, scenario_dir: Path) -> None:
    """Records written before schema 3 (a training verdict recorded as mismatch, its step's
    max |diff| in max_abs_diff) are read as training_mismatch with the facts apart."""
    store = Store(tmp_path / "s")
    store.write(Record(record_type="env", cell_id="env:a", stack="a", outcome=Outcome.OK, env=ENVS["tf2.15"]))
    store.write(_save("a", "dense", "h5", Outcome.OK))
    v2 = {**_load("a", "a", "dense", "default", Outcome.MISMATCH, diff=0.0123).to_dict(), "schema_version": 2}
    v2["details"] = {"reason": STATE_LOST, "check": "optimizer_state", "loaded_class": "Sequential"}
    path = store.load_record_path("a", "a", "dense", "h5", "default")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(v2), encoding="utf-8")
    df = report.write_reports(store, tmp_path / "out", scenario_dir).set_index("cell_id")
    row = df.loc["dense:h5:a->a:default"]
    assert (row.outcome, row.prediction, row.training, row.training_diff, row.category) == (
        "training_mismatch", "match", "state_lost", 0.0123, "optimizer_state_lost")
    assert row.max_abs_diff is None or math.isnan(row.max_abs_diff)  # overwritten by v2: unknown


def test_changes_name_a_prediction_regression_of_a_failing_cell(paths: Paths, scenario_dir: Path,
                                                                tmp_path: Path) -> None:
    """A trained model whose training did not resume (predictions matched) whose predictions
    now differ: a regression of the prediction fact, listed as such, not as 'failure changed'."""
    out = tmp_path / "out"
    store = make_store(paths)
    report.write_reports(store, out, scenario_dir)
    store.write(_load("tf2.4", "tf2.15", "custom", "custom_objects", Outcome.MISMATCH, diff=0.5,
                      details={"prediction": "differ", "training": "not_checked"}))
    report.write_reports(store, out, scenario_dir)
    text = (out / "CHANGES.md").read_text(encoding="utf-8")
    assert re.search(r"\| predictions no longer match +\| +1 \|", text), text
    assert re.search(r"\| failure changed +\| +0 \|", text), text
    assert ("- `custom:h5:tf2.4->tf2.15:custom_objects`: training_mismatch [optimizer_state_lost] → mismatch "
            "[numerical_mismatch]") in text


@pytest.mark.faults  # end to end: real stack venvs of the fake frameworks, the real runner
def test_a_matrix_of_a_trained_scenario_records_and_reports_both_facts(tmp_path: Path, fake_envs_dir: Path) -> None:
    """Fake stacks that load a trained model and resume training (fk2.15), come back with a
    fresh optimizer (fk3.9), or cannot train (fk3.5): the records, the CSV and the README say
    which fact failed, with the predictions' max |diff| kept."""
    import shutil
    import subprocess
    import sys

    import e2e

    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    shutil.copy2(Path(e2e.FAKES) / "trained" / "trained_mlp.py", scenarios / "trained_mlp.py")
    catalog = e2e.write_catalog(tmp_path / "catalog.toml", {
        "fk3.9": {"load": "drop_optimizer"},
        "fk3.5": {"fit": {"action": "raise", "match": "model.", "arg": "fit is not implemented here"}}})
    store, out = tmp_path / "store", tmp_path / "out"
    argv = [sys.executable, "-m", "runner", "matrix", "--catalog", str(catalog), "--scenario-dir", str(scenarios),
            "--formats", "h5,keras", "--store", str(store), "--out", str(out), "--load-timeout", "20"]
    proc = subprocess.run(argv, cwd=e2e.REPO, env=e2e.runner_env(fake_envs_dir), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, e2e.describe(proc)
    loads = {cid: r for cid, r in e2e.records_by_id(store).items() if "->" in cid}
    assert len(loads) == 18 and all(r["schema_version"] == 4 for r in loads.values())
    by_loader: dict[str, set[tuple[str, str, str]]] = {}
    for r in loads.values():
        by_loader.setdefault(r["loader"], set()).add((r["outcome"], r["details"].get("prediction"),
                                                       r["details"].get("training")))
        assert r["max_abs_diff"] == 0.0, r  # the predictions' own, never the training step's
    assert by_loader == {"fk2.15": {("ok", "match", "resumed")},
                         "fk3.5": {("training_mismatch", "match", "cannot_resume")},
                         "fk3.9": {("training_mismatch", "match", "state_lost")}}
    rows = list(csv.DictReader(io.StringIO(gzip.decompress((out / "results.csv.gz").read_bytes()).decode())))
    assert {(r["loader"], r["outcome"], r["prediction"], r["training"]) for r in rows} == {
        ("fk2.15", "ok", "match", "resumed"), ("fk3.5", "training_mismatch", "match", "cannot_resume"),
        ("fk3.9", "training_mismatch", "match", "state_lost")}
    lost = [r for r in rows if r["loader"] == "fk3.9"]
    assert all(float(r["training_diff"]) > 0 and "step count is 1, expected 2" in r["training_reason"]
               and r["category"] == "optimizer_state_lost" for r in lost)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert ("predictions differ: 0 (`mismatch`); predictions match, training does not resume: 12 "
            "(`training_mismatch`) — optimizer state lost: 6, training cannot run: 6") in readme
    # final outcomes: a second run recomputes none of them (no load record is rewritten)
    stamps = {p: p.stat().st_mtime_ns for p in (store / "records" / "load").rglob("*.json")}
    again = subprocess.run(argv, cwd=e2e.REPO, env=e2e.runner_env(fake_envs_dir), capture_output=True, text=True,
                           timeout=600, check=False)
    assert again.returncode == 0, e2e.describe(again)
    assert {p: p.stat().st_mtime_ns for p in (store / "records" / "load").rglob("*.json")} == stamps
    gate_proc = subprocess.run([sys.executable, "-m", "runner", "gate", "--baseline", str(out / "results.json.gz"),
                                "--store", str(store)], cwd=e2e.REPO, env=e2e.runner_env(fake_envs_dir),
                               capture_output=True, text=True, timeout=300, check=False)
    assert gate_proc.returncode == 0 and "gate: pass: 0 regression(s)" in gate_proc.stdout, e2e.describe(gate_proc)


def test_scenario_descriptions_from_the_docstrings(tmp_path: Path) -> None:
    """Each scenario's one-line description is its docstring's summary (first paragraph, joined
    when it wraps); every scenario of the catalogue has one; files without one are left out."""
    assert report.scenario_summary("First line,\nwrapped on.\n\nDetails.") == "First line, wrapped on."
    docs = report.scenario_docs(report.DEFAULT_SCENARIOS)
    names = {p.stem for p in report.DEFAULT_SCENARIOS.glob("*.py") if not p.name.startswith("_")}
    assert set(docs) == names and all(docs.values())
    assert docs["cnn"] == "Small CNN: Conv2D, MaxPooling2D, BatchNormalization (moving stats), Flatten, Dense."
    assert docs["sequential_input_shape"].endswith("compiled with a string optimizer and loss, never trained.")
    (tmp_path / "nodoc.py").write_text("X = 1\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    (tmp_path / "_helper.py").write_text('"""A helper."""\n')
    assert report.scenario_docs(tmp_path) == {}
