"""``check`` on files built to exhaust or hang the host: every one is one ``runner: error:``
line and exit 2 before any stack runs, in bounded memory — and the well-formed twin of
each is accepted by the same code (so a check that refuses everything cannot pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tamper
from test_check import _assert_usage_error, _h5_superblock, _npz
from test_cli import run

from runner import check

REPO = Path(__file__).resolve().parent.parent
HOST = "check, host side"


@pytest.fixture(scope="module", autouse=True)
def _attacks_section() -> Iterator[None]:
    yield
    tamper.write_section()


def _peak_rss_mb(code: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``code`` in a fresh interpreter; (the peak resident memory in MB of it and of the
    check worker's ``inspect`` processes it ran, the process)."""
    # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's across exec);
    # ru_maxrss of the children: the largest reader process's (at most this one's at the fork).
    probe = ("\nimport re, resource\nprint('PEAK-KB', max(int(re.search(r'VmHWM:\\s+(\\d+)', "
             "open('/proc/self/status').read()).group(1)), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n")
    proc = subprocess.run([sys.executable, "-c", code + probe], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    kb = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PEAK-KB ")]
    assert kb, proc.stdout + proc.stderr
    return int(kb[0]) / 1024, proc


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.h5"
    os.mkfifo(fifo)
    res = run("check", fifo, "--stacks", "tf2.15", "--store", tmp_path / "s")  # a blocking open would hang here
    line = _assert_usage_error(res.returncode, res.stderr, "is a FIFO")
    tamper.note(HOST, "a FIFO given as the model", "one error line, exit 2, no hang", f"exit 2: `{line}`")
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
    inputs = tmp_path / "inputs.npz"
    os.mkfifo(inputs)
    res = run("check", model, "--inputs", inputs, "--stacks", "tf2.15", "--store", tmp_path / "s")
    _assert_usage_error(res.returncode, res.stderr, "inputs file", "is a FIFO")


def test_a_symlink_inside_a_savedmodel_is_refused_and_a_plain_tree_is_read(tmp_path: Path) -> None:
    sm = tmp_path / "sm"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")  # one empty meta graph
    (sm / "variables" / "variables.index").write_bytes(b"index")
    plain = check.inspect_model(sm)  # the twin: plain files only
    assert plain.format == "export" and plain.size == 9
    secret = tmp_path / "host-secret"
    secret.write_text("not part of the model")
    (sm / "variables" / "variables.data-00000-of-00001").symlink_to(secret)
    res = run("check", sm, "--stacks", "tf2.15", "--store", tmp_path / "s")
    line = _assert_usage_error(res.returncode, res.stderr, "variables/variables.data-00000-of-00001",
                               "a symbolic link")
    tamper.note(HOST, "a symlink to a host file inside a SavedModel", "refused, never read or staged",
                f"exit 2: `{line}`")


def test_a_2_gib_zero_padded_h5_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """Issue 22: a 2 GiB zero-padded .h5 took 8.2 GB of host RAM (read whole, twice)."""
    size = 2 << 30
    model = tmp_path / "padded.h5"
    with model.open("wb") as fh:
        fh.write(_h5_superblock(eof=size, size=0))
        fh.truncate(size)  # sparse: no disk used
    peak, proc = _peak_rss_mb(f"from pathlib import Path; from runner import check; "
                              f"m = check.inspect_model(Path({str(model)!r})); print(m.size, m.sha256)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(size)
    assert peak < 400, f"inspecting a 2 GiB file took {peak:.0f} MB"
    tamper.note(HOST, "a 2 GiB zero-padded .h5", "read in bounded memory (it took 8.2 GB)",
                f"inspected in {peak:.0f} MB peak")


def test_a_keras_zip_whose_config_unpacks_past_the_cap(tmp_path: Path) -> None:
    """Issue 22: a 1 MB .keras with a 1 GiB config took 5.6 GB; refused from the zip's sizes."""
    model = tmp_path / "bomb.keras"
    big = check.MAX_CONFIG_BYTES + (1 << 20)
    with zipfile.ZipFile(model, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("config.json", "w") as fh:
        fh.write(b'{"class_name": "Sequential", "config": {"name": "' + b" " * (big - 60) + b'"}}')
    assert model.stat().st_size < 1 << 20
    peak, proc = _peak_rss_mb(f"import sys; from pathlib import Path; from runner import check\n"
                              f"try:\n    check.inspect_model(Path({str(model)!r}))\n"
                              f"except check.CheckInputError as exc:\n    print(exc)\n")
    assert "config.json unpacks to" in proc.stdout and "over the cap" in proc.stdout, proc.stdout + proc.stderr
    assert "not a readable zip" not in proc.stdout  # the cap is the reason, not a damaged zip
    assert peak < 200, f"refusing a zip bomb took {peak:.0f} MB"
    tamper.note(HOST, "a 1 MB .keras whose config.json unpacks to 65 MiB", "refused from the zip's sizes "
                "(a 1 GiB one took 5.6 GB)", f"refused in {peak:.0f} MB peak: " + proc.stdout.strip()[-120:])
    twin = tmp_path / "twin.keras"
    with zipfile.ZipFile(twin, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "x"}}))
    assert check.inspect_model(twin).format == "keras"


