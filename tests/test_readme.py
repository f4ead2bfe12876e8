"""The README's claims about the published tables match the files in reports/."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _published_index() -> str:
    """The published table's index: reports/README.md (matrix.md before the split into pages)."""
    index = REPO / "reports" / "README.md"
    return (index if index.is_file() else REPO / "reports" / "matrix.md").read_text(encoding="utf-8")


def test_excerpt_is_from_the_published_table() -> None:
    block = README.split("<!-- excerpt", 1)[1].split("-->", 1)[1].split("<!-- /excerpt -->", 1)[0]
    published = _published_index().splitlines()
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert len(lines) >= 8
    for line in lines:
        if line.endswith("…"):  # a long footnote, cut in the README
            assert any(p.startswith(line[:-1]) for p in published), line
        else:
            assert line in published, line


def test_versions_table_is_the_published_one() -> None:
    published = _published_index()
    rows = re.findall(r"^\| (\S+)\s+\| (3\.\d+\.\d+)\s+\| (\S+)\s+\| (\S+)\s+\|", README, re.M)
    assert len(rows) >= 6
    for row in rows:
        stack, python, tf, keras = row
        assert re.search(rf"^\| {re.escape(stack)}\s+\| {re.escape(python)}\s+\| {re.escape(tf)}\s+\| "
                         rf"{re.escape(keras)}\s+\|", published, re.M), row


def test_linked_files_exist() -> None:
    for link in re.findall(r"\]\(((?:reports|docs)/[^)#]+)\)", README):
        assert (REPO / link).exists(), link


def test_category_table_lists_every_rule() -> None:
    from runner.diagnose import RULES

    block = README.split("| family | categories (ids) |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"`(\w+)`", block)
    assert sorted(listed) == sorted(r.category for r in RULES)
