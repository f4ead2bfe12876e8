"""The progress display: plain lines off a terminal, a tqdm bar on one, cells in a log."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from runner.progress import Progress


def test_plain_lines_count_cells_and_keep_cached_out_of_the_rate(tmp_path: Path) -> None:
    out = io.StringIO()
    p = Progress(out, tmp_path / "run.log", interval=0.0)
    p.phase("load", 4)
    p.advance(computed=False)
    p.advance(computed=True)
    p.cell("  [load x 1/1] c1: ok")
    p.phase("remedy", 0)  # ends "load" with its final line
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[progress] load: 1/4 cells (25 %), 1 from the cache"
    assert lines[1].startswith("[progress] load: 2/4 cells (50 %), ") and "cells/s, ETA " in lines[1]
    assert lines[-1].startswith("[progress] load: 2/4 cells (50 %)")
    assert "c1: ok" not in out.getvalue()  # cells go to the log unless verbose
    assert (tmp_path / "run.log").read_text() == "  [load x 1/1] c1: ok\n"


def test_verbose_puts_cells_on_the_console_and_lines_are_rate_limited(tmp_path: Path) -> None:
    out = io.StringIO()
    p = Progress(out, None, verbose=True, interval=3600)
    p.phase("save", 3)
    for _ in range(3):
        p.advance(computed=True)
    p.cell("a cell")
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "a cell" and len(lines) == 2  # one closing line, none in between
    assert lines[1].startswith("[progress] save: 3/3 cells (100 %)")


def test_a_terminal_gets_a_tqdm_bar() -> None:
    pytest.importorskip("tqdm")
    out = io.StringIO()
    p = Progress(out, None, bar=True)
    p.phase("load", 2)
    p.advance(computed=True)
    p.advance(computed=False)
    p.close()
    assert "load: 100%" in out.getvalue() and "2/2" in out.getvalue()
