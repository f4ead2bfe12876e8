"""``python -m runner bisect CELL`` and the matrix's bisect phase: the first release where a
cell's outcome changes between two adjacent catalog stacks.

A **line** is the catalog stacks that differ only in the release under test: the same first
requirement (the catalog's convention: the release under test, pinned ``==``), the same
environment variables (``KERAS_BACKEND``), Keras module and runtime, and no ``sibling_of``
(a remedy sibling differs by one pin on purpose). Two stacks are **adjacent** when no stack
of their line pins a release between theirs: ``keras3.10-jax`` (keras 3.10.0) and
``keras3.12-jax`` (keras 3.12.4). A pair whose stacks also pin different releases of another
framework (``tf2.20`` -> ``tf2.21`` moves tensorflow *and* keras) cannot say which one
changed the cell, and is refused.

A **flip** is a load cell whose outcome differs between the two stacks of a pair, on the
loader side (the same artifact loaded by both) or the saver side (the same scenario and
format saved by each, loaded by the same stack). Its bisect lists the releases of the
package strictly between the two installed ones (the package index's final releases:
PyPI's JSON API, or the wheel names in ``$COMPAT_BISECT_RELEASES`` for offline use and the
tests), builds each probed release as a stack of its own — the nearer end's requirements
with the package pinned to that release (the dependency pins of its era), through the
runner's env builder and the shared uv cache — and binary-searches the first release whose
outcome differs from the older end's. Each probe is an ordinary cell (a save and a load on
the saver side) run by the matrix's executor into a store of its own, ``<store>/bisect/``
(records, artifacts, env records: the report never mixes them into the table), keyed like
any cell: the candidate's environment (so its release) and the artifact. A release that
cannot be built or gives no final outcome is skipped, as ``git bisect skip`` does, and
named in the result. The result (:mod:`runner.bisect_results`) is kept per flip and is
reused while both ends still have the keys and outcomes it recorded and the releases
between them are the same: a second bisect runs nothing.

The searches of one run go in rounds: every open flip asks for its next release, the
rounds' cells are grouped per candidate stack, and each candidate runs its cells in one
worker (``--jobs`` candidates at a time).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner import bisect_results, matrix, scenario_catalog
from runner.cells import artifact_digest, parse_load_cell_id
from runner.envs import StackEnv, ensure_env
from runner.records import Outcome, Record, Store, atomic_write_text, load_cell_id, save_cell_id
from runner.scenario_catalog import Scenario
from runner.stacks import Stack

__all__ = ["BisectError", "Flip", "add_parser", "adjacent_pair", "bisect_phase", "cmd_bisect", "describe",
           "find_flips", "lines", "list_releases", "max_probes", "preview", "run_bisects", "search"]

RELEASES_ENV = "COMPAT_BISECT_RELEASES"  # a folder of wheels whose names list the releases (offline, tests)
INDEX_URL = "https://pypi.org/pypi/{package}/json"
FRAMEWORKS = ("keras", "tensorflow", "tensorflow-cpu", "tf-keras")
STORE_DIR = "bisect"  # under the store's root
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([0-9][0-9A-Za-z.*+!-]*)\s*$")
_FINAL = re.compile(r"^\d+(\.\d+)*$")


class BisectError(ValueError):
    """Bad input for a bisect (one ``runner: error:`` line, exit 2), or releases that cannot be listed."""


# ------------------------------------------------------------------------ the catalog's lines
def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pin(requirement: str) -> tuple[str, str] | None:
    """(normalised name, version) of an ``==`` requirement (``2.16.*`` stays a wildcard)."""
    m = _PIN.match(requirement)
    return (_norm(m.group(1)), m.group(2)) if m else None


def version_key(version: str) -> tuple[int, ...] | None:
    """A final release's numbers (``3.11.2`` -> (3, 11, 2)); a wildcard pin ``2.16.*`` ->
    (2, 16); None for pre-releases, dev and post releases."""
    text = version[:-2] if version.endswith(".*") else version
    return tuple(int(p) for p in text.split(".")) if _FINAL.match(text) else None


def line_key(stack: Stack) -> tuple[Any, ...] | None:
    """What the stacks of one line share (None: ``stack`` is on no line)."""
    first = pin(stack.requirements[0])
    if first is None or stack.sibling_of or version_key(first[1]) is None:
        return None
    return (first[0], stack.env, stack.keras_module, stack.runtime)


def lines(catalog: Sequence[Stack]) -> list[list[Stack]]:
    """The catalog's lines of two or more stacks, each oldest release first."""
    found: dict[tuple[Any, ...], list[Stack]] = {}
    for stack in catalog:
        key = line_key(stack)
        if key is not None:
            found.setdefault(key, []).append(stack)
    out = []
    for members in found.values():
        members.sort(key=lambda s: version_key(pin(s.requirements[0])[1]) or ())  # type: ignore[index]
        if len(members) > 1:
            out.append(members)
    return out


