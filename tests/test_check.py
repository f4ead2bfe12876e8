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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import tamper
from conftest import BEHAVIOR_VAR, FAKE_SCENARIOS, FAKES, FakeStack
from test_cli import run

from runner import check, cli
from runner.envs import StackEnv
from runner.records import Store
from runner.stacks import Stack, load_catalog, select

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
    line = _assert_usage_error(res.returncode, res.stderr, *fragments)
    assert line.count(str(model)) == 1, line  # one reason, not a reason wrapped in another
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
    meta = b'{"keras_version": "2.15.0", "backend": "tensorflow"}'  # SavedMetadata{nodes{metadata}}
    node = b"\x2a" + bytes([len(meta)]) + meta
    (sm / "keras_metadata.pb").write_bytes(b"\x0a" + bytes([len(node)]) + node)
    info = check.inspect_model(sm)
    assert info.format == "savedmodel"
    assert info.provenance["keras_version"] == "2.15.0"


def test_tolerance_fits_the_output_scale_and_dtype() -> None:
    np = pytest.importorskip("numpy")
    ref = np.random.RandomState(0).uniform(-1, 1, (4, 10)).astype("float32")
    ref[0, 0] = 1.0
    noise = check.compare([ref + np.float32(5e-5)], [ref])  # cross-release float noise
    assert noise.ok and noise.abs == pytest.approx(5e-5, rel=0.01) and noise.atol == pytest.approx(1e-4)
    padding = check.compare([ref + np.float32(0.1)], [ref])  # a changed computation
    assert not padding.ok and "max |Δ| 0.1" in padding.reason
    big = ref * 1000  # the same relative noise on outputs ~1000 is still noise
    assert check.compare([big + np.float32(5e-2)], [big]).ok
    assert not check.compare([ref + np.float32(5e-5)], [ref], atol=1e-6, rtol=1e-6).ok  # --atol/--rtol
    half = ref.astype("float16")
    assert check.tolerance(half)[1] == 1e-2 and check.tolerance(ref.astype("float64"))[1] == 1e-9
    ints = np.arange(4)
    assert check.compare([ints], [ints]).ok and not check.compare([ints + 1], [ints]).ok
    two = check.compare([ref, big + 1.0], [ref, big])  # per output: the second one is off
    assert not two.ok and two.reason.startswith("output 1:")
    assert not check.compare([ref.T], [ref]).ok and "shape" in check.compare([ref.T], [ref]).reason
    nan = ref.copy()
    nan[0, 1] = np.nan
    assert check.compare([nan], [nan.copy()]).ok


def test_closeness_prefers_same_major_minor() -> None:
    prov = {"keras_version": "2.15.0", "backend": "tensorflow"}
    envs = {"tf2.18": {"keras": "3.6.0"}, "tf2.15": {"keras": "2.15.0"}, "tf2.14": {"keras": "2.14.0"}}
    assert min(envs, key=lambda s: check.closeness(prov, envs[s])) == "tf2.15"
    del envs["tf2.15"]
    assert min(envs, key=lambda s: check.closeness(prov, envs[s])) == "tf2.14"
    catalog = {s.id: s for s in load_catalog()}
    assert check.catalog_versions(catalog["tf2.15"])["keras"].startswith("2.15")
    assert check.catalog_versions(catalog["tf2.21-tfkeras"])["keras"] == "2.21.0"
    assert check.catalog_versions(catalog["keras3.15-jax"]) == {"keras": "3.15.1", "tensorflow": "",
                                                                 "backend": "jax"}


