"""The site's History view in a real browser (headless Chromium, as tests/test_site_browser.py).

Three publications are written by the report into one folder (tests/test_report.py's
hand-made store): the first table; FLIPPED fails; FLIPPED loads again, a format's cells
appear and a saver's cells are gone. The page is opened from ``file://``; what it says of
every cell is checked against runner.history, which reads the snapshots themselves (the
page reads only the stored changes): two readings of the history that must agree.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_report as tr
import test_site_browser as sb

from runner import history, report
from runner.records import ErrorInfo, Outcome, Store

pytestmark = pytest.mark.browser

browser = sb.browser  # the browser tier's Chromium (skips, and says why, without one)
shots = sb.shots
FLIPPED = "dense:h5:tf2.4->tf2.15:default"
NEW = "custom:keras:tf2.4->tf2.15:default"
GONE_SAVER = "tf2.15"  # its keras saves are deleted before the third publication


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("history-site")
    paths = tr.Paths(root)
    scenarios = tr.write_scenarios(root)
    out = root / "reports"
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(paths.home))
    try:
        store = tr.make_store(paths)
        mp.setenv("SOURCE_DATE_EPOCH", "1796601600")
        report.write_reports(store, out, scenarios)
        store.write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.LOAD_ERROR,
                             ErrorInfo("builtins.ValueError", "Unknown layer: 'Dense'")))
        report.write_reports(Store(paths.store), out, scenarios)
        mp.setenv("SOURCE_DATE_EPOCH", "1796688000")
        store.write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.OK, diff=0.0))
        store.write(tr._save("tf2.4", "custom", "keras", Outcome.NOT_APPLICABLE,
                             ErrorInfo("compat.NotApplicable", "the .keras format needs Keras >= 2.13")))
        for rec in (paths.store / "records" / "save").rglob("*.json"):
            if "keras" in rec.name and GONE_SAVER in str(rec) and "dense" in str(rec):
                rec.unlink()
        report.write_reports(Store(paths.store), out, scenarios)
    finally:
        mp.undo()
    yield out


@pytest.fixture
def page(browser: Any, folder: Path) -> Iterator[sb.Page]:
    p = sb.Page(browser, folder)
    yield p
    p.page.close()
    assert p.errors == [], p.errors  # no console errors, no uncaught exception, no missing file


def _current(folder: Path) -> dict[str, list[str]]:
    """The table now: cell id -> [outcome, category] (results.csv.gz, remedy runs aside)."""
    body = gzip.decompress((folder / "results.csv.gz").read_bytes()).decode("utf-8")
    return {r["cell_id"]: [r["outcome"], r["category"]] for r in csv.DictReader(io.StringIO(body))
            if r["source"] != "remedy"}


def test_the_fixture_has_three_publications_with_flips_new_and_gone(folder: Path) -> None:
    past = history.read_history(folder)
    assert past.problem == "" and len(past.entries) == 3
    counts = past.entries[2]["counts"]
    assert counts["now ok (was failing)"] == 1 and counts["new cells"] >= 1 and counts["cells gone"] >= 1


def test_history_view_lists_each_publication_and_its_flips(page: sb.Page, folder: Path, shots: Path) -> None:
    pg = page.open("view=history")
    ids = [e["id"] for e in history.read_history(folder).entries]
    shown = pg.locator("#history-feed > li").evaluate_all("els => els.map(e => e.dataset.publication)")
    assert shown == ids[::-1]  # newest first
    newest = pg.locator(f"#history-feed > li[data-publication='{ids[2]}']")
    assert newest.locator("details[data-kind='now ok (was failing)'] button[data-cell]").text_content() == FLIPPED
    second = pg.locator(f"#history-feed > li[data-publication='{ids[1]}']")
    second.locator("summary").first.click()
    fails = second.locator("details[data-kind='now failing (was ok)']")
    assert fails.locator("button[data-cell]").inner_text() == FLIPPED
    assert "ok → load_error" in fails.inner_text()
    assert "undated" in pg.locator(f"#history-feed > li[data-publication='{ids[0]}'] summary").first.inner_text()
    pg.screenshot(path=str(shots / "history-view.png"), full_page=True)
    # a cell of the feed opens its details, which say its history as runner.history does
    newest.locator("button[data-cell]").first.click()
    pg.wait_for_selector("#d-history:not(:has-text('loading'))")
    want = history.describe(history.timeline(folder, FLIPPED))
    assert want.count(" since ") == 3
    assert pg.inner_text("#d-history") == want
    assert page.details_id() == FLIPPED


def test_every_cell_history_matches_the_snapshots(page: sb.Page, folder: Path) -> None:
    """The page's history of every cell (now, and gone) from the stored changes equals the
    one runner.history reads from the snapshots."""
    pg = page.open("view=history")
    current = _current(folder)
    past = history.read_history(folder)
    every = sorted(set(current) | {cid for e in past.entries
                                   for cid, c in (history.snapshot_cells(past, e) or {}).items() if not c.remedy})
    got = pg.evaluate("""([ids, cur]) => window.COMPAT_HISTORY.data().then(H =>
        ids.map(id => window.COMPAT_HISTORY.describe(window.COMPAT_HISTORY.steps(H, id, cur[id] || null))))""",
                      [every, current])
    want = [history.describe(history.timeline(folder, cid)) for cid in every]
    assert got == want
    assert any(w.endswith(f" since {past.entries[2]['id']}") and w.startswith("not_applicable")
               for cid, w in zip(every, want, strict=True) if cid == NEW)
    assert any("absent since" in w for w in want)  # the gone saver's cells


def test_typed_cell_id_shows_its_history(page: sb.Page, folder: Path) -> None:
    pg = page.open("view=history")
    pg.fill("#history-q", FLIPPED)
    pg.click("#history-form button[type=submit]")
    pg.wait_for_selector("#history-cell:has-text(' since ')")
    assert pg.inner_text("#history-cell") == f"{FLIPPED}: {history.describe(history.timeline(folder, FLIPPED))}"


def test_a_folder_without_history_says_so(browser: Any, tmp_path: Path) -> None:
    paths = tr.Paths(tmp_path)
    scenarios = tr.write_scenarios(tmp_path, ("dense",))
    out = tmp_path / "reports"
    report.write_reports(tr.make_store(paths), out, scenarios)
    p = sb.Page(browser, out)
    try:
        pg = p.open("view=history")
        assert "No history yet" in pg.inner_text("#history-empty")
        pg.goto(p.base + f"#cell={FLIPPED}")
        p.ready()
        pg.wait_for_selector("#d-history:not(:has-text('loading'))")
        assert pg.inner_text("#d-history").startswith("no history yet")
    finally:
        p.page.close()
    assert p.errors == []
