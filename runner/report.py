"""Published tables: a pure function of the records in the store.

The only module that imports pandas. One tidy DataFrame with one row per cell (saver
artifact x loader x variant) becomes the set of files under ``reports/``:

- ``README.md``: the index GitHub shows for the folder (selection, the headline counts
  that keep "predictions differ" apart from "predictions match, training does not resume"
  (:func:`headline`), versions, legend, summaries, the saver x loader overview and
  heatmap, failure categories, links);
  ``grids/<scenario>.md``: one page per scenario with its saver x loader grids per format
  and load variant, footnotes naming each failure and the ids of its cells;
  ``matrix.md`` (where the old single page pointed), ``errors.md`` (failure catalogue),
  ``CHANGES.md`` (what changed since the previous published table, by the gate's
  comparison);
- ``heatmap.svg`` and ``heatmaps/<format>.svg`` (runner.heatmap);
- ``index.html`` with ``site/`` and ``data/``: the offline site (runner.site);
- ``results.csv.gz`` (flat) and ``results.json.gz`` (schema 4, what the gate reads), both gzip'd;
  their layouts are in docs/reports-schema.md.

Output is deterministic: rows and columns in natural order, no timestamps, no paths of
the machine that ran it. The report is written whole into a new folder and swapped in
(:func:`_publish`), so the folder holds the complete old or the complete new report at
every instant, even across a SIGKILL; files of the set a rewrite no longer produces are
gone, files in the folder that are not the report's are carried over. Record files
that cannot be used are skipped and named, never a traceback.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import errno
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from tabulate import tabulate

from runner import diagnose, explain, faults, gate, heatmap, history, site
from runner.bisect_results import results_digest, table_annotations
from runner.cells import held_at_full_limit
from runner.records import TRAINING_FAILURES, Outcome, Record, Store, atomic_write_set
from runner.records import first_line as _first_line
from runner.scenario_catalog import DEFAULT_SCENARIOS, FORMATS, ScenarioError, Selection, discover_scenarios
from runner.stacks import CatalogError, load_catalog, stack_key

__all__ = ["COLUMNS", "CSV_COLUMNS", "JSON_COLUMNS", "REPORT_FILES", "SYMBOLS", "NothingToReport", "build_frame",
           "changes_markdown", "footnoted", "headline", "not_final_reason", "results_json", "skipped_note",
           "terminal_summary", "write_reports"]

# Symbols every font with basic Unicode (DejaVu) draws: no emoji-font glyph.
SYMBOLS: dict[str, str] = {
    "ok": "✓",
    "mismatch": "≠",
    "training_mismatch": "◐",
    "load_error": "✗",
    "save_error": "S",
    "not_applicable": "–",
    "timeout": "◷",
    "crash": "!",
    "protocol_error": "?",
    "env_unavailable": "∅",
    "not_run": "·",
}
MEANINGS: dict[str, str] = {
    "ok": "loaded, and predictions match the saver's within the scenario tolerance (a trained model: "
          "one more training step also lands where the saver's did, unless the format or load variant "
          "is inference-only; the training column says)",
    "mismatch": "loaded, but predictions differ from the saver's beyond tolerance (max |diff| in the CSV)",
    "training_mismatch": "loaded, predictions match, but the trained model does not resume training like "
                         "the saver's: optimizer state lost, the next step diverges, or it cannot train "
                         "(the training column says which)",
    "load_error": "the loader raised (type and message in the footnote)",
    "save_error": "the saver could not write this artifact, so nothing to load",
    "not_applicable": "cannot exist: the saving stack cannot write it, or the loading stack has no "
                      "way to read that format at all (e.g. an exported SavedModel without TensorFlow)",
    "timeout": "no result within the full time limit (one interrupted at a shorter, adaptive limit is "
               "not final and shows as not_run)",
    "crash": "the worker process died in this cell (signal or exit code in the footnote)",
    "protocol_error": "the worker broke the runner's protocol",
    "env_unavailable": "the stack could not be built or imported (reason in the footnote)",
    "not_run": "no final result yet: the cell has not been run, or it timed out below the full limit "
               "(the message says)",
}
# Light tints of the Okabe-Ito hues, so that ok (bluish green) and the failures (vermillion, orange,
# yellow, reddish purple) stay apart for deuteranopes and protanopes (tests/test_site_browser.py
# simulates both); every symbol is dark ink on its fill (>= 4.5:1).
COLORS: dict[str, str] = {
    "ok": "#a6e3d0", "mismatch": "#ffdd99", "training_mismatch": "#fff3a0", "load_error": "#f6b89a",
    "save_error": "#eab8d6",
    "not_applicable": "#eeeeee", "timeout": "#cfc6ee", "crash": "#c7b5e6",
    "protocol_error": "#b0bec5", "env_unavailable": "#d6d6d6", "not_run": "#fafafa",
}
# A table cell's bisect (runner/bisect.py): the first release where its outcome changed, the
# release before it and the first one's notes; empty when not bisected (docs/reports-schema.md).
BISECT_COLUMNS = ("first_bad_release", "last_good_release", "release_notes")
COLUMNS = [
    "cell_id", "scenario", "format", "variant", "saver", "loader", "outcome", "phase",
    "error_type", "error_message", "category", "remedy", "max_abs_diff",
    "prediction", "training", "training_diff", "training_reason", "written_as",
    "saver_python", "saver_tensorflow", "saver_keras", "saver_backend",
    "loader_python", "loader_tensorflow", "loader_keras", "loader_backend",
    "source", "traceback_tail", *BISECT_COLUMNS,
]
VERSION_KEYS = ("python", "tensorflow", "keras", "backend")
# The published files: results.csv.gz is the flat table a spreadsheet or pandas reads
# (messages cut to their first line); results.json.gz keeps every distinct error once.
CSV_COLUMNS = ["cell_id", "scenario", "format", "variant", "saver", "loader", "outcome", "phase",
               "category", "remedy", "error_type", "error_message", "max_abs_diff", "prediction", "training",
               "training_diff", "training_reason", "written_as", "source", *BISECT_COLUMNS]
CSV_MESSAGE_CHARS = 160
# Top-level files every report writes; the folders below hold the rest of the set.
RESULTS_JSON = gate.RESULTS_JSON
REPORT_FILES = ("README.md", "matrix.md", "errors.md", "CHANGES.md", "heatmap.svg", "index.html",
                "results.csv.gz", RESULTS_JSON)
REPORT_DIRS = ("grids", "heatmaps", "site", "data", history.FOLDER)  # wholly the report's: stale files removed
LEGACY_FILES = ("results.csv", "results.json")  # written by earlier layouts; a rewrite removes them
RESULTS_SCHEMA = gate.RESULTS_SCHEMAS[-1]
JSON_COLUMNS = ["scenario", "format", "variant", "saver", "loader", "outcome", "phase", "category",
                "remedy", "max_abs_diff", "prediction", "training", "training_diff", "training_reason",
                "written_as", "source", *BISECT_COLUMNS, "error_id"]
JSON_MESSAGE_CHARS = 600
JSON_TRACEBACK_CHARS = 800
INDEX_MAX_BYTES = 200_000  # GitHub renders Markdown up to a size; stay well below it
PAGE_MAX_BYTES = 500_000
CHANGES_LIST_MAX = 200  # cell ids listed per kind of change in CHANGES.md
# What a correct save of each format looks like on disk (the worker sniffs magic bytes).
_EXPECTED_WRITE = {"h5": "h5", "keras": "keras_v3", "savedmodel": "savedmodel",
                   "json+weights": "json", "export": "savedmodel"}
TRACEBACK_CHARS = 1500


class _Scrubber:
    """Replace paths of this machine (store, repo, home, temp, interpreters) in text."""

    def __init__(self, store: Store) -> None:
        repo = Path(__file__).resolve().parent.parent
        pairs = [(str(store.root), "<store>"), (str(repo), "<repo>")]
        for var, label in (("PYENV_ROOT", "<pyenv>"), ("UV_CACHE_DIR", "<uv-cache>")):
            if os.environ.get(var):
                pairs.append((os.environ[var], label))
        pairs += [(str(Path.home()), "~"), (tempfile.gettempdir().rstrip("/") + "/", "<tmp>/")]
        self.pairs = sorted({p for p in pairs if len(p[0]) > 1}, key=lambda p: -len(p[0]))
        # Texts repeat across cells (one error under many loaders): each distinct text is
        # scrubbed once (the full store's ~390,000 calls took most of a minute of regexes).
        self._done: dict[str, str] = {}

    def _cut_path(self, m: re.Match[str]) -> str:
        """The label of the most general path of this machine the cut text begins."""
        labels = [(len(old), new) for old, new in self.pairs if len(m[1]) > 2 and old.startswith(m[1])]
        return min(labels)[1] if labels else m[1]

    def __call__(self, text: str | None) -> str:
        text = text or ""
        done = self._done.get(text)
        if done is None:
            done = self._done[text] = self._scrub(text)
        return done

    def _scrub(self, text: str) -> str:
        if _CUT in text:  # the worker cut a long text inside a path: "/home/us ...[truncated]"
            text = _CUT_PATH_RE.sub(self._cut_path, text)
        for old, new in self.pairs:
            text = text.replace(old, new)
        # One artifact path per saver would split one error into many footnotes, and
        # object ids differ on every run: neither may make a diff of reports/ noisy.
        text = _ARTIFACT_RE.sub("<artifact>", text)
        text = _ENV_RE.sub("<env>", text)  # a stack's venv: where the store or COMPAT_ENVS_DIR was
        text = _OBJECT_ID_RE.sub(r"\1<id>", text)
        return _ADDRESS_RE.sub("0x…", text)


# Any store's artifact directory (a merged store's records name the stores of the jobs
# or shards that made them): the path up to and including artifacts/<saver>/<scenario>/<fmt>.
_ARTIFACT_RE = re.compile(r"(?:<\w+>|~)?(?:/[^/\s'\"]+)*?/artifacts/[^/\s'\"]+/[^/\s'\"]+/[^/\s'\"]+")
# A stack's environment (runner/envs.py names it py<X.Y>-<hash>), wherever it was built: the
# report of a merged store must not depend on where each part's store or venvs were.
_ENV_RE = re.compile(r"(?:<\w+>|~)?(?:/[^/\s'\"]+)*?/envs/py\d+\.\d+-[0-9a-f]{6,}")
_CUT = " ...[truncated]"  # the worker's mark at the end of a text it cut (runner/_worker/worker.py)
_CUT_PATH_RE = re.compile(r"(/[^\s'\"]*)(?= \.\.\.\[truncated\])")
_OBJECT_ID_RE = re.compile(r"('shared_object_id': )\d+")
_ADDRESS_RE = re.compile(r"0x[0-9a-f]{6,}")


def _versions(prefix: str, env: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{k}": env.get(k) for k in VERSION_KEYS}


# What a load's outcome says of its predictions where the record does not (hand-made records).
_IMPLIED_PREDICTION = {"ok": "match", "training_mismatch": "match", "mismatch": "differ"}


def not_final_reason(rec: Record) -> str | None:
    """Why a load record is not a result yet (None: it is): a timeout that did not hold at
    the full limit (:func:`runner.cells.held_at_full_limit`) says only that the cell was
    slower than an adaptive limit; the report shows it as ``not_run`` with this reason."""
    if rec.record_type != "load" or rec.outcome is not Outcome.TIMEOUT or held_at_full_limit(rec):
        return None
    limit, full = rec.details.get("limit_s"), rec.details.get("full_limit_s")
    at = f"the adaptive {limit:g} s limit" if isinstance(limit, (int, float)) else "a shorter, adaptive limit"
    return f"{NOT_FINAL}timed out at {at}, not confirmed at the full {full:g} s limit"


def _row(rec: Record, scrub: _Scrubber, *, outcome: str | None = None,
         loader: str | None = None, variant: str | None = None, source: str = "load",
         loader_env: dict[str, Any] | None = None, saver_env: dict[str, Any] | None = None,
         cell_id: str | None = None, remedy: str = "",
         diagnosis: Callable[[Record], Any] = diagnose.diagnose) -> dict[str, Any]:
    err = rec.error
    # A mismatch has no exception but a reason (shape, NaN, optimizer state not restored).
    message = scrub(err.message if err else str(rec.details.get("reason") or ""))
    diag = diagnosis(rec)
    unfinished = not_final_reason(rec) if outcome is None else None
    if unfinished is not None:  # not a result: shown as not run, with why
        outcome, err, message, diag = Outcome.NOT_RUN.value, None, unfinished, None
    load = rec.record_type == "load" and source in ("load", "remedy")
    training = rec.training if load else None
    return {
        "cell_id": cell_id or rec.cell_id,
        "scenario": rec.scenario,
        "format": rec.format,
        "variant": variant or rec.variant,
        "saver": rec.saver,
        "loader": loader or rec.loader,
        "outcome": outcome or rec.outcome.value,
        "phase": rec.phase,
        "error_type": err.type if err else "",
        "error_message": message,
        "category": diag.category if diag else "",
        "remedy": remedy,
        "max_abs_diff": rec.max_abs_diff,
        "prediction": (rec.prediction or _IMPLIED_PREDICTION.get(rec.outcome.value, "")) if load else "",
        "training": training or "",
        "training_diff": rec.training_diff if load else None,
        "training_reason": scrub(str(rec.details.get("training_reason") or "")) if training not in (None, "resumed")
        else "",
        "written_as": rec.details.get("written_as", ""),
        **_versions("saver", saver_env if saver_env is not None else rec.saver_env),
        **_versions("loader", loader_env if loader_env is not None else rec.env),
        "source": source,
        "traceback_tail": scrub(err.traceback)[-TRACEBACK_CHARS:] if err else "",
    }


@dataclasses.dataclass(frozen=True)
class ScenarioInfo:
    """What the report needs of a scenario: its table variants and whether it has custom objects."""

    variants: tuple[str, ...] = ("default",)
    has_custom_objects: bool = False


def build_frame(records: Iterable[Record], scrub: _Scrubber,
                scenarios: dict[str, ScenarioInfo] | None = None,
                stack_ids: Sequence[str] | None = None,
                siblings: diagnose.Siblings | None = None) -> pd.DataFrame:
    """One row per (saver artifact, loader, variant) cell, plus one per remedy run.

    Table cells are the scenario's declared load variants; a load under any other
    variant was a remedy run (``source == "remedy"``): it verifies the ``remedy``
    column of the table cell it belongs to. Cells without a load record take their
    outcome from why there is nothing to load: the save record (save_error,
    not_applicable, ...), an unavailable loader, or ``not_run``.
    """
    scenarios = scenarios or {}
    siblings = siblings or {}
    recs = [r for r in records if stack_ids is None or r.stack in stack_ids]
    envs = {r.stack: r for r in recs if r.record_type == "env"}
    saves = {(r.saver, r.scenario, r.format): r for r in recs if r.record_type == "save"}
    loads = {(r.saver, r.scenario, r.format, r.loader, r.variant): r
             for r in recs if r.record_type == "load"}
    loaders = sorted(envs, key=stack_key)
    diagnosed: dict[int, Any] = {}  # by id(): every record stays alive in ``recs`` meanwhile

    def diagnosis(rec: Record) -> Any:
        """Each record diagnosed once (a failed load's row and its remedy lookup both ask)."""
        if id(rec) not in diagnosed:
            diagnosed[id(rec)] = diagnose.diagnose(rec)
        return diagnosed[id(rec)]

    seen: dict[str, set[str]] = {}
    for key in loads:
        seen.setdefault(str(key[1]), set()).add(str(key[4]))

    def info(scenario: str) -> ScenarioInfo:
        # Without the scenario's metadata every variant on record is a table variant.
        return scenarios.get(scenario) or ScenarioInfo(tuple(sorted(
            seen.get(scenario, set()) | {"default"}, key=lambda v: (v != "default", v))))

    def remedy_text(load: Record) -> str:
        def lookup(lo: str, v: str) -> Record | None:
            got = loads.get((load.saver, load.scenario, load.format, lo, v))
            return None if got is None or not_final_reason(got) else got

        found = diagnose.remedy_results(
            load, diagnosis(load), lookup,
            has_custom_objects=info(str(load.scenario)).has_custom_objects, siblings=siblings)
        return "; ".join(r.text() for r in found)

    rows = []
    for (saver, scenario, fmt), save in saves.items():
        assert saver and scenario and fmt
        for loader in loaders:
            for variant in info(scenario).variants:
                cid = f"{scenario}:{fmt}:{saver}->{loader}:{variant}"
                load = loads.get((saver, scenario, fmt, loader, variant))
                lenv = envs[loader].env
                if load is not None:
                    rows.append(_row(load, scrub, loader_env=lenv or load.env, diagnosis=diagnosis,
                                     remedy=remedy_text(load) if load.outcome.failed and not not_final_reason(load)
                                     else ""))
                elif save.outcome is not Outcome.OK:
                    rows.append(_row(save, scrub, outcome=save.outcome.value, loader=loader,
                                     variant=variant, source="save", loader_env=lenv,
                                     saver_env=save.env, cell_id=cid, diagnosis=diagnosis))
                elif envs[loader].outcome is not Outcome.OK:
                    rows.append(_row(envs[loader], scrub, outcome="env_unavailable",
                                     loader=loader, variant=variant, source="env",
                                     saver_env=save.env, cell_id=cid, diagnosis=diagnosis) | {
                        "scenario": scenario, "format": fmt, "saver": saver})
                else:
                    rows.append({**dict.fromkeys(COLUMNS, None), "cell_id": cid,
                                 "scenario": scenario, "format": fmt, "variant": variant,
                                 "saver": saver, "loader": loader, "outcome": "not_run",
                                 "source": "none", "category": "", "remedy": "", "prediction": "",
                                 "training": "", "training_reason": "",
                                 **_versions("saver", save.env), **_versions("loader", lenv)})
    for key, load in loads.items():
        if key[3] in envs and key[4] not in info(str(key[1])).variants:
            rows.append(_row(load, scrub, loader_env=envs[str(key[3])].env or load.env, source="remedy",
                             diagnosis=diagnosis))
    df = pd.DataFrame(rows, columns=COLUMNS)
    # Plain object columns, as before pandas 3's str dtype: the same values (a missing text
    # stays NaN), but the report's loops over rows iterate numpy arrays instead of fetching
    # each element of a python-backed StringArray (18 million calls on the full store).
    df = df.astype({c: object for c in df.columns if isinstance(df[c].dtype, pd.StringDtype)})
    if df.empty:
        return df
    fmt_order = {f: i for i, f in enumerate(FORMATS)}
    df["_k"] = [
        (r.source == "remedy", r.scenario, fmt_order.get(r.format, 99), r.variant != "default",
         r.variant, stack_key(r.saver), stack_key(r.loader))
        for r in _rows(df, "source", "scenario", "format", "variant", "saver", "loader")
    ]
    return df.sort_values("_k").drop(columns="_k").reset_index(drop=True)


def _rows(df: pd.DataFrame, *columns: str) -> Iterator[Any]:
    """``itertuples`` over only the columns a loop reads: iterating a ~10^5-row frame
    costs per element, and the report's loops need a third of the columns."""
    rows: Iterator[Any] = df[list(columns)].itertuples(index=False)
    return rows


_GRID_MD = ("saver", "loader", "outcome", "category", "error_type", "error_message", "remedy", "cell_id")


def table_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that are cells of the published grids (remedy runs excluded)."""
    return df[df["source"] != "remedy"] if not df.empty else df


# ------------------------------------------------------------------------- writers


class _Footnotes:
    """Numbers distinct (category, error type, first message line) in order of appearance."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str, str], int] = {}

    def number(self, row: Any) -> int | None:
        if row.outcome == "ok" or not (row.error_type or row.error_message):
            return None
        if row.outcome == "not_run" and not str(row.error_message).startswith(NOT_FINAL):
            return None
        key = (str(row.category or ""), str(row.error_type or ""),
               _first_line(str(row.error_message or ""))[:300])
        return self.index.setdefault(key, len(self.index) + 1)


def footnoted(notes: Iterable[Sequence[str]]) -> tuple[list[str], list[str]]:
    """Per row, the numbers of its notes ("1,3"); and the distinct notes, in order of first
    appearance, as footnotes "[n] text": a note many rows share is printed once."""
    index: dict[str, int] = {}
    refs = [",".join(dict.fromkeys(str(index.setdefault(n, len(index) + 1)) for n in row if n)) for row in notes]
    return refs, [f"[{i}] {n}" for n, i in index.items()]


FIXED_MARK = "◆"  # a remedy was re-run on this cell and made it load and match (verified)


def _fixed(row: Any) -> bool:
    return "fixed by" in str(row.remedy or "")


def _grids(df: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    out = []
    for (scenario, fmt, variant), part in table_cells(df).groupby(["scenario", "format", "variant"], sort=False):
        out.append((str(scenario), str(fmt), str(variant), part))
    return out


def _stack_table(records: Sequence[Record], scrub: _Scrubber) -> list[list[str]]:
    rows = []
    for r in sorted((r for r in records if r.record_type == "env"), key=lambda r: stack_key(r.stack)):
        e = r.env
        if r.outcome is Outcome.OK:
            rows.append([r.stack, e.get("python") or "", e.get("tensorflow") or "—",
                         e.get("keras") or "", e.get("backend") or "", e.get("keras_api") or "",
                         ", ".join(f"{k}={v}" for k, v in sorted((e.get("env_vars") or {}).items())),
                         "ok"])
        else:
            reason = _first_line(scrub(r.error.message if r.error else ""))
            rows.append([r.stack, "", "", "", "", "", "", f"unavailable: {reason}"])
    return rows


def slug(text: str) -> str:
    """A file-name and anchor-safe form of an id (``json+weights`` -> ``json-weights``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "-"


def _pipe(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _code(text: Any) -> str:
    """``text`` as a Markdown code span (nothing in it is read as markup or HTML)."""
    body = " ".join(str(text).split())
    fence = "``" if "`" in body else "`"
    pad = " " if body.startswith("`") or body.endswith("`") or fence == "``" else ""
    return f"{fence}{pad}{body}{pad}{fence}" if body else ""


def _compact_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table without padding (a 33 x 33 grid padded to its headers'
    widths would be most of a page's bytes); cells must not contain an unescaped "|"."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _note_text(key: tuple[str, str, str]) -> str:
    cat, etype, msg = key
    text = f"`{etype}`: {_code(msg)}" if etype else _code(msg)
    return (f"**{cat}** · " if cat else "") + text


LEGEND_LINE = (" · ".join(f"{sym} `{o}`" for o, sym in SYMBOLS.items())
               + f" · {FIXED_MARK} a remedy fixed the cell when the runner re-ran it (verified; the footnote "
               "says which)")


def _legend_table() -> str:
    rows = [[SYMBOLS[o], f"`{o}`", _pipe(MEANINGS[o])] for o in SYMBOLS]
    rows.append([FIXED_MARK, "(mark)", "after a symbol: a remedy the runner re-ran made this failing cell load and "
                                       "match (verified against the saver's outputs); the footnote names it"])
    return tabulate(rows, headers=["symbol", "outcome", "meaning"], tablefmt="github")


# How the headline names each outcome: "mismatch" and "training_mismatch" are two facts.
HEADLINE_LABELS: dict[str, str] = {
    "ok": "load and match", "mismatch": "predictions differ",
    "training_mismatch": "predictions match, training does not resume", "load_error": "load errors",
    "save_error": "save errors (a failed save under every loader)", "not_applicable": "cannot exist",
    "timeout": "no result within the full time limit", "crash": "the worker died",
    "protocol_error": "protocol errors", "env_unavailable": "stack unavailable", "not_run": "not run",
}
TRAINING_TEXT: dict[str, str] = {"state_lost": "optimizer state lost", "diverges": "the resumed step diverges",
                                 "cannot_resume": "training cannot run"}
NOT_FINAL = "not final: "  # the start of a not_run cell's message when it timed out below the full limit


def headline(df: pd.DataFrame) -> str:
    """One sentence of counts over the grid cells that keeps the two comparisons apart:
    "predictions differ: N (`mismatch`); predictions match, training does not resume: M
    (`training_mismatch`: ...)", every other outcome that occurs, and how many cells are
    not final (timed out below the full limit)."""
    cells = table_cells(df)
    if cells.empty:
        return "No cells."
    counts = cells["outcome"].value_counts()
    parts = []
    for o in SYMBOLS:
        n = int(counts.get(o, 0))
        if not n and o not in ("ok", "mismatch", "training_mismatch"):
            continue
        text = f"{HEADLINE_LABELS[o]}: {n:,} (`{o}`)"
        these = cells[cells["outcome"] == o]
        if o == "ok":
            which = [f"{label}: {n:,}" for label, n in (
                ("trained models that resume training", int((these["training"] == "resumed").sum())),
                ("trained models loaded for inference only (training not checked)",
                 int((these["training"] == "not_checked").sum()))) if n]
            if which:
                text += ", of which " + ", ".join(which)
        elif o == "training_mismatch" and n:
            verdicts = these["training"].value_counts()
            text += " — " + ", ".join(f"{TRAINING_TEXT[v]}: {int(verdicts[v]):,}" for v in TRAINING_FAILURES
                                      if v in verdicts)
        elif o == "not_run":
            waiting = int(these["error_message"].fillna("").astype(str).str.startswith(NOT_FINAL).sum())
            if waiting:
                text += f", of which not final (timed out below the full limit): {waiting:,}"
        parts.append(text)
    return f"{len(cells):,} grid cells — " + "; ".join(parts) + "."


def _kinds_of_mismatch(part: pd.DataFrame) -> str:
    """" Predictions differ: N (≠); predictions match, training does not resume: M (↻)." where
    either occurs in ``part``, else ""."""
    n = int((part["outcome"] == "mismatch").sum())
    m = int((part["outcome"] == "training_mismatch").sum())
    if not n and not m:
        return ""
    return (f" Predictions differ: {n} ({SYMBOLS['mismatch']}); predictions match, training does not resume: "
            f"{m} ({SYMBOLS['training_mismatch']}).")


def _share(part: pd.DataFrame) -> str:
    """Per cent (rounded down) of the cells that could exist that load and match, or "–"."""
    possible = part[part["outcome"] != "not_applicable"]
    if possible.empty:
        return SYMBOLS["not_applicable"]
    return f"{100 * int((possible['outcome'] == 'ok').sum()) // len(possible)} %"


def _grid_anchor(fmt: str, variant: str) -> str:
    return f"{slug(fmt)}-{slug(variant)}"


def scenario_summary(doc: str | None) -> str:
    """A scenario's one-line description: its docstring's summary (the first paragraph, which
    may wrap over several source lines), on one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def scenario_docs(scenario_dir: Path) -> dict[str, str]:
    """``{scenario: one-line description}`` of every scenario file in ``scenario_dir``
    (:func:`scenario_summary` of its docstring); an unreadable file is left out."""
    docs = {}
    for path in sorted(scenario_dir.glob("*.py")) if scenario_dir.is_dir() else ():
        if path.name.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if doc:
            docs[path.stem] = scenario_summary(doc)
    return docs


def _pages_table(cells: pd.DataFrame, docs: Mapping[str, str] | None = None) -> str:
    """Scenario rows x format columns: the share that loads and matches, linking to the grid;
    the last column is the scenario's one-line description."""
    docs = docs or {}
    if cells.empty:
        return "(no cells)"
    formats = [f for f in FORMATS if f in set(cells["format"])]
    cells = cells[~meant_to_fail(cells)]
    rows = []
    for scenario, part in sorted(cells.groupby("scenario"), key=lambda kv: str(kv[0])):
        line = [f"[`{scenario}`](grids/{slug(scenario)}.md)"]
        for fmt in formats:
            sub = part[part["format"] == fmt]
            line.append(f"[{_share(sub)}](grids/{slug(scenario)}.md#{_grid_anchor(fmt, 'default')})"
                        if not sub.empty else "")
        line.append(_share(part))
        line.append(_pipe(docs.get(str(scenario), "")))
        rows.append(line)
    return tabulate(rows, headers=["scenario", *[f"`{f}`" for f in formats], "all", "description"],
                    tablefmt="github")


def _index_markdown(df: pd.DataFrame, records: Sequence[Record], scrub: _Scrubber, said: str = "",
                    skipped: Sequence[tuple[str, str]] = (), docs: Mapping[str, str] | None = None,
                    verdict_lines: Sequence[str] = ()) -> str:
    cells = table_cells(df)
    formats = [f for f in FORMATS if not cells.empty and f in set(cells["format"])]
    lines = ["# TF/Keras compatibility matrix", "", *([f"**{said}**", ""] if said else []),
             *skipped_note(skipped),
             f"**Cells.** {headline(df)}", "",
             "Rows: the stack that **saved** the model. Columns: the stack that **loaded** it and ran "
             "the model on the saver's inputs. Generated by `nox -s matrix` from the records of real runs.", "",
             "- **Grids**: one page per scenario under [`grids/`](grids/) (table below), a saver × loader grid "
             "per format and load variant; the footnotes give each failure's category, error, the remedies "
             "re-run on it and its cells as `SAVER->LOADER` (a cell's id, for `python -m runner explain CELL` and "
             "`python -m runner repro CELL --out DIR`, is `SCENARIO:FORMAT:SAVER->LOADER:VARIANT`).",
             "- **Site**: [`index.html`](index.html) — GitHub shows it as source: open it from a checkout or a "
             "download (it works from `file://`, no network), or on this repository's GitHub Pages "
             "(`https://OWNER.github.io/REPO/`, deployed by the `compat-matrix` workflow when a whole-catalog run is "
             "published): overview heatmap, filters, search by error text, category, scenario, layer or stack, the "
             "upgrade path from one saving stack and format to every loader with its verdict, each cell's details "
             "and a permalink.",
             "- [`errors.md`](errors.md): the failure catalogue; [`CHANGES.md`](CHANGES.md): what changed since "
             "the previous published table.",
             "- Data: [`results.csv.gz`](results.csv.gz) (one row per cell, gzip'd CSV) and "
             "[`results.json.gz`](results.json.gz) (gzip'd JSON: what the regression gate reads); layouts in "
             "[`docs/reports-schema.md`](../docs/reports-schema.md).", "",
             "## Saver × loader overview", "",
             "![Heatmap: per cent of the cells between a saving stack (row) and a loading stack (column) that "
             "load and match](heatmap.svg)", "",
             OVERVIEW_TEXT.replace("The grids below give each cell.", "Per format: "
                                   + ", ".join(f"[`{f}`](heatmaps/{slug(f)}.svg)" for f in formats) + "."), "",
             "## Scenarios × formats", "",
             "Per cent of the cells that could exist (all load variants; " + MEANT_TO_FAIL_TEXT + ") that load "
             "and match; each links to its grid; the last column is the scenario's description (its file's "
             "docstring).", "",
             _pages_table(cells, docs), "",
             "## Stacks (versions actually installed)", "",
             tabulate([[_pipe(c) for c in row] for row in _stack_table(records, scrub)],
                      headers=["stack", "python", "tensorflow", "keras", "backend", "keras API",
                               "env", "status"], tablefmt="github"), "",
             "## Legend", "", _legend_table(), "",
             "## Summary (cells per outcome, by loader)", "",
             "`mismatch`: predictions differ from the saver's; `training_mismatch`: predictions match, but a trained "
             "model does not resume training like the saver's (the `training` column of `results.csv.gz` says how).",
             "", _summary_table(cells, "github"), "",
             "## Per-stack summary", "",
             "Cells between different stacks only, `not_applicable` excluded and " + MEANT_TO_FAIL_TEXT
             + ": a load counts as ok when the model loaded and its predictions matched.", "",
             _per_stack(cells, "github"), "", *verdict_lines,
             "## Saver × loader overview (table)", "", OVERVIEW_TEXT, "",
             _pair_overview(cells, "github"), ""]
    if len(formats) > 1:
        for fmt in formats:
            lines += ["<details>", f"<summary>{fmt} only</summary>", "",
                      _pair_overview(cells[cells["format"] == fmt], "github"), "", "</details>", ""]
    lines += ["## Failure categories", "", "Each category links to its section of the failure catalogue.", "",
              _category_table(df, "github", link="errors.md"), ""]
    return "\n".join(lines).rstrip() + "\n"


def _pointer_markdown(said: str) -> str:
    """matrix.md: the single page earlier reports wrote; links to it keep working."""
    return "\n".join(["# TF/Keras compatibility matrix", "", *([f"**{said}**", ""] if said else []),
                      "The tables are now split so that GitHub renders them: start at [`README.md`](README.md) "
                      "(the index: versions, summaries, overview heatmap, failure categories), with one page "
                      "per scenario under [`grids/`](grids/), the failure catalogue in [`errors.md`](errors.md) "
                      "and the offline site [`index.html`](index.html)."]) + "\n"


LOADERS_PER_TABLE = 12  # a grid page's table shows at most this many loader columns (GitHub's width)
SITE_TEXT = ("The interactive site is [`index.html`](../index.html): GitHub shows it as source, so open it from a "
             "checkout or a download (it works from `file://`, no network), or on this repository's GitHub Pages "
             "(`https://OWNER.github.io/REPO/`, deployed by the `compat-matrix` workflow when a whole-catalog run "
             "is published).")


def _loader_groups(loaders: Sequence[str]) -> list[list[str]]:
    """``loaders`` (in order) cut into near-equal runs of at most :data:`LOADERS_PER_TABLE`."""
    n = max(1, -(-len(loaders) // LOADERS_PER_TABLE))
    size = -(-len(loaders) // n) if loaders else 0
    return [list(loaders[i:i + size]) for i in range(0, len(loaders), size)] if loaders else [[]]


def _scenario_page(scenario: str, part: pd.DataFrame, said: str, id_cap: int | None = None,
                   doc: str = "") -> tuple[str, str]:
    """One scenario's grids (format x load variant, at most :data:`LOADERS_PER_TABLE` loader
    columns per table) with linked footnotes naming each failure; and the page of the
    footnotes' cell ids (``grids/cells/<scenario>.md``), which the grid page links to."""
    notes = _Footnotes()
    ids: dict[int, list[tuple[str, str, str]]] = {}  # footnote -> (format, variant, "SAVER->LOADER")
    grids = [(str(f), str(v), g) for (f, v), g in part.groupby(["format", "variant"], sort=False)]
    cells_page = f"cells/{slug(scenario)}.md"
    lines = [f"# `{scenario}`: saver × loader grids", "", *([f"Scenario: {doc}", ""] if doc else []),
             *([f"**{said}**", ""] if said else []),
             "[Index](../README.md) · [failure catalogue](../errors.md) · [cell ids of the footnotes]("
             + cells_page + ") · "
             + " · ".join(f"[`{f}`" + (f" `{v}`" if v != "default" else "") + f"](#{_grid_anchor(f, v)})"
                          for f, v, _ in grids), "",
             "Rows: the stack that **saved** the model; columns: the stack that **loaded** it (at most "
             f"{LOADERS_PER_TABLE} loaders per table: a wide grid is cut into several). A superscript number links "
             "to the footnote with the failure's category, error and the remedies re-run on it; the footnote "
             f"links to its cells' ids. A cell's id (for `python -m runner explain CELL` / `repro CELL`) is "
             f"`{scenario}:FORMAT:SAVER->LOADER:VARIANT`, e.g. `{scenario}:h5:tf2.15->tf2.18:default`.", "",
             SITE_TEXT, "", LEGEND_LINE, ""]
    for fmt, variant, grid in grids:
        savers = sorted(grid["saver"].unique(), key=stack_key)
        loaders = sorted(grid["loader"].unique(), key=stack_key)
        cells = {(r.saver, r.loader): r for r in _rows(grid, *_GRID_MD)}
        marks: dict[tuple[str, str], str] = {}
        for s in savers:
            for lo in loaders:
                r = cells.get((s, lo))
                if r is None:
                    marks[(s, lo)] = SYMBOLS["not_run"]
                    continue
                n = notes.number(r)
                if n is not None:
                    ids.setdefault(n, []).append((fmt, variant, f"{s}->{lo}"))
                marks[(s, lo)] = (SYMBOLS[r.outcome] + (f"<sup>[{n}](#fn-{n})</sup>" if n else "")
                                  + (FIXED_MARK if _fixed(r) else ""))
        odd = grid[grid["written_as"].notna() & (grid["written_as"] != "")
                   & (grid["written_as"] != _EXPECTED_WRITE.get(fmt, fmt))]
        title = f"## `{scenario}` · `{fmt}`" + (f" · load variant `{variant}`" if variant != "default" else "")
        lines += [f'<a name="{_grid_anchor(fmt, variant)}"></a>', "", title, "",
                  *([f"`{scenario}`: {doc}", ""] if doc else []),
                  f"Load and match: {_share(grid)} of the cells that could exist.{_kinds_of_mismatch(grid)} "
                  f"Cell ids: `{scenario}:{fmt}:SAVER->LOADER:{variant}`.", ""]
        if bool(meant_to_fail(grid).any()) or (variant == "default" and "custom_objects" in set(part["variant"])):
            lines += ["Meant to fail: these loads do not pass the scenario's custom objects (the `custom_objects` "
                      "grid does); the headline percentages leave them out.", ""]
        for saver, what in sorted({(str(r.saver), str(r.written_as)) for r in odd.itertuples()},
                                  key=lambda p: stack_key(p[0])):
            lines += [f"`{saver}` wrote `{what}` when asked for `{fmt}` (see `written_as`).", ""]
        groups = _loader_groups(loaders)
        for k, group in enumerate(groups):
            if len(groups) > 1:
                lines += [f"Loaders {k + 1} of {len(groups)}: `{group[0]}` … `{group[-1]}`", ""]
            lines += [_compact_table(["saver \\ loader", *group],
                                     [[f"**{s}**", *(marks[(s, lo)] for lo in group)] for s in savers]), ""]
    lines += ["## Footnotes", ""]
    cell_lines = [f"# `{scenario}`: the cells of each footnote", "", *([f"**{said}**", ""] if said else []),
                  f"[The grids](../{slug(scenario)}.md) · [index](../../README.md). Per footnote of the grid page, "
                  "its cells as `SAVER->LOADER` per format and load variant: a cell's id is "
                  f"`{scenario}:FORMAT:SAVER->LOADER:VARIANT` (every cell is also in `results.csv.gz` and the site).",
                  ""]
    if id_cap is not None:
        cell_lines += [f"This page would be over {PAGE_MAX_BYTES // 1000} KB, so a footnote lists at most {id_cap} "
                       "of its cells and counts the rest (`+N more`): every cell is in `results.csv.gz` and the "
                       "site's search.", ""]
    fixes = _fixes_by_note(part, notes)
    for key, n in sorted(notes.index.items(), key=lambda kv: kv[1]):
        these = ids.get(n, [])
        lines.append(f'{n}. <a name="fn-{n}"></a>{_note_text(key)}{fixes.get(n, "")} '
                     f"([{len(these)} cell{'s' if len(these) != 1 else ''}]({cells_page}#fn-{n}))")
        shown = these if id_cap is None else these[:id_cap]
        more = f", +{len(these) - len(shown)} more" if len(shown) < len(these) else ""
        cell_lines += [f'<a name="fn-{n}"></a>', "", f"{n}. {_note_text(key)}",
                       f"   cells ({len(these)}): " + _pairs_by_grid(shown) + more, ""]
    return "\n".join(lines).rstrip() + "\n", "\n".join(cell_lines).rstrip() + "\n"


def _pairs_by_grid(cells: Sequence[tuple[str, str, str]]) -> str:
    """``h5`: `a->b`, `a->c`; `keras` · `custom_objects`: `a->b``: a footnote's cells per grid,
    without repeating the scenario, format and variant of every id (in a report of the
    partial 30-scenario store the full ids took 4.8 of the grid pages' 7.8 MB; this form
    brings the pages to 5.1 MB)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for fmt, variant, pair in cells:
        groups.setdefault((fmt, variant), []).append(pair)
    return "; ".join(f"`{fmt}`" + (f" · `{variant}`" if variant != "default" else "") + ": "
                     + ", ".join(f"`{p}`" for p in pairs) for (fmt, variant), pairs in groups.items())


def scenario_files(df: pd.DataFrame, said: str = "", docs: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{path under grids/: text}``: per scenario its grid page (``<scenario>.md``) and the page of
    its footnotes' cell ids (``cells/<scenario>.md``), which lists fewer ids per footnote when it
    would be over :data:`PAGE_MAX_BYTES`. ``docs``: each scenario's one-line description, shown
    under the page's and each grid's heading."""
    docs = docs or {}
    files = {}
    cells = table_cells(df)
    for scenario, part in cells.groupby("scenario", sort=True) if not cells.empty else ():
        doc = docs.get(str(scenario), "")
        page, ids = _scenario_page(str(scenario), part, said, doc=doc)
        cap = 64
        while len(ids.encode("utf-8")) > PAGE_MAX_BYTES and cap >= 1:
            ids = _scenario_page(str(scenario), part, said, id_cap=cap, doc=doc)[1]
            cap //= 2
        files[f"{slug(str(scenario))}.md"] = page
        files[f"cells/{slug(str(scenario))}.md"] = ids
    return files


def scenario_pages(df: pd.DataFrame, said: str = "", docs: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{scenario: grid page}`` (:func:`scenario_files` without the cell-id pages)."""
    files = scenario_files(df, said, docs)
    return {str(s): files[f"{slug(str(s))}.md"] for s in sorted(set(table_cells(df)["scenario"]))} \
        if not df.empty else {}


# ----------------------------------------------------------------------- what changed


@dataclasses.dataclass(frozen=True)
class Previous:
    """The published table present before a write: its cells, or why there are none."""

    cells: dict[str, gate.Cell] | None
    why: str = ""  # no cells: "none" or the reason it could not be read
    selection: str = ""
    text: str | None = None  # its results.json as it was, unpacked (a no-op rewrite keeps CHANGES.md)


def read_previous(out: Path) -> Previous:
    """The table ``out`` holds: its results.json.gz, else an earlier layout's results.json."""
    path = next((p for p in (out / RESULTS_JSON, out / "results.json") if p.exists()), out / RESULTS_JSON)
    try:
        text = gate.read_results_text(path)
    except FileNotFoundError:
        return Previous(None, "none")
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as exc:
        return Previous(None, f"unreadable ({exc})")
    try:
        data = json.loads(text)
        cells = gate.load_results(path, "previous")
    except (ValueError, gate.GateError) as exc:
        return Previous(None, f"unreadable ({exc})", text=text)
    return Previous(cells, selection=str(data.get("selection") or ""), text=text)


def _changes_table(pairs: Mapping[str, Sequence[tuple[gate.Cell, gate.Cell]]], key: str) -> str:
    kinds = list(pairs)
    counts: dict[str, list[int]] = {}
    for i, kind in enumerate(kinds):
        for old, new in pairs[kind]:
            counts.setdefault(str(getattr(new, key) or getattr(old, key)), [0] * len(kinds))[i] += 1
    if not counts:
        return "(none)"
    order = sorted(counts, key=stack_key) if key in ("saver", "loader") else sorted(counts, key=lambda k: (
        -sum(counts[k]), k))
    return tabulate([[f"`{k}`" if k else "(none)", *counts[k]] for k in order], headers=[key, *kinds],
                    tablefmt="github")


def changes_markdown(previous: Previous, current: Mapping[str, gate.Cell], said: str = "") -> str:
    """CHANGES.md: the gate's comparison of the previous published table with this one."""
    lines = ["# What changed", "", *([f"**{said}**", ""] if said else [])]
    if previous.cells is None:
        reason = (f"there was no previous table (no `{RESULTS_JSON}` in this folder before this write)"
                  if previous.why == "none" else f"the previous `{RESULTS_JSON}` was {previous.why}")
        return "\n".join([*lines, f"Nothing to compare with: {reason}. The next publication lists the "
                                  "cells that changed since this one."]) + "\n"
    old = {k: c for k, c in previous.cells.items() if not c.remedy}
    new = {k: c for k, c in current.items() if not c.remedy}
    res, kinds = history.change_kinds(old, new)  # the kinds the history's feed shows too
    lines += [f"Compared with the previous published table ({previous.selection or 'selection not stated'}) "
              "by the regression gate's comparison (`runner/gate.py`), table cells only (remedy runs aside). "
              "\"Predictions no longer match\": predictions matched (a trained model whose training did not "
              "resume) and now differ or the load fails; \"failure changed\": still failing, with another "
              "outcome or category; \"other\": to or from `not_applicable` / `not_run`.", "",
              tabulate([["cells compared", res.compared], *[[k, len(v)] for k, v in kinds.items()],
                        ["new cells (not in the previous table)", len(res.only_current)],
                        ["cells gone (only in the previous table)", len(res.only_baseline)]],
                       headers=["", "cells"], tablefmt="github"), ""]
    if not any(kinds.values()) and not res.only_current and not res.only_baseline:
        return "\n".join([*lines, "No cell changed."]) + "\n"
    lines += ["## By loader stack", "", _changes_table(kinds, "loader"), "",
              "## By saver stack", "", _changes_table(kinds, "saver"), "",
              "## By category", "", "The category of the cell now (of the old failure for cells now ok).", "",
              _changes_table({k: v if k != "now ok (was failing)" else [(n, o) for o, n in v]
                              for k, v in kinds.items()}, "category"), ""]
    for kind, pairs in kinds.items():
        if not pairs:
            continue
        lines += [f"## Cells: {kind} ({len(pairs)})", ""]
        for o, n in pairs[:CHANGES_LIST_MAX]:
            lines.append(f"- `{n.cell_id}`: {o.outcome}" + (f" [{o.category}]" if o.category else "")
                         + f" → {n.outcome}" + (f" [{n.category}]" if n.category else ""))
        if len(pairs) > CHANGES_LIST_MAX:
            lines.append(f"- … and {len(pairs) - CHANGES_LIST_MAX} more")
        lines.append("")
    for title, ids in (("New cells", res.only_current), ("Cells gone", res.only_baseline)):
        if ids:
            lines += [f"## {title} ({len(ids)})", "", ", ".join(f"`{i}`" for i in ids[:CHANGES_LIST_MAX])
                      + (f", … and {len(ids) - CHANGES_LIST_MAX} more" if len(ids) > CHANGES_LIST_MAX else ""), ""]
    return "\n".join(lines).rstrip() + "\n"


def remedy_tally(texts: Iterable[Any]) -> dict[str, list[int]]:
    """``{remedy: [fixed, tried]}`` over ``remedy`` column texts ("fixed by X (verified); Y tried, …")."""
    tally: dict[str, list[int]] = {}
    for text in texts:
        for item in str(text or "").split("; "):
            if not item:
                continue
            name = item.split(" tried")[0].removeprefix("fixed by ").split(" (")[0]
            counts = tally.setdefault(name, [0, 0])
            counts[0] += item.startswith("fixed by")
            counts[1] += 1
    return tally


def _fixes_by_note(df: pd.DataFrame, notes: _Footnotes) -> dict[int, str]:
    """Per footnote: " — remedies re-run: X fixed n/m" for the remedies that ran."""
    texts: dict[int, list[str]] = {}
    for r in _rows(table_cells(df), *_GRID_MD):
        n = notes.number(r)
        if n is not None and r.remedy:
            texts.setdefault(n, []).append(str(r.remedy))
    return {n: " — remedies re-run: " + ", ".join(f"{name} fixed {ok}/{tried}"
                                                    for name, (ok, tried) in sorted(remedy_tally(t).items()))
            for n, t in texts.items()}


def failing_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Failing cells, each counted once: table loads that ran and failed, and failed saves
    (a failed save appears under every loader in the grids but is one failure)."""
    cells = table_cells(df)
    if cells.empty:
        return cells
    failed = cells[cells["outcome"].isin([o.value for o in Outcome if o.failed])]
    loads = failed[failed["source"] == "load"]
    saves = failed[failed["source"] == "save"].drop_duplicates(["saver", "scenario", "format"])
    envs = failed[failed["source"] == "env"].drop_duplicates(["loader"])
    return pd.concat([loads, saves, envs])


def _category_table(df: pd.DataFrame, tablefmt: str, link: str = "") -> str:
    """Failing cells per category; with ``link``, each category links to its section there."""
    failed = failing_cells(df)
    if failed.empty:
        return "(no failing cells)"
    counts = failed["category"].value_counts()
    rows = [[f"[{cat}]({link}#{category_anchor(str(cat))})" if link else cat,
             diagnose.CATEGORIES[cat].title if cat in diagnose.CATEGORIES else "",
             int(n), f"{100 * n / len(failed):.1f} %"] for cat, n in counts.items()]
    named = len(failed) - int(counts.get("other", 0))
    rows.append(["**named**" if tablefmt == "github" else "named", "", named,
                 f"{100 * named / len(failed):.1f} %"])
    return tabulate(rows, headers=["category", "what", "failing cells", "share"], tablefmt=tablefmt)


def _summary_table(df: pd.DataFrame, tablefmt: str) -> str:
    if df.empty:
        return "(no cells)"
    pivot = pd.crosstab(df["loader"], df["outcome"])
    order = [o for o in SYMBOLS if o in pivot.columns]
    pivot = pivot[order].loc[sorted(pivot.index, key=stack_key)]
    rows = [[idx, *[int(v) for v in vals]] for idx, vals in zip(pivot.index, pivot.values, strict=True)]
    total = ["**all**" if tablefmt == "github" else "all", *[int(pivot[c].sum()) for c in order]]
    return tabulate([*rows, total], headers=["loader", *order], tablefmt=tablefmt)


def _per_stack(df: pd.DataFrame, tablefmt: str) -> str:
    """For each stack: how many artifacts of *other* stacks it loads and matches, and how
    many of its own artifacts other stacks load and match (cells that could exist only)."""
    if df.empty:
        return "(no cells)"
    possible = df[(df["outcome"] != "not_applicable") & ~meant_to_fail(df)]
    same = possible["saver"] == possible["loader"]
    cross, own = possible[~same], possible[same]

    def counts(part: pd.DataFrame, by: str) -> dict[str, tuple[int, int]]:
        """``{stack: (ok, cells)}`` of ``part`` grouped by one column (one pass, not a mask per stack)."""
        got = (part["outcome"] == "ok").groupby(part[by]).agg(["sum", "count"])
        return {str(k): (int(ok), int(n)) for k, ok, n in zip(got.index, got["sum"], got["count"], strict=True)}

    as_loader, as_saver, own_trip = counts(cross, "loader"), counts(cross, "saver"), counts(own, "saver")
    rows = []
    for stack in sorted(set(df["saver"]) | set(df["loader"]), key=stack_key):
        rows.append([stack, *(_ratio_of(*part.get(stack, (0, 0))) for part in (as_loader, as_saver, own_trip))])
    return tabulate(rows, headers=["stack", "loads others' artifacts (ok / cells)",
                                   "its artifacts load elsewhere", "own round trip"],
                    tablefmt=tablefmt)


MEANT_TO_FAIL_TEXT = ("loads of a custom-object scenario without its custom objects (variant `default` where the "
                      "scenario has a `custom_objects` variant) are meant to fail and left out")


OVERVIEW_TEXT = (
    "Per cent of the cells between a saver (row) and a loader (column) that loaded and matched, "
    "over every scenario, format and load variant (`not_applicable` excluded, a failed save "
    "counts as a failure, and so does a trained model that does not resume training; "
    + MEANT_TO_FAIL_TEXT + "; rounded down, so 100 means every cell). The grids below give each cell.")


def meant_to_fail(df: pd.DataFrame) -> pd.Series:
    """The cells meant to fail: a custom-object scenario loaded without its class (its
    ``default`` variant where the table has a ``custom_objects`` one, as explain's verdict
    decides the documented way of loading); headline percentages leave them out."""
    if df.empty or "variant" not in df.columns:
        return pd.Series(False, dtype=bool, index=df.index)
    custom = set(df.loc[df["variant"] == "custom_objects", "scenario"])
    return (df["variant"] == "default") & df["scenario"].isin(custom)


def pair_stats(df: pd.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str], tuple[int, int]]]:
    """Savers, loaders (natural order) and ``{(saver, loader): (ok, cells that could exist)}``,
    the cells :func:`meant_to_fail` left out."""
    cells = df[(df["outcome"] != "not_applicable") & ~meant_to_fail(df)]
    counts = (cells["outcome"] == "ok").groupby([cells["saver"], cells["loader"]]).agg(["sum", "count"])
    stats = {(str(k[0]), str(k[1])): (int(ok), int(n))
             for k, ok, n in zip(counts.index, counts["sum"], counts["count"], strict=True)}
    return sorted(set(df["saver"]), key=stack_key), sorted(set(df["loader"]), key=stack_key), stats


def _pair_overview(df: pd.DataFrame, tablefmt: str) -> str:
    """Saver × loader: the share of the cells that could exist that loaded and matched.
    For GitHub (``tablefmt="github"``) the pipe table is written without padding: the
    41-stack tables (all formats, then each of 7) padded to their headers' widths took
    217 kB of the index, over what GitHub renders (:data:`INDEX_MAX_BYTES`); it renders
    the same."""
    if df.empty:
        return "(no cells)"
    savers, loaders, stats = pair_stats(df)
    rows = []
    for saver in savers:
        line = [f"**{saver}**" if tablefmt == "github" else saver]
        for loader in loaders:
            ok, n = stats.get((saver, loader), (0, 0))
            line.append(str(100 * ok // n) if n else SYMBOLS["not_applicable"])
        rows.append(line)
    headers = ["saver \\ loader", *loaders]
    if tablefmt != "github":
        return tabulate(rows, headers=headers, tablefmt=tablefmt)
    return "\n".join("|" + "|".join(line) + "|" for line in [headers, [":--", *["--:"] * len(loaders)], *rows])


def _ratio(part: pd.DataFrame) -> str:
    return _ratio_of(int((part["outcome"] == "ok").sum()), len(part))


def _ratio_of(ok: int, n: int) -> str:
    return f"{ok} / {n} ({100 * ok / n:.0f} %)" if n else "—"


def terminal_summary(df: pd.DataFrame) -> str:
    """The headline, then a short plain-text table: cells per outcome for each loader stack."""
    return headline(df).replace("`", "") + "\n" + _summary_table(table_cells(df), "simple")


def _span(values: Iterable[Any]) -> str:
    ids = sorted({str(v) for v in values if v}, key=stack_key)
    if not ids:
        return "—"
    return ids[0] if len(ids) == 1 else f"{ids[0]} … {ids[-1]} ({len(ids)})"


def category_anchor(category: str) -> str:
    return f"cat-{slug(category)}"


def error_signature(etype: Any, message: Any, outcome: Any) -> str:
    """An error's signature: its type's last name and its normalised first line (paths,
    numbers, addresses out), what errors.md and the site's search group by."""
    return diagnose.normalise(f"{str(etype).rsplit('.', 1)[-1]}: {message}" if etype else str(message or outcome))


def with_bisect(df: pd.DataFrame, store_root: Path) -> pd.DataFrame:
    """``df`` with :data:`BISECT_COLUMNS` filled from the store's bisect results
    (:func:`runner.bisect_results.table_annotations`) on the table cells they explain, "" on
    every other row; ``_bisect_was`` (the outcome the cell had before, for errors.md) beside."""
    df = df.assign(**dict.fromkeys((*BISECT_COLUMNS, "_bisect_was"), ""))
    if df.empty:
        return df
    table = (df["source"] != "remedy").to_numpy()
    found = table_annotations(store_root, dict(zip(df["cell_id"][table], df["outcome"][table],
                                                                  strict=True)))
    if found:
        mask = table & df["cell_id"].isin(found).to_numpy()
        for col, key in ((*zip(BISECT_COLUMNS, BISECT_COLUMNS, strict=True), ("_bisect_was", "was"))):
            df.loc[mask, col] = [found[cid][key] for cid in df.loc[mask, "cell_id"]]
    return df


def _first_failing(part: pd.DataFrame) -> str:
    """errors.md's bisect cell of one signature: each distinct first failing release of its
    cells, "keras 3.11.3 (was ok in 3.11.2)" with a link to the release's notes."""
    seen: dict[str, int] = {}
    for first, last, notes, was in zip(part[BISECT_COLUMNS[0]].fillna(""), part[BISECT_COLUMNS[1]].fillna(""),
                                       part[BISECT_COLUMNS[2]].fillna(""), part["_bisect_was"].fillna(""),
                                       strict=True):
        if first:
            text = f"[{first}]({notes}) (was {was} in {str(last).rsplit(' ', 1)[-1]})"
            seen[text] = seen.get(text, 0) + 1
    if not seen:
        return "—"
    shown = sorted(seen, key=lambda t: (-seen[t], t))
    counts = {t: f" ×{n}" if len(seen) > 1 else "" for t, n in seen.items()}
    return "; ".join(t + counts[t] for t in shown[:3]) + (f"; and {len(shown) - 3} more" if len(shown) > 3 else "")


def errors_markdown(df: pd.DataFrame, said: str = "") -> str:
    """errors.md: each distinct error signature with its category, span and verified remedies."""
    failed = failing_cells(df)
    lines = ["# Failure catalogue", "", *([f"**{said}**", ""] if said else []),
             "Every distinct error signature of the matrix (category + normalised first line of "
             "the message), how many failing cells it explains, which saver and loader stacks it "
             "spans (first … last in catalog order, and how many), the category's explanation, "
             "and the remedies the runner re-ran on those cells with how many each fixed. A "
             "remedy is listed only when it was actually run. Generated from the records by "
             "`nox -s matrix` / `nox -s report`.", ""]
    if failed.empty:
        return "\n".join([*lines, "No failing cells."]) + "\n"
    named = int((failed["category"] != "other").sum())
    lines += [f"**{len(failed)} failing cells; {named} ({100 * named / len(failed):.1f} %) fall in a "
              f"named category, {len(failed) - named} in `other`.** Failing cells: loads that ran "
              "and failed, plus each failed save once.", "",
              "## Categories", "", _category_table(df, "github"), ""]
    failed = failed.assign(sig=[error_signature(t, m, o) for t, m, o in
                                zip(failed["error_type"], failed["error_message"], failed["outcome"], strict=True)])
    order = failed["category"].value_counts()
    # A column for the bisects only when there are some (runner/bisect.py; a report without leaves errors.md as it was).
    bisected = BISECT_COLUMNS[0] in failed and bool((failed[BISECT_COLUMNS[0]].fillna("") != "").any())
    for cat in order.index:
        rule = diagnose.CATEGORIES.get(str(cat), diagnose.OTHER)
        part = failed[failed["category"] == cat]
        lines += [f'<a name="{category_anchor(str(cat))}"></a>', "",
                  f"## `{cat}` — {rule.title} ({len(part)} cells)", "", rule.explanation, ""]
        if rule.remedies:
            lines += ["Remedies the runner re-runs for this category where they apply: "
                      + ", ".join(f"`{r}` ({diagnose.REMEDIES[r].label})" for r in rule.remedies), ""]
        rows = []
        for sig, sp in sorted(part.groupby("sig"), key=lambda kv: -len(kv[1])):
            tally = remedy_tally(sp["remedy"].dropna())
            rows.append([f"`{sig}`".replace("|", "\\|"), len(sp), _span(sp["saver"]), _span(sp["loader"]),
                         ", ".join(sorted(set(sp["format"].dropna()), key=FORMATS.index)),
                         ", ".join(f"{n}: fixed {ok}/{tried}" for n, (ok, tried) in sorted(tally.items()))
                         or "—", *([_first_failing(sp)] if bisected else [])])
        lines += [tabulate(rows, headers=["signature", "cells", "savers", "loaders", "formats",
                                          "remedies re-run (fixed / tried)",
                                          *(["first failing release (bisect)"] if bisected else [])],
                           tablefmt="github"), ""]
    return "\n".join(lines).rstrip() + "\n"


def _json_default(obj: Any) -> Any:
    return str(obj)


def results_json(clean: pd.DataFrame, records: Sequence[Record], said: str = "",
                 skipped: Sequence[tuple[str, str]] = ()) -> str:
    """results.json, schema 4: compact enough for the full catalog, one cell per line.

    Schema 4 is schema 3's layout with the prediction and training-resume columns
    (``prediction``, ``training``, ``training_diff``, ``training_reason``) and the outcome
    ``training_mismatch``. Every column of ``columns`` but ``error_id`` is dictionary-coded: a cell row holds, per
    column, an index into ``values[column]`` (each distinct value once). ``error_id``
    indexes ``errors`` ([type, message index, traceback index] into ``messages`` and
    ``tracebacks``: each distinct text once), and the installed versions of each stack are
    in ``stacks``. ``runner.gate.results_rows`` expands any schema (1 to 4) to one dict
    per cell; docs/reports-schema.md describes the layout.
    """
    values: dict[str, dict[tuple[str, Any], int]] = {c: {} for c in JSON_COLUMNS[:-1]}
    messages: dict[str, int] = {}
    tracebacks: dict[str, int] = {}
    errors: dict[tuple[str, int, int], int] = {}
    lines = []
    for row in clean[[*JSON_COLUMNS[:-1], "error_type", "error_message", "traceback_tail"]].itertuples(index=False):
        codes: list[int | None] = []
        for col, v in zip(JSON_COLUMNS[:-1], row, strict=False):
            table = values[col]
            codes.append(table.setdefault((type(v).__name__, v), len(table)))
        etype, message, tb = row[-3:]
        eid = None
        if etype or message:
            mi = messages.setdefault(str(message or "")[:JSON_MESSAGE_CHARS], len(messages))
            ti = tracebacks.setdefault(str(tb or "")[-JSON_TRACEBACK_CHARS:], len(tracebacks))
            eid = errors.setdefault((str(etype or ""), mi, ti), len(errors))
        lines.append("  " + json.dumps([*codes, eid], separators=(",", ":")))
    stacks = {r.stack: {k: r.env.get(k) for k in (*VERSION_KEYS, "keras_api")}
              for r in sorted(records, key=lambda r: stack_key(r.stack)) if r.record_type == "env"}
    extra = {"skipped_records": [{"path": p, "why": w} for p, w in skipped]} if skipped else {}
    head = json.dumps({"schema_version": RESULTS_SCHEMA, "selection": said, "columns": JSON_COLUMNS,
                       "values": {c: [v for _t, v in table] for c, table in values.items()},
                       "stacks": stacks, "errors": [list(k) for k in errors], "messages": list(messages),
                       "tracebacks": list(tracebacks), **extra},
                      ensure_ascii=False, sort_keys=True, indent=1, default=_json_default)
    assert head.endswith("\n}")
    return head[:-2] + ',\n "cells": [\n' + ",\n".join(lines) + "\n ]\n}\n"


def _gzip(text: str) -> bytes:
    """Deterministic gzip: no file name, no timestamp in the header."""
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def _site_cells(clean: pd.DataFrame) -> list[dict[str, Any]]:
    """The table cells as the site's rows: the report's columns, the error's signature
    (:func:`error_signature`), whether the cell is :func:`meant_to_fail`, and the bisect
    columns where the table has them."""
    cells = table_cells(clean)
    keys = ["cell_id", "scenario", "format", "variant", "saver", "loader", "outcome", "phase", "category",
            "remedy", "max_abs_diff", "prediction", "training", "training_diff", "training_reason", "written_as",
            "source", "error_type", "error_message", "traceback_tail",
            *(c for c in site.BISECT_KEYS if c in cells.columns)]
    failing_by_design = meant_to_fail(cells).tolist()
    out = []
    for row, by_design in zip(cells[keys].itertuples(index=False), failing_by_design, strict=True):
        d = dict(zip(keys, row, strict=True))
        d["meant_to_fail"] = bool(by_design)
        d["signature"] = error_signature(d["error_type"], d["error_message"], d["outcome"]) \
            if d["error_type"] or d["error_message"] else ""
        d["error_message"] = str(d["error_message"] or "")[:JSON_MESSAGE_CHARS]
        d["training_reason"] = str(d["training_reason"] or "")[:JSON_MESSAGE_CHARS]
        d["traceback_tail"] = str(d["traceback_tail"] or "")[-JSON_TRACEBACK_CHARS:]
        out.append(d)
    return out


def upgrade_verdicts(cells: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], list[str]]:
    """``{(saver, format, loader): lines}``: explain's upgrade verdict (:func:`runner.explain.
    upgrade_verdict`, the line ``explain --from S --format F --to L`` prints, then the scenarios
    behind each count) for every upgrade path of a table's cells, grouped once so that each
    call reads only its own cells. The site and README.md show these lines, never a recount."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for c in cells:
        groups.setdefault((str(c["saver"]), str(c["format"]), str(c["loader"])), []).append(c)
    out = {}
    for key in sorted(groups, key=lambda k: (stack_key(k[0]), FORMATS.index(k[1]) if k[1] in FORMATS else 99,
                                             stack_key(k[2]))):
        with contextlib.suppress(explain.CellError):  # no cell the verdict counts (e.g. remedy runs only)
            out[key] = explain.upgrade_verdict(groups[key], *key)
    return out


def _keras_version(text: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(text or ""))[:3])


def verdict_target(stacks: Sequence[Mapping[str, Any]], loaders: Iterable[str]) -> str | None:
    """The loader README.md's verdicts go to: the one with the newest installed Keras (ties: the
    first in natural order), so that each saving stack reads "will it load in today's Keras"."""
    versions = {str(s["id"]): _keras_version(s.get("keras")) for s in stacks}
    have = sorted(set(loaders), key=stack_key)
    return max(have, key=lambda lo: (versions.get(lo, ()), -have.index(lo)), default=None)


def _verdict_section(verdicts: Mapping[tuple[str, str, str], Sequence[str]], target: str | None,
                     possible: Iterable[tuple[str, str, str]] = ()) -> list[str]:
    """README.md's upgrade verdicts: per saving stack, one line per format into ``target``; with
    ``possible`` (the paths with a cell that could exist), only those paths."""
    if target is None:
        return []
    possible = set(possible)
    lines = [f"### Upgrade verdicts: loaded in `{target}`", "",
             f"Per saving stack and format, the verdict `python -m runner explain --from SAVER --format FORMAT --to "
             f"{target}` prints ({target}: the newest Keras installed): scenarios that load and match loaded the "
             "documented way (custom objects passed where the scenario has them), those a verified fix makes load, "
             "and those that fail. Any other pair: the same command, or the site's upgrade path.", ""]
    savers = sorted({k[0] for k in verdicts if k[2] == target}, key=stack_key)
    for saver in savers:
        lines.append(f"- **{saver}**")
        for (sv, fmt, lo), text in verdicts.items():
            if sv == saver and lo == target and (not possible or (sv, fmt, lo) in possible):
                lines.append(f"  - {_pipe(text[0])}")
    return [*lines, ""]


def report_files(df: pd.DataFrame, records: Sequence[Record], scrub: _Scrubber, said: str,
                 previous: Previous, old_changes: str | None = None,
                 skipped: Sequence[tuple[str, str]] = (),
                 docs: Mapping[str, str] | None = None,
                 past: history.Past | None = None) -> dict[str, str | bytes]:
    """Every file of the report, by path relative to the report folder.

    ``previous`` is the table the folder held before (for CHANGES.md); when this write's
    results.json (unpacked) is identical to it, ``old_changes`` (the CHANGES.md written with it)
    is kept, so a no-op rerun changes no byte. ``skipped`` (record files that could not be
    used: path from the store root, why) are named in README.md and results.json.gz. ``docs``:
    each scenario's one-line description (:func:`scenario_docs`), on the grid pages, README.md
    and the site. ``past``: the folder's history (:mod:`runner.history`): a table that
    differs from ``previous`` adds a publication to it.
    """
    docs = docs or {}
    clean = df.astype(object).where(df.notna(), None)
    table = results_json(clean, records, said, skipped)
    current: dict[str, gate.Cell] | None = None
    if old_changes is not None and previous.text == table:
        changes = old_changes
    else:
        cells = table_cells(clean)  # rows as dicts (DataFrame.to_dict boxes each of ~4 million values)
        current = gate.cells_from_rows(
            dict(zip(cells.columns, row, strict=True)) for row in cells.itertuples(index=False, name=None))
        changes = changes_markdown(previous, current, said)
    csv_df = df[CSV_COLUMNS].assign(**{col: [_first_line("" if pd.isna(m) else str(m))[:CSV_MESSAGE_CHARS]
                                             for m in df[col]] for col in ("error_message", "training_reason")})
    cells = table_cells(df)
    site_cells = _site_cells(clean)
    verdicts = upgrade_verdicts(site_cells)
    stacks = [dict(zip(["id", "python", "tensorflow", "keras", "backend", "keras_api", "env", "status"], row,
                       strict=True)) for row in _stack_table(records, scrub)]
    target = verdict_target(stacks, {k[2] for k in verdicts})
    possible = {(str(c["saver"]), str(c["format"]), str(c["loader"])) for c in site_cells
                if c["outcome"] != "not_applicable"}
    files: dict[str, str | bytes] = {
        "README.md": _index_markdown(df, records, scrub, said, skipped, docs,
                                     _verdict_section(verdicts, target, possible)),
        "matrix.md": _pointer_markdown(said),
        "errors.md": errors_markdown(df, said),
        "CHANGES.md": changes,
        RESULTS_JSON: _gzip(table),
        # The header row first: the selection is in results.json.gz and README.md (a "#"
        # line made pandas' comment="#" the recipe, which drops every row with a "#").
        "results.csv.gz": _gzip(csv_df.to_csv(index=False, lineterminator="\n")),
    }
    for path, page in scenario_files(df, said, docs).items():
        files[f"grids/{path}"] = page
    title = "TF/Keras compatibility: saver × loader"
    if cells.empty:
        files["heatmap.svg"] = heatmap.heatmap_svg(title, [], [], {}, "no cells")
    else:
        files["heatmap.svg"] = heatmap.heatmap_svg(title, *pair_stats(cells), subtitle=(
            "Per cent of cells that load and match (a trained model: and resume training), every scenario, "
            "format and load variant; a custom-object scenario loaded without its custom objects (meant to fail) "
            "left out. " + said)[:400])
        for fmt in [f for f in FORMATS if f in set(cells["format"])]:
            files[f"heatmaps/{slug(fmt)}.svg"] = heatmap.heatmap_svg(
                f"{title}, format {fmt}", *pair_stats(cells[cells["format"] == fmt]),
                subtitle=f"Per cent of {fmt} cells that load and match, every scenario and load variant; a "
                         "custom-object scenario loaded without its custom objects (meant to fail) left out.")
    files.update(site.site_files(
        selection=said, stacks=stacks, cells=site_cells, verdicts=verdicts,
        outcomes=[{"id": o, "symbol": SYMBOLS[o], "meaning": MEANINGS[o], "color": COLORS[o]} for o in SYMBOLS],
        categories={c: (r.title, r.explanation) for c, r in diagnose.CATEGORIES.items()},
        formats=[f for f in FORMATS if not cells.empty and f in set(cells["format"])],
        changes_md=changes, fixed_mark=FIXED_MARK, slug=slug, headline=headline(df),
        scenario_docs={s: d for s, d in docs.items() if not cells.empty and s in set(cells["scenario"])}))
    files.update(history.history_files(past or history.Past([], {}), previous.text, previous.cells,
                                       previous.selection, table, _bytes(files[RESULTS_JSON]), current, said))
    assert len(str(files["README.md"]).encode("utf-8")) <= INDEX_MAX_BYTES, "README.md over its size limit"
    return files


def _remove_stale(out: Path, written: Iterable[str]) -> None:
    """Remove files of the report set that this write did not produce (a scenario gone,
    a format gone, an earlier layout's results.csv); other files in ``out`` are left."""
    keep = set(written)
    for name in LEGACY_FILES:
        if name not in keep:
            (out / name).unlink(missing_ok=True)
    for folder in REPORT_DIRS:
        root = out / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), reverse=True):
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.relative_to(out).as_posix() not in keep:
                path.unlink(missing_ok=True)
        if not any(root.iterdir()):
            root.rmdir()


def _remove_temp(out: Path) -> None:
    """Temp files of an in-place report write that was killed."""
    if not out.is_dir():
        return
    for name in (*REPORT_FILES, *LEGACY_FILES):
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    for folder in REPORT_DIRS:
        for stale in (out / folder).rglob(".*.tmp") if (out / folder).is_dir() else []:
            stale.unlink(missing_ok=True)


# ------------------------------------------------------------------ the folder swap
#
# A report is written whole into a new folder beside ``out`` (``.<name>.new-<pid>``) and
# swapped in by one atomic exchange of the two directory entries (Linux renameat2
# RENAME_EXCHANGE), so ``out`` is at every instant the complete old or the complete new
# report; the old one, now under the temp name, is then removed. Where the exchange is
# not available, the old folder is renamed aside (``.<name>.old-<pid>``) and the new one
# in: a kill between the two renames leaves no ``out``, and the next write puts the old
# one back before anything else. Leftovers of a killed write (a dead pid's folders) are
# removed by the next write. ``out`` stays a plain directory (``reports/`` is committed).

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _load_renameat2() -> Any:
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a libc older than glibc 2.28
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the directory entries ``a`` and ``b``; False where the system or
    the filesystem cannot (then nothing changed).

    Raises:
        OSError: the exchange was possible but failed (named).
    """
    import ctypes

    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a folder of an earlier write of this very process: left over
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _leftovers(out: Path) -> list[tuple[str, Path]]:
    """("new"|"old", path) of the swap folders of ``out`` whose writer is gone."""
    found = []
    for path in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind in ("new", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            found.append((kind, path))
    return sorted(found, key=lambda kp: (kp[0] != "old", kp[1].name))


def _clean_leftovers(out: Path) -> None:
    """Put back an old report a kill left renamed aside, then remove dead writers' folders."""
    for kind, path in _leftovers(out):
        if kind == "old" and not os.path.lexists(out):
            path.rename(out)
        else:
            _remove_tree(path)


def _user_entries(out: Path) -> list[Path]:
    """What ``out`` holds that is not the report's (a user's note, a .gitattributes): a
    swap carries it over, as the in-place write left it."""
    ours = {*REPORT_FILES, *REPORT_DIRS, *LEGACY_FILES}
    return [p for p in sorted(out.iterdir()) if p.name not in ours
            and not any(p.name.startswith(f".{n}.") and p.name.endswith(".tmp") for n in ours)]


def _write_tree(root: Path, files: Mapping[str, str | bytes], same: Iterable[str] = (),
                old: Path | None = None) -> None:
    """Write every file under ``root`` (a new, empty folder), each synced, then the folders.
    A file of ``same`` (its bytes equal the file of that name in ``old``, the report being
    replaced) is hard-linked from there instead, so it keeps its inode and mtime; where a
    link cannot be made it is written."""
    same = set(same) if old is not None else set()
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel in same:
            assert old is not None
            try:
                os.link(old / rel, path, follow_symlinks=False)
                faults.point("report-file")
                continue
            except OSError:
                pass  # another file system, no hard links here: written below
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_bytes(content))
            fh.flush()
            os.fsync(fh.fileno())
        faults.point("report-file")
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        _fsync_dir(folder)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(out: Path, files: Mapping[str, str | bytes], same: Iterable[str] = ()) -> bool:
    """Write the report into a new folder beside ``out`` and swap it in whole. False when
    that cannot be done here (``out`` is a mount point, or its parent cannot hold a new
    folder): the caller then writes in place.

    Raises:
        OSError: writing or renaming failed (``out`` then holds the old report, whole).
    """
    if os.path.ismount(out):
        return False
    new = out.parent / f".{out.name}.new-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    _remove_tree(new)
    try:
        new.mkdir()
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return False
        raise
    try:
        if out.is_dir():
            with contextlib.suppress(OSError):
                new.chmod(stat.S_IMODE(out.stat().st_mode))
            for entry in _user_entries(out):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, new / entry.name, symlinks=True)
                else:
                    shutil.copy2(entry, new / entry.name, follow_symlinks=False)
        _write_tree(new, files, same, out if out.is_dir() else None)
        faults.point("report-write")
        if not os.path.lexists(out):
            new.rename(out)
        elif _exchange(new, out):  # ``new`` now names the old report
            faults.point("report-swap")
        else:
            out.rename(old)
            faults.point("report-swap")
            new.rename(out)
            new = old
        _fsync_dir(out.parent)
    except BaseException:
        if os.path.lexists(old) and not os.path.lexists(out):
            old.rename(out)
        _remove_tree(new)
        raise
    _remove_tree(new)  # the old report, swapped out
    return True


def _target(out: Path) -> Path:
    """The folder a report into ``out`` writes: absolute, normalised, a symlink resolved."""
    out = Path(os.path.normpath(out.absolute()))
    if out.is_symlink():  # a link the user made to where the reports live: replace the target
        out = out.resolve()
    return out


def _publish(out: Path, files: Mapping[str, str | bytes]) -> list[str]:
    """Replace the report in ``out`` by ``files``, whole: swapped in as a new folder, or
    (a mount point, a parent not writable) written in place as a set of renames. Only the
    files whose bytes differ are written: the others are hard-linked into the new folder
    (their inode and mtime stay), and when no file differs and none is gone nothing is
    touched. Returns the paths written or removed (relative, sorted)."""
    out = _target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    if os.path.lexists(out) and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "the report directory is not a directory", str(out))
    same, changed, gone = _differences(out, files)
    if not changed and not gone:
        return []
    if not _swap_in(out, files, same):
        _remove_temp(out)
        atomic_write_set({out / rel: files[rel] for rel in changed}, fault_point="report-write")
        _remove_stale(out, files)
    return sorted(changed + gone)


