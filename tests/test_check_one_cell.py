"""A ``check`` cell is a load cell of the matrix (issue 24 item 5): one key scheme, one
reuse-or-rerun decision, one remedy planner, one comparison, and the host calls no
function of the worker files (it asks the check worker's ``inspect`` process instead).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runner import cells, check, components, diagnose, judge, keys, matrix, scenario_catalog
from runner._worker import check_worker
from runner._worker import worker as _w
from runner.records import ErrorInfo, Outcome, Record
from runner.stacks import Stack

REPO = Path(__file__).resolve().parent.parent
HOST_CHECK = REPO / "runner" / "check.py"


# ------------------------------------------------------------ no worker code on the host


def worker_imports(source: str) -> list[str]:
    """Where ``source`` imports, or loads by path, anything of ``runner/_worker`` (empty
    when it does not)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if "_worker" in a.name]
        elif isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if "_worker" in (node.module or "") or "_worker" in names:
                found.append(f"line {node.lineno}: from {node.module} import {', '.join(names)}")
        elif isinstance(node, ast.Attribute) and node.attr in ("spec_from_file_location", "import_module",
                                                               "run_path"):
            found.append(f"line {node.lineno}: {node.attr}")
        elif isinstance(node, ast.Name) and node.id in ("__import__",):
            found.append(f"line {node.lineno}: __import__")
    return found


