"""explain / repro on a small store of records (fast tier: no TensorFlow)."""

from __future__ import annotations

import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import explain
from runner.records import ErrorInfo, Outcome, Record, Store, load_cell_id, save_cell_id
from runner.stacks import load_catalog

REPO = Path(__file__).resolve().parent.parent
ENV_SAVER = {"python": "3.11.7", "tensorflow": "2.15.1", "keras": "2.15.0", "backend": "tensorflow",
             "keras_api": "keras.api._v2.keras", "env_vars": {},
             "dists": {"tensorflow-cpu": "2.15.1", "keras": "2.15.0", "numpy": "1.26.4", "h5py": "3.11.0"}}
ENV_LOADER = {"python": "3.11.7", "tensorflow": None, "keras": "3.15.1", "backend": "jax",
              "keras_api": "keras", "env_vars": {"KERAS_BACKEND": "jax"},
              "dists": {"keras": "3.15.1", "jax": "0.10.2", "jaxlib": "0.10.2", "numpy": "2.3.5"}}
# Real message: custom_layer_unregistered.h5 saved by tf2.15, loaded by Keras 3.15 (jax).
UNKNOWN = ("Unknown layer: 'Affine'. Please ensure you are using a `keras.utils.custom_object_scope` "
           "and that this object is included in the scope. See https://www.tensorflow.org/guide/"
           "keras/save_and_serialize#registering_the_custom_object for details.")
CID = load_cell_id("custom_layer_unregistered", "h5", "tf2.15", "keras3.15-jax", "default")