def _framework_pins(stack: Stack) -> dict[str, str]:
    return {p[0]: p[1] for p in map(pin, stack.requirements[1:]) if p is not None and p[0] in FRAMEWORKS}


def adjacent_pair(catalog: Sequence[Stack], a: Stack, b: Stack) -> tuple[Stack, Stack]:
    """(older, newer) of two adjacent stacks of one line.

    Raises:
        BisectError: not on one line, not adjacent, or another framework moves too.
    """
    for stack in (a, b):
        if line_key(stack) is None:
            why = ("a remedy sibling" if stack.sibling_of else
                   f"its first requirement {stack.requirements[0]!r} is not an exact release")
            raise BisectError(f"cannot bisect {stack.id}: {why} (a line is the stacks that pin one package "
                              "with ==, and differ in that release only)")
    if line_key(a) != line_key(b):
        raise BisectError(f"{a.id} and {b.id} are not on one line (their release under test, environment "
                          "variables, Keras module or runtime differ)")
    line = next(m for m in lines(catalog) if a in m)
    i, j = sorted((line.index(a), line.index(b)))
    if j - i != 1:
        between = ", ".join(s.id for s in line[i + 1:j]) or "none"
        raise BisectError(f"{a.id} and {b.id} are not adjacent releases of their line (between them: {between}); "
                          "bisect a pair of neighbours")
    older, newer = line[i], line[j]
    moved = sorted(k for k in {*_framework_pins(older), *_framework_pins(newer)}
                   if _framework_pins(older).get(k) != _framework_pins(newer).get(k))
    if moved:
        raise BisectError(f"cannot bisect {older.id} -> {newer.id}: besides {pin(older.requirements[0])[0]} "  # type: ignore[index]
                          f"they pin different releases of {', '.join(moved)}, so a release of one cannot say "
                          "which changed the cell")
    return older, newer


def neighbours(catalog: Sequence[Stack], stack: Stack) -> tuple[Stack | None, Stack | None]:
    """The older and newer neighbours of ``stack`` on its line."""
    for line in lines(catalog):
        if stack in line:
            i = line.index(stack)
            return (line[i - 1] if i else None), (line[i + 1] if i + 1 < len(line) else None)
    return None, None


# ----------------------------------------------------------------------------------- releases
@functools.lru_cache(maxsize=64)
def list_releases(package: str) -> tuple[str, ...]:
    """The package's final releases, oldest first: from the wheel and sdist names in
    ``$COMPAT_BISECT_RELEASES`` when set, else from the package index's JSON API (releases
    with at least one file that is not yanked).

    Raises:
        BisectError: the index cannot be read.
    """
    name = _norm(package)
    folder = os.environ.get(RELEASES_ENV)
    found: set[str] = set()
    if folder:
        for path in Path(folder).iterdir():
            m = re.match(r"^([A-Za-z0-9_.]+)-([^-]+?)(?:-.*\.whl|\.tar\.gz)$", path.name)
            if m and _norm(m.group(1)) == name:
                found.add(m.group(2))
    else:
        url = INDEX_URL.format(package=name)
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:  # a fixed https URL
                data = json.loads(resp.read().decode("utf-8"))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise BisectError(f"cannot list the releases of {name} from {url}: {exc}") from None
        for version, files in (data.get("releases") or {}).items():
            if isinstance(files, list) and any(isinstance(f, dict) and not f.get("yanked") for f in files):
                found.add(version)
    return tuple(sorted((v for v in found if version_key(v) is not None), key=lambda v: version_key(v) or ()))


def installed_release(stack: Stack, env: Mapping[str, Any]) -> str:
    """The release of ``stack``'s first requirement that its cells ran: the exact pin, or
    for a wildcard (``tensorflow-cpu==2.14.*``) the version its record's env reports."""
    name, version = pin(stack.requirements[0])  # type: ignore[misc]
    if not version.endswith("*"):
        return version
    reported = env.get({"tensorflow-cpu": "tensorflow"}.get(name, name))
    if not isinstance(reported, str) or version_key(reported) is None:
        raise BisectError(f"cannot bisect {stack.id}: its records do not say which {name} release "
                          f"{stack.requirements[0]!r} installed")
    return reported


