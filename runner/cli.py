"""Command line: ``python -m runner COMMAND`` (matrix, save, load, report, stacks, check, gate,
merge, ci-workflow, ci-plan, explain, repro, bisect, show).

Bad input (unknown stack, tag, scenario or format; an empty list; a non-positive number;
invalid catalog; a store or report directory that cannot be written) is one
``runner: error:`` line on stderr and exit status 2, before anything is written. A
filesystem fault during a run (a full disk) is the same one line and exit 2; recorded
cells are kept. Ctrl-C exits 130; SIGTERM stops a command the same way (the same message,
workers, containers and uv installs ended) and exits 143. ``report`` of a --store without
records is the same one line and writes nothing; it holds the store's lock (``--wait``
queues behind a run, else one line naming the holder), and record files it cannot use are
skipped and named, never a traceback.

``reports/`` (the published table) is written only by a run of the whole default catalog
(or ``--out reports`` given explicitly); any other selection writes its report to
``<store>/reports/``, and every report file states its selection.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from runner import bisect, check, ci_workflow, components, explain, gate, matrix, merge, scenario_catalog
from runner.cli_options import add_common, add_stacks, add_workers, csv_list, positive, positive_seconds
from runner.records import RecordError, Store, StoreBusyError, default_store_root
from runner.runtime_docker import RUN_RUNTIMES, parse_memory
from runner.stacks import DEFAULT_CATALOG, CatalogError, Stack, find_python, load_catalog, select

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_STALE = 4  # a re-run cache hit differs from its record: no report is written
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15, what a shell reports for a process it ended
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what any command reports when its reader went away
PUBLISHED = Path("reports")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``runner: error:`` line (exit 2), like every other."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"runner: error: {self.prog.split()[-1]}: {message} (see --help)\n")


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 2/4), not {text!r}") from None
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, not {text!r}")
    return shard


def _memory(text: str) -> str:
    if parse_memory(text) is None:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 512m, 4g)")
    return text


_positive_cpus = positive("CPUs")


def _selection(p: argparse.ArgumentParser) -> None:
    add_stacks(p)
    p.add_argument("--scenarios", type=csv_list, default=[], help="comma-separated scenario names")
    p.add_argument("--formats", type=csv_list, default=[],
                   help=f"comma-separated formats ({', '.join(scenario_catalog.FORMATS)})")
    p.add_argument("--scenario-dir", type=Path, default=scenario_catalog.DEFAULT_SCENARIOS)
    add_workers(p, 60.0, "seconds one save cell may take after the framework import (default 60)")
    p.add_argument("--isolate", action="store_true", help="one worker process per cell")
    p.add_argument("--load-timeout", type=positive_seconds, default=60.0,
                   help="the most seconds one load cell may take (default 60). Below it a load's "
                        f"limit adapts: {matrix.LOAD_MULTIPLE:g} x the slower of the artifact's save "
                        f"and the loader's own save of the scenario, at least {matrix.LOAD_FLOOR_S:g} s; "
                        "the rule is in each record")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="print every cell's line on the console too (always in <store>/runs/run.log)")
    p.add_argument("--wait", action="store_true",
                   help="if another run holds the store, queue behind it instead of stopping")
    p.add_argument("--runtime", choices=RUN_RUNTIMES, default=None,
                   help="where every stack runs: venv (a host interpreter), docker (a container of "
                        "its Python), auto (venv where the interpreter exists, else docker); "
                        "default: each stack's catalog runtime")
    p.add_argument("--docker-base", default=None, metavar="IMAGE",
                   help="base image of every docker stack ('{python}' becomes X.Y; default: "
                        "$COMPAT_DOCKER_BASE, else the catalog's image, else python:X.Y-slim-bookworm)")
    p.add_argument("--docker-memory", type=_memory, default=None, metavar="SIZE",
                   help="memory limit of each worker container, e.g. 4g (over it: a crash, SIGKILL)")
    p.add_argument("--docker-cpus", type=_positive_cpus, default=None, metavar="N",
                   help="CPU limit of each worker container, e.g. 1.5")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="run only shard K of N of each phase's cells (balanced by the store's recorded "
                        "durations); every shard must start from the same store; merge the parts")
    p.add_argument("--elsewhere", type=csv_list, default=[], metavar="STACKS",
                   help="stacks whose own job loads their cells: remedy cells in them are left to it "
                        "(the generated CI workflow passes its loader stacks)")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, not {text!r}")
    return value


def _parser(prog: str = "python -m runner") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("matrix", "build stacks, save, load, then write reports"),
                       ("save", "build the selected stacks and run their saves"),
                       ("load", "load every saved artifact in the selected stacks")):
        p = sub.add_parser(name, help=text)
        add_common(p)
        _selection(p)
        p.add_argument("--verify-sample", type=_fraction, default=None, metavar="FRACTION",
                       help="re-run this fraction of the cache hits (at least one per loader x format) and stop "
                            "if any differs from its record (default: 0.005 whenever the runner's code changed "
                            "since the store was last verified, else none; 0: never)")
        p.add_argument("--dry-run", action="store_true",
                       help="print, per phase, how many cells would run and why (which component, input or "
                            "outcome invalidated each record); builds and runs nothing, and writes no record, "
                            "artifact or log")
        if name == "matrix":
            p.add_argument("--out", type=Path, default=None,
                           help="report directory (default: reports/ for the whole default catalog, "
                                "<store>/reports/ for any other selection)")
            p.add_argument("--no-report", action="store_true")
            p.add_argument("--no-bisect", action="store_true",
                           help="skip the bisect phase (after loads and remedies: the first release "
                                "between adjacent Keras 3 stacks where a cell's outcome changes)")
            gate.add_options(p, baseline_required=False)
    p = sub.add_parser("report", help="write reports from the records already in the store")
    add_common(p)
    p.add_argument("--scenarios", type=csv_list, default=[], help="comma-separated scenario names")
    p.add_argument("--formats", type=csv_list, default=[], help="comma-separated formats")
    p.add_argument("--scenario-dir", type=Path, default=scenario_catalog.DEFAULT_SCENARIOS)
    p.add_argument("--out", type=Path, default=None,
                   help="report directory (default: reports/ when the store holds the whole default "
                        "catalog, else <store>/reports/)")
    add_stacks(p, "only these stacks (default: the catalog)", "only stacks with these tags")
    p.add_argument("--wait", action="store_true",
                   help="if a run holds the store, wait for it instead of stopping")
    p = sub.add_parser("stacks", help="list the catalog and the interpreter found for each")
    add_common(p)
    p.add_argument("--json", action="store_true")
    check.add_parser(sub)
    components.add_parser(sub)
    gate.add_parser(sub)
    merge.add_parser(sub)
    ci_workflow.add_parsers(sub)
    p = sub.add_parser("explain", help="one cell's full story: versions, outcome, message, "
                                      "traceback tail, category, explanation, verified remedies; or, with "
                                      "--from/--format/--to, an upgrade path's verdict")
    add_common(p)
    p.add_argument("cell", nargs="?", help="a cell id (scenario:format:saver->loader:variant) or text "
                                           "contained in exactly one")
    p.add_argument("--from", dest="saver", metavar="STACK", help="the stack that saved (with --format and --to: "
                                                                 "one line per upgrade path, from a results table)")
    p.add_argument("--format", dest="fmt", choices=scenario_catalog.FORMATS, help="the format it saved")
    p.add_argument("--to", dest="loader", metavar="STACK", help="the stack that loads")
    p.add_argument("--results", type=Path, default=PUBLISHED / gate.RESULTS_JSON,
                   help="the results table to read the verdict from (default: the published one)")
    p = sub.add_parser("repro", help="write a standalone reproduction of one load cell "
                                    "(setup.sh + repro.py), runnable without this project")
    add_common(p)
    p.add_argument("cell", help="a load cell id or text contained in exactly one")
    p.add_argument("--out", type=Path, required=True, help="new (or empty) directory to write to")
    bisect.add_parser(sub)
    p = sub.add_parser("show", help="print the records of cells whose id contains TEXT")
    add_common(p)
    p.add_argument("text")
    return parser


def _is_default_catalog(path: Path) -> bool:
    return path.resolve() == DEFAULT_CATALOG.resolve()


def _writable_dir(path: Path, what: str) -> None:
    """Fail now, with one line, if ``path`` cannot hold our files (a file is in the way,
    read-only, no room for a small file): before any work, creating nothing.

    Raises:
        PreflightError: named in the message.
    """
    probe_in = path
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise PreflightError(f"{what} {path}: {probe_in} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=probe_in, prefix=".runner-write-test.") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise PreflightError(f"{what} {path} is not writable: {exc.strerror or exc}") from None


class PreflightError(Exception):
    """The store or the report directory cannot be written."""


def _report_dir(args: argparse.Namespace, store: Store, selection: scenario_catalog.Selection) -> Path:
    if args.out is not None:
        return Path(args.out)
    return PUBLISHED if selection.whole else store.root / "reports"


def _cmd_run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as held:
        return _run(args, held)


def _run(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    """matrix/save/load. ``held`` keeps the store's lock from before the first cell to
    the end of the report, so no other run's records can enter this run's report."""
    catalog = load_catalog(args.catalog)
    stacks = select(catalog, args.stacks, args.tags)
    all_scenarios = scenario_catalog.discover_scenarios(args.scenario_dir)
    scenarios = scenario_catalog.select_scenarios(all_scenarios, args.scenarios)
    bad = [f for f in args.formats if f not in scenario_catalog.FORMATS]
    if bad:
        raise CatalogError(f"unknown format {bad[0]!r} (known: {', '.join(scenario_catalog.FORMATS)})")
    formats = [f for f in scenario_catalog.FORMATS if f in (args.formats or scenario_catalog.FORMATS)]
    if not stacks or not scenarios:
        raise CatalogError("the selection is empty")
    selection = scenario_catalog.Selection(
        tuple(s.id for s in stacks), tuple(s.name for s in scenarios), tuple(formats),
        whole=(_is_default_catalog(args.catalog) and len(stacks) == len(catalog)
               and args.scenario_dir.resolve() == scenario_catalog.DEFAULT_SCENARIOS.resolve()
               and len(scenarios) == len(all_scenarios) and len(formats) == len(scenario_catalog.FORMATS)))
    # The baseline is read before the run: the run may overwrite it (reports/results.json.gz).
    baseline = gate.prepare(args) if args.command == "matrix" else None
    if baseline is not None and args.no_report:
        raise gate.GateError("--baseline compares the report's results: drop --no-report")
    phases = {"matrix": ("save", "load", "remedy"), "save": ("save",),
              "load": ("load", "remedy")}[args.command]
    # `load` alone loads what every catalog stack saved; `matrix` stays within its selection.
    savers = catalog if args.command == "load" else stacks
    store = Store(args.store)
    options = matrix.Options(fresh=args.fresh, isolate=args.isolate, cell_timeout=args.cell_timeout,
                             load_timeout=args.load_timeout,
                             import_timeout=args.import_timeout, phases=phases,
                             jobs=args.jobs, wait=args.wait, shard=args.shard, verbose=args.verbose,
                             elsewhere=tuple(args.elsewhere), runtime=args.runtime,
                             docker_base=args.docker_base, docker_memory=args.docker_memory,
                             docker_cpus=args.docker_cpus, verify=args.verify_sample,
                             bisect=None if args.command != "matrix" or args.no_bisect else bisect.bisect_phase)
    if args.dry_run:
        if args.shard is not None:
            raise PreflightError("--dry-run predicts the whole selection; drop --shard")
        found = matrix.dry_run(stacks, scenarios, formats, store, options, savers=savers)
        print("\n".join(found.lines()), flush=True)
        if options.bisect is not None:
            with store.running(wait=args.wait, reader=True):
                print("\n".join(bisect.preview(catalog, store, stacks, savers, scenarios, formats,
                                                runtime=options.runtime_settings())), flush=True)
        return 0
    _writable_dir(store.root, "store")
    out = _report_dir(args, store, selection) if args.command == "matrix" and not args.no_report else None
    if out is not None:
        _writable_dir(out, "report directory")
    held.enter_context(store.running(wait=args.wait))
    print(f"matrix: {len(stacks)} stacks x {len(scenarios)} scenarios x {len(formats)} formats; "
          f"phases {'+'.join(phases)}; store {store.root}; per-cell lines in "
          f"{store.root / 'runs' / 'run.log'}" + ("" if args.verbose else " (-v: on the console too)"), flush=True)
    summary = matrix.run_matrix(stacks, scenarios, formats, store, options, savers=savers, catalog=catalog)
    counts = ", ".join(f"{ph} {oc}: {n}" for (ph, oc), n in sorted(summary.counts.items()))
    ran = {ph: sum(n for (p, _o), n in summary.counts.items() if p == ph)
           for ph in ("save", "load", "remedy", "confirm")}
    print(f"matrix: {summary.computed} cells run, {summary.cached} cached"
          + (f", {summary.shared} remedy cells that this run had already loaded" if summary.shared else "")
          + f", {summary.wall_s:.0f} s; per phase (run + cached): saves {ran['save']}, loads "
          f"{ran['load']}, remedy re-runs {ran['remedy']}"
          + (f", timeouts re-run at the full limit {ran['confirm']}" if ran["confirm"] else "")
          + f". {counts}", flush=True)
    if summary.retried:
        print("matrix: retried (per-run outcomes are never cached): "
              + ", ".join(f"{oc} {n}" for oc, n in sorted(summary.retried.items())), flush=True)
    if summary.recycled:
        print(f"matrix: {summary.recycled} workers retired over their memory limit and replaced between cells "
              "(COMPAT_WORKER_RSS_LIMIT)", flush=True)
    if summary.verified:
        print(f"matrix: {summary.verified} cache hits re-run to verify the cache: each reproduced its record",
              flush=True)
    if summary.inconclusive:
        print(f"matrix: {summary.inconclusive} re-run cache hits timed out or crashed: no evidence either way; "
              "the next run re-checks", flush=True)
    if summary.rejudged:
        print(f"matrix: {summary.rejudged} cached loads judged again from their stored observations "
              "(tolerance or judging code changed; nothing ran)", flush=True)
    if summary.resaved:
        print(f"matrix: {summary.resaved} saves redone because their artifact was missing or changed",
              flush=True)
    if summary.unreadable:
        print(f"matrix: {summary.unreadable} unreadable record files were recomputed", flush=True)
    if out is not None:
        status = _report(store, out, print_summary=True, catalog=catalog, selection=selection,
                         scenario_dir=args.scenario_dir)
        if status != 0 or baseline is None:
            return status
        return gate.run_gate(baseline, gate.load_results(out / gate.RESULTS_JSON))
    return 0


def _report(store: Store, out: Path, print_summary: bool, catalog: Sequence[Stack],
            selection: scenario_catalog.Selection, scenario_dir: Path = scenario_catalog.DEFAULT_SCENARIOS,
            refuse_empty: bool = False) -> int:
    try:
        from runner import report
    except ImportError as exc:  # pandas/tabulate missing on this interpreter
        print(f"runner: error: the report needs pandas and tabulate ({exc}); "
              "run `nox -s report` or pip install pandas tabulate", file=sys.stderr)
        return EXIT_USAGE
    try:
        done = report.update_reports(store, out, scenario_dir=scenario_dir, catalog=catalog,
                                     selection=selection, refuse_empty=refuse_empty)
    except report.NothingToReport as exc:
        raise PreflightError(str(exc)) from None
    if print_summary:
        print(done.summary)
    size = (f"{len(selection.stacks)} stacks × {len(selection.scenarios)} scenarios × "
            f"{len(selection.formats)} formats")
    where = (f"the published table; the whole default catalog, {size}" if selection.whole
             else f"NOT the published table; a subset, {size}: its README.md lists them")
    print(f"report: {done.cells} cells -> {out}/ ({where})", flush=True)
    if done.reused:  # (not "report: ": that line is the one above)
        print(f"report (unchanged): the records, catalog, scenarios and report code are those of the last report "
              f"written into {out}/ and its {done.files} files are as written: nothing rewritten", flush=True)
    else:
        wrote = done.files - done.kept
        print(f"report (rewritten): {wrote} of {done.files} files written, the other {done.kept} already "
              f"byte-identical (left as they were)" + (f"; {done.removed} removed" if done.removed else ""), flush=True)
    _say_skipped("report", done.skipped, done.unselected, "README.md names them")
    return 0


def _gate_store_cells(store: Path, out: TextIO) -> dict[str, gate.Cell]:
    """``gate --store``: the store's current table, built by the report (pandas, imported
    only here)."""
    try:
        from runner import report
    except ImportError as exc:
        raise gate.GateError(f"--store needs pandas and tabulate ({exc}); use --current results.json.gz") from None
    return report.cells_from_store(store, out)


def _say_skipped(who: str, skipped: Sequence[tuple[str, str]], unselected: int, where: str = "") -> None:
    """One line for the record files a command left out (none: nothing printed)."""
    if skipped:
        shown = "; ".join(f"{path} ({why})" for path, why in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        print(f"{who}: skipped {len(skipped)} record file(s) that cannot be used"
              + (f" ({where})" if where else "") + f": {shown}{more}", flush=True)
    if unselected:
        print(f"{who}: {unselected} record file(s) outside the selection were not read", flush=True)


def _existing_store(path: Path) -> Store:
    """The store at ``path``, which must hold records (a mistyped --store is one line, exit 2).

    Raises:
        PreflightError: no such directory, or no records in it.
    """
    store = Store(path)
    if not store.records_dir.is_dir() and not (store.root / ".running.lock").is_file():
        # (a store whose lock exists is a run's, which may not have written its first record
        # yet: the lock decides, and the records are looked for again once it is held)
        why = "no such directory" if not os.path.lexists(store.root) else "it has no records/ folder"
        raise PreflightError(f"store {store.root} holds no records ({why}); --store names the "
                             f"matrix's work directory (default {default_store_root()})")
    return store


def _cmd_report(args: argparse.Namespace) -> int:
    """Tables from the store. It is the published selection only if the default catalog,
    scenarios and formats are asked for and the store holds a save record of every
    (stack, scenario, format) of it. A store without records is an error that touches
    nothing; the report holds the store's lock (a run writing the store is waited for with
    --wait, else refused)."""
    catalog = load_catalog(args.catalog)
    stacks = select(catalog, args.stacks, args.tags)
    all_scenarios = scenario_catalog.discover_scenarios(args.scenario_dir)
    chosen = scenario_catalog.select_scenarios(all_scenarios, args.scenarios)
    scenarios = [sc.name for sc in chosen]
    bad = [f for f in args.formats if f not in scenario_catalog.FORMATS]
    if bad:
        raise CatalogError(f"unknown format {bad[0]!r} (known: {', '.join(scenario_catalog.FORMATS)})")
    formats = tuple(f for f in scenario_catalog.FORMATS if f in (args.formats or scenario_catalog.FORMATS))
    store = _existing_store(args.store)
    with store.running(wait=args.wait, reader=True):
        _existing_store(args.store)  # the run it waited for may have ended without records
        complete = all(store.save_record_path(s.id, sc.name, f).is_file()
                       for s in stacks for sc in chosen for f in formats if sc.uses(f))
        selection = scenario_catalog.Selection(
            tuple(s.id for s in stacks), tuple(scenarios), formats,
            whole=(_is_default_catalog(args.catalog) and len(stacks) == len(catalog) and complete
                   and args.scenario_dir.resolve() == scenario_catalog.DEFAULT_SCENARIOS.resolve()
                   and len(scenarios) == len(all_scenarios) and len(formats) == len(scenario_catalog.FORMATS)))
        out = _report_dir(args, store, selection)
        _writable_dir(out, "report directory")
        if not complete:
            print(f"report: the store {store.root} does not hold every save of this selection "
                  "(missing cells show as not_run)", flush=True)
        return _report(store, out, False, catalog, selection, scenario_dir=args.scenario_dir,
                       refuse_empty=True)


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
    scan = store.scan()
    _say_skipped("show", [(str(p), why) for p, why in scan.skipped], 0)
    hits = [r for r in scan.records if args.text in r.cell_id]
    if not hits:
        print(f"runner: no recorded cell id contains {args.text!r}", file=sys.stderr)
        return 1
    for r in hits:
        print(json.dumps(r.to_dict(), indent=1, sort_keys=True))
    return 0


_SIGTERMS: list[int] = []  # SIGTERMs this process received (main resets it)


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (a CI timeout, ``kill``, ``docker stop``) stops a command as Ctrl-C does."""
    _SIGTERMS.append(signum)
    # Stopping already: a second SIGTERM must not cut the cleanup short. A Python handler,
    # not SIG_IGN, which a process started during the cleanup would inherit.
    signal.signal(signal.SIGTERM, lambda signum, _frame: _SIGTERMS.append(signum))
    raise KeyboardInterrupt


