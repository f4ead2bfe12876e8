"""explain / repro on a small store of records (fast tier: no TensorFlow)."""

from __future__ import annotations

import dataclasses
import hashlib
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import components, execute, explain
from runner.codehash import code_digest
from runner.keys import worker_digest
from runner.records import ErrorInfo, Outcome, Record, Store, load_cell_id, save_cell_id
from runner.scenario_catalog import read_scenario
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


def _store(root: Path, *, remedy: Outcome | None = Outcome.OK, worker: str = "", scenario: str = "",
           save_digests: tuple[str, str] | None = None) -> Store:
    """``worker``/``scenario``: the load records' digests; the save record's are the same
    unless ``save_digests`` gives (worker, scenario)."""
    store = Store(root)
    save_worker, save_scenario = save_digests or (worker, scenario)
    for stack, env, reqs, mod in (("tf2.15", ENV_SAVER, ["tensorflow-cpu==2.15.*"], "auto"),
                                  ("keras3.15-jax", ENV_LOADER, ["keras==3.15.1", "jax[cpu]"], "keras")):
        store.write(Record(record_type="env", cell_id=f"env:{stack}", stack=stack, outcome=Outcome.OK,
                           env=env, details={"requirements": reqs, "keras_module": mod}))
    store.write(Record(record_type="save", cell_id=save_cell_id("custom_layer_unregistered", "h5", "tf2.15"),
                       stack="tf2.15", outcome=Outcome.OK, saver="tf2.15", scenario="custom_layer_unregistered",
                       format="h5", env=ENV_SAVER, details={"written_as": "h5"},
                       worker_sha256=save_worker, scenario_sha256=save_scenario))
    common = {"record_type": "load", "stack": "keras3.15-jax", "saver": "tf2.15", "loader": "keras3.15-jax",
              "scenario": "custom_layer_unregistered", "format": "h5", "env": ENV_LOADER,
              "saver_env": ENV_SAVER, "worker_sha256": worker, "scenario_sha256": scenario}
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
    assert sorted(p.name for p in files) == ["README.md", "compat_judge.py", "compat_worker.py", "repro.py",
                                            "scenario.py", "setup.sh"]
    setup = (out / "setup.sh").read_text()
    # exact pins of what the record saw, the catalog's ranges replaced by them
    assert "tensorflow-cpu==2.15.1" in setup and "tensorflow-cpu==2.15.*" not in setup
    assert "'jax[cpu]==0.10.2'" in setup and "jaxlib==0.10.2" in setup and "keras==3.15.1" in setup
    assert "run_side \"$LOADER_IMAGE\" env-loader load KERAS_BACKEND=jax" in setup
    assert "PY_SAVER=\"${PY_SAVER:-$(pick_python " in setup and " 3.11)}\"" in setup
    py_compile.compile(str(out / "repro.py"), doraise=True)
    repro = (out / "repro.py").read_text()
    assert "'save': 'auto'" in repro and "'load': 'keras'" in repro
    assert "keras.models.load_model('model.h5')" in repro
    assert str(tmp_path) not in setup + repro  # nothing of this machine
    assert (out / "compat_worker.py").read_bytes() == (REPO / "runner/_worker/worker.py").read_bytes()
    # the worker observes; the repro judges a load as the matrix's host does, with its code
    assert (out / "compat_judge.py").read_bytes() == (REPO / "runner/judge.py").read_bytes()
    assert "compat_judge.judge_load(result, compat_judge.reference_of(" in repro
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


