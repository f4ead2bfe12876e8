"""Regression gate: compare a matrix run with an earlier ``results.json.gz``, cell by cell.

Stdlib only (``--store`` needs the report's pandas to build the current table:
:func:`runner.report.cells_from_store`). A load
cell holds two facts, each judged: the *prediction* (do the loader's predictions match
the saver's: ``prediction`` = ``match`` | ``differ``, empty when the load did not get that
far) and, for a trained model, the *training* (does one more training step land where the
saver's did: ``training`` = ``resumed`` | ``state_lost`` | ``diverges`` | ``cannot_resume``
| ``not_checked``). A *regression* is a cell

- that passed (``ok``: predictions match and, where checked, training resumed) in the
  baseline and fails now: its predictions differ, its training no longer resumes
  (``training_mismatch``), or it no longer loads; or
- whose predictions matched in the baseline (``ok`` or ``training_mismatch``) and, failing
  now, no longer match: a ``training_mismatch`` that becomes a ``mismatch``, a
  ``load_error``, a ``timeout`` ... is a regression of the prediction fact, although the
  cell was failing already.

A regression fails the gate (exit 1) unless an entry of the expected-failures file covers
it. Entries match cells by globs over saver, loader, scenario, format, variant, outcome,
diagnosis category, prediction and training, and carry a ``reason`` and an ``until`` date:
after that date the entry no longer excuses anything and is reported as expired (the
allowlist pattern of PyTorch's ``expected failures``). Newly passing cells and changed
failures (another outcome or category: e.g. a training verdict that changed) are
reported too. A baseline written before the two facts were separate columns (results
schema <= 3) is read with them derived: its ``mismatch`` whose reason is a resumed
training step's is a ``training_mismatch`` whose predictions matched
(:func:`upgrade_row`), so a republished table does not flip those cells.

The gate also checks that the current run *covers* the baseline's selection: every cell
of the baseline must be in the current results, except remedy runs (a remedy runs only
while its cell fails, so a fixed cell drops its remedy rows). A run of a subset compares
a subset only when the user says so with ``--partial``:

- ``--partial`` alone: the subset is the run's own selection. ``matrix`` takes it from its
  ``--stacks``/``--tags``/``--scenarios``/``--formats`` (a dimension it does not restrict
  is not restricted); ``gate --current`` derives it from the stacks (savers and loaders),
  scenarios and formats present in the current results.
- ``--partial DIM=A,B`` (DIM one of stacks, scenarios, formats; values are globs; repeat
  the option for several dimensions): the subset is the baseline cells whose saver *and*
  loader are in ``stacks``, whose scenario is in ``scenarios``, whose format is in
  ``formats``; a dimension not named is not restricted (all of the baseline's), unless a
  bare ``--partial`` is given too, which takes it from the run.

Baseline cells of the subset missing from the current run fail the gate. The gate always
prints the subset it required, how many baseline cells it compared, how many of the
subset were missing and how many current cells had no baseline. Comparing zero cells of
the subset is always a failure.

Exit status: 0 pass; 1 regression(s) (also when cells are missing: regressions first);
2 bad input (unreadable baseline, results or expected-failures file, bad ``--partial``);
3 incomplete: the current run misses cells of the required subset, or compared none.

    python -m runner gate --baseline OLD.json [--current NEW.json | --store DIR] [--partial [DIM=A,B]]
    python -m runner matrix --baseline reports/results.json.gz [--expected-failures FILE] [--partial [DIM=A,B]]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import gzip
import json
import os
import sys
import tomllib
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.records import (
    TRAINING_FAILURES,
    ErrorInfo,
    Outcome,
    Record,
    default_store_root,
    first_line,
    training_verdict,
)

__all__ = [
    "DEFAULT_EXPECTED",
    "EXIT_INCOMPLETE",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "Cell",
    "Expected",
    "GateError",
    "GateResult",
    "Selection",
    "add_parser",
    "compare",
    "load_expected",
    "load_results",
    "parse_partial",
    "print_result",
    "regressed",
    "results_rows",
    "upgrade_row",
]

DEFAULT_EXPECTED = Path("expected_failures.toml")
MATCH_KEYS = ("saver", "loader", "scenario", "format", "variant", "outcome", "category", "prediction", "training")
ENTRY_KEYS = (*MATCH_KEYS, "reason", "until")
PASSING = ("ok",)
NEUTRAL = ("not_applicable", "not_run")  # neither passing nor a failure to gate on
EXIT_PASS, EXIT_REGRESSION, EXIT_INCOMPLETE = 0, 1, 3  # 2: bad input (runner.cli)
DIMENSIONS = ("stacks", "scenarios", "formats")
FROM_RUN = ""  # the value of a bare --partial


class GateError(ValueError):
    """A baseline, results or expected-failures file cannot be used (message says why)."""


@dataclasses.dataclass(frozen=True)
class Cell:
    cell_id: str
    saver: str
    loader: str
    scenario: str
    format: str
    variant: str
    outcome: str
    category: str
    message: str
    source: str = ""  # the report's row source: load, save, env, none or remedy
    prediction: str = ""  # match | differ | "" (not compared)
    training: str = ""  # resumed | state_lost | diverges | cannot_resume | not_checked | "" (not checked)

    @property
    def remedy(self) -> bool:
        """A remedy run: present only while its cell fails, so never required of a run."""
        return self.source == "remedy"

    @property
    def failing(self) -> bool:
        return self.outcome not in PASSING and self.outcome not in NEUTRAL


def regressed(old: Cell, new: Cell) -> bool:
    """Whether ``new`` is a regression of ``old`` on either fact (the module docstring)."""
    if not new.failing:
        return False
    return old.outcome in PASSING or (old.prediction == "match" and new.prediction != "match")


@dataclasses.dataclass(frozen=True)
class Expected:
    index: int
    patterns: tuple[tuple[str, str], ...]  # (key, glob)
    reason: str
    until: datetime.date

    def matches(self, cell: Cell) -> bool:
        return all(fnmatch.fnmatchcase(str(getattr(cell, k) or ""), glob) for k, glob in self.patterns)

    def describe(self) -> str:
        what = ", ".join(f"{k}={g}" for k, g in self.patterns) or "every cell"
        return f"entry #{self.index} ({what}; until {self.until.isoformat()}): {self.reason}"


# ------------------------------------------------------------------------- reading


def _category(row: Mapping[str, Any]) -> str:
    """The row's diagnosis category: its own column if the table has one, else diagnosed now."""
    if row.get("category"):
        return str(row["category"])
    try:
        outcome = Outcome(row.get("outcome"))
    except ValueError:
        return ""
    if not outcome.failed:
        return ""
    try:
        from runner import diagnose
    except ImportError:
        return ""
    rec = Record(record_type="load", cell_id=str(row.get("cell_id")), stack=str(row.get("loader") or "?"),
                 outcome=outcome, saver=row.get("saver"), loader=row.get("loader"),
                 scenario=row.get("scenario"), format=row.get("format"), variant=row.get("variant"),
                 phase=row.get("phase"),
                 error=ErrorInfo(str(row.get("error_type") or ""), str(row.get("error_message") or ""),
                                 str(row.get("traceback_tail") or "")) if row.get("error_type") else None,
                 max_abs_diff=row.get("max_abs_diff"),
                 env={k: row.get(f"loader_{k}") for k in ("python", "tensorflow", "keras", "backend")},
                 saver_env={k: row.get(f"saver_{k}") for k in ("python", "tensorflow", "keras", "backend")},
                 details={"written_as": row.get("written_as") or "",
                          **({"reason": row.get("error_message")} if not row.get("error_type") else {})})
    try:
        diag = diagnose.diagnose(rec)
    except Exception:  # a rule that cannot read an old row must not stop the gate
        return ""
    return str(diag.category) if diag is not None else ""


