"""``python -m runner check``: bad input, format sniffing, provenance, and whole checks
driven through the real check worker with the fake framework (no TensorFlow).

Bad input must be one ``runner: error:`` line on stderr, exit status 2, and no report.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import BEHAVIOR_VAR, FAKE_SCENARIOS, FAKES, FakeStack
from test_cli import run

from runner import check, cli
from runner.envs import StackEnv
from runner.records import Store
from runner.stacks import Stack

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _h5_superblock(eof: int, size: int) -> bytes:
    """A version-0 HDF5 superblock claiming ``eof`` bytes, padded to ``size`` bytes."""
    head = HDF5_MAGIC + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + struct.pack("<HHI", 4, 16, 0)
    head += struct.pack("<QQQQ", 0, 0xFFFFFFFFFFFFFFFF, eof, 0xFFFFFFFFFFFFFFFF)
    return head + b"\0" * max(0, size - len(head))


def _npz(path: Path, **arrays: Any) -> Path:
    np = pytest.importorskip("numpy")
    np.savez(path, **{k: np.asarray(v, dtype="float32") for k, v in arrays.items()})
    return path


def _assert_usage_error(code: int, err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("runner: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------- host-side bad input


@pytest.mark.parametrize(("make", "fragments"), [
    ("missing", ["model file not found"]),
    ("garbage", ["cannot tell the model format"]),
    ("truncated_h5", ["truncated", "HDF5 superblock says 4096 bytes, the file has 1024"]),
    ("short_h5", ["truncated"]),
    ("truncated_keras", ["truncated or damaged"]),
    ("zip_not_keras", ["not a Keras v3 file"]),
    ("bad_json", ["not valid JSON"]),
    ("json_no_weights", ["pass --weights"]),
    ("empty_dir", ["not a SavedModel"]),
    ("bad_pb", ["saved_model.pb does not parse"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_model_file_is_one_line_exit_2(tmp_path: Path, make: str, fragments: list[str]) -> None:
    model = tmp_path / "model.bin"
    if make == "garbage":
        model.write_bytes(b"\x00\x01 this is not a model" * 10)
    elif make == "truncated_h5":
        model.write_bytes(_h5_superblock(eof=4096, size=1024))
    elif make == "short_h5":
        model.write_bytes(HDF5_MAGIC + b"\0\0")
    elif make in ("truncated_keras", "zip_not_keras"):
        good = tmp_path / "good.zip"
        with zipfile.ZipFile(good, "w") as zf:
            zf.writestr("config.json" if make == "truncated_keras" else "other.txt", "{}" * 500)
            zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        data = good.read_bytes()
        model.write_bytes(data[: len(data) // 2] if make == "truncated_keras" else data)
    elif make == "bad_json":
        model.write_text('{"class_name": "Sequential", "config": {')
    elif make == "json_no_weights":
        model.write_text(json.dumps({"class_name": "Sequential", "config": {}, "keras_version": "2.15.0"}))
    elif make == "empty_dir":
        model.mkdir()
    elif make == "bad_pb":
        model.mkdir()
        (model / "saved_model.pb").write_bytes(b"\x12\xff\xff\xff\x0f truncated")
    store = tmp_path / "store"
    res = run("check", model, "--stacks", "tf2.15", "--store", store, "--out", tmp_path / "out")
    _assert_usage_error(res.returncode, res.stderr, *fragments)
    assert not store.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "fragments"), [
    ("def custom_objects(keras:\n    return {}\n", ["fails to import", "SyntaxError", "line 1"]),
    ("X = 1\n", ["defines neither custom_objects(keras) nor a CUSTOM_OBJECTS dict"]),
    (None, ["custom-objects file not found"]),
], ids=["syntax_error", "defines_nothing", "missing"])
def test_bad_custom_objects_file_is_exit_2(tmp_path: Path, content: str | None, fragments: list[str]) -> None:
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
    custom = tmp_path / "my_layers.py"
    if content is not None:
        custom.write_text(content)
    res = run("check", model, "--custom-objects", custom, "--stacks", "tf2.15", "--store", tmp_path / "s")
    _assert_usage_error(res.returncode, res.stderr, *fragments)


def test_bad_inputs_file_is_exit_2(tmp_path: Path) -> None:
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
    not_npz = tmp_path / "inputs.npz"
    not_npz.write_text("hello")
    res = run("check", model, "--inputs", not_npz, "--stacks", "tf2.15", "--store", tmp_path / "s")
    _assert_usage_error(res.returncode, res.stderr, "inputs file", "not a readable .npz")
    no_x = _npz(tmp_path / "no_x.npz", a=[1.0])
    res = run("check", model, "--inputs", no_x, "--stacks", "tf2.15", "--store", tmp_path / "s")
    _assert_usage_error(res.returncode, res.stderr, "has no x0 array")


def test_unknown_stack_is_exit_2(tmp_path: Path) -> None:
    res = run("check", tmp_path / "whatever.h5", "--stacks", "tf9.99", "--store", tmp_path / "s")
    _assert_usage_error(res.returncode, res.stderr, "unknown stack 'tf9.99'")


# ----------------------------------------------------------------- host-side parts


def test_provenance_from_keras_zip_and_savedmodel(tmp_path: Path) -> None:
    model = tmp_path / "weird-name.bin"  # content decides, not the name
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2026-11-29"}))
    info = check.inspect_model(model)
    assert info.format == "keras"
    assert info.provenance["keras_version"] == "3.6.0"

    sm = tmp_path / "sm"
    sm.mkdir()
    # SavedModel{meta_graphs: MetaGraphDef{meta_info_def: MetaInfoDef{tensorflow_version: "2.15.1"}}}
    version = b"2.15.1"
    info_def = b"\x2a" + bytes([len(version)]) + version
    meta_graph = b"\x0a" + bytes([len(info_def)]) + info_def
    (sm / "saved_model.pb").write_bytes(b"\x08\x01" + b"\x12" + bytes([len(meta_graph)]) + meta_graph)
    assert check.inspect_model(sm).format == "export"
    assert check.inspect_model(sm).provenance["tensorflow_version"] == "2.15.1"
    (sm / "keras_metadata.pb").write_bytes(b'\x0a\x20{"keras_version": "2.15.0", "backend": "tensorflow"}')
    info = check.inspect_model(sm)
    assert info.format == "savedmodel"
    assert info.provenance["keras_version"] == "2.15.0"


def test_npz_reader_and_compare(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = tmp_path / "o.npz"
    np.savez(path, y0=np.arange(6, dtype="float64").reshape(2, 3), y1=np.array([np.nan, 1.0]))
    arrays = check.read_npz(path, data=True)
    assert arrays["y0"].shape == (2, 3) and list(arrays["y0"].values or []) == [0, 1, 2, 3, 4, 5]
    ref = [arrays["y0"], arrays["y1"]]
    assert check.compare(ref, ref, 1e-6, 1e-6)[:2] == (True, 0.0)
    shifted = dataclasses.replace(arrays["y0"], values=type(arrays["y0"].values)("d", [0, 1, 2, 3, 4, 5.5]))
    close, diff, reason = check.compare([shifted, arrays["y1"]], ref, 1e-6, 1e-6)
    assert not close and diff == 0.5 and "max |diff| 0.5" in reason


def test_closeness_prefers_same_major_minor() -> None:
    prov = {"keras_version": "2.15.0", "backend": "tensorflow"}
    envs = {"tf2.18": {"keras": "3.6.0"}, "tf2.15": {"keras": "2.15.0"}, "tf2.14": {"keras": "2.14.0"}}
    assert min(envs, key=lambda s: check.closeness(prov, envs[s])[:4]) == "tf2.15"
    del envs["tf2.15"]
    assert min(envs, key=lambda s: check.closeness(prov, envs[s])[:4]) == "tf2.14"


# ------------------------------------------------------- whole checks, fake stacks


def _fake_factory(python: str, behaviors: Mapping[str, Mapping[str, Any]]) -> Any:
    def factory(stack: Stack, store: Store) -> StackEnv:
        env = {BEHAVIOR_VAR: json.dumps(behaviors.get(stack.id, {}))}
        return StackEnv(stack=dataclasses.replace(stack, env=tuple(env.items())), ok=True,
                        python=python, fingerprint=f"fake-{stack.id}-{json.dumps(behaviors.get(stack.id))}",
                        versions={"keras": behaviors.get(stack.id, {}).get("version", "2.15.0")})
    return factory


@pytest.fixture
def fake_model(fake: FakeStack) -> Path:
    cell = fake.save_cell("m", "mlp", "keras")
    fake.save_ok([cell])
    return Path(cell["artifact_dir"]) / "model.keras"


@pytest.fixture
def custom_model(fake: FakeStack) -> Path:
    cell = fake.save_cell("c", "custom", "keras")  # the fake's .h5 is not real HDF5
    fake.save_ok([cell])
    return Path(cell["artifact_dir"]) / "model.keras"


def _check(tmp_path: Path, model: Path, python: str, behaviors: Mapping[str, Mapping[str, Any]],
           **kw: Any) -> tuple[int, str]:
    out = io.StringIO()
    opt = check.Options(model=model, stacks=tuple(behaviors), store=tmp_path / "check-store",
                        cell_timeout=30, import_timeout=60, jobs=1, **kw)
    code = check.run_check(opt, out=out, env_factory=_fake_factory(python, behaviors),
                           extra_sys_path=[str(FAKES)])
    return code, out.getvalue()


def test_check_passes_when_every_stack_matches(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    code, text = _check(tmp_path, fake_model, worker_python, {"tf2.15": {}, "tf2.14": {}},
                        out=tmp_path / "report")
    assert code == 0, text
    assert "provenance: keras_version 2.15.0" in text
    assert "reference: tf2.14" in text and "2 of 2 stacks load the model" in text
    for name in ("check.md", "check.html", "check.csv"):
        assert (tmp_path / "report" / name).is_file()
    assert str(tmp_path) not in (tmp_path / "report" / "check.md").read_text()
    # Cached the second time: no worker runs.
    code2, text2 = _check(tmp_path, fake_model, worker_python, {"tf2.15": {}, "tf2.14": {}})
    assert code2 == 0 and "loading with" not in text2


def test_check_flags_mismatch_and_load_error(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    code, text = _check(tmp_path, fake_model, worker_python, {
        "tf2.15": {},
        "tf2.14": {"version": "2.14.0", "load": {"action": "perturb", "arg": 0.5}},
        "tf2.13": {"version": "2.13.0", "load": "raise_unknown_layer"},
    })
    assert code == 1, text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| tf")}
    assert "ok (reference)" in rows["tf2.15"]
    assert "mismatch" in rows["tf2.14"] and "0.5" in rows["tf2.14"]
    assert "load_error" in rows["tf2.13"] and "Unknown layer" in rows["tf2.13"]
    assert "1 of 3 stacks" in text


def test_given_reference_outputs(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    np = pytest.importorskip("numpy")
    x = np.random.RandomState(0).uniform(-1, 1, (3, 4)).astype("float32")
    inputs = _npz(tmp_path / "in.npz", x0=x, y0=np.zeros((3, 2)))
    code, text = _check(tmp_path, fake_model, worker_python, {"tf2.15": {}}, inputs=inputs)
    assert code == 1 and "reference: the y0.. arrays of in.npz" in text and "mismatch" in text


def test_custom_layer_needs_custom_objects(tmp_path: Path, custom_model: Path, worker_python: str) -> None:
    code, text = _check(tmp_path, custom_model, worker_python, {"tf2.15": {}})
    assert code == 1, text
    assert "load_error" in text and "pass --custom-objects FILE to try it" in text
    custom = tmp_path / "my_layers.py"
    custom.write_text(
        "import importlib.util\n"
        f"_spec = importlib.util.spec_from_file_location('fake_custom', {str(FAKE_SCENARIOS / 'custom.py')!r})\n"
        "_mod = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_mod)\n"
        "def custom_objects(keras):\n    return _mod.custom_objects(keras)\n")
    code, text = _check(tmp_path, custom_model, worker_python, {"tf2.15": {}, "tf2.14": {}},
                        custom_objects=custom)
    assert code == 0, text
    assert "load variant: custom_objects" in text


def test_custom_objects_import_failure_is_exit_2(tmp_path: Path, fake_model: Path, worker_python: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    custom = tmp_path / "my_layers.py"
    custom.write_text("import not_a_module_anywhere\n\nCUSTOM_OBJECTS = {}\n")
    monkeypatch.setattr(check, "ensure_env", _fake_factory(worker_python, {"tf2.15": {}}))
    monkeypatch.setattr(check, "EXTRA_SYS_PATH", (str(FAKES),))
    code = cli.main(["check", str(fake_model), "--stacks", "tf2.15", "--custom-objects", str(custom),
                     "--store", str(tmp_path / "s"), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    _assert_usage_error(code, err, "my_layers.py fails to import", "ModuleNotFoundError",
                        "not_a_module_anywhere")
    assert not (tmp_path / "report").exists()


def test_inputs_of_the_wrong_shape_are_exit_2(tmp_path: Path, fake_model: Path, worker_python: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    inputs = _npz(tmp_path / "in.npz", x0=[[1.0, 2.0, 3.0, 4.0, 5.0]])
    monkeypatch.setattr(check, "ensure_env", _fake_factory(worker_python, {"tf2.15": {}, "tf2.14": {}}))
    monkeypatch.setattr(check, "EXTRA_SYS_PATH", (str(FAKES),))
    code = cli.main(["check", str(fake_model), "--stacks", "tf2.15,tf2.14", "--inputs", str(inputs),
                     "--store", str(tmp_path / "s"), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    _assert_usage_error(code, err, "does not fit the model", "x0 has shape (1, 5)", "expects (None, 4)")
    assert not (tmp_path / "report").exists()


def test_check_worker_is_python37_syntax() -> None:
    import ast

    source = check.CHECK_WORKER_PATH.read_text()
    ast.parse(source, feature_version=(3, 7))
    assert sys.version_info >= (3, 11)
