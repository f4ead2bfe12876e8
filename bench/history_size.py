"""What the flip history (runner/history.py) costs on a full-size table: snapshot vs diff.

    python bench/history_size.py reports [--flips 1000] [--known-message]

Takes a published table (``REPORTS/results.json.gz``) as publication A and makes B from it:
``--flips`` cells that loaded now fail with a message no table had (a new distinct
message, as a real regression brings; ``--known-message``: with the table's first error,
so nothing is renumbered). B is encoded the way runner/report.py encodes a
table (every column dictionary-coded in first-appearance order), so a new message early in
the rows renumbers the rows after it, as it would. Prints, in bytes: each snapshot, the
changes file, the index and data/history.js the history writes for B over A (in a temp
folder, by runner.history itself), and beside them what a diff of the unpacked tables
would cost (GNU ``diff -U0``, gzip'd); and the time the history took.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runner import gate, history


def encode(head: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A results.json text of ``head``'s schema and columns holding ``rows`` (as report.results_json lays it)."""
    columns = head["columns"]
    values: dict[str, dict[tuple[str, Any], int]] = {c: {} for c in columns[:-1]}
    messages: dict[str, int] = {}
    tracebacks: dict[str, int] = {}
    errors: dict[tuple[str, int, int], int] = {}
    lines = []
    for row in rows:
        codes: list[int | None] = [values[c].setdefault((type(row.get(c)).__name__, row.get(c)), len(values[c]))
                                   for c in columns[:-1]]
        eid = None
        if row.get("error_type") or row.get("error_message"):
            mi = messages.setdefault(str(row.get("error_message") or ""), len(messages))
            ti = tracebacks.setdefault(str(row.get("traceback_tail") or ""), len(tracebacks))
            eid = errors.setdefault((str(row.get("error_type") or ""), mi, ti), len(errors))
        lines.append("  " + json.dumps([*codes, eid], separators=(",", ":")))
    out = {k: v for k, v in head.items() if k != "cells"}
    out.update(values={c: [v for _t, v in t] for c, t in values.items()}, errors=[list(k) for k in errors],
               messages=list(messages), tracebacks=list(tracebacks))
    text = json.dumps(out, ensure_ascii=False, sort_keys=True, indent=1)
    return text[:-2] + ',\n "cells": [\n' + ",\n".join(lines) + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", type=Path)
    p.add_argument("--flips", type=int, default=1000)
    p.add_argument("--known-message", action="store_true")
    args = p.parse_args(argv)
    try:
        a_gz = (args.reports / gate.RESULTS_JSON).read_bytes()
    except OSError as exc:
        print(f"history_size: error: cannot read {args.reports / gate.RESULTS_JSON}: {exc}", file=sys.stderr)
        return 2
    a_text = gzip.decompress(a_gz).decode("utf-8")
    head = json.loads(a_text)
    columns = head["columns"]
    rows = []
    for raw in head["cells"]:  # the rows as stored: columns decoded, the error's texts beside
        row = {c: head["values"][c][v] for c, v in zip(columns[:-1], raw[:-1], strict=True)}
        if raw[-1] is not None:
            etype, mi, ti = head["errors"][raw[-1]]
            row.update(error_type=etype, error_message=head["messages"][mi], traceback_tail=head["tracebacks"][ti])
        rows.append(row)
    same = encode(head, rows) == a_text
    flipped = 0
    known = next(r for r in rows if r.get("error_type"))
    for row in rows:
        if flipped < args.flips and row.get("outcome") == "ok" and row.get("source") != "remedy":
            row.update(outcome="load_error", category="other", phase="load", error_type="builtins.ValueError",
                       error_message=f"a message no table had ({flipped % 7})", traceback_tail="Traceback: new")
            if args.known_message:
                row.update({k: known[k] for k in ("error_type", "error_message", "traceback_tail")})
            flipped += 1
    b_text = encode(head, rows)
    b_gz = gzip.compress(b_text.encode("utf-8"), compresslevel=9, mtime=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "reports"
        folder.mkdir()
        (folder / gate.RESULTS_JSON).write_bytes(a_gz)
        (Path(tmp) / "a.json").write_text(a_text, encoding="utf-8")
        (Path(tmp) / "b.json").write_text(b_text, encoding="utf-8")
        diff = subprocess.run(["diff", "-U0", "a.json", "b.json"], cwd=tmp, capture_output=True, check=False).stdout
        t0, c0 = time.perf_counter(), time.process_time()
        past = history.read_history(folder)
        old = gate.cells_from_rows(gate.results_rows(head))
        new = gate.cells_from_rows(gate.results_rows(json.loads(b_text)))
        t1, c1 = time.perf_counter(), time.process_time()
        files = history.history_files(past, a_text, old, str(head.get("selection") or ""), b_text, b_gz, new,
                                      str(head.get("selection") or ""), date="2026-12-07")
        t2, c2 = time.perf_counter(), time.process_time()
    sizes = {name: len(data if isinstance(data, bytes) else data.encode("utf-8")) for name, data in files.items()}
    print(f"table A: {len(rows)} rows, {len(a_text)} bytes unpacked, re-encoded identically: {same}")
    print(f"table B: {flipped} cells flipped ok -> load_error with "
          + ("the table's first error" if args.known_message else "7 new messages"))
    for name, size in sorted(sizes.items()):
        print(f"  {name}: {size} bytes")
    snap_b = json.loads(str(files[history.INDEX]))["publications"][1]["snapshot"]
    print(f"  B's snapshot is the bytes of B's results.json.gz (one git blob): {files['history/' + snap_b] == b_gz}")
    changed = sum(1 for ln in diff.splitlines() if ln[:1] in (b"+", b"-") and ln[:3] not in (b"+++", b"---"))
    print(f"diff -U0 A B: {len(diff)} bytes, gzip'd {len(gzip.compress(diff, 9, mtime=0))} bytes; "
          f"lines added or removed: {changed}")
    print(f"time: read both tables {t1 - t0:.1f} s wall / {c1 - c0:.1f} s CPU, the history's files "
          f"{t2 - t1:.1f} s wall / {c2 - c1:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