# ------------------------------------------------------------------------------------ search
@dataclasses.dataclass
class Flip:
    """One cell whose outcome differs between the adjacent stacks ``older`` and ``newer``.

    ``side`` "loader": ``older_cell`` and ``newer_cell`` load one artifact in each stack;
    "saver": they load each stack's save in one loader. ``releases`` is every release from
    the older end's to the newer end's, both included; the search keeps ``lo`` (an index
    whose outcome is the older end's) and ``hi`` (an index whose outcome differs).
    """

    side: str
    older: Stack
    newer: Stack
    older_rec: Record
    newer_rec: Record
    older_outcome: str
    newer_outcome: str
    package: str
    releases: list[str]
    lo: int = 0
    hi: int = -1
    skipped: set[int] = dataclasses.field(default_factory=set)
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    cached: bool = False

    def __post_init__(self) -> None:
        if self.hi < 0:
            self.hi = len(self.releases) - 1

    @property
    def older_cell(self) -> str:
        return self.older_rec.cell_id

    @property
    def newer_cell(self) -> str:
        return self.newer_rec.cell_id

    def next_index(self) -> int | None:
        """The release to probe next (None: the search is over): the middle of the open
        range, or the nearest release to it that was not skipped."""
        open_ = [i for i in range(self.lo + 1, self.hi) if i not in self.skipped]
        if not open_:
            return None
        mid = (self.lo + self.hi) // 2
        return min(open_, key=lambda i: (abs(i - mid), i))

    def observe(self, index: int, outcome: str | None) -> None:
        """The outcome of release ``index`` (None: it could not be built or gave no final outcome)."""
        if outcome is None:
            self.skipped.add(index)
        elif outcome == self.older_outcome:
            self.lo = index
        else:
            self.hi = index

    def nearer(self, index: int) -> Stack:
        """The end whose pins a release takes: the nearer by position (a tie: the older)."""
        return self.older if index - 0 <= len(self.releases) - 1 - index else self.newer

    def result(self, wall_s: float) -> dict[str, Any]:
        def end(stack: Stack, rec: Record, release: str, outcome: str) -> dict[str, Any]:
            return {"stack": stack.id, "cell_id": rec.cell_id, "release": release, "outcome": outcome,
                    "key": rec.key}

        return {"version": bisect_results.VERSION, "side": self.side, "package": self.package,
                "older": end(self.older, self.older_rec, self.releases[0], self.older_outcome),
                "newer": end(self.newer, self.newer_rec, self.releases[-1], self.newer_outcome),
                "candidates": self.releases[1:-1], "steps": self.steps,
                "last_as_before": self.releases[self.lo], "first_changed": self.releases[self.hi],
                "unbuilt_between": [self.releases[i] for i in sorted(self.skipped) if self.lo < i < self.hi],
                "wall_s": round(wall_s, 1)}


def search(flips: Sequence[Flip], probe: Callable[[list[tuple[Flip, int]]], list[str | None]]) -> int:
    """Binary-search every flip at once: each round asks every open flip for its next release
    and hands all the asks to ``probe`` (their outcomes, in order). Returns the rounds."""
    rounds = 0
    while True:
        asks = [(f, i) for f in flips if not f.cached for i in [f.next_index()] if i is not None]
        if not asks:
            return rounds
        rounds += 1
        for (flip, index), outcome in zip(asks, probe(asks), strict=True):
            flip.observe(index, outcome)


# ----------------------------------------------------------------------------- finding flips
def _final(rec: Record | None) -> str | None:
    return rec.outcome.value if rec is not None and rec.outcome.final else None


def _cell_outcome(store: Store, saver: str, sc: str, fmt: str, loader: str, variant: str
                  ) -> tuple[Record | None, str | None]:
    """A table cell's record and final outcome: a failed save's, else its load's (a save
    that did not end, such as an unavailable environment: no outcome)."""
    save = store.read(store.save_record_path(saver, sc, fmt))
    if save is not None and save.outcome in (Outcome.SAVE_ERROR, Outcome.NOT_APPLICABLE):
        return save, save.outcome.value
    if save is None or save.outcome is not Outcome.OK:
        return None, None
    rec = store.read(store.load_record_path(loader, saver, sc, fmt, variant))
    return rec, _final(rec)


def _as_load(rec: Record, sc: str, fmt: str, saver: str, loader: str, variant: str) -> Record:
    """A failed save standing for the load cell it prevented (its id is the load cell's)."""
    if rec.record_type == "load":
        return rec
    return dataclasses.replace(rec, cell_id=load_cell_id(sc, fmt, saver, loader, variant))


