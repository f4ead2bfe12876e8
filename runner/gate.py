"""Regression gate: compare a matrix run with an earlier ``results.json``, cell by cell.

Stdlib only (``--store`` needs the report's pandas to build the current table). A
*regression* is a cell that passed (``ok``) in the baseline and fails now; it fails the
gate (exit 1) unless an entry of the expected-failures file covers it. Entries match
cells by globs over saver, loader, scenario, format, variant, outcome and diagnosis
category, and carry a ``reason`` and an ``until`` date: after that date the entry no
longer excuses anything and is reported as expired (the allowlist pattern of PyTorch's
``expected failures``). Newly passing cells and changed categories are reported too.

    python -m runner gate --baseline OLD.json [--current NEW.json | --store DIR]
    python -m runner matrix --baseline reports/results.json [--expected-failures FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.records import ErrorInfo, Outcome, Record, Store

__all__ = [
    "DEFAULT_EXPECTED",
    "Cell",
    "Expected",
    "GateError",
    "GateResult",
    "add_parser",
    "compare",
    "load_expected",
    "load_results",
    "print_result",
]

DEFAULT_EXPECTED = Path("expected_failures.toml")
MATCH_KEYS = ("saver", "loader", "scenario", "format", "variant", "outcome", "category")
ENTRY_KEYS = (*MATCH_KEYS, "reason", "until")
PASSING = ("ok",)
NEUTRAL = ("not_applicable", "not_run")  # neither passing nor a failure to gate on


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

    @property
    def failing(self) -> bool:
        return self.outcome not in PASSING and self.outcome not in NEUTRAL


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


def cells_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, Cell]:
    out: dict[str, Cell] = {}
    for row in rows:
        cid = str(row.get("cell_id") or "")
        if not cid:
            raise GateError("a cell has no cell_id")
        out[cid] = Cell(cell_id=cid, saver=str(row.get("saver") or ""), loader=str(row.get("loader") or ""),
                        scenario=str(row.get("scenario") or ""), format=str(row.get("format") or ""),
                        variant=str(row.get("variant") or ""), outcome=str(row.get("outcome") or ""),
                        category=_category(row), message=str(row.get("error_message") or ""))
    return out


def load_results(path: Path, what: str = "results") -> dict[str, Cell]:
    """Cells of a ``results.json`` written by the report (``{"cells": [...]}``).

    Raises:
        GateError: missing, not JSON, or not the report's layout.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise GateError(f"{what} file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise GateError(f"{what} file {path} is not a results.json of the report (no \"cells\" list)")
    version = data.get("schema_version")
    if version not in (1, 2):
        raise GateError(f"{what} file {path} has results schema_version {version!r}; this runner reads 1 and 2")
    try:
        if version == 1:
            return cells_from_rows(c for c in data["cells"] if isinstance(c, dict))
        return cells_from_rows(_v2_rows(data))
    except GateError as exc:
        raise GateError(f"{what} file {path}: {exc}") from None


