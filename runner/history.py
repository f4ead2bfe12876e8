"""Flip history across publications: ``history/`` in a report folder (stdlib + the gate).

Every time the report publishes a table that differs from the one the folder held (its
``results.json.gz``), :func:`history_files` adds one entry: a publication. An entry is

- ``history/<id>.json.gz``: the publication's ``results.json.gz``, the very bytes published
  (a snapshot, not a diff: git stores it as the same blob as that commit's
  ``results.json.gz``, so the repository grows by nothing; a text diff of the
  dictionary-coded table would add its own bytes, and every new distinct message renumbers
  the rows after it; docs/reports-schema.md has the measurements);
- ``history/<id>.changes.json.gz``: the cells that changed against the publication before
  (derived from the two snapshots, kept so the site needs no snapshot: the gate's
  comparison, in CHANGES.md's kinds, plus the cells new and gone);
- its line in ``history/index.json`` (oldest first).

A publication's id is ``<seq>-<date>-<digest>``: its number in the folder, the UTC date of
the report that published it (``$SOURCE_DATE_EPOCH`` when set; ``undated`` for a table that
was in the folder before any history: it is adopted with the first entry that follows it)
and the first 12 hex digits of the SHA-256 of its unpacked ``results.json``. All of it is
written once, by the report that publishes, and carried byte for byte by every later
report: a report whose table is the folder's (a re-render) adds nothing.

The files are part of the report's set (``runner.report.REPORT_DIRS``), so they are
swapped in with the rest: a kill leaves the old history with the old table or the new
history with the new one, never half an entry or an index naming a missing file (and in
the in-place fallback the index sorts last, so it is renamed in after what it names).
``data/history.js`` is what the site's History view (``site/history.js``) reads.
"""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner import gate

__all__ = ["FOLDER", "INDEX", "KINDS", "Past", "change_kinds", "describe", "history_files", "read_history",
           "timeline"]

FOLDER = "history"
INDEX = f"{FOLDER}/index.json"
SITE_DATA = "data/history.js"
FORMAT = 1
KINDS = ("now failing (was ok)", "now ok (was failing)", "predictions no longer match", "failure changed",
         "other outcome change")
_CELL_ID = re.compile(r"^([^:]+):(.+):([^:>]+)->([^:]+):([^:]+)$")  # as the site's parseId

State = tuple[str, str]  # (outcome, category)


class HistoryError(ValueError):
    """The folder's history cannot be used (the message says why)."""


# ------------------------------------------------------------------ comparing two tables

def change_kinds(old: Mapping[str, gate.Cell], new: Mapping[str, gate.Cell]
                 ) -> tuple[gate.GateResult, dict[str, list[tuple[gate.Cell, gate.Cell]]]]:
    """The gate's comparison of two tables' cells (remedy runs left out by the caller), in
    the kinds CHANGES.md and the history name (:data:`KINDS`, in that order)."""
    res = gate.compare(old, new)
    flagged = {n.cell_id for _, n in res.regressions} | {n.cell_id for _, n in res.fixed} | {
        n.cell_id for _, n in res.changed}
    other = [(old[c], new[c]) for c in sorted(set(old) & set(new))
             if c not in flagged and old[c].outcome != new[c].outcome]
    kinds = dict(zip(KINDS, (
        [(o, n) for o, n in res.regressions if o.outcome in gate.PASSING],
        list(res.fixed),
        # a regression of the prediction fact in a cell that failed already (training_mismatch before)
        [(o, n) for o, n in res.regressions if o.outcome not in gate.PASSING],
        list(res.changed), other), strict=True))
    return res, kinds


def _table(cells: Mapping[str, gate.Cell]) -> dict[str, gate.Cell]:
    return {k: c for k, c in cells.items() if not c.remedy}


def changes_of(old: Mapping[str, gate.Cell] | None, new: Mapping[str, gate.Cell]) -> dict[str, Any]:
    """What a changes file holds: every cell whose outcome or category changed, by kind,
    as [cell id, old outcome, old category, new outcome, new category], and the cells new
    and gone as [cell id, outcome, category]; ``old`` None (nothing to compare with): {}."""
    if old is None:
        return {}
    old, new = _table(old), _table(new)
    res, kinds = change_kinds(old, new)
    return {"kinds": {k: [[n.cell_id, o.outcome, o.category, n.outcome, n.category] for o, n in pairs]
                      for k, pairs in kinds.items()},
            "new": [[c, new[c].outcome, new[c].category] for c in res.only_current],
            "gone": [[c, old[c].outcome, old[c].category] for c in res.only_baseline]}


# ------------------------------------------------------------------ reading a folder's history

@dataclasses.dataclass(frozen=True)
class Past:
    """What a report folder holds before a write: its history (``entries``, oldest first,
    and every file under ``history/`` by path relative to the folder, as it is), why it
    cannot be used (``problem``; then it is carried as it is and nothing is added), and
    the exact bytes of the table the folder publishes (``table_gz``; None: none)."""

    entries: list[dict[str, Any]]
    files: dict[str, bytes]
    problem: str = ""
    table_gz: bytes | None = None


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)  # no name or time in the header: same input, same bytes


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unpack(raw: bytes) -> str:
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")


