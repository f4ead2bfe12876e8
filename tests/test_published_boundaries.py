"""The Keras 3 minor boundaries users report, in the published table (fast tier).

Keras 3 breaks its own files at minor boundaries, newer file -> older loader (issue 25):
files of Keras >= 3.13 fail in <= 3.12 on ``quantization_config``, files of 3.15 in <= 3.14
on the initializers' ``input_axes``, files of 3.11/3.12 in <= 3.3 on Functional's
``get_tensor()``. Each boundary must appear in the right cells with its own category:

- every cell of the category has a saver at or past the boundary and a loader before it;
- every pair of Keras 3 stacks across the boundary shows it in at least one cell (so a
  republish that lost a stack's column, or filed the cause under another category, fails);
- the savers on the far side read their own files (the file is not broken, the older loader
  is), and loaders from the boundary on never show the category.

Run against ``reports/results.json.gz``, each failing cell diagnosed by the current rules
(the table's own category column predates the innermost-cause fix of issue 23); after a
republish with every Keras 3 minor this is the check that the table says what is known
before it is committed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner import diagnose  # noqa: E402
from runner.diagnose import major_minor  # noqa: E402
from runner.gate import read_results_text, results_rows  # noqa: E402
from runner.records import Outcome  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_diagnose_published import record_from_row  # noqa: E402

PUBLISHED = ROOT / "reports" / "results.json.gz"
pytestmark = pytest.mark.skipif(not PUBLISHED.exists(), reason=f"no published table at {PUBLISHED}")

# (category, first Keras 3 minor whose files carry the cause, last loader minor that fails on
# it, last saver minor that must show it in every older loader: a newer saver's files may
# stop on a later boundary's cause first)
BOUNDARIES = (
    ("keras3_quantization_config", (3, 13), (3, 12), (3, 99)),
    ("keras3_initializer_axes", (3, 15), (3, 14), (3, 99)),
    ("keras3_functional_layout", (3, 11), (3, 3), (3, 12)),
)


@cache
def _table() -> tuple[dict[str, tuple[int, int]], tuple[dict[str, Any], ...]]:
    data = json.loads(read_results_text(PUBLISHED))
    minors = {sid: mm for sid, env in (data.get("stacks") or {}).items()
              if (mm := major_minor((env or {}).get("keras"))) is not None}
    rows = []
    for row in results_rows(data):
        if row.get("source") not in ("load", "remedy") or row.get("variant") != "default":
            continue
        category = row.get("category")
        if Outcome(row["outcome"]).failed:  # the current rules' category, not the table's column
            diag = diagnose.diagnose(record_from_row(row, data.get("stacks") or {}))
            category = diag.category if diag else ""
        rows.append({**row, "category": category})
    return minors, tuple(rows)


@pytest.mark.parametrize(("category", "first", "last_loader", "last_saver"), BOUNDARIES,
                         ids=[b[0] for b in BOUNDARIES])
def test_boundary_in_the_right_cells(category: str, first: tuple[int, int], last_loader: tuple[int, int],
                                     last_saver: tuple[int, int]) -> None:
    minors, rows = _table()
    keras3 = {sid: mm for sid, mm in minors.items() if mm[0] == 3}
    shown: dict[tuple[str, str], int] = defaultdict(int)
    wrong = []
    for row in rows:
        if row.get("category") != category:
            continue
        s, lo = minors.get(row["saver"]), minors.get(row["loader"])
        if s is None or lo is None or not (s >= first and lo <= last_loader and lo[0] == 3):
            wrong.append(row["cell_id"])
        shown[(row["saver"], row["loader"])] += 1
    assert not wrong, f"{category} outside its boundary: {len(wrong)} cells, e.g. {wrong[:5]}"
    savers = sorted(s for s, mm in keras3.items() if first <= mm <= last_saver)
    loaders = sorted(lo for lo, mm in keras3.items() if mm <= last_loader)
    assert savers and loaders, (category, sorted(keras3))
    missing = [(s, lo) for s in savers for lo in loaders if not shown[(s, lo)]]
    assert not missing, f"{category}: pairs across the boundary without it: {missing}"
    # Twin: the newer files are fine; each such saver reads its own.
    for saver in savers:
        own = [r for r in rows if r["saver"] == saver and r["loader"] == saver and r["format"] in ("h5", "keras")]
        assert any(r["outcome"] == "ok" for r in own), saver


def test_the_table_has_keras3_stacks_on_both_sides() -> None:
    minors, _rows = _table()
    keras3 = sorted({mm for mm in minors.values() if mm[0] == 3})
    assert keras3[0] <= (3, 3) and keras3[-1] >= (3, 15), keras3
