"""``bench/matrix_bench.py``: --breakdown sums a store's in-cell time by kind; --split-merge
cuts a store into the workflow's parts and merges them back."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from runner.records import Outcome, Record, Store, load_cell_id, save_cell_id

BENCH = Path(__file__).resolve().parent.parent / "bench" / "matrix_bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("matrix_bench", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load(variant: str, outcome: Outcome, secs: float, loader: str = "tf2.15") -> Record:
    return Record(record_type="load", cell_id=load_cell_id("dense", "h5", "tf2.4", loader, variant),
                  stack=loader, outcome=outcome, saver="tf2.4", loader=loader, scenario="dense",
                  format="h5", variant=variant, phase="load", duration_s=secs)


def test_breakdown_sums_in_cell_time_by_kind_and_divides_by_cores(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write(Record(record_type="save", cell_id=save_cell_id("dense", "h5", "tf2.4"), stack="tf2.4",
                       outcome=Outcome.OK, saver="tf2.4", scenario="dense", format="h5",
                       phase="save", duration_s=60.0))
    store.write(_load("default", Outcome.OK, 30.0))
    store.write(_load("default", Outcome.TIMEOUT, 600.0, loader="tf2.18"))
    store.write(_load("compile_false", Outcome.LOAD_ERROR, 90.0))
    rows = {r[0]: r for r in _bench().breakdown(tmp_path, cores=2)}
    assert rows["saves"][1:3] == [1, "1.0"]
    assert rows["grid loads"][1:3] == [1, "0.5"]
    assert rows["grid loads, timed out"][1:3] == [1, "10.0"]
    assert rows["remedy load variants"][1:3] == [1, "1.5"]
    assert rows["all cells"][1:3] == [4, "13.0"]
    assert rows["floor on 2 cores (in-cell time / 2)"][2] == "6.5"
    assert {r[0]: r for r in _bench().breakdown(tmp_path, 2, {"cnn"})}["all cells"][1] == 0
    # --touching: a stack's rows and columns only (tf2.4 saved everything; tf2.18 loaded one cell)
    assert {r[0]: r for r in _bench().breakdown(tmp_path, 2, touching={"tf2.18"})}["all cells"][1:3] == [1, "10.0"]
    assert {r[0]: r for r in _bench().breakdown(tmp_path, 2, touching={"tf2.4"})}["all cells"][1] == 4
    assert {r[0]: r for r in _bench().breakdown(tmp_path, 2, touching={"keras3.1-jax"})}["all cells"][1] == 0


def test_workflow_projection_is_ci_workflows_from_the_records(tmp_path: Path) -> None:
    """--workflow is ci-workflow's plan on the store's records, not the store's timings.json
    (which holds only a resumed run's last sitting)."""
    from runner import ci_workflow
    from runner.stacks import load_catalog

    store = Store(tmp_path)
    store.write(_load("default", Outcome.OK, 50_000.0))
    (tmp_path / "timings.json").write_text('{"load": {"tf2.15": 2.7}}')
    lines = _bench().projected_workflow(tmp_path)
    committed = ci_workflow.read_timings(BENCH.parent.parent / ci_workflow.TIMINGS_PATH)
    timings = ci_workflow.timings_from_store(tmp_path, load_catalog(), committed)
    assert timings["stacks"]["tf2.15"]["load"] == 50_000.0
    assert lines == ci_workflow.projection_text(ci_workflow.projection(load_catalog(), timings))
    assert any("tf2.15" in line and "longest job" in line for line in lines)


@pytest.mark.faults  # end-to-end: real runner processes, fake Keras
def test_split_merge_rebuilds_the_store_and_its_report_byte_for_byte(tmp_path: Path, fake_envs_dir: Path) -> None:
    import e2e

    catalog = e2e.write_catalog(tmp_path / "catalog.toml")
    store = tmp_path / "store"
    e2e.run_matrix(catalog, store, tmp_path / "out", fake_envs_dir)
    bench = _bench()
    rows = bench.split_merge(store, tmp_path / "split", env=e2e.runner_env(fake_envs_dir),
                             catalog=catalog, scenario_dir=e2e.FAKE_SCENARIOS)
    assert [r[3] for r in rows] == ["", "records byte-identical", "", "byte-identical"]
    parts = tmp_path / "split" / "parts"
    save_part = parts / "save-fk3.5"
    assert sorted(p.name for p in (save_part / "artifacts").iterdir()) == ["fk3.5"]
    assert not (save_part / "records" / "load").exists()
    assert sorted(p.name for p in (parts / "load-fk3.5" / "records" / "load").iterdir()) == ["fk3.5"]
