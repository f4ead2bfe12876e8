"""The GitHub Actions workflow that runs the matrix spread over machines, generated.

Stdlib only. ``python -m runner ci-workflow`` writes ``.github/workflows/compat-matrix.yml``
from the catalog and the committed per-stack timings (``compat-matrix.timings.json`` beside
it); ``--check`` fails when the committed file is stale, like a lock file. The workflow is
the matrix's own pipeline cut along its phases and, inside a phase, along ``--shard K/N``:

- ``plan``: ``python -m runner ci-plan`` turns the dispatch inputs (stacks, tags) into two
  job matrices (``fromJSON``), ``save`` and ``load``. A stack's phase gets ``G`` jobs of
  ``LANES`` shards each (``N = G x LANES`` shards): a job runs its shards side by side, one
  runner process per CPU of a public runner, each in its own store under ``lanes/K``.
  ``G`` comes from the timings (:func:`plan_phase`): the smallest projected wall time of
  the phase on ``RUNNERS`` concurrent runners, at most ``MAX_JOBS`` jobs per matrix.
- ``save`` (``fail-fast: false``): each shard saves into an empty store; the job uploads
  its shards' records and artifacts.
- ``load``: downloads every save part, ``merge``s them, copies the merged store to each
  shard's lane, loads the shard, runs the remedies of its own failures (a remedy cell in
  another *selected* stack is left to that stack's jobs: ``--elsewhere``) and uploads its
  load records.
- ``report``: downloads every part, merges, writes the tables, gates them against the
  published ``reports/results.json.gz`` (``--partial`` for a subset) into the job summary,
  uploads the tables; on the default branch with ``publish`` (whole catalog only) it opens
  a pull request and hands the site to ``pages`` (``actions/upload-pages-artifact``).
- ``pages``: deploys that site with ``actions/deploy-pages`` (``pages: write``,
  ``id-token: write``, environment ``github-pages``); no credential in any file.

Every shard starts from the same store, so the shards of a phase partition its cells the
same way in every job, and the merged tables equal a one-machine run's byte for byte
(tests/test_ci_workflow.py runs the jobs locally to show it).

The timings file holds each stack's single-process seconds per phase (``save``; ``load``
= loads + remedies + timeout confirmations, what a load job runs). ``ci-workflow
--timings-from STORE`` takes them from a finished run's store (its ``timings.json``:
measured); ``--timings-from RESULTS`` estimates the stacks a store does not cover
from a published table's cell counts per loader times the measured per-cell means
(:data:`PER_CELL_S`). ``ci-workflow --projection`` prints the projected wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import heapq
import json
import math
import statistics
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.records import atomic_write_text
from runner.stacks import DEFAULT_CATALOG, Stack, load_catalog, select

__all__ = ["LANES", "MAX_JOBS", "RUNNERS", "TIMINGS_PATH", "WORKFLOW_PATH", "Job", "add_parsers",
           "cmd_ci_plan", "cmd_ci_workflow", "plan_jobs", "plan_phase", "projection", "read_timings",
           "timings_from_store", "timings_from_table", "workflow_text"]

WORKFLOW_PATH = Path(".github") / "workflows" / "compat-matrix.yml"
TIMINGS_PATH = Path(".github") / "workflows" / "compat-matrix.timings.json"
RUNNER_IMAGE = "ubuntu-22.04"  # the newest GitHub image whose setup-python still has 3.7
HOST_PYTHON = "3.11"
STORE = ".matrix"
LANES_DIR = "lanes"

# GitHub's limits (docs.github.com: "Usage limits", "About GitHub-hosted runners").
MAX_JOBS = 256  # jobs a matrix may generate
RUNNERS = 20  # concurrent jobs of an account on the free plan
LANES = 4  # CPUs of a standard public Linux runner: shard processes a job runs side by side
PHASES = ("save", "load")

# Per-cell means of the last full cold run's store (33 stacks x 30 scenarios: the
# in-cell time of 164,983 grid loads, 182 timed-out loads, 27,599 remedy loads and 4,950
# saves; docs/benchmarks.md "What a cell costs", `nox -s bench -- --breakdown .matrix`).
PER_CELL_S = {"load": 0.143, "timeout": 13.5, "remedy": 0.121, "save": 1.025}


# ----------------------------------------------------------------------------- timings
def read_timings(path: Path) -> dict[str, Any]:
    """The timings file (``{}`` when absent): ``stacks`` {id: {save, load, source}},
    ``job_overhead_s``, ``report_s``, each with where it comes from."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("stacks", {}), dict):
        raise ValueError(f"{path}: not a timings file (an object with \"stacks\")")
    return data


