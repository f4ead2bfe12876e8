"""Plan and run the matrix: environments, then saves, then loads, with a result cache.

Stdlib only. A cell is recomputed only when its cache key changes (runner/keys.py): a
save's is made of the saver's environment, the scenario with its helper files, the format
and the worker components the save runs; a load's of the artifact's content digest, the
loader's environment, the format, the variant and the worker components the load runs.
A load's observations are judged on the host (runner/judge.py), so a tolerance change
re-judges cached loads without running them. ``fresh=True`` recomputes all; ``dry_run``
says what a run would recompute and why; a run whose runner code changed re-runs a
sample of its cache hits and stops if any differs (:class:`StaleCacheError`).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner import envs, execute, faults, judge, keys
from runner.cells import (
    artifact_digest,
    held_at_full_limit,
    parse_load_cell_id,
    record_from_result,
    why_rerun,
)
from runner.envs import RuntimeSettings, StackEnv, ensure_env
from runner.progress import Progress
from runner.records import ErrorInfo, Outcome, Record, Store, atomic_write_text, first_line, load_cell_id, save_cell_id
from runner.scenario_catalog import FORMATS, Scenario
from runner.stacks import Stack

__all__ = [
    "Options",
    "RunSummary",
    "build_env",
    "fan_out",
    "run_matrix",
    "run_stack_cells",
]


# Remedy rounds: the remedies of the failing loads, then those of the remedy cells that got
# further and failed for another cause with a remedy of its own (tfsm, then signature).
REMEDY_ROUNDS = 3  # = diagnose.REMEDY_DEPTH (tests/test_remedies.py)


@dataclasses.dataclass(frozen=True)
class Options:
    fresh: bool = False
    isolate: bool = False
    cell_timeout: float = 300.0  # a save cell (building + tracing can take 15 s)
    load_timeout: float | None = None  # a load cell's ceiling (see load_limit); None: cell_timeout
    import_timeout: float = 600.0
    phases: tuple[str, ...] = ("save", "load", "remedy")
    jobs: int = 1  # stacks worked on at once within a phase (each its own worker process)
    wait: bool = False  # queue behind another run holding the store instead of refusing
    runtime: str | None = None  # venv|docker|auto for every stack; None: each stack's catalog entry
    docker_base: str | None = None  # base image for every docker stack ("{python}" filled in)
    docker_memory: str | None = None  # memory limit of each worker container (e.g. "4g")
    docker_cpus: float | None = None  # CPU limit of each worker container
    shard: tuple[int, int] | None = None  # (K, N): run only shard K of N of every phase's cells
    elsewhere: tuple[str, ...] = ()  # stacks whose own job loads their cells: no remedy cells there
    verbose: bool = False  # per-cell lines on the console too (always in <store>/runs/run.log)
    progress_interval: float = 30.0  # seconds between plain progress lines (no terminal)
    # Fraction of cache hits re-run and compared (at least one per loader x format); None:
    # VERIFY_FRACTION when the runner's code changed since the store was last verified.
    verify: float | None = None
    # The bisect phase, run after loads and remedies (runner/bisect.py ``bisect_phase``, which
    # the command line passes: this module does not import it); None, the default: no bisect.
    bisect: Callable[[Any, Sequence[Stack]], None] | None = None

    def runtime_settings(self) -> RuntimeSettings:
        return RuntimeSettings(self.runtime, self.docker_base, self.docker_memory, self.docker_cpus)

    def limit(self, phase: str) -> float:
        """Seconds one cell of ``phase`` may take at most (a load's limit adapts below it:
        :func:`load_limit`); the limit in force is recorded with every record."""
        return (self.load_timeout or self.cell_timeout) if phase == "load" else self.cell_timeout


# A load's limit adapts to the model: LOAD_MULTIPLE times the slower of (a) the artifact's
# save in its saver and (b) the loader's own saves of the same scenario, never below
# LOAD_FLOOR_S (a worker's first load pays lazy imports) nor above --load-timeout. A load
# rebuilds (and, for trained scenarios, resumes training of) what a save built, so a
# genuine load stays well inside it; a hang costs the limit, not a fixed 20-60 s.
LOAD_MULTIPLE = 10.0
LOAD_FLOOR_S = 10.0


VERIFY_FRACTION = 0.005
VERIFIED_FILE = "verified.json"


class StaleCacheError(Exception):
    """A sampled cache hit does not reproduce: something its key does not cover changed."""


def runner_code_digest() -> str:
    """sha256 over every file of the runner package as bytes: any change at all, including
    the harness no key covers, makes the next run re-check a sample of its cache hits."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json", ".toml") and p.is_file()
                       and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def verify_fraction(store: Store, options: Options) -> tuple[float, str]:
    """(fraction of cache hits to re-run, why): the option when given, else
    :data:`VERIFY_FRACTION` unless this very code already verified the store."""
    if options.verify is not None:
        return options.verify, "as asked (--verify-sample)"
    try:
        last = json.loads((store.root / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        last = {}
    if isinstance(last, dict) and last.get("code") == runner_code_digest():
        return 0.0, f"the runner's code is the one that verified this store at {last.get('at', '?')}"
    return VERIFY_FRACTION, "the runner's code changed since this store was last verified"


ARTIFACT_CHANGED = "artifact missing or changed since it was saved"


def load_limit(ceiling: float, saver_s: float | None, loader_s: float | None) -> tuple[float, str]:
    """The limit of one load cell and the rule that gave it (kept in its record)."""
    floor = min(LOAD_FLOOR_S, ceiling)
    known = [d for d in (saver_s, loader_s) if d is not None]
    if not known:
        return ceiling, f"no save duration known: the ceiling {ceiling:g} s"
    ref = max(known)
    limit = round(min(ceiling, max(floor, LOAD_MULTIPLE * ref)), 1)
    said = f"saver's save {saver_s:g} s" if saver_s is not None else "saver's save unknown"
    said += f", loader's own save of the scenario {loader_s:g} s" if loader_s is not None else ""
    return limit, (f"{LOAD_MULTIPLE:g} x {ref:g} s ({said}), floor {floor:g} s, "
                   f"ceiling {ceiling:g} s")


@dataclasses.dataclass
class RunSummary:
    counts: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)  # (phase, outcome)
    computed: int = 0
    cached: int = 0
    retried: Counter[str] = dataclasses.field(default_factory=Counter)  # per-run outcomes run again
    shared: int = 0  # remedy cells that are table cells this very run computed (not "cached")
    resaved: int = 0  # cached saves whose artifact was gone or changed: redone
    rejudged: int = 0  # cached loads judged again (new tolerance or judging code): nothing ran
    verified: int = 0  # cache hits re-run and found to reproduce their records
    inconclusive: int = 0  # cache hits whose re-run timed out or crashed: no evidence either way
    recycled: int = 0  # workers retired over their memory limit and replaced (runner/execute.py)
    unreadable: int = 0  # record files that could not be read: recomputed
    envs: dict[str, StackEnv] = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0


# A stack's share of a phase: the worker cells it must run, and how a result becomes a record.
_Plan = tuple[list[dict[str, Any]], Callable[[dict[str, Any]], Record]]


class _Runner:
    def __init__(self, stacks: Sequence[Stack], savers: Sequence[Stack],
                 scenarios: Sequence[Scenario], formats: Sequence[str], store: Store,
                 options: Options, out: TextIO,
                 env_factory: Callable[[Stack, Store], StackEnv]) -> None:
        self.stacks = list(stacks)
        self.savers = list(savers)
        self.scenarios = list(scenarios)
        self.formats = [f for f in FORMATS if f in formats]
        self.store = store
        self.opt = options
        self.out = out
        self.env_factory = env_factory
        self.summary = RunSummary()
        self._lock = threading.Lock()  # summary counters and log lines, across --jobs threads
        self._local = threading.local()  # per fan-out thread: cells it computed (timings)
        self.cancel = threading.Event()  # Ctrl-C: every supervisor kills its worker and stops
        self._artifact_digests: dict[Path, str | None] = {}
        self._shard_cells: set[str] | None = None  # this shard's cell ids (None: every cell)
        self._in_remedy = False  # load cells of the remedy phase are counted as "remedy"
        self._in_confirm = False  # full-limit re-runs of timeouts are counted as "confirm"
        self._below_full: list[Record] = []  # this run's load timeouts at a limit below the full one
        self._written: set[str] = set()  # cell ids recorded by this run
        # This run's table load cells served from the cache: (loader, saver, scenario, format, variant).
        self._hits: list[tuple[str, str, Scenario, str, str]] = []
        self.progress = Progress(out, store.root / "runs" / "run.log", verbose=options.verbose,
                                 interval=options.progress_interval)

    # ------------------------------------------------------------------- sharding
    def plan_shard(self, cells: Sequence[tuple[str, Path]]) -> None:
        """Take this shard's part of one phase's ``(cell id, record path)`` plan.

        Greedy longest-first over the cells' recorded durations (the store's previous
        run; cells never run weigh the median), ties by cell id, so every shard that sees
        the same store computes the same partition, and the parts together are the plan.
        """
        if self.opt.shard is None:
            return
        k, n = self.opt.shard
        weights: dict[str, float] = {}
        for cid, path in cells:
            old = self.store.read(path)
            if old is not None and isinstance(old.duration_s, (int, float)) and old.duration_s > 0:
                weights[cid] = float(old.duration_s)
        known = sorted(weights.values())
        default = known[len(known) // 2] if known else 1.0
        loads = [0.0] * n
        mine: set[str] = set()
        for w, cid in sorted((-weights.get(cid, default), cid) for cid, _ in cells):
            i = min(range(n), key=lambda j: (loads[j], j))
            loads[i] -= w
            if i == k - 1:
                mine.add(cid)
        self._shard_cells = mine
        self.log(f"[shard {k}/{n}] {len(mine)} of {len(cells)} cells")

    def _mine(self, cid: str) -> bool:
        return self._shard_cells is None or cid in self._shard_cells

    def formats_of(self, sc: Scenario) -> list[str]:
        """The run's formats this scenario has cells in (opt-in formats only where it names them)."""
        return [f for f in self.formats if sc.uses(f)]

    def save_plan(self) -> list[tuple[str, Path]]:
        return [(save_cell_id(sc.name, f, s.id), self.store.save_record_path(s.id, sc.name, f))
                for s in self.stacks for sc in self.scenarios for f in self.formats_of(sc)]

    def load_plan(self) -> list[tuple[str, Path]]:
        return [(load_cell_id(sc.name, f, sv.id, lo.id, v), self.store.load_record_path(lo.id, sv.id, sc.name, f, v))
                for lo in self.stacks for sv in self.savers for sc in self.scenarios for f in self.formats_of(sc)
                for v in sc.variants]

    def log(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def count(self, phase: str, outcome: str, *, cached: bool, cid: str = "") -> None:
        if phase == "load" and self._in_confirm:
            phase = "confirm"
        elif phase == "load" and self._in_remedy:
            phase = "remedy"
        with self._lock:
            self.summary.counts[phase, outcome] += 1
            if not cached:
                self.summary.computed += 1
                self._local.computed = getattr(self._local, "computed", 0) + 1
                self._written.add(cid)
            elif cid in self._written:  # a remedy cell that is a table cell of this run
                self.summary.shared += 1
            else:
                self.summary.cached += 1
        self.progress.advance(computed=not cached)

    def each(self, fn: Callable[[Stack], None], stacks: Sequence[Stack], phase: str | None = None) -> None:
        """Apply ``fn`` to every stack, ``jobs`` at a time (see :func:`fan_out`). With a
        ``phase``, longest first: each stack's wall time in that phase in the previous run
        (``<store>/timings.json``) orders the queue, stacks never timed first, so the phase
        does not end on one long stack while the other cores idle; the times are saved."""
        if phase is None:
            fan_out(fn, stacks, self.opt.jobs, self.cancel)
            return
        known = read_timings(self.store).get(phase, {})
        ordered = sorted(stacks, key=lambda s: (s.id in known, -known.get(s.id, 0.0)))
        took: dict[str, float] = {}

        def timed(stack: Stack) -> None:
            # Only a stack that computed cells (counted in this thread) has a time worth
            # keeping: a fully cached pass takes ~0 s and would put it last next time.
            t0, before = time.monotonic(), getattr(self._local, "computed", 0)
            fn(stack)
            if getattr(self._local, "computed", 0) > before:
                took[stack.id] = round(time.monotonic() - t0, 1)

        try:
            fan_out(timed, ordered, self.opt.jobs, self.cancel)
        finally:
            if took:
                save_timings(self.store, phase, took)

    # ----------------------------------------------------------------- environments
    def build_envs(self) -> None:
        self.each(self._build_env, self.stacks)

    def _build_env(self, stack: Stack) -> None:
        senv = build_env(self.env_factory, stack, self.store)
        if self.cancel.is_set():  # its probe was killed by Ctrl-C: no verdict on the stack
            raise execute.Cancelled("run interrupted")
        faults.point("env-built")
        self.summary.envs[stack.id] = senv
        if senv.ok:
            v = senv.versions
            self.log(f"[env] {stack.id}: ok ({'reused' if senv.reused else 'built'} in {senv.build_s:.1f} s): "
                     f"python {v.get('python')}, tensorflow {v.get('tensorflow')}, "
                     f"keras {v.get('keras')} ({v.get('keras_api')}, backend {v.get('backend')})")
        else:
            self.log(f"[env] {stack.id}: UNAVAILABLE: {first_line(senv.reason)}")
        self.store.write(Record(
            record_type="env", cell_id=f"env:{stack.id}", stack=stack.id,
            outcome=Outcome.OK if senv.ok else Outcome.ENV_UNAVAILABLE,
            key=senv.fingerprint, phase=None if senv.ok else "import",
            error=None if senv.ok else ErrorInfo(senv.error_type or "runner.EnvUnavailable",
                                                 senv.reason or ""),
            env=senv.versions,
            duration_s=senv.build_s,
            details={"requirements": list(stack.requirements), "python_requested": stack.python,
                     "env_vars": stack.env_dict, "keras_module": stack.keras_module,
                     "reused": senv.reused}))

    # ------------------------------------------------------------------------ saves
    def save_decision(self, senv: StackEnv, sc: Scenario, fmt: str
                      ) -> tuple[str, dict[str, str], Record | None, Path, str | None]:
        """A save cell's (key, key parts, record, artifact dir, why it runs or None): what
        the run and ``--dry-run`` both decide by."""
        stack = senv.stack.id
        key, parts = keys.save_key(senv.fingerprint, sc.sha256, fmt)
        old = self.store.read(self.store.save_record_path(stack, sc.name, fmt))
        art = self.store.artifact_dir(stack, sc.name, fmt)
        return key, parts, old, art, self.why_rerun(old, key, parts, self.opt.limit("save"), art)

    def load_decision(self, lenv: StackEnv, saved: Record, saver_id: str, sc: Scenario, fmt: str, variant: str,
                      full_limit: bool = False
                      ) -> tuple[str, dict[str, str], Record | None, float, str, str, str | None]:
        """A load cell's (key, key parts, record, limit, limit rule, judging, why it runs or
        None): what the run and ``--dry-run`` both decide by."""
        loader = lenv.stack.id
        key, parts = keys.load_key(saved.details.get("artifact_sha256"), lenv.fingerprint, sc.sha256, fmt, variant)
        old = self.store.read(self.store.load_record_path(loader, saver_id, sc.name, fmt, variant))
        limit, rule = load_limit(self.opt.limit("load"), saved.duration_s, self._own_save_s(loader, sc))
        if full_limit:
            limit, rule = self.opt.limit("load"), f"the full limit, confirming a timeout at {limit:g} s"
        judged = judge.judged_with(sc.atol, sc.rtol)
        return key, parts, old, limit, rule, judged, self.why_rerun(old, key, parts, limit, judged=judged)

    def run_phase(self, phase: str, stacks: Sequence[Stack],
                  plan: Callable[[StackEnv], _Plan]) -> None:
        """Decide every stack's cells first (cache hits are counted then, so the progress
        line's rate and ETA cover only what is left to run), then run them longest first."""
        envs = self.summary.envs
        planned: dict[str, _Plan] = {}

        def decide(s: Stack) -> None:
            todo = plan(envs[s.id])
            with self._lock:
                planned[s.id] = todo

        self.each(decide, stacks)
        command = "save" if phase == "save" else "load"  # a remedy is a load with a variant
        self.each(lambda s: self._run(envs[s.id], command, *planned.pop(s.id)),
                  [s for s in stacks if planned[s.id][0]], phase)

    def plan_saves(self, senv: StackEnv) -> _Plan:
        """The save cells ``senv`` must run (cache hits counted, not returned)."""
        stack = senv.stack
        todo: list[dict[str, Any]] = []
        meta: dict[str, tuple[Scenario, str, str, Record | None, dict[str, str]]] = {}
        for sc in self.scenarios:
            for fmt in self.formats_of(sc):
                cid = save_cell_id(sc.name, fmt, stack.id)
                if not self._mine(cid):
                    continue
                if not senv.ok:
                    self._record_unavailable("save", senv, sc, fmt, stack.id, None, None)
                    continue
                key, parts, old, art, why = self.save_decision(senv, sc, fmt)
                if why is None:
                    assert old is not None
                    self.count("save", old.outcome.value, cached=True, cid=cid)
                    continue
                self._note_rerun(why, old)
                if why == ARTIFACT_CHANGED:
                    with self._lock:
                        self.summary.resaved += 1
                    self.log(f"  [save {stack.id}] {cid}: artifact missing or changed since "
                             "it was saved; saving again (its loads will be recomputed)")
                meta[cid] = (sc, fmt, key, old, parts)
                todo.append({"cell_id": cid, "scenario": sc.name, "scenario_path": str(sc.path),
                             "format": fmt, "artifact_dir": str(art)})
        return todo, lambda res: self._save_record(senv, meta, res)

    # ------------------------------------------------------------- cache validity
    def why_rerun(self, old: Record | None, key: str, parts: Mapping[str, str], limit: float,
                  art: Path | None = None, judged: str | None = None) -> str | None:
        """The one reuse-or-rerun decision: None when ``old`` stands for this run, else why
        the cell runs (what ``--dry-run`` prints). ``art``: a save's artifact, which must
        still be the bytes it recorded; ``judged``: a load's judging today
        (:func:`runner.judge.judged_with`): a record judged otherwise is judged again
        without running (:meth:`_rejudge`) unless its observations came from an
        interrupted cell."""
        why = why_rerun(old, key, parts, limit, self.opt.limit("load") if old and old.record_type == "load" else None,
                        self.opt.fresh, product=None if art is None else (
                            lambda rec: "" if self._artifact_intact(rec, art) else ARTIFACT_CHANGED))
        if why is not None or old is None:
            return why
        if (judged is not None and old.observed and old.judged_with != judged
                and old.observed.get("worker_outcome") != judge.OBSERVED):
            return "judged otherwise, and observed by an interrupted cell"
        return None

    def _rejudge(self, old: Record, sc: Scenario, judged: str) -> Record:
        """``old`` judged today (its observations against its artifact's reference), written."""
        assert old.saver and old.format and old.variant
        res = judge.rejudge(old.details, old.observed, judge.reference_of(
            self.store.artifact_dir(old.saver, sc.name, old.format)), old.format, old.variant, sc.atol, sc.rtol)
        assert res is not None  # why_rerun sent interrupted observations to run again
        try:
            outcome = Outcome(res["outcome"])
        except ValueError:
            outcome = Outcome.PROTOCOL_ERROR
        new = dataclasses.replace(old, outcome=outcome, max_abs_diff=res.get("max_abs_diff"),
                                  details=res["details"], judged_with=judged,
                                  error=ErrorInfo.from_dict(res.get("error")) if res.get("error") else old.error)
        self.store.write(new)
        with self._lock:
            self.summary.rejudged += 1
        return new

    def _note_rerun(self, why: str, old: Record | None) -> None:
        if old is not None and why.endswith(" is retried"):
            with self._lock:
                self.summary.retried[old.outcome.value] += 1

    def _artifact_intact(self, saved: Record, art: Path) -> bool:
        recorded = saved.details.get("artifact_sha256")
        return bool(recorded) and self._artifact_digest(art) == recorded

    def _artifact_digest(self, art: Path) -> str | None:
        """sha256 over the artifact directory's files (relative names and bytes), memoised
        for the run; None when it has no save.json (nothing usable was written)."""
        with self._lock:
            if art in self._artifact_digests:
                return self._artifact_digests[art]
        digest = artifact_digest(art)
        with self._lock:
            self._artifact_digests[art] = digest
        return digest

    def _save_record(self, senv: StackEnv, meta: dict[str, tuple[Scenario, str, str, Record | None, dict[str, str]]],
                     res: dict[str, Any]) -> Record:
        sc, fmt, key, old, parts = meta[res["cell_id"]]
        if res.get("outcome") == "ok":
            art = self.store.artifact_dir(senv.stack.id, sc.name, fmt)
            with self._lock:
                self._artifact_digests.pop(art, None)
            res = {**res, "details": {**(res.get("details") or {}),
                                      "artifact_sha256": self._artifact_digest(art)}}
        return self._record_from_result("save", res, key=key, key_parts=parts, stack=senv.stack.id,
                                        saver=senv.stack.id, scenario=sc, fmt=fmt, old=old)

    # ------------------------------------------------------------------------ loads
    def read_saved(self) -> None:
        """Read every loadable save record once, before the loaders start (not once per
        loader): a save is loadable only while its artifact matches the digest recorded
        when it was written."""
        self.saved: dict[tuple[str, str, str], Record] = {}
        for saver in self.savers:
            for sc in self.scenarios:
                for fmt in self.formats_of(sc):
                    saved = self.store.read(self.store.save_record_path(saver.id, sc.name, fmt))
                    art = self.store.artifact_dir(saver.id, sc.name, fmt)
                    if saved is not None and saved.outcome is Outcome.OK and self._artifact_intact(saved, art):
                        self.saved[saver.id, sc.name, fmt] = saved
                    # else: the report shows why (save outcome or env) for this cell

    def plan_loads(self, lenv: StackEnv) -> _Plan:
        """Every artifact in ``lenv``, in every variant of its scenario (see :meth:`plan_load_cells`)."""
        wanted = [(saver.id, sc, fmt, variant)
                  for saver in self.savers for sc in self.scenarios for fmt in self.formats_of(sc)
                  for variant in sc.variants]
        return self.plan_load_cells(lenv, wanted)

    def plan_load_cells(self, lenv: StackEnv, wanted: Sequence[tuple[str, Scenario, str, str]],
                        full_limit: bool = False, verify: bool = False) -> _Plan:
        """The ``(saver, scenario, format, variant)`` load cells ``lenv`` must run (cache
        hits counted, not returned), and how a result becomes a record; ``full_limit``: at
        the full load limit instead of the adaptive one (confirming a timeout); ``verify``:
        every wanted cell runs, nothing is counted (re-checking cache hits)."""
        loader = lenv.stack
        todo: list[dict[str, Any]] = []
        meta: dict[str, tuple[Scenario, str, str, str, Record, str, Record | None, float, str, dict[str, str]]] = {}
        for saver_id, sc, fmt, variant in wanted:
            saved = self.saved.get((saver_id, sc.name, fmt))
            if saved is None:
                continue  # the report shows why (save outcome or env) for this cell
            art = self.store.artifact_dir(saver_id, sc.name, fmt)
            cid = load_cell_id(sc.name, fmt, saver_id, loader.id, variant)
            if not self._mine(cid):
                continue
            if not lenv.ok:
                self._record_unavailable("load", lenv, sc, fmt, saver_id, loader.id, variant, saved)
                continue
            key, parts, old, limit, rule, judged, why = self.load_decision(lenv, saved, saver_id, sc, fmt, variant,
                                                                           full_limit)
            if verify:
                why = "verify"
            if why is None:
                assert old is not None
                if old.observed and old.judged_with != judged:
                    old = self._rejudge(old, sc, judged)
                self.count("load", old.outcome.value, cached=True, cid=cid)
                if not (self._in_remedy or self._in_confirm) and old.outcome.final:
                    with self._lock:
                        self._hits.append((loader.id, saver_id, sc, fmt, variant))
                continue
            self._note_rerun(why, old)
            todo.append({"cell_id": cid, "scenario": sc.name, "scenario_path": str(sc.path),
                         "format": fmt, "artifact_dir": str(art), "variant": variant, "timeout_s": limit})
            # The previous record matters only when it is this key's timeout (timeouts in a
            # row); holding no other keeps a whole phase's plan small.
            same = old if old is not None and old.key == key and old.outcome is Outcome.TIMEOUT else None
            meta[cid] = (sc, fmt, saver_id, variant, saved, key, same, limit, rule, parts)
        return todo, lambda res: self._load_record(lenv, meta, res)

    # --------------------------------------------------------------------- remedies
    def plan_remedies(self, catalog: Sequence[Stack],
                      after: dict[str, list[tuple[str, Scenario, str, str]]] | None = None,
                      seen: set[tuple[str, str, str, str, str]] | None = None,
                      ) -> dict[str, list[tuple[str, Scenario, str, str]]]:
        """Cells to re-run so every remedy the diagnosis names for a failing load is verified.

        A variant remedy re-runs the cell in the same loader with one more flag; a sibling
        remedy runs it in each catalog stack declared ``sibling_of`` the loader with that
        ``remedy``. Returned per stack id, in the order of the loads they verify. With
        ``after`` (the remedy cells of the round before), the failing ones are diagnosed in
        turn: a remedy that gets further and fails for a cause with its own remedy (a legacy
        SavedModel read through TFSMLayer, then refused for a multi-input signature) is
        followed by that one. ``seen`` holds the cells planned already (never planned twice).
        """
        plan: dict[str, list[tuple[str, Scenario, str, str]]] = {}
        seen = set() if seen is None else seen
        own = {s.id for s in self.stacks}
        if after is None:
            sources = [(loader.id, saver.id, sc, fmt, variant)
                       for loader in self.stacks for saver in self.savers for sc in self.scenarios
                       for fmt in self.formats_of(sc) for variant in sc.variants]
        else:
            sources = [(stack_id, saver_id, sc, fmt, variant)
                       for stack_id, cells in after.items() for saver_id, sc, fmt, variant in cells]
        for loader_id, saver_id, sc, fmt, variant in sources:
            rec = self.store.read(self.store.load_record_path(loader_id, saver_id, sc.name, fmt, variant))
            if rec is None:
                continue
            for stack_id, cell in remedy_cells(rec, sc, catalog):
                if stack_id in self.opt.elsewhere and stack_id not in own:
                    continue  # that stack's own job loads this very cell
                key = (stack_id, cell[0], cell[1].name, cell[2], cell[3])
                if key not in seen:  # two failures may share a remedy cell
                    seen.add(key)
                    plan.setdefault(stack_id, []).append(cell)
        return plan

    def run_remedies(self, catalog: Sequence[Stack]) -> None:
        # A shard re-runs the remedies of the failures in its own store (its own loads):
        # no second partition, which could hand a failure's remedy to a shard without it.
        self._shard_cells = None
        seen: set[tuple[str, str, str, str, str]] = set()
        plan = self.plan_remedies(catalog, seen=seen)
        by_id = {s.id: s for s in catalog}
        self._in_remedy = True
        for round_no in range(1, REMEDY_ROUNDS + 1):
            if round_no > 1 and not plan:
                break
            missing = [by_id[sid] for sid in plan if sid not in self.summary.envs]
            if missing:
                self.log(f"[remedy] building sibling stacks: {', '.join(s.id for s in missing)}")
                self.each(self._build_env, missing)
            then = "" if round_no == 1 else f" (round {round_no}: remedies of remedies that failed further on)"
            self.log(f"[remedy] {sum(len(v) for v in plan.values())} remedy cells in {len(plan)} stacks{then}")
            self.progress.phase("remedy", sum(len(v) for v in plan.values()))
            self.run_phase("remedy", [by_id[sid] for sid in plan], functools.partial(self._plan_round, plan))
            plan = self.plan_remedies(catalog, after=plan, seen=seen)

    def _plan_round(self, plan: Mapping[str, list[tuple[str, Scenario, str, str]]], env: StackEnv) -> _Plan:
        """A remedy round's cells in ``env``'s stack."""
        return self.plan_load_cells(env, plan[env.stack.id])

    def confirm_timeouts(self, catalog: Sequence[Stack]) -> None:
        """A timeout is a result only when it held at the full load limit. This run's
        timeouts below it are grouped by loader, scenario, format, phase and where the
        watchdog interrupted them (:func:`timeout_group`); one representative of each group
        runs at the full limit. When it times out again, the group is confirmed by it
        (``details.confirmed_by``); when it ends, every other member runs at the full
        limit too. A slow cell that ends in time is then a result with its duration."""
        short, self._below_full = self._below_full, []
        if not short:
            return
        groups: dict[tuple[Any, ...], list[Record]] = {}
        for rec in sorted(short, key=lambda r: r.cell_id):
            groups.setdefault(timeout_group(rec), []).append(rec)
        full = self.opt.limit("load")
        self.log(f"[confirm] {len(short)} timeouts below the full {full:g} s limit, {len(groups)} groups: "
                 "one representative each runs at the full limit")
        reps = self._rerun_full([g[0] for g in groups.values()], catalog)
        rest: list[Record] = []
        for members in groups.values():
            rep = reps.get(members[0].cell_id)
            if rep is None or rep.outcome is not Outcome.TIMEOUT:
                rest += members[1:]
                continue
            for m in members[1:]:
                cur = self.store.read(self._load_path(m.cell_id))
                if cur is not None and cur.key == m.key and cur.outcome is Outcome.TIMEOUT:
                    self.store.write(dataclasses.replace(cur, details={
                        **cur.details, "confirmed_by": rep.cell_id, "confirmed_limit_s": full}))
        if rest:
            self.log(f"[confirm] {len(rest)} more at the full limit: their groups' representatives ended in time")
            self._rerun_full(rest, catalog)

    def _rerun_full(self, recs: Sequence[Record], catalog: Sequence[Stack]) -> dict[str, Record]:
        """Re-run the load cells of ``recs`` at the full limit; their new records by cell id."""
        by_sc = {sc.name: sc for sc in self.scenarios}
        by_id = {s.id: s for s in catalog}
        wanted: dict[str, list[tuple[str, Scenario, str, str]]] = {}
        for rec in recs:
            sc_name, fmt, saver, loader, variant = parse_load_cell_id(rec.cell_id)
            wanted.setdefault(loader, []).append((saver, by_sc[sc_name], fmt, variant))
        stacks = [by_id[sid] for sid in wanted if sid in self.summary.envs]
        self._in_confirm = True
        try:
            self.progress.phase("confirm", sum(len(v) for v in wanted.values()))
            self.run_phase("confirm", stacks,
                           lambda env: self.plan_load_cells(env, wanted[env.stack.id], full_limit=True))
        finally:
            self._in_confirm = False
        out = {}
        for rec in recs:
            new = self.store.read(self._load_path(rec.cell_id))
            if new is not None:
                out[rec.cell_id] = new
        return out

    def _own_save_s(self, stack_id: str, sc: Scenario) -> float | None:
        """The slowest successful save of ``sc`` by ``stack_id`` in any selected format
        (None when that stack saved none: not a saver, or it cannot build the scenario)."""
        found = [rec.duration_s for fmt in self.formats
                 if (rec := self.saved.get((stack_id, sc.name, fmt))) is not None and rec.duration_s is not None]
        return max(found) if found else None

    def _load_record(self, lenv: StackEnv,
                     meta: dict[str, tuple[Scenario, str, str, str, Record, str, Record | None, float, str,
                                           dict[str, str]]],
                     res: dict[str, Any]) -> Record:
        sc, fmt, saver, variant, saved, key, old, limit, rule, parts = meta[res["cell_id"]]
        res = {**res, "details": {**(res.get("details") or {}), "limit_rule": rule,
                                  "full_limit_s": self.opt.limit("load"),
                                  "artifact_sha256": saved.details.get("artifact_sha256")}}
        res = judge.judge_load(res, judge.reference_of(self.store.artifact_dir(saver, sc.name, fmt)), fmt, variant,
                               sc.atol, sc.rtol)
        return self._record_from_result("load", res, key=key, key_parts=parts, stack=lenv.stack.id, saver=saver,
                                        scenario=sc, fmt=fmt, loader=lenv.stack.id,
                                        variant=variant, saver_env=saved.env, old=old, limit_s=limit,
                                        judged_with=judge.judged_with(sc.atol, sc.rtol))

    # ---------------------------------------------------------------------- helpers
    def _record_unavailable(self, phase: str, senv: StackEnv, sc: Scenario, fmt: str,
                            saver: str, loader: str | None, variant: str | None,
                            saved: Record | None = None) -> None:
        cid = (save_cell_id(sc.name, fmt, saver) if phase == "save"
               else load_cell_id(sc.name, fmt, saver, loader or "", variant or ""))
        rec = Record(record_type=phase,  # type: ignore[arg-type]
                     cell_id=cid, stack=senv.stack.id, outcome=Outcome.ENV_UNAVAILABLE,
                     saver=saver, loader=loader, scenario=sc.name, format=fmt, variant=variant,
                     phase="import", error=ErrorInfo(senv.error_type or "runner.EnvUnavailable",
                                                     senv.reason or ""),
                     scenario_sha256=sc.sha256,
                     saver_env=saved.env if saved else {})
        self.store.write(rec)
        self.count(phase, rec.outcome.value, cached=False, cid=cid)

    def _record_from_result(self, phase: str, res: dict[str, Any], *, key: str, key_parts: dict[str, str],
                            stack: str,
                            saver: str, scenario: Scenario, fmt: str, loader: str | None = None,
                            variant: str | None = None,
                            saver_env: dict[str, Any] | None = None,
                            old: Record | None = None, limit_s: float | None = None,
                            judged_with: str = "") -> Record:
        return record_from_result(phase, res, key=key, stack=stack, saver=saver, scenario=scenario.name,
                                  scenario_sha256=scenario.sha256, fmt=fmt, loader=loader, variant=variant,
                                  saver_env=saver_env, old=old, key_parts=key_parts, judged_with=judged_with,
                                  limit_s=self.opt.limit(phase) if limit_s is None else limit_s)

    def _run(self, senv: StackEnv, phase: str, todo: list[dict[str, Any]],
             to_record: Callable[[dict[str, Any]], Record]) -> None:
        if not todo:
            return
        self.log(f"[{phase} {senv.stack.id}] {len(todo)} cells to run")
        if phase == "save":
            self._run_cells(senv, phase, todo, to_record)
            return
        # Loaders read artifacts, never change them for the loaders after them (Keras 3.4.0/
        # 3.4.1 delete a model.weights.h5 next to the .keras they load): a venv loader reads
        # a hard-linked view of its batch's artifacts (a container mounts them read-only),
        # and every artifact is re-hashed after the batch.
        view = artifact_view(self.store, senv, todo)
        try:
            self._run_cells(senv, phase, [{**c, "artifact_dir": view(c["artifact_dir"])} for c in todo],
                            lambda res: to_record(view.unview(res)))
        finally:
            view.close()
        for art in sorted(view.changed()):
            self.log(f"[{phase} {senv.stack.id}] ERROR: {art} changed while it was loaded; its loads in this "
                     "batch are void and it will be saved again")
            with self._lock:
                self._artifact_digests.pop(Path(art), None)
            for cell in (c for c in todo if c["artifact_dir"] == art):
                self._void(self.store.read(self._load_path(cell["cell_id"])), art)

    # ---------------------------------------------------------------- verification
    def verify_hits(self, fraction: float, seed: int) -> tuple[int, list[str], list[str]]:
        """Re-run a sample of this run's cache hits — about ``fraction`` of them and at least
        one per loader x format — without writing, and compare each with its record:
        (cells re-run, differences, inconclusive re-runs). A difference means something the
        record's key does not cover changed what the cell does."""
        if fraction <= 0 or not self._hits:
            return 0, [], []
        rng = random.Random(seed)
        groups: dict[tuple[str, str], list[tuple[str, str, Scenario, str, str]]] = {}
        for hit in self._hits:
            groups.setdefault((hit[0], hit[3]), []).append(hit)
        chosen = {rng.choice(sorted(g, key=lambda h: (h[1], h[2].name, h[4]))) for g in groups.values()}
        rest = sorted(set(self._hits) - chosen, key=lambda h: (h[0], h[1], h[2].name, h[3], h[4]))
        want = max(len(chosen), math.ceil(fraction * len(self._hits)))
        chosen |= set(rng.sample(rest, min(len(rest), want - len(chosen))))
        by_loader: dict[str, list[tuple[str, Scenario, str, str]]] = {}
        for loader, saver, sc, fmt, variant in chosen:
            by_loader.setdefault(loader, []).append((saver, sc, fmt, variant))
        differ: list[str] = []
        unsure: list[str] = []
        for loader_id in sorted(by_loader):
            lenv = self.summary.envs[loader_id]
            todo, to_record = self.plan_load_cells(lenv, by_loader[loader_id], verify=True)
            view = artifact_view(self.store, lenv, todo)
            try:
                for fresh in run_stack_cells(
                        lenv, "load", [{**c, "artifact_dir": view(c["artifact_dir"])} for c in todo], self.store,
                        functools.partial(_unviewed, to_record, view), cell_timeout=self.opt.limit("load"),
                        import_timeout=self.opt.import_timeout, isolate=self.opt.isolate, cancel=self.cancel,
                        write=False):
                    old = self.store.read(self._load_path(fresh.cell_id))
                    if old is None:
                        continue
                    if not fresh.outcome.final:  # a timeout or crash of this re-run: no evidence
                        unsure.append(f"{fresh.cell_id}: {fresh.outcome.value} on re-run")
                    elif _facts(fresh) != _facts(old):
                        differ.append(f"{fresh.cell_id}: recorded {_describe_facts(old)}, a fresh run gives "
                                      f"{_describe_facts(fresh)}; its key covers "
                                      f"{', '.join(sorted(old.key_parts)) or 'nothing named (an old record)'}")
            finally:
                view.close()
            if view.changed():
                differ.append(f"{loader_id}: an artifact changed while it was re-loaded: {sorted(view.changed())[0]}")
        return len(chosen), differ, unsure

    def _load_path(self, cid: str) -> Path:
        sc_name, fmt, saver, loader, variant = parse_load_cell_id(cid)
        return self.store.load_record_path(loader, saver, sc_name, fmt, variant)

    def _void(self, rec: Record | None, art: str) -> None:
        if rec is None:
            return
        self.store.write(dataclasses.replace(
            rec, outcome=Outcome.PROTOCOL_ERROR, key="",
            error=ErrorInfo("runner.artifact_changed", f"the artifact {art} changed while this batch loaded it "
                                                       "(a loader wrote to it): this load is not a result")))

    def _run_cells(self, senv: StackEnv, phase: str, todo: list[dict[str, Any]],
                   to_record: Callable[[dict[str, Any]], Record]) -> None:
        for n, rec in enumerate(run_stack_cells(
                senv, phase, todo, self.store, to_record, cell_timeout=self.opt.limit(phase),
                import_timeout=self.opt.import_timeout, isolate=self.opt.isolate, cancel=self.cancel), 1):
            self.count(phase, rec.outcome.value, cached=False, cid=rec.cell_id)
            if phase != "save" and rec.outcome is Outcome.TIMEOUT and not held_at_full_limit(rec):
                with self._lock:
                    self._below_full.append(rec)
            msg = ""
            if rec.error and rec.outcome is not Outcome.OK:
                msg = " - " + rec.error.type.rsplit(".", 1)[-1] + ": " + \
                    first_line(rec.error.message)[:100]
            self.progress.cell(f"  [{phase} {senv.stack.id} {n}/{len(todo)}] {rec.cell_id}: "
                               f"{rec.outcome.value}{msg}")


def _unviewed(to_record: Callable[[dict[str, Any]], Record], view: _View, res: dict[str, Any]) -> Record:
    return to_record(view.unview(res))


def _facts(rec: Record) -> tuple[Any, ...]:
    """What a re-run must reproduce for a record to stand: the outcome, the two verdicts and
    the error's type (not durations, nor |Δ| digits, nor message wording)."""
    return (rec.outcome, rec.prediction, rec.training, rec.error.type if rec.error else None)


def _describe_facts(rec: Record) -> str:
    outcome, prediction, training, error = _facts(rec)
    parts = [outcome.value] + [f"{k} {v}" for k, v in (("prediction", prediction), ("training", training),
                                                        ("error", error)) if v]
    return " / ".join(parts)


def build_env(factory: Callable[[Stack, Store], StackEnv], stack: Stack, store: Store) -> StackEnv:
    """``factory``'s environment of ``stack``; an unavailable one (with the reason) if it raises."""
    try:
        return factory(stack, store)
    except Exception as exc:
        return StackEnv(stack=stack, ok=False, reason=f"building the stack raised {type(exc).__name__}: {exc}",
                        error_type="runner.EnvBuildError")


def run_stack_cells(senv: StackEnv, command: str, todo: list[dict[str, Any]], store: Store,
                    to_record: Callable[[dict[str, Any]], Record], *, cell_timeout: float,
                    import_timeout: float, isolate: bool = False, cancel: threading.Event | None = None,
                    env: dict[str, str] | None = None, write: bool = True, **run_cells: Any) -> Iterator[Record]:
    """Run ``todo`` in ``senv``'s workers (:func:`runner.execute.run_cells`; ``env`` defaults
    to the stack's :func:`~runner.execute.child_env`, ``run_cells`` are further arguments
    such as ``worker_path`` and ``spawn``); write (unless ``write`` is false: re-checking)
    and yield each cell's record (``to_record(result)``): the matrix's cell loop, also
    ``check``'s."""
    stack = senv.stack
    assert senv.python is not None
    forgot = False
    for raw in execute.run_cells(
            senv.python, command, todo, workdir=store.root / "runs" / f"{command}-{stack.id}",
            env=execute.child_env(stack.env_dict) if env is None else env, keras_module=stack.keras_module,
            cell_timeout=cell_timeout, import_timeout=import_timeout, isolate=isolate, cancel=cancel,
            **{"spawn": senv.spawn, **run_cells}):
        faults.point(f"{command}-result")
        result = raw
        message = str((result.get("error") or {}).get("message") or "")
        if "[Errno 28]" in message or "No space left on device" in message:
            # A full disk is this machine's fault, not the cell's: stop (one error line)
            # instead of recording a false save_error/load_error.
            raise OSError(errno.ENOSPC, "No space left on device (inside the worker of "
                          f"{stack.id}, cell {result.get('cell_id')})", str(store.root))
        if result.get("phase") == "import" and result.get("outcome") in ("save_error", "load_error"):
            # The probe imported this stack, its worker could not: the venv was damaged
            # since. A fact about this run, not the cell: retried, the venv re-probed.
            result = {**result, "outcome": Outcome.ENV_UNAVAILABLE.value}
            if not forgot:
                forgot = True
                envs.forget_probe(senv)
        elif (result.get("outcome") in ("save_error", "load_error")
              and (result.get("error") or {}).get("type") in ("builtins.ModuleNotFoundError", "builtins.ImportError")
              and (gone := envs.damaged_module(senv.python, message))):
            # A module this stack installed whose files are gone (a deleted h5py/ next to its
            # dist-info): the venv's damage, not the cell's result. Never cached; the next
            # run's file check finds it and rebuilds the venv once.
            result = {**result, "outcome": Outcome.ENV_UNAVAILABLE.value,
                      "error": {**result["error"], "type": "runner.EnvDamaged",
                                "message": f"the stack's own module {gone} is damaged (installed, files missing): "
                                           + message}}
        rec = to_record(result)
        if write:
            store.write(rec)
        yield rec


def _load_key(cid: str) -> tuple[str, str, str]:
    """(saver, scenario, format) of a load cell id ``scenario:format:saver->loader:variant``."""
    scenario, fmt, rest = cid.split(":", 2)
    return rest.split("->", 1)[0], scenario, fmt


TIMINGS_FILE = "timings.json"  # {phase: {stack id: wall seconds of its last run}}: the queue order


def read_timings(store: Store) -> dict[str, dict[str, float]]:
    """Each stack's wall time per phase in earlier runs (empty when unknown or unreadable:
    only the order of the queue depends on it, never a result)."""
    try:
        data = json.loads((store.root / TIMINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {ph: {k: float(v) for k, v in d.items() if isinstance(v, (int, float))}
            for ph, d in data.items() if isinstance(d, dict)}


def save_timings(store: Store, phase: str, took: Mapping[str, float]) -> None:
    data = read_timings(store)
    data.setdefault(phase, {}).update(took)
    atomic_write_text(store.root / TIMINGS_FILE, json.dumps(data, indent=1, sort_keys=True))


def fan_out(fn: Callable[[Any], None], items: Sequence[Any], jobs: int,
            cancel: threading.Event | None = None) -> None:
    """Apply ``fn`` to every item, ``jobs`` at a time (results do not depend on it): the
    matrix's per-stack fan-out, also ``check``'s.

    Ctrl-C (KeyboardInterrupt in the main thread) sets ``cancel`` and kills every live
    worker's process group at once; the threads are daemons, so the interrupt is re-raised
    within a poll interval, whatever ``jobs`` is.
    """
    cancel = cancel if cancel is not None else threading.Event()
    if jobs <= 1 or len(items) <= 1:
        try:
            for item in items:
                fn(item)
        except KeyboardInterrupt:
            cancel.set()
            execute.kill_live_workers()
            raise
        return
    queue = list(items)
    errors: list[BaseException] = []
    qlock = threading.Lock()

    def work() -> None:
        while not cancel.is_set():
            with qlock:
                if not queue or errors:
                    return
                item = queue.pop(0)
            try:
                fn(item)
            except execute.Cancelled:
                return
            except BaseException as exc:  # re-raised in the main thread
                with qlock:
                    errors.append(exc)
                return

    threads = [threading.Thread(target=work, daemon=True, name=f"stack-{i}")
               for i in range(min(jobs, len(items)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except KeyboardInterrupt:
        cancel.set()
        execute.kill_live_workers()
        for t in threads:  # each notices within one poll; daemons, so never a hang
            t.join(max(0.0, 1.0))
        raise
    if errors:
        raise errors[0]
    if cancel.is_set():
        raise KeyboardInterrupt


class _View:
    """Where a batch's loads read each artifact: a hard-linked copy under ``<store>/views/``
    (venv loaders), or the artifact itself (a container, which mounts it read-only). A
    result's texts name the artifact's own path, never the view's."""

    def __init__(self, store: Store, root: Path | None) -> None:
        self.artifacts, self.root = str(store.root / "artifacts"), root
        self.before: dict[str, dict[str, tuple[int, int, int]]] = {}

    def __call__(self, art: str) -> str:
        self.before.setdefault(art, _stat_tree(art))
        if self.root is None:
            return art
        dst = self.root / Path(art).relative_to(self.artifacts)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(art, dst, copy_function=_link_or_copy)
        return str(dst)

    def unview(self, res: dict[str, Any]) -> dict[str, Any]:
        if self.root is None:
            return res
        text = json.dumps(res).replace(json.dumps(str(self.root))[1:-1], json.dumps(self.artifacts)[1:-1])
        return dict(json.loads(text))

    def changed(self) -> list[str]:
        """The artifacts whose files were written, added, removed or replaced during the batch
        (inode, size and mtime of every file: a write through a view's hard link shows)."""
        return [art for art, before in self.before.items() if _stat_tree(art) != before]

    def close(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _stat_tree(art: str) -> dict[str, tuple[int, int, int]]:
    out = {}
    for folder, _, files in os.walk(art):
        for name in files:
            path = Path(folder) / name
            st = path.lstat()
            out[str(path.relative_to(art))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def artifact_view(store: Store, senv: StackEnv, todo: Sequence[Mapping[str, Any]]) -> _View:
    """The :class:`_View` of one loader's batch (emptied first: a killed run's is stale)."""
    if getattr(senv.spawn, "in_container", False):
        return _View(store, None)
    root = store.root / "views" / senv.stack.id
    shutil.rmtree(root, ignore_errors=True)
    return _View(store, root)


_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')


def timeout_group(rec: Record) -> tuple[Any, ...]:
    """Timeouts that hang in the same place: the same loader, scenario, format, phase and
    the innermost frames (file name, function) where the watchdog interrupted the cell."""
    frames = _FRAME.findall(rec.error.traceback if rec.error else "")
    return (rec.loader, rec.scenario, rec.format, rec.phase, tuple((Path(f).name, fn) for f, fn in frames[-8:]))


def remedy_cells(rec: Record, sc: Scenario,
                 catalog: Sequence[Stack]) -> list[tuple[str, tuple[str, Scenario, str, str]]]:
    """The ``(stack id, (saver, scenario, format, variant))`` cells verifying ``rec``'s remedies."""
    from runner import diagnose  # the rules are only needed once loads have failed

    if rec.saver is None or rec.format is None:
        return []
    targets = diagnose.remedy_targets(rec, diagnose.diagnose(rec), has_custom_objects=sc.has_custom_objects,
                                      siblings=diagnose.sibling_map(catalog))
    return [(loader, (rec.saver, sc, rec.format, variant)) for _remedy, loader, variant in targets]


def run_matrix(stacks: Sequence[Stack], scenarios: Sequence[Scenario], formats: Sequence[str],
               store: Store, options: Options = Options(), out: TextIO = sys.stdout,
               env_factory: Callable[[Stack, Store], StackEnv] | None = None,
               savers: Sequence[Stack] | None = None,
               catalog: Sequence[Stack] | None = None) -> RunSummary:
    """Build every stack's env, run every save, every load, then every remedy; return the counts.

    The remedy phase re-runs failing loads with each remedy their diagnosis names (see
    runner/diagnose.py); sibling remedies run in the ``catalog`` stacks declared
    ``sibling_of`` a loader (built on demand).

    ``stacks`` run the cells; the load phase loads the artifacts of ``savers`` (default:
    ``stacks``), so a load of one stack can cover every saver already in the store.
    A stack that cannot be built yields ``env_unavailable`` records and the rest go on.
    """
    t0 = time.monotonic()
    if env_factory is None:  # the stack's runtime: options.runtime, else its catalog entry
        env_factory = functools.partial(ensure_env, runtime=options.runtime_settings())
    with store.running(wait=options.wait):
        return _run(stacks, scenarios, formats, store, options, out, env_factory, savers, t0,
                    stacks if catalog is None else catalog)


@dataclasses.dataclass
class DryRun:
    """What a run would do, per phase: cells reused, and cells run by reason."""

    cached: Counter[str] = dataclasses.field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = dataclasses.field(default_factory=dict)
    rejudged: int = 0  # cached loads whose observations would be judged again (no run)

    def would_run(self, phase: str) -> int:
        return sum(self.reasons.get(phase, Counter()).values())

    def add(self, phase: str, why: str | None) -> None:
        if why is None:
            self.cached[phase] += 1
        else:
            self.reasons.setdefault(phase, Counter())[why] += 1

    def lines(self) -> list[str]:
        out = ["dry run: no stack was built, no cell run, no record, artifact or log written; the remedy "
               "and confirm phases depend on this run's outcomes and are not predicted"]
        for phase in ("save", "load"):
            n = self.would_run(phase)
            out.append(f"{phase}: {n} of {n + self.cached[phase]} cells would run")
            for why, count in sorted(self.reasons.get(phase, Counter()).items(), key=lambda kv: (-kv[1], kv[0])):
                out.append(f"  {count:>7}  {why}")
        out.append(f"judge: {self.rejudged} cached loads would be judged again (tolerance or judging code changed; "
                   "nothing runs)")
        return out


def dry_run(stacks: Sequence[Stack], scenarios: Sequence[Scenario], formats: Sequence[str],
            store: Store, options: Options = Options(), savers: Sequence[Stack] | None = None) -> DryRun:
    """Which cells a run would compute and why (the component, input or outcome that
    invalidated each record), without building, running or writing anything: stack
    environments are only inspected (:func:`runner.envs.peek_env`). A load whose save
    would run is counted as running (its artifact may change)."""
    import io

    factory = functools.partial(envs.peek_env, runtime=options.runtime_settings())
    found = DryRun()
    with store.running(wait=options.wait, reader=True):
        runner = _Runner(stacks, stacks if savers is None else savers, scenarios, formats, store, options,
                         io.StringIO(), factory)
        peeked = {s.id: factory(s, store) for s in {*runner.stacks, *runner.savers}}
        resaved: set[tuple[str, str, str]] = set()
        if "save" in options.phases:
            for stack in runner.stacks:
                senv = peeked[stack.id]
                for sc in runner.scenarios:
                    for fmt in runner.formats_of(sc):
                        why = (runner.save_decision(senv, sc, fmt)[-1] if senv.ok
                               else f"environment: {first_line(senv.reason)}")
                        found.add("save", why)
                        if why is not None:
                            resaved.add((stack.id, sc.name, fmt))
        if "load" in options.phases:
            runner.read_saved()
            for loader in runner.stacks:
                lenv = peeked[loader.id]
                for saver in runner.savers:
                    for sc in runner.scenarios:
                        for fmt in runner.formats_of(sc):
                            saved = runner.saved.get((saver.id, sc.name, fmt))
                            for variant in sc.variants:
                                if (saver.id, sc.name, fmt) in resaved:
                                    why = "its save runs (the artifact may change)"
                                elif saved is None:
                                    continue  # no artifact to load: no load cell (as in a run)
                                elif not lenv.ok:
                                    why = f"environment: {first_line(lenv.reason)}"
                                else:
                                    *_, old, _limit, _rule, judged, why = runner.load_decision(
                                        lenv, saved, saver.id, sc, fmt, variant)
                                    if why is None and old is not None and old.observed \
                                            and old.judged_with != judged:
                                        found.rejudged += 1
                                found.add("load", why)
    return found


def _verify(runner: _Runner, store: Store, options: Options) -> None:
    """Re-run a sample of this run's cache hits (:meth:`_Runner.verify_hits`); stop with
    :class:`StaleCacheError` on any difference, else remember that this code verified."""
    fraction, why = verify_fraction(store, options)
    if fraction <= 0 or not runner._hits:
        runner.log(f"[verify] no cache hits re-checked: {why if fraction <= 0 else 'this run had none'}")
    else:
        seed = time.time_ns() % (1 << 32)
        t0 = time.monotonic()
        n, differ, unsure = runner.verify_hits(fraction, seed)
        runner.summary.verified = n - len(unsure) - len(differ)
        runner.summary.inconclusive = len(unsure)
        runner.log(f"[verify] {n} of {len(runner._hits)} cache hits re-run ({why}; seed {seed}) in "
                   f"{time.monotonic() - t0:.0f} s: {len(differ)} differ"
                   + (f", {len(unsure)} inconclusive ({unsure[0]}{' ...' if len(unsure) > 1 else ''})"
                      if unsure else ""))
        if differ:
            raise StaleCacheError(
                f"{len(differ)} of {n} re-run cache hits differ from their records, so a cached answer is stale "
                f"although its key did not change: {differ[0]}. Something outside those key parts (the harness, "
                "a component's dependency missing from the key) changed what cells do; run with --fresh, and "
                "make the key cover it (runner/components.py). Records were not changed.")
        if unsure:
            return  # not verified: the next run tries again
    if options.shard is None:
        atomic_write_text(store.root / VERIFIED_FILE, json.dumps(
            {"code": runner_code_digest(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "re_run": runner.summary.verified, "cache_hits": len(runner._hits)}, indent=1, sort_keys=True) + "\n")


def _run(stacks: Sequence[Stack], scenarios: Sequence[Scenario], formats: Sequence[str],
         store: Store, options: Options, out: TextIO,
         env_factory: Callable[[Stack, Store], StackEnv], savers: Sequence[Stack] | None,
         t0: float, catalog: Sequence[Stack]) -> RunSummary:
    runner = _Runner(stacks, stacks if savers is None else savers, scenarios, formats, store,
                     options, out, env_factory)
    recycled = execute.recycled_workers()
    try:
        runner.build_envs()
        if "save" in options.phases:
            plan = runner.save_plan()
            runner.plan_shard(plan)
            runner.progress.phase("save", sum(runner._mine(cid) for cid, _ in plan))
            runner.run_phase("save", stacks, runner.plan_saves)
        if "load" in options.phases:
            runner.read_saved()
            plan = runner.load_plan()
            runner.plan_shard(plan)
            loadable = {(sv, sc, f) for sv, sc, f in runner.saved}
            runner.progress.phase("load", sum(
                1 for cid, _ in plan if runner._mine(cid) and _load_key(cid) in loadable))
            runner.run_phase("load", stacks, runner.plan_loads)
            runner.confirm_timeouts(catalog)
        if "remedy" in options.phases:
            if "load" not in options.phases:
                runner.read_saved()
            runner.run_remedies(catalog)
            runner.confirm_timeouts(catalog)
        if "load" in options.phases:
            _verify(runner, store, options)
        if options.bisect is not None and "load" in options.phases:
            options.bisect(runner, catalog)
    finally:
        runner.progress.close()
        runner.summary.recycled = execute.recycled_workers() - recycled
    runner.summary.wall_s = round(time.monotonic() - t0, 1)
    runner.summary.unreadable = len(store.unreadable)
    return runner.summary
