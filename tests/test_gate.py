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


def _published() -> Path:
    """The committed table's results file (results.json.gz; a plain results.json before it)."""
    found = [p for p in (REPO / "reports" / gate.RESULTS_JSON, REPO / "reports" / "results.json") if p.is_file()]
    assert found, "reports/ holds no results file: the published table is part of the repository"
    return found[0]


def test_published_table_against_itself_passes() -> None:
    published = _published()
    cells = gate.load_results(published)
    res = gate.compare(cells, cells)
    assert not res.failed and not res.fixed and not res.changed


# ------------------------------------------------------------------ coverage: --partial

STACKS = ("tf2.15", "tf2.18", "tf2.21", "keras3.15-jax")
SCENARIOS = ("dense", "lstm", "cnn")
FORMATS = ("h5", "keras")


def _grid(stacks: tuple[str, ...] = STACKS, scenarios: tuple[str, ...] = SCENARIOS,
          formats: tuple[str, ...] = FORMATS) -> list[dict[str, Any]]:
    """Every (scenario, format, saver, loader) cell of a selection, all ok."""
    return [_cell(f"{sc}:{fmt}:{s}->{lo}:default", "ok")
            for sc in scenarios for fmt in formats for s in stacks for lo in stacks]


@pytest.fixture
def big(tmp_path: Path) -> Path:
    return _results(tmp_path / "baseline.json", *_grid())  # 96 cells


@pytest.mark.parametrize("n", [0, 3])
def test_comparing_almost_nothing_is_exit_3(tmp_path: Path, big: Path, n: int) -> None:
    current = _results(tmp_path / "current.json", *_grid()[:n])
    res = run("gate", "--baseline", big, "--current", current)
    assert res.returncode == gate.EXIT_INCOMPLETE == 3, res.stdout + res.stderr
    assert "gate: selection: the whole baseline (no --partial) -> 96 of the baseline's 96 cells required" in res.stdout
    assert (f"gate: compared {n} baseline cell(s) with the current run ({n} of the 96 required); "
            f"missing from the current run: {96 - n}; current cells without a baseline: 0") in res.stdout
    assert f"gate: INCOMPLETE: {96 - n} of 96 required baseline cells missing; name the intended subset" in res.stdout
    assert "gate: pass" not in res.stdout
    assert res.stdout.rstrip().endswith(f"compared {n}, missing {96 - n} (INCOMPLETE)")
    # --partial does not rescue a run that compared nothing
    res = run("gate", "--baseline", big, "--current", current, "--partial")
    assert res.returncode == 3, res.stdout
    if n == 0:
        assert "gate: INCOMPLETE: the current results have no cells" in res.stdout


def test_empty_baseline_is_exit_3(tmp_path: Path) -> None:
    empty = _results(tmp_path / "empty.json")
    res = run("gate", "--baseline", empty, "--current", empty)
    assert res.returncode == 3, res.stdout
    assert "compared 0 baseline cell(s)" in res.stdout


def test_partial_subset_passes_and_says_what_it_compared(tmp_path: Path, big: Path) -> None:
    sub = ("tf2.15", "tf2.18")
    current = _results(tmp_path / "current.json", *_grid(stacks=sub))  # 3 x 2 x 2 x 2 = 24 cells
    whole = run("gate", "--baseline", big, "--current", current)
    assert whole.returncode == 3 and "missing from the current run: 72" in whole.stdout, whole.stdout

    derived = run("gate", "--baseline", big, "--current", current, "--partial")
    assert derived.returncode == 0, derived.stdout + derived.stderr
    assert ("gate: selection: --partial: stacks=tf2.15,tf2.18 (from the current results); "
            "scenarios=all 3 of the baseline's (from the current results); formats=all 2 of the baseline's "
            "(from the current results) -> 24 of the baseline's 96 cells required") in derived.stdout
    assert "gate: compared 24 baseline cell(s) with the current run (24 of the 24 required); " \
           "missing from the current run: 0" in derived.stdout
    assert "gate: pass: 0 regression(s)" in derived.stdout

    named = run("gate", "--baseline", big, "--current", current, "--partial", "stacks=tf2.1*")
    assert named.returncode == 0, named.stdout
    assert ("gate: selection: --partial: stacks=tf2.1* (from --partial); scenarios=* (all of the baseline's); "
            "formats=* (all of the baseline's) -> 24 of the baseline's 96 cells required") in named.stdout

    # a new stack of the run that the baseline does not have: compared where both are, noted
    new = _results(tmp_path / "new.json", *_grid(stacks=(*sub, "prod")))
    res = run("gate", "--baseline", big, "--current", new, "--partial", "stacks=prod,tf2.15,tf2.18")
    assert res.returncode == 0, res.stdout
    assert "gate: note: stacks=prod matches no cell of the baseline" in res.stdout
    assert "(24 of the 24 required); missing from the current run: 0; current cells without a baseline: 30" \
        in res.stdout


