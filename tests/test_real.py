"""Real tier: the matrix over real TensorFlow/Keras stacks.

Three stacks of the default catalog: ``tf2.15`` (Keras 2 era TF), ``tf2.18`` (Keras 3
era TF) and ``keras3.15-jax`` (standalone Keras 3, no TF). Each test store is a
temporary directory; the stack venvs are shared through ``$COMPAT_ENVS_DIR`` (default
``<repo>/.matrix/envs``) and built from the one uv cache, so a warm machine pays
seconds, not downloads.

Run: ``nox -s tests -- -m real`` (or ``pytest -m real``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import gate
from runner.records import Outcome, Record, Store

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parent.parent
STACKS = "tf2.15,tf2.18,keras3.15-jax"
SELECTION = ("--scenarios", "dense,functional,custom_layer", "--formats", "h5,savedmodel,keras")
ENVS_DIR = os.environ.get("COMPAT_ENVS_DIR") or str(REPO / ".matrix" / "envs")


def _runner(*args: str, store: Path, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR}
    proc = subprocess.run([sys.executable, "-m", "runner", *args, "--store", str(store)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(f"runner {args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """results.csv.gz's rows; its first line is the header row (pd.read_csv reads it as it is)."""
    body = gzip.decompress(path.read_bytes()).decode("utf-8")
    assert body.startswith("cell_id,"), body[:200]
    return list(csv.DictReader(io.StringIO(body)))


def _records(store: Path) -> dict[str, Record]:
    out = {}
    for rec in Store(store).iter_records():
        assert rec.cell_id not in out, f"duplicate record for {rec.cell_id}"
        out[rec.cell_id] = rec
    return out


@pytest.fixture(scope="module")
def matrix_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("real-matrix")
    _runner("matrix", "--stacks", STACKS, *SELECTION, "--no-report", store=store)
    return store


def test_every_cell_recorded_with_installed_versions(matrix_store: Path) -> None:
    recs = _records(matrix_store)
    saves = [r for r in recs.values() if r.record_type == "save"]
    assert len(saves) == 3 * 3 * 3  # stacks x scenarios x formats
    envs = {r.stack: r for r in recs.values() if r.record_type == "env"}
    assert {s: e.outcome for s, e in envs.items()} == dict.fromkeys(STACKS.split(","), Outcome.OK)
    assert envs["tf2.15"].env["tensorflow"] == "2.15.1"
    assert envs["tf2.15"].env["keras"].startswith("2.15")
    assert envs["tf2.18"].env["keras"] == "3.6.0"
    assert envs["keras3.15-jax"].env["backend"] == "jax"
    assert envs["keras3.15-jax"].env["tensorflow"] is None
    for r in recs.values():
        if r.record_type == "load":
            assert r.env["keras"] and r.saver_env["keras"], r.cell_id
            assert r.outcome is not Outcome.PROTOCOL_ERROR, r.cell_id


def test_same_stack_round_trips_match(matrix_store: Path) -> None:
    recs = _records(matrix_store)
    checked = 0
    for r in recs.values():
        if r.record_type == "load" and r.saver == r.loader and r.scenario in ("dense", "functional"):
            assert r.outcome is Outcome.OK, (r.cell_id, r.error)
            assert r.max_abs_diff is not None and r.max_abs_diff <= 1e-5, r.cell_id
            checked += 1
    # tf2.15: 3 formats; Keras 3 stacks: h5 + keras (no legacy SavedModel) -> 2 scenarios x 7
    assert checked == 2 * (3 + 2 + 2)


def test_keras2_savedmodel_fails_in_keras3(matrix_store: Path) -> None:
    recs = _records(matrix_store)
    for loader in ("tf2.18", "keras3.15-jax"):
        r = recs[f"dense:savedmodel:tf2.15->{loader}:default"]
        assert r.outcome is Outcome.LOAD_ERROR
        assert r.phase == "load"
        assert r.error and r.error.type == "builtins.ValueError"
        assert "File format not supported" in r.error.message
    # ...and Keras 3 cannot write it at all: not_applicable, not an error.
    assert recs["dense:savedmodel:tf2.18"].outcome is Outcome.NOT_APPLICABLE
    assert recs["dense:savedmodel:keras3.15-jax"].outcome is Outcome.NOT_APPLICABLE