def _bytes(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode("utf-8")


def _owned(out: Path) -> dict[str, str]:
    """What of ``out`` is the report's (its top-level files, earlier layouts' files and
    everything under its folders), by relative path: "file" (a regular file), "dir", or
    "other" (a symlink, a FIFO, ...: never a report's, so a rewrite replaces it)."""
    found: dict[str, str] = {}

    def kind(mode: int) -> str:
        return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"

    def walk(path: str, rel: str) -> None:
        with os.scandir(path) as entries:
            for e in entries:
                if e.name.startswith(".") and e.name.endswith(".tmp"):
                    continue  # an in-place write's temp file (removed by the next write)
                k = kind(e.stat(follow_symlinks=False).st_mode)
                found[rel + e.name] = k
                if k == "dir":
                    walk(e.path, rel + e.name + "/")

    for name in (*REPORT_FILES, *LEGACY_FILES, *REPORT_DIRS):
        try:
            k = kind(os.lstat(out / name).st_mode)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            return {}
        found[name] = k
        if k == "dir" and name in REPORT_DIRS:
            walk(str(out / name), name + "/")
    return found


def _dirs_of(files: Iterable[str]) -> set[str]:
    """The folders a set of report files needs (``grids``, ``site``, ...)."""
    return {rel.rsplit("/", 1)[0] for rel in files if "/" in rel} | {
        "/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/"))}


