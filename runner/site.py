"""The offline site of the report: ``index.html`` + ``site/`` assets + ``data/`` scripts.

Stdlib only: report.py hands it plain rows. The site works from ``file://`` (and from
any static host): no CDN, no fetch() (Chromium blocks fetch of local files), so data
arrives as ``<script>`` files that assign to ``window.COMPAT_DATA``:

- ``data/meta.js`` (loaded with the page, small): selection, stacks and versions,
  scenarios and their one-line descriptions, formats, outcomes, categories, the saver x
  loader overview per format, the grids that exist, CHANGES.md's text;
- ``data/<format>.js`` (loaded when a view needs that format): the grids of that format,
  each cell as :data:`STRIDE` integers (outcome, note, remedy, the predictions' max |diff|,
  the resumed training step's max |diff|), notes (which hold the training verdict) and
  messages each once;
- ``data/<format>.tb.js`` (loaded when a cell's details are opened): traceback tails.

The page itself (``runner/site_assets/``: index.html, app.js, style.css) is static and
ships as package data. Every output is deterministic (sorted keys, first-appearance
order of rows the report already sorted).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.heatmap import VIRIDIS
from runner.stacks import stack_key

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The system Chromium the browser tests and ``bench --site`` drive (never downloaded):
    ``$COMPAT_CHROMIUM`` if it names a file, else the first of :data:`CHROMIUM_NAMES` on PATH."""
    import os
    import shutil

    named = os.environ.get("COMPAT_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)

__all__ = ["ASSETS", "site_files"]

ASSETS = Path(__file__).resolve().parent / "site_assets"
ASSET_FILES = ("app.js", "style.css", "history.js")  # history.js: the History view (runner.history)
STRIDE = 5  # integers per cell in a grid's flat list (meta.stride tells the page)
BISECT_KEYS = ("first_bad_release", "last_good_release", "release_notes")  # a note's last three fields


def _js(name: str, payload: Any) -> str:
    """A data script: ``COMPAT_DATA[name] = payload`` (JSON, deterministic)."""
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return ("window.COMPAT_DATA = window.COMPAT_DATA || {};\n"
            f"window.COMPAT_DATA[{json.dumps(name)}] = {body};\n")


class _Index:
    """First-appearance numbering of distinct values."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}

    def __call__(self, value: Any) -> int:
        return self.ids.setdefault(value, len(self.ids))

    def values(self) -> list[Any]:
        return list(self.ids)


def _diff(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else float(f"{f:.3g}")  # NaN -> None; 3 significant digits on screen


def _format_data(fmt: str, cells: Sequence[Mapping[str, Any]], stack_ix: Mapping[str, int],
                 scenario_ix: Mapping[str, int], outcome_ix: Mapping[str, int]) -> tuple[dict[str, Any], list[str]]:
    notes, msgs, tbs, remedies, diffs, written = _Index(), _Index(), _Index(), _Index(), _Index(), _Index()
    grids: dict[tuple[str, str], dict[str, Any]] = {}
    by_grid: dict[tuple[str, str], dict[tuple[str, str], Mapping[str, Any]]] = {}
    for c in cells:
        by_grid.setdefault((str(c["scenario"]), str(c["variant"])), {})[(str(c["saver"]), str(c["loader"]))] = c
    for (scenario, variant), part in by_grid.items():
        savers = sorted({k[0] for k in part}, key=stack_key)
        loaders = sorted({k[1] for k in part}, key=stack_key)
        flat: list[int] = []
        wrote = {}
        for sv in savers:
            for lo in loaders:
                found = part.get((sv, lo))
                if found is None:
                    flat += [-1] + [0] * (STRIDE - 1)
                    continue
                c = found
                note = notes((str(c["category"] or ""), str(c["phase"] or ""), str(c["error_type"] or ""),
                              msgs(str(c["error_message"] or "")), str(c["source"] or ""),
                              tbs(str(c["traceback_tail"] or "")), str(c.get("prediction") or ""),
                              str(c.get("training") or ""), msgs(str(c.get("training_reason") or "")),
                              msgs(str(c.get("signature") or "")),
                              *(str(c.get(k) or "") for k in BISECT_KEYS)))
                rem = remedies(str(c["remedy"])) + 1 if c["remedy"] else 0
                d, td = _diff(c["max_abs_diff"]), _diff(c.get("training_diff"))
                flat += [outcome_ix[str(c["outcome"])], note, rem, diffs(d) + 1 if d is not None else 0,
                         diffs(td) + 1 if td is not None else 0]
                if c["written_as"] and sv not in wrote:
                    wrote[sv] = written(str(c["written_as"]))
        by_design = any(c.get("meant_to_fail") for c in part.values())
        grids[(scenario, variant)] = {"s": scenario_ix[scenario], "v": variant, **({"x": 1} if by_design else {}),
                                      "sv": [stack_ix[s] for s in savers], "lo": [stack_ix[lo] for lo in loaders],
                                      "c": flat, "w": [wrote.get(s, -1) for s in savers]}
    payload = {"format": fmt, "grids": list(grids.values()), "notes": [list(n) for n in notes.values()],
               "msgs": msgs.values(), "remedies": remedies.values(), "diffs": diffs.values(),
               "written": written.values()}
    return payload, tbs.values()


def _overview(cells: Sequence[Mapping[str, Any]], stacks: Sequence[str]) -> list[list[int]]:
    """Per saver x loader (flattened, stack order): [ok, cells that could exist], the cells
    meant to fail (a custom-object scenario loaded without its class) left out."""
    ix = {s: i for i, s in enumerate(stacks)}
    grid = [[0, 0] for _ in range(len(stacks) * len(stacks))]
    for c in cells:
        if c["outcome"] == "not_applicable" or c.get("meant_to_fail"):
            continue
        k = ix[str(c["saver"])] * len(stacks) + ix[str(c["loader"])]
        grid[k][1] += 1
        grid[k][0] += c["outcome"] == "ok"
    return grid


def site_files(*, selection: str, stacks: Sequence[Mapping[str, Any]], cells: Sequence[Mapping[str, Any]],
               outcomes: Sequence[Mapping[str, str]], categories: Mapping[str, tuple[str, str]],
               formats: Sequence[str], changes_md: str, fixed_mark: str,
               slug: Callable[[str], str], headline: str = "",
               scenario_docs: Mapping[str, str] | None = None,
               verdicts: Mapping[tuple[str, str, str], Sequence[str]] | None = None) -> dict[str, str]:
    """Every file of the site, by path relative to the report folder.

    ``cells``: the table cells (no remedy runs), each a dict with the report's columns
    (ids, outcome, phase, category, remedy, max_abs_diff, prediction, training,
    training_diff, training_reason, written_as, source, error_type, error_message,
    traceback_tail). ``stacks``: the versions table rows (id first). ``headline``: the
    report's one-sentence counts, shown under the selection. ``scenario_docs``: each
    scenario's one-line description (Markdown code quotes dropped on the page). ``verdicts``:
    ``{(saver, format, loader): lines}`` of explain's upgrade verdict (report.upgrade_verdicts),
    one data file per format and saver (``data/verdicts/<format>/<saver>.js``, loaded by the
    upgrade path and a cell's details). A cell may also carry ``signature`` (its error's
    normalised message: search groups by it), ``meant_to_fail`` (left out of the overview's
    percentages) and the bisect columns :data:`BISECT_KEYS`.
    """
    ids = sorted({str(c["saver"]) for c in cells} | {str(c["loader"]) for c in cells}
                 | {str(s["id"]) for s in stacks}, key=stack_key)
    stack_ix = {s: i for i, s in enumerate(ids)}
    scenarios = sorted({str(c["scenario"]) for c in cells})
    scenario_ix = {s: i for i, s in enumerate(scenarios)}
    outcome_ix = {str(o["id"]): i for i, o in enumerate(outcomes)}
    info = {str(s["id"]): dict(s) for s in stacks}
    docs = scenario_docs or {}
    files: dict[str, str] = {}
    by_format: dict[str, list[Mapping[str, Any]]] = {f: [] for f in formats}
    for c in cells:
        by_format.setdefault(str(c["format"]), []).append(c)
    grids: list[list[Any]] = []
    data_files: dict[str, str] = {}
    overview = {"": _overview(cells, ids)}
    for fmt, fmt_cells in by_format.items():
        payload, tbs = _format_data(fmt, fmt_cells, stack_ix, scenario_ix, outcome_ix)
        name = f"data/{slug(fmt)}.js"
        files[name] = _js(fmt, payload)
        files[f"data/{slug(fmt)}.tb.js"] = _js(f"{fmt}.tb", tbs)
        data_files[fmt] = name
        data_files[f"{fmt}.tb"] = f"data/{slug(fmt)}.tb.js"
        overview[fmt] = _overview(fmt_cells, ids)
        counts: dict[tuple[int, str], int] = {}
        for c in fmt_cells:
            key = (scenario_ix[str(c["scenario"])], str(c["variant"]))
            counts[key] = counts.get(key, 0) + 1
        grids += [[s, fmt, v, n] for (s, v), n in counts.items()]
    meta = {
        "selection": selection,
        "stacks": [{"id": s, **{k: v for k, v in info.get(s, {}).items() if k != "id"}} for s in ids],
        "scenarios": scenarios,
        "scenarioDocs": {s: docs[s].replace("`", "") for s in scenarios if docs.get(s)},
        "formats": list(by_format), "grids": grids,
        "variants": sorted({str(c["variant"]) for c in cells}, key=lambda v: (v != "default", v)),
        "outcomes": [dict(o) for o in outcomes], "categories": {k: list(v) for k, v in categories.items()},
        "overview": overview, "files": data_files, "changes": changes_md, "fixedMark": fixed_mark,
        "viridis": list(VIRIDIS), "cells": len(cells), "stride": STRIDE, "headline": headline,
    }
    by_path: dict[tuple[str, str], dict[str, list[str]]] = {}
    for (saver, fmt, loader), lines in (verdicts or {}).items():
        by_path.setdefault((fmt, saver), {})[loader] = list(lines)
    for (fmt, saver), per_loader in by_path.items():
        name = f"verdict:{fmt}:{saver}"
        data_files[name] = f"data/verdicts/{slug(fmt)}/{slug(saver)}.js"
        files[data_files[name]] = _js(name, per_loader)
    files["data/meta.js"] = _js("meta", meta)
    for name in ASSET_FILES:
        files[f"site/{name}"] = (ASSETS / name).read_text(encoding="utf-8")
    files["index.html"] = (ASSETS / "index.html").read_text(encoding="utf-8")
    # no history (site/history.js says so); the report replaces it with runner.history's
    files["data/history.js"] = _js("history", {"format": 1, "problem": "", "kinds": [], "publications": []})
    return files
