"""Flip history across publications (runner/history.py, issue 25 item 4), fast tier.

The report is written for real (runner.report.write_reports) over the hand-made store of
tests/test_report.py into temp folders: a first table, then tables that change cells. The
history must hold every publication exactly (each snapshot the very bytes published), add
nothing when the table does not change, and say a cell's history from the snapshots and
from the site's data alike.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest
import test_report as tr
from test_report import Paths, make_store

from runner import gate, history, report
from runner.records import ErrorInfo, Outcome, Store

FLIPPED = "dense:h5:tf2.4->tf2.15:default"  # ok in the first table
STEADY = "dense:h5:tf2.4->tf2.4:default"  # ok in every table
DAY1, DAY2 = "1796601600", "1796688000"  # 2026-12-07, 2026-12-08 (UTC) as $SOURCE_DATE_EPOCH


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return Paths(tmp_path)


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    return tr.write_scenarios(tmp_path)


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _index(out: Path) -> list[dict]:
    return json.loads((out / "history" / "index.json").read_text(encoding="utf-8"))["publications"]


def _site(out: Path) -> dict:
    text = (out / "data" / "history.js").read_text(encoding="utf-8")
    return json.loads(text.split('window.COMPAT_DATA["history"] = ', 1)[1].rstrip().rstrip(";"))


def _break(store: Store) -> None:
    store.write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.LOAD_ERROR,
                         ErrorInfo("builtins.ValueError", "Unknown layer: 'Dense'")))


@pytest.fixture
def two(paths: Paths, scenario_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes, Store]:
    """A folder with two publications: the first table (written before any history), then
    one where FLIPPED fails; also the first table's published bytes."""
    out = tmp_path / "out"
    store = make_store(paths)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", DAY1)
    report.write_reports(store, out, scenario_dir)
    first = (out / "results.json.gz").read_bytes()
    _break(store)
    report.write_reports(store, out, scenario_dir)
    return out, first, store