def test_the_host_check_imports_nothing_of_the_worker_files() -> None:
    assert worker_imports(HOST_CHECK.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("snippet", [
    "from runner._worker import worker as _w\n",  # what check.py did before
    "from runner._worker import check_worker as _cw\n",
    "from runner._worker import graph_scan, pbwire\n",
    "import runner._worker.config_scan\n",
    "from runner import _worker\n",
    "import importlib.util\nspec = importlib.util.spec_from_file_location('w', 'runner/_worker/worker.py')\n",
])
def test_the_import_checker_can_fail(snippet: str) -> None:
    assert worker_imports(snippet), snippet


def test_the_host_runs_no_worker_function_in_its_own_process(tmp_path: Path) -> None:
    """In a fresh host process, inspecting a file reads its provenance and architecture
    (the positive path) with the worker's sniff_artifact poisoned, and the check worker,
    config scan and graph scan are never imported: the reading ran in ``inspect``."""
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 3]}}]}}))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.9.9", "date_saved": "2026-01-02"}))
    code = f"""
import sys
from pathlib import Path
from runner import check
import runner._worker.worker as w
def poisoned(*a, **k):
    raise AssertionError("the host called the worker's sniff_artifact")
w.sniff_artifact = poisoned
m = check.inspect_model(Path({str(model)!r}))
print(m.format, m.provenance.get("keras_version"), check.input_shapes(m.config))
print(sorted(n for n in sys.modules if n.startswith("runner._worker")))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    first, loaded = proc.stdout.splitlines()
    assert first == "keras 3.9.9 [[None, 3]]"
    # The worker's constants (the shared vocabulary: cells, execute) and the wire reader
    # of safefs (reading control files) only; no parser of the user's file.
    assert set(eval(loaded)) <= {"runner._worker", "runner._worker.worker", "runner._worker.pbwire"}, loaded


def test_inspect_answers_a_bad_config_and_the_host_words_it(tmp_path: Path) -> None:
    deep = tmp_path / "deep.keras"
    with zipfile.ZipFile(deep, "w") as zf:
        zf.writestr("config.json", '{"class_name": "Sequential", "config": ' + "[" * 5000 + "]" * 5000 + "}")
    answer = check.inspect_op("stored_config", path=str(deep), format="keras")
    assert answer["error"]["type"] == "bad_config" and "deeper than 200" in answer["error"]["message"]
    with pytest.raises(check.CheckInputError, match=r"its stored config cannot be read safely: .*deeper than 200"):
        check.inspect_model(deep)


def test_inspect_applies_the_stacks_input_rule() -> None:
    signature = [{"name": "a", "shape": [None, 3]}]
    assert check.inspect_op("check_shapes", shapes=[[4, 3]], signature=signature) == {}
    answer = check.inspect_op("check_shapes", shapes=[[4, 5]], signature=signature)
    assert answer["error"]["message"] == "x0 has shape (4, 5), the model's input a expects (None, 3)"
    np = pytest.importorskip("numpy")
    with pytest.raises(check_worker.BadInputs, match=r"^x0 has shape \(4, 5\), the model's input a expects"):
        check_worker.check_inputs([np.zeros((4, 5))], signature)  # the same words in a stack


def test_a_reader_that_dies_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "check_worker.py"
    broken.write_text("import sys\nsys.stderr.write('MemoryError\\n')\nsys.exit(1)\n")
    monkeypatch.setattr(check, "CHECK_WORKER_PATH", broken)
    with pytest.raises(check.CheckInputError, match=r"its reader failed \(exit 1\): MemoryError"):
        check.inspect_op("sniff", path=str(tmp_path))


def test_the_refusal_error_type_is_the_check_workers() -> None:
    assert check.REFUSED == cells.REFUSED == check_worker.REFUSED
    assert cells.MODEL_FILES == _w.MODEL_FILES and cells.DEFAULT_SEED == _w.DEFAULT_SEED


# --------------------------------------------------------------------- one key scheme


FORMATS = ("h5", "keras", "savedmodel", "json+weights", "export")


@pytest.mark.parametrize("variant", ["default", "compile_false", "custom_objects+unsafe", "tfsm"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_check_key_is_a_load_key_of_the_file_plus_checks_own_parts(fmt: str, variant: str) -> None:
    _, load = keys.load_key("a" * 64, "env-fp", "scenario-sha", fmt, variant)
    key, parts = cells.check_key("a" * 64, "env-fp", fmt, variant, custom_objects="c" * 64, inputs="",
                                 seed=1234, sandbox=False)
    assert key == keys.key_of("check", parts)
    for name in ("artifact", "env", "format", "variant"):
        assert parts[name] == load[name], name
    # The format's reader and the variant's steps: the same definitions, the same digests.
    shared = [p for p in load if p.startswith(("worker:load.", "worker:variant."))]
    assert shared and all(parts.get(p) == load[p] for p in shared), shared
    flags = set() if variant == "default" else set(variant.split("+"))
    # Every check reports the stack's safe mode (check_worker.has_safe_mode): the safe-mode
    # helpers of the unsafe component are in every check key, its step only with the flag.
    assert {p for p in parts if p.startswith("worker:variant.")} == {f"worker:variant.{f}"
                                                                      for f in flags | {"unsafe"}}
    step = components.check_parts(fmt, "unsafe")["worker:variant.unsafe"]
    assert (parts["worker:variant.unsafe"] == step) == ("unsafe" in flags)
    own = "worker:load.inference" if fmt == "export" else f"worker:load.{fmt}"
    others = {f"worker:load.{f}" for f in FORMATS if f != fmt} - {own, "worker:load.inference"}
    assert own in parts and not others & set(parts), sorted(parts)
    assert "worker:harness" not in parts
    assert {p for p in parts if p.startswith("check:")} == {f"check:{n}" for n in components.CHECK_FILES}
    assert ("custom_objects" in parts) == ("custom_objects" in flags)
    assert parts["sandbox"] == "no" and parts["seed"] == "1234"


def _edited_worker(tmp_path: Path, old: str, new: str) -> Path:
    source = components.WORKER_PATH.read_text(encoding="utf-8")
    assert old in source, old
    path = tmp_path / "worker.py"
    path.write_text(source.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "changed"), [
    ("def _load_h5(fw, path, saved, opts):\n", "def _load_h5(fw, path, saved, opts):\n    path = str(path)\n",
     {("h5", "default"), ("h5", "compile_false")}),
    ("def _variant_compile_false(", "def _variant_compile_false(*_a, **_k):\n    pass\n\n\ndef _unused(",
     {(f, "compile_false") for f in FORMATS}),
    ("def _usage(", "def _usage_new():\n    return 1\n\n\ndef _usage(", set()),  # the harness
])
def test_a_worker_edit_changes_the_check_keys_of_the_cells_that_run_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, changed: set[tuple[str, str]]) -> None:
    cells_ = [(f, v) for f in FORMATS for v in ("default", "compile_false")]
    before = {c: components.check_parts(*c) for c in cells_}
    monkeypatch.setattr(components, "WORKER_PATH", _edited_worker(tmp_path, old, new))
    after = {c: components.check_parts(*c) for c in cells_}
    assert {c for c in cells_ if before[c] != after[c]} == changed


def test_the_lock_names_a_check_file_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    copy = tmp_path / "_worker"
    shutil.copytree(components.WORKER_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(components, "WORKER_DIR", copy)
    monkeypatch.setattr(components, "check_file_parts",
                        lambda folder=copy, f=components.check_file_parts: f(folder))
    out = io.StringIO()
    assert components.cmd_components(argparse.Namespace(check=True, write=False), out) == 0, out.getvalue()
    scan = copy / "config_scan.py"
    scan.write_text(scan.read_text().replace('"Lambda"', '"Lambda2"', 1))
    assert components.cmd_components(argparse.Namespace(check=True, write=False), out) == 1
    assert "changed since components.lock.json: check:config_scan.py;" in out.getvalue(), out.getvalue()


def test_check_roots_are_the_check_workers_own_names() -> None:
    roots = set(components._check_worker_roots())
    used = {n.attr for n in ast.walk(ast.parse(components.CHECK_WORKER_PATH.read_text()))
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "W"}
    assert roots == used - {"serve"}
    assert "sniff_artifact" in roots  # inspect sniffs with the worker's own code: in check keys


# ------------------------------------------------------------------- one decision


def _record(outcome: Outcome, key: str, parts: dict[str, str], **details: object) -> Record:
    return Record(record_type="load", cell_id="m:keras:model->tf2.15:default", stack="tf2.15", outcome=outcome,
                  key=key, saver="model", loader="tf2.15", scenario="m", format="keras", variant="default",
                  key_parts=parts, details=dict(details))


def test_check_and_matrix_decide_by_the_one_function() -> None:
    assert check.why_rerun is cells.why_rerun and matrix.why_rerun is cells.why_rerun
    for module in (check, matrix):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))  # type: ignore[arg-type]
        assert not [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                    and n.name in ("why_rerun", "reusable", "held_at_full_limit")], module.__name__


@pytest.mark.parametrize(("outcome", "product", "why"), [
    (Outcome.OK, "", None),
    (Outcome.OK, "outputs gone", "outputs gone"),  # a check's outputs, a save's artifact
    (Outcome.LOAD_ERROR, "outputs gone", None),  # a failure has no product to lose
    (Outcome.CRASH, "", "crash is retried"),
])
def test_the_product_of_an_ok_record_is_part_of_the_decision(outcome: Outcome, product: str,
                                                             why: str | None) -> None:
    key, parts = cells.check_key("a" * 64, "env", "keras", "default", custom_objects="", inputs="", seed=1,
                                 sandbox=False)
    old = _record(outcome, key, parts)
    assert cells.why_rerun(old, key, parts, 30.0, product=lambda rec: product) == why
    _, other = cells.check_key("b" * 64, "env", "keras", "default", custom_objects="", inputs="", seed=1,
                               sandbox=True)
    assert cells.why_rerun(old, keys.key_of("check", other), other, 30.0) == "changed: artifact, sandbox"


# ----------------------------------------------------------- one comparison, one planner


@pytest.mark.parametrize("shift", [0.0, 1e-6, 0.25])
def test_check_and_matrix_judge_the_same_observations_alike(shift: float) -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.RandomState(0)
    ref = [rng.uniform(-1, 1, size=(4, 3)).astype("float32"), rng.uniform(-1, 1, size=(4, 2)).astype("float32")]
    got = [ref[0] + np.float32(shift), ref[1].copy()]
    atol, rtol = 1e-4, 1e-4
    encoded = _w._encode_arrays(np, got)
    matrix_verdict = judge.judge_load({"outcome": judge.OBSERVED, "details": {judge.OBSERVED: {"outputs": encoded}}},
                                      {"outputs": ref}, "keras", "default", atol, rtol)
    check_verdict = check.compare(got, ref, atol, rtol)
    assert (matrix_verdict["outcome"] == "ok") == check_verdict.ok == (shift < 1e-4)
    assert matrix_verdict["max_abs_diff"] == pytest.approx(check_verdict.abs)


def _stack(sid: str, **kw: str) -> Stack:
    return Stack(id=sid, python="3.11", requirements=(f"x=={sid}",), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "message"), [
    ("savedmodel", "File format not supported: filepath=/x/savedmodel. Keras 3 only supports V3 `.keras` files "
                   "and legacy H5 format files"),
    ("h5", "Unknown layer: 'ScaleShift'. Please ensure you are using a `keras.utils.custom_object_scope`"),
    ("h5", "Unknown optimizer: Custom>Adam"),
    ("keras", "Requested the deserialization of a Lambda layer whose `function` is a Python lambda. "
              "Deserializing it is unsafe."),
])
@pytest.mark.parametrize("unsafe", [False, True])
def test_check_plans_the_remedies_the_matrix_plans(tmp_path: Path, fmt: str, message: str, unsafe: bool) -> None:
    catalog = [_stack("tf2.15"), _stack("tf2.16"), _stack("tf2.16-tfkeras", sibling_of="tf2.16", remedy="tf_keras")]
    failed = Record(record_type="load", cell_id=f"m:{fmt}:model->tf2.16:default", stack="tf2.16",
                    outcome=Outcome.LOAD_ERROR, saver="model", loader="tf2.16", scenario="m", format=fmt,
                    variant="default", phase="load", error=ErrorInfo("builtins.ValueError", message),
                    env={"keras": "3.0.5", "backend": "tensorflow"}, saver_env={"keras": "2.15.0"})
    sc_path = tmp_path / "m.py"
    sc_path.write_text("def build(keras):\n    return None\n\n\ndef inputs(np):\n    return None\n\n\n"
                       "def custom_objects(keras):\n    return {}\n")
    planned = matrix.remedy_cells(failed, scenario_catalog.read_scenario(sc_path), catalog)
    run = object.__new__(check._Check)
    run.opt = check.Options(model=tmp_path / "m", custom_objects=sc_path, unsafe=unsafe)
    run.siblings = diagnose.sibling_map(catalog)
    notes: list[str] = []
    mine = run.remedies(failed, diagnose.diagnose(failed), notes)
    assert planned, "a failure with remedies"
    matrix_cells = [(stack, cell[3]) for stack, cell in planned]
    allowed = [c for c in matrix_cells if unsafe or "unsafe" not in c[1].split("+")]
    assert [(stack, variant) for _, stack, variant in mine] == allowed
    assert len([n for n in notes if "pass --unsafe" in n]) == len(matrix_cells) - len(allowed)  # each is said
    if "Lambda" in message:  # the policy's case: the matrix verifies safe_mode=False, check only with --unsafe
        assert matrix_cells == [("tf2.16", "unsafe")] and len(allowed) == int(unsafe)


def test_a_check_record_is_a_load_record(tmp_path: Path) -> None:
    """What a check cell writes is the matrix's record of a load (its schema, its id)."""
    key, parts = cells.check_key("a" * 64, "env", "keras", "default", custom_objects="", inputs="", seed=1,
                                 sandbox=False)
    rec = cells.record_from_result("load", {"cell_id": "m:keras:model->tf2.15:default", "outcome": "ok"},
                                   key=key, stack="tf2.15", saver="model", scenario="m", scenario_sha256="a" * 64,
                                   fmt="keras", loader="tf2.15", variant="default", key_parts=parts, limit_s=30.0)
    assert dataclasses.asdict(rec)["record_type"] == "load" and rec.key_parts == parts
    assert cells.parse_load_cell_id(rec.cell_id) == ("m", "keras", "model", "tf2.15", "default")


def test_the_host_learns_a_savedmodels_graph_ops_and_damage_from_inspect(tmp_path: Path) -> None:
    """The graph scan runs in ``inspect``; its findings come back to the host's refusal: none
    for a clean graph (the twin), the op named for a file-reading one, one error line for an
    empty saved_model.pb."""
    from test_graph_scan import call_fn, node, tf2_model

    def savedmodel(name: str, pb: bytes) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(pb)
        return tmp_path / name

    clean = check.inspect_model(savedmodel("clean", tf2_model()))
    assert clean.format == "export" and clean.graph_ops == ""
    evil = check.inspect_model(savedmodel("evil", tf2_model(call=call_fn(node("evil", "ReadFile", "x")))))
    assert evil.format == "export" and "ReadFile" in evil.graph_ops, evil.graph_ops
    with pytest.raises(check.CheckInputError, match=r"is damaged: saved_model.pb is empty$"):
        check.inspect_model(savedmodel("empty", b""))