@pytest.mark.parametrize(("prov", "stack"), [
    ({"keras_version": "2.4.0", "tensorflow_version": "2.4.4"}, "tf2.4"),  # Keras 2.4.0 is TF 2.3's too
    ({"keras_version": "2.15.0", "backend": "tensorflow"}, "tf2.15"),
    ({"keras_version": "3.6.0", "backend": "tensorflow"}, "tf2.18"),
    ({"keras_version": "3.15.1", "backend": "jax"}, "keras3.15-jax"),
    ({"tensorflow_version": "2.12.1"}, "tf2.12"),  # an export names only its TF
    ({"keras_version": "2.21.0"}, "tf2.21-tfkeras"),
    ({}, None),
])
def test_the_reference_is_the_stack_matching_the_provenance(prov: dict[str, str], stack: str | None,
                                                             tmp_path: Path) -> None:
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
    catalog = load_catalog()
    run = check._Check(check.Options(model=model, store=tmp_path / "s"), check.inspect_model(model), [], catalog,
                       io.StringIO(), lambda s, st: StackEnv(stack=s, ok=False), [], None)
    found, why = run.reference_stack(prov)
    assert (found.id if found else None) == stack, why


def test_tf24_keras_savedmodel_is_detected_from_the_object_graph(tmp_path: Path) -> None:
    sm = tmp_path / "sm"
    sm.mkdir()
    version = b"2.4.1"
    info_def = b"\x2a" + bytes([len(version)]) + version
    graph_meta = b'{"class_name": "Functional", "keras_version": "2.4.0", "backend": "tensorflow"}'
    # MetaGraphDef.object_graph_def{nodes{user_object{identifier, metadata}}}: where TF 2.0-2.4 keep it
    ident = b"_tf_keras_network"
    user = b"\x0a" + bytes([len(ident)]) + ident + b"\x1a" + bytes([len(graph_meta)]) + graph_meta
    node = b"\x22" + bytes([len(user)]) + user
    graph = b"\x0a" + bytes([len(node)]) + node
    meta_graph = b"\x0a" + bytes([len(info_def)]) + info_def + b"\x3a" + bytes([len(graph)]) + graph
    (sm / "saved_model.pb").write_bytes(b"\x08\x01\x12" + bytes([len(meta_graph)]) + meta_graph)
    info = check.inspect_model(sm)
    assert info.format == "savedmodel"
    assert info.provenance["keras_version"] == "2.4.0" and info.provenance["tensorflow_version"] == "2.4.1"
    assert "object graph of saved_model.pb" in info.provenance["source"]


def test_the_check_worker_gets_no_host_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
    (stack,) = select(load_catalog(), ["tf2.21-tfkeras"])
    run = check._Check(check.Options(model=model, store=tmp_path / "s"), check.inspect_model(model), [stack],
                       [stack], io.StringIO(), lambda s, st: StackEnv(stack=s, ok=False), [], None)
    env = run.sandbox_env(stack)
    assert "hunter2" not in env.values() and "GITHUB_TOKEN" not in env
    assert env["HOME"].startswith(str(run.home)) and env["TMPDIR"].startswith(str(run.home))
    assert env["TF_USE_LEGACY_KERAS"] == "1" and set(env) <= {*check.ENV_ALLOW, "HOME", "TMPDIR", "TMP", "TEMP",
                                                             "KERAS_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR",
                                                             "PIP_USER", "TF_CPP_MIN_LOG_LEVEL",
                                                             "CUDA_VISIBLE_DEVICES", "PYTHONNOUSERSITE",
                                                             "TF_USE_LEGACY_KERAS"}


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
           stacks: tuple[str, ...] | None = None, **kw: Any) -> tuple[int, str]:
    out, log = io.StringIO(), io.StringIO()
    opt = check.Options(model=model, stacks=stacks or tuple(behaviors), store=tmp_path / "check-store",
                        **{"cell_timeout": 30, "import_timeout": 60, "jobs": 1, **kw})
    code = check.run_check(opt, out=out, log=log, env_factory=_fake_factory(python, behaviors),
                           extra_sys_path=[str(FAKES)])
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines() if line.startswith("|")) <= 120, text
    _check.log = log.getvalue()  # type: ignore[attr-defined]
    return code, text


def _rows(text: str) -> dict[str, list[str]]:
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| stack "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            key = cells[0] if not cells[0].startswith("↳") or cells[0][2:] not in out else cells[0] + "*"
            out[key] = cells
    return out