# The reasons a results table of schema <= 3 gave a load whose predictions matched but whose
# resumed training step did not (runner/_worker/worker.py wrote them as "mismatch").
_TRAINING_REASONS = ("one more training step diverges", "the optimizer's step count is",
                     "the loaded model has no optimizer", "training could not resume: ",
                     "the format restores no Keras model")


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A results row of schema <= 3 with the prediction and training columns of schema 4:
    a ``mismatch`` without an exception whose message is a resumed training step's reason
    becomes ``training_mismatch`` (predictions matched; the step's max |diff| had replaced
    the prediction's and moves to ``training_diff``); another ``mismatch`` is
    ``prediction=differ``, an ``ok`` ``prediction=match``. Rows of schema 4 are returned
    as they are."""
    if "prediction" in row:
        return row
    message = str(row.get("error_message") or "")
    outcome = row.get("outcome")
    row.update(prediction="", training="", training_diff=None, training_reason="")
    if outcome == "mismatch" and not row.get("error_type") and message.startswith(_TRAINING_REASONS):
        row.update(outcome=Outcome.TRAINING_MISMATCH.value, prediction="match", training=training_verdict(message),
                   training_reason=message)
        if message.startswith("one more training step diverges"):
            row["training_diff"], row["max_abs_diff"] = row.get("max_abs_diff"), None
    elif outcome == "mismatch":
        row["prediction"] = "differ"
    elif outcome == "ok":
        row["prediction"] = "match"
    return row


def _prediction(row: Mapping[str, Any]) -> str:
    value = str(row.get("prediction") or "")
    if value or "prediction" in row:
        return value
    return {"ok": "match", "training_mismatch": "match", "mismatch": "differ"}.get(str(row.get("outcome")), "")


def cells_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, Cell]:
    out: dict[str, Cell] = {}
    for row in rows:
        cid = str(row.get("cell_id") or "")
        if not cid:
            raise GateError("a cell has no cell_id")
        out[cid] = Cell(cell_id=cid, saver=str(row.get("saver") or ""), loader=str(row.get("loader") or ""),
                        scenario=str(row.get("scenario") or ""), format=str(row.get("format") or ""),
                        variant=str(row.get("variant") or ""), outcome=str(row.get("outcome") or ""),
                        category=_category(row), message=str(row.get("error_message") or ""),
                        source=str(row.get("source") or ""), prediction=_prediction(row),
                        training=str(row.get("training") or ""))
    return out


RESULTS_JSON = "results.json.gz"  # the report's cells (gzip'd: 201,465 cells were 9.5 MB of JSON, 0.7 MB packed)


def read_results_text(path: Path) -> str:
    """The JSON text of a report's results file: ``results.json.gz`` (gzip'd, recognised by
    its magic bytes whatever the name) or an earlier layout's plain ``results.json``.

    Raises:
        OSError, UnicodeDecodeError, EOFError, zlib.error: unreadable (FileNotFoundError: absent).
    """
    raw = path.read_bytes()
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")


def load_results(path: Path, what: str = "results") -> dict[str, Cell]:
    """Cells of a ``results.json.gz`` (or plain ``results.json``) written by the report
    (``{"cells": [...]}``, schema 1 to 4).

    Raises:
        GateError: missing, not (gzip'd) JSON, or not the report's layout.
    """
    try:
        data = json.loads(read_results_text(path))
    except FileNotFoundError:
        raise GateError(f"{what} file not found: {path}") from None
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise GateError(f"{what} file {path} is not valid JSON or gzip'd JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise GateError(f"{what} file {path} is not a results.json(.gz) of the report (no \"cells\" list)")
    try:
        return cells_from_rows(results_rows(data))
    except GateError as exc:
        raise GateError(f"{what} file {path}: {exc}") from None


RESULTS_SCHEMAS = (1, 2, 3, 4)  # the last is what runner/report.py writes


def results_rows(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The cells of a parsed ``results.json`` of any schema this runner reads, each as one
    dict with every column plus ``cell_id``, ``error_type``, ``error_message`` and
    ``traceback_tail`` (the layout is in docs/reports-schema.md).

    Raises:
        GateError: an unknown schema_version, or rows that do not match their columns.
    """
    version = data.get("schema_version")
    if version not in RESULTS_SCHEMAS:
        raise GateError(f"results schema_version {version!r}; this runner reads "
                        + ", ".join(map(str, RESULTS_SCHEMAS)))
    if version == 1:
        rows: Iterator[dict[str, Any]] = (dict(c) for c in data["cells"] if isinstance(c, dict))
    else:
        rows = _v3_rows(data) if version >= 3 else _v2_rows(data)
    return rows if version >= 4 else (upgrade_row(r) for r in rows)


def _v2_rows(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Schema 2 rows (lists under ``columns``, errors by index) as schema 1 dicts."""
    columns, errors = data.get("columns"), data.get("errors") or []
    if not isinstance(columns, list) or "error_id" not in columns:
        raise GateError("schema 2 needs a \"columns\" list with error_id")
    for values in data["cells"]:
        if not isinstance(values, list) or len(values) != len(columns):
            raise GateError("a cell row does not match \"columns\"")
        row = dict(zip(columns, values, strict=True))
        eid = row.get("error_id")
        if isinstance(eid, int) and 0 <= eid < len(errors):
            row["error_type"], row["error_message"] = errors[eid][0], errors[eid][1]
            row["traceback_tail"] = errors[eid][2] if len(errors[eid]) > 2 else ""
        yield _with_cell_id(row)


def _with_cell_id(row: dict[str, Any]) -> dict[str, Any]:
    row.setdefault("cell_id", f"{row.get('scenario')}:{row.get('format')}:{row.get('saver')}"
                              f"->{row.get('loader')}:{row.get('variant')}")
    return row


def _v3_rows(data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Schemas 3 and 4: every column but ``error_id`` is dictionary-coded (a row holds
    indexes into ``values[column]``); ``errors`` are [type, message index, traceback index]."""
    columns, values = data.get("columns"), data.get("values")
    errors, messages, tracebacks = data.get("errors") or [], data.get("messages") or [], data.get("tracebacks") or []
    if not isinstance(columns, list) or "error_id" not in columns or not isinstance(values, dict):
        raise GateError("schema 3 needs a \"columns\" list with error_id and a \"values\" object")
    coded: list[tuple[int, str, list[Any]]] = []
    for i, c in enumerate(columns):
        if c == "error_id":
            continue
        table = values.get(c)
        if not isinstance(table, list):
            raise GateError(f"schema 3: column {c!r} has no list in \"values\"")
        coded.append((i, c, table))
    eix = columns.index("error_id")
    for raw in data["cells"]:
        if not isinstance(raw, list) or len(raw) != len(columns):
            raise GateError("a cell row does not match \"columns\"")
        try:
            row = {c: table[raw[i]] for i, c, table in coded}
        except (IndexError, TypeError):
            raise GateError(f"a cell row indexes outside \"values\": {raw}") from None
        eid = raw[eix]
        row["error_id"] = eid
        if isinstance(eid, int) and 0 <= eid < len(errors):
            etype, mi, ti = errors[eid]
            row["error_type"] = etype
            row["error_message"] = messages[mi] if isinstance(mi, int) and 0 <= mi < len(messages) else ""
            row["traceback_tail"] = tracebacks[ti] if isinstance(ti, int) and 0 <= ti < len(tracebacks) else ""
        yield _with_cell_id(row)


def load_expected(path: Path) -> list[Expected]:
    """Validate and read the expected-failures file.

    Raises:
        GateError: not TOML, or an entry with an unknown key, no reason or no valid ``until``.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateError(f"expected-failures file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GateError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"expected"})
    if unknown:
        raise GateError(f"{path}: unknown top-level key {unknown[0]!r} (entries are [[expected]] tables)")
    entries = data.get("expected", [])
    if not isinstance(entries, list):
        raise GateError(f"{path}: 'expected' must be an array of tables ([[expected]])")
    out = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: entry #{i}"
        if not isinstance(entry, dict):
            raise GateError(f"{where}: must be a table")
        bad = sorted(set(entry) - set(ENTRY_KEYS))
        if bad:
            raise GateError(f"{where}: unknown key {bad[0]!r} (known: {', '.join(ENTRY_KEYS)})")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise GateError(f"{where}: missing required key 'reason' (why this failure is accepted)")
        until = entry.get("until")
        if until is None:
            raise GateError(f"{where}: missing required key 'until' (a date such as 2027-01-31)")
        if isinstance(until, datetime.datetime) or not isinstance(until, datetime.date):
            raise GateError(f"{where}: 'until' must be a TOML date such as 2027-01-31, got {until!r}")
        patterns = []
        for key in MATCH_KEYS:
            if key in entry:
                if not isinstance(entry[key], str) or not entry[key]:
                    raise GateError(f"{where}: {key!r} must be a non-empty string glob")
                patterns.append((key, entry[key]))
        if not patterns:
            raise GateError(f"{where}: matches every cell; name at least one of {', '.join(MATCH_KEYS)}")
        out.append(Expected(index=i, patterns=tuple(patterns), reason=reason.strip(), until=until))
    return out


# ----------------------------------------------------------------------- selection


@dataclasses.dataclass(frozen=True)
class Selection:
    """The baseline cells a run must have: per dimension a tuple of globs, or None (all).

    ``origins`` says where each restricted dimension came from (``--partial``, the matrix's
    own options, the current results); ``partial`` is False only for the whole baseline.
    """

    stacks: tuple[str, ...] | None = None
    scenarios: tuple[str, ...] | None = None
    formats: tuple[str, ...] | None = None
    origins: tuple[tuple[str, str], ...] = ()  # (dimension, origin)
    partial: bool = False

    def contains(self, cell: Cell) -> bool:
        def inside(value: str, globs: tuple[str, ...] | None) -> bool:
            return globs is None or any(fnmatch.fnmatchcase(value, g) for g in globs)
        return (inside(cell.saver, self.stacks) and inside(cell.loader, self.stacks)
                and inside(cell.scenario, self.scenarios) and inside(cell.format, self.formats))

    def describe(self, baseline: Mapping[str, Cell] | None = None) -> str:
        if not self.partial:
            return "the whole baseline (no --partial)"
        origin = dict(self.origins)
        values = _dimension_values(baseline or {})
        parts = []
        for dim in DIMENSIONS:
            globs = getattr(self, dim)
            if globs is None:
                parts.append(f"{dim}=* (all of the baseline's)")
                continue
            if not globs:
                shown = "(none)"
            elif baseline and all(v in globs for v in values[dim]):  # names every value the baseline has
                shown = f"all {len(values[dim])} of the baseline's"
            else:
                shown = ",".join(globs[:12]) + (f",... ({len(globs)} in all)" if len(globs) > 12 else "")
            parts.append(f"{dim}={shown} (from {origin.get(dim, '--partial')})")
        return "--partial: " + "; ".join(parts)

    def unmatched(self, baseline: Mapping[str, Cell]) -> list[str]:
        """``dim=glob`` entries that match no cell of the baseline (a typo, or a new stack)."""
        seen = _dimension_values(baseline)
        return [f"{dim}={g}" for dim in DIMENSIONS for g in getattr(self, dim) or ()
                if not any(fnmatch.fnmatchcase(v, g) for v in seen[dim])]


def _dimension_values(cells: Mapping[str, Cell]) -> dict[str, set[str]]:
    return {"stacks": {c.saver for c in cells.values()} | {c.loader for c in cells.values()},
            "scenarios": {c.scenario for c in cells.values()},
            "formats": {c.format for c in cells.values()}}


@dataclasses.dataclass(frozen=True)
class Partial:
    """What ``--partial`` said: explicit dimensions, and whether the rest come from the run."""

    explicit: tuple[tuple[str, tuple[str, ...]], ...] = ()
    from_run: bool = False
    # the matrix's own selection (None in a dimension it does not restrict); None for `gate`
    run_selection: tuple[tuple[str, tuple[str, ...] | None], ...] | None = None


def parse_partial(values: Sequence[str] | None) -> Partial | None:
    """``--partial`` option values (bare: ``FROM_RUN``) -> Partial, or None without the option.

    Raises:
        GateError: not ``DIM=A,B``, an unknown dimension, no values, or a dimension twice.
    """
    if values is None:
        return None
    explicit: dict[str, tuple[str, ...]] = {}
    from_run = False
    for raw in values:
        value = (raw or "").strip()
        if value == FROM_RUN:
            from_run = True
            continue
        dim, sep, rest = value.partition("=")
        dim = dim.strip()
        if not sep or dim not in DIMENSIONS:
            raise GateError(f"--partial {value!r}: expected DIM=A,B with DIM one of {', '.join(DIMENSIONS)} "
                            "(or --partial alone for the run's own selection)")
        globs = tuple(g.strip() for g in rest.split(",") if g.strip())
        if not globs:
            raise GateError(f"--partial {value!r}: no {dim} named")
        if dim in explicit:
            raise GateError(f"--partial {dim}=... given twice; list every value once: {dim}=A,B")
        explicit[dim] = globs
    return Partial(explicit=tuple(explicit.items()), from_run=from_run)


def selection_for(partial: Partial | None, current: Mapping[str, Cell]) -> Selection:
    """The required subset of the baseline (the whole baseline without ``--partial``)."""
    if partial is None:
        return Selection()
    dims: dict[str, tuple[str, ...] | None] = dict.fromkeys(DIMENSIONS)
    origins: dict[str, str] = {}
    if partial.from_run:
        if partial.run_selection is not None:
            for dim, globs in partial.run_selection:
                dims[dim] = globs
                origins[dim] = f"the matrix's --{dim}" + (" / --tags" if dim == "stacks" else "")
        else:
            table = [c for c in current.values() if not c.remedy]
            derived = {"stacks": {c.saver for c in table} | {c.loader for c in table},
                       "scenarios": {c.scenario for c in table}, "formats": {c.format for c in table}}
            for dim in DIMENSIONS:
                dims[dim] = tuple(sorted(derived[dim]))
                origins[dim] = "the current results"
    for dim, globs in partial.explicit:
        dims[dim] = globs
        origins[dim] = "--partial"
    return Selection(stacks=dims["stacks"], scenarios=dims["scenarios"], formats=dims["formats"],
                     origins=tuple((d, origins[d]) for d in DIMENSIONS if d in origins), partial=True)


# ------------------------------------------------------------------------- compare


@dataclasses.dataclass
class GateResult:
    regressions: list[tuple[Cell, Cell]] = dataclasses.field(default_factory=list)  # unexcused
    excused: list[tuple[Cell, Cell, Expected]] = dataclasses.field(default_factory=list)
    expired_hits: list[tuple[Cell, Cell, Expected]] = dataclasses.field(default_factory=list)
    fixed: list[tuple[Cell, Cell]] = dataclasses.field(default_factory=list)
    changed: list[tuple[Cell, Cell]] = dataclasses.field(default_factory=list)
    only_baseline: list[str] = dataclasses.field(default_factory=list)
    only_current: list[str] = dataclasses.field(default_factory=list)
    expired: list[Expected] = dataclasses.field(default_factory=list)
    unused: list[Expected] = dataclasses.field(default_factory=list)
    # coverage: which baseline cells the run had to have, and which it had
    selection: Selection = dataclasses.field(default_factory=Selection)
    baseline_size: int = 0
    current_size: int = 0
    compared: int = 0  # baseline cells also in the current run (all compared for regressions)
    required: int = 0  # baseline cells of the selection, remedy runs excluded
    covered: int = 0  # required cells present in the current run
    missing: list[str] = dataclasses.field(default_factory=list)  # required, absent now
    remedies_not_rerun: int = 0  # baseline remedy runs of the selection absent now (not required)
    unmatched: list[str] = dataclasses.field(default_factory=list)  # --partial globs matching nothing

    @property
    def incomplete(self) -> bool:
        """The run lacks cells of the required subset, or compared none of it."""
        return bool(self.missing) or self.covered == 0

    @property
    def failed(self) -> bool:
        return bool(self.regressions) or self.incomplete

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return EXIT_REGRESSION
        return EXIT_INCOMPLETE if self.incomplete else EXIT_PASS


def compare(baseline: Mapping[str, Cell], current: Mapping[str, Cell], expected: Sequence[Expected] = (),
            today: datetime.date | None = None, selection: Selection | None = None) -> GateResult:
    """Compare every cell present in both; require the ``selection`` of the baseline (default all)."""
    today = today or datetime.date.today()
    selection = selection or Selection()
    live = [e for e in expected if e.until >= today]
    res = GateResult(expired=[e for e in expected if e.until < today], selection=selection,
                     baseline_size=len(baseline), current_size=len(current),
                     unmatched=selection.unmatched(baseline))
    used: set[int] = set()
    for cid in sorted(set(baseline) | set(current)):
        old, new = baseline.get(cid), current.get(cid)
        if old is None:
            res.only_current.append(cid)
            continue
        wanted = selection.contains(old)
        if wanted and not old.remedy:
            res.required += 1
        if new is None:
            res.only_baseline.append(cid)
            if wanted and old.remedy:
                res.remedies_not_rerun += 1
            elif wanted:
                res.missing.append(cid)
            continue
        res.compared += 1
        if wanted and not old.remedy:
            res.covered += 1
        if regressed(old, new):
            entry = next((e for e in live if e.matches(new)), None)
            if entry is not None:
                used.add(entry.index)
                res.excused.append((old, new, entry))
                continue
            stale = next((e for e in res.expired if e.matches(new)), None)
            if stale is not None:
                res.expired_hits.append((old, new, stale))
            res.regressions.append((old, new))
        elif old.failing and new.outcome in PASSING:
            res.fixed.append((old, new))
        elif old.failing and new.failing and (old.outcome, old.category) != (new.outcome, new.category):
            res.changed.append((old, new))
    res.unused = [e for e in live if e.index not in used]
    return res


def _short(cell: Cell) -> str:
    what = cell.outcome + (f" ({cell.training})" if cell.training in TRAINING_FAILURES else "") + (
        f" [{cell.category}]" if cell.category else "")
    first = first_line(cell.message)
    first = first[:100] + "…" if len(first) > 100 else first
    return what + (f": {first}" if first else "")


def _missing_by(res: GateResult, baseline: Mapping[str, Cell] | None) -> str:
    """Where the missing cells are, e.g. ``by loader: tf2.2 (120), tf2.3 (120), ...; by scenario: ...``."""
    if baseline is None or not res.missing:
        return ""
    parts = []
    for dim, attr in (("loader", "loader"), ("scenario", "scenario"), ("format", "format")):
        counts: dict[str, int] = {}
        for cid in res.missing:
            key = getattr(baseline[cid], attr)
            counts[key] = counts.get(key, 0) + 1
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ", ".join(f"{k} ({n})" for k, n in top[:6]) + (f", ... ({len(top)} in all)" if len(top) > 6 else "")
        parts.append(f"by {dim}: {shown}")
    return "; ".join(parts)


def print_result(res: GateResult, out: TextIO = sys.stdout, limit: int = 50,
                 baseline: Mapping[str, Cell] | None = None) -> None:
    def section(title: str, lines: Sequence[str], cap: int = limit) -> None:
        print(f"gate: {title}: {len(lines)}", file=out)
        for line in lines[:cap]:
            print(f"  {line}", file=out)
        if len(lines) > cap:
            print(f"  ... and {len(lines) - cap} more", file=out)

    section("REGRESSIONS (passed in the baseline, fail now, not expected)",
            [f"{n.cell_id}: {_short(n)}" + (f" (was {o.outcome}, whose predictions matched)" if o.outcome not in PASSING
                                            else "")
             + (f" (expired expected-failure #{e.index}, until {e.until})"
                                            if (e := next((h[2] for h in res.expired_hits if h[1] is n), None))
                                            else "")
             for o, n in res.regressions])
    section("expected failures (regressions excused by an entry)",
            [f"{n.cell_id}: {_short(n)} - entry #{e.index}" for _, n, e in res.excused])
    used = sorted({e.index: e for _, _, e in res.excused}.values(), key=lambda e: e.index)
    for entry in used:
        print(f"  entry #{entry.index} (until {entry.until}): {entry.reason}", file=out)
    section("newly passing", [f"{n.cell_id}: was {_short(o)}" for o, n in res.fixed])
    section("changed failure", [f"{n.cell_id}: {_short(o)} -> {_short(n)}" for o, n in res.changed])
    if res.expired:
        section("EXPIRED expected-failure entries (excuse nothing any more; renew or delete)",
                [e.describe() for e in res.expired])
    if res.unused:
        section("unused expected-failure entries", [e.describe() for e in res.unused])
    # Coverage: always said, so a gate that compared little cannot look like a clean pass.
    print(f"gate: selection: {res.selection.describe(baseline)} -> {res.required} of the baseline's "
          f"{res.baseline_size} cells required (remedy runs are not)", file=out)
    for glob in res.unmatched:
        print(f"gate: note: {glob} matches no cell of the baseline", file=out)
    print(f"gate: compared {res.compared} baseline cell(s) with the current run ({res.covered} of the "
          f"{res.required} required); missing from the current run: {len(res.missing)}; current cells "
          f"without a baseline: {len(res.only_current)}", file=out)
    if res.remedies_not_rerun:
        print(f"gate: baseline remedy runs not repeated: {res.remedies_not_rerun} (a remedy runs only "
              "while its cell fails)", file=out)
    if res.missing:
        section("MISSING (cells of the selection the current run does not have)", res.missing, cap=10)
        where = _missing_by(res, baseline)
        if where:
            print(f"  {where}", file=out)
    if res.incomplete:
        why = (f"{len(res.missing)} of {res.required} required baseline cells missing" if res.missing
               else "the current results have no cells" if res.current_size == 0
               else "the selection matches no baseline cell")
        hint = ("name the intended subset: --partial (the run's own selection) or "
                "--partial stacks=A,B [--partial scenarios=...] [--partial formats=...]"
                if not res.selection.partial else "the run does not cover the subset named by --partial")
        print(f"gate: INCOMPLETE: {why}; {hint} (exit {EXIT_INCOMPLETE})", file=out)
    verdict = "FAIL" if res.failed else "pass"
    print(f"gate: {verdict}: {len(res.regressions)} regression(s), {len(res.excused)} expected, "
          f"{len(res.fixed)} newly passing, {len(res.changed)} changed; compared {res.compared}, "
          f"missing {len(res.missing)}" + (" (INCOMPLETE)" if res.incomplete else ""), file=out, flush=True)


# ----------------------------------------------------------------------------- CLI


def parse_today(text: str | None) -> datetime.date | None:
    if not text:
        env = os.environ.get("COMPAT_GATE_TODAY")
        text = env or None
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise GateError(f"--today must be a date such as 2027-01-31, got {text!r}") from None


PARTIAL_HELP = (
    "compare a subset of the baseline, and say which: alone, the run's own selection (matrix: its "
    "--stacks/--tags/--scenarios/--formats; gate: the stacks, scenarios and formats in the current "
    "results); DIM=A,B (DIM: stacks, scenarios or formats; globs; repeat for several) names it. "
    "Without it every baseline cell (remedy runs aside) must be in the current run. Missing cells "
    f"of the subset, or none compared, exit {EXIT_INCOMPLETE}")
EXIT_HELP = (f"exit {EXIT_REGRESSION} on unexpected regressions, {EXIT_INCOMPLETE} when the current run misses "
             "cells of the baseline's selection (or compared none), 2 on bad input")


def add_options(p: argparse.ArgumentParser, *, baseline_required: bool) -> None:
    p.add_argument("--baseline", type=Path, required=baseline_required, default=None,
                   help="an earlier results.json.gz (e.g. the published reports/results.json.gz; plain "
                        "results.json too); " + EXIT_HELP)
    p.add_argument("--expected-failures", type=Path, default=None,
                   help=f"allowlist of accepted failures (default {DEFAULT_EXPECTED} if it exists)")
    p.add_argument("--today", default=None,
                   help="the date entries' 'until' is checked against (default: today, or $COMPAT_GATE_TODAY)")
    p.add_argument("--partial", action="append", nargs="?", const=FROM_RUN, default=None,
                   metavar="DIM=A,B", help=PARTIAL_HELP)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gate", help="compare a results.json.gz (or a store) with a baseline; " + EXIT_HELP,
        description="Compare a results.json.gz (or a store) with a baseline, cell by cell; " + EXIT_HELP + ".")
    add_options(p, baseline_required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--current", type=Path, default=None, help="the new results.json.gz")
    group.add_argument("--store", type=Path, default=None,
                       help="build the current table from this store's records (default .matrix)")


@dataclasses.dataclass(frozen=True)
class Prepared:
    baseline: dict[str, Cell]
    expected: list[Expected]
    today: datetime.date | None
    partial: Partial | None = None  # None: the whole baseline is required


def _matrix_selection(args: argparse.Namespace) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    """The matrix's own selection per dimension (None: not restricted), as cli.py selects it."""
    stacks: tuple[str, ...] | None = None
    if getattr(args, "stacks", None) or getattr(args, "tags", None):
        from runner.stacks import load_catalog, select
        stacks = tuple(s.id for s in select(load_catalog(args.catalog), args.stacks or [], args.tags or []))
    return (("stacks", stacks), ("scenarios", tuple(args.scenarios) if getattr(args, "scenarios", None) else None),
            ("formats", tuple(args.formats) if getattr(args, "formats", None) else None))


def prepare(args: argparse.Namespace) -> Prepared | None:
    """Read and validate the baseline and expected failures up front (None without --baseline).

    Read *before* a matrix run: the run may overwrite the baseline file (reports/results.json.gz).
    For ``matrix``, a bare ``--partial`` means the matrix's own selection (read from ``args``).
    """
    partial = parse_partial(getattr(args, "partial", None))
    if args.baseline is None:
        if args.expected_failures is not None:
            raise GateError("--expected-failures needs --baseline")
        if partial is not None:
            raise GateError("--partial needs --baseline")
        return None
    baseline = load_results(args.baseline, "baseline")
    path = args.expected_failures
    if path is None and DEFAULT_EXPECTED.is_file():
        path = DEFAULT_EXPECTED
    expected = load_expected(path) if path is not None else []
    if partial is not None and partial.from_run and getattr(args, "command", None) == "matrix":
        partial = dataclasses.replace(partial, run_selection=_matrix_selection(args))
    return Prepared(baseline, expected, parse_today(args.today), partial)


def run_gate(prepared: Prepared, current: Mapping[str, Cell], out: TextIO = sys.stdout) -> int:
    """Compare, print, and return the exit status (0 pass, 1 regressions, 3 incomplete)."""
    selection = selection_for(prepared.partial, current)
    res = compare(prepared.baseline, current, prepared.expected, prepared.today, selection)
    print_result(res, out, baseline=prepared.baseline)
    return res.exit_code


def cmd_gate(args: argparse.Namespace, store_cells: Callable[[Path, TextIO], Mapping[str, Cell]],
             out: TextIO = sys.stdout) -> int:
    """``gate``: ``--current`` is read here; ``--store``'s table is ``store_cells(store, out)``
    (the report builds it: :func:`runner.report.cells_from_store`, passed in by the command
    line, so the gate never imports the report that imports it)."""
    prepared = prepare(args)
    assert prepared is not None
    if args.current is not None:
        current: Mapping[str, Cell] = load_results(args.current, "current results")
    else:
        current = store_cells(args.store or default_store_root(), out)
    return run_gate(prepared, current, out)
