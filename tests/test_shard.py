"""--shard K/N: the shards partition each phase's plan, the same way in every shard."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from runner import cli, matrix, scenario_catalog
from runner.records import Outcome, Record, Store, load_cell_id
from runner.stacks import load_catalog


def _runner(store: Store, shard: tuple[int, int] | None) -> matrix._Runner:
    catalog = load_catalog()
    stacks = [s for s in catalog if s.id in ("tf2.15", "tf2.18", "keras3.15-jax")]
    sc = scenario_catalog
    scenarios = sc.select_scenarios(sc.discover_scenarios(), ["dense", "custom_layer", "rnn"])
    return matrix._Runner(stacks, stacks, scenarios, scenario_catalog.FORMATS, store,
                          matrix.Options(shard=shard), io.StringIO(), lambda s, st: None)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_every_phase(tmp_path: Path, n: int) -> None:
    store = Store(tmp_path / "s")
    for plan_name in ("save_plan", "load_plan"):
        parts = []
        for k in range(1, n + 1):
            r = _runner(store, (k, n))
            plan = getattr(r, plan_name)()
            r.plan_shard(plan)
            parts.append({cid for cid, _ in plan if r._mine(cid)})
        everything = {cid for cid, _ in plan}
        assert set().union(*parts) == everything
        assert sum(len(p) for p in parts) == len(everything)  # disjoint
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1  # no durations: counts balance


def test_recorded_durations_balance_the_shards(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    plan = _runner(store, None).load_plan()
    slow = {cid for cid, _ in plan if ":tf2.18->" in cid or cid.endswith("tf2.18:default")}
    for cid, _path in plan:  # every cell ran before: tf2.18's loads took 10x longer
        scenario, fmt, rest = cid.split(":", 2)
        saver, rest = rest.split("->")
        loader, variant = rest.split(":")
        assert cid == load_cell_id(scenario, fmt, saver, loader, variant)
        store.write(Record(record_type="load", cell_id=cid, stack=loader, outcome=Outcome.OK, saver=saver,
                           loader=loader, scenario=scenario, format=fmt, variant=variant,
                           duration_s=10.0 if cid in slow else 1.0))
    loads = []
    for k in (1, 2):
        r = _runner(store, (k, 2))
        r.plan_shard(plan)
        mine = [cid for cid, _ in plan if r._mine(cid)]
        loads.append(sum(10.0 if c in slow else 1.0 for c in mine))
    assert abs(loads[0] - loads[1]) <= 10.0  # within one slow cell of each other


@pytest.mark.parametrize("bad", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_bad_shard_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["matrix", "--shard", bad, "--store", "/nonexistent-never-created"])
    assert info.value.code == 2
    assert "--shard" in capsys.readouterr().err


@pytest.mark.faults  # end-to-end: real runner processes, fake Keras
def test_shards_merged_equal_one_machine(tmp_path: Path, fake_envs_dir: Path) -> None:
    import shutil
    import subprocess
    import sys

    import e2e

    catalog = e2e.write_catalog(tmp_path / "catalog.toml")
    env = e2e.runner_env(fake_envs_dir)

    def runner(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "runner", *args], cwd=e2e.REPO, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, e2e.describe(proc)
        return proc.stdout

    sel = ("--catalog", str(catalog), "--scenario-dir", str(e2e.FAKE_SCENARIOS))
    merged = tmp_path / "merged"
    for phase in ("save", "load"):
        parts = []
        for k in (1, 2, 3):
            part = tmp_path / f"{phase}-{k}"
            if merged.exists():  # every shard starts from the same store: the merged saves
                shutil.copytree(merged, part, ignore=shutil.ignore_patterns("runs", ".running.lock"))
            runner(phase, *sel, "--shard", f"{k}/3", "--store", str(part))
            parts.append(str(part))
        runner("merge", *parts, "--store", str(merged), "--catalog", str(catalog))
    runner("report", "--catalog", str(catalog), "--scenario-dir", str(e2e.FAKE_SCENARIOS), "--store",
           str(merged), "--out", str(tmp_path / "sharded"))
    runner("matrix", *sel, "--store", str(tmp_path / "one"), "--out", str(tmp_path / "one-out"))
    sharded, one = e2e.report_files(tmp_path / "sharded"), e2e.report_files(tmp_path / "one-out")
    assert sorted(sharded) == sorted(one) and "results.json.gz" in one
    for name, data in one.items():
        assert sharded[name] == data, name
    # an unsharded run on the merged store (what bisects a sharded table) reuses every cell
    # the shards recorded: it computes none, and its report is the same table
    again = runner("matrix", *sel, "--store", str(merged), "--out", str(tmp_path / "again"))
    assert "matrix: 0 cells run" in again, again
    assert e2e.report_files(tmp_path / "again")["results.json.gz"] == one["results.json.gz"]