def test_partial_fails_on_cells_missing_inside_the_subset(tmp_path: Path, big: Path) -> None:
    gone = "lstm:keras:tf2.18->tf2.15:default"
    cells = [c for c in _grid(stacks=("tf2.15", "tf2.18")) if c["cell_id"] != gone]
    current = _results(tmp_path / "current.json", *cells)
    for partial in (["--partial"], ["--partial", "stacks=tf2.15,tf2.18"],
                    ["--partial", "stacks=tf2.15,tf2.18", "--partial", "scenarios=lstm"]):
        res = run("gate", "--baseline", big, "--current", current, *partial)
        assert res.returncode == 3, (partial, res.stdout)
        assert f"gate: MISSING (cells of the selection the current run does not have): 1\n  {gone}" in res.stdout
        assert "gate: INCOMPLETE: 1 of " in res.stdout
        assert "the run does not cover the subset named by --partial" in res.stdout
    # a subset that the run does cover
    res = run("gate", "--baseline", big, "--current", current, "--partial", "stacks=tf2.15,tf2.18",
              "--partial", "scenarios=dense,cnn")
    assert res.returncode == 0, res.stdout
    assert "(16 of the 16 required)" in res.stdout


def test_a_subset_the_run_does_not_have_at_all_fails(tmp_path: Path, big: Path) -> None:
    current = _results(tmp_path / "current.json", *_grid(stacks=("tf2.15",)))
    res = run("gate", "--baseline", big, "--current", current, "--partial", "stacks=keras3*")
    assert res.returncode == 3, res.stdout
    assert "missing from the current run: 6" in res.stdout
    res = run("gate", "--baseline", big, "--current", current, "--partial", "formats=onnx")
    assert res.returncode == 3, res.stdout
    assert "gate: note: formats=onnx matches no cell of the baseline" in res.stdout
    assert "gate: INCOMPLETE: the selection matches no baseline cell" in res.stdout


def test_regressions_come_before_incompleteness(tmp_path: Path, big: Path) -> None:
    broken = [_cell(A.replace("tf2.21", "tf2.18"), "load_error", message="boom")]
    current = _results(tmp_path / "current.json", *broken)
    res = run("gate", "--baseline", big, "--current", current)
    assert res.returncode == 1, res.stdout
    assert "REGRESSIONS (passed in the baseline, fail now, not expected): 1" in res.stdout
    assert "gate: INCOMPLETE: 95 of 96" in res.stdout
    assert res.stdout.rstrip().endswith("(INCOMPLETE)")


def test_expected_failures_still_excuse_inside_a_partial_run(tmp_path: Path, big: Path) -> None:
    cells = _grid(stacks=("tf2.15", "tf2.18"))
    victim = "lstm:h5:tf2.15->tf2.18:default"
    cells = [c if c["cell_id"] != victim else _cell(victim, "load_error", category="keras2_h5_time_major",
                                                     message="time_major") for c in cells]
    current = _results(tmp_path / "current.json", *cells)
    allow = _expected(tmp_path / "ef.toml", "2027-03-01", scenario="lstm", loader="tf2.1*", format="h5",
                      category="keras2_h5_time_major")
    res = run("gate", "--baseline", big, "--current", current, "--partial", "--expected-failures", allow,
              "--today", "2027-02-01")
    assert res.returncode == 0, res.stdout
    assert f"expected failures (regressions excused by an entry): 1\n  {victim}" in res.stdout
    res = run("gate", "--baseline", big, "--current", current, "--partial", "--expected-failures", allow,
              "--today", "2027-03-02")
    assert res.returncode == 1 and "EXPIRED expected-failure entries" in res.stdout, res.stdout


