"""The shipped catalog's standalone Keras 3 line (issue 25 item 1): every minor in the catalog.

What the catalog claims about each Keras 3 release, checked on the shipped file: every
minor 3.0-3.15 has a standalone stack pinned to one exact release; the JAX ones carry the
era pins that an install and a real fit + save + load showed necessary (docs/benchmarks.md,
"Every Keras 3 minor"), and no pin where today's jax works.
"""

from __future__ import annotations

import re

import pytest

from runner.stacks import Stack, load_catalog

# The minors added for issue 25: id -> (keras release, jax pin or "" for today's jax)
ADDED = {
    "keras3.1-jax": ("3.1.1", "0.4.25"),
    "keras3.2-jax": ("3.2.1", "0.4.26"),
    "keras3.5-jax": ("3.5.0", "0.4.31"),
    "keras3.7-jax": ("3.7.0", "0.4.35"),
    "keras3.8-jax": ("3.8.0", "0.4.38"),
    "keras3.10-jax": ("3.10.0", ""),
    "keras3.12-jax": ("3.12.4", ""),
    "keras3.14-jax": ("3.14.1", ""),
}


@pytest.fixture(scope="module")
def by_id() -> dict[str, Stack]:
    return {s.id: s for s in load_catalog()}


def _keras_release(stack: Stack) -> tuple[int, int, int] | None:
    """The exact Keras 3 release a stack pins (``keras==3.M.P``), else None."""
    for req in stack.requirements:
        m = re.fullmatch(r"keras==3\.(\d+)\.(\d+)", req)
        if m:
            return 3, int(m.group(1)), int(m.group(2))
    return None


def _jax_pin(stack: Stack) -> str | None:
    """``"0.4.25"`` for ``jax[cpu]==0.4.25``, ``""`` for unpinned ``jax[cpu]``, None: no jax."""
    for req in stack.requirements:
        if req == "jax[cpu]":
            return ""
        if req.startswith("jax[cpu]=="):
            return req.split("==", 1)[1]
    return None


def test_every_keras3_minor_is_in_the_catalog(by_id: dict[str, Stack]) -> None:
    releases = {s.id: _keras_release(s) for s in by_id.values()}
    minors = {r[1] for r in releases.values() if r is not None}
    assert minors >= set(range(16)), sorted(set(range(16)) - minors)
    # the ones the TF stacks bring (3.4, 3.6, 3.9, 3.11, 3.13) plus a standalone stack
    # for each of the others
    standalone = {releases[s.id][1] for s in by_id.values()  # type: ignore[index]
                  if "standalone" in s.tags and releases[s.id] is not None}
    assert standalone >= {0, 1, 2, 3, 5, 7, 8, 10, 12, 14, 15}


@pytest.mark.parametrize("sid", sorted(ADDED))
def test_added_stack_is_standalone_keras_on_jax(by_id: dict[str, Stack], sid: str) -> None:
    release, jax = ADDED[sid]
    s = by_id[sid]
    assert s.requirements[0] == f"keras=={release}"  # the release under test, exactly
    assert s.python == "3.11"
    assert s.env_dict == {"KERAS_BACKEND": "jax"}
    assert s.keras_module == "keras"
    assert s.tags == ("keras3", "standalone", "backend-jax")  # not quick: the quick table stays small
    assert not s.sibling_of and not s.remedy
    assert not any(r.startswith(("tensorflow", "torch")) for r in s.requirements)
    assert _jax_pin(s) == jax
    assert release in s.description and "JAX" in s.description
    if jax:
        assert jax in s.description


def test_jax_is_pinned_exactly_where_fit_needs_spmd_mode(by_id: dict[str, Stack]) -> None:
    """Keras 3.0-3.8 call jax.spmd_mode in fit, which today's jax no longer has: their jax
    stacks pin the jax of their era and say so, except the stack whose point is the break
    (keras3.0-jax, with its remedy sibling keras3.0-jax0.4). From 3.10 on, today's jax."""
    for s in by_id.values():
        release, jax = _keras_release(s), _jax_pin(s)
        if release is None or jax is None or s.env_dict.get("KERAS_BACKEND") != "jax":
            continue
        if release[1] >= 10:
            assert jax == "", s.id
        elif s.id != "keras3.0-jax":
            assert jax.startswith("0.4."), s.id
            assert "spmd_mode" in dict(s.why)[f"jax[cpu]=={jax}"], s.id


def test_era_pins_come_with_what_they_need(by_id: dict[str, Stack]) -> None:
    for s in by_id.values():
        release, jax = _keras_release(s), _jax_pin(s)
        if release is None:
            continue
        # jaxlib 0.4.25 is built against numpy 1.x (numpy 2: _ARRAY_API not found)
        if jax == "0.4.25":
            assert "numpy<2" in s.requirements, s.id
        # keras 3.0-3.3 import packaging without declaring it (TensorFlow brings it)
        if release[1] <= 3 and not any(r.startswith("tensorflow") for r in s.requirements):
            assert "packaging" in s.requirements, s.id


def test_standalone_keras3_ids_sort_by_minor(by_id: dict[str, Stack]) -> None:
    jax_ids = [sid for sid in by_id if re.fullmatch(r"keras3\.\d+-jax", sid)]
    assert [int(sid[len("keras3."):-len("-jax")]) for sid in jax_ids] == \
        [0, 1, 2, 5, 7, 8, 10, 12, 14, 15]
