"""The worker's components: complete, the harness in no key, the lock current, and the
closure that makes a key cover what a cell runs (issue 24)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from runner import codehash, components, keys
from runner._worker import worker as _w

LOADS = [(fmt, variant) for fmt in _w.FORMATS
         for variant in ("default", *_w.VARIANT_FLAGS, "custom_objects+unsafe", "compile_false+unsafe")]


def test_every_worker_name_is_in_exactly_one_component() -> None:
    defs = codehash.file_definitions(components.WORKER_PATH)
    assert components.unassigned(defs) == ([], [])
    listed = [n for names in components.COMPONENTS.values() for n in names]
    assert len(listed) == len(set(listed)), "a name in two components"


@pytest.mark.parametrize(("phase", "fmt", "variant"),
                         [("save", f, "default") for f in _w.FORMATS] + [("load", f, v) for f, v in LOADS])
def test_the_harness_is_in_no_cell_key(phase: str, fmt: str, variant: str) -> None:
    parts = components.cell_parts(phase, fmt, variant)
    assert "worker:harness" not in parts
    assert "worker:runtime" in parts and f"worker:{phase}" in parts
    own = f"worker:{phase}.{fmt}" if fmt != "export" or phase == "save" else "worker:load.inference"
    assert own in parts, sorted(parts)
    # Other formats' readers and writers are not in this cell's key.
    others = {f"worker:{phase}.{f}" for f in _w.FORMATS if f != fmt} - {own}
    assert not (others & set(parts)), sorted(others & set(parts))
    flags = set() if variant == "default" else set(variant.split("+"))
    assert {p for p in parts if p.startswith("worker:variant.")} == {f"worker:variant.{f}" for f in flags}


def test_check_and_probe_keys_leave_the_harness_out_too() -> None:
    assert "worker:harness" not in components.probe_parts()
    for fmt in _w.FORMATS:
        parts = components.check_parts(fmt)
        assert "worker:harness" not in parts and "worker:exports" in parts


def test_a_check_key_covers_the_worker_code_the_host_check_calls() -> None:
    """check's ``inspect`` (the host's reading of a user's file, run as a check worker
    process) sniffs its format with the worker's sniff_artifact: editing it must change
    check keys (and, being in the save component, not every load's)."""
    assert "sniff_artifact" in components._check_worker_roots()
    assert "worker:save" in components.check_parts("h5")
    assert "worker:save" not in components.cell_parts("load", "h5")


def test_the_committed_lock_is_current() -> None:
    out = io.StringIO()
    assert components.cmd_components(argparse.Namespace(check=True, write=False), out) == 0, out.getvalue()


def test_the_lock_check_names_a_changed_component(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    edited = tmp_path / "worker.py"
    edited.write_text(components.WORKER_PATH.read_text().replace(
        "def _load_h5(fw, path, saved, opts):\n", "def _load_h5(fw, path, saved, opts):\n    path = str(path)\n"))
    monkeypatch.setattr(components, "WORKER_PATH", edited)
    out = io.StringIO()
    assert components.cmd_components(argparse.Namespace(check=True, write=False), out) == 1
    assert "changed since components.lock.json: worker:load.h5; the records" in out.getvalue(), out.getvalue()


MODULE = '''
import os

def helper(x):
    return x + 1

def _a(x):
    return helper(x)

def _b(x):
    return os.getpid()

TABLE = {"a": _a, "b": _b}

def entry(kind):
    return TABLE[kind](1)

def unused():
    return 0
'''


def test_closure_follows_names_and_only_the_selected_dispatch_entries() -> None:
    defs = codehash.module_definitions(MODULE)
    a = codehash.closure(defs, ["entry"], {"TABLE": ("a",)})
    assert set(a) == {"entry", "TABLE", "_a", "helper"}
    b = codehash.closure(defs, ["entry"], {"TABLE": ("b",)})
    assert set(b) == {"entry", "TABLE", "_b", "os"}
    # Editing _b changes b's closure, not a's; a docstring or comment changes neither.
    edited = codehash.module_definitions(MODULE.replace("os.getpid()", "os.getppid()"))
    assert codehash.closure(edited, ["entry"], {"TABLE": ("a",)}) == a
    assert codehash.closure(edited, ["entry"], {"TABLE": ("b",)}) != b
    cosmetic = codehash.module_definitions(MODULE.replace("    return x + 1", '    """Doc."""\n    return x + 1  # c'))
    assert codehash.closure(cosmetic, ["entry"], {"TABLE": ("a",)}) == a
    # Adding an entry to the table changes no existing selection's digest.
    grown = codehash.module_definitions(MODULE.replace('"b": _b}', '"b": _b, "c": unused}'))
    assert codehash.closure(grown, ["entry"], {"TABLE": ("a",)}) == a
    # Without a selection the whole table is followed.
    assert {"_a", "_b"} <= set(codehash.closure(defs, ["entry"]))
    with pytest.raises(KeyError, match="no entry 'z'"):
        codehash.closure(defs, ["entry"], {"TABLE": ("z",)})


@pytest.mark.parametrize("source", ["print('side effect')\n", "try:\n    import x\nexcept ImportError:\n    x = None\n",
                                    "A = 1\nA = 2\n"])
def test_a_statement_no_key_can_hold_is_refused(source: str) -> None:
    with pytest.raises(codehash.UnhashableStatement):
        codehash.module_definitions(source)


def test_a_scenario_key_covers_the_helpers_it_imports_and_not_its_tolerances(tmp_path: Path) -> None:
    (tmp_path / "_shapes.py").write_text("UNITS = 4\n")
    (tmp_path / "other.py").write_text("X = 1\n")
    sc = tmp_path / "sc.py"
    sc.write_text("ATOL = 1e-6\n\ndef build(keras):\n    from _shapes import UNITS\n    return UNITS\n\n"
                  "def inputs(np):\n    return np.zeros((1, 4))\n")
    first = keys.scenario_digest(sc)
    (tmp_path / "other.py").write_text("X = 2\n")  # not imported
    assert keys.scenario_digest(sc) == first
    sc.write_text(sc.read_text().replace("ATOL = 1e-6", "ATOL = 1e-5"))  # the host's
    assert keys.scenario_digest(sc) == first
    (tmp_path / "_shapes.py").write_text("UNITS = 8\n")
    assert keys.scenario_digest(sc) != first


def test_load_keys_follow_the_artifact_bytes_not_the_save() -> None:
    args = ("env", "scen", "h5", "default")
    k1, p1 = keys.load_key("a" * 64, *args)
    k2, p2 = keys.load_key("b" * 64, *args)
    assert k1 != k2 and keys.changed_parts(p1, p2) == ["artifact"]
    # The scenario enters a load key only where the load imports it.
    assert "scenario" not in p1
    _, p3 = keys.load_key("a" * 64, "env", "scen", "h5", "custom_objects")
    assert p3["scenario"] == "scen"
    assert keys.changed_parts({}, p1) == ["key scheme"]