def read_history(out: Path) -> Past:
    """The history of the report folder ``out`` and the bytes of its table, checked: the
    index names files that exist, every snapshot unpacks to the digest its entry states."""
    table_gz = None
    for name, packed in ((gate.RESULTS_JSON, True), ("results.json", False)):
        try:
            raw = (out / name).read_bytes()
        except OSError:
            continue
        table_gz = raw if packed else _gzip(raw)
        break
    root = out / FOLDER
    files: dict[str, bytes] = {}
    if root.is_dir() and not root.is_symlink():
        for path in sorted(root.rglob("*")):
            temp = path.name.startswith(".") and path.name.endswith(".tmp")  # an in-place write's, killed
            if path.is_file() and not path.is_symlink() and not temp:
                files[path.relative_to(out).as_posix()] = path.read_bytes()
    if not files:
        return Past([], {}, "", table_gz)
    try:
        return Past(_checked_entries(files), files, "", table_gz)
    except HistoryError as exc:
        return Past([], files, str(exc), table_gz)


def _checked_entries(files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    if INDEX not in files:
        raise HistoryError(f"{INDEX} is missing")
    try:
        data = json.loads(files[INDEX].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HistoryError(f"{INDEX} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("publications"), list):
        raise HistoryError(f"{INDEX} is not a history index of format {FORMAT}")
    entries: list[dict[str, Any]] = data["publications"]
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in ("id", "digest", "snapshot")):
            raise HistoryError(f"{INDEX}: publication {i + 1} lacks its id, digest or snapshot")
        snap = f"{FOLDER}/{e['snapshot']}"
        if snap not in files:
            raise HistoryError(f"{INDEX}: {e['id']} names {snap}, which is missing")
        try:
            text = _unpack(files[snap])
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
            raise HistoryError(f"{snap} cannot be unpacked ({exc})") from None
        if digest(text) != e["digest"]:
            raise HistoryError(f"{snap} is not the table its entry states (digest differs)")
        if e.get("changes") and f"{FOLDER}/{e['changes']}" not in files:
            raise HistoryError(f"{INDEX}: {e['id']} names {FOLDER}/{e['changes']}, which is missing")
    return entries


def snapshot_cells(past: Past, entry: Mapping[str, Any]) -> dict[str, gate.Cell] | None:
    """The cells of one publication, from its snapshot (None: not a table this runner reads)."""
    try:
        data = json.loads(_unpack(past.files[f"{FOLDER}/{entry['snapshot']}"]))
        return gate.cells_from_rows(gate.results_rows(data))
    except (ValueError, TypeError, KeyError, AttributeError):  # GateError is a ValueError
        return None


def changes_file(past_files: Mapping[str, bytes], entry: Mapping[str, Any]) -> dict[str, Any]:
    if not entry.get("changes"):
        return {}
    found: dict[str, Any] = json.loads(_unpack(past_files[f"{FOLDER}/{entry['changes']}"]))
    return found


# ------------------------------------------------------------------ writing

def publication_date() -> str:
    """Today (UTC), or the day of ``$SOURCE_DATE_EPOCH`` (reproducible builds' variable)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch.isdigit()
            else datetime.datetime.now(datetime.UTC))
    return when.date().isoformat()


def _json(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=indent,
                      separators=None if indent else (",", ":")) + "\n"


def _entry(entries: list[dict[str, Any]], text: str, table_gz: bytes, date: str | None, selection: str,
           cells: Mapping[str, gate.Cell] | None, base: Mapping[str, gate.Cell] | None,
           files: dict[str, bytes]) -> None:
    seq = len(entries) + 1
    d = digest(text)
    pid = f"{seq:04d}-{date or 'undated'}-{d[:12]}"
    changes = changes_of(base, cells) if cells is not None else {}
    entry: dict[str, Any] = {
        "id": pid, "seq": seq, "date": date, "digest": d, "snapshot": f"{pid}.json.gz",
        "changes": f"{pid}.changes.json.gz" if changes else None,
        "base": entries[-1]["id"] if entries and changes else None,
        "selection": selection, "cells": None if cells is None else len(_table(cells)), "adopted": date is None,
        "counts": {**{k: len(v) for k, v in changes.get("kinds", {}).items()},
                   **({"new cells": len(changes["new"]), "cells gone": len(changes["gone"])} if changes else {})},
    }
    files[f"{FOLDER}/{entry['snapshot']}"] = table_gz
    if changes:
        files[f"{FOLDER}/{entry['changes']}"] = _gzip(_json({"format": FORMAT, "id": pid, "base": entry["base"],
                                                             **changes}).encode("utf-8"))
    entries.append(entry)


def history_files(past: Past, previous_text: str | None, previous_cells: Mapping[str, gate.Cell] | None,
                  previous_selection: str, table: str, table_gz: bytes, current: Mapping[str, gate.Cell] | None,
                  selection: str, date: str | None = None) -> dict[str, str | bytes]:
    """The ``history/`` files and ``data/history.js`` of a report whose table (unpacked) is
    ``table`` (``table_gz`` as published, ``current`` its cells, None when it equals the
    folder's), written over a folder whose table was ``previous_text`` (None: none or not
    readable; ``previous_cells`` its cells, None: not a table this runner reads).

    A table published over another adds a publication: the folder's table first if the
    history does not end with it (adopted: undated, as the table a folder held before any
    history was kept), then this one, dated ``date`` (default :func:`publication_date`).
    A table equal to the folder's, a first table in a folder without history, or a
    history that cannot be used (carried as it is, the site says why) add nothing."""
    files: dict[str, str | bytes] = dict(past.files)
    entries = [dict(e) for e in past.entries]
    publish = (not past.problem and current is not None and previous_text != table
               and (previous_text is not None or bool(entries))
               and not (entries and entries[-1]["digest"] == digest(table)))
    added: dict[str, bytes] = {}
    if publish:
        base: Mapping[str, gate.Cell] | None = None
        if previous_text is not None and past.table_gz is not None:
            if not entries or entries[-1]["digest"] != digest(previous_text):
                before = snapshot_cells(past, entries[-1]) if entries else None
                _entry(entries, previous_text, past.table_gz, None, previous_selection, previous_cells, before, added)
            base = previous_cells
        elif entries:
            base = snapshot_cells(past, entries[-1])
        assert current is not None
        _entry(entries, table, table_gz, date or publication_date(), selection, current, base, added)
        files.update(added)
        files[INDEX] = _json({"format": FORMAT, "publications": entries}, indent=1)
    every = {**past.files, **added}
    changes = {} if past.problem else {e["id"]: changes_file(every, e) for e in entries}
    files[SITE_DATA] = _site_data(entries, changes, past.problem)
    return files


# ------------------------------------------------------------------ the site's data

def _group(rows: Sequence[Sequence[Any]]) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """Cell ids as {"scenario:format:variant": {saver: [loader, ...]}} (a few bytes a
    cell), and the ids that are not of that form."""
    grouped: dict[str, dict[str, list[str]]] = {}
    other = []
    for row in rows:
        m = _CELL_ID.match(row[0])
        if m is None:
            other.append(row[0])
            continue
        scenario, fmt, saver, loader, variant = m.groups()
        grouped.setdefault(f"{scenario}:{fmt}:{variant}", {}).setdefault(saver, []).append(loader)
    return grouped, other


def _site_data(entries: Sequence[Mapping[str, Any]], changes: Mapping[str, Mapping[str, Any]], problem: str) -> str:
    pubs = []
    for e in entries:
        ch = changes.get(e["id"]) or {}
        flips = [[row[0], KINDS.index(kind), *row[1:]] for kind in KINDS for row in ch.get("kinds", {}).get(kind, [])]
        new, new_other = _group(ch.get("new", []))
        pubs.append({"id": e["id"], "date": e.get("date"), "selection": e.get("selection", ""),
                     "cells": e.get("cells"), "adopted": bool(e.get("adopted")), "base": e.get("base"),
                     "counts": e.get("counts", {}), "compared": bool(ch), "flips": flips, "new": new,
                     "newOther": new_other, "gone": ch.get("gone", [])})
    body = json.dumps({"format": FORMAT, "problem": problem, "kinds": list(KINDS), "publications": pubs},
                      ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return ("window.COMPAT_DATA = window.COMPAT_DATA || {};\n"
            f"window.COMPAT_DATA[\"history\"] = {body};\n")


# ------------------------------------------------------------------ a cell's history

def timeline(out: Path, cell_id: str) -> list[tuple[str, State | None]]:
    """A cell's state in every publication of ``out``'s history, oldest first, read from
    the snapshots themselves: (publication id, (outcome, category) or None: not in it)."""
    past = read_history(out)
    if past.problem:
        raise HistoryError(past.problem)
    found = []
    for e in past.entries:
        cells = snapshot_cells(past, e)
        if cells is None:
            raise HistoryError(f"{FOLDER}/{e['snapshot']} is not a table this runner reads")
        c = _table(cells).get(cell_id)
        found.append((e["id"], None if c is None else (c.outcome, c.category)))
    return found


def describe(steps: Sequence[tuple[str, State | None]]) -> str:
    """``ok since A, load_error [category] since B``: the runs of one state (what the
    site's History view says of a cell; the last run is the state now)."""
    runs: list[str] = []
    last: object = object()
    for pid, state in steps:
        if state == last or (state is None and not runs):  # not yet in the table: no run
            continue
        last = state
        if state is None:
            runs.append(f"absent since {pid}")
        else:
            runs.append(f"{state[0]}{f' [{state[1]}]' if state[1] else ''} since {pid}")
    return ", ".join(runs)