def _differences(out: Path, files: Mapping[str, str | bytes]) -> tuple[set[str], list[str], list[str]]:
    """(files of ``files`` whose bytes ``out`` already holds, files to write, paths of
    ``out`` the report would no longer hold)."""
    have = _owned(out) if out.is_dir() else {}
    same = set()
    for rel, content in files.items():
        if have.get(rel) != "file":
            continue
        data = _bytes(content)
        try:
            if os.lstat(out / rel).st_size == len(data) and (out / rel).read_bytes() == data:
                same.add(rel)
        except OSError:
            continue
    wanted = set(files) | _dirs_of(files)
    gone = sorted(rel for rel, k in have.items() if rel not in wanted or (k != "dir") != (rel in files))
    return same, sorted(set(files) - same), [g for g in gone if g not in files]


def _selected(selection: Selection | None, stack_ids: Sequence[str] | None,
              siblings: Iterable[str]) -> Any:
    """Whether a record (or a record file's :class:`~runner.records.Location`) belongs to the
    report: its scenario and format are selected, and both of its stacks are (a load in a
    sibling of a table stack stays, as the verification of that stack's remedies)."""
    wanted = None if stack_ids is None else set(stack_ids)
    sibs = set(siblings)

    def want(r: Any) -> bool:
        if selection is not None and r.record_type != "env" and (
                r.scenario not in selection.scenarios or r.format not in selection.formats):
            return False
        if wanted is None:
            return True
        return bool((r.stack in wanted and (r.saver is None or r.saver in wanted))
                    or (r.record_type == "load" and r.stack in sibs and r.saver in wanted))
    return want