def _stand_in_uv(bin_dir: Path, log: Path) -> None:
    """A uv on PATH that logs its arguments and makes a venv whose python does nothing."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "uv").write_text(
        "#!/usr/bin/env bash\n"
        f"echo \"$*\" >> {log}\n"
        "if [ \"$1\" = venv ]; then d=\"${@: -1}\"; mkdir -p \"$d/bin\"; "
        "printf '#!/bin/sh\\nexit 0\\n' > \"$d/bin/python\"; chmod +x \"$d/bin/python\"; fi\n")
    (bin_dir / "uv").chmod(0o755)


def test_repro_setup_uses_the_interpreters_the_runner_found(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine whose python3.11 on PATH is a pyenv shim that does not resolve: the runner
    found a real interpreter elsewhere, and setup.sh hands that one to uv (a bare
    "python3.11" makes uv try to download CPython). $PY_SAVER / $PY_LOADER still win, and
    a found path that is gone (the folder copied to another machine) falls back to PATH."""
    found = tmp_path / "pythons"
    found.mkdir()
    interpreters = {}
    for version in ("3.11",):
        exe = found / f"real-python{version}"
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
        interpreters[version] = str(exe)
    asked: list[str] = []
    monkeypatch.setattr(explain, "find_python", lambda v: asked.append(v) or interpreters.get(v))
    store = _store(tmp_path / "s")
    out = tmp_path / "repro"
    explain.write_repro(store, explain.find_cell(store, CID), out)
    assert asked == ["3.11", "3.11"]  # the saver's and the loader's Python (both 3.11 here)
    setup = (out / "setup.sh").read_text()
    assert f"$(pick_python {interpreters['3.11']} 3.11)" in setup
    assert f"#   loader: {interpreters['3.11']} (else python3.11)" in setup
    bin_dir, log = tmp_path / "bin", tmp_path / "uv.log"
    _stand_in_uv(bin_dir, log)
    shim = bin_dir / "python3.11"  # pyenv's shim when no version is selected
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.11: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}

    def venvs(extra: dict[str, str]) -> list[str]:
        for d in ("env-saver", "env-loader"):
            shutil.rmtree(out / d, ignore_errors=True)
        log.unlink(missing_ok=True)
        res = subprocess.run(["bash", str(out / "setup.sh")], env={**env, **extra}, capture_output=True,
                             text=True, check=False)
        assert res.returncode == 0, res.stderr
        return [ln for ln in log.read_text().splitlines() if ln.startswith("venv ")]

    assert venvs({}) == [f"venv -q -p {interpreters['3.11']} env-saver",
                         f"venv -q -p {interpreters['3.11']} env-loader"]
    assert venvs({"PY_SAVER": "/opt/py/bin/python3.11", "PY_LOADER": "/opt/other/python3.11"}) == [
        "venv -q -p /opt/py/bin/python3.11 env-saver", "venv -q -p /opt/other/python3.11 env-loader"]
    shutil.rmtree(found)
    assert venvs({}) == ["venv -q -p python3.11 env-saver", "venv -q -p python3.11 env-loader"]


def test_repro_setup_without_a_found_interpreter_asks_path(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explain, "find_python", lambda v: None)
    store = _store(tmp_path / "s")
    out = tmp_path / "repro"
    explain.write_repro(store, explain.find_cell(store, CID), out)
    setup = (out / "setup.sh").read_text()
    assert "PY_SAVER=\"${PY_SAVER:-$(pick_python '' 3.11)}\"" in setup
    assert "#   saver: not found (else python3.11)" in setup


# ------------------------------------------------------------------ code identity (repro honesty)

SCENARIO_FILE = REPO / "scenarios" / "custom_layer_unregistered.py"
SAME = "same worker and scenario code as the recorded run (digests match)"


def _scenarios(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    """A scenario directory holding today's custom_layer_unregistered.py, optionally edited."""
    d = tmp_path / "scenarios"
    d.mkdir(parents=True)
    text = SCENARIO_FILE.read_text(encoding="utf-8")
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1])
    (d / SCENARIO_FILE.name).write_text(text, encoding="utf-8")
    return d


def _digests() -> tuple[str, str]:
    return code_digest(execute.WORKER_PATH), read_scenario(SCENARIO_FILE).sha256


def _repro(store: Store, out: Path, scenario_dir: Path,
           capsys: pytest.CaptureFixture[str]) -> tuple[str, str, str]:
    """(stdout, setup.sh, repro.py) of a reproduction written into ``out``."""
    explain.write_repro(store, explain.find_cell(store, CID), out, scenario_dir=scenario_dir)
    return capsys.readouterr().out, (out / "setup.sh").read_text(), (out / "repro.py").read_text()


