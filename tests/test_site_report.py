"""The generators behind the site and the GitHub pages (issue 26): explain's upgrade verdict in the
site's data and README.md, headline percentages without the cells meant to fail, grid pages cut
to a readable width with linked footnotes and their cell ids on a page of their own, the
heatmap's text geometry, and a palette and ink that stay readable (colour-vision simulation,
WCAG contrast). Fast tier: the hand-made store of tests/test_report.py, no browser."""

from __future__ import annotations

import gzip
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import test_report as tr

from runner import explain, gate, heatmap, report
from runner.records import ErrorInfo, Outcome
from runner.site import ASSETS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    paths = tr.Paths(tmp_path)
    monkeypatch.setenv("HOME", str(paths.home))
    scenarios = tr.write_scenarios(tmp_path)
    store = tr.make_store(paths)
    # a failing default load that passing the custom objects fixes: the documented way loads
    store.write(tr._load("tf2.15", "tf2.4", "custom", "default", Outcome.LOAD_ERROR,
                         ErrorInfo("builtins.ValueError", "Unknown layer: 'MyLayer'")))
    store.write(tr._load("tf2.15", "tf2.4", "custom", "custom_objects", Outcome.OK, diff=0.0))
    folder = tmp_path / "out"
    report.write_reports(store, folder, scenarios)
    return folder