def _rezip(src: Path, dst: Path, metadata: dict[str, Any] | None, config: str | None = None) -> Path:
    """A copy of a .keras file with other metadata.json (None: none at all) or config.json."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name == "metadata.json" or (name == "config.json" and config is not None):
                continue
            zout.writestr(name, zin.read(name))
        if metadata is not None:
            zout.writestr("metadata.json", json.dumps(metadata))
        if config is not None:
            zout.writestr("config.json", config)
    return dst


def test_check_passes_when_every_stack_matches(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    code, text = _check(tmp_path, fake_model, worker_python, {"tf2.15": {}, "tf2.14": {"version": "2.14.0"}},
                        out=tmp_path / "report")
    assert code == 0, text
    assert "provenance: keras_version 2.15.0" in text
    assert "reference: tf2.15" in text and "2 of 2 stacks load the model" in text
    assert _rows(text)["tf2.14"][1] == "ok" and _rows(text)["tf2.14"][3].startswith("0 (0) / ")
    for name in ("check.md", "check.html", "check.csv"):
        assert (tmp_path / "report" / name).is_file()
    assert str(tmp_path) not in (tmp_path / "report" / "check.md").read_text()
    # Cached the second time: no worker runs, and the same output byte for byte.
    code2, text2 = _check(tmp_path, fake_model, worker_python, {"tf2.15": {}, "tf2.14": {"version": "2.14.0"}})
    assert code2 == 0 and text2 == text and "loading with" not in _check.log  # type: ignore[attr-defined]


def test_a_crash_is_retried_not_cached(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    behaviors = {"tf2.15": {}, "tf2.14": {"version": "2.14.0", "load": "kill"}}
    code, text = _check(tmp_path, fake_model, worker_python, behaviors)
    assert code == 1 and _rows(text)["tf2.14"][1] == "crash", text
    _check(tmp_path, fake_model, worker_python, behaviors)
    assert "[check tf2.14] loading with default" in _check.log  # type: ignore[attr-defined]
    assert "[check tf2.15] loading" not in _check.log  # type: ignore[attr-defined]


def test_a_timeout_is_cached_once_it_happened_twice_in_a_row(tmp_path: Path, fake_model: Path,
                                                             worker_python: str) -> None:
    """The matrix's cache rule (runner.cells.reusable): a timeout is retried until two runs in a row
    timed out at the same limit; the third run takes it from the cache."""
    for attempt in range(3):
        code, text = _check(tmp_path, fake_model, worker_python, {"tf2.15": {"load": "hang"}}, cell_timeout=2)
        assert code == 1 and _rows(text)["tf2.15"][1] == "timeout", text
        ran = "[check tf2.15] loading with default" in _check.log  # type: ignore[attr-defined]
        assert ran == (attempt < 2), (attempt, _check.log)  # type: ignore[attr-defined]


def test_check_flags_mismatch_and_load_error(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    code, text = _check(tmp_path, fake_model, worker_python, {
        "tf2.15": {},
        "tf2.14": {"version": "2.14.0", "load": {"action": "perturb", "arg": 0.5}},
        "tf2.13": {"version": "2.13.0", "load": "raise_unknown_layer"},
    })
    assert code == 1, text
    rows = _rows(text)
    assert rows["tf2.15"][1] == "ok (reference)"
    assert rows["tf2.14"][1] == "mismatch" and rows["tf2.14"][3].startswith("0.5 (")
    assert rows["tf2.13"][1] == "load_error" and rows["tf2.13"][2] == "custom_object_unknown"
    assert "] ValueError: Unknown layer" in text and "max |Δ| 0.5" in text
    assert text.count("Unknown layer") == 1  # a note shared by two rows is one footnote
    assert "1 of 3 stacks" in text


def test_reference_stack_is_added_when_not_selected(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    code, text = _check(tmp_path, fake_model, worker_python, {"tf2.14": {"version": "2.14.0"}})
    assert code == 0, text
    assert ("reference: tf2.15 (TF 2.15.0, Keras 2.15.0): same Keras major.minor as the file's; "
            "not selected, added to the run") in text
    assert _rows(text)["tf2.15"][1] == "ok (reference)" and "1 of 1 stacks" in text


def test_without_a_reference_nothing_is_verified(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    bare = _rezip(fake_model, tmp_path / "bare.keras", None)
    code, text = _check(tmp_path, bare, worker_python, {
        "tf2.14": {"version": "2.14.0"}, "tf2.13": {"version": "2.13.0", "load": {"action": "perturb", "arg": 0.13}}})
    assert code == 1, text
    assert "reference: none: the file names no Keras or TensorFlow version" in text
    rows = _rows(text)
    assert rows["tf2.13"][1] == rows["tf2.14"][1] == "loads (unverified: no reference)"
    assert "disagrees with tf2.13: output 0: max |Δ| 0.13" in text
    assert "verified)" not in text and "0 of 2 stacks" in text


@pytest.mark.parametrize(("ref", "tfkeras", "outcome"), [
    ({"load": "raise"}, {"version": "2.21.0", "load": {"action": "perturb", "arg": 0.13}},
     "loads (unverified: no reference)"),
    ({}, {"version": "2.21.0", "load": {"action": "perturb", "arg": 0.13}}, "mismatch"),
    ({}, {"version": "2.21.0"}, "fixed (verified)"),
], ids=["no_reference", "mismatch", "verified"])
def test_tf_keras_sibling_remedy_for_a_keras2_file_in_keras3(
        tmp_path: Path, fake_model: Path, worker_python: str, ref: dict[str, Any], tfkeras: dict[str, Any],
        outcome: str) -> None:
    code, text = _check(tmp_path, fake_model, worker_python, {
        "tf2.21": {"version": "3.13.2", "load": {"action": "raise", "arg": "add_slot"}},
        "tf2.21-tfkeras": tfkeras, "tf2.15": ref}, stacks=("tf2.21",))
    assert code == 1, text
    rows = _rows(text)
    assert rows["tf2.21"][1] == "load_error"
    assert rows["↳ tf2.21-tfkeras"][1] == outcome, text
    assert "remedy tf_keras (sibling stack tf2.21-tfkeras)" in text
    if outcome == "mismatch":
        assert rows["↳ tf2.21-tfkeras"][3].startswith("0.13 (") and "max |Δ| 0.13" in text


def test_given_reference_outputs(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    np = pytest.importorskip("numpy")
    x = np.random.RandomState(0).uniform(-1, 1, (3, 4)).astype("float32")
    inputs = _npz(tmp_path / "in.npz", x0=x, y0=np.zeros((3, 2)))
    code, text = _check(tmp_path, fake_model, worker_python, {"tf2.15": {}}, inputs=inputs)
    assert code == 1 and "reference: the y0.. arrays of in.npz" in text and _rows(text)["tf2.15"][1] == "mismatch"


def test_code_in_the_file_is_refused_in_every_stack(tmp_path: Path, fake_model: Path, worker_python: str) -> None:
    config = json.dumps({"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda", "config": {
        "function": ["4wEAAAAA", None, None], "function_type": "lambda"}}]}})
    lam = _rezip(fake_model, tmp_path / "lambda.keras", {"keras_version": "2.15.0"}, config)
    behaviors = {"tf2.15": {"load": "raise"}, "tf2.18": {"version": "3.6.0", "load": "raise"}}
    code, text = _check(tmp_path, lam, worker_python, behaviors)
    assert code == 1, text
    for stack in behaviors:
        assert _rows(text)[stack][1:3] == ["load_error", "refused_unsafe"], text
    assert "RuntimeError" not in text  # the fake's load_model was never reached
    assert "refused before loading: 1 object(s) of the stored config are not inert built-ins" in text
    assert "config.json/config/layers/0: Lambda layer: serialized Python bytecode" in text
    assert "Rerun with --unsafe only if you trust the file" in text and "safe mode on" not in text
    code, text = _check(tmp_path, lam, worker_python, behaviors, unsafe=True)
    assert "refused_unsafe" not in text and "RuntimeError" in text and "(allowed to run: --unsafe)" in text


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
    code, text = _check(tmp_path, custom_model, worker_python, {"tf2.15": {}, "tf2.14": {"version": "2.14.0"}},
                        custom_objects=custom)
    assert code == 0, text


def test_custom_objects_import_failure_is_exit_2(tmp_path: Path, fake_model: Path, worker_python: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    custom = tmp_path / "my_layers.py"
    custom.write_text("import not_a_module_anywhere\n\nCUSTOM_OBJECTS = {}\n")
    monkeypatch.setattr(check, "ensure_env", _fake_factory(worker_python, {"tf2.15": {}}))
    monkeypatch.setattr(check, "EXTRA_SYS_PATH", (str(FAKES),))
    code = cli.main(["check", "--sandbox", "off", str(fake_model), "--stacks", "tf2.15",
                     "--custom-objects", str(custom), "--store", str(tmp_path / "s"),
                     "--out", str(tmp_path / "report")])
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
    code = cli.main(["check", "--sandbox", "off", str(fake_model), "--stacks", "tf2.15,tf2.14", "--inputs", str(inputs),
                     "--store", str(tmp_path / "s"), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    _assert_usage_error(code, err, "does not fit the model", "x0 has shape (1, 5)", "expects (None, 4)")
    assert not (tmp_path / "report").exists()


KERAS3_CONFIG = {"class_name": "Functional", "config": {
    "layers": [{"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [None, 4], "name": "x"}},
               {"class_name": "Dense", "name": "d", "config": {"units": 2}}],
    "input_layers": ["x", 0, 0], "output_layers": ["d", 0, 0]}}


@pytest.mark.parametrize(("arrays", "fragments"), [
    ({"x0": "object"}, ["pickled Python objects", "never loaded"]),
    ({"x0": (1, 5)}, ["does not fit the model", "x0 has shape (1, 5)", "expects (None, 4)"]),
    ({"x0": (3, 4), "x1": (3, 4)}, ["has 2 input array(s)", "the model takes 1"]),
    ({"x0": (3, 4), "y0": (2, 2)}, ["y0 has 2 rows, x0 has 3"]),
    ({"x0": "text"}, ["x0 is <U5", "numeric arrays"]),
], ids=["object_dtype", "wrong_shape", "too_many", "rows", "strings"])
def test_bad_inputs_are_refused_before_any_stack_runs(tmp_path: Path, arrays: dict[str, Any],
                                                       fragments: list[str], monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    np = pytest.importorskip("numpy")
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", json.dumps(KERAS3_CONFIG))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
    made = {k: np.array([{"a": 1}], dtype=object) if v == "object" else np.array(["hello"]) if v == "text"
            else np.zeros(v, dtype="float32") for k, v in arrays.items()}
    np.savez(tmp_path / "in.npz", **made)

    def no_stack(stack: Stack, store: Store) -> StackEnv:
        raise AssertionError("a stack ran")

    monkeypatch.setattr(check, "ensure_env", no_stack)
    code = cli.main(["check", "--sandbox", "off", str(model), "--stacks", "tf2.18",
                     "--inputs", str(tmp_path / "in.npz"), "--store", str(tmp_path / "s")])
    _assert_usage_error(code, capsys.readouterr().err, *fragments)
    assert not (tmp_path / "s").exists()


def test_check_worker_is_python37_syntax() -> None:
    import ast

    source = check.CHECK_WORKER_PATH.read_text()
    ast.parse(source, feature_version=(3, 7))
    assert sys.version_info >= (3, 11)


def test_sandbox_mode_says_where_loads_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: the docker sandbox when an engine answers, else one line saying why not; on
    without an engine is bad input (exit 2); off never asks docker."""
    monkeypatch.setattr(check.runtime_docker, "sandbox_unavailable", lambda: "no engine at /var/run/docker.sock")
    on, line = check.sandbox_mode("auto")
    assert not on and line.startswith("off (no Docker engine answers: no engine at /var/run/docker.sock)")
    assert "scrubbed environment" in line
    with pytest.raises(check.CheckInputError, match="--sandbox on: no Docker engine answers"):
        check.sandbox_mode("on")
    monkeypatch.setattr(check.runtime_docker, "sandbox_unavailable", lambda: None)
    assert check.sandbox_mode("auto")[0] and check.sandbox_mode("on")[0]
    assert check.sandbox_mode("off") == (False, "off (--sandbox off): loads run in the stack venvs with a "
                                                "scrubbed environment and a throwaway HOME")