def test_repro_and_explain_say_same_code_when_digests_match(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worker, scenario = _digests()
    store = _store(tmp_path / "s", worker=worker, scenario=scenario)
    sdir = _scenarios(tmp_path)
    stdout, setup, repro = _repro(store, tmp_path / "r", sdir, capsys)
    for side in ("save in tf2.15", "load in keras3.15-jax"):
        assert f"repro: code: {side}: {SAME}" in stdout
        assert f"  echo 'code: {side}: {SAME}'" in setup
        assert f"    {side}: {SAME}" in repro
    assert setup.count("\ncode_note\n") == 2  # echoed before the environments and after OUTCOME
    assert "exact code" not in setup + repro + (tmp_path / "r" / "README.md").read_text()
    assert "DIFFERENT" not in stdout + setup + repro
    py_compile.compile(str(tmp_path / "r" / "repro.py"), doraise=True)
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog(), scenario_dir=sdir)
    assert f"\ncode        {SAME}\n" in text


def test_repro_says_different_code_when_the_scenario_behaves_differently(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worker, scenario = _digests()
    store = _store(tmp_path / "s", worker=worker, scenario=scenario)
    sdir = _scenarios(tmp_path, ("offset=0.25", "offset=0.5"))
    now = read_scenario(sdir / SCENARIO_FILE.name).sha256
    assert now != scenario
    stdout, setup, repro = _repro(store, tmp_path / "r", sdir, capsys)
    different = (f"DIFFERENT code: scenario changed since the record (recorded {scenario[:12]}, "
                 f"now {now[:12]}) — the outcome may differ")
    expected = f"same worker code as the recorded run (digest matches); {different}"
    for side in ("save in tf2.15", "load in keras3.15-jax"):
        assert f"repro: code: {side}: {expected}" in stdout
        assert f"  echo 'code: {side}: {expected}'" in setup
        assert f"    {side}: {expected}" in repro
    assert SAME not in stdout + setup + repro
    assert f"- code, load in keras3.15-jax: {expected}" in (tmp_path / "r" / "README.md").read_text()
    # the copy is the edited file: what the statement describes is what runs
    assert (tmp_path / "r" / "scenario.py").read_text() == (sdir / SCENARIO_FILE.name).read_text()
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog(), scenario_dir=sdir)
    assert f"\ncode        {expected}\n" in text


def test_a_changed_worker_is_named_as_the_worker(tmp_path: Path) -> None:
    _, scenario = _digests()
    store = _store(tmp_path / "s", worker="ab" * 32, scenario=scenario)
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog(),
                                scenario_dir=_scenarios(tmp_path))
    assert (f"DIFFERENT code: worker changed since the record (recorded abababababab, now "
            f"{code_digest(execute.WORKER_PATH)[:12]}) — the outcome may differ; same scenario code as the "
            "recorded run (digest matches)") in text


def _component_era(store: Store) -> None:
    """Rewrite the store's save/load records as the matrix now writes them: keyed by parts,
    the worker digest over the components each cell runs, the load's artifact part the
    save's artifact digest."""
    for path in sorted(store.records_dir.rglob("*.json")):
        rec = store.read(path)
        assert rec is not None
        if rec.record_type == "env":
            continue
        parts = components.cell_parts(rec.record_type, rec.format or "", rec.variant or "default")
        details = dict(rec.details, artifact_sha256="cd" * 32) if rec.record_type == "save" else rec.details
        if rec.record_type == "load":
            parts = {**parts, "artifact": "cd" * 32}
        store.write(dataclasses.replace(rec, key_parts=parts, worker_sha256=worker_digest(parts),
                                        details=details))