def test_a_first_table_has_no_history_yet(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report.write_reports(make_store(paths), out, scenario_dir)
    assert not (out / "history").exists()
    assert _site(out) == {"format": 1, "problem": "", "kinds": list(history.KINDS), "publications": []}


def test_a_table_published_over_another_keeps_both_exactly(two: tuple[Path, bytes, Store]) -> None:
    out, first, _store = two
    entries = _index(out)
    assert [e["seq"] for e in entries] == [1, 2]
    a, b = entries
    # the table the folder held is adopted (its date is not known), the new one dated by the run
    assert re.fullmatch(r"0001-undated-[0-9a-f]{12}", a["id"]) and a["adopted"] and a["date"] is None
    assert re.fullmatch(r"0002-2026-12-07-[0-9a-f]{12}", b["id"]) and not b["adopted"] and b["date"] == "2026-12-07"
    # each snapshot is the very bytes that were published, and its digest is its unpacked table's
    assert (out / "history" / a["snapshot"]).read_bytes() == first
    assert (out / "history" / b["snapshot"]).read_bytes() == (out / "results.json.gz").read_bytes()
    for e in entries:
        text = gzip.decompress((out / "history" / e["snapshot"]).read_bytes())
        assert hashlib.sha256(text).hexdigest() == e["digest"] and e["id"].endswith(e["digest"][:12])
    assert a["changes"] is None and b["base"] == a["id"]
    assert b["counts"]["now failing (was ok)"] == 1 and b["counts"]["new cells"] == 0
    changes = json.loads(gzip.decompress((out / "history" / b["changes"]).read_bytes()))
    [row] = changes["kinds"]["now failing (was ok)"]
    assert row[:4] == [FLIPPED, "ok", "", "load_error"] and row[4]  # [id, was, its category, now, its category]


def test_the_changes_are_what_the_snapshots_say(two: tuple[Path, bytes, Store]) -> None:
    """The stored changes (what the site shows) equal a comparison of the two snapshots
    made again, and CHANGES.md names the same cells: a round trip through the files."""
    out, _first, _store = two
    past = history.read_history(out)
    assert past.problem == ""
    a, b = past.entries
    recomputed = history.changes_of(history.snapshot_cells(past, a), history.snapshot_cells(past, b))
    stored = json.loads(gzip.decompress(past.files[f"history/{b['changes']}"]))
    assert {k: stored[k] for k in ("kinds", "new", "gone")} == recomputed
    flips = [f[0] for f in _site(out)["publications"][1]["flips"]]
    assert flips == [row[0] for kind in history.KINDS for row in recomputed["kinds"][kind]]
    changes_md = (out / "CHANGES.md").read_text(encoding="utf-8")
    assert all(f"`{cid}`" in changes_md for cid in flips)


def test_a_cell_history_says_since_which_publication(two: tuple[Path, bytes, Store], scenario_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out, _first, store = two
    a, b = (e["id"] for e in _index(out))
    steps = history.timeline(out, FLIPPED)
    assert [s[0] for s in steps] == [a, b]
    category = steps[1][1][1]
    assert category  # a load error is diagnosed
    assert history.describe(steps) == f"ok since {a}, load_error [{category}] since {b}"
    assert history.describe(history.timeline(out, STEADY)) == f"ok since {a}"
    # a third publication, another day: the cell loads again, and a new variant's cells appear
    monkeypatch.setenv("SOURCE_DATE_EPOCH", DAY2)
    store.write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.OK, diff=0.0))
    new_cell = "custom:keras:tf2.4->tf2.15:default"  # a format the custom scenario had no save of
    store.write(tr._save("tf2.4", "custom", "keras", Outcome.NOT_APPLICABLE,
                         ErrorInfo("compat.NotApplicable", "the .keras format needs Keras >= 2.13")))
    report.write_reports(store, out, scenario_dir)
    entries = _index(out)
    c = entries[2]["id"]
    assert [e["id"] for e in entries[:2]] == [a, b] and c.startswith("0003-2026-12-08-")
    assert history.describe(history.timeline(out, FLIPPED)) == \
        f"ok since {a}, load_error [{category}] since {b}, ok since {c}"
    steps = history.timeline(out, new_cell)
    assert steps == [(a, None), (b, None), (c, ("not_applicable", steps[2][1][1]))]
    assert history.describe(steps) == f"not_applicable{f' [{steps[2][1][1]}]' if steps[2][1][1] else ''} since {c}"
    pub = _site(out)["publications"][2]
    assert pub["counts"]["now ok (was failing)"] == 1 and pub["counts"]["new cells"] >= 1
    assert "tf2.15" in pub["new"]["custom:keras:default"]["tf2.4"]