def make_flip(catalog: Sequence[Stack], store: Store, side: str, older: Stack, newer: Stack,
              sc: str, fmt: str, other: str, variant: str) -> Flip | None:
    """The flip of one cell between ``older`` and ``newer`` on ``side`` (``other``: the
    stack on the other side), or None when its two outcomes are equal or not final."""
    def cell(stack: Stack) -> tuple[Record | None, str | None]:
        saver, loader = (other, stack.id) if side == "loader" else (stack.id, other)
        rec, outcome = _cell_outcome(store, saver, sc, fmt, loader, variant)
        return (_as_load(rec, sc, fmt, saver, loader, variant) if rec is not None else None), outcome

    (a_rec, a_out), (b_rec, b_out) = cell(older), cell(newer)
    if a_rec is None or b_rec is None or a_out is None or b_out is None or a_out == b_out:
        return None
    package = pin(older.requirements[0])[0]  # type: ignore[index]
    def env_of(rec: Record) -> dict[str, Any]:
        return rec.env if side == "loader" else (rec.saver_env or rec.env)

    lo, hi = installed_release(older, env_of(a_rec)), installed_release(newer, env_of(b_rec))
    between = [v for v in list_releases(package)
               if (version_key(lo) or ()) < (version_key(v) or ()) < (version_key(hi) or ())]
    return Flip(side, older, newer, a_rec, b_rec, a_out, b_out, package, [lo, *between, hi])


def find_flips(catalog: Sequence[Stack], store: Store, loaders: Sequence[Stack], savers: Sequence[Stack],
               scenarios: Sequence[Scenario], formats: Sequence[str], keras3_only: bool = True) -> list[Flip]:
    """Every flip among the selected stacks' table cells between adjacent stacks that can be
    bisected (with ``keras3_only``, of lines whose stacks report a Keras 3)."""
    def keras3(stack: Stack) -> bool:
        rec = store.read(store.env_record_path(stack.id))
        return rec is not None and str((rec.env or {}).get("keras") or "").startswith("3.")

    pairs: list[tuple[Stack, Stack]] = []
    for line in lines(catalog):
        for a, b in itertools.pairwise(line):
            try:
                adjacent_pair(catalog, a, b)
            except BisectError:
                continue
            if not keras3_only or (keras3(a) and keras3(b)):
                pairs.append((a, b))
    loader_ids, saver_ids = {s.id for s in loaders}, {s.id for s in savers}
    flips: list[Flip] = []
    for a, b in pairs:
        for sc in scenarios:
            for fmt in formats:
                for variant in sc.variants:
                    if a.id in loader_ids and b.id in loader_ids:
                        for saver in savers:
                            flip = make_flip(catalog, store, "loader", a, b, sc.name, fmt, saver.id, variant)
                            if flip is not None:
                                flips.append(flip)
                    if a.id in saver_ids and b.id in saver_ids:
                        for loader in loaders:
                            flip = make_flip(catalog, store, "saver", a, b, sc.name, fmt, loader.id, variant)
                            if flip is not None:
                                flips.append(flip)
    return flips


# ------------------------------------------------------------------------------------ probing
def candidate_stack(flip: Flip, index: int) -> Stack:
    """Release ``index`` of ``flip`` as a stack: the nearer end with its first requirement
    pinned to that release (the nearer end's other pins: the dependencies of its era)."""
    base = flip.nearer(index)
    name = pin(base.requirements[0])[0]  # type: ignore[index]
    release = flip.releases[index]
    m = re.match(r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?", base.requirements[0])
    req = f"{name}{(m.group(1) or '') if m else ''}=={release}"
    return dataclasses.replace(base, id=f"{base.id}+{name}{release}", requirements=(req, *base.requirements[1:]),
                               tags=("bisect",), description=f"{base.id} with {name} {release} (bisect)")


def _link_artifact(main: Store, bstore: Store, saved: Record) -> None:
    """The save record and artifact of ``saved`` in the bisect store (hard links; copied
    again when the main store's artifact changed)."""
    assert saved.saver and saved.scenario and saved.format
    src = main.artifact_dir(saved.saver, saved.scenario, saved.format)
    dst = bstore.artifact_dir(saved.saver, saved.scenario, saved.format)
    want = saved.details.get("artifact_sha256")
    if not (dst.is_dir() and artifact_digest(dst) == want):
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, copy_function=matrix._link_or_copy)
    have = bstore.read(bstore.save_record_path(saved.saver, saved.scenario, saved.format))
    if have is None or have.to_dict() != saved.to_dict():
        bstore.write(saved)