def _timings_text(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def timings_from_table(results: Path, catalog: Sequence[Stack], scenarios: int,
                       previous: Mapping[str, Any]) -> dict[str, Any]:
    """Estimated seconds per stack from a published ``results.json(.gz)``: each loader's
    load, timed-out and remedy cells times :data:`PER_CELL_S`, the untimed ones scaled
    to the catalog's savers x ``scenarios`` (a timeout is a known hang of one saver family:
    not scaled); a stack the table lacks takes the median loader's counts and the largest
    timeout count. Saves: ``scenarios`` x 5 formats per stack. Stacks ``previous`` marks
    ``measured`` are kept as they are."""
    from runner.gate import results_rows  # stdlib; only this producer reads tables

    raw = results.read_bytes()
    data = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    loads: Counter[str] = Counter()
    timeouts: Counter[str] = Counter()
    remedies: Counter[str] = Counter()
    savers: set[str] = set()
    scen: set[str] = set()
    for row in results_rows(data):
        loader = row.get("loader")
        if not loader:
            continue
        savers.add(row["saver"])
        scen.add(row["scenario"])
        if row["source"] == "remedy":
            remedies[loader] += 1
        elif row["source"] == "load":
            (timeouts if row["outcome"] == "timeout" else loads)[loader] += 1
    if not loads:
        raise ValueError(f"{results}: no load cells")
    scale = (len(catalog) * scenarios) / (len(savers) * len(scen))
    median_load = statistics.median(loads.values())
    median_remedy = statistics.median([remedies[s] for s in loads])
    worst_timeouts = max([timeouts[s] for s in loads])
    stacks: dict[str, Any] = {}
    old = previous.get("stacks", {})
    for s in catalog:
        if old.get(s.id, {}).get("source", "").startswith("measured"):
            stacks[s.id] = old[s.id]
            continue
        known = s.id in loads
        n_load = loads[s.id] if known else median_load
        n_remedy = remedies[s.id] if known else median_remedy
        n_timeout = timeouts[s.id] if known else worst_timeouts
        stacks[s.id] = {
            "save": round(scenarios * 5 * PER_CELL_S["save"], 1),
            "load": round(scale * (n_load * PER_CELL_S["load"] + n_remedy * PER_CELL_S["remedy"])
                          + n_timeout * PER_CELL_S["timeout"], 1),
            "source": "estimated" if known else "estimated (not in the table: median loader)",
        }
    return {
        **{k: v for k, v in previous.items() if k != "stacks"},
        "stacks": stacks,
        "estimated_from": f"{results.name}: {sum(loads.values()) + sum(timeouts.values())} load, "
                          f"{sum(remedies.values())} remedy cells of {len(loads)} loaders x "
                          f"{len(savers)} savers x {len(scen)} scenarios, scaled x{scale:.3f}; "
                          f"per-cell seconds {json.dumps(PER_CELL_S, sort_keys=True)}",
    }


def timings_from_store(store: Path, catalog: Sequence[Stack], previous: Mapping[str, Any]) -> dict[str, Any]:
    """Measured seconds per stack from a run's store: the in-cell seconds of its records
    (``duration_s``), per stack and phase — its saves; the loads, remedy re-runs and
    timeout confirmations it ran as the loader. The records hold every sitting of a resumed
    run, while ``timings.json`` holds each stack's wall time in the last run only (a resumed
    sitting that ran 3 cells of a stack says 2.7 s). Env builds are a job's fixed cost
    (``job_overhead_s``), not a phase's work. Stacks without records keep ``previous``'s
    entry."""
    from runner.records import Store  # the store's own reader (index, layouts)

    if not (store / "records").is_dir():
        raise ValueError(f"{store}: no records/ (not a store a run has recorded cells in)")
    work: dict[str, dict[str, float]] = {}
    for rec in Store(store).iter_records():
        if rec.record_type not in ("save", "load"):
            continue
        work.setdefault(rec.stack, {"save": 0.0, "load": 0.0})[rec.record_type] += float(rec.duration_s or 0.0)
    stacks = dict(previous.get("stacks", {}))
    for s in catalog:
        secs = work.get(s.id)
        if secs is None:
            continue
        stacks[s.id] = {"save": round(secs["save"], 1), "load": round(secs["load"], 1),
                        "source": "measured (in-cell seconds of the store's records)"}
    return {**{k: v for k, v in previous.items() if k != "stacks"}, "stacks": stacks}


# ----------------------------------------------------------------------------- planning
@dataclasses.dataclass(frozen=True)
class Job:
    """One job of a phase's matrix: shards ``shards`` of ``of`` of one stack."""

    phase: str
    stack: str
    index: int  # 1..jobs
    jobs: int
    shards: tuple[int, ...]
    of: int
    seconds: float  # projected: the job's overhead + its slowest shard

    def entry(self, stack: Stack) -> dict[str, str]:
        return {"stack": self.stack, "python": stack.python, "requirements_hash": requirements_hash(stack),
                "job": str(self.index), "jobs": str(self.jobs),
                "shards": " ".join(map(str, self.shards)), "of": str(self.of)}


def requirements_hash(stack: Stack) -> str:
    return hashlib.sha256(json.dumps([stack.python, list(stack.requirements)]).encode()).hexdigest()[:16]


def makespan(durations: Sequence[float], runners: int) -> float:
    """Wall time of jobs started in the given order on ``runners`` concurrent runners
    (each starts when a runner frees up, as GitHub queues a matrix)."""
    free = [0.0] * min(runners, max(len(durations), 1))
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def plan_phase(work: Mapping[str, float], overhead: float, *, runners: int = RUNNERS,
               lanes: int = LANES, max_jobs: int = MAX_JOBS) -> dict[str, int]:
    """Jobs per stack for one phase: the fewest-jobs choice among those of least projected
    wall time, a job lasting ``overhead`` + its stack's ``work`` / (jobs x ``lanes``), the
    jobs queued longest first on ``runners``. Candidates: every per-lane target that makes
    some stack change its job count (up to ``max_jobs`` in all), then single steps. A shard
    of a stack with more than one job holds at least ``overhead`` of work: no machine is
    started for less work than its set-up (the projection leaves a job's start-up and
    transfers out, so tiny jobs would look cheaper than they are)."""
    stacks = sorted(work)
    if not stacks:
        return {}
    if len(stacks) > max_jobs:
        raise ValueError(f"{len(stacks)} stacks need more than {max_jobs} jobs in one matrix")
    most = {s: max(1, math.floor(work[s] / (lanes * overhead))) if overhead > 0 else max_jobs for s in stacks}

    def score(groups: Mapping[str, int]) -> tuple[float, int]:
        durations = sorted((overhead + work[s] / (lanes * groups[s]) for s in stacks for _ in range(groups[s])),
                           reverse=True)
        return round(makespan(durations, runners), 6), sum(groups.values())

    best: tuple[tuple[float, int], dict[str, int]] | None = None

    def consider(groups: dict[str, int]) -> None:
        nonlocal best
        key = score(groups)
        if best is None or key < best[0]:
            best = (key, groups)

    # One target per lane for every stack ...
    targets = {work[s] / (lanes * g) for s in stacks for g in range(1, max_jobs + 1) if work[s] > 0}
    for t in sorted(targets | {math.inf}, reverse=True):
        groups = {s: min(most[s], max(1, math.ceil(work[s] / (lanes * t) - 1e-9))) if t < math.inf else 1
                  for s in stacks}
        if sum(groups.values()) > max_jobs:
            break  # smaller targets only add jobs
        consider(groups)
    # ... and one more job at a time for the stack whose jobs are longest (fills the waves).
    groups = dict.fromkeys(stacks, 1)
    while sum(groups.values()) < max_jobs:
        open_ = [x for x in stacks if work[x] > 0 and groups[x] < most[x]]
        if not open_:
            break
        s = max(open_, key=lambda x: (work[x] / groups[x], x))
        groups = {**groups, s: groups[s] + 1}
        consider(groups)
    # Then single steps while one shortens the phase: one stack's job count up or down, or
    # one stack's up and another's down or up (moves work between the waves).
    assert best is not None
    moves = [(a, da, b, db) for a in stacks for b in stacks if a != b
             for da, db in ((1, -1), (1, 1), (2, -1))] + [(a, d, a, 0) for a in stacks for d in (1, -1)]
    improved = True
    while improved:
        improved = False
        start = best[1]
        for a, da, b, db in moves:
            cand = {**start, a: start[a] + da}
            cand[b] += db
            if all(1 <= cand[x] <= most[x] for x in (a, b)) and sum(cand.values()) <= max_jobs:
                before = best[0]
                consider(cand)
                if best[0] < before:
                    improved = True
                    break
    return best[1]


def _limits(timings: Mapping[str, Any]) -> tuple[int, int]:
    """Concurrent runners and shards per job: GitHub's free plan and public runner unless
    the timings file says otherwise (another plan, a self-hosted runner, a test)."""
    return int(timings.get("runners", RUNNERS)), int(timings.get("lanes", LANES))


def plan_jobs(stacks: Sequence[Stack], timings: Mapping[str, Any],
              max_jobs: int = MAX_JOBS) -> dict[str, list[Job]]:
    """Each phase's jobs for ``stacks``, longest first (the order GitHub starts them in).
    A stack without timings weighs nothing: one job of ``lanes`` shards."""
    runners, lanes = _limits(timings)
    per = timings.get("stacks", {})
    overhead = float(timings.get("job_overhead_s", 0.0))
    out: dict[str, list[Job]] = {}
    for phase in PHASES:
        work = {s.id: float(per.get(s.id, {}).get(phase, 0.0)) for s in stacks}
        groups = plan_phase(work, overhead, runners=runners, lanes=lanes, max_jobs=max_jobs)
        jobs = [Job(phase, s.id, g, groups[s.id], tuple(range((g - 1) * lanes + 1, g * lanes + 1)),
                    groups[s.id] * lanes, round(overhead + work[s.id] / (lanes * groups[s.id]), 1))
                for s in stacks for g in range(1, groups[s.id] + 1)]
        out[phase] = sorted(jobs, key=lambda j: (-j.seconds, j.stack, j.index))
    return out


def projection(stacks: Sequence[Stack], timings: Mapping[str, Any], max_jobs: int = MAX_JOBS) -> dict[str, Any]:
    """The workflow's projected wall time: the save matrix's makespan, then the load
    matrix's, then the report job (``report_s``: it builds no stack env); and, for comparison, the
    unsharded layout (one single-process job per stack and phase) on as many runners as
    stacks and on ``runners``."""
    runners, lanes = _limits(timings)
    per = timings.get("stacks", {})
    overhead = float(timings.get("job_overhead_s", 0.0))
    report = float(timings.get("report_s", 0.0))  # builds no stack env
    jobs = plan_jobs(stacks, timings, max_jobs)
    phases: dict[str, dict[str, Any]] = {
        ph: {"jobs": len(js), "wall_s": round(makespan([j.seconds for j in js], runners), 1),
                   "work_s": round(sum(float(per.get(s.id, {}).get(ph, 0.0)) for s in stacks), 1),
                   "longest": max(js, key=lambda j: j.seconds).stack if js else ""}
              for ph, js in jobs.items()}

    def unsharded(n: int) -> float:
        return sum(makespan(sorted((overhead + float(per.get(s.id, {}).get(ph, 0.0)) for s in stacks),
                                   reverse=True), n) for ph in PHASES) + report

    return {"phases": phases, "report_s": round(report, 1),
            "wall_s": round(sum(float(p["wall_s"]) for p in phases.values()) + report, 1),
            "unsharded_all_s": round(unsharded(len(stacks)), 1), "unsharded_runners_s": round(unsharded(runners), 1),
            "runners": runners, "lanes": lanes, "stacks": len(stacks),
            "missing": sorted(s.id for s in stacks if s.id not in per),
            "estimated": sorted(s.id for s in stacks if str(per.get(s.id, {}).get("source", "")).startswith("est")),
            "shards": {ph: {j.stack: j.of for j in js} for ph, js in jobs.items()}}


def _minutes(seconds: float) -> str:
    return f"{seconds:,.0f} s ({seconds / 60:.1f} min)"


def projection_text(p: Mapping[str, Any]) -> list[str]:
    lines = [f"{p['stacks']} stacks on {p['runners']} concurrent runners, {p['lanes']} shards per job:"]
    for ph, info in p["phases"].items():
        lines.append(f"  {ph}: {info['jobs']} jobs, {_minutes(info['wall_s'])} "
                     f"(longest job: {info['longest']}; {info['work_s']:,.0f} s of single-process work)")
    lines.append(f"  report: {_minutes(p['report_s'])}")
    lines.append(f"  projected wall: {_minutes(p['wall_s'])}")
    lines.append(f"unsharded (a job per stack and phase): {_minutes(p['unsharded_all_s'])} on {p['stacks']} "
                 f"runners, {_minutes(p['unsharded_runners_s'])} on {p['runners']}")
    if p["estimated"]:
        lines.append(f"estimated, not measured: {len(p['estimated'])} of {p['stacks']} stacks")
    if p["missing"]:
        lines.append(f"no timings: {', '.join(p['missing'])}")
    return lines


# ----------------------------------------------------------------------------- the YAML
def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def _setup(python: str) -> list[str]:
    return [
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        "        with:",
        "          python-version: |",
        *([f"            {python}"] if python != HOST_PYTHON else []),
        f"            {HOST_PYTHON}",
        # the project itself: its host dependencies, one list in pyproject.toml
        "      - run: python -m pip install uv .",
    ]


def _cache() -> list[str]:
    return [
        "      - uses: actions/cache@v4",
        "        with:",
        "          path: ~/.cache/uv",
        "          key: uv-${{ matrix.stack }}-${{ matrix.requirements_hash }}",
    ]


def _stack_job(name: str, needs: str, *, always: bool) -> list[str]:
    """A job of the plan's ``name`` matrix (some shards of one stack), up to its first own step."""
    return [
        f"  {name}:",
        f"    needs: {needs}",
        *(["    if: ${{ !cancelled() }}"] if always else []),
        f"    name: {name} ${{{{ matrix.stack }}}} (${{{{ matrix.job }}}}/${{{{ matrix.jobs }}}})",
        f"    runs-on: {RUNNER_IMAGE}",
        "    strategy:",
        "      fail-fast: false",
        "      matrix:",
        f"        include: ${{{{ fromJSON(needs.plan.outputs.{name}) }}}}",
        "    steps:",
        *_setup("${{ matrix.python }}"),
        *_cache(),
    ]


def _lanes(prepare: str, command: str) -> list[str]:
    """The job's shards side by side, one process each in its own store ``lanes/K``; each
    shard's log in a group, the step failing when any shard failed."""
    return [
        "      - name: shards ${{ matrix.shards }} of ${{ matrix.of }}, one process per CPU",
        "        run: |",
        f"          mkdir -p {LANES_DIR}",
        "          for k in ${{ matrix.shards }}; do",
        f"            mkdir -p {LANES_DIR}/$k",
        *([f"            {prepare}"] if prepare else []),
        f"            {command} --shard $k/${{{{ matrix.of }}}} --store {LANES_DIR}/$k > {LANES_DIR}/$k.log 2>&1 &",
        f"            echo $! > {LANES_DIR}/$k.pid",
        "          done",
        "          status=0",
        "          for k in ${{ matrix.shards }}; do",
        f"            wait \"$(cat {LANES_DIR}/$k.pid)\" || status=1",
        "            echo \"::group::shard $k of ${{ matrix.of }}\"",
        f"            cat {LANES_DIR}/$k.log",
        "            echo \"::endgroup::\"",
        "          done",
        "          exit $status",
    ]


def _runner(args: str, catalog_arg: str) -> str:
    # `python` is setup-python's last listed version: the host's 3.11
    return f"      - run: python -m runner {args}{catalog_arg}"


def _header(stacks: Sequence[Stack], timings: Mapping[str, Any]) -> list[str]:
    p = projection(stacks, timings)
    shards = p["shards"]
    lines = ["# Shards per stack (save/load), from the timings file; projected wall time:"]
    lines += [f"#   {line}" for line in projection_text(p)]
    row = [f"{s.id} {shards['save'][s.id]}/{shards['load'][s.id]}" for s in stacks]
    for i in range(0, len(row), 6):
        lines.append("#   " + ", ".join(row[i:i + 6]))
    return lines


def workflow_text(catalog_path: Path = DEFAULT_CATALOG, catalog_arg: str = "",
                  timings_path: Path = TIMINGS_PATH, timings_arg: str = "") -> str:
    """The workflow YAML (deterministic: a function of the catalog and the timings file)."""
    stacks = load_catalog(catalog_path)
    timings = read_timings(timings_path)
    tags = sorted({t for s in stacks for t in s.tags})
    py = "python"
    lines = [
        "# Generated by `python -m runner ci-workflow` from the stack catalog and",
        f"# {TIMINGS_PATH.name}: do not edit by hand.",
        "# tests/test_ci_workflow.py fails when this file is stale and runs its jobs locally.",
        f"# Catalog: {len(stacks)} stacks; tags: {', '.join(tags)}.",
        *_header(stacks, timings),
        "name: compat-matrix",
        "on:",
        "  workflow_dispatch:",
        "    inputs:",
        "      stacks:",
        "        description: \"comma-separated stack ids (empty: every stack, or the tags below)\"",
        "        type: string",
        "        default: \"\"",
        "      tags:",
        f"        description: {_q('comma-separated catalog tags (' + ', '.join(tags) + ')')}",
        "        type: string",
        "        default: \"\"",
        "      publish:",
        "        description: \"open a pull request with the new reports/ and deploy the site to GitHub Pages"
        " (default branch, whole catalog only)\"",
        "        type: boolean",
        "        default: false",
        "concurrency:",
        "  group: compat-matrix-${{ github.ref }}",
        "  cancel-in-progress: false",
        "permissions:",
        "  contents: read",
        "env:",
        "  COMPAT_ENVS_DIR: ${{ github.workspace }}/../compat-envs",
        "  CI_STACKS: ${{ inputs.stacks }}",
        "  CI_TAGS: ${{ inputs.tags }}",
        "jobs:",
        "  plan:",
        f"    runs-on: {RUNNER_IMAGE}",
        "    outputs:",
        "      save: ${{ steps.plan.outputs.save }}",
        "      load: ${{ steps.plan.outputs.load }}",
        "      stacks: ${{ steps.plan.outputs.stacks }}",
        "      partial: ${{ steps.plan.outputs.partial }}",
        "    steps:",
        *_setup(HOST_PYTHON),
        "      - id: plan",
        f"        run: {py} -m runner ci-plan --stacks \"$CI_STACKS\" --tags \"$CI_TAGS\"{catalog_arg}{timings_arg}"
        " >> \"$GITHUB_OUTPUT\"",
        *_stack_job("save", "plan", always=False),
        *_lanes("", f"{py} -m runner save --stacks ${{{{ matrix.stack }}}}{catalog_arg}"),
        "      - uses: actions/upload-artifact@v4",
        "        with:",
        "          name: save-${{ matrix.stack }}-${{ matrix.job }}",
        "          include-hidden-files: true",  # a part is every file a shard wrote there
        "          path: |",
        f"            {LANES_DIR}/*/records",
        f"            {LANES_DIR}/*/artifacts",
        *_stack_job("load", "[plan, save]", always=True),
        "      - uses: actions/download-artifact@v4",
        "        with:",
        "          pattern: save-*",
        "          path: parts",
        _runner(f"merge parts/*/* --store {STORE}", catalog_arg),
        *_lanes(f"for d in records artifacts; do if [ -d {STORE}/$d ]; then cp -r {STORE}/$d {LANES_DIR}/$k/; fi; done",
                f"{py} -m runner load --stacks ${{{{ matrix.stack }}}} --elsewhere ${{{{ needs.plan.outputs.stacks }}}}"
                f"{catalog_arg}"),
        "      - uses: actions/upload-artifact@v4",
        "        with:",
        "          name: load-${{ matrix.stack }}-${{ matrix.job }}",
        "          include-hidden-files: true",  # a part is every file a shard wrote there
        "          path: |",
        f"            {LANES_DIR}/*/records",
        f"            !{LANES_DIR}/*/records/save",  # every job has them: the save parts carry them once
        "  report:",
        "    needs: [plan, load]",
        "    if: ${{ !cancelled() }}",
        f"    runs-on: {RUNNER_IMAGE}",
        "    permissions:",
        "      contents: write",
        "      pull-requests: write",
        "    steps:",
        *_setup(HOST_PYTHON),
        "      - uses: actions/download-artifact@v4",
        "        with:",
        "          pattern: save-*",
        "          path: parts",
        "      - uses: actions/download-artifact@v4",
        "        with:",
        "          pattern: load-*",
        "          path: load-parts",
        _runner(f"merge parts/*/* load-parts/*/* --store {STORE}", catalog_arg),
        # The published table's results file: results.json.gz, or an earlier layout's results.json.
        "      - name: the published results beside the new table (its CHANGES.md compares with them)",
        "        run: |",
        "          mkdir -p new-reports",
        "          for f in results.json.gz results.json; do",
        "            if [ -f reports/$f ]; then cp reports/$f new-reports/; fi",
        "          done",
        _runner("report --stacks ${{ needs.plan.outputs.stacks }} --out new-reports", catalog_arg),
        "      - name: gate against the published table",
        "        run: |",
        "          set +e",
        "          baseline=reports/results.json.gz",
        "          if [ ! -f $baseline ] && [ -f reports/results.json ]; then baseline=reports/results.json; fi",
        f"          {py} -m runner gate --baseline $baseline --current new-reports/results.json.gz"
        " ${{ needs.plan.outputs.partial }} > gate.txt 2>&1",
        "          status=$?",
        "          cat gate.txt",
        "          { echo '```'; cat gate.txt; echo '```'; } >> \"$GITHUB_STEP_SUMMARY\"",
        "          exit $status",
        "      - uses: actions/upload-artifact@v4",
        "        if: ${{ !cancelled() }}",
        "        with:",
        "          name: reports",
        "          path: new-reports",
        "      - name: publish (a pull request with the new tables)",
        "        if: ${{ inputs.publish && github.ref_name == github.event.repository.default_branch"
        " && needs.plan.outputs.partial == '' }}",
        "        env:",
        "          GH_TOKEN: ${{ github.token }}",
        "        run: |",
        "          rm -rf reports && cp -r new-reports reports",  # the whole set: pages, site, data; no stale file
        "          git switch -c \"compat-matrix/${{ github.run_id }}\"",
        "          git add reports",
        "          git -c user.name=compat-matrix -c user.email=compat-matrix@users.noreply.github.com"
        " commit -m \"Republish the compatibility table (run ${{ github.run_id }})\"",
        "          git push origin HEAD",
        "          gh pr create --fill --base \"${{ github.ref_name }}\"",
        # The site (index.html, site/, data/ of the report folder) for the pages job.
        "      - name: publish (the site for GitHub Pages)",
        "        if: ${{ inputs.publish && github.ref_name == github.event.repository.default_branch"
        " && needs.plan.outputs.partial == '' }}",
        "        uses: actions/upload-pages-artifact@v3",
        "        with:",
        "          path: new-reports",
        "  pages:",
        "    needs: [plan, report]",
        "    if: ${{ inputs.publish && github.ref_name == github.event.repository.default_branch"
        " && needs.plan.outputs.partial == '' }}",
        f"    runs-on: {RUNNER_IMAGE}",
        "    permissions:",
        "      pages: write",
        "      id-token: write",
        "    environment:",
        "      name: github-pages",
        "      url: ${{ steps.deploy.outputs.page_url }}",
        "    steps:",
        "      - id: deploy",
        "        uses: actions/deploy-pages@v4",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- commands
def add_parsers(sub: Any) -> None:
    p = sub.add_parser("ci-workflow", help=f"write {WORKFLOW_PATH} from the catalog and {TIMINGS_PATH.name} "
                                           "(--check: fail if stale)")
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    p.add_argument("--out", type=Path, default=WORKFLOW_PATH)
    p.add_argument("--timings", type=Path, default=TIMINGS_PATH,
                   help="per-stack seconds per phase the shard counts come from")
    p.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generated one")
    p.add_argument("--timings-from", type=Path, default=None, metavar="STORE|RESULTS",
                   help="first rewrite --timings: measured from a run's store (its timings.json), or "
                        "estimated from a published results.json.gz for the stacks not measured")
    p.add_argument("--projection", action="store_true",
                   help="print the workflow's projected wall time (writes nothing)")
    p = sub.add_parser("ci-plan", help="the workflow's job matrices for a selection, as GITHUB_OUTPUT lines")
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    p.add_argument("--timings", type=Path, default=TIMINGS_PATH)
    p.add_argument("--stacks", default="", help="comma-separated stack ids (empty: all)")
    p.add_argument("--tags", default="", help="comma-separated tags (empty: all)")


def _names(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _error(text: str) -> int:
    print(f"runner: error: {text}", file=sys.stderr)
    return 2


def cmd_ci_workflow(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    catalog_arg = "" if args.catalog.resolve() == DEFAULT_CATALOG.resolve() else f" --catalog {args.catalog}"
    timings_arg = "" if args.timings == TIMINGS_PATH else f" --timings {args.timings}"
    try:
        catalog = load_catalog(args.catalog)
        timings = read_timings(args.timings)
        if args.timings_from is not None:
            src = args.timings_from
            if src.is_dir():
                timings = timings_from_store(src, catalog, timings)
            elif src.is_file():
                from runner.scenario_catalog import discover_scenarios

                timings = timings_from_table(src, catalog, len(discover_scenarios()), timings)
            else:
                return _error(f"--timings-from {src}: no such store or results file")
    except (OSError, ValueError) as exc:
        return _error(f"ci-workflow: {exc}")
    if args.projection:
        for line in projection_text(projection(catalog, timings)):
            print(line, file=out)
        return 0
    if args.timings_from is not None:
        atomic_write_text(args.timings, _timings_text(timings))
        print(f"ci-workflow: wrote {args.timings}", file=out)
    text = workflow_text(args.catalog, catalog_arg, args.timings, timings_arg)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"ci-workflow: {args.out} is stale: run `python -m runner ci-workflow`", file=out)
            return 1
        print(f"ci-workflow: {args.out} is up to date", file=out)
        return 0
    atomic_write_text(args.out, text)
    print(f"ci-workflow: wrote {args.out}", file=out)
    return 0


def cmd_ci_plan(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    catalog = load_catalog(args.catalog)
    stacks = select(catalog, _names(args.stacks), _names(args.tags))
    partial = "" if len(stacks) == len(catalog) else "--partial stacks=" + ",".join(s.id for s in stacks)
    # Shard counts are the whole catalog's (a stack's shards do not depend on the selection).
    jobs = plan_jobs(catalog, read_timings(args.timings))
    by_id = {s.id: s for s in stacks}
    for phase in PHASES:
        entries = [j.entry(by_id[j.stack]) for j in jobs[phase] if j.stack in by_id]
        print(f"{phase}=" + json.dumps(entries, separators=(",", ":")), file=out)
    print("stacks=" + ",".join(s.id for s in stacks), file=out)
    print("partial=" + partial, file=out)
    return 0