def _store(root: Path, *, remedy: Outcome | None = Outcome.OK) -> Store:
    store = Store(root)
    for stack, env, reqs, mod in (("tf2.15", ENV_SAVER, ["tensorflow-cpu==2.15.*"], "auto"),
                                  ("keras3.15-jax", ENV_LOADER, ["keras==3.15.1", "jax[cpu]"], "keras")):
        store.write(Record(record_type="env", cell_id=f"env:{stack}", stack=stack, outcome=Outcome.OK,
                           env=env, details={"requirements": reqs, "keras_module": mod}))
    store.write(Record(record_type="save", cell_id=save_cell_id("custom_layer_unregistered", "h5", "tf2.15"),
                       stack="tf2.15", outcome=Outcome.OK, saver="tf2.15", scenario="custom_layer_unregistered",
                       format="h5", env=ENV_SAVER, details={"written_as": "h5"}))
    common = {"record_type": "load", "stack": "keras3.15-jax", "saver": "tf2.15", "loader": "keras3.15-jax",
              "scenario": "custom_layer_unregistered", "format": "h5", "env": ENV_LOADER,
              "saver_env": ENV_SAVER}
    store.write(Record(cell_id=CID, outcome=Outcome.LOAD_ERROR, variant="default", phase="load",
                       error=ErrorInfo("builtins.ValueError", UNKNOWN,
                                       "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                                       "ValueError: " + UNKNOWN), **common))  # type: ignore[arg-type]
    if remedy is not None:
        store.write(Record(cell_id=CID.replace(":default", ":custom_objects"), outcome=remedy,
                           variant="custom_objects", max_abs_diff=0.0, **common))  # type: ignore[arg-type]
    return store


def test_find_cell_exact_unique_ambiguous_missing(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    assert explain.find_cell(store, CID).cell_id == CID
    assert explain.find_cell(store, "h5:tf2.15->keras3.15-jax:default").cell_id == CID
    with pytest.raises(explain.CellError, match=r"^3 cells match 'custom_layer_unregistered'"):
        explain.find_cell(store, "custom_layer_unregistered")
    with pytest.raises(explain.CellError, match="no cell id contains 'nope'"):
        explain.find_cell(store, "nope")


def test_explain_tells_the_whole_story(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog())
    assert "saved by    tf2.15: python 3.11.7, tensorflow 2.15.1, keras 2.15.0" in text
    assert "loaded by   keras3.15-jax: python 3.11.7, tensorflow —, keras 3.15.1 (keras, backend jax)" in text
    assert "outcome     load_error (phase load)" in text
    assert "error       builtins.ValueError: Unknown layer: 'Affine'." in text
    assert "category    custom_object_unknown: Custom class or function unknown to the loader" in text
    assert "custom_objects={'Name': Class}" in text  # the explanation
    assert "fixed by custom_objects (verified)" in text
    assert "traceback   (tail)" in text and "ValueError: Unknown layer" in text.split("traceback")[-1]


def test_explain_says_when_a_remedy_still_fails_or_was_not_run(tmp_path: Path) -> None:
    store = _store(tmp_path / "a", remedy=Outcome.LOAD_ERROR)
    assert "custom_objects tried, still fails (load_error" in explain.explain_text(
        store, explain.find_cell(store, CID), load_catalog())
    store = _store(tmp_path / "b", remedy=None)
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog())
    assert "not run for this cell yet" in text and "fixed by" not in text


def test_repro_writes_a_standalone_reproduction(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    out = tmp_path / "repro"
    files = explain.write_repro(store, explain.find_cell(store, CID), out)
    assert sorted(p.name for p in files) == ["README.md", "compat_worker.py", "repro.py",
                                            "scenario.py", "setup.sh"]
    setup = (out / "setup.sh").read_text()
    # exact pins of what the record saw, the catalog's ranges replaced by them
    assert "tensorflow-cpu==2.15.1" in setup and "tensorflow-cpu==2.15.*" not in setup
    assert "'jax[cpu]==0.10.2'" in setup and "jaxlib==0.10.2" in setup and "keras==3.15.1" in setup
    assert "env KERAS_BACKEND=jax env-loader/bin/python -I repro.py load" in setup
    assert "PY_SAVER=\"${PY_SAVER:-python3.11}\"" in setup
    py_compile.compile(str(out / "repro.py"), doraise=True)
    repro = (out / "repro.py").read_text()
    assert "'save': 'auto'" in repro and "'load': 'keras'" in repro
    assert "keras.models.load_model('model.h5')" in repro
    assert str(tmp_path) not in setup + repro  # nothing of this machine
    assert (out / "compat_worker.py").read_bytes() == (REPO / "runner/_worker/worker.py").read_bytes()
    assert "recorded outcome: **load_error**" in (out / "README.md").read_text()
    # never overwrite a reproduction already written
    with pytest.raises(explain.CellError, match="exists and is not empty"):
        explain.write_repro(store, explain.find_cell(store, CID), out)


def test_repro_needs_a_load_cell(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    with pytest.raises(explain.CellError, match="is not a load cell"):
        explain.write_repro(store, explain.find_cell(store, "custom_layer_unregistered:h5:tf2.15"),
                            tmp_path / "r")


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_explain_and_repro(tmp_path: Path) -> None:
    store = _store(tmp_path / "s")
    res = _cli("explain", "h5:tf2.15->keras3.15-jax:default", "--store", store.root)
    assert res.returncode == 0, res.stderr
    assert "custom_object_unknown" in res.stdout
    res = _cli("repro", CID, "--store", store.root, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "setup.sh").is_file() and "setup.sh" in res.stdout


@pytest.mark.parametrize("args", [("explain", "nope"), ("repro", "nope", "--out", "x"),
                                  ("explain", "custom_layer_unregistered")])
def test_cli_bad_cell_is_one_line_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    store = _store(tmp_path / "s")
    res = _cli(*args, "--store", store.root)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "x").exists()


def test_repro_setup_carries_pip_index_settings_to_uv(tmp_path: Path) -> None:
    """setup.sh runs with a stand-in uv (logs its arguments) and stand-in interpreters."""
    store = _store(tmp_path / "s")
    out = tmp_path / "repro"
    explain.write_repro(store, explain.find_cell(store, CID), out)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "uv.log"
    fake_uv = bin_dir / "uv"
    fake_uv.write_text(
        "#!/usr/bin/env bash\n"
        f"echo \"$*\" >> {log}\n"
        "if [ \"$1\" = venv ]; then d=\"${@: -1}\"; mkdir -p \"$d/bin\"; "
        "printf '#!/bin/sh\\nexit 0\\n' > \"$d/bin/python\"; chmod +x \"$d/bin/python\"; fi\n")
    fake_uv.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PIP_FIND_LINKS": "/wheels/a /wheels/b",
           "PIP_INDEX_URL": "https://mirror.example/simple", "HOME": str(tmp_path)}
    res = subprocess.run(["bash", str(out / "setup.sh")], env=env, capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    installs = [ln for ln in log.read_text().splitlines() if ln.startswith("pip install")]
    assert len(installs) == 2
    for line in installs:
        assert "--index-url https://mirror.example/simple" in line
        assert "--find-links /wheels/a --find-links /wheels/b" in line
        assert "keras==3.15.1" in line or "tensorflow-cpu==2.15.1" in line
    # without the variables, no extra arguments (and no unbound-variable error under set -u)
    log.unlink()
    for d in ("env-saver", "env-loader"):
        shutil.rmtree(out / d)
    res = subprocess.run(["bash", str(out / "setup.sh")], env={"PATH": env["PATH"], "HOME": str(tmp_path)},
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "--find-links" not in log.read_text() and "--index-url" not in log.read_text()
