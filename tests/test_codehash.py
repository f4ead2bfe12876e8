"""The cache key hashes behaviour: comments, docstrings and layout do not change it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.codehash import code_digest, source_digest

BASE = '''"""Module doc."""
import os


def f(a, b=1):
    """Doc."""
    return a + b  # add


class C:
    x = [1, 2, 3]
'''


def test_comments_docstrings_and_layout_do_not_count() -> None:
    reformatted = '''import os
# a comment


def f(a,
      b=1):
    return (a + b)


class C:
    """Another docstring."""
    x = [1,
         2, 3]
'''
    assert source_digest(BASE) == source_digest(reformatted)


@pytest.mark.parametrize("change", [
    ("return a + b", "return a - b"),
    ("b=1", "b=2"),
    ("x = [1, 2, 3]", "x = [1, 2, 3.0]"),
    ("import os", "import sys"),
    ('"""Doc."""\n    return', '"""Doc."""\n    print(1)\n    return'),
])
def test_behaviour_changes_count(change: tuple[str, str]) -> None:
    old, new = change
    assert old in BASE
    assert source_digest(BASE) != source_digest(BASE.replace(old, new, 1))


def test_a_string_statement_that_is_not_a_docstring_counts() -> None:
    assert source_digest("x = 1\n'not a doc'\n") != source_digest("x = 1\n")


def test_file_digest_follows_edits(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    first = code_digest(path)
    path.write_text("x = 1  # same behaviour, longer file\n")
    assert code_digest(path) == first
    path.write_text("x = 22\n")
    assert code_digest(path) != first


def test_unparsable_source_raises() -> None:
    with pytest.raises(SyntaxError):
        source_digest("def (:\n")
