"""The regression gate: cell-by-cell comparison, the expected-failures file, exit codes."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import run

from runner import gate

REPO = Path(__file__).resolve().parent.parent


def _cell(cid: str, outcome: str, *, category: str = "", message: str = "") -> dict[str, Any]:
    scenario, fmt, rest = cid.split(":", 2)
    saver, rest = rest.split("->")
    loader, variant = rest.split(":")
    return {"cell_id": cid, "scenario": scenario, "format": fmt, "saver": saver, "loader": loader,
            "variant": variant, "outcome": outcome, "category": category,
            "error_type": "builtins.ValueError" if message else "", "error_message": message}


def _results(path: Path, *cells: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "columns": [], "cells": list(cells)}))
    return path


A = "dense:h5:tf2.15->tf2.21:default"
B = "lstm:h5:tf2.15->tf2.21:default"
C = "dense:keras:tf2.18->tf2.15:default"
D = "dense:savedmodel:tf2.15->keras3.15-jax:default"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    old = _results(tmp_path / "old.json",
                   _cell(A, "ok"), _cell(B, "ok"), _cell(C, "load_error", category="keras3_config_in_keras2",
                                                         message="batch_shape"),
                   _cell(D, "load_error", category="keras3_rejects_savedmodel", message="File format"))
    new = _results(tmp_path / "new.json",
                   _cell(A, "ok"),
                   _cell(B, "load_error", category="keras2_h5_time_major", message="time_major"),
                   _cell(C, "ok"),
                   _cell(D, "mismatch", category="numerical_mismatch"))
    return old, new


def test_compare_finds_regressions_fixes_and_changes(pair: tuple[Path, Path]) -> None:
    res = gate.compare(gate.load_results(pair[0]), gate.load_results(pair[1]))
    assert [n.cell_id for _, n in res.regressions] == [B]
    assert [n.cell_id for _, n in res.fixed] == [C]
    assert [n.cell_id for _, n in res.changed] == [D]
    assert res.failed


def _expected(path: Path, until: str, **match: str) -> Path:
    lines = ["[[expected]]", *[f'{k} = "{v}"' for k, v in match.items()],
             'reason = "tf2.21 Keras 3 cannot read Keras 2 LSTM h5 (keras#19282)"', f"until = {until}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_exit_codes_and_expiry(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    old, new = pair
    res = run("gate", "--baseline", old, "--current", new)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"REGRESSIONS (passed in the baseline, fail now, not expected): 1\n  {B}" in res.stdout
    assert "newly passing: 1" in res.stdout and "changed failure: 1" in res.stdout

    allow = _expected(tmp_path / "ef.toml", "2027-03-01", scenario="lstm", loader="tf2.2*", format="h5",
                      category="keras2_h5_time_major")
    res = run("gate", "--baseline", old, "--current", new, "--expected-failures", allow, "--today", "2027-02-01")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "expected failures (regressions excused by an entry): 1" in res.stdout
    assert "gate: pass" in res.stdout

    res = run("gate", "--baseline", old, "--current", new, "--expected-failures", allow, "--today", "2027-03-02")
    assert res.returncode == 1, res.stdout
    assert "EXPIRED expected-failure entries" in res.stdout
    assert "(expired expected-failure #1, until 2027-03-01)" in res.stdout


def test_entry_must_match_the_category(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    allow = _expected(tmp_path / "ef.toml", "2099-01-01", scenario="lstm", category="some_other_cause")
    res = gate.compare(gate.load_results(pair[0]), gate.load_results(pair[1]), gate.load_expected(allow))
    assert res.failed and [e.index for e in res.unused] == [1]


@pytest.mark.parametrize(("text", "fragment"), [
    ('[[expected]]\nscenario = "x"\nuntil = 2027-01-01\n', "entry #1: missing required key 'reason'"),
    ('[[expected]]\nscenario = "x"\nreason = "r"\n', "entry #1: missing required key 'until'"),
    ('[[expected]]\nscenario = "x"\nreason = "r"\nuntil = "soon"\n', "'until' must be a TOML date"),
    ('[[expected]]\nscenario = "x"\nreason = "r"\nuntil = 2027-01-01\nloadr = "y"\n', "unknown key 'loadr'"),
    ('[[expected]]\nreason = "r"\nuntil = 2027-01-01\n', "matches every cell"),
    ('[[expected]\n', "not valid TOML"),
    ('[[expectd]]\nreason = "r"\n', "unknown top-level key 'expectd'"),
], ids=["no_reason", "no_until", "bad_until", "unknown_key", "matches_all", "bad_toml", "bad_top"])
def test_bad_expected_failures_file_is_exit_2(tmp_path: Path, pair: tuple[Path, Path], text: str,
                                              fragment: str) -> None:
    bad = tmp_path / "ef.toml"
    bad.write_text(text)
    res = run("gate", "--baseline", pair[0], "--current", pair[1], "--expected-failures", bad)
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("runner: error: ") and fragment in lines[0], lines[0]


@pytest.mark.parametrize("args", [
    ["gate", "--baseline", "{missing}", "--current", "{new}"],
    ["gate", "--baseline", "{notjson}", "--current", "{new}"],
    ["gate", "--baseline", "{new}", "--current", "{new}", "--today", "tomorrow"],
    ["matrix", "--stacks", "tf2.15", "--baseline", "{missing}", "--store", "{store}"],
], ids=["missing_baseline", "not_json", "bad_today", "matrix_missing_baseline"])
def test_bad_baseline_is_exit_2_before_anything_runs(tmp_path: Path, pair: tuple[Path, Path],
                                                     args: list[str]) -> None:
    notjson = tmp_path / "notjson.json"
    notjson.write_text("{nope")
    values = {"{missing}": str(tmp_path / "missing.json"), "{new}": str(pair[1]), "{notjson}": str(notjson),
              "{store}": str(tmp_path / "store")}
    res = run(*[values.get(a, a) for a in args])
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("runner: error: ")
    assert not (tmp_path / "store").exists()


def test_shipped_expected_failures_file_is_valid() -> None:
    entries = gate.load_expected(REPO / "expected_failures.toml")
    for entry in entries:
        assert entry.reason and isinstance(entry.until, datetime.date)


def test_published_table_against_itself_passes() -> None:
    published = REPO / "reports" / "results.json"
    if not published.is_file():
        pytest.skip("no published table")
    cells = gate.load_results(published)
    res = gate.compare(cells, cells)
    assert not res.failed and not res.fixed and not res.changed