def test_remedy_runs_of_the_baseline_are_not_required(tmp_path: Path) -> None:
    remedy = {**_cell("dense:h5:tf2.15->tf2.21:compile_false", "ok"), "source": "remedy"}
    failing = _cell(A, "load_error", category="compile_config", message="compile")
    old = _results(tmp_path / "old.json", failing, remedy, _cell(B, "ok"))
    new = _results(tmp_path / "new.json", _cell(A, "ok"), _cell(B, "ok"))  # fixed: no remedy run any more
    res = run("gate", "--baseline", old, "--current", new)
    assert res.returncode == 0, res.stdout
    assert "-> 2 of the baseline's 3 cells required" in res.stdout
    assert "gate: baseline remedy runs not repeated: 1" in res.stdout
    assert "newly passing: 1" in res.stdout


@pytest.mark.parametrize(("partial", "fragment"), [
    (["--partial", "stack=tf2.15"], "expected DIM=A,B with DIM one of stacks, scenarios, formats"),
    (["--partial", "tf2.15"], "expected DIM=A,B"),
    (["--partial", "stacks="], "no stacks named"),
    (["--partial", "stacks=a", "--partial", "stacks=b"], "given twice"),
], ids=["unknown_dim", "no_dim", "no_values", "twice"])
def test_bad_partial_is_exit_2(tmp_path: Path, pair: tuple[Path, Path], partial: list[str],
                               fragment: str) -> None:
    res = run("gate", "--baseline", pair[0], "--current", pair[1], *partial)
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("runner: error: --partial") and fragment in lines[0], lines[0]


def test_matrix_partial_needs_a_baseline_and_writes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    res = run("matrix", "--stacks", "tf2.15", "--partial", "--store", store)
    assert res.returncode == 2 and res.stderr.startswith("runner: error: --partial needs --baseline"), res.stderr
    assert not store.exists()


def _matrix_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
                 current: list[dict[str, Any]]) -> tuple[int, str]:
    """The matrix path as cli.py runs it: parse, prepare before the run, gate the report's results."""
    import io

    from runner.cli import _parser
    monkeypatch.chdir(tmp_path)  # no expected_failures.toml picked up by default
    args = _parser().parse_args(["matrix", *argv])
    prepared = gate.prepare(args)
    assert prepared is not None
    out = io.StringIO()
    code = gate.run_gate(prepared, gate.load_results(_results(tmp_path / "out.json", *current)), out)
    return code, out.getvalue()