def _reader_gone() -> int:
    """stdout's reader closed it (``| head``): end quietly, as a command killed by SIGPIPE."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None, prog: str = "python -m runner") -> int:
    """Run one command; ``prog`` is the name usage and --help show (the console entry's own)."""
    _SIGTERMS.clear()
    if threading.current_thread() is not threading.main_thread():
        return _main(argv, prog)
    # Ctrl-C must stop a run (exit 130) even when it was started with SIGINT ignored,
    # as a shell does for background jobs: Python then installs no handler of its own.
    # SIGTERM stops it the same way (workers, containers and installs ended), exit 143.
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        status = _main(argv, prog)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at exit
        return status
    except BrokenPipeError:
        return _reader_gone()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _main(argv: Sequence[str] | None, prog: str = "python -m runner") -> int:
    args = _parser(prog).parse_args(argv)
    try:
        if args.command in ("matrix", "save", "load"):
            return _cmd_run(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "stacks":
            return _cmd_stacks(args)
        if args.command == "check":
            return check.run_check(check.options_from_args(args))
        if args.command == "gate":
            return gate.cmd_gate(args, _gate_store_cells)
        if args.command == "merge":
            return merge.cmd_merge(args)
        if args.command == "ci-workflow":
            return ci_workflow.cmd_ci_workflow(args)
        if args.command == "ci-plan":
            return ci_workflow.cmd_ci_plan(args)
        if args.command == "components":
            return components.cmd_components(args)
        if args.command == "explain" and (args.saver or args.fmt or args.loader):
            if args.cell or not (args.saver and args.fmt and args.loader):
                raise PreflightError("explain: give a cell, or all of --from STACK --format FORMAT --to STACK")
            if not args.results.is_file():
                raise PreflightError(f"explain: no results table at {args.results} (run the matrix, or pass --results)")
            try:
                data = json.loads(gate.read_results_text(args.results))
            except (OSError, ValueError, EOFError, zlib.error) as exc:
                raise PreflightError(f"explain: {args.results} is not a results table: {exc}") from None
            rows = list(gate.results_rows(data))
            print("\n".join(explain.upgrade_verdict(rows, args.saver, args.fmt, args.loader)))
            return 0
        if args.command == "explain":
            if not args.cell:
                raise PreflightError("explain: give a cell, or all of --from STACK --format FORMAT --to STACK")
            store = _existing_store(args.store)
            print(explain.explain_text(store, explain.find_cell(store, args.cell),
                                       load_catalog(args.catalog)), end="")
            return 0
        if args.command == "bisect":
            return bisect.cmd_bisect(args)
        if args.command == "repro":
            store = _existing_store(args.store)
            files = explain.write_repro(store, explain.find_cell(store, args.cell), args.out)
            print("\n".join(str(f) for f in files))
            print(f"repro: run `bash {args.out}/setup.sh` (it creates the two environments)")
            return 0
        return _cmd_show(args)
    except (CatalogError, scenario_catalog.ScenarioError, RecordError, check.CheckInputError, gate.GateError,
            explain.CellError, StoreBusyError, PreflightError, merge.MergeError, bisect.BisectError) as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except matrix.StaleCacheError as exc:
        print(f"runner: error: verify: {exc}", file=sys.stderr)
        return EXIT_STALE
    except BrokenPipeError:  # `... | head`: the reader has what it wanted; say nothing
        return _reader_gone()
    except OSError as exc:  # a full disk or a store made read-only mid-run
        where = f": {exc.filename}" if exc.filename else ""
        print(f"runner: error: {exc.strerror or exc}{where} (recorded cells are kept; "
              "reports/ is written all or nothing)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("runner: interrupted; recorded cells are kept, run again to finish", file=sys.stderr)
        return EXIT_TERMINATED if _SIGTERMS else EXIT_INTERRUPTED


def console() -> None:
    """The ``compat-matrix`` console command (``pip install .``): exit with main's status."""
    raise SystemExit(main(prog="compat-matrix"))