def test_a_deeply_nested_architecture_json_is_one_line(tmp_path: Path) -> None:
    model = tmp_path / "deep.json"
    model.write_text('{"class_name": "Sequential", "config": ' + "[" * 200_000 + "]" * 200_000 + "}")
    (tmp_path / "deep.weights.h5").write_bytes(_h5_superblock(eof=512, size=512))
    res = run("check", model, "--stacks", "tf2.15", "--store", tmp_path / "s")
    line = _assert_usage_error(res.returncode, res.stderr, "nests deeper than 200 levels")
    tamper.note(HOST, "an architecture JSON nested 200,000 deep", "one error line (was a RecursionError traceback)",
                f"exit 2: `{line}`")


def test_inputs_caps_and_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np = pytest.importorskip("numpy")
    model = check.inspect_model(_keras(tmp_path / "m.keras"))
    good = _npz(tmp_path / "good.npz", x0=np.zeros((2, 4)))
    assert len(check.read_inputs(good, model)[0]) == 1  # the twin
    monkeypatch.setattr(check, "MAX_INPUTS_BYTES", 100)
    with pytest.raises(check.CheckInputError, match="over the cap of 100"):
        check.read_inputs(_npz(tmp_path / "big.npz", x0=np.zeros((64, 4))), model)
    monkeypatch.undo()
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as zf:
        zf.writestr("x0.npy", b"this is not an npy array")
    with pytest.raises(check.CheckInputError, match=r"member x0 is not a numpy array"):
        check.read_inputs(odd, model)


def _keras(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
    return path


def test_the_check_key_covers_every_file_a_check_verdict_depends_on(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached check verdict must not survive a change to the refusal code: the config scan,
    the wire reader, the graph scan and its allowlist all enter the key."""
    import shutil

    from runner._worker import check_worker

    copy = tmp_path / "_worker"
    shutil.copytree(Path(check_worker.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(check, "CHECK_WORKER_PATH", copy / "check_worker.py")
    before = check.check_code_digest()
    for name in ("config_scan.py", "pbwire.py", "graph_scan.py", "check_worker.py"):
        path = copy / name
        path.write_text(path.read_text() + "\n\ndef _an_edit():\n    return 1\n")
        assert check.check_code_digest() != before, name
        before = check.check_code_digest()
    ops = copy / "graph_ops.json"
    ops.write_text(ops.read_text().replace('"ReadVariableOp"', '"ReadVariableOpX"', 1))
    assert check.check_code_digest() != before


def _superblock(version: int, width: int, eof: int, size: int) -> bytes:
    """An HDF5 superblock of ``version`` (0-3) whose addresses are ``width`` bytes wide and whose
    end-of-file address is ``eof``, padded to ``size`` bytes."""
    buf = bytearray(max(size, 128))
    buf[0:8] = b"\x89HDF\r\n\x1a\n"
    buf[8] = version
    if version in (0, 1):
        buf[13] = width
        at = 24 + 2 * width + (4 if version == 1 else 0)
    else:
        buf[9] = width
        at = 12 + 2 * width
    buf[at:at + width] = eof.to_bytes(width, "little")
    return bytes(buf[:max(size, at + width)])


@pytest.mark.parametrize("width", [4, 8])
@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_the_h5_superblock_check_reads_every_version(tmp_path: Path, version: int, width: int) -> None:
    """The end-of-file address is read where each superblock version keeps it: a file as long
    as it says is accepted (the twin), one byte short is refused as truncated."""
    whole = tmp_path / "whole.h5"
    whole.write_bytes(_superblock(version, width, eof=4096, size=4096))
    check._h5_check(whole, "model file")
    short = tmp_path / "short.h5"
    short.write_bytes(_superblock(version, width, eof=4096, size=4095))
    with pytest.raises(check.CheckInputError, match="the HDF5 superblock says 4096 bytes, the file has 4095"):
        check._h5_check(short, "model file")
    odd = tmp_path / "odd.h5"
    odd.write_bytes(_superblock(version, 3, eof=4096, size=4096))  # 3-byte addresses: no HDF5 writes them
    with pytest.raises(check.CheckInputError, match="superblock is incomplete"):
        check._h5_check(odd, "model file")