def skipped_note(skipped: Sequence[tuple[str, str]], limit: int = 20) -> list[str]:
    """README.md lines naming record files the report could not use (none: no lines)."""
    if not skipped:
        return []
    lines = [f"**{len(skipped)} record file(s) of this selection could not be used and are not in "
             "these tables** (their cells show as `not_run` or come from the records that remain); "
             "fix or delete them and write the report again:", ""]
    lines += [f"- `{path}`: {why}" for path, why in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"- … and {len(skipped) - limit} more")
    return [*lines, ""]


class NothingToReport(ValueError):
    """The store holds no cell of the selection: an empty table would replace the report."""


def write_reports(store: Store, out: Path, scenario_dir: Path = DEFAULT_SCENARIOS,
                  stack_ids: Sequence[str] | None = None,
                  catalog: Sequence[Any] | None = None,
                  selection: Selection | None = None, refuse_empty: bool = False,
                  keep: dict[str, str | bytes] | None = None) -> pd.DataFrame:
    """Write the report set (see the module docstring) to ``out``; return the frame.

    ``selection`` (default: every record of ``stack_ids``) restricts the records to its
    stacks, scenarios and formats, and every file states it at the top. Record files
    outside it are not read; record files of it that cannot be used (truncated, a wrong
    field type, stray) are skipped and named in README.md and results.json.gz. The frame's
    ``attrs`` say what was left out: ``skipped`` ([(path from the store root, why)]) and
    ``unselected`` (files not read) and ``written``, the report files it wrote or removed
    (only files whose bytes differ are written; ``keep``, a dict, receives every file).

    The report is swapped in whole (see :func:`_publish`): a failure or a kill at any
    point leaves ``out`` holding the complete previous report or the complete new one.
    CHANGES.md compares with the results.json(.gz) ``out`` held before this write.

    Raises:
        NothingToReport: ``refuse_empty`` and the table has no cell (nothing written).
    """
    if catalog is None:
        try:
            catalog = load_catalog()
        except CatalogError:
            catalog = []
    if selection is not None:
        stack_ids = selection.stacks
    siblings = {s.id for s in catalog if stack_ids is not None and s.sibling_of in set(stack_ids)}
    want = _selected(selection, stack_ids, siblings)
    scan = store.scan(want)
    records = [r for r in scan.records if want(r)]
    if selection is None:
        selection = Selection(
            tuple(sorted({r.stack for r in records if r.record_type == "env"}, key=stack_key)),
            tuple(sorted({str(r.scenario) for r in records if r.scenario})),
            tuple(f for f in FORMATS if any(r.format == f for r in records)))
    scrub = _Scrubber(store)
    skipped = [(path.relative_to(store.root).as_posix(), scrub(why)) for path, why in scan.skipped]
    try:
        scenarios = {s.name: ScenarioInfo(s.variants, s.has_custom_objects)
                     for s in discover_scenarios(scenario_dir)}
    except ScenarioError:
        scenarios = {}
    df = with_bisect(build_frame(records, scrub, scenarios, siblings=diagnose.sibling_map(catalog)), store.root)
    if refuse_empty and df.empty:
        raise NothingToReport(
            f"the store {store.root} holds no cell of this selection ({len(records)} usable records of it, "
            f"{len(skipped)} unusable, {scan.unselected} outside it): nothing to report, {out} is left as it was")
    said = "Selection: " + selection.describe()
    previous = read_previous(out)
    try:
        old_changes: str | None = (out / "CHANGES.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        old_changes = None
    files = report_files(df, records, scrub, said, previous, old_changes, skipped=skipped,
                         docs=scenario_docs(scenario_dir), past=history.read_history(_target(out)))
    written = _publish(out, files)
    df.attrs["skipped"] = skipped
    df.attrs["unselected"] = scan.unselected
    df.attrs["written"] = written
    if keep is not None:
        keep.update(files)
    return df


def cells_from_store(store: Path, out: TextIO = sys.stdout) -> dict[str, gate.Cell]:
    """``gate --store``: the current table of a store, built by the report into a temporary
    folder while holding the store's lock (a run writing it makes this a one-line
    StoreBusyError). Record files that cannot be used are skipped, and a note says how many
    and which."""
    if not (store / "records").is_dir():
        raise gate.GateError(f"store {store} has no records")
    st = Store(store)
    with st.running(reader=True), tempfile.TemporaryDirectory() as tmp:
        df = write_reports(st, Path(tmp))
        skipped = df.attrs.get("skipped") or []
        if skipped:
            print(f"gate: note: skipped {len(skipped)} record file(s) of the store that cannot be used "
                  "(their cells are missing or not_run): "
                  + "; ".join(f"{path} ({why})" for path, why in skipped[:3])
                  + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""), file=out, flush=True)
        return gate.load_results(Path(tmp) / gate.RESULTS_JSON)


