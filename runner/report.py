"""Published tables: a pure function of the records in the store.

The only module that imports pandas. One tidy DataFrame with one row per cell
(saver artifact x loader x variant) is written as ``results.csv``/``results.json``, and
as saver-rows x loader-columns grids per scenario and format in ``matrix.md``
(tabulate) and ``index.html`` (self-contained). Output is deterministic: rows and
columns in natural order, no timestamps, and no paths of the machine that ran it.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from runner import diagnose
from runner.matrix import DEFAULT_SCENARIOS, FORMATS, ScenarioError, Selection, discover_scenarios
from runner.records import Outcome, Record, Store, atomic_write_set
from runner.records import first_line as _first_line
from runner.stacks import CatalogError, load_catalog, natural_key

__all__ = ["COLUMNS", "CSV_COLUMNS", "JSON_COLUMNS", "SYMBOLS", "build_frame", "footnoted", "results_json",
           "terminal_summary", "write_reports"]

SYMBOLS: dict[str, str] = {
    "ok": "✓",
    "mismatch": "≠",
    "load_error": "✗",
    "save_error": "S",
    "not_applicable": "–",
    "timeout": "⏱",
    "crash": "☠",
    "protocol_error": "?",
    "env_unavailable": "∅",
    "not_run": "·",
}
MEANINGS: dict[str, str] = {
    "ok": "loaded, and predictions match the saver's within the scenario tolerance",
    "mismatch": "loaded, but predictions differ beyond tolerance (max |diff| in the CSV)",
    "load_error": "the loader raised (type and message in the footnote)",
    "save_error": "the saver could not write this artifact, so nothing to load",
    "not_applicable": "cannot exist: the saving stack cannot write it, or the loading stack has no "
                      "way to read that format at all (e.g. an exported SavedModel without TensorFlow)",
    "timeout": "the cell exceeded its time limit",
    "crash": "the worker process died in this cell (signal or exit code in the footnote)",
    "protocol_error": "the worker broke the runner's protocol",
    "env_unavailable": "the stack could not be built or imported (reason in the footnote)",
    "not_run": "no record yet (the cell has not been run)",
}
COLORS: dict[str, str] = {
    "ok": "#c8e6c9", "mismatch": "#ffe0b2", "load_error": "#ffcdd2", "save_error": "#f8bbd0",
    "not_applicable": "#eeeeee", "timeout": "#d1c4e9", "crash": "#b39ddb",
    "protocol_error": "#b0bec5", "env_unavailable": "#cfd8dc", "not_run": "#fafafa",
}
COLUMNS = [
    "cell_id", "scenario", "format", "variant", "saver", "loader", "outcome", "phase",
    "error_type", "error_message", "category", "remedy", "max_abs_diff", "written_as",
    "saver_python", "saver_tensorflow", "saver_keras", "saver_backend",
    "loader_python", "loader_tensorflow", "loader_keras", "loader_backend",
    "source", "traceback_tail",
]
VERSION_KEYS = ("python", "tensorflow", "keras", "backend")
# The published files: results.csv is the flat table a spreadsheet reads (messages cut to
# their first line); results.json keeps every distinct error once (see results_json).
CSV_COLUMNS = ["cell_id", "scenario", "format", "variant", "saver", "loader", "outcome", "phase",
               "category", "remedy", "error_type", "error_message", "max_abs_diff", "written_as",
               "source"]
CSV_MESSAGE_CHARS = 160
REPORT_FILES = ("results.csv", "results.json", "matrix.md", "index.html", "errors.md")
JSON_COLUMNS = ["scenario", "format", "variant", "saver", "loader", "outcome", "phase", "category",
                "remedy", "max_abs_diff", "written_as", "source", "error_id"]
JSON_MESSAGE_CHARS = 600
JSON_TRACEBACK_CHARS = 800
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

    def __call__(self, text: str | None) -> str:
        text = text or ""
        for old, new in self.pairs:
            text = text.replace(old, new)
        # One artifact path per saver would split one error into many footnotes, and
        # object ids differ on every run: neither may make a diff of reports/ noisy.
        text = _ARTIFACT_RE.sub("<artifact>", text)
        text = _OBJECT_ID_RE.sub(r"\1<id>", text)
        return _ADDRESS_RE.sub("0x…", text)


# Any store's artifact directory (a merged store's records name the stores of the jobs
# or shards that made them): the path up to and including artifacts/<saver>/<scenario>/<fmt>.
_ARTIFACT_RE = re.compile(r"(?:<\w+>|~)?(?:/[^/\s'\"]+)*?/artifacts/[^/\s'\"]+/[^/\s'\"]+/[^/\s'\"]+")
_OBJECT_ID_RE = re.compile(r"('shared_object_id': )\d+")
_ADDRESS_RE = re.compile(r"0x[0-9a-f]{6,}")


def _versions(prefix: str, env: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{k}": env.get(k) for k in VERSION_KEYS}


def _row(rec: Record, scrub: _Scrubber, *, outcome: str | None = None,
         loader: str | None = None, variant: str | None = None, source: str = "load",
         loader_env: dict[str, Any] | None = None, saver_env: dict[str, Any] | None = None,
         cell_id: str | None = None, remedy: str = "") -> dict[str, Any]:
    err = rec.error
    # A mismatch has no exception but a reason (shape, NaN, optimizer state not restored).
    message = scrub(err.message) if err else str(rec.details.get("reason") or "")
    diag = diagnose.diagnose(rec)
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
    loaders = sorted(envs, key=natural_key)

    seen: dict[str, set[str]] = {}
    for key in loads:
        seen.setdefault(str(key[1]), set()).add(str(key[4]))

    def info(scenario: str) -> ScenarioInfo:
        # Without the scenario's metadata every variant on record is a table variant.
        return scenarios.get(scenario) or ScenarioInfo(tuple(sorted(
            seen.get(scenario, set()) | {"default"}, key=lambda v: (v != "default", v))))

    def remedy_text(load: Record) -> str:
        found = diagnose.remedy_results(
            load, diagnose.diagnose(load),
            lambda lo, v: loads.get((load.saver, load.scenario, load.format, lo, v)),
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
                    rows.append(_row(load, scrub, loader_env=lenv or load.env,
                                     remedy=remedy_text(load) if load.outcome.failed else ""))
                elif save.outcome is not Outcome.OK:
                    rows.append(_row(save, scrub, outcome=save.outcome.value, loader=loader,
                                     variant=variant, source="save", loader_env=lenv,
                                     saver_env=save.env, cell_id=cid))
                elif envs[loader].outcome is not Outcome.OK:
                    rows.append(_row(envs[loader], scrub, outcome="env_unavailable",
                                     loader=loader, variant=variant, source="env",
                                     saver_env=save.env, cell_id=cid) | {
                        "scenario": scenario, "format": fmt, "saver": saver})
                else:
                    rows.append({**dict.fromkeys(COLUMNS, None), "cell_id": cid,
                                 "scenario": scenario, "format": fmt, "variant": variant,
                                 "saver": saver, "loader": loader, "outcome": "not_run",
                                 "source": "none", "category": "", "remedy": "",
                                 **_versions("saver", save.env), **_versions("loader", lenv)})
    for key, load in loads.items():
        if key[3] in envs and key[4] not in info(str(key[1])).variants:
            rows.append(_row(load, scrub, loader_env=envs[str(key[3])].env or load.env, source="remedy"))
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        return df
    fmt_order = {f: i for i, f in enumerate(FORMATS)}
    df["_k"] = [
        (r.source == "remedy", r.scenario, fmt_order.get(r.format, 99), r.variant != "default",
         r.variant, natural_key(r.saver), natural_key(r.loader))
        for r in _rows(df, "source", "scenario", "format", "variant", "saver", "loader")
    ]
    return df.sort_values("_k").drop(columns="_k").reset_index(drop=True)


def _rows(df: pd.DataFrame, *columns: str) -> Iterator[Any]:
    """``itertuples`` over only the columns a loop reads: iterating a ~10^5-row frame
    costs per element, and the report's loops need a third of the columns."""
    rows: Iterator[Any] = df[list(columns)].itertuples(index=False)
    return rows