def test_custom_layer_needs_custom_objects(matrix_store: Path) -> None:
    recs = _records(matrix_store)
    for stack in STACKS.split(","):
        default = recs[f"custom_layer:h5:{stack}->{stack}:default"]
        assert default.outcome is Outcome.LOAD_ERROR, default.cell_id
        assert default.error and "ScaleShift" in default.error.message
        fixed = recs[f"custom_layer:h5:{stack}->{stack}:custom_objects"]
        assert fixed.outcome is Outcome.OK, (fixed.cell_id, fixed.error)
        assert fixed.max_abs_diff is not None and fixed.max_abs_diff <= 1e-5


def test_keras_format_is_sniffed(matrix_store: Path) -> None:
    recs = _records(matrix_store)
    for stack in STACKS.split(","):
        assert recs[f"dense:keras:{stack}"].details["written_as"] == "keras_v3"
    assert recs["dense:h5:tf2.15"].details["written_as"] == "h5"


def test_second_run_is_cached(matrix_store: Path) -> None:
    proc = _runner("matrix", "--stacks", STACKS, *SELECTION, "--no-report", store=matrix_store)
    assert " 0 cells run," in proc.stdout, proc.stdout[-2000:]


def test_report_from_real_records(matrix_store: Path, tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    _runner("report", "--out", str(tmp_path), store=matrix_store)
    md = (tmp_path / "grids" / "custom_layer.md").read_text()
    assert "## `custom_layer` · `h5` · load variant `custom_objects`" in md
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
            assert str(matrix_store) not in text, path
    cells = _csv_rows(tmp_path / "results.csv.gz")
    assert len(cells) == len({c["cell_id"] for c in cells})
    assert len(gate.load_results(tmp_path / gate.RESULTS_JSON)) == len(cells)


def test_batched_equals_isolated(matrix_store: Path, tmp_path: Path) -> None:
    """A cell's outcome in a batch equals its outcome alone in a fresh process."""
    sub = ["--scenarios", "custom_layer,dense", "--formats", "h5,keras"]
    batched = _records(matrix_store)
    iso_store = tmp_path / "iso"
    # Reuse the batched run's saves (records + artifacts: same keys, so they are cache
    # hits) so that only the load phase runs, one process per cell.
    shutil.copytree(matrix_store / "records" / "save", iso_store / "records" / "save")
    shutil.copytree(matrix_store / "artifacts", iso_store / "artifacts")
    _runner("matrix", "--stacks", "tf2.15,keras3.15-jax", *sub, "--isolate", "--no-report",
            store=iso_store)
    isolated = {k: v for k, v in _records(iso_store).items()
                if v.record_type == "load" and v.variant in ("default", "custom_objects")}
    assert len(isolated) == 24  # 2 savers x 2 formats x (custom_layer x 2 variants + dense) x 2 loaders
    for cid, rec in isolated.items():
        assert batched[cid].outcome is rec.outcome, cid
        assert (batched[cid].error.type if batched[cid].error else None) == \
            (rec.error.type if rec.error else None), cid


def test_kill_and_resume(tmp_path: Path) -> None:
    """SIGKILL the runner mid-load; the rerun completes only the missing cells, once each."""
    store = tmp_path / "killed"
    args = ["matrix", "--stacks", "tf2.15,keras3.15-jax", "--scenarios", "dense,custom_layer",
            "--formats", "h5,savedmodel,keras", "--no-report"]
    env = {**os.environ, "COMPAT_ENVS_DIR": ENVS_DIR}
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args, "--store", str(store)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load_dir = store / "records" / "load"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if load_dir.is_dir() and len(list(load_dir.rglob("*.json"))) >= 3:
            break
        if proc.poll() is not None:
            pytest.fail("the runner finished before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(load_dir.rglob("*.json")))
    time.sleep(0.5)  # the worker dies with its parent (PR_SET_PDEATHSIG)
    orphans = subprocess.run(["pgrep", "-f", f"worker.py load {store}"], capture_output=True, text=True,
                             check=False)
    assert orphans.stdout.strip() == "", "a worker outlived the killed runner"

    rerun = _runner(*args, store=store)
    recs = _records(store)  # raises on a duplicate or corrupt record
    loads = [r for r in recs.values() if r.record_type == "load"]
    table = [r for r in loads if r.variant in ("default", "custom_objects")]
    # 2 savers x [dense: 3 fmts (tf2.15) / 2 (keras3) + custom_layer: same x 2 variants] x 2 loaders
    assert len(table) == (3 + 2) * 3 * 2
    assert len(loads) > len(table)  # remedy re-runs (tfsm, compile_false, ...) are cells too
    assert not list(store.rglob("*.tmp")), "a temp file was left behind"
    ran = int(re.search(r"^matrix: (\d+) cells run", rerun.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert ran == len(loads) - done_before, rerun.stdout[-1500:]


def test_broken_stacks_do_not_stop_the_others(tmp_path: Path) -> None:
    """Unresolvable pins and a missing interpreter become env_unavailable rows."""
    catalog = tmp_path / "stacks.toml"
    catalog.write_text('''
[[stack]]
id = "keras3.15-jax"
python = "3.11"
requirements = ["keras==3.15.1", "jax[cpu]"]
why = { "jax[cpu]" = "backend" }
env = { KERAS_BACKEND = "jax" }
keras_module = "keras"

[[stack]]
id = "broken-pins"
python = "3.11"
requirements = ["tensorflow-cpu==0.0.1"]

[[stack]]
id = "no-python"
python = "3.99"
requirements = ["keras==3.15.1"]
''')
    store = tmp_path / "store"
    proc = _runner("matrix", "--catalog", str(catalog), "--scenarios", "dense", "--formats", "h5",
                   "--out", str(tmp_path / "reports"), store=store)
    assert "UNAVAILABLE" in proc.stdout
    recs = _records(store)
    assert recs["env:broken-pins"].outcome is Outcome.ENV_UNAVAILABLE
    assert recs["env:broken-pins"].error and "tensorflow-cpu==0.0.1" in recs["env:broken-pins"].error.message
    assert recs["env:no-python"].outcome is Outcome.ENV_UNAVAILABLE
    assert recs["env:no-python"].error and "no Python 3.99" in recs["env:no-python"].error.message
    assert recs["dense:h5:keras3.15-jax->keras3.15-jax:default"].outcome is Outcome.OK
    assert recs["dense:h5:keras3.15-jax->broken-pins:default"].outcome is Outcome.ENV_UNAVAILABLE
    csv = gzip.decompress((tmp_path / "reports" / "results.csv.gz").read_bytes()).decode()
    assert "dense:h5:broken-pins->keras3.15-jax:default" in csv  # the saver side shows too


# ----------------------------------------------------------- scenario library, formats

LIBRARY_STACKS = "tf2.15,tf2.18,keras3.15-jax"
# The first 17 scenarios; the issue-15 ones round-trip in tests/test_real_scenarios.py, on a
# cheaper selection (their SavedModel/export saves take up to 20 s each).
LIBRARY_SCENARIOS = ("cnn,conv_transpose_depthwise,custom_layer,custom_layer_unregistered,custom_loss_metric,"
                     "dense,dropout_layernorm,embedding,functional,lambda_layer,mixed_precision,multi_io,"
                     "nested_model,rnn,same_type_layers,subclassed_model,trained_adam")
# Same-stack round trips that fail for a documented Keras reason, not a scenario bug.
KNOWN_SAME_STACK = {
    ("subclassed_model", "tf2.15", "h5"): "save_error",  # Keras 2: HDF5 needs Functional/Sequential
    ("lambda_layer", "keras3.15-jax", "keras"): "load_error",  # Keras 3 safe_mode refuses lambdas
    ("lambda_layer", "tf2.18", "keras"): "load_error",
}


@pytest.fixture(scope="module")
def library_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("real-library")
    _runner("matrix", "--stacks", LIBRARY_STACKS, "--scenarios", LIBRARY_SCENARIOS,
            "--formats", "h5,keras,json+weights,export", "--no-report", store=store)
    return store


def test_every_scenario_round_trips_in_keras2_and_keras3(library_store: Path) -> None:
    recs = _records(library_store)
    scenarios = sorted({r.scenario for r in recs.values() if r.scenario})
    assert len(scenarios) >= 14
    for stack, fmt in (("tf2.15", "h5"), ("keras3.15-jax", "keras"), ("tf2.18", "keras")):
        for sc in scenarios:
            save = recs[f"{sc}:{fmt}:{stack}"]
            variant = "custom_objects" if f"{sc}:{fmt}:{stack}->{stack}:custom_objects" in recs else "default"
            load = recs.get(f"{sc}:{fmt}:{stack}->{stack}:{variant}")
            outcome = (load or save).outcome.value
            expected = KNOWN_SAME_STACK.get((sc, stack, fmt), "ok")
            assert outcome == expected, (sc, stack, fmt, (load or save).error)


def test_json_weights_and_export_formats(library_store: Path) -> None:
    recs = _records(library_store)
    for stack in LIBRARY_STACKS.split(","):
        assert recs[f"dense:json+weights:{stack}->{stack}:default"].outcome is Outcome.OK
    for stack in ("tf2.15", "tf2.18"):  # tf.saved_model.load / TFSMLayer
        assert recs[f"multi_io:export:{stack}->{stack}:default"].outcome is Outcome.OK
    assert recs["dense:export:tf2.15->tf2.18:default"].outcome is Outcome.OK
    # No TensorFlow, no SavedModel: neither written nor read, and that is not an error.
    assert recs["dense:export:keras3.15-jax"].outcome is Outcome.NOT_APPLICABLE
    assert recs["dense:export:tf2.15->keras3.15-jax:default"].outcome is Outcome.NOT_APPLICABLE


def test_optimizer_state_survival_is_checked(library_store: Path) -> None:
    recs = _records(library_store)
    assert recs["trained_adam:h5:tf2.15->tf2.15:default"].outcome is Outcome.OK
    assert recs["trained_adam:keras:keras3.15-jax->keras3.15-jax:default"].outcome is Outcome.OK
    # Keras 2 json+weights rebuilds an uncompiled model: predictions match, state is gone —
    # two facts: the predictions' own Δ, and a training verdict (not a prediction mismatch).
    lost = recs["trained_adam:json+weights:tf2.15->tf2.15:default"]
    assert lost.outcome is Outcome.TRAINING_MISMATCH
    assert lost.details["prediction"] == "match" and lost.details["training"] == "state_lost", lost.details
    assert "optimizer" in lost.details["training_reason"]
    assert lost.max_abs_diff is not None and lost.max_abs_diff <= 1e-5  # the predictions', never the step's
    # Keras 3 cannot reload its own compiled HDF5 when the loss is the string "mse".
    mse = recs["trained_adam:h5:tf2.18->tf2.18:default"]
    assert mse.outcome is Outcome.LOAD_ERROR and mse.error and "mse" in mse.error.message


# ----------------------------------------------------------------- diagnosis, remedies


def test_remedies_are_rerun_and_verified(matrix_store: Path, tmp_path: Path) -> None:
    """Failing loads get a category, and each remedy the category names is re-run for real."""
    pytest.importorskip("pandas")
    recs = _records(matrix_store)
    # Keras 3 refuses a Keras 2 SavedModel; reading it for inference (TFSMLayer) works.
    assert recs["dense:savedmodel:tf2.15->tf2.18:default"].outcome is Outcome.LOAD_ERROR
    tfsm = recs["dense:savedmodel:tf2.15->tf2.18:tfsm"]
    assert tfsm.outcome is Outcome.OK, tfsm.error
    assert tfsm.max_abs_diff is not None and tfsm.max_abs_diff <= 1e-5
    # No TensorFlow in the jax stack: the remedy cannot exist there (not an error).
    assert recs["dense:savedmodel:tf2.15->keras3.15-jax:tfsm"].outcome is Outcome.NOT_APPLICABLE
    _runner("report", "--out", str(tmp_path), store=matrix_store)
    errors = (tmp_path / "errors.md").read_text()
    assert "## `keras3_rejects_savedmodel`" in errors and "tfsm: fixed" in errors
    assert "## `custom_object_unknown`" in errors and "custom_objects: fixed" in errors
    cells = {c["cell_id"]: c for c in _csv_rows(tmp_path / "results.csv.gz")}
    cell = cells["custom_layer:h5:tf2.15->keras3.15-jax:default"]
    assert cell["category"] == "custom_object_unknown"
    assert "fixed by custom_objects (verified)" in cell["remedy"]
    assert cells["dense:savedmodel:tf2.15->tf2.18:tfsm"]["source"] == "remedy"
    from runner.report import FIXED_MARK

    assert FIXED_MARK in (tmp_path / "grids" / "custom_layer.md").read_text()  # fixed by a verified remedy
    out = _runner("explain", "custom_layer:h5:tf2.15->keras3.15-jax:default", store=matrix_store).stdout
    assert "category    custom_object_unknown" in out and "fixed by custom_objects (verified)" in out


def test_generated_repro_reproduces_the_recorded_outcome(matrix_store: Path, tmp_path: Path) -> None:
    """`repro` writes a standalone script pair; run for real it gives the recorded outcome."""
    from runner.stacks import find_python

    cid = "custom_layer:keras:tf2.18->keras3.15-jax:default"
    rec = _records(matrix_store)[cid]
    out = tmp_path / "repro"
    _runner("repro", cid, "--out", str(out), store=matrix_store)
    env = {**os.environ, "PY_SAVER": find_python("3.12") or "", "PY_LOADER": find_python("3.11") or ""}
    proc = subprocess.run(["bash", str(out / "setup.sh")], cwd=out, env=env, capture_output=True,
                          text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    # the save's OUTCOME line, then the load's: the last one is the reproduced cell
    assert [ln for ln in lines if ln.startswith("OUTCOME: ")][-1] == f"OUTCOME: {rec.outcome.value}", \
        proc.stdout[-3000:]
    # the reproduction says whether it runs the recorded run's code (here: it does)
    assert "same worker and scenario code as the recorded run (digests match)" in proc.stdout
    if rec.error:
        assert rec.error.type.rsplit(".", 1)[-1] in proc.stdout


def test_a_deleted_h5py_is_rebuilt_not_published(tmp_path: Path) -> None:
    """Issue 23: with h5py/ deleted from tf2.15's venv (dist-info kept) a run published
    4 save_error + 3 load_error ImportError rows with exit 0, served from the cache after the
    venv was repaired. Now the run's file check finds the damage before any cell, rebuilds
    the venv once (uv cache), and the table is the clean one, without --fresh."""
    sel = ("matrix", "--stacks", "tf2.15", "--scenarios", "dense", "--formats", "h5,keras")
    clean = _runner(*sel, "--out", str(tmp_path / "clean-out"), store=tmp_path / "clean")
    assert clean.returncode == 0
    table = {(r["cell_id"], r["outcome"]) for r in gate.results_rows(
        json.loads(gate.read_results_text(tmp_path / "clean-out" / gate.RESULTS_JSON)))}
    assert any(outcome == "ok" for _, outcome in table)
    (h5py,) = [p for p in Path(ENVS_DIR).glob("py3*/lib/python*/site-packages/h5py")
               if (p.parent / "tensorflow").is_dir() and list(p.parent.glob("tensorflow*-2.15.*.dist-info"))]
    shutil.rmtree(h5py)
    damaged = _runner(*sel, "--out", str(tmp_path / "out"), store=tmp_path / "store")
    assert damaged.returncode == 0
    got = {(r["cell_id"], r["outcome"]) for r in gate.results_rows(
        json.loads(gate.read_results_text(tmp_path / "out" / gate.RESULTS_JSON)))}
    assert got == table
    assert "ImportError" not in (tmp_path / "out" / "errors.md").read_text()
    assert h5py.is_dir()