# ------------------------------------------------------------------ the incremental report
#
# A report is a pure function of its inputs: the record files it reads, the catalog and
# selection, the scenario files (variants and descriptions), the report code, the paths
# the scrubber replaces, and the previous report in the folder (CHANGES.md). When all of
# them are what they were at the last report written into the same folder, and the
# folder's report files are still exactly the bytes written then, writing it again would
# change no byte: :func:`update_reports` then skips the work. What it compares with is kept
# in the store (``<store>/reports-manifest.json``, one entry per absolute report folder;
# created by a run's report, as the record index is), never in the report folder, so
# nothing of this machine enters ``reports/``.
#
# The record files are compared by identity (path, type, device, inode, size, mtime and
# ctime in ns; no file is read), as the store's record index trusts them: the store
# replaces a record by renaming a new file in (a new inode and ctime), and an edit in
# place stamps the file system's clock, which nobody can set back for the ctime. A file
# changed less than RACY_NS before the identities were taken (git's "racily clean" case)
# is also compared by a digest of its bytes. A symlink among the records turns the check
# off (the report runs), as does anything the manifest cannot say.

MANIFEST_NAME = "reports-manifest.json"
MANIFEST_VERSION = 1
RACY_NS = 2_000_000_000
_CODE = Path(__file__).resolve().parent  # runner/: the report code, its assets and data


