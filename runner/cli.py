"""Command line: ``python -m runner <matrix|save|load|report|stacks|check|gate|explain|repro|show>``.

Bad input (unknown stack, tag, scenario or format; invalid catalog) is one line on
stderr and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from runner import check, explain, gate, matrix
from runner.records import RecordError, Store
from runner.stacks import DEFAULT_CATALOG, CatalogError, Stack, find_python, load_catalog, select

__all__ = ["main"]

EXIT_USAGE = 2


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="stack catalog TOML")
    p.add_argument("--store", type=Path,
                   default=Path(os.environ.get("COMPAT_STORE", ".matrix")),
                   help="work directory for envs, artifacts and records (default .matrix, or $COMPAT_STORE)")


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stacks", type=_csv, default=[], help="comma-separated stack ids")
    p.add_argument("--tags", "-t", type=_csv, default=[], help="comma-separated catalog tags")
    p.add_argument("--scenarios", type=_csv, default=[], help="comma-separated scenario names")
    p.add_argument("--formats", type=_csv, default=[],
                   help=f"comma-separated formats ({', '.join(matrix.FORMATS)})")
    p.add_argument("--scenario-dir", type=Path, default=matrix.DEFAULT_SCENARIOS)
    p.add_argument("--fresh", action="store_true", help="recompute cells even if recorded")
    p.add_argument("--isolate", action="store_true", help="one worker process per cell")
    p.add_argument("--cell-timeout", type=float, default=60.0,
                   help="seconds one save cell may take after the framework import (default 60)")
    p.add_argument("--load-timeout", type=float, default=20.0,
                   help="seconds one load cell may take (default 20; real loads take < 5 s, and "
                        "known hangs, e.g. Keras 3 on Keras 2 nested-model HDF5, cost this each)")
    p.add_argument("--import-timeout", type=float, default=600.0,
                   help="seconds a worker may take to import its framework")
    p.add_argument("--jobs", "-j", type=int, default=min(2, os.cpu_count() or 1),
                   help="stacks worked on at once (default: min(2, CPUs)); results do not depend on it")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("matrix", "build stacks, save, load, then write reports"),
                       ("save", "build the selected stacks and run their saves"),
                       ("load", "load every saved artifact in the selected stacks")):
        p = sub.add_parser(name, help=text)
        _common(p)
        _selection(p)
        if name == "matrix":
            p.add_argument("--out", type=Path, default=Path("reports"), help="report directory")
            p.add_argument("--no-report", action="store_true")
            gate.add_options(p, baseline_required=False)
    p = sub.add_parser("report", help="write reports from the records already in the store")
    _common(p)
    p.add_argument("--out", type=Path, default=Path("reports"))
    p.add_argument("--stacks", type=_csv, default=[], help="only these stacks (default: the catalog)")
    p.add_argument("--tags", "-t", type=_csv, default=[], help="only stacks with these tags")
    p = sub.add_parser("stacks", help="list the catalog and the interpreter found for each")
    _common(p)
    p.add_argument("--json", action="store_true")
    check.add_parser(sub)
    gate.add_parser(sub)
    p = sub.add_parser("explain", help="one cell's full story: versions, outcome, message, "
                                      "traceback tail, category, explanation, verified remedies")
    _common(p)
    p.add_argument("cell", help="a cell id (scenario:format:saver->loader:variant) or text "
                                "contained in exactly one")
    p = sub.add_parser("repro", help="write a standalone reproduction of one load cell "
                                    "(setup.sh + repro.py), runnable without this project")
    _common(p)
    p.add_argument("cell", help="a load cell id or text contained in exactly one")
    p.add_argument("--out", type=Path, required=True, help="new (or empty) directory to write to")
    p = sub.add_parser("show", help="print the records of cells whose id contains TEXT")
    _common(p)
    p.add_argument("text")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    stacks = select(catalog, args.stacks, args.tags)
    scenarios = matrix.select_scenarios(matrix.discover_scenarios(args.scenario_dir), args.scenarios)
    bad = [f for f in args.formats if f not in matrix.FORMATS]
    if bad:
        raise CatalogError(f"unknown format {bad[0]!r} (known: {', '.join(matrix.FORMATS)})")
    formats = args.formats or list(matrix.FORMATS)
    if not stacks or not scenarios:
        raise CatalogError("the selection is empty")
    # The baseline is read before the run: the run may overwrite it (reports/results.json).
    baseline = gate.prepare(args) if args.command == "matrix" else None
    if baseline is not None and args.no_report:
        raise gate.GateError("--baseline compares the report's results: drop --no-report")
    phases = {"matrix": ("save", "load", "remedy"), "save": ("save",),
              "load": ("load", "remedy")}[args.command]
    # `load` alone loads what every catalog stack saved; `matrix` stays within its selection.
    savers = catalog if args.command == "load" else stacks
    store = Store(args.store)
    print(f"matrix: {len(stacks)} stacks x {len(scenarios)} scenarios x {len(formats)} formats; "
          f"phases {'+'.join(phases)}; store {store.root}", flush=True)
    summary = matrix.run_matrix(
        stacks, scenarios, formats, store,
        matrix.Options(fresh=args.fresh, isolate=args.isolate, cell_timeout=args.cell_timeout,
                       load_timeout=args.load_timeout,
                       import_timeout=args.import_timeout, phases=phases,
                       jobs=max(1, args.jobs)),
        savers=savers, catalog=catalog)
    counts = ", ".join(f"{ph} {oc}: {n}" for (ph, oc), n in sorted(summary.counts.items()))
    print(f"matrix: {summary.computed} cells run, {summary.cached} cached, "
          f"{summary.wall_s:.0f} s. {counts}", flush=True)
    if args.command == "matrix" and not args.no_report:
        status = _report(store, args.out, [s.id for s in stacks], print_summary=True, catalog=catalog)
        if status != 0 or baseline is None:
            return status
        return gate.run_gate(baseline, gate.load_results(args.out / "results.json"))
    return 0


def _report(store: Store, out: Path, stack_ids: Sequence[str], print_summary: bool,
            catalog: Sequence[Stack] | None = None) -> int:
    try:
        from runner import report
    except ImportError as exc:  # pandas/tabulate missing on this interpreter
        print(f"runner: the report needs pandas and tabulate ({exc}); "
              "run `nox -s report` or pip install pandas tabulate", file=sys.stderr)
        return EXIT_USAGE
    df = report.write_reports(store, out, stack_ids=stack_ids, catalog=catalog)
    if print_summary:
        print(report.terminal_summary(df))
    print(f"report: {len(df)} cells -> {out}/", flush=True)
    return 0


def _cmd_stacks(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    rows = []
    for s in catalog:
        rows.append({**s.to_dict(), "interpreter_found": find_python(s.python) is not None})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        found = "yes" if r["interpreter_found"] else "NO"
        print(f"{r['id']:<20} py{r['python']:<5} interpreter:{found:<4} tags:{','.join(r['tags']):<28} "
              f"{' '.join(r['requirements'])}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    store = Store(args.store)
    hits = [r for r in store.iter_records() if args.text in r.cell_id]
    if not hits:
        print(f"runner: no recorded cell id contains {args.text!r}", file=sys.stderr)
        return 1
    for r in hits:
        print(json.dumps(r.to_dict(), indent=1, sort_keys=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("matrix", "save", "load"):
            return _cmd_run(args)
        if args.command == "report":
            catalog = load_catalog(args.catalog)
            selected = select(catalog, args.stacks, args.tags)
            return _report(Store(args.store), args.out, [s.id for s in selected], False, catalog)
        if args.command == "stacks":
            return _cmd_stacks(args)
        if args.command == "check":
            return check.run_check(check.options_from_args(args))
        if args.command == "gate":
            return gate.cmd_gate(args)
        if args.command == "explain":
            store = Store(args.store)
            print(explain.explain_text(store, explain.find_cell(store, args.cell),
                                       load_catalog(args.catalog)), end="")
            return 0
        if args.command == "repro":
            store = Store(args.store)
            files = explain.write_repro(store, explain.find_cell(store, args.cell), args.out)
            print("\n".join(str(f) for f in files))
            print(f"repro: run `bash {args.out}/setup.sh` (it creates the two environments)")
            return 0
        return _cmd_show(args)
    except (CatalogError, matrix.ScenarioError, RecordError, check.CheckInputError, gate.GateError,
            explain.CellError) as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("runner: interrupted; recorded cells are kept, run again to finish", file=sys.stderr)
        return 130
