"""The stack catalog: the shipped file, every validation error, selection, interpreters.

Interpreter discovery is tested with stub ``python`` shell scripts that print what
``stacks._probe_interpreter`` expects (``X.Y`` then ``sys.executable``), so no real
interpreter of an odd version is needed. ``stacks._python_cache`` is replaced by an
empty dict for every test.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import pytest

from runner import stacks
from runner.stacks import (
    DEFAULT_CATALOG,
    CatalogError,
    Stack,
    find_python,
    load_catalog,
    natural_key,
    select,
)


@pytest.fixture(autouse=True)
def _fresh_python_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stacks, "_python_cache", {})


# ------------------------------------------------------------------ shipped catalog


def test_shipped_catalog_loads_and_validates() -> None:
    catalog = load_catalog()
    assert catalog == load_catalog(DEFAULT_CATALOG)
    assert len(catalog) >= 4
    ids = [s.id for s in catalog]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids, key=natural_key)
    for s in catalog:
        assert isinstance(s, Stack)
        assert re.fullmatch(r"3\.\d+", s.python), s
        # the release under test comes first and is pinned exactly
        assert "==" in s.requirements[0], s
        # every other pin says why it is there
        assert {req for req, _ in s.why} == set(s.requirements[1:]), s
        assert s.description, s
        assert s.tags, s
        assert s.keras_module in stacks.KERAS_MODULES
        d = s.to_dict()
        assert d["id"] == s.id and d["requirements"] == list(s.requirements)


def test_shipped_catalog_tf_ids_sort_naturally() -> None:
    ids = [s.id for s in load_catalog()]
    wanted = ["tf1.15", "tf2.4", "tf2.15", "tf2.16-tfkeras", "tf2.18", "tf2.21", "tf2.21-tfkeras"]
    present = [i for i in ids if i in wanted]
    assert present == wanted


def test_natural_key() -> None:
    shuffled = ["tf2.18-tfkeras", "tf2.15", "tf2.18", "tf2.4", "tf1.15", "keras3.15-jax"]
    assert sorted(shuffled, key=natural_key) == [
        "keras3.15-jax", "tf1.15", "tf2.4", "tf2.15", "tf2.18", "tf2.18-tfkeras"]
    # plain string order would get these wrong
    assert sorted(["tf2.4", "tf2.15"]) == ["tf2.15", "tf2.4"]
    assert natural_key("tf2.4") < natural_key("tf2.15") < natural_key("tf2.18")
    assert natural_key("tf2.18") < natural_key("tf2.18-tfkeras")


def test_catalog_is_returned_in_natural_order(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(_toml(_entry("tf2.15"), _entry("tf2.18-tfkeras"), _entry("tf2.4"),
                          _entry("tf2.18")))
    assert [s.id for s in load_catalog(path)] == ["tf2.4", "tf2.15", "tf2.18", "tf2.18-tfkeras"]


# ---------------------------------------------------------------------- validation


def _entry(sid: str = "good", **over: str) -> str:
    fields = {
        "id": f'"{sid}"',
        "python": '"3.11"',
        "requirements": '["tensorflow-cpu==2.15.1", "protobuf<4"]',
        "why": '{ "protobuf<4" = "old TF needs old protobuf" }',
        "tags": '["tf2", "quick"]',
        "description": '"a stack"',
    }
    fields.update(over)
    body = "\n".join(f"{k} = {v}" for k, v in fields.items() if v != "<drop>")
    return f"[[stack]]\n{body}\n"


def _toml(*entries: str) -> str:
    return "\n".join(entries)


def test_valid_entry_parses(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(_toml(_entry("a", env='{ TF_USE_LEGACY_KERAS = "1" }',
                                 keras_module='"tf.keras"')))
    (s,) = load_catalog(path)
    assert s == Stack(id="a", python="3.11",
                      requirements=("tensorflow-cpu==2.15.1", "protobuf<4"),
                      why=(("protobuf<4", "old TF needs old protobuf"),),
                      env=(("TF_USE_LEGACY_KERAS", "1"),), keras_module="tf.keras",
                      tags=("tf2", "quick"), description="a stack")
    assert s.env_dict == {"TF_USE_LEGACY_KERAS": "1"}


# (name, entries, the stack id the message must name, a fragment of the message)
BAD_CATALOGS = [
    ("unknown_key", [_entry("ok1"), _entry("bad1", pyhton='"3.11"')], "bad1", "unknown key 'pyhton'"),
    ("missing_python", [_entry("bad2", python="<drop>")], "bad2", "missing required key 'python'"),
    ("missing_requirements", [_entry("bad3", requirements="<drop>", why="<drop>")], "bad3",
     "missing required key 'requirements'"),
    ("bad_id", [_entry("Bad ID!")], "Bad ID!", "must match"),
    ("bad_python", [_entry("bad4", python='"3"')], "bad4", "python '3'"),
    ("python_not_string", [_entry("bad5", python="3.11")], "bad5", "'python' must be a str"),
    ("requirement_without_why", [_entry("bad6", why="<drop>")], "bad6",
     "requirement 'protobuf<4' has no 'why'"),
    ("why_names_non_requirement", [_entry(
        "bad7", why='{ "protobuf<4" = "x", "numpy<2" = "y" }')], "bad7",
     "why names 'numpy<2', which is not in requirements"),
    ("empty_why", [_entry("bad8", why='{ "protobuf<4" = " " }')], "bad8", "non-empty string"),
    ("empty_requirements", [_entry("bad9", requirements="[]", why="<drop>")], "bad9",
     "non-empty list"),
    ("duplicate_id", [_entry("dup"), _entry("other"), _entry("dup")], "dup",
     "duplicate stack id 'dup'"),
    ("bad_keras_module", [_entry("bad10", keras_module='"tensorflow.keras"')], "bad10",
     "keras_module must be one of"),
    ("bad_runtime", [_entry("bad11", runtime='"podman"')], "bad11", "runtime must be one of"),
    ("image_without_docker", [_entry("bad11b", image='"python:3.11-slim"')], "bad11b", "needs runtime"),
    ("bad_env_name", [_entry("bad12", env='{ lower = "1" }')], "bad12", "env 'lower'"),
    ("bad_tag", [_entry("bad13", tags='["Quick Tag"]')], "bad13", "tags must be"),
    ("sibling_without_remedy", [_entry("a"), _entry("bad14", sibling_of='"a"')], "bad14",
     "'sibling_of' and 'remedy' go together"),
    ("sibling_of_unknown", [_entry("bad15", sibling_of='"nope"', remedy='"pin_x"')], "bad15",
     "sibling_of names 'nope', which is not another stack"),
    ("sibling_of_itself", [_entry("bad16", sibling_of='"bad16"', remedy='"pin_x"')], "bad16",
     "sibling_of names 'bad16'"),
    ("bad_remedy_word", [_entry("a"), _entry("bad17", sibling_of='"a"', remedy='"Pin X"')], "bad17",
     "remedy 'Pin X' must be"),
]


def test_shipped_siblings_differ_by_their_remedy_only() -> None:
    by_id = {s.id: s for s in load_catalog()}
    siblings = [s for s in by_id.values() if s.sibling_of]
    assert {s.remedy for s in siblings} >= {"tf_keras", "pin_h5py2", "pin_jax"}
    for s in siblings:
        base = by_id[s.sibling_of]
        assert s.python == base.python, s.id
        assert s.requirements[0] == base.requirements[0], s.id  # same release under test


@pytest.mark.parametrize(("entries", "stack_id", "fragment"),
                         [b[1:] for b in BAD_CATALOGS], ids=[b[0] for b in BAD_CATALOGS])
def test_catalog_errors_are_one_line_naming_file_and_stack(
        tmp_path: Path, entries: list[str], stack_id: str, fragment: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(_toml(*entries))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert stack_id in msg
    assert fragment in msg


def test_error_names_position_of_the_bad_stack(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(_toml(_entry("a"), _entry("b"), _entry("c", keras_module='"nope"')))
    with pytest.raises(CatalogError, match=r"stack #3 \(c\)"):
        load_catalog(path)


@pytest.mark.parametrize(("text", "fragment"), [
    ("[[stack]\nid = 'x'\n", "not valid TOML"),
    ("id = = 3\n", "not valid TOML"),
    ("", "no [[stack]] entries"),
    ("[settings]\nx = 1\n" + _entry("a"), "unknown top-level key 'settings'"),
    ("stack = 3\n", "no [[stack]] entries"),
    ("stack = [1]\n", "must be a table"),
], ids=["bad_toml", "bad_toml2", "empty", "top_level_key", "stack_not_list", "stack_not_table"])
def test_catalog_file_level_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert fragment in msg


def test_missing_catalog_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(CatalogError, match="catalog file not found") as info:
        load_catalog(path)
    assert str(path) in str(info.value)


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, ValueError)


# ------------------------------------------------------------------------- select


@pytest.fixture
def catalog(tmp_path: Path) -> list[Stack]:
    path = tmp_path / "c.toml"
    path.write_text(_toml(
        _entry("tf2.4", tags='["tf2", "old"]'),
        _entry("tf2.15", tags='["tf2", "quick"]'),
        _entry("k3", tags='["keras3", "quick"]'),
        _entry("tf2.18", tags='["tf2"]'),
    ))
    return load_catalog(path)


def test_select_everything_by_default(catalog: list[Stack]) -> None:
    assert select(catalog) == catalog
    assert [s.id for s in select(catalog)] == ["k3", "tf2.4", "tf2.15", "tf2.18"]


def test_select_by_ids_keeps_catalog_order(catalog: list[Stack]) -> None:
    assert [s.id for s in select(catalog, ids=["tf2.18", "tf2.4"])] == ["tf2.4", "tf2.18"]


def test_select_by_tags(catalog: list[Stack]) -> None:
    assert [s.id for s in select(catalog, tags=["quick"])] == ["k3", "tf2.15"]
    assert [s.id for s in select(catalog, tags=["old", "keras3"])] == ["k3", "tf2.4"]


def test_select_ids_and_tags_is_a_union(catalog: list[Stack]) -> None:
    assert [s.id for s in select(catalog, ids=["tf2.18"], tags=["old"])] == ["tf2.4", "tf2.18"]


def test_select_unknown_id(catalog: list[Stack]) -> None:
    with pytest.raises(CatalogError, match=r"unknown stack 'tf9\.9'") as info:
        select(catalog, ids=["tf2.4", "tf9.9"])
    assert "known: k3, tf2.4, tf2.15, tf2.18" in str(info.value)


def test_select_unknown_tag(catalog: list[Stack]) -> None:
    with pytest.raises(CatalogError, match="unknown tag 'qiuck'") as info:
        select(catalog, tags=["qiuck"])
    assert "quick" in str(info.value)


# ------------------------------------------------------------------ find_python


def _stub(path: Path, first: str, second: str | None = None, rc: int = 0) -> Path:
    """An executable that answers the probe like an interpreter of version ``first``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    second_line = f'echo "{second}"' if second is not None else 'echo "$0"'
    path.write_text(f"#!/bin/sh\necho {first}\n{second_line}\nexit {rc}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty PYENV_ROOT and no COMPAT_PYTHON_* overrides."""
    root = tmp_path / "pyenv"
    (root / "versions").mkdir(parents=True)
    monkeypatch.setenv("PYENV_ROOT", str(root))
    for name in list(os.environ):
        if name.startswith("COMPAT_PYTHON_"):
            monkeypatch.delenv(name)
    return root


needs_sh = pytest.mark.skipif(not Path("/bin/sh").exists(), reason="stub interpreters need /bin/sh")


@needs_sh
def test_override_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          isolated_env: Path) -> None:
    stub = _stub(tmp_path / "odd" / "python", "3.98", "/opt/fake/bin/python3.98")
    monkeypatch.setenv("COMPAT_PYTHON_3_98", str(stub))
    assert find_python("3.98") == "/opt/fake/bin/python3.98"