def test_per_component_records_name_only_the_side_whose_components_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, scenario = _digests()
    store = _store(tmp_path / "s", scenario=scenario)
    _component_era(store)
    sdir = _scenarios(tmp_path)
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog(), scenario_dir=sdir)
    assert f"\ncode        {SAME}\n" in text
    # An edit of the h5 reader: the load's code changed, the save's did not.
    edited = tmp_path / "worker.py"
    edited.write_text(components.WORKER_PATH.read_text().replace(
        "def _load_h5(fw, path, saved, opts):\n", "def _load_h5(fw, path, saved, opts):\n    path = str(path)\n"))
    monkeypatch.setattr(components, "WORKER_PATH", edited)
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog(), scenario_dir=sdir)
    line = next(t for t in text.splitlines() if t.startswith("code "))
    assert f"save in tf2.15: {SAME}" in line, line
    assert "load in keras3.15-jax: DIFFERENT code: worker changed since the record" in line, line
    assert "re-run after this load" not in text
    # A save re-run into other bytes after the load is said (the load read other bytes).
    save = store.read(store.save_record_path("tf2.15", "custom_layer_unregistered", "h5"))
    assert save is not None
    store.write(dataclasses.replace(save, details=dict(save.details, artifact_sha256="ef" * 32)))
    assert "re-run after this load" in explain.explain_text(store, explain.find_cell(store, CID), load_catalog(),
                                                            scenario_dir=sdir)


