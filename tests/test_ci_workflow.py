"""The generated GitHub Actions workflow: committed, fresh, and equal to one machine.

``test_the_committed_workflow_is_fresh`` is the lock-file check (fast tier). The
simulation (tier ``faults``: real processes, fake Keras) runs every job of the workflow
generated for the fake catalog locally, one after another, each in a fresh directory at
the same path holding only what GitHub would give it — the checkout and the artifacts it
downloads — executing the workflow's own ``run:`` scripts and artifact steps; then the
report job's tables must equal a one-machine ``matrix`` run's byte for byte.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import e2e
import pytest

from runner import ci_workflow


def test_the_committed_workflow_is_fresh() -> None:
    committed = (e2e.REPO / ci_workflow.WORKFLOW_PATH).read_text(encoding="utf-8")
    assert committed == ci_workflow.workflow_text(), \
        "stale: run `python -m runner ci-workflow` and commit .github/workflows/compat-matrix.yml"


def test_ci_plan_outputs_the_job_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    from runner import cli

    assert cli.main(["ci-plan", "--tags", "quick"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    entries = json.loads(lines["matrix"])
    assert {e["stack"] for e in entries} == set(lines["stacks"].split(","))
    assert all(set(e) == {"stack", "python", "requirements_hash"} for e in entries)
    assert lines["partial"].startswith("--partial stacks=")


class _Sim:
    """Runs a workflow's jobs like a runner would, with a local artifact store."""

    def __init__(self, root: Path, envs_dir: Path, workflow: dict[str, Any]) -> None:
        self.root, self.envs_dir, self.workflow = root, envs_dir, workflow
        self.work = root / "work"  # every job at the same path, as on GitHub
        self.registry = root / "artifacts"
        self.registry.mkdir(parents=True)
        self.sizes: dict[str, int] = {}

    def _sub(self, text: str, ctx: dict[str, Any]) -> str:
        def value(m: re.Match[str]) -> str:
            expr = m.group(1).strip()
            cur: Any = ctx
            for part in expr.split("."):
                cur = cur[part]
            return str(cur)
        return re.sub(r"\$\{\{\s*([a-z_.]+)\s*\}\}", value, text)

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
                continue  # the default-branch pull request: not simulated
            if uses.startswith("actions/checkout"):
                e2e.checkout_copy(self.work)
            elif uses.startswith(("actions/setup-python", "actions/cache")):
                continue  # the interpreters and uv cache of this machine
            elif uses.startswith("actions/upload-artifact"):
                # upload-artifact's rules: the root is the paths' least common ancestor (a
                # single directory: its contents); "!" lines exclude.
                art = self.registry / self._sub(step["with"]["name"], ctx)
                lines = self._sub(step["with"]["path"], ctx).split()
                include = [self.work / p for p in lines if not p.startswith("!")]
                exclude = [self.work / p[1:] for p in lines if p.startswith("!")]
                base = Path(os.path.commonpath(include)) if len(include) > 1 else include[0]
                for top in include:
                    for f in [top] if top.is_file() else sorted(top.rglob("*")):
                        if f.is_file() and not any(f == x or x in f.parents for x in exclude):
                            (art / f.relative_to(base)).parent.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(f, art / f.relative_to(base))
                self.sizes[art.name] = sum(f.stat().st_size for f in art.rglob("*") if f.is_file())
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
                                      capture_output=True, text=True, timeout=600, check=False)
                result["steps"].append((script, proc.returncode, proc.stdout + proc.stderr))
                if proc.returncode != 0 and "gate" not in script:
                    pytest.fail(f"job {name} step `{script}` failed ({proc.returncode}):\n"
                                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        if gh_output.exists():
            result["outputs"] = dict(ln.split("=", 1) for ln in gh_output.read_text().splitlines() if "=" in ln)
        return result


@pytest.mark.faults
def test_the_workflow_run_locally_equals_one_machine(tmp_path: Path, fake_envs_dir: Path) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML (a test dependency) reads the workflow")
    gen = e2e.checkout_copy(tmp_path / "gen")
    subprocess.run([sys.executable, "-m", "runner", "ci-workflow"], cwd=gen, check=True,
                   env={**os.environ, "PYTHONPATH": str(gen)}, capture_output=True)
    workflow = yaml.safe_load((gen / ci_workflow.WORKFLOW_PATH).read_text())
    sim = _Sim(tmp_path / "sim", fake_envs_dir, workflow)

    plan = sim.run_job("plan", {}, {})["outputs"]
    entries = json.loads(plan["matrix"])
    assert [e["stack"] for e in entries] == ["fk2.15", "fk3.5", "fk3.9"] and plan["partial"] == ""
    for entry in entries:
        sim.run_job("save", entry, plan)
    for entry in entries:
        sim.run_job("load", entry, plan)
    report = sim.run_job("report", {}, plan)
    shutil.copytree(sim.work / "new-reports", tmp_path / "distributed")
    distributed = e2e.report_files(tmp_path / "distributed")
    gate = [s for s in report["steps"] if "runner gate" in s[0]]
    assert gate and "gate:" in gate[0][2]

    shutil.rmtree(sim.work)
    sim.work.mkdir()
    e2e.checkout_copy(sim.work)
    proc = subprocess.run([sys.executable, "-m", "runner", "matrix", "--out", "one-machine"], cwd=sim.work,
                          env={**e2e.runner_env(fake_envs_dir), "PYTHONPATH": str(sim.work)},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, e2e.describe(proc)
    one = e2e.report_files(sim.work / "one-machine")
    assert sorted(distributed) == sorted(one) and "results.json.gz" in one
    # the workflow's CHANGES.md compares with the checkout's published table; one machine had none
    assert "Compared with the previous published table" in distributed.pop("CHANGES.md").decode()
    assert "there was no previous table" in one.pop("CHANGES.md").decode()
    for files in (distributed, one):  # the site carries CHANGES.md's text too
        head, _, body = files["data/meta.js"].decode().rpartition(" = ")
        files["data/meta.js"] = (head + json.dumps({**json.loads(body.rstrip().rstrip(";")), "changes": ""})).encode()
    for name in one:
        if distributed[name] != one[name]:
            import difflib

            diff = "\n".join(difflib.unified_diff(one[name].decode().splitlines(),
                                                  distributed[name].decode().splitlines(), lineterm="", n=1))
            pytest.fail(f"{name} differs (one machine -> workflow):\n{diff[:4000]}")
    assert b"Selection: the whole default catalog: 3 stacks" in one["matrix.md"]
    print("artifact sizes (bytes):", json.dumps(sim.sizes, sort_keys=True))