def test_a_report_that_changes_nothing_adds_no_entry(two: tuple[Path, bytes, Store], scenario_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-render (same records, another day) leaves every history byte, the ids and dates
    the publishing run wrote included; so does the incremental report (update_reports)."""
    out, _first, store = two
    before = _files(out)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", DAY2)
    df = report.write_reports(Store(store.root), out, scenario_dir)
    assert df.attrs["written"] == []
    assert _files(out) == before
    done = report.update_reports(Store(store.root), out, scenario_dir)
    assert done.written == [] and _files(out) == before


def test_a_history_that_cannot_be_used_is_kept_as_it_is(two: tuple[Path, bytes, Store], scenario_dir: Path) -> None:
    """An index naming a missing snapshot (a hand edit): the next report carries history/
    byte for byte, adds nothing, and the site says why; the table itself is published."""
    out, _first, store = two
    a = _index(out)[0]
    (out / "history" / a["snapshot"]).unlink()
    kept = {k: v for k, v in _files(out).items() if k.startswith("history/")}
    store.write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.OK, diff=0.0))
    report.write_reports(store, out, scenario_dir)
    assert {k: v for k, v in _files(out).items() if k.startswith("history/")} == kept
    site = _site(out)
    assert f"names history/{a['snapshot']}, which is missing" in site["problem"] and site["publications"] == []
    assert gate.load_results(out / "results.json.gz")[FLIPPED].outcome == "ok"


def test_a_table_the_history_ends_with_is_not_added_twice(two: tuple[Path, bytes, Store],
                                                         scenario_dir: Path) -> None:
    """results.json.gz deleted by hand, the same table written again: the history already
    ends with it, so nothing is added; and an earlier table written again is a new
    publication (its own number), compared with the last one."""
    out, first, store = two
    (out / "results.json.gz").unlink()
    report.write_reports(Store(store.root), out, scenario_dir)
    assert len(_index(out)) == 2
    store.write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.OK, diff=1e-7))  # as make_records
    report.write_reports(store, out, scenario_dir)
    entries = _index(out)
    assert len(entries) == 3 and entries[2]["id"] != entries[0]["id"]
    assert entries[2]["digest"] == entries[0]["digest"]
    assert (out / "results.json.gz").read_bytes() == first
    assert entries[2]["counts"]["now ok (was failing)"] == 1


def test_the_history_files_sort_before_the_index(two: tuple[Path, bytes, Store]) -> None:
    """In the in-place fallback (a report folder that is a mount point) the set is renamed
    in sorted order: every file the index names comes before it."""
    out, _first, _store = two
    names = sorted(p for p in _files(out) if p.startswith("history/"))
    assert names[-1] == "history/index.json"


def test_the_feed_kinds_are_changes_md_kinds(two: tuple[Path, bytes, Store]) -> None:
    """One comparison: CHANGES.md's table rows and the history's kinds are the same names."""
    out, _first, _store = two
    text = (out / "CHANGES.md").read_text(encoding="utf-8")
    assert all(f"| {kind}" in text for kind in history.KINDS)


def test_the_committed_table_is_adopted_as_the_first_publication(tmp_path: Path) -> None:
    """The published reports/results.json.gz (written before any history) over which the next
    publication lands: it becomes publication 1, byte for byte, and a cell flipped in the
    next table is the one flip the history finds among all of its cells."""
    committed = Path(__file__).resolve().parent.parent / "reports" / gate.RESULTS_JSON
    a_gz = committed.read_bytes()
    a_text = gzip.decompress(a_gz).decode("utf-8")
    data = json.loads(a_text)
    old = gate.cells_from_rows(gate.results_rows(data))
    # the next table: the first ok grid cell now fails to load (its row's outcome code changed)
    codes = {v: i for i, v in enumerate(data["values"]["outcome"])}
    at = data["columns"].index("outcome")
    src = data["columns"].index("source")
    row = next(r for r in data["cells"] if data["values"]["outcome"][r[at]] == "ok"
               and data["values"]["source"][r[src]] != "remedy")
    row[at] = codes["load_error"]
    b_text = json.dumps(data, sort_keys=True)
    b_gz = gzip.compress(b_text.encode("utf-8"), mtime=0)
    new = gate.cells_from_rows(gate.results_rows(json.loads(b_text)))
    [flipped] = [c for c in new if new[c].outcome != old[c].outcome]
    out = tmp_path / "reports"
    out.mkdir()
    (out / gate.RESULTS_JSON).write_bytes(a_gz)
    files = history.history_files(history.read_history(out), a_text, old, data["selection"], b_text, b_gz, new,
                                  data["selection"], date="2026-12-07")
    index = json.loads(str(files[history.INDEX]))["publications"]
    assert [e["seq"] for e in index] == [1, 2] and index[0]["adopted"] and index[0]["cells"] == len(
        [c for c in old.values() if not c.remedy])
    assert files[f"history/{index[0]['snapshot']}"] == a_gz and files[f"history/{index[1]['snapshot']}"] == b_gz
    changes = json.loads(gzip.decompress(bytes(files[f"history/{index[1]['changes']}"])))
    assert [r[0] for r in changes["kinds"]["now failing (was ok)"]] == [flipped]
    assert sum(index[1]["counts"].values()) == 1