def test_sandbox_loads_in_the_docker_spawn(tmp_path: Path, fake_model: Path, worker_python: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With the sandbox on, every check cell runs through runtime_docker.sandbox_spawn (here a
    host process standing in for the container) and the header says so."""
    spawned: list[str] = []

    def sandbox_spawn(senv: StackEnv) -> Any:
        spawned.append(senv.stack.id)
        return check.execute._default_spawn

    monkeypatch.setattr(check.runtime_docker, "sandbox_unavailable", lambda: None)
    monkeypatch.setattr(check.runtime_docker, "sandbox_spawn", sandbox_spawn)
    code, text = _check(tmp_path, fake_model, worker_python, {"tf2.15": {}}, sandbox="auto")
    assert code == 0, text
    assert spawned == ["tf2.15"] and "sandbox: docker (no network" in text


def test_sandbox_auto_falls_back_to_the_venv_where_docker_cannot_build(
        tmp_path: Path, fake_model: Path, worker_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto with an engine that cannot build a stack (no base image): that stack loads in its
    venv and the sandbox line says so; it never claims a sandbox nothing ran in."""
    venv = _fake_factory(worker_python, {"tf2.15": {}})

    def ensure_env(stack: Stack, store: Store, runtime: Any = None) -> StackEnv:
        if runtime is not None:
            return StackEnv(stack=stack, ok=False, reason="docker runtime: base image python:3.11 is not here")
        return venv(stack, store)  # type: ignore[no-any-return]

    monkeypatch.setattr(check, "ensure_env", ensure_env)
    monkeypatch.setattr(check.runtime_docker, "sandbox_unavailable", lambda: None)
    out, log = io.StringIO(), io.StringIO()
    opt = check.Options(model=fake_model, stacks=("tf2.15",), store=tmp_path / "s", jobs=1, sandbox="auto")
    code = check.run_check(opt, out=out, log=log, extra_sys_path=[str(FAKES)])
    text = out.getvalue()
    assert code == 0, text
    assert ("sandbox: off in tf2.15: its docker runtime failed (docker runtime: base image python:3.11 is not "
            "here), so it loaded in its venv with a scrubbed environment") in text.splitlines()
    assert "docker (" not in text


def test_no_stack_ran_claims_no_inspection(tmp_path: Path, fake_model: Path) -> None:
    """When no stack could run, nothing inspected the stored config: the report says so."""
    def broken(stack: Stack, store: Store) -> StackEnv:
        return StackEnv(stack=stack, ok=False, reason="no interpreter for Python 3.11")

    out = io.StringIO()
    code = check.run_check(check.Options(model=fake_model, stacks=("tf2.15",), store=tmp_path / "s", jobs=1),
                           out=out, log=io.StringIO(), env_factory=broken)
    assert code == 1
    assert "safety: not reached (no stack loaded the file)" in out.getvalue().splitlines()


def test_table_stays_within_120_columns_in_the_worst_case() -> None:
    """The widest stack, outcome, category and Δ of the default catalog on one row with six
    notes: the row's notes become one footnote, the table stays ≤ 120 columns, no note lost."""
    from runner import diagnose

    stack = max((s.id for s in load_catalog()), key=len)
    category = max(diagnose.CATEGORIES, key=len)
    notes = [f"note {i}" for i in range(6)]
    rows = [check.Row(stack, "ok", notes=[f"shared {i}" for i in range(9)]),
            check.Row(stack, check.UNVERIFIED, category, check.Diff(False, 1.2345e-05, 3.1e-05, 1.5e-05), notes),
            check.Row("↳ tf_keras", "fixed (verified)", notes=["shared 0", "shared 1"])]
    body, table, foot = check.render(rows)
    assert max(len(line) for line in table.splitlines()) <= 120, table
    # Only this worst case (the widest outcome beside the widest category) shortens the outcome.
    assert body[1][1] == check.UNVERIFIED_SHORT and check.UNVERIFIED not in table
    narrow, _, _ = check.render([dataclasses.replace(rows[1], category="load_error")])
    assert narrow[0][1] == check.UNVERIFIED
    assert [r[4] for r in body] == ["1", "2", "3,4"]  # wide rows joined, the narrow one keeps its own
    text = "\n".join(foot)
    assert all(n in text for n in notes + [f"shared {i}" for i in range(9)])


LAMBDA = {"class_name": "Lambda", "config": {"name": "lam", "function": ["4wEAAAAA", None, None],
                                            "function_type": "lambda"}}


def _spelled(base: dict[str, Any], form: str, lam: bool) -> str:
    """``base`` (a model's own config.json) with (``lam``) or without a Lambda layer added in
    ``form``, in one JSON spelling; without the Lambda it is the model itself, respelled."""
    tree = json.loads(json.dumps(base))
    if lam:
        layer: dict[str, Any] = LAMBDA
        if form == "nested":
            layer = {"class_name": "Sequential", "config": {"name": "inner", "layers": [LAMBDA]}}
        elif form == "wrapper":
            layer = {"class_name": "TimeDistributed", "config": {"name": "td", "layer": LAMBDA}}
        tree["config"]["layers"].append(layer)
    text = json.dumps(tree)
    if form == "escape":  # json.loads gives the identical config
        text = text.replace('"lambda"', '"\\u006cambda"').replace('"Lambda"', '"\\u004cambda"')
    elif form == "whitespace":
        text = text.replace('": ', '"  :\n\t ')
    elif form == "key_order":
        text = json.dumps(dict(reversed(list(tree.items()))), sort_keys=True)
    return text


@pytest.mark.parametrize("form", ["plain", "escape", "whitespace", "key_order", "nested", "wrapper"])
def test_a_lambda_in_any_json_spelling_is_refused_and_its_twin_is_not(tmp_path: Path, fake_model: Path,
                                                                      worker_python: str, form: str) -> None:
    """Issue 22: the refusal was a regex over the raw text; "\\u006cambda" or a space before a
    colon passed it and the Lambda ran. Each spelling of the same config is refused in every
    stack, by structure; the same model without the Lambda, in the same spelling, loads and
    matches in the same stacks."""
    base = json.loads(zipfile.ZipFile(fake_model).read("config.json"))
    hostile = _rezip(fake_model, tmp_path / f"{form}.keras", {"keras_version": "2.15.0"}, _spelled(base, form, True))
    assert json.loads(zipfile.ZipFile(hostile).read("config.json")) == json.loads(_spelled(base, "plain", True)) \
        or form in ("nested", "wrapper")
    behaviors = {"tf2.15": {"load": "raise"}, "tf2.18": {"version": "3.6.0", "load": "raise"}}
    code, text = _check(tmp_path, hostile, worker_python, behaviors)
    assert code == 1, text
    for stack in behaviors:
        assert _rows(text)[stack][1:3] == ["load_error", "refused_unsafe"], text
    assert "Lambda layer" in text and "RuntimeError" not in text, text  # the loader was never reached
    refused = _rows(text)["tf2.15"]
    twin = _rezip(fake_model, tmp_path / f"{form}-twin.keras", {"keras_version": "2.15.0"},
                  _spelled(base, form, False))
    loading = {"tf2.15": {}, "tf2.18": {"version": "3.6.0"}}  # the same stacks, a loader that works
    code, text = _check(tmp_path, twin, worker_python, loading)
    assert code == 0, text
    for stack in loading:
        assert _rows(text)[stack][1].startswith("ok"), text  # loaded, predicted and matched the reference
    tamper.note("check (fake stacks)", f"Lambda in a .keras config, spelled: {form}",
                "refused before loading in every stack; the twin without the Lambda loads and matches",
                f"`{refused[1]}` `{refused[2]}` in tf2.15 and tf2.18; twin: "
                + ", ".join(f"{sid} `{_rows(text)[sid][1]}`" for sid in loading))


@pytest.fixture(scope="module", autouse=True)
def _attacks_section() -> Iterator[None]:
    yield
    tamper.write_section()
