"""The generated GitHub Actions workflow: committed, fresh, within GitHub's limits, and
equal to one machine.

``test_the_committed_workflow_is_fresh`` is the lock-file check (fast tier); the fast tier
also checks the committed plan against GitHub's limits (jobs per matrix, 20 concurrent
runners, a projected wall time of at most 20 minutes), that the jobs' shards cover every
cell once, and the Pages deploy. The simulation (tier ``faults``: real processes, fake
Keras; tier ``real``: two light real stacks) runs every job of a generated workflow
locally, one after another, each in a fresh directory at the same path holding only what
GitHub would give it — the checkout and the artifacts it downloads — executing the
workflow's own ``run:`` scripts (every shard of a job side by side) and artifact steps;
then the report job's tables must equal a one-machine ``matrix`` run's byte for byte.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import e2e
import pytest

from runner import ci_workflow, cli, matrix, scenario_catalog
from runner.records import Store
from runner.stacks import load_catalog

TIMINGS = ci_workflow.read_timings(e2e.REPO / ci_workflow.TIMINGS_PATH)


def test_the_committed_workflow_is_fresh() -> None:
    committed = (e2e.REPO / ci_workflow.WORKFLOW_PATH).read_text(encoding="utf-8")
    assert committed == ci_workflow.workflow_text(timings_path=e2e.REPO / ci_workflow.TIMINGS_PATH), \
        "stale: run `python -m runner ci-workflow` and commit .github/workflows/compat-matrix.yml"


def test_a_changed_timing_makes_the_workflow_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({**TIMINGS, "stacks": {**TIMINGS["stacks"], "tf2.14": {
        **TIMINGS["stacks"]["tf2.14"], "load": 40000.0}}}))
    args = ["ci-workflow", "--check", "--out", str(e2e.REPO / ci_workflow.WORKFLOW_PATH)]
    assert cli.main(args) == 0  # the committed timings: fresh
    assert cli.main([*args, "--timings", str(timings)]) == 1
    assert "is stale" in capsys.readouterr().out


def _plan(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert cli.main(["ci-plan", *argv]) == 0
    return dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())


def test_ci_plan_outputs_the_job_matrices(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _plan(["--tags", "quick"], capsys)
    for phase in ("save", "load"):
        entries = json.loads(lines[phase])
        assert {e["stack"] for e in entries} == set(lines["stacks"].split(","))
        assert all(set(e) == {"stack", "python", "requirements_hash", "job", "jobs", "shards", "of"} for e in entries)
    assert lines["partial"].startswith("--partial stacks=")
    # a stack's shards do not depend on the selection: the whole catalog's plan, filtered
    whole = _plan([], capsys)
    assert whole["partial"] == ""
    for phase in ("save", "load"):
        quick = json.loads(lines[phase])
        assert quick == [e for e in json.loads(whole[phase]) if e["stack"] in lines["stacks"].split(",")]


def test_the_committed_plan_is_within_githubs_limits(capsys: pytest.CaptureFixture[str]) -> None:
    catalog = load_catalog()
    assert {s.id for s in catalog} <= set(TIMINGS["stacks"]), "every stack has timings"
    assert "runners" not in TIMINGS and "lanes" not in TIMINGS  # GitHub's free plan, public runners
    lines = _plan([], capsys)
    for phase in ("save", "load"):
        assert 0 < len(json.loads(lines[phase])) <= ci_workflow.MAX_JOBS == 256
    p = ci_workflow.projection(catalog, TIMINGS)
    assert p["runners"] == 20 and p["lanes"] == 4
    assert p["wall_s"] <= 20 * 60, ci_workflow.projection_text(p)
    # fewer runners are as fast or slower (equal when one stack's job is the whole critical path)
    assert p["wall_s"] < p["unsharded_all_s"] <= p["unsharded_runners_s"]
    # the committed header states the same projection
    text = (e2e.REPO / ci_workflow.WORKFLOW_PATH).read_text()
    assert f"projected wall: {p['wall_s']:,.0f} s" in text


def test_every_shard_of_every_stack_runs_once(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _plan([], capsys)
    for phase in ("save", "load"):
        seen: dict[str, list[int]] = {}
        of: dict[str, set[int]] = {}
        for e in json.loads(lines[phase]):
            seen.setdefault(e["stack"], []).extend(int(k) for k in e["shards"].split())
            of.setdefault(e["stack"], set()).add(int(e["of"]))
            assert int(e["of"]) == int(e["jobs"]) * len(e["shards"].split())
        assert set(seen) == set(lines["stacks"].split(","))
        for stack, shards in seen.items():
            (n,) = of[stack]
            assert sorted(shards) == list(range(1, n + 1)), (phase, stack)


def test_the_shards_of_a_planned_stack_cover_its_cells_once(tmp_path: Path) -> None:
    """The runner's own partition (``--shard K/N``) with the N the workflow gives the
    heaviest loader: every cell of each phase in exactly one shard."""
    catalog = load_catalog()
    jobs = ci_workflow.plan_jobs(catalog, TIMINGS)
    heavy = max(jobs["load"], key=lambda j: (j.of, j.stack))
    assert heavy.of > ci_workflow.LANES  # the heaviest loader is spread over more than one job
    stacks = [s for s in catalog if s.id in (heavy.stack, "tf2.15")]
    sc = scenario_catalog
    scenarios = sc.select_scenarios(sc.discover_scenarios(), ["dense", "rnn", "custom_layer"])
    store = Store(tmp_path / "s")
    for phase, n in (("save", jobs["save"][0].of), ("load", heavy.of)):
        parts = []
        for k in range(1, n + 1):
            r = matrix._Runner(stacks, stacks, scenarios, sc.FORMATS, store, matrix.Options(shard=(k, n)),
                               io.StringIO(), lambda s, st: None)  # type: ignore[arg-type,return-value]
            plan = r.save_plan() if phase == "save" else r.load_plan()
            r.plan_shard(plan)
            parts.append({cid for cid, _ in plan if r._mine(cid)})
        assert sum(map(len, parts)) == len(plan) == len(set().union(*parts))


def test_shard_counts_follow_the_timings() -> None:
    work = {"heavy": 40000.0, "mid": 4000.0, "light": 400.0}
    groups = ci_workflow.plan_phase(work, 30.0)
    assert groups["heavy"] > groups["mid"] >= groups["light"]
    # a shard holds at least one job's fixed cost of work: 400 s over 4 shards is 100 s
    assert groups["light"] <= 400 / (4 * 30.0)
    assert ci_workflow.plan_phase({"tiny": 100.0}, 30.0) == {"tiny": 1}
    assert ci_workflow.plan_phase({"tiny": 100.0}, 0.0)["tiny"] > 1  # free jobs: every runner used
    # more work, more jobs; the matrix limit holds however much work there is
    assert ci_workflow.plan_phase({**work, "heavy": 80000.0}, 30.0)["heavy"] > groups["heavy"]
    huge = ci_workflow.plan_phase({f"s{i}": 1e6 for i in range(50)}, 30.0)
    assert sum(huge.values()) <= ci_workflow.MAX_JOBS
    with pytest.raises(ValueError, match="more than 256 jobs"):
        ci_workflow.plan_phase({f"s{i}": 1.0 for i in range(300)}, 30.0)


def test_timings_from_a_store_are_measured(tmp_path: Path) -> None:
    """A run's store gives each stack's in-cell seconds per phase from its records, every
    sitting of a resumed run included (its timings.json holds only the last sitting's walls:
    here 2.7 s, which must not be read); env records are a job's fixed cost, not work;
    stacks without records keep the previous entry."""
    from runner.records import Outcome, Record, Store, load_cell_id, save_cell_id

    store = tmp_path / "store"
    st = Store(store)
    st.write(Record(record_type="save", cell_id=save_cell_id("dense", "h5", "tf2.15"), stack="tf2.15",
                    outcome=Outcome.OK, saver="tf2.15", scenario="dense", format="h5", phase="save", duration_s=50.0))
    for saver, variant, secs in (("tf2.4", "default", 900.0), ("tf2.5", "default", 70.0),
                                 ("tf2.4", "compile_false", 80.0)):
        st.write(Record(record_type="load", cell_id=load_cell_id("dense", "h5", saver, "tf2.15", variant),
                        stack="tf2.15", outcome=Outcome.OK, saver=saver, loader="tf2.15", scenario="dense",
                        format="h5", variant=variant, phase="load", duration_s=secs))
    (store / "timings.json").write_text(json.dumps({"save": {"tf2.15": 2.7}, "load": {"tf2.15": 2.7}}))
    st.write(Record(record_type="env", cell_id="env:tf2.15", stack="tf2.15", outcome=Outcome.OK, duration_s=20.0))
    base = {**TIMINGS, "stacks": {k: {**v, "source": "estimated"} for k, v in TIMINGS["stacks"].items()}}
    new = ci_workflow.timings_from_store(store, load_catalog(), base)
    assert new["stacks"]["tf2.15"] == {"save": 50.0, "load": 1050.0,
                                       "source": "measured (in-cell seconds of the store's records)"}
    assert new["stacks"]["tf2.14"] == base["stacks"]["tf2.14"]
    assert new["job_overhead_s"] == TIMINGS["job_overhead_s"]
    with pytest.raises(ValueError, match="no records"):
        ci_workflow.timings_from_store(tmp_path / "empty", load_catalog(), TIMINGS)
    # an estimate from a table keeps what was measured
    again = ci_workflow.timings_from_table(e2e.REPO / "reports" / "results.json.gz", load_catalog(), 30, new)
    assert again["stacks"]["tf2.15"]["source"].startswith("measured")
    assert again["stacks"]["tf2.14"]["source"] == "estimated"


def test_timings_from_the_published_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timings = tmp_path / "t.json"
    timings.write_text(json.dumps({"job_overhead_s": 30, "report_s": 170, "stacks": {}}))
    out = tmp_path / "wf.yml"
    assert cli.main(["ci-workflow", "--timings", str(timings), "--out", str(out),
                     "--timings-from", str(e2e.REPO / "reports" / "results.json.gz")]) == 0
    data = json.loads(timings.read_text())
    per = data["stacks"]
    assert set(per) == {s.id for s in load_catalog()} and data["job_overhead_s"] == 30
    # a loader's known hangs in the published table are counted at the timeout's cost
    from runner.gate import read_results_text, results_rows

    hangs = Counter(r["loader"] for r in results_rows(json.loads(read_results_text(
        e2e.REPO / "reports" / "results.json.gz"))) if r["source"] == "load" and r["outcome"] == "timeout")
    worst, n = hangs.most_common(1)[0]
    table = e2e.REPO / "reports" / "results.json.gz"
    free = dict(ci_workflow.PER_CELL_S, timeout=0.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ci_workflow, "PER_CELL_S", free)
        no_hangs = ci_workflow.timings_from_table(table, load_catalog(), 34, {})["stacks"][worst]["load"]
    with_hangs = ci_workflow.timings_from_table(table, load_catalog(), 34, {})["stacks"][worst]["load"]
    assert n > 0 and with_hangs - no_hangs == pytest.approx(n * ci_workflow.PER_CELL_S["timeout"], abs=0.2)
    assert all(v["source"].startswith("estimated") for v in per.values())
    # a stack the table lacks takes the median loader (and the worst known hangs)
    extra = dataclasses.replace(next(s for s in load_catalog() if s.id == "keras3.1-jax"), id="keras3.99-jax")
    est = ci_workflow.timings_from_table(e2e.REPO / "reports" / "results.json.gz", [*load_catalog(), extra], 34, {})
    assert est["stacks"]["keras3.99-jax"]["source"].startswith("estimated (not in the table")
    assert f"--timings {timings}" in out.read_text()  # the plan job reads the same file
    assert cli.main(["ci-workflow", "--timings", str(timings), "--projection"]) == 0
    assert "projected wall:" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--timings-from", "/nonexistent-timings-source"]])
def test_bad_timings_source_is_a_usage_error(argv: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "wf.yml"
    assert cli.main(["ci-workflow", "--out", str(out), "--timings", str(tmp_path / "t.json"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runner: error:") and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "t.json").exists()


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML (a test dependency) reads the workflow")


def test_the_site_is_deployed_to_pages_after_the_report() -> None:
    text = (e2e.REPO / ci_workflow.WORKFLOW_PATH).read_text()
    jobs = _yaml().safe_load(text)["jobs"]
    report, pages = jobs["report"], jobs["pages"]
    assert "report" in pages["needs"]
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}
    assert pages["environment"]["name"] == "github-pages"
    assert [s.get("uses", "") for s in pages["steps"]] == ["actions/deploy-pages@v4"]
    (upload,) = [s for s in report["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert upload["with"]["path"] == "new-reports"
    writer = [i for i, s in enumerate(report["steps"]) if "runner report" in s.get("run", "")]
    assert writer and writer[0] < report["steps"].index(upload)
    # deployed only when the pull request is: default branch, whole catalog, publish asked for
    assert upload["if"] == pages["if"] == next(s for s in report["steps"] if "gh pr create" in s.get("run", ""))["if"]
    # the workflow holds no credential: the job token only, by reference
    assert "secrets." not in text and text.count("${{ github.token }}") == 1


class _Sim:
    """Runs a workflow's jobs like a runner would, with a local artifact store."""

    def __init__(self, root: Path, envs_dir: Path, workflow: dict[str, Any], repo: Path) -> None:
        self.root, self.envs_dir, self.workflow, self.repo = root, envs_dir, workflow, repo
        self.work = root / "work"  # every job at the same path, as on GitHub
        self.registry = root / "artifacts"
        self.registry.mkdir(parents=True)
        self.sizes: dict[str, int] = {}

    def checkout(self, dest: Path) -> None:
        """``repo``'s tree (a prepared checkout copy: its catalog, scenarios, timings)."""
        saved = e2e.REPO
        e2e.REPO = self.repo  # checkout_copy copies e2e.REPO's files
        try:
            e2e.checkout_copy(dest, fake_defaults=False)
        finally:
            e2e.REPO = saved

    def _sub(self, text: str, ctx: dict[str, Any]) -> str:
        def value(m: re.Match[str]) -> str:
            expr = m.group(1).strip()
            cur: Any = ctx
            for part in expr.split("."):
                cur = cur[part]
            return str(cur)
        return re.sub(r"\$\{\{\s*([a-z_.]+)\s*\}\}", value, text)

    def _upload(self, step: dict[str, Any], ctx: dict[str, Any]) -> None:
        # upload-artifact's rules: a pattern's search root is its path up to the first
        # wildcard; the artifact's root is the least common ancestor of the search roots
        # (one search root: itself); "!" patterns exclude (a directory: its contents too).
        art = self.registry / self._sub(step["with"]["name"], ctx)
        lines = self._sub(step["with"]["path"], ctx).split()
        include = [p for p in lines if not p.startswith("!")]
        exclude = [p[1:] for p in lines if p.startswith("!")]

        def search_root(pattern: str) -> Path:
            parts = Path(pattern).parts
            literal = list(parts[:next((i for i, p in enumerate(parts) if "*" in p), len(parts))])
            return self.work.joinpath(*literal)

        roots = [search_root(p) for p in include]
        base = Path(os.path.commonpath(roots)) if len(roots) > 1 else roots[0]
        for pattern in include:
            for top in sorted(self.work.glob(pattern)):
                for f in [top] if top.is_file() else sorted(top.rglob("*")):
                    rel = f.relative_to(self.work).as_posix()
                    if f.is_file() and not any(fnmatch.fnmatch(rel, x) or fnmatch.fnmatch(rel, x + "/*")
                                               for x in exclude):
                        (art / f.relative_to(base)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, art / f.relative_to(base))
        self.sizes[art.name] = sum(f.stat().st_size for f in art.rglob("*") if f.is_file())

    def run_job(self, name: str, entry: dict[str, str], outputs: dict[str, str]) -> dict[str, Any]:
        job = self.workflow["jobs"][name]
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()
        ctx = {"matrix": entry, "needs": {"plan": {"outputs": outputs}},
               "github": {"workspace": str(self.work)}}
        env = {**e2e.runner_env(self.envs_dir), "COMPAT_ENVS_DIR": str(self.envs_dir),
               "CI_STACKS": "", "CI_TAGS": "", "PYTHONPATH": str(self.work)}
        gh_output, summary = self.root / f"{name}.out", self.root / f"{name}.summary"
        env.update(GITHUB_OUTPUT=str(gh_output), GITHUB_STEP_SUMMARY=str(summary))
        result: dict[str, Any] = {"steps": []}
        for step in job["steps"]:
            uses = step.get("uses", "")
            if "publish" in str(step.get("if", "")):
                continue  # the default-branch pull request and Pages: not simulated
            if uses.startswith("actions/checkout"):
                self.checkout(self.work)
            elif uses.startswith(("actions/setup-python", "actions/cache")):
                continue  # the interpreters and uv cache of this machine
            elif uses.startswith("actions/upload-artifact"):
                self._upload(step, ctx)
            elif uses.startswith("actions/download-artifact"):
                dest = self.work / step["with"]["path"]
                for art in sorted(self.registry.iterdir()):
                    if fnmatch.fnmatch(art.name, step["with"]["pattern"]):
                        shutil.copytree(art, dest / art.name)
            elif "run" in step:
                script = self._sub(step["run"], ctx)
                if "pip install" in script:
                    continue  # the host has the packages
                script = re.sub(r"(?m)(^|\s)python (-m )", rf"\1{sys.executable} \2", script)
                proc = subprocess.run(["bash", "-e", "-c", script], cwd=self.work, env=env,
                                      capture_output=True, text=True, timeout=900, check=False)
                result["steps"].append((script, proc.returncode, proc.stdout + proc.stderr))
                if proc.returncode != 0 and "gate" not in script:
                    pytest.fail(f"job {name} step `{script}` failed ({proc.returncode}):\n"
                                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        if gh_output.exists():
            result["outputs"] = dict(ln.split("=", 1) for ln in gh_output.read_text().splitlines() if "=" in ln)
        return result

    def run_workflow(self) -> dict[str, Any]:
        """plan, every save job, every load job, report; the plan's outputs and the report job."""
        plan = self.run_job("plan", {}, {})["outputs"]
        for phase in ("save", "load"):
            for entry in json.loads(plan[phase]):
                self.run_job(phase, entry, plan)
        return {"plan": plan, "report": self.run_job("report", {}, plan)}


def _one_machine(sim: _Sim) -> dict[str, bytes]:
    shutil.rmtree(sim.work)
    sim.work.mkdir()
    sim.checkout(sim.work)
    # the published results beside the new table, as the report job puts them
    (sim.work / "one-machine").mkdir()
    for name in ("results.json.gz", "results.json"):
        if (sim.work / "reports" / name).is_file():
            shutil.copy2(sim.work / "reports" / name, sim.work / "one-machine" / name)
    proc = subprocess.run([sys.executable, "-m", "runner", "matrix", "--out", "one-machine"], cwd=sim.work,
                          env={**e2e.runner_env(sim.envs_dir), "PYTHONPATH": str(sim.work)},
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, e2e.describe(proc)
    return e2e.report_files(sim.work / "one-machine")


def _assert_same_tables(distributed: dict[str, bytes], one: dict[str, bytes]) -> None:
    assert sorted(distributed) == sorted(one) and "results.json.gz" in one
    # both compared with the checkout's published table
    assert "Compared with the previous published table" in one["CHANGES.md"].decode()
    for name, data in one.items():
        if distributed[name] != data:
            import difflib

            diff = "\n".join(difflib.unified_diff(data.decode(errors="replace").splitlines(),
                                                  distributed[name].decode(errors="replace").splitlines(),
                                                  lineterm="", n=1))
            pytest.fail(f"{name} differs (one machine -> workflow):\n{diff[:4000]}")


def _generate(gen: Path, timings: dict[str, Any]) -> dict[str, Any]:
    """The workflow generated in the checkout copy ``gen`` (its own default catalog) with
    ``timings`` as the committed timings file."""
    (gen / ci_workflow.TIMINGS_PATH).write_text(json.dumps(timings))
    subprocess.run([sys.executable, "-m", "runner", "ci-workflow"], cwd=gen, check=True,
                   env={**os.environ, "PYTHONPATH": str(gen)}, capture_output=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "timings"],
                   cwd=gen, check=True)
    workflow: dict[str, Any] = _yaml().safe_load((gen / ci_workflow.WORKFLOW_PATH).read_text())
    return workflow


def _sharded(plan: dict[str, str], stack: str) -> list[dict[str, str]]:
    return [e for e in json.loads(plan["load"]) if e["stack"] == stack]


@pytest.mark.faults
def test_the_workflow_run_locally_equals_one_machine(tmp_path: Path, fake_envs_dir: Path) -> None:
    _yaml()
    gen = e2e.checkout_copy(tmp_path / "gen")
    # fk3.9 the heavy loader: 2 runners, 2 shards per job make it more than one job
    workflow = _generate(gen, {"runners": 2, "lanes": 2, "job_overhead_s": 60, "report_s": 0, "stacks": {
        "fk2.15": {"save": 20, "load": 100}, "fk3.5": {"save": 20, "load": 100},
        "fk3.9": {"save": 20, "load": 2400}}})
    sim = _Sim(tmp_path / "sim", fake_envs_dir, workflow, gen)
    run = sim.run_workflow()
    plan = run["plan"]
    assert sorted({e["stack"] for e in json.loads(plan["save"])}) == ["fk2.15", "fk3.5", "fk3.9"]
    assert plan["partial"] == ""
    heavy = _sharded(plan, "fk3.9")
    assert len(heavy) >= 2 and heavy[0]["of"] == str(2 * len(heavy))  # sharded over jobs and lanes
    assert len(_sharded(plan, "fk2.15")) == 1
    shutil.copytree(sim.work / "new-reports", tmp_path / "distributed")
    assert (tmp_path / "distributed" / "index.html").is_file()  # the site the pages job deploys
    gate = [s for s in run["report"]["steps"] if "runner gate" in s[0]]
    assert gate and "gate:" in gate[0][2]
    one = _one_machine(sim)
    _assert_same_tables(e2e.report_files(tmp_path / "distributed"), one)
    assert b"Selection: the whole default catalog: 3 stacks" in one["matrix.md"]
    print("artifact sizes (bytes):", json.dumps(sim.sizes, sort_keys=True))


@pytest.mark.real
def test_a_real_sharded_workflow_equals_one_machine(tmp_path: Path) -> None:
    """Two light real stacks (Keras 3 on JAX and on NumPy), three scenarios: the generated
    workflow's jobs, keras3.15-jax's loads spread over two jobs of two shards, merged and
    reported, equal one machine's run of the same checkout byte for byte."""
    _yaml()
    gen = e2e.checkout_copy(tmp_path / "gen", fake_defaults=False)
    keep = ("keras3.15-jax", "keras3.15-numpy")
    head, *blocks = (gen / "runner" / "stacks.toml").read_text().split("[[stack]]")
    chosen = [b for b in blocks if re.search(r'^id = "([^"]+)"', b, re.M).group(1) in keep]  # type: ignore[union-attr]
    assert len(chosen) == 2
    (gen / "runner" / "stacks.toml").write_text(head + "".join("[[stack]]" + b for b in chosen))
    for f in (gen / "scenarios").glob("*.py"):
        if not f.name.startswith("_") and f.stem not in ("dense", "rnn", "custom_layer"):
            f.unlink()
    workflow = _generate(gen, {"runners": 2, "lanes": 2, "job_overhead_s": 10, "report_s": 0, "stacks": {
        "keras3.15-jax": {"save": 10, "load": 200}, "keras3.15-numpy": {"save": 10, "load": 20}}})
    envs = Path(os.environ.get("COMPAT_ENVS_DIR") or e2e.REPO / ".matrix" / "envs")
    sim = _Sim(tmp_path / "sim", envs, workflow, gen)
    run = sim.run_workflow()
    heavy = _sharded(run["plan"], "keras3.15-jax")
    assert len(heavy) == 2 and heavy[0]["of"] == "4", heavy
    shutil.copytree(sim.work / "new-reports", tmp_path / "distributed")
    one = _one_machine(sim)
    assert "the whole default catalog: 2 stacks × 3 scenarios" in one["matrix.md"].decode()
    _assert_same_tables(e2e.report_files(tmp_path / "distributed"), one)
