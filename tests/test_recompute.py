"""Which cells an edit recomputes, pinned (issue 24): a harness-only edit none, an h5-load
edit only h5 loads, a new scenario its own row; a comparison or tolerance edit runs
nothing and judges the stored observations again.

Real processes and files: a copy of this checkout (its worker is the one edited), the
fake catalog's real venvs, a real first run; ``matrix --dry-run`` predicts, and for the
harness and the h5-load edits a real second run shows that exactly the predicted records
were rewritten.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import e2e
import pytest

STACKS = "fk2.15,fk3.5"


class Copy:
    def __init__(self, root: Path, store: Path, envs_dir: Path) -> None:
        self.root, self.store, self.envs_dir = root, store, envs_dir
        self.worker = root / "runner" / "_worker" / "worker.py"
        self.pristine = self.worker.read_text()

    def run(self, *args: str, scenarios: str = e2e.SCENARIOS, status: int = 0) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "runner", "matrix", "--stacks", STACKS, "--scenarios", scenarios,
                "--store", str(self.store), "--no-report", "--load-timeout", "20", *args]
        env = {**e2e.runner_env(self.envs_dir), "PYTHONPATH": str(self.root)}
        proc = subprocess.run(argv, cwd=self.root, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == status, e2e.describe(proc)
        return proc

    def dry(self, scenarios: str = e2e.SCENARIOS) -> dict[str, Any]:
        """phase -> (would run, of, reasons); "judge" -> loads that would be judged again."""
        out: dict[str, Any] = {}
        phase = None
        for line in self.run("--dry-run", scenarios=scenarios).stdout.splitlines():
            m = re.match(r"judge: (\d+) cached loads would be judged again", line)
            if m:
                out["judge"] = int(m.group(1))
                continue
            m = re.match(r"(save|load): (\d+) of (\d+) cells would run", line)
            if m:
                phase = m.group(1)
                out[phase] = (int(m.group(2)), int(m.group(3)), Counter())
                continue
            m = re.match(r"\s+(\d+)\s+(.+)$", line)
            if m and phase:
                out[phase][2][m.group(2)] += int(m.group(1))
        return out

    def edit(self, old: str, new: str) -> None:
        text = self.pristine
        assert text.count(old) == 1, old
        self.worker.write_text(text.replace(old, new))

    def restore(self) -> None:
        self.worker.write_text(self.pristine)

    def keys(self) -> dict[str, tuple[str, str, str]]:
        """cell id -> (key, record_type, format) of every record in the store."""
        return {r["cell_id"]: (r["key"], r["record_type"], r.get("format") or "")
                for r in e2e.records_by_id(self.store).values()}


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory, envs_dir: Path) -> Copy:
    root = e2e.checkout_copy(tmp_path_factory.mktemp("recompute") / "repo")
    c = Copy(root, root.parent / "store", envs_dir)
    c.run()
    return c


def test_a_harness_only_edit_recomputes_nothing(copy: Copy) -> None:
    before = copy.keys()
    baseline = copy.dry()
    assert baseline["save"][0] == baseline["load"][0] == 0, baseline
    # The heartbeat's staleness, the watchdog's re-fire and the serve loop: harness only.
    copy.edit("HEARTBEAT_STALE_S = 120.0", "HEARTBEAT_STALE_S = 121.0")
    text = copy.worker.read_text().replace("    REFIRE_S = 0.5 ", "    REFIRE_S = 0.25 ")
    copy.worker.write_text(text.replace('    faulthandler.enable()\n', '    faulthandler.enable()\n    _ = 0\n', 1))
    try:
        found = copy.dry()
        assert (found["save"][0], found["load"][0]) == (0, 0), found
        assert found["save"][1] == baseline["save"][1] and found["load"][1] == baseline["load"][1]
        proc = copy.run()
        assert re.search(r"matrix: 0 cells run", proc.stdout), proc.stdout
        assert copy.keys() == before
        # No key changed, but the code did: a sample of the cache hits was re-run, and held.
        assert re.search(r"matrix: \d+ cache hits re-run to verify the cache: each reproduced", proc.stdout), \
            proc.stdout
        again = copy.run("-v")
        assert "[verify] no cache hits re-checked: the runner's code is the one that verified" in again.stdout
        assert "re-run to verify" not in again.stdout
    finally:
        copy.restore()


def test_a_stale_cache_is_caught_by_the_sampled_recheck(copy: Copy) -> None:
    """A harness edit no key covers that does change outcomes (every load now fails): the
    cache says ok, the sampled re-run says load_error, the run stops with one error line,
    exit 4, and no record changes."""
    before = copy.keys()
    records = {p: p.read_bytes() for p in (copy.store / "records").rglob("*.json") if p.parent.name != "env"}
    copy.edit('    return guarded_cell(load_cell, fw, cell, seed, "load", "load_error")\n',
              '    return guarded_cell(_stale, fw, cell, seed, "load", "load_error")\n\n\n'
              'def _stale(fw, cell, ctx, seed):\n    raise RuntimeError("a harness bug")\n')
    try:
        assert copy.dry()["load"][0] == 0  # no key sees it
        proc = copy.run(status=4)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("runner: error: verify: "), proc.stderr
        assert "recorded ok" in lines[0] and "a fresh run gives load_error" in lines[0], lines[0]
        assert "its key covers" in lines[0] and "worker:load" in lines[0], lines[0]
        assert copy.keys() == before
        assert {p: p.read_bytes() for p in (copy.store / "records").rglob("*.json")
                if p.parent.name != "env"} == records
    finally:
        copy.restore()


def test_an_h5_load_edit_recomputes_only_h5_loads(copy: Copy) -> None:
    before = copy.keys()
    copy.edit("def _load_h5(fw, path, saved, opts):\n",
              "def _load_h5(fw, path, saved, opts):\n    path = str(path)\n")
    try:
        found = copy.dry()
        assert found["save"][0] == 0, found
        assert set(found["load"][2]) == {"changed: worker:load.h5"}, found
        h5_table_loads = sum(1 for cid, (_k, kind, fmt) in before.items()
                             if kind == "load" and fmt == "h5" and cid.endswith(":default"))
        assert found["load"][0] == h5_table_loads > 0, (found, h5_table_loads)
        copy.run()
        after = copy.keys()
        rewritten = {cid for cid in after if after[cid][0] != before.get(cid, ("",))[0]}
        h5_loads = {cid for cid, (_k, kind, fmt) in before.items() if kind == "load" and fmt == "h5"}
        assert rewritten == h5_loads, sorted(rewritten ^ h5_loads)
    finally:
        copy.restore()
        copy.run()  # back to the pristine worker's records for the next test


def observed_loads(copy: Copy, prefix: str = "", table_only: bool = True) -> int:
    """Load records holding observations (a dry run predicts the table's cells, whose
    variants are the scenarios' own: "default" for the fakes; a run re-judges remedy cells too)."""
    return sum(1 for r in e2e.records_by_id(copy.store).values()
               if r["record_type"] == "load" and r.get("observed") and r["cell_id"].startswith(prefix)
               and (not table_only or r["variant"] == "default"))


def test_a_comparison_edit_runs_nothing_and_rejudges_every_observed_load(copy: Copy) -> None:
    judge_py = copy.root / "runner" / "judge.py"
    pristine = judge_py.read_text()
    assert pristine.count("    worst = 0.0\n") == 1
    judge_py.write_text(pristine.replace("    worst = 0.0\n", "    worst = 0.0 + 0.0\n"))
    try:
        found = copy.dry()
        assert (found["save"][0], found["load"][0]) == (0, 0), found
        assert found["judge"] == observed_loads(copy) > 0, found
        proc = copy.run()
        assert re.search(r"matrix: 0 cells run", proc.stdout), proc.stdout
        assert f"matrix: {observed_loads(copy, table_only=False)} cached loads judged again" in proc.stdout, \
            proc.stdout
        assert copy.dry()["judge"] == 0  # judged with today's code now
    finally:
        judge_py.write_text(pristine)
        copy.run()


def test_a_new_scenario_recomputes_its_row_only(copy: Copy) -> None:
    scenarios = copy.root / "scenarios"
    shutil.copy2(scenarios / "mlp.py", scenarios / "mlp_twin.py")
    try:
        found = copy.dry(scenarios=e2e.SCENARIOS + ",mlp_twin")
        baseline = copy.dry()
        # Its saves (2 stacks x 5 formats) have no record; its loads wait on those saves.
        assert found["save"][2] == Counter({"no record yet": found["save"][1] - baseline["save"][1]}), found
        assert set(found["load"][2]) == {"its save runs (the artifact may change)"}, found
        assert found["save"][1] - baseline["save"][1] == 2 * 5
    finally:
        (scenarios / "mlp_twin.py").unlink()


def test_a_tolerance_edit_recomputes_that_scenarios_loads(copy: Copy) -> None:
    path = copy.root / "scenarios" / "mlp.py"
    pristine = path.read_text()
    path.write_text(pristine.replace("ATOL = 1e-6", "ATOL = 2e-6"))
    try:
        found = copy.dry()
        # The saver never reads ATOL, and a load only observes: its records are judged again.
        assert (found["save"][0], found["load"][0]) == (0, 0), found
        assert found["judge"] == observed_loads(copy, "mlp:") > 0, found
    finally:
        path.write_text(pristine)


def _store_files(copy: Copy) -> dict[Path, int]:
    """Records, artifacts, logs: every store file but the lock and the derived record index
    (a cache a reader may refresh; see runner/records.py RecordIndex)."""
    return {p: p.stat().st_mtime_ns for p in copy.store.rglob("*") if p.is_file()
            and p.name != ".running.lock" and not p.name.startswith(".records-index.sqlite")}


def test_dry_run_writes_nothing(copy: Copy) -> None:
    files = _store_files(copy)
    copy.edit("def _load_h5(fw, path, saved, opts):\n",
              "def _load_h5(fw, path, saved, opts):\n    path = str(path)\n")
    try:
        assert copy.dry()["load"][0] > 0
    finally:
        copy.restore()
    assert _store_files(copy) == files