@needs_sh
def test_override_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 isolated_env: Path) -> None:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = _stub(tmp_path / "odd" / "python", version, "/opt/override/python")
    monkeypatch.setenv("COMPAT_PYTHON_" + version.replace(".", "_"), str(stub))
    assert find_python(version) == "/opt/override/python"


@needs_sh
def test_override_of_the_wrong_version_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  isolated_env: Path) -> None:
    stub = _stub(tmp_path / "odd" / "python", "3.11", "/opt/fake/python")
    monkeypatch.setenv("COMPAT_PYTHON_3_98", str(stub))
    assert find_python("3.98") is None


def test_override_of_a_real_interpreter(monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    monkeypatch.setenv("COMPAT_PYTHON_" + version.replace(".", "_"), sys.executable)
    found = find_python(version)
    assert found is not None
    assert os.path.samefile(found, sys.executable)


def test_nonexistent_version_is_none() -> None:
    assert find_python("2.9") is None
    assert stacks._python_cache == {"2.9": None}


@needs_sh
def test_pyenv_layout_is_discovered_newest_patch_first(isolated_env: Path) -> None:
    versions = isolated_env / "versions"
    _stub(versions / "3.97.2" / "bin" / "python", "3.97")
    newest_good = _stub(versions / "3.97.10" / "bin" / "python", "3.97")
    _stub(versions / "3.97.11" / "bin" / "python", "3.96")  # lies about its version
    _stub(versions / "3.97.13" / "bin" / "python", "3.97", rc=1)  # broken install
    (versions / "3.97.12" / "bin").mkdir(parents=True)  # no bin/python: skipped
    _stub(versions / "3.970.1" / "bin" / "python", "3.970")  # another version entirely
    _stub(versions / "3.97.14-dev" / "bin" / "python", "3.97")  # not X.Y.N: skipped
    assert find_python("3.97") == str(newest_good)


@needs_sh
def test_pyenv_root_without_matching_version(isolated_env: Path) -> None:
    _stub(isolated_env / "versions" / "3.96.1" / "bin" / "python", "3.96")
    assert find_python("3.97") is None


@needs_sh
def test_result_is_cached_per_version(isolated_env: Path) -> None:
    stub = _stub(isolated_env / "versions" / "3.97.1" / "bin" / "python", "3.97")
    assert find_python("3.97") == str(stub)
    stub.unlink()
    assert find_python("3.97") == str(stub)  # cached: not probed again
    assert find_python("3.96") is None
    assert stacks._python_cache == {"3.97": str(stub), "3.96": None}


@needs_sh
def test_interpreter_path_with_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. a home directory "/Users/Jane Doe" on macOS: sys.executable contains a space
    root = tmp_path / "Jane Doe" / ".pyenv"
    (root / "versions").mkdir(parents=True)
    monkeypatch.setenv("PYENV_ROOT", str(root))
    monkeypatch.delenv("COMPAT_PYTHON_3_97", raising=False)
    stub = _stub(root / "versions" / "3.97.1" / "bin" / "python", "3.97")
    assert " " in str(stub)
    assert find_python("3.97") == str(stub)


def test_tables_order_stacks_by_release() -> None:
    """Issue 26 item 3: TF 1.15 -> 2.21 (variants and the tf_keras sibling beside their TF),
    then standalone Keras 3 by version, then backend; not alphabetical (keras3.* first)."""
    from runner.stacks import DEFAULT_CATALOG, load_catalog, stack_key

    ids = [s.id for s in load_catalog(DEFAULT_CATALOG)]
    ordered = sorted(ids, key=stack_key)
    tf = [i for i in ordered if i.startswith("tf")]
    assert ordered[:len(tf)] == tf and ordered[0] == "tf1.15"
    assert tf.index("tf2.2") < tf.index("tf2.10") < tf.index("tf2.16") < tf.index("tf2.16-tfkeras") < tf.index("tf2.17")
    assert tf[-2:] == ["tf2.21", "tf2.21-tfkeras"]
    keras = ordered[len(tf):]
    assert keras[0] == "keras3.0-jax" and keras.index("keras3.2-jax") < keras.index("keras3.10-jax")
    assert keras[-4:] == ["keras3.15-jax", "keras3.15-numpy", "keras3.15-tf", "keras3.15-torch"]
    # ids outside the two families keep their natural order, after them
    assert sorted(["b2", "tf2.4", "a10", "a9"], key=stack_key) == ["tf2.4", "a9", "a10", "b2"]