def test_a_comment_only_change_is_still_the_same_code(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    worker, scenario = _digests()
    store = _store(tmp_path / "s", worker=worker, scenario=scenario)
    sdir = _scenarios(tmp_path, ("def build(keras):\n", "# a comment, and a docstring\n"
                                 "def build(keras):\n    \"\"\"Build it.\"\"\"\n"))
    assert (sdir / SCENARIO_FILE.name).read_bytes() != SCENARIO_FILE.read_bytes()
    stdout, setup, repro = _repro(store, tmp_path / "r", sdir, capsys)
    assert f"repro: code: load in keras3.15-jax: {SAME}" in stdout
    assert f"echo 'code: save in tf2.15: {SAME}'" in setup and SAME in repro
    assert "DIFFERENT" not in stdout + setup + repro


def test_the_save_side_is_compared_with_the_save_record(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    worker, scenario = _digests()
    store = _store(tmp_path / "s", worker=worker, scenario=scenario, save_digests=(worker, "cd" * 32))
    stdout, _, _ = _repro(store, tmp_path / "r", _scenarios(tmp_path), capsys)
    assert f"repro: code: load in keras3.15-jax: {SAME}\n" in stdout
    save_line = next(ln for ln in stdout.splitlines() if ln.startswith("repro: code: save in tf2.15: "))
    assert "DIFFERENT code: scenario changed since the record (recorded cdcdcdcdcdcd" in save_line
    assert "the save was re-run after this load" in save_line
    # no save record at all: cannot tell, never "same"
    store.save_record_path("tf2.15", "custom_layer_unregistered", "h5").unlink()
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog(),
                                scenario_dir=_scenarios(tmp_path / "x"))
    line = next(ln for ln in text.splitlines() if ln.startswith("code "))
    assert "save in tf2.15: cannot tell" in line and "no save record for" in line
    assert f"load in keras3.15-jax: {SAME}" in line


def test_old_records_with_byte_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Cache protocol 1 stored sha256 of the files' bytes: identical bytes prove the same
    code; different bytes cannot tell whether behaviour changed (never "DIFFERENT" or "same")."""
    raw_worker = hashlib.sha256(execute.WORKER_PATH.read_bytes()).hexdigest()
    raw_scenario = hashlib.sha256(SCENARIO_FILE.read_bytes()).hexdigest()
    store = _store(tmp_path / "a", worker=raw_worker, scenario=raw_scenario)
    stdout, setup, repro = _repro(store, tmp_path / "ra", _scenarios(tmp_path / "a"), capsys)
    same = "same worker and scenario code as the recorded run (digests match; sha256 of the bytes"
    assert f"repro: code: load in keras3.15-jax: {same}" in stdout
    assert same in setup and same in repro and "DIFFERENT" not in stdout
    # the scenario's bytes changed (a comment): the worker's bytes prove an old record, so
    # the scenario is "cannot tell", not "DIFFERENT"
    store = _store(tmp_path / "b", worker=raw_worker, scenario=raw_scenario)
    sdir = _scenarios(tmp_path / "b", ("def build(keras):\n", "# note\ndef build(keras):\n"))
    stdout, setup, repro = _repro(store, tmp_path / "rb", sdir, capsys)
    unknown = (f"cannot tell whether the scenario changed since the record: the record holds a sha256 "
               f"of its bytes (from before behaviour digests; recorded {raw_scenario[:12]}) and today's "
               "bytes differ — the outcome may differ")
    assert "repro: code: load in keras3.15-jax: same worker code as the recorded run (sha256 of its bytes" \
        in stdout
    assert unknown in stdout and unknown in setup and unknown in repro
    assert "DIFFERENT" not in stdout + setup + repro and SAME not in stdout


def test_records_without_digests_cannot_tell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(tmp_path / "s")
    stdout, setup, repro = _repro(store, tmp_path / "r", _scenarios(tmp_path), capsys)
    assert "repro: code: load in keras3.15-jax: cannot tell whether the worker or the scenario changed" in stdout
    assert "record holds no digests" in setup and "record holds no digests" in repro
    assert "same" not in stdout.replace("the same", "")


def test_cli_repro_prints_the_code_comparison(tmp_path: Path) -> None:
    worker, scenario = _digests()
    store = _store(tmp_path / "s", worker=worker, scenario=scenario)
    res = _cli("repro", CID, "--store", store.root, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert f"repro: code: load in keras3.15-jax: {SAME}" in res.stdout
    res = _cli("explain", CID, "--store", store.root)
    assert f"code        {SAME}" in res.stdout


def test_repro_runs_a_docker_side_in_its_recorded_base_image(tmp_path: Path) -> None:
    """A side the matrix ran in the docker runtime: setup.sh builds its venv in a container
    of the recorded base image (with network) and runs the save/load there with --network
    none; the host-venv side stays on the host. A stand-in ``docker`` logs its arguments."""
    store = _store(tmp_path / "s")
    rec = explain.find_cell(store, CID)
    docker_env = {**ENV_SAVER, "runtime": "docker", "docker_base": "python:3.11-slim-bookworm",
                  "docker_base_id": "sha256:b45e", "docker_image": "compat-matrix/stack:py3.11-0123"}
    rec = dataclasses.replace(rec, saver_env=docker_env)
    out = tmp_path / "repro"
    explain.write_repro(store, rec, out)
    setup = (out / "setup.sh").read_text()
    assert "saver: docker base python:3.11-slim-bookworm (id sha256:b45e)" in setup
    assert "loader: a host venv in the recorded run" in setup
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    stub = "#!/usr/bin/env bash\necho \"$(basename \"$0\") $*\" >> " + str(log) + "\n"
    make_venv = ("if [ \"$1\" = venv ]; then d=\"${@: -1}\"; mkdir -p \"$d/bin\"; "
                 "printf '#!/bin/sh\\necho python \"$@\" >> " + str(log) + "\\n' > \"$d/bin/python\"; "
                 "chmod +x \"$d/bin/python\"; fi\n")
    (bin_dir / "uv").write_text(stub + make_venv)
    (bin_dir / "docker").write_text(stub + "case \"$*\" in *'python -m venv'*) mkdir -p env-saver/bin; "
                                    "printf '#!/bin/sh\\n' > env-saver/bin/python; "
                                    "chmod +x env-saver/bin/python;; esac\n")
    for tool in ("uv", "docker"):
        (bin_dir / tool).chmod(0o755)
    res = subprocess.run(["bash", str(out / "setup.sh")], cwd=out, capture_output=True, text=True, check=False,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    docker = [c for c in calls if c.startswith("docker ")]
    assert len(docker) == 2, calls
    assert "--network bridge" in docker[0] and "python:3.11-slim-bookworm" in docker[0]
    assert "tensorflow-cpu==2.15.1" in docker[0]
    assert "--network none" in docker[1] and docker[1].endswith("env-saver/bin/python -I repro.py save")
    assert any(c.startswith("uv pip install") and "keras==3.15.1" in c for c in calls)
    assert any(c.startswith("python -I repro.py load") for c in calls)  # the loader: a host venv
    # SAVER_IMAGE= (empty) keeps that side on the host as well
    shutil.rmtree(out / "env-saver")
    log.unlink()
    res = subprocess.run(["bash", str(out / "setup.sh")], cwd=out, capture_output=True, text=True, check=False,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "SAVER_IMAGE": ""})
    assert res.returncode == 0, res.stderr
    assert not [c for c in log.read_text().splitlines() if c.startswith("docker ")]


def test_explain_tells_the_two_facts_of_a_trained_load(tmp_path: Path) -> None:
    """Predictions and resumed training are two facts: explain shows each with its own Δ."""
    store = _store(tmp_path / "s", remedy=None)
    rec = explain.find_cell(store, CID)
    store.write(dataclasses.replace(rec, outcome=Outcome.TRAINING_MISMATCH, error=None, phase="train",
                                    max_abs_diff=1e-7, details={
                                        "prediction": "match", "training": "state_lost", "training_diff": 0.031,
                                        "training_reason": "the optimizer's step count is 1, expected 2"}))
    text = explain.explain_text(store, explain.find_cell(store, CID), load_catalog())
    assert "predictions match (max |diff| 1e-07)" in text
    assert "training    state_lost (max |diff| 0.031): the optimizer's step count is 1, expected 2" in text


# ------------------------------------------------------------------- upgrade verdict


def _row(scenario: str, variant: str, outcome: str, *, remedy: str = "", category: str = "",
         source: str = "load", loader: str = "k3") -> dict[str, str]:
    return {"saver": "tf2", "format": "h5", "loader": loader, "scenario": scenario, "variant": variant,
            "outcome": outcome, "remedy": remedy, "category": category, "source": source}


def test_the_upgrade_verdict_counts_each_scenario_once_the_documented_way() -> None:
    rows = [_row("dense", "default", "ok"),
            _row("custom", "default", "load_error", category="custom_object_unknown",
                 remedy="fixed by custom_objects (verified)"),
            _row("custom", "custom_objects", "ok"),
            _row("adam", "default", "load_error", category="compile_config",
                 remedy="fixed by compile_false (verified)"),
            _row("legacy", "default", "load_error", category="x", remedy="fixed by tf_keras in tf2-tfkeras (verified)"),
            _row("rnn", "default", "load_error", category="config_key_removed",
                 remedy="compile_false tried, still fails (load_error, x)"),
            _row("sub", "default", "save_error", source="save"),
            _row("export_only", "default", "not_applicable", source="save"),
            _row("dense", "default", "load_error", loader="other")]
    lines = explain.upgrade_verdict(rows, "tf2", "h5", "k3")
    assert lines[0] == ("tf2 h5 → k3: 2 of 6 scenarios load and match; +2 with a verified fix "
                        "(compile=False ×1, tf_keras (TF_USE_LEGACY_KERAS=1) ×1); 2 fail")
    assert "  load and match: custom, dense" in lines
    assert "  fail: rnn (config_key_removed), sub (its h5 save fails in tf2)" in lines
    assert "  not counted: export_only (cannot exist as h5)" in lines
    # the load without the classes is beside, never in the counts
    assert lines[-1].endswith("custom load_error")
    with pytest.raises(explain.CellError, match="no cell saved by tf9 as h5 and loaded in k3"):
        explain.upgrade_verdict(rows, "tf9", "h5", "k3")


def test_cli_explain_gives_the_published_verdict_or_one_error_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runner", "explain", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120, check=False)

    proc = run("--from", "tf2.15", "--format", "h5", "--to", "keras3.15-jax")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("tf2.15 h5 → keras3.15-jax: ") and " scenarios load and match" in first, first
    for args in (("--from", "tf2.15", "--to", "keras3.15-jax"), ("cell-id", "--from", "tf2.15"),
                 ("--from", "tf2.15", "--format", "h5", "--to", "keras3.15-jax", "--results", str(tmp_path / "no"))):
        bad = run(*args)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("runner: error: explain: "), bad.stderr