@dataclasses.dataclass(frozen=True)
class Written:
    """What :func:`update_reports` did: the report's cell count and terminal summary, the
    record files skipped (path, why) and not selected, whether the work was skipped because
    nothing changed (``reused``), the report files written or removed, how many files the
    report has, and how many of them were already there, byte-identical (``kept``)."""

    cells: int
    summary: str
    skipped: list[tuple[str, str]]
    unselected: int
    reused: bool
    written: list[str]
    files: int
    kept: int
    removed: int = 0


class _Untrusted(Exception):
    """The inputs cannot be compared by identity (a symlink among the records)."""


def _record_entries(records_dir: Path) -> list[tuple[str, os.stat_result]]:
    """Every entry under ``records/`` (relative path, lstat), in path order; none without it.

    Raises:
        _Untrusted: a symlink (what it points to could change behind an equal identity).
    """
    found: list[tuple[str, os.stat_result]] = []

    def walk(path: str, rel: str) -> None:
        with os.scandir(path) as entries:
            for e in entries:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    walk(e.path, f"{rel}{e.name}/")
                elif stat.S_ISLNK(st.st_mode):
                    raise _Untrusted(e.path)
                else:
                    found.append((rel + e.name, st))

    if records_dir.is_dir():
        walk(str(records_dir), "")
    found.sort(key=lambda item: item[0])
    return found