def _data(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8").splitlines()[-1].split(" = ", 1)[1].rstrip(";"))


def _table_rows(out: Path) -> list[dict[str, Any]]:
    data = json.loads(gzip.decompress((out / report.RESULTS_JSON).read_bytes()))
    return [r for r in gate.results_rows(data) if r["source"] != "remedy"]


def test_site_verdicts_are_explains_lines(out: Path) -> None:
    """data/verdicts/<format>/<saver>.js holds, per loader, what `explain --from --format --to` prints
    from the published results.json.gz: one pipeline, not a recount."""
    rows = _table_rows(out)
    seen = 0
    for fmt, saver, loader in sorted({(r["format"], r["saver"], r["loader"]) for r in rows}):
        data = _data(out / "data" / "verdicts" / fmt / f"{saver}.js")
        assert data[loader] == explain.upgrade_verdict(rows, saver, fmt, loader), (fmt, saver, loader)
        seen += 1
    assert seen == 18
    line = _data(out / "data" / "verdicts" / "h5" / "tf2.15.js")["tf2.4"][0]
    assert line.startswith("tf2.15 h5 → tf2.4: 1 of 2 scenarios load and match")  # custom, with its objects
    meta = _data(out / "data" / "meta.js")
    assert meta["files"]["verdict:h5:tf2.15"] == "data/verdicts/h5/tf2.15.js"


def test_readme_gives_each_savers_verdict_into_the_newest_keras(out: Path) -> None:
    rows = _table_rows(out)
    text = (out / "README.md").read_text(encoding="utf-8")
    section = text.split("### Upgrade verdicts: loaded in `tf2.15`", 1)[1].split("\n## ", 1)[0]
    got = re.findall(r"^  - (.*)$", section, flags=re.M)
    possible = {(r["saver"], r["format"]) for r in rows if r["loader"] == "tf2.15" and r["outcome"] != "not_applicable"}
    want = [explain.upgrade_verdict(rows, s, f, "tf2.15")[0].replace("|", "\\|")
            for s in ("tf2.4", "tf2.15", "tf2.18") for f in ("h5", "keras") if (s, f) in possible]
    assert got == want and len(want) == 5  # tf2.4's keras cannot exist: no line
    assert "tf2.4 keras →" not in section
    assert text.index("## Per-stack summary") < text.index("### Upgrade verdicts") < text.index(
        "## Saver × loader overview (table)")


def test_verdict_target_is_the_newest_keras() -> None:
    stacks = [{"id": "tf2.15", "keras": "2.15.0"}, {"id": "keras3.15-tf", "keras": "3.15.1"},
              {"id": "keras3.15-jax", "keras": "3.15.1"}, {"id": "keras3.3-jax", "keras": "3.3.3"},
              {"id": "tf1.15", "keras": "2.2.4-tf"}]
    assert report.verdict_target(stacks, [s["id"] for s in stacks]) == "keras3.15-jax"
    assert report.verdict_target(stacks, ["tf1.15", "tf2.15"]) == "tf2.15"
    assert report.verdict_target(stacks, []) is None


def test_headline_percentages_leave_out_the_cells_meant_to_fail() -> None:
    """custom without its custom objects fails by design: the overview, heatmap and per-stack table
    count custom only through its custom_objects variant (dense, without any, counts as it is)."""
    rows = ([{"scenario": "custom", "variant": "default", "saver": "a", "loader": "b", "outcome": "load_error"}] * 5
            + [{"scenario": "custom", "variant": "custom_objects", "saver": "a", "loader": "b", "outcome": "ok"}] * 5
            + [{"scenario": "dense", "variant": "default", "saver": "a", "loader": "b", "outcome": "load_error"}] * 5)
    df = pd.DataFrame(rows)
    assert report.meant_to_fail(df).tolist() == [True] * 5 + [False] * 10
    assert report.pair_stats(df)[2] == {("a", "b"): (5, 10)}  # 50 %, not 33 %
    assert "meant to fail and left out" in report.OVERVIEW_TEXT
    assert report.meant_to_fail(df[df["scenario"] == "dense"]).sum() == 0  # no custom_objects variant: counted


def test_grid_pages_cut_wide_grids_link_footnotes_and_move_cell_ids(tmp_path: Path) -> None:
    """A 37-loader grid is cut into tables of at most 12 loader columns; every footnote number is a link
    to its footnote, which links to its cells on the cell-id page; the grid page lists no cell ids."""
    base = tr._frame(tr.Paths(tmp_path))
    df = pd.concat([base.assign(loader=base["loader"] + f"-{i:02d}") for i in range(13)], ignore_index=True)
    files = report.scenario_files(df, docs={"dense": "Plain MLP."})
    page, cells = files["dense.md"], files["cells/dense.md"]
    heads = [line for line in page.splitlines() if line.startswith("| saver \\ loader |")]
    assert heads and all(line.count(" | ") <= report.LOADERS_PER_TABLE for line in heads)
    assert max(line.count(" | ") for line in heads) >= 10  # near-equal cuts, not a 12 + 1
    assert len(heads) == 2 * 4  # 39 loaders -> 4 tables per grid, two grids (h5, keras)
    refs = set(re.findall(r"<sup>\[(\d+)\]\(#fn-(\d+)\)</sup>", page))
    assert refs and all(a == b for a, b in refs)
    anchors = set(re.findall(r'<a name="fn-(\d+)"></a>', page))
    assert {a for a, _ in refs} <= anchors
    assert not re.search(r"^   cells \(", page, flags=re.M) and "->" not in page.split("## Footnotes")[1]
    for n in anchors:
        assert f"(cells/dense.md#fn-{n})" in page and f'<a name="fn-{n}"></a>' in cells
    assert re.search(r"^   cells \(\d+\): `h5`: `tf2\.15->tf2\.4-00`", cells, flags=re.M)
    assert "GitHub Pages" in page and "index.html" in page


def _texts(svg: str) -> list[tuple[float, float, float, float, str, bool]]:
    """Each <text>'s box as (left, top, right, bottom) at DejaVu Sans' widest advance, and whether rotated."""
    root = ET.fromstring(svg)
    out = []
    for t in root.iter("{http://www.w3.org/2000/svg}text"):
        size = float(t.get("font-size") or 9)
        x, y = float(t.get("x", 0)), float(t.get("y", 0))
        width = len(t.text or "") * size * heatmap.CHAR_EM
        left = x - width / 2 if t.get("text-anchor") == "middle" else x - width if t.get("text-anchor") == "end" else x
        out.append((left, y - size, left + width, y + size * 0.25, t.text or "", bool(t.get("transform"))))
    return out


@pytest.mark.parametrize("subtitle", ["", "short", "Per cent of cells that load and match " * 9])
def test_heatmap_text_fits_and_does_not_overlap(subtitle: str) -> None:
    savers = ["tf1.15", "tf2.15", "keras3.15-jax"]
    loaders = [f"tf2.{n}" for n in range(2, 22)]
    title = "TF/Keras compatibility: saver × loader, format json+weights"
    svg = heatmap.heatmap_svg(title, savers, loaders, {("tf2.15", "tf2.2"): (1, 2)}, subtitle=subtitle)
    root = ET.fromstring(svg)
    width = float(root.get("width") or 0)
    boxes = _texts(svg)
    flat = [b for b in boxes if not b[5]]
    assert all(b[0] >= 0 and b[2] <= width for b in flat), [b for b in flat if b[2] > width]
    head = [b for b in flat if b[4] == title or (subtitle and b[4] and b[4] in subtitle and b[1] < 120)]
    axis = next(b for b in flat if b[4] == "loader (column) →")
    if subtitle:
        assert " ".join(b[4] for b in head[1:]) == " ".join(subtitle.split())  # nothing cut
    for b in head:
        assert b[3] <= axis[1], (b, axis)  # the axis label sits under the title and subtitle
    rotated_top = min(float(t.get("y", 0)) - len(t.text or "") * 10 * heatmap.CHAR_EM
                      for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("transform"))
    assert axis[3] <= rotated_top + 1  # ... and above the loaders' names


def test_heatmap_ink_contrasts_on_every_share() -> None:
    worst = min(heatmap.contrast(heatmap.text_colour(heatmap.colour(k / 200)), heatmap.colour(k / 200))
                for k in range(201))
    assert worst >= 4.5, worst
    assert heatmap.contrast("#000000", "#ffffff") == pytest.approx(21)


# Machado, Oliveira & Fernandes (2009), severity 1.0, on linear RGB.
_CVD = {"deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                         (-0.011820, 0.042940, 1.968881)),
        "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                       (-0.003882, -0.048116, 1.051998))}


def _lin(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _lab(rgb_lin: tuple[float, ...]) -> tuple[float, float, float]:
    r, g, b = (min(1.0, max(0.0, c)) for c in rgb_lin)
    x, y, z = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b, \
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116
    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def seen_apart(a: str, b: str, kind: str) -> float:
    """CIE76 distance of two fills as a person with ``kind`` sees them (simulated)."""
    def sim(hexcode: str) -> tuple[float, ...]:
        rgb = [_lin(int(hexcode[i:i + 2], 16) / 255) for i in (1, 3, 5)]
        return tuple(sum(m * c for m, c in zip(row, rgb, strict=True)) for row in _CVD[kind])
    la, lb = _lab(sim(a)), _lab(sim(b))
    return sum((p - q) ** 2 for p, q in zip(la, lb, strict=True)) ** 0.5


def test_palette_keeps_ok_apart_from_failures_for_colour_blind_readers() -> None:
    """ok and load_error (and ok and every other failure fill) stay distinguishable for deuteranopes and
    protanopes; the previous green/pink pair, which they see as one colour, would fail this test."""
    assert seen_apart("#c8e6c9", "#ffcdd2", "deuteranopia") < 3  # the old ok / load_error: one colour
    c = report.COLORS
    for kind in _CVD:
        assert seen_apart(c["ok"], c["load_error"], kind) >= 15, kind
        for bad in ("mismatch", "training_mismatch", "save_error", "crash", "timeout"):
            assert seen_apart(c["ok"], c[bad], kind) >= 6, (kind, bad)


def test_symbols_contrast_with_their_fills() -> None:
    """The page's ink (style.css --ink) on each outcome fill is at least 4.5:1."""
    ink = re.search(r"--ink:\s*(#[0-9a-f]{6})", (ASSETS / "style.css").read_text(encoding="utf-8"))
    assert ink is not None
    for outcome, fill in report.COLORS.items():
        assert heatmap.contrast(ink.group(1), fill) >= 4.5, outcome