class _Prober:
    """Runs one round's probes through the matrix's runner over the bisect store."""

    def __init__(self, main: Store, bstore: Store, catalog: Sequence[Stack], scenarios: Mapping[str, Scenario],
                 options: matrix.Options, out: TextIO, env_factory: Callable[[Stack, Store], StackEnv],
                 envs: Mapping[str, StackEnv] | None = None, progress: Any = None,
                 cancel: Any = None) -> None:
        self.main, self.bstore, self.scenarios = main, bstore, dict(scenarios)
        self.by_id = {s.id: s for s in catalog}
        self.runner = matrix._Runner([], [], list(scenarios.values()), list(scenario_catalog.FORMATS), bstore,
                                     options, out, env_factory)
        self.runner.summary.envs.update(envs or {})
        if progress is not None:
            self.runner.progress = progress
        if cancel is not None:
            self.runner.cancel = cancel
        self.built: set[str] = set()

    def _envs(self, stacks: Iterable[Stack]) -> None:
        todo = [s for s in {s.id: s for s in stacks}.values() if s.id not in self.runner.summary.envs]
        if todo:
            self.runner.each(self.runner._build_env, todo)
            self.built |= {s.id for s in todo}

    def __call__(self, asks: list[tuple[Flip, int]]) -> list[str | None]:
        cands = [candidate_stack(f, i) for f, i in asks]
        loaders_needed = [self.by_id[parse_load_cell_id(f.older_cell)[3]] for f, _ in asks if f.side == "saver"]
        self._envs([*cands, *loaders_needed])
        r = self.runner
        # Saver side: each candidate saves the flip's scenario and format first.
        saves: dict[str, list[tuple[Scenario, str]]] = {}
        for (flip, _), cand in zip(asks, cands, strict=True):
            if flip.side == "saver":
                sc, fmt, *_ = parse_load_cell_id(flip.older_cell)
                pair = (self.scenarios[sc], fmt)
                if pair not in saves.setdefault(cand.id, []):
                    saves[cand.id].append(pair)
            else:
                saved = self.main.read(self.main.save_record_path(*self._saver_of(flip)))
                if saved is None or saved.outcome is not Outcome.OK:
                    raise BisectError(f"{flip.older_cell}: its artifact's save record is gone from {self.main.root}")
                _link_artifact(self.main, self.bstore, saved)
        if saves:
            r.progress.phase("bisect save", sum(len(v) for v in saves.values()))
            r.run_phase("save", [self._stack(sid, cands) for sid in saves],
                        lambda env: _plan_saves(r, env, saves[env.stack.id]))
        # The loads: in the candidate (loader side) or in the flip's loader (saver side).
        wanted: dict[str, list[tuple[str, Scenario, str, str]]] = {}
        cells: list[tuple[str, str, str, str, str]] = []
        for (flip, _), cand in zip(asks, cands, strict=True):
            sc, fmt, saver, loader, variant = parse_load_cell_id(flip.older_cell)
            saver, loader = (saver, cand.id) if flip.side == "loader" else (cand.id, loader)
            cells.append((loader, saver, sc, fmt, variant))
            cell = (saver, self.scenarios[sc], fmt, variant)
            if cell not in wanted.setdefault(loader, []):
                wanted[loader].append(cell)
        r.savers = [self._stack(sid, cands) for sid in {c[1] for c in cells}]
        r.read_saved()
        r.progress.phase("bisect", sum(len(v) for v in wanted.values()))
        r.run_phase("load", [self._stack(sid, cands) for sid in wanted],
                    lambda env: r.plan_load_cells(env, wanted[env.stack.id]))
        outcomes: list[str | None] = []
        for (flip, index), (loader, saver, sc, fmt, variant) in zip(asks, cells, strict=True):
            _rec, outcome = _cell_outcome(self.bstore, saver, sc, fmt, loader, variant)
            flip.steps.append({"release": flip.releases[index], "stack": loader if flip.side == "loader" else saver,
                               "cell_id": load_cell_id(sc, fmt, saver, loader, variant), "outcome": outcome})
            outcomes.append(outcome)
        return outcomes

    def _saver_of(self, flip: Flip) -> tuple[str, str, str]:
        sc, fmt, saver, _loader, _variant = parse_load_cell_id(flip.older_cell)
        return saver, sc, fmt

    def _stack(self, sid: str, cands: Sequence[Stack]) -> Stack:
        return self.by_id.get(sid) or next(c for c in cands if c.id == sid)


def _plan_saves(r: Any, senv: StackEnv, pairs: Sequence[tuple[Scenario, str]]) -> Any:
    """The save cells of ``pairs`` in ``senv`` (the matrix's save decision and record)."""
    todo: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for sc, fmt in pairs:
        cid = save_cell_id(sc.name, fmt, senv.stack.id)
        if not senv.ok:
            r._record_unavailable("save", senv, sc, fmt, senv.stack.id, None, None)
            continue
        key, parts, old, art, why = r.save_decision(senv, sc, fmt)
        if why is None:
            r.count("save", old.outcome.value, cached=True, cid=cid)
            continue
        meta[cid] = (sc, fmt, key, old, parts)
        todo.append({"cell_id": cid, "scenario": sc.name, "scenario_path": str(sc.path), "format": fmt,
                     "artifact_dir": str(art)})
    return todo, lambda res: r._save_record(senv, meta, res)