def _records_digest(records_dir: Path, entries: Sequence[tuple[str, os.stat_result]],
                    racy_from: int | None = None) -> str:
    """The identity of the record files; with ``racy_from`` (ns), a file changed at or after
    it adds the digest of its bytes."""
    h = hashlib.sha256()
    for rel, st in entries:
        h.update(f"{rel}\0{st.st_mode}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0"
                 f"{st.st_ctime_ns}\n".encode("utf-8", "surrogateescape"))
        if racy_from is not None and max(st.st_mtime_ns, st.st_ctime_ns) >= racy_from \
                and stat.S_ISREG(st.st_mode):
            try:
                h.update(hashlib.sha256((records_dir / rel).read_bytes()).digest())
            except OSError as exc:
                h.update(f"unreadable {exc.errno}".encode())
    return h.hexdigest()


def _folder_digest(root: Path, skip: Iterable[str] = ()) -> str:
    """Names and bytes of every file under ``root`` (``__pycache__`` and ``skip`` aside)."""
    h = hashlib.sha256()
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if "__pycache__" in path.parts or rel in skip or not path.is_file():
                continue
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


_code_digest_cache: list[str] = []


def _code_digest() -> str:
    """The report code (all of runner/, its site assets and data) and the libraries that
    shape its bytes: any change rewrites the report."""
    if not _code_digest_cache:
        import tabulate as tabulate_module

        _code_digest_cache.append(hashlib.sha256(
            f"{_folder_digest(_CODE)}|{sys.version}|pandas {pd.__version__}|tabulate "
            f"{getattr(tabulate_module, '__version__', '?')}".encode()).hexdigest())
    return _code_digest_cache[0]