def test_matrix_bare_partial_is_the_matrix_selection(tmp_path: Path, big: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sub = ("tf2.15", "tf2.18")
    base = ["--stacks", ",".join(sub), "--baseline", str(big)]
    code, out = _matrix_gate(tmp_path, monkeypatch, base, _grid(stacks=sub))
    assert code == 3 and "name the intended subset: --partial" in out, out

    code, out = _matrix_gate(tmp_path, monkeypatch, [*base, "--partial"], _grid(stacks=sub))
    assert code == 0, out
    assert ("gate: selection: --partial: stacks=tf2.15,tf2.18 (from the matrix's --stacks / --tags); "
            "scenarios=* (all of the baseline's); formats=* (all of the baseline's) -> 24 of the baseline's "
            "96 cells required") in out
    assert "(24 of the 24 required); missing from the current run: 0" in out

    # A scenario the matrix selected (all of them) but whose cells the run lacks: derived from
    # the results it would pass; the matrix's own selection does not.
    code, out = _matrix_gate(tmp_path, monkeypatch, [*base, "--partial"],
                             _grid(stacks=sub, scenarios=("dense", "cnn")))
    assert code == 3, out
    assert "missing from the current run: 8" in out and "by scenario: lstm (8)" in out

    code, out = _matrix_gate(tmp_path, monkeypatch, [*base, "--scenarios", "dense,cnn", "--formats", "h5",
                                                     "--partial"],
                             _grid(stacks=sub, scenarios=("dense", "cnn"), formats=("h5",)))
    assert code == 0, out
    assert "scenarios=dense,cnn (from the matrix's --scenarios); formats=h5 (from the matrix's --formats)" in out


def test_the_issue_three_cells_of_the_published_table(tmp_path: Path) -> None:
    published = _published()
    cells = gate.load_results(published)
    three = dict(list(cells.items())[:3])
    res = gate.compare(cells, three)
    assert res.exit_code == gate.EXIT_INCOMPLETE and res.compared == 3 and len(res.missing) > 100_000


def test_gate_store_skips_unusable_records_and_says_so(tmp_path: Path) -> None:
    """A stray .json or a record with a wrong-typed field in the store: `gate --store`
    compares what it can read and names what it skipped, never a traceback."""
    from test_cli import _store_with_records

    store = _store_with_records(tmp_path / "store")
    base = tmp_path / "base"
    assert run("report", "--store", store.root, "--out", base).returncode == 0
    (store.records_dir / "notes.json").write_text("[1, 2]")
    env = store.env_record_path("tf2.15")
    good = env.read_text()
    res = run("gate", "--baseline", base / gate.RESULTS_JSON, "--store", store.root)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "gate: note: skipped 1 record file(s) of the store that cannot be used" in res.stdout
    assert "records/notes.json" in res.stdout
    env.write_text(json.dumps({**json.loads(good), "env": "not an object"}))
    res = run("gate", "--baseline", base / gate.RESULTS_JSON, "--store", store.root)
    assert "Traceback" not in res.stderr, res.stderr
    assert "skipped 2 record file(s)" in res.stdout and "field 'env' is str" in res.stdout
    assert res.returncode == gate.EXIT_INCOMPLETE  # without its stack's env record the cells are gone


# -------------------------------------------------- two facts: predictions and training

LOST = ("one more training step diverges from the saver's: the optimizer's step count is 1, expected 2 "
        "(optimizer state not restored)")
CANNOT = "training could not resume: RuntimeError: boom"


def _two(cid: str, outcome: str, prediction: str, training: str = "", *, category: str = "",
         message: str = "") -> dict[str, Any]:
    """A results row of schema 4 (prediction and training columns)."""
    return {**_cell(cid, outcome, category=category), "prediction": prediction, "training": training,
            "error_message": message}


def test_regressions_are_judged_on_both_facts(tmp_path: Path) -> None:
    """A cell regresses when it passed and fails now, or when its predictions matched and,
    failing now, no longer do; a training verdict that changes is a changed failure."""
    ids = [f"trained_adam:h5:tf2.15->tf2.{n}:default" for n in range(16, 22)]
    old = gate.cells_from_rows([
        _two(ids[0], "ok", "match", "resumed"),
        _two(ids[1], "training_mismatch", "match", "state_lost", category="optimizer_state_lost", message=LOST),
        _two(ids[2], "training_mismatch", "match", "state_lost", category="optimizer_state_lost", message=LOST),
        _two(ids[3], "training_mismatch", "match", "state_lost", category="optimizer_state_lost", message=LOST),
        _two(ids[4], "mismatch", "differ", "not_checked", category="numerical_mismatch"),
        _two(ids[5], "training_mismatch", "match", "state_lost", category="optimizer_state_lost", message=LOST)])
    new = gate.cells_from_rows([
        _two(ids[0], "training_mismatch", "match", "state_lost", category="optimizer_state_lost", message=LOST),
        _two(ids[1], "mismatch", "differ", "not_checked", category="numerical_mismatch"),
        {**_cell(ids[2], "load_error", category="other", message="boom"), "prediction": "", "training": ""},
        _two(ids[3], "training_mismatch", "match", "cannot_resume", category="training_resume_fails",
             message=CANNOT),
        _two(ids[4], "training_mismatch", "match", "state_lost", category="optimizer_state_lost", message=LOST),
        _two(ids[5], "ok", "match", "resumed")])
    res = gate.compare(old, new)
    assert [n.cell_id for _, n in res.regressions] == ids[:3]
    assert [n.cell_id for _, n in res.changed] == ids[3:5]
    assert [n.cell_id for _, n in res.fixed] == [ids[5]]
    old_path = _results(tmp_path / "old.json", *[
        {**_cell(c.cell_id, c.outcome, category=c.category), "prediction": c.prediction, "training": c.training,
         "error_message": c.message} for c in old.values()])
    new_path = _results(tmp_path / "new.json", *[
        {**_cell(c.cell_id, c.outcome, category=c.category), "prediction": c.prediction, "training": c.training,
         "error_message": c.message} for c in new.values()])
    out = run("gate", "--baseline", old_path, "--current", new_path).stdout
    assert f"  {ids[0]}: training_mismatch (state_lost) [optimizer_state_lost]: one more training step" in out
    assert f"  {ids[1]}: mismatch [numerical_mismatch] (was training_mismatch, whose predictions matched)" in out
    # an entry can excuse by the training verdict
    allow = _expected(tmp_path / "ef.toml", "2027-03-01", training="state_lost")
    out = run("gate", "--baseline", old_path, "--current", new_path, "--expected-failures", allow,
              "--today", "2027-02-01").stdout
    assert "expected failures (regressions excused by an entry): 1" in out and f"{ids[0]}: training_mismatch" in out


def test_a_baseline_before_the_two_columns_reads_training_verdicts_as_such(tmp_path: Path) -> None:
    """Results of schema <= 3 called a training verdict "mismatch" (its max |diff| the
    step's); read as a baseline, it is the training_mismatch the report writes now, so
    republishing the same records flips nothing."""
    cid = "trained_adam:h5:tf2.15->tf2.21:default"
    old_row = {**_cell(cid, "mismatch", category="optimizer_state_lost"), "error_message": LOST,
               "max_abs_diff": 0.0123}
    real = {**_cell(B, "mismatch", category="numerical_mismatch"), "max_abs_diff": 0.5}
    rows = [gate.upgrade_row(dict(r)) for r in (old_row, real, _cell(A, "ok"))]
    assert (rows[0]["outcome"], rows[0]["prediction"], rows[0]["training"], rows[0]["training_diff"],
            rows[0]["max_abs_diff"], rows[0]["training_reason"]) == (
        "training_mismatch", "match", "state_lost", 0.0123, None, LOST)
    assert (rows[1]["outcome"], rows[1]["prediction"], rows[1]["training"]) == ("mismatch", "differ", "")
    assert (rows[2]["outcome"], rows[2]["prediction"]) == ("ok", "match")
    old = gate.load_results(_results(tmp_path / "old.json", old_row, real, _cell(A, "ok")))
    assert old[cid].outcome == "training_mismatch" and old[cid].prediction == "match"
    new = gate.cells_from_rows([_two(cid, "training_mismatch", "match", "state_lost",
                                     category="optimizer_state_lost", message=LOST),
                                _two(B, "mismatch", "differ", category="numerical_mismatch"),
                                _two(A, "ok", "match")])
    res = gate.compare(old, new)
    assert not res.regressions and not res.changed and not res.fixed and res.compared == 3


def test_the_published_table_keeps_its_430_prediction_mismatches_apart() -> None:
    """The table published with schema 3: 3,262 mismatch cells, of which 430 predictions
    differ (max |diff| 0.047-2.9) and the rest are training verdicts with matching predictions."""
    data = json.loads(gate.read_results_text(_published()))
    if data["schema_version"] >= 4:
        pytest.skip("the published table already has the two columns")
    rows = [r for r in gate.results_rows(data) if r["source"] != "remedy"]
    mismatch = [r for r in rows if r["outcome"] == "mismatch"]
    training = [r for r in rows if r["outcome"] == "training_mismatch"]
    assert (len(mismatch), len(training)) == (430, 2832)
    assert all(r["prediction"] == "differ" and r["max_abs_diff"] >= 0.047 for r in mismatch)
    assert all(r["prediction"] == "match" and r["training"] in ("state_lost", "diverges", "cannot_resume")
               for r in training)