# ------------------------------------------------------------------------------ the results
def _cached_result(main: Store, flip: Flip) -> dict[str, Any] | None:
    path = bisect_results.result_path(main.root, flip.side, flip.older_cell, flip.newer_cell)
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fresh = flip.result(0.0)
    same = all(isinstance(old.get(k), dict) and {f: old[k].get(f) for f in ("stack", "release", "outcome", "key")}
               == {f: fresh[k][f] for f in ("stack", "release", "outcome", "key")} for k in ("older", "newer"))
    return old if same and old.get("candidates") == fresh["candidates"] and old.get("package") == flip.package \
        else None


def run_bisects(flips: Sequence[Flip], main: Store, catalog: Sequence[Stack], scenarios: Mapping[str, Scenario],
                options: matrix.Options, out: TextIO, *, fresh: bool = False,
                env_factory: Callable[[Stack, Store], StackEnv] | None = None,
                envs: Mapping[str, StackEnv] | None = None, progress: Any = None, cancel: Any = None,
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Search every flip (results kept under ``<store>/bisect/results/``); (the results in
    the order of ``flips``, what it cost: rounds, probes, envs built, records run/cached)."""
    t0 = time.monotonic()
    results: dict[int, dict[str, Any]] = {}
    for n, flip in enumerate(flips):
        cached = None if fresh else _cached_result(main, flip)
        if cached is not None:
            flip.cached = True
            results[n] = cached
    todo = [f for f in flips if not f.cached]
    cost: dict[str, Any] = {"flips": len(flips), "cached": len(flips) - len(todo), "rounds": 0, "probes": 0,
                            "envs_built": 0, "cells_run": 0, "cells_cached": 0}
    if todo:
        if env_factory is None:
            env_factory = functools.partial(ensure_env, runtime=options.runtime_settings())
        bstore = Store(main.root / STORE_DIR, envs_dir=main.envs_dir)
        with bstore.running(wait=options.wait):
            needed = {parse_load_cell_id(f.older_cell)[0] for f in todo}
            prober = _Prober(main, bstore, catalog, {k: v for k, v in scenarios.items() if k in needed}, options,
                             out, env_factory, envs, progress, cancel)

            def probe(asks: list[tuple[Flip, int]]) -> list[str | None]:
                cost["probes"] += len(asks)
                return prober(asks)

            try:
                cost["rounds"] = search(todo, probe)
            finally:
                if progress is None:
                    prober.runner.progress.close()
            summary = prober.runner.summary
            cost["envs_built"] = sum(1 for sid in prober.built if not summary.envs[sid].reused)
            cost["envs_reused"] = sum(1 for sid in prober.built if summary.envs[sid].reused)
            cost["cells_run"], cost["cells_cached"] = summary.computed, summary.cached + summary.shared
            cost["counts"] = dict(summary.counts)
        wall = time.monotonic() - t0
        for n, flip in enumerate(flips):
            if not flip.cached:
                results[n] = flip.result(wall)
                atomic_write_text(bisect_results.result_path(main.root, flip.side, flip.older_cell,
                                                              flip.newer_cell),
                                  json.dumps(results[n], indent=1, sort_keys=True) + "\n")
    cost["wall_s"] = round(time.monotonic() - t0, 1)
    return [results[n] for n in range(len(flips))], cost


def describe(result: Mapping[str, Any]) -> str:
    """One result as a line: the first release whose outcome changed, and where it was as before."""
    older, newer, pkg = result["older"], result["newer"], result["package"]
    first, last = result.get("first_changed"), result.get("last_as_before")
    steps = len(result.get("steps") or [])
    head = f"{newer['cell_id']} ({result['side']} {older['stack']} -> {newer['stack']}): "
    unbuilt = result.get("unbuilt_between") or []
    note = f"; {', '.join(unbuilt)} could not be tried" if unbuilt else ""
    if newer["outcome"] == "ok":
        text = f"first loading release: {pkg} {first} (was {older['outcome']} in {last})"
    else:
        text = f"first failing release: {pkg} {first} ({newer['outcome']}; was {older['outcome']} in {last})"
    return (head + text + f" after {steps} probe(s) of {len(result.get('candidates') or [])} releases between"
            + note + f"; notes {bisect_results.notes_url(pkg, str(first))}")


# ---------------------------------------------------------------------------- the matrix phase
def bisect_phase(runner: Any, catalog: Sequence[Stack]) -> None:
    """The matrix's bisect phase (``Options.bisect``): every flip of this run's table cells
    between adjacent Keras 3 stacks, searched with the run's executor, progress and envs; a
    flip whose releases cannot be listed is logged and left out. A shard (``--shard``) holds
    only part of the cells and its store's ``bisect/`` is not merged: it bisects nothing."""
    if runner.opt.shard is not None:
        runner.log("[bisect] skipped: a shard holds only part of the table (bisect the merged store's cells "
                   "with `python -m runner bisect CELL`)")
        return
    try:
        flips = find_flips(catalog, runner.store, runner.stacks, runner.savers, runner.scenarios,
                           runner.formats)
    except BisectError as exc:
        runner.log(f"[bisect] skipped: {exc}")
        return
    if not flips:
        chosen = {s.id for s in (*runner.stacks, *runner.savers)}
        if any(sum(s.id in chosen for s in line) > 1 for line in lines(catalog)):
            runner.log("[bisect] no flip between adjacent Keras 3 stacks in this run's cells")
        return
    results, cost = run_bisects(flips, runner.store, catalog, {sc.name: sc for sc in runner.scenarios},
                                runner.opt, runner.out, envs=runner.summary.envs, progress=runner.progress,
                                cancel=runner.cancel)
    for (phase, outcome), n in (cost.get("counts") or {}).items():
        runner.summary.counts[f"bisect {phase}", outcome] += n
    runner.summary.computed += cost["cells_run"]
    runner.summary.cached += cost["cells_cached"]
    runner.log(f"[bisect] {len(flips)} flips between adjacent Keras 3 stacks: {cost['cached']} answered by earlier "
               f"bisects, {cost['probes']} releases probed in {cost['rounds']} rounds, {cost['envs_built']} "
               f"environments built, {cost['wall_s']:.0f} s")
    for result in results:
        runner.progress.cell("  [bisect] " + describe(result))


def max_probes(flip: Flip) -> int:
    """The most releases a binary search of ``flip`` probes: ceil(log2(candidates + 1))
    (every candidate builds; a skipped release costs one more)."""
    return max(0, len(flip.releases) - 2).bit_length()


def preview(catalog: Sequence[Stack], store: Store, loaders: Sequence[Stack], savers: Sequence[Stack],
            scenarios: Sequence[Scenario], formats: Sequence[str],
            runtime: Any = None) -> list[str]:
    """What the matrix's bisect phase would search given the cells already stored (``matrix
    --dry-run``): the flips between adjacent Keras 3 stacks, those a kept result answers, and
    for the rest at most how many probes, rounds and candidate environments (how many of
    those are built). Reads records and environment markers, lists releases from the
    package index; builds, runs and writes nothing."""
    from runner.envs import peek_env

    head = "bisect (from the cells already stored; cells this run would compute may add or remove flips)"
    try:
        flips = find_flips(catalog, store, loaders, savers, scenarios, formats)
    except BisectError as exc:
        return [f"{head}: not predicted: {exc}"]
    todo = [f for f in flips if _cached_result(store, f) is None]
    out = [f"{head}: {len(flips)} flips, {len(flips) - len(todo)} answered by kept results, "
           f"{len(todo)} to search"]
    if not todo:
        return out
    candidates = {c.id: c for f in todo for c in (candidate_stack(f, i) for i in range(1, len(f.releases) - 1))}
    bstore = Store(store.root / STORE_DIR, envs_dir=store.envs_dir)
    built = sum(1 for c in candidates.values() if peek_env(c, bstore, runtime=runtime).ok)
    out.append(f"  at most {sum(max_probes(f) for f in todo)} probes in {max(max_probes(f) for f in todo)} "
               f"rounds; up to {len(candidates)} candidate releases to build ({built} already built)")
    pairs: dict[tuple[str, str, str], int] = {}
    for f in todo:
        pairs[f.side, f.older.id, f.newer.id] = pairs.get((f.side, f.older.id, f.newer.id), 0) + 1
    for (side, older, newer), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f"  {n:>7}  {side} side {older} -> {newer}")
    return out