def _inputs_digest(records: str, store: Store, scenario_dir: Path, catalog: Sequence[Any] | None,
                   selection: Selection | None, stack_ids: Sequence[str] | None) -> str:
    parts = {
        "records": records,
        "catalog": repr(list(catalog)) if catalog is not None else "default",  # runner/stacks.toml: code
        "selection": repr(selection), "stack_ids": repr(stack_ids),
        "scenarios": f"{Path(scenario_dir).absolute()}:{_folder_digest(Path(scenario_dir))}",
        "code": _code_digest(), "scrub": sorted(_Scrubber(store).pairs),  # (its order of equal lengths varies)
        "fault": os.environ.get("COMPAT_FAULT", ""),
        "bisect": results_digest(store.root),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8", "surrogateescape")).hexdigest()


def _tree_digest(entries: Iterable[tuple[str, str, bytes | None]]) -> str:
    """Digest of a report folder's own entries: (relative path, kind, bytes of a file)."""
    h = hashlib.sha256()
    for rel, kind, data in sorted(entries, key=lambda e: e[0]):
        h.update(f"{rel}\0{kind}\0".encode("utf-8", "surrogateescape"))
        if data is not None:
            h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _files_digest(files: Mapping[str, str | bytes]) -> str:
    """The digest of the folder ``files`` make (see :func:`_tree_digest`)."""
    return _tree_digest([*((rel, "file", _bytes(c)) for rel, c in files.items()),
                         *((d, "dir", None) for d in _dirs_of(files))])


def _out_digest(out: Path) -> str | None:
    """The digest of the report files ``out`` holds now (None: it is not a folder, or a
    file of it cannot be read)."""
    if not out.is_dir() or out.is_symlink():
        return None
    try:
        return _tree_digest([(rel, kind, (out / rel).read_bytes() if kind == "file" else None)
                             for rel, kind in _owned(out).items()])
    except OSError:
        return None


def _read_manifest(store: Store) -> dict[str, Any]:
    try:
        data = json.loads((store.root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or not isinstance(
            data.get("reports"), dict):
        return {}
    return {k: v for k, v in data["reports"].items() if isinstance(v, dict)}


def _write_manifest(store: Store, key: str, entry: dict[str, Any] | None) -> None:
    """Set (None: drop) the manifest entry of the report folder ``key``; entries of folders
    that no longer exist are dropped. Only a run that may create the store's record index
    (it holds the store's lock as a writer, not as the report's reader) creates the file;
    a report that only reads the store updates an existing one and otherwise adds nothing
    to the store. A store that cannot be written keeps no manifest: the next report is
    then built in full (never skipped)."""
    path = store.root / MANIFEST_NAME
    if not path.is_file() and not (store.index is not None and store.index.create):
        return
    reports = _read_manifest(store)
    if entry is None:
        reports.pop(key, None)
    else:
        reports[key] = entry
    reports = {k: v for k, v in reports.items() if Path(k).is_dir()}
    try:
        if store.root.is_dir():
            atomic_write_set({store.root / MANIFEST_NAME: json.dumps(
                {"version": MANIFEST_VERSION, "reports": reports}, sort_keys=True, indent=1) + "\n"})
    except OSError:
        pass


def update_reports(store: Store, out: Path, scenario_dir: Path = DEFAULT_SCENARIOS,
                   stack_ids: Sequence[str] | None = None, catalog: Sequence[Any] | None = None,
                   selection: Selection | None = None, refuse_empty: bool = False) -> Written:
    """:func:`write_reports`, unless nothing it reads changed since the last report written
    into ``out`` and ``out`` still holds exactly what was written then: that work is skipped
    (``reused``) and no file is touched. Otherwise the report is built, and only the files
    whose bytes differ are written (see :func:`_publish`).

    Raises:
        NothingToReport: as :func:`write_reports`.
    """
    target = _target(out)
    key = str(target)
    clock = time.time_ns()  # before the identities are taken (see the section's comment)
    try:
        entries: list[tuple[str, os.stat_result]] | None = _record_entries(store.records_dir)
    except (_Untrusted, OSError):
        entries = None
    entry = _read_manifest(store).get(key)
    identity = None if entries is None else _records_digest(store.records_dir, entries)
    if entries is not None and entry is not None and isinstance(entry.get("racy_from"), int) \
            and identity == entry.get("identity"):
        inputs: str | None = _inputs_digest(_records_digest(store.records_dir, entries, entry["racy_from"]), store,
                                scenario_dir, catalog, selection, stack_ids)
        if inputs == entry.get("inputs"):
            _clean_leftovers(target)
            if _out_digest(target) == entry.get("outputs"):
                try:
                    return Written(int(entry["cells"]), str(entry["summary"]),
                                   [(str(p), str(w)) for p, w in entry["skipped"]], int(entry["unselected"]),
                                   True, [], int(entry["files"]), int(entry["files"]))
                except (KeyError, TypeError, ValueError):
                    pass
    racy_from = clock - RACY_NS
    inputs = None if entries is None else _inputs_digest(
        _records_digest(store.records_dir, entries, racy_from), store, scenario_dir, catalog, selection, stack_ids)
    files: dict[str, str | bytes] = {}
    df = write_reports(store, out, scenario_dir, stack_ids=stack_ids, catalog=catalog, selection=selection,
                       refuse_empty=refuse_empty, keep=files)
    written = list(df.attrs.get("written") or [])
    done = Written(len(df), terminal_summary(df), list(df.attrs.get("skipped") or []),
                   int(df.attrs.get("unselected") or 0), False, written, len(files),
                   kept=len(set(files) - set(written)), removed=len(set(written) - set(files)))
    _write_manifest(store, key, None if inputs is None else {
        "identity": identity, "inputs": inputs, "racy_from": racy_from, "outputs": _files_digest(files),
        "cells": done.cells, "summary": done.summary, "skipped": done.skipped, "unselected": done.unselected,
        "files": done.files})
    return done