_GRID_MD = ("saver", "loader", "outcome", "category", "error_type", "error_message", "remedy")
_GRID_HTML = (*_GRID_MD, "max_abs_diff", "traceback_tail", "phase")


def table_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that are cells of the published grids (remedy runs excluded)."""
    return df[df["source"] != "remedy"] if not df.empty else df


# ------------------------------------------------------------------------- writers


class _Footnotes:
    """Numbers distinct (category, error type, first message line) in order of appearance."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str, str], int] = {}

    def number(self, row: Any) -> int | None:
        if row.outcome in ("ok", "not_run") or not (row.error_type or row.error_message):
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


FIXED_MARK = "🔧"  # a remedy was re-run on this cell and made it load and match


def _fixed(row: Any) -> bool:
    return "fixed by" in str(row.remedy or "")


def _grids(df: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    out = []
    for (scenario, fmt, variant), part in table_cells(df).groupby(["scenario", "format", "variant"], sort=False):
        out.append((str(scenario), str(fmt), str(variant), part))
    return out


def _stack_table(records: Sequence[Record], scrub: _Scrubber) -> list[list[str]]:
    rows = []
    for r in sorted((r for r in records if r.record_type == "env"), key=lambda r: natural_key(r.stack)):
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


def _markdown(df: pd.DataFrame, records: Sequence[Record], scrub: _Scrubber, said: str = "") -> str:
    notes = _Footnotes()
    lines = ["# TF/Keras compatibility matrix", "", *([f"**{said}**", ""] if said else []),
             "Rows: the stack that **saved** the model. Columns: the stack that **loaded** it "
             "and ran the model on the saver's inputs. Generated by `nox -s matrix` from the "
             "records of real runs; `results.csv` has one row per cell.", "",
             "## Stacks (versions actually installed)", "",
             tabulate([[str(c).replace("|", "\\|") for c in row] for row in _stack_table(records, scrub)],
                      headers=["stack", "python", "tensorflow", "keras", "backend", "keras API",
                               "env", "status"], tablefmt="github"), "",
             "## Legend", "",
             tabulate([[SYMBOLS[o], f"`{o}`", MEANINGS[o].replace("|", "\\|")] for o in SYMBOLS],
                      headers=["symbol", "outcome", "meaning"], tablefmt="github"), "",
             "A superscript number points to the footnote with the failure's category, error "
             f"type and the first line of its message. {FIXED_MARK} marks a failing cell that a "
             "remedy fixed when the runner re-ran it (the footnote says which; see "
             "`errors.md`).", "",
             "## Summary (cells per outcome, by loader)", "", _summary_table(table_cells(df), "github"), "",
             "## Per-stack summary", "",
             "Cells between different stacks only, `not_applicable` excluded: a load counts as "
             "ok when the model loaded and its predictions matched.", "",
             _per_stack(table_cells(df), "github"), "",
             "## Saver × loader overview", "",
             OVERVIEW_TEXT, "",
             _pair_overview(table_cells(df), "github"), "",
             "## Failure categories", "", _category_table(df, "github"), ""]
    for scenario, fmt, variant, part in _grids(df):
        title = f"## `{scenario}` · `{fmt}`" + (f" · load variant `{variant}`" if variant != "default" else "")
        savers = sorted(part["saver"].unique(), key=natural_key)
        loaders = sorted(part["loader"].unique(), key=natural_key)
        cells = {(r.saver, r.loader): r for r in _rows(part, *_GRID_MD)}
        table = []
        for s in savers:
            line = [f"**{s}**"]
            for lo in loaders:
                r = cells.get((s, lo))
                if r is None:
                    line.append(SYMBOLS["not_run"])
                    continue
                n = notes.number(r)
                line.append(SYMBOLS[r.outcome] + (f"<sup>{n}</sup>" if n else "")
                            + (FIXED_MARK if _fixed(r) else ""))
            table.append(line)
        odd = part[part["written_as"].notna() & (part["written_as"] != "")
                   & (part["written_as"] != _EXPECTED_WRITE.get(fmt, fmt))]
        lines += [title, ""]
        for saver, what in sorted({(str(r.saver), str(r.written_as)) for r in odd.itertuples()},
                                  key=lambda p: natural_key(p[0])):
            lines += [f"`{saver}` wrote `{what}` when asked for `{fmt}` (see `written_as`).", ""]
        lines += [tabulate(table, headers=["saver \\ loader", *loaders], tablefmt="github"), ""]
    lines += ["## Footnotes", ""]
    fixes = _fixes_by_note(df, notes)
    for (cat, etype, msg), n in sorted(notes.index.items(), key=lambda kv: kv[1]):
        pipe_safe = msg.replace("|", "\\|")
        text = f"`{etype}`: {pipe_safe}" if etype else pipe_safe
        lines.append(f"{n}. " + (f"**{cat}** · " if cat else "") + f"{text}{fixes.get(n, '')}")
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


def _category_table(df: pd.DataFrame, tablefmt: str) -> str:
    failed = failing_cells(df)
    if failed.empty:
        return "(no failing cells)"
    counts = failed["category"].value_counts()
    rows = [[cat, diagnose.CATEGORIES[cat].title if cat in diagnose.CATEGORIES else "",
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
    pivot = pivot[order].loc[sorted(pivot.index, key=natural_key)]
    rows = [[idx, *[int(v) for v in vals]] for idx, vals in zip(pivot.index, pivot.values, strict=True)]
    total = ["**all**" if tablefmt == "github" else "all", *[int(pivot[c].sum()) for c in order]]
    return tabulate([*rows, total], headers=["loader", *order], tablefmt=tablefmt)


def _per_stack(df: pd.DataFrame, tablefmt: str) -> str:
    """For each stack: how many artifacts of *other* stacks it loads and matches, and how
    many of its own artifacts other stacks load and match (cells that could exist only)."""
    if df.empty:
        return "(no cells)"
    cross = df[(df["saver"] != df["loader"]) & (df["outcome"] != "not_applicable")]
    rows = []
    for stack in sorted(set(df["saver"]) | set(df["loader"]), key=natural_key):
        as_loader = cross[cross["loader"] == stack]
        as_saver = cross[cross["saver"] == stack]
        own = df[(df["saver"] == stack) & (df["loader"] == stack) & (df["outcome"] != "not_applicable")]
        rows.append([stack, _ratio(as_loader), _ratio(as_saver), _ratio(own)])
    return tabulate(rows, headers=["stack", "loads others' artifacts (ok / cells)",
                                   "its artifacts load elsewhere", "own round trip"],
                    tablefmt=tablefmt)


OVERVIEW_TEXT = (
    "Per cent of the cells between a saver (row) and a loader (column) that loaded and matched, "
    "over every scenario, format and load variant (`not_applicable` excluded, a failed save "
    "counts as a failure; rounded down, so 100 means every cell). The grids below give each cell.")


def _pair_overview(df: pd.DataFrame, tablefmt: str) -> str:
    """Saver × loader: the share of the cells that could exist that loaded and matched."""
    if df.empty:
        return "(no cells)"
    cells = df[df["outcome"] != "not_applicable"]
    counts = (cells["outcome"] == "ok").groupby([cells["saver"], cells["loader"]]).agg(["sum", "count"])
    stats = {key: (int(ok), int(n)) for key, ok, n in zip(counts.index, counts["sum"], counts["count"], strict=True)}
    savers = sorted(set(df["saver"]), key=natural_key)
    loaders = sorted(set(df["loader"]), key=natural_key)
    rows = []
    for saver in savers:
        line = [f"**{saver}**" if tablefmt == "github" else saver]
        for loader in loaders:
            ok, n = stats.get((saver, loader), (0, 0))
            line.append(str(100 * ok // n) if n else SYMBOLS["not_applicable"])
        rows.append(line)
    return tabulate(rows, headers=["saver \\ loader", *loaders], tablefmt=tablefmt)


def _ratio(part: pd.DataFrame) -> str:
    if part.empty:
        return "—"
    ok = int((part["outcome"] == "ok").sum())
    return f"{ok} / {len(part)} ({100 * ok / len(part):.0f} %)"


def terminal_summary(df: pd.DataFrame) -> str:
    """A short plain-text table: cells per outcome for each loader stack."""
    return _summary_table(table_cells(df), "simple")


def _span(values: Iterable[Any]) -> str:
    ids = sorted({str(v) for v in values if v}, key=natural_key)
    if not ids:
        return "—"
    return ids[0] if len(ids) == 1 else f"{ids[0]} … {ids[-1]} ({len(ids)})"


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
    failed = failed.assign(sig=[
        diagnose.normalise(f"{str(t).rsplit('.', 1)[-1]}: {m}" if t else str(m or o))
        for t, m, o in zip(failed["error_type"], failed["error_message"], failed["outcome"], strict=True)])
    order = failed["category"].value_counts()
    for cat in order.index:
        rule = diagnose.CATEGORIES.get(str(cat), diagnose.OTHER)
        part = failed[failed["category"] == cat]
        lines += [f"## `{cat}` — {rule.title} ({len(part)} cells)", "", rule.explanation, ""]
        if rule.remedies:
            lines += ["Remedies the runner re-runs for this category where they apply: "
                      + ", ".join(f"`{r}` ({diagnose.REMEDIES[r].label})" for r in rule.remedies), ""]
        rows = []
        for sig, sp in sorted(part.groupby("sig"), key=lambda kv: -len(kv[1])):
            tally = remedy_tally(sp["remedy"].dropna())
            rows.append([f"`{sig}`".replace("|", "\\|"), len(sp), _span(sp["saver"]), _span(sp["loader"]),
                         ", ".join(sorted(set(sp["format"].dropna()), key=FORMATS.index)),
                         ", ".join(f"{n}: fixed {ok}/{tried}" for n, (ok, tried) in sorted(tally.items()))
                         or "—"])
        lines += [tabulate(rows, headers=["signature", "cells", "savers", "loaders", "formats",
                                          "remedies re-run (fixed / tried)"], tablefmt="github"), ""]
    return "\n".join(lines).rstrip() + "\n"


def _html(df: pd.DataFrame, records: Sequence[Record], scrub: _Scrubber, said: str = "") -> str:
    esc = html.escape
    notes = _Footnotes()
    style = "".join(f".o-{o}{{background:{c}}}" for o, c in COLORS.items())
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>TF/Keras compatibility matrix</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "td,th{border:1px solid #bbb;padding:0.25em 0.6em;text-align:center}"
        "th.s{text-align:left}td.c{cursor:pointer;min-width:2.5em}"
        "pre{white-space:pre-wrap;background:#f6f6f6;padding:0.5em;font-size:0.85em}"
        "#detail{position:sticky;bottom:0;background:#fff;border-top:2px solid #888;"
        "max-height:40vh;overflow:auto;padding:0.5em}" + style,
        "</style></head><body><h1>TF/Keras compatibility matrix</h1>",
        f"<p><b>{esc(said)}</b></p>" if said else "",
        "<p>Rows: the stack that <b>saved</b> the model; columns: the stack that <b>loaded</b> it "
        "and ran the model on the saver's inputs. Click a cell for its outcome, "
        "the failure's category, explanation, the remedies the runner re-ran, the raw "
        f"message and traceback tail. {FIXED_MARK} marks a failing cell a remedy fixed (verified "
        "by a real re-run).</p><h2>Stacks</h2><table><tr>",
    ]
    heads = ["stack", "python", "tensorflow", "keras", "backend", "keras API", "env", "status"]
    parts.append("".join(f"<th>{h}</th>" for h in heads) + "</tr>")
    for row in _stack_table(records, scrub):
        parts.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>")
    parts.append("</table><h2>Legend</h2><table>")
    for o, sym in SYMBOLS.items():
        parts.append(f"<tr><td class='o-{o}'>{sym}</td><td><code>{o}</code></td>"
                     f"<td style='text-align:left'>{esc(MEANINGS[o])}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h2>Saver × loader overview</h2><p>{esc(OVERVIEW_TEXT.replace('`', ''))}</p>"
                 + _pair_overview(table_cells(df), "html"))
    # Per cell only what differs (outcome class, footnote, remedy index, diff): the cell id
    # comes from its grid, row and column, everything else from the footnote's entry.
    errors: dict[int, dict[str, Any]] = {}
    remedies: dict[str, int] = {}
    for scenario, fmt, variant, part in _grids(df):
        title = f"{scenario} · {fmt}" + (f" · variant {variant}" if variant != "default" else "")
        savers = sorted(part["saver"].unique(), key=natural_key)
        loaders = sorted(part["loader"].unique(), key=natural_key)
        cells = {(r.saver, r.loader): r for r in _rows(part, *_GRID_HTML)}
        parts.append(f"<h2>{esc(title)}</h2><table data-g='{esc(f'{scenario}:{fmt}', quote=True)}' "
                     f"data-v='{esc(variant, quote=True)}'><tr><th>saver \\ loader</th>")
        parts.append("".join(f"<th>{esc(lo)}</th>" for lo in loaders) + "</tr>")
        for s in savers:
            parts.append(f"<tr><th class='s'>{esc(s)}</th>")
            for lo in loaders:
                r = cells.get((s, lo))
                if r is None:
                    parts.append("<td class='o-not_run'>·</td>")
                    continue
                n = notes.number(r)
                attrs = f" data-n='{n}'" if n else ""
                if r.remedy:
                    attrs += f" data-r='{remedies.setdefault(str(r.remedy), len(remedies))}'"
                if r.max_abs_diff is not None and not math.isnan(r.max_abs_diff):
                    attrs += f" data-x='{r.max_abs_diff:.3g}'"
                if n and n not in errors:
                    rule = diagnose.CATEGORIES.get(str(r.category or ""))
                    errors[n] = {"type": r.error_type, "message": r.error_message,
                                 "traceback": r.traceback_tail, "category": r.category,
                                 "explanation": rule.explanation if rule else "", "phase": r.phase}
                sup = f"<sup>{n}</sup>" if n else ""
                if _fixed(r):
                    sup += FIXED_MARK
                parts.append(f"<td class='c o-{r.outcome}'{attrs}>{SYMBOLS[r.outcome]}{sup}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    parts.append("<h2>Failure categories</h2>" + _category_table(df, "html"))
    parts.append("<h2>Footnotes</h2><ol>")
    fixes = _fixes_by_note(df, notes)
    for (cat, etype, msg), n in sorted(notes.index.items(), key=lambda kv: kv[1]):
        text = f"<code>{esc(etype)}</code>: {esc(msg)}" if etype else esc(msg)
        parts.append("<li>" + (f"<b>{esc(cat)}</b> · " if cat else "") + f"{text}{esc(fixes.get(n, ''))}</li>")
    parts.append("</ol><div id='detail'>Click a cell for details.</div><script>")
    for name, obj in (("E", errors), ("R", list(remedies))):
        parts.append(f"const {name}=" + json.dumps(obj, sort_keys=True, default=_json_default)
                     .replace("<", "\\u003c") + ";")
    parts.append(
        "function t(s){const e=document.createElement('div');e.textContent=s??'';return e.innerHTML}"
        "document.querySelectorAll('td.c').forEach(c=>c.onclick=()=>{const g=c.closest('table');"
        "const lo=g.rows[0].cells[c.cellIndex].textContent,sv=c.parentElement.cells[0].textContent;"
        "const o=[...c.classList].find(k=>k.startsWith('o-')).slice(2);"
        "const n=c.dataset.n,e=n?E[n]:{},r=c.dataset.r!=null?R[c.dataset.r]:'';"
        "const id=g.dataset.g+':'+sv+'->'+lo+':'+g.dataset.v;"
        "document.getElementById('detail').innerHTML='<b>'+t(id)+'</b>: '+t(o)+"
        "(e.phase?' (phase '+t(e.phase)+')':'')+(c.dataset.x?' max |diff| '+t(c.dataset.x):'')+"
        "(e.category?'<p><b>'+t(e.category)+'</b>: '+t(e.explanation)+'</p>':'')+"
        "(r?'<p>Remedies re-run: '+t(r)+'</p>':'')+"
        "(e.type?'<details><summary>raw message</summary><pre>'+t(e.type)+': '+t(e.message)+"
        "'</pre></details>':'')+"
        "(e.traceback?'<details><summary>traceback tail (footnote '+n+')</summary><pre>'+"
        "t(e.traceback)+'</pre></details>':'')});")
    parts.append("</script></body></html>")
    return "\n".join(parts) + "\n"


def _json_default(obj: Any) -> Any:
    return str(obj)


def results_json(clean: pd.DataFrame, records: Sequence[Record], said: str = "") -> str:
    """results.json, schema 2: compact and diffable at the size of the full catalog.

    ``columns`` names the fields of each ``cells`` row (one row per line); a row's
    ``error_id`` indexes ``errors`` (type, message, traceback tail: each distinct error
    once), and the installed versions of each stack are in ``stacks`` instead of in every
    row. Schema 1 (one object per cell with every field) is still read by the gate.
    """
    errors: dict[tuple[str, str, str], int] = {}
    lines = []
    for row in clean.to_dict(orient="records"):
        eid = None
        if row["error_type"] or row["error_message"]:
            key = (str(row["error_type"] or ""), str(row["error_message"] or "")[:JSON_MESSAGE_CHARS],
                   str(row["traceback_tail"] or "")[-JSON_TRACEBACK_CHARS:])
            eid = errors.setdefault(key, len(errors))
        lines.append("  " + json.dumps([row[c] for c in JSON_COLUMNS[:-1]] + [eid], ensure_ascii=False,
                                       default=_json_default))
    stacks = {r.stack: {k: r.env.get(k) for k in (*VERSION_KEYS, "keras_api")}
              for r in sorted(records, key=lambda r: natural_key(r.stack)) if r.record_type == "env"}
    head = json.dumps({"schema_version": 2, "selection": said, "columns": JSON_COLUMNS, "stacks": stacks,
                       "errors": [list(k) for k in errors]}, ensure_ascii=False, sort_keys=True,
                      indent=1, default=_json_default)
    assert head.endswith("\n}")
    return head[:-2] + ',\n "cells": [\n' + ",\n".join(lines) + "\n ]\n}\n"


def write_reports(store: Store, out: Path, scenario_dir: Path = DEFAULT_SCENARIOS,
                  stack_ids: Sequence[str] | None = None,
                  catalog: Sequence[Any] | None = None,
                  selection: Selection | None = None) -> pd.DataFrame:
    """Write results.csv/json, matrix.md, index.html and errors.md to ``out``; return the frame.

    ``selection`` (default: every record of ``stack_ids``) restricts the records to its
    stacks, scenarios and formats, and every file states it at the top. The files are
    written as a set: a failure (a full disk) leaves all the previous tables in place.
    """
    records = list(store.iter_records())
    if catalog is None:
        try:
            catalog = load_catalog()
        except CatalogError:
            catalog = []
    if selection is not None:
        stack_ids = selection.stacks
        records = [r for r in records if r.record_type == "env"
                   or (r.scenario in selection.scenarios and r.format in selection.formats)]
    if stack_ids is not None:
        # A cell belongs to the table only if both of its stacks do; loads in a sibling
        # of a table stack stay as the verification of that stack's remedies.
        wanted = set(stack_ids)
        siblings = {s.id for s in catalog if s.sibling_of in wanted}
        records = [r for r in records if (r.stack in wanted and (r.saver is None or r.saver in wanted))
                   or (r.record_type == "load" and r.loader in siblings and r.saver in wanted)]
    if selection is None:
        selection = Selection(
            tuple(sorted({r.stack for r in records if r.record_type == "env"}, key=natural_key)),
            tuple(sorted({str(r.scenario) for r in records if r.scenario})),
            tuple(f for f in FORMATS if any(r.format == f for r in records)))
    scrub = _Scrubber(store)
    try:
        scenarios = {s.name: ScenarioInfo(s.variants, s.has_custom_objects)
                     for s in discover_scenarios(scenario_dir)}
    except ScenarioError:
        scenarios = {}
    df = build_frame(records, scrub, scenarios, siblings=diagnose.sibling_map(catalog))
    clean = df.astype(object).where(df.notna(), None)
    csv_df = df[CSV_COLUMNS].assign(error_message=[
        _first_line(str(m or ""))[:CSV_MESSAGE_CHARS] for m in df["error_message"]])
    said = "Selection: " + selection.describe()
    for name in REPORT_FILES:  # temp files of a report write that was killed
        for stale in out.glob(f".{name}.*.tmp") if out.is_dir() else []:
            stale.unlink(missing_ok=True)
    atomic_write_set({
        out / "results.csv": f"# {said}\n" + csv_df.to_csv(index=False, lineterminator="\n"),
        out / "results.json": results_json(clean, records, said),
        out / "matrix.md": _markdown(df, records, scrub, said),
        out / "index.html": _html(df, records, scrub, said),
        out / "errors.md": errors_markdown(df, said),
    }, fault_point="report-write")
    return df