# ---------------------------------------------------------------------------------- the command
def add_parser(sub: Any) -> None:
    from runner.cli_options import add_common, positive_int, positive_seconds

    p = sub.add_parser("bisect", help="the first release between two adjacent catalog stacks where a cell's "
                                      "outcome changes (builds the releases between them)")
    add_common(p)
    p.add_argument("cell", help="a load cell id (scenario:format:saver->loader:variant) or text contained in "
                                "exactly one")
    p.add_argument("--side", choices=("loader", "saver"), default="loader",
                   help="which stack of the cell is bisected (default: its loader)")
    p.add_argument("--against", metavar="STACK", default=None,
                   help="the adjacent stack to compare with (default: the older neighbour on the cell's line, "
                        "else the newer)")
    p.add_argument("--scenario-dir", type=Path, default=scenario_catalog.DEFAULT_SCENARIOS)
    p.add_argument("--fresh", action="store_true", help="search again even if a result is kept")
    p.add_argument("--load-timeout", type=positive_seconds, default=60.0, help="the most seconds one load may take")
    p.add_argument("--cell-timeout", type=positive_seconds, default=60.0, help="seconds one save may take")
    p.add_argument("--import-timeout", type=positive_seconds, default=600.0)
    p.add_argument("--jobs", "-j", type=positive_int, default=min(2, os.cpu_count() or 1),
                   help="candidate releases worked on at once")
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--wait", action="store_true", help="queue behind a run holding the store")