def _v2_rows(data: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
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
        row.setdefault("cell_id", f"{row.get('scenario')}:{row.get('format')}:{row.get('saver')}"
                                  f"->{row.get('loader')}:{row.get('variant')}")
        yield row


def cells_from_store(store: Path) -> dict[str, Cell]:
    """The current table of a store, built by the report into a temporary folder."""
    try:
        from runner import report
    except ImportError as exc:
        raise GateError(f"--store needs pandas and tabulate ({exc}); use --current results.json") from None
    if not (store / "records").is_dir():
        raise GateError(f"store {store} has no records")
    with tempfile.TemporaryDirectory() as tmp:
        report.write_reports(Store(store), Path(tmp))
        return load_results(Path(tmp) / "results.json")


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

    @property
    def failed(self) -> bool:
        return bool(self.regressions)


def compare(baseline: Mapping[str, Cell], current: Mapping[str, Cell], expected: Sequence[Expected] = (),
            today: datetime.date | None = None) -> GateResult:
    today = today or datetime.date.today()
    live = [e for e in expected if e.until >= today]
    res = GateResult(expired=[e for e in expected if e.until < today])
    used: set[int] = set()
    for cid in sorted(set(baseline) | set(current)):
        old, new = baseline.get(cid), current.get(cid)
        if old is None:
            res.only_current.append(cid)
            continue
        if new is None:
            res.only_baseline.append(cid)
            continue
        if old.outcome in PASSING and new.failing:
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
    what = cell.outcome + (f" [{cell.category}]" if cell.category else "")
    first = (cell.message.strip().splitlines() or [""])[0]
    first = first[:100] + "…" if len(first) > 100 else first
    return what + (f": {first}" if first else "")


def print_result(res: GateResult, out: TextIO = sys.stdout, limit: int = 50) -> None:
    def section(title: str, lines: Sequence[str]) -> None:
        print(f"gate: {title}: {len(lines)}", file=out)
        for line in lines[:limit]:
            print(f"  {line}", file=out)
        if len(lines) > limit:
            print(f"  ... and {len(lines) - limit} more", file=out)

    section("REGRESSIONS (passed in the baseline, fail now, not expected)",
            [f"{n.cell_id}: {_short(n)}" + (f" (expired expected-failure #{e.index}, until {e.until})"
                                            if (e := next((h[2] for h in res.expired_hits if h[1] is n), None))
                                            else "")
             for _, n in res.regressions])
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
    if res.only_baseline or res.only_current:
        print(f"gate: cells only in the baseline: {len(res.only_baseline)}, only in the current run: "
              f"{len(res.only_current)}", file=out)
    verdict = "FAIL" if res.failed else "pass"
    print(f"gate: {verdict}: {len(res.regressions)} regression(s), {len(res.excused)} expected, "
          f"{len(res.fixed)} newly passing, {len(res.changed)} changed", file=out, flush=True)


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


def add_options(p: argparse.ArgumentParser, *, baseline_required: bool) -> None:
    p.add_argument("--baseline", type=Path, required=baseline_required, default=None,
                   help="an earlier results.json (e.g. the published reports/results.json)")
    p.add_argument("--expected-failures", type=Path, default=None,
                   help=f"allowlist of accepted failures (default {DEFAULT_EXPECTED} if it exists)")
    p.add_argument("--today", default=None,
                   help="the date entries' 'until' is checked against (default: today, or $COMPAT_GATE_TODAY)")


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "gate", help="compare a results.json (or a store) with a baseline; exit 1 on unexpected regressions")
    add_options(p, baseline_required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--current", type=Path, default=None, help="the new results.json")
    group.add_argument("--store", type=Path, default=None,
                       help="build the current table from this store's records (default .matrix)")


@dataclasses.dataclass(frozen=True)
class Prepared:
    baseline: dict[str, Cell]
    expected: list[Expected]
    today: datetime.date | None


def prepare(args: argparse.Namespace) -> Prepared | None:
    """Read and validate the baseline and expected failures up front (None without --baseline).

    Read *before* a matrix run: the run may overwrite the baseline file (reports/results.json).
    """
    if args.baseline is None:
        if args.expected_failures is not None:
            raise GateError("--expected-failures needs --baseline")
        return None
    baseline = load_results(args.baseline, "baseline")
    path = args.expected_failures
    if path is None and DEFAULT_EXPECTED.is_file():
        path = DEFAULT_EXPECTED
    expected = load_expected(path) if path is not None else []
    return Prepared(baseline, expected, parse_today(args.today))


def run_gate(prepared: Prepared, current: Mapping[str, Cell], out: TextIO = sys.stdout) -> int:
    res = compare(prepared.baseline, current, prepared.expected, prepared.today)
    print_result(res, out)
    return 1 if res.failed else 0


def cmd_gate(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    prepared = prepare(args)
    assert prepared is not None
    if args.current is not None:
        current = load_results(args.current, "current results")
    else:
        current = cells_from_store(args.store or Path(os.environ.get("COMPAT_STORE", ".matrix")))
    return run_gate(prepared, current, out)
