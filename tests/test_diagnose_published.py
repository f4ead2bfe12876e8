"""Every failing cell of the published table, re-diagnosed with the current rules (fast tier).

``reports/results.json.gz`` holds each cell's outcome, phase, error type, message (its first
600 characters, scrubbed), traceback tail (the last 800) and the versions of every stack, so
a cell's record can be rebuilt and diagnosed again. What the table does not carry: a
message's or traceback's middle (the store keeps 2,048 and 8,000 characters) and a record's
``details`` besides ``written_as`` and a mismatch's reason (``loaded_class``, which
``model_subclass_lost`` reads, is lost; those 36 cells read as ``training_diverges`` here).

The checks are about what a rule reads, so they hold on that text as well as on a full record:

- no cell's *innermost* message holds another category's defining phrase
  (``Rule.defining`` in runner/diagnose.py: the wording of that rule's cause);
- no ``compile_config`` cell's innermost message names one of the causes issue 23 found
  under it (written out here, independently of the rules);
- the bare "Unknown activation function: function" cells are ``function_config_unreadable``
  without a custom_objects remedy, and a training step that fails is not lost optimizer state;
- no innermost message holds a config dump.

``python tests/test_diagnose_published.py`` prints, per category, the published table's
count (diagnosed from full records when it was written) next to the current rules' count
over the same cells: what a re-report would change.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runner import diagnose  # noqa: E402
from runner.records import ErrorInfo, Outcome, Record  # noqa: E402

PUBLISHED = ROOT / "reports" / "results.json.gz"

pytestmark = pytest.mark.skipif(not PUBLISHED.exists(), reason=f"no published table at {PUBLISHED}")


class Cell(NamedTuple):
    row: dict[str, Any]
    record: Record
    category: str  # the current rules' diagnosis
    innermost: str


def record_from_row(row: Mapping[str, Any], stacks: Mapping[str, Mapping[str, Any]]) -> Record:
    """The record a published row was written from, as far as the table holds it
    (runner/report.py ``_row``: a load or remedy row is the load record, a ``save`` row the
    saver's save record, an ``env`` row the loader's env record)."""
    source = row.get("source")
    kind = {"save": "save", "env": "env"}.get(str(source), "load")
    saver_env = dict(stacks.get(str(row.get("saver")), {}))
    loader_env = dict(stacks.get(str(row.get("loader")), {}))
    error = (ErrorInfo(str(row["error_type"]), str(row.get("error_message") or ""),
                       str(row.get("traceback_tail") or "")) if row.get("error_type") else None)
    details: dict[str, Any] = {"written_as": row.get("written_as") or ""}
    if error is None and row.get("error_message"):
        details["reason"] = row["error_message"]  # a mismatch's reason is its message column
    if kind == "save":
        return Record(record_type="save", cell_id=f"{row['scenario']}:{row['format']}:{row['saver']}",
                      stack=str(row["saver"]), outcome=Outcome(row["outcome"]), saver=row.get("saver"),
                      scenario=row.get("scenario"), format=row.get("format"), phase=row.get("phase"),
                      error=error, env=saver_env, details=details)
    return Record(record_type=kind, cell_id=str(row["cell_id"]), stack=str(row.get("loader")),  # type: ignore[arg-type]
                  outcome=Outcome(row["outcome"]), saver=row.get("saver"), loader=row.get("loader"),
                  scenario=row.get("scenario"), format=row.get("format"), variant=row.get("variant"),
                  phase=row.get("phase"), error=error, max_abs_diff=row.get("max_abs_diff"),
                  env=loader_env, saver_env=saver_env, details=details)


@cache
def failing_cells() -> tuple[Cell, ...]:
    import json

    from runner.gate import read_results_text, results_rows

    data = json.loads(read_results_text(PUBLISHED))
    out = []
    for row in results_rows(data):
        if not Outcome(row["outcome"]).failed:
            continue
        rec = record_from_row(row, data.get("stacks") or {})
        diag = diagnose.diagnose(rec)
        assert diag is not None
        out.append(Cell(row, rec, diag.category, diagnose.error_text(rec).innermost))
    return tuple(out)


def _examples(found: Mapping[tuple[str, str], list[str]], limit: int = 3) -> str:
    return "\n".join(f"  {cat} holds {rule}'s phrase: {len(ids)} cells, e.g. {ids[:limit]}"
                     for (cat, rule), ids in sorted(found.items(), key=lambda kv: -len(kv[1])))


def test_the_table_is_read_whole() -> None:
    cells = failing_cells()
    assert len(cells) > 100_000  # 114,345 failing rows in the table of 2026-12-02
    assert {c.row["source"] for c in cells} >= {"load", "save", "remedy"}


def test_no_category_holds_another_rules_defining_phrase() -> None:
    """A cell whose innermost message words rule R's cause is in R's category. A failure
    lists every (category, R) pair with its cell count: either the rules misfile those
    cells (fix the rules) or R's phrase is not its cause's alone (fix the phrase)."""
    defining = [(r.category, re.compile(r.defining, re.S)) for r in diagnose.RULES if r.defining]
    assert len(defining) >= 20
    found: dict[tuple[str, str], list[str]] = {}
    own = Counter[str]()
    for cell in failing_cells():
        for category, phrase in defining:
            if phrase.search(cell.innermost):
                if category == cell.category:
                    own[category] += 1
                else:
                    found.setdefault((cell.category, category), []).append(cell.row["cell_id"])
    assert not found, "innermost messages naming another category's cause:\n" + _examples(found)
    # not vacuous: the phrases are the table's own wording of those causes
    for category in ("keras3_quantization_config", "keras3_initializer_axes", "keras3_functional_layout",
                     "batchnorm_axis_list", "internal_module_path", "function_config_unreadable",
                     "training_resume_fails", "compile_config", "backend_needs_tensorflow"):
        assert own[category] > 0, category


# The causes issue 23 found under compile_config, in the words of the innermost messages
# (written out here, not taken from the rules).
_NOT_COMPILE = {
    "quantization_config (Keras >= 3.13 layer configs)": r"'quantization_config'",
    "a model class's module path": r"Could not deserialize class '(?:Functional|Sequential)' because its parent module",
    "a Keras 2 BatchNormalization axis list": r"int\(\) argument must be .{0,60}not 'list'",
    "input_axes (Keras 3.15 initializers)": r"unexpected keyword argument '(?:input|output)_axes'",
    "get_tensor (Keras >= 3.11 Functional layout in Keras <= 3.3)": r"get_tensor\(\)",
    "an unknown model class": r"Could not locate class '(?:Functional|Sequential|Model)'",
}


def test_no_compile_config_cell_names_another_cause() -> None:
    found: dict[tuple[str, str], list[str]] = {}
    checked = 0
    for cell in failing_cells():
        if cell.category != "compile_config":
            continue
        checked += 1
        for cause, phrase in _NOT_COMPILE.items():
            if re.search(phrase, cell.innermost):
                found.setdefault(("compile_config", cause), []).append(cell.row["cell_id"])
    assert checked > 3000
    assert not found, _examples(found)
    # ... and each of those causes is in the table, under its own category
    by_cause = {cause: Counter(c.category for c in failing_cells() if re.search(phrase, c.innermost))
                for cause, phrase in _NOT_COMPILE.items()}
    assert all(by_cause.values()), by_cause


def test_bare_function_name_is_unreadable_config_not_a_custom_object() -> None:
    """128 grid cells (regularizers_constraints from Keras 2.6-2.15 in TF <= 2.5 and more)
    say "Unknown activation function: function" without quotes; custom_objects was re-run
    on them and failed: no custom object can be named "function"."""
    bare = [c for c in failing_cells() if re.search(r"Unknown activation function: function\b", c.innermost)]
    grid = [c for c in bare if c.row["source"] == "load"]
    assert len(grid) >= 128
    assert Counter(c.category for c in bare) == Counter({"function_config_unreadable": len(bare)})
    for cell in bare:
        assert "custom_objects" not in [r.id for r in diagnose.diagnose(cell.record).remedies]  # type: ignore[union-attr]


def test_a_failing_training_step_is_not_lost_optimizer_state() -> None:
    resumed = [c for c in failing_cells() if c.innermost.startswith("training could not resume")]
    got = Counter(c.category for c in resumed)
    assert got["optimizer_state_lost"] == 0, got
    assert got["training_resume_fails"] >= 200, got
    assert set(got) <= {"training_resume_fails", "backend_cannot_train", "dependency_api_removed",
                        "loss_dict_misrouted"}, got


def _longest_braces(text: str) -> int:
    """The length of the longest ``{...}`` in ``text`` (an unclosed one runs to the end)."""
    longest, opened = 0, []
    for i, ch in enumerate(text):
        if ch == "{":
            opened.append(i)
        elif ch == "}" and opened:
            longest = max(longest, i - opened.pop() + 1)
    return max([longest, *(len(text) - i for i in opened)])


def test_innermost_messages_hold_no_config_dump() -> None:
    """Wrapper dumps are cut out (``config={…}``); what braces stay are the error's own
    (an identifier such as {'class_name': 'Orthogonal', ...}, a dict of unknown arguments)."""
    dump = re.compile(r"config=\{(?!…)|Full object config: \{(?!…)")
    bad = [c.row["cell_id"] for c in failing_cells() if dump.search(c.innermost) or _longest_braces(c.innermost) > 400]
    assert not bad, (len(bad), bad[:5])
    wrapped = [c for c in failing_cells() if "Exception encountered: " in (c.row.get("traceback_tail") or "")]
    assert len(wrapped) > 10_000
    assert not [c for c in wrapped if "Exception encountered" in c.innermost]


# ---------------------------------------------------------------------------- measurement

def category_counts() -> Iterator[tuple[str, int, int, int, int]]:
    """``(category, published grid cells, current grid cells, published rows, current rows)``
    for every category whose count changed (grid cells: source load/save/env; rows: with the
    remedy runs)."""
    before_grid, after_grid, before_all, after_all = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    for cell in failing_cells():
        old = str(cell.row.get("category") or "")
        before_all[old] += 1
        after_all[cell.category] += 1
        if cell.row["source"] != "remedy":
            before_grid[old] += 1
            after_grid[cell.category] += 1
    for cat in sorted(set(before_all) | set(after_all)):
        counts = (before_grid[cat], after_grid[cat], before_all[cat], after_all[cat])
        if counts[0] != counts[1] or counts[2] != counts[3]:
            yield (cat, *counts)


def main() -> None:
    print(f"{'category':32} {'grid before':>11} {'after':>7} {'rows before':>11} {'after':>7}")
    for cat, bg, ag, ba, aa in category_counts():
        print(f"{cat:32} {bg:11,} {ag:7,} {ba:11,} {aa:7,}")


if __name__ == "__main__":
    main()