def plan_command(args: Any, catalog: Sequence[Stack], store: Store) -> tuple[Flip, dict[str, Scenario]]:
    """Check the command's input and find its flip, before anything is built or run.

    Raises:
        BisectError, explain.CellError: bad input (one line).
    """
    from runner import explain

    rec = explain.find_cell(store, args.cell)
    if rec.record_type != "load":
        raise BisectError(f"{rec.cell_id} is a save cell; bisect takes a load cell "
                          "(scenario:format:saver->loader:variant)")
    sc_name, fmt, saver, loader, variant = parse_load_cell_id(rec.cell_id)
    by_id = {s.id: s for s in catalog}
    own, other = (loader, saver) if args.side == "loader" else (saver, loader)
    if own not in by_id:
        raise BisectError(f"{own} (the cell's {args.side}) is not a stack of the catalog")
    stack = by_id[own]
    if args.against is not None:
        if args.against not in by_id:
            raise BisectError(f"unknown stack {args.against!r} (--against)")
        against = by_id[args.against]
    else:
        if line_key(stack) is None:
            adjacent_pair(catalog, stack, stack)  # raises the reason it is on no line
        older, newer = neighbours(catalog, stack)
        against = older or newer  # type: ignore[assignment]
        if against is None:
            raise BisectError(f"{stack.id} has no neighbour on its line to compare with")
    older, newer = adjacent_pair(catalog, stack, against)
    scenarios = {s.name: s for s in scenario_catalog.discover_scenarios(args.scenario_dir)}
    if sc_name not in scenarios:
        raise BisectError(f"scenario {sc_name!r} of the cell is not in {args.scenario_dir}")
    flip = make_flip(catalog, store, args.side, older, newer, sc_name, fmt, other, variant)
    if flip is None:
        a = _cell_outcome(store, *((other, sc_name, fmt, older.id) if args.side == "loader"
                                    else (older.id, sc_name, fmt, other)), variant)[1]
        b = _cell_outcome(store, *((other, sc_name, fmt, newer.id) if args.side == "loader"
                                    else (newer.id, sc_name, fmt, other)), variant)[1]
        if a is None or b is None:
            missing = older.id if a is None else newer.id
            raise BisectError(f"the cell has no final outcome with {args.side} {missing} in {store.root} "
                              "(run the matrix over both stacks first)")
        raise BisectError(f"the cell's outcome does not differ between {older.id} and {newer.id} "
                          f"({args.side} side: {a} in both): nothing to bisect")
    return flip, scenarios


def cmd_bisect(args: Any) -> int:
    """``python -m runner bisect``: check the input (one error line, exit 2), then search."""
    from runner.stacks import load_catalog

    catalog = load_catalog(args.catalog)
    store = Store(args.store)
    if not store.records_dir.is_dir():
        raise BisectError(f"store {store.root} holds no records (run the matrix first; --store names its folder)")
    with store.running(wait=args.wait, reader=True):
        flip, scenarios = plan_command(args, catalog, store)
        print(f"bisect: {flip.side} {flip.older.id} ({flip.package} {flip.releases[0]}: {flip.older_outcome}) -> "
              f"{flip.newer.id} ({flip.package} {flip.releases[-1]}: {flip.newer_outcome}); "
              f"{len(flip.releases) - 2} releases between", flush=True)
        options = matrix.Options(cell_timeout=args.cell_timeout, load_timeout=args.load_timeout,
                                 import_timeout=args.import_timeout, jobs=args.jobs, wait=args.wait,
                                 verbose=args.verbose)
        results, cost = run_bisects([flip], store, catalog, scenarios, options, sys.stdout, fresh=args.fresh)
    result = results[0]
    for step in result.get("steps") or []:
        if not flip.cached:
            print(f"  {flip.package} {step['release']}: {step['outcome'] or 'no outcome (skipped)'}", flush=True)
    print("bisect: " + describe(result), flush=True)
    print(f"bisect: {'kept result, nothing run' if flip.cached else 'searched'}: {cost['probes']} probes in "
          f"{cost['rounds']} rounds, {cost.get('envs_built', 0)} environments built, "
          f"{cost.get('cells_run', 0)} cells run, {cost.get('cells_cached', 0)} cached, {cost['wall_s']:.1f} s",
          flush=True)
    return 0


