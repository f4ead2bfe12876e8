"""Crash safety of the history (runner/history.py): a real SIGKILL of a real report process.

The report runs in its own process over a real store (tests/test_report.py's records) and
a report folder whose history holds two publications; the write that would add the third
is killed (``$COMPAT_FAULT``, runner/faults.py) after each file of ``history/`` is written
into the new folder (the entries carried, the new snapshot and changes, the index), once every file
is written, and once the new folder is swapped in. Each time the folder holds either the
old report with the old history or the new report with the new history, byte for byte,
and the history reads clean (no half entry, no index naming a missing file); the next
write then publishes the third entry. The in-place fallback (a report folder that is a
mount point) is killed before its renames too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import test_report as tr

from runner import history, report
from runner.records import ErrorInfo, Outcome, Store

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parent.parent
WRITE = ("import sys; from pathlib import Path; from runner import report; from runner.records import Store\n"
         "if sys.argv[4] == 'in-place':\n"
         "    report._swap_in = lambda *a, **k: False  # as for a report folder that is a mount point\n"
         "report.write_reports(Store(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))\n")
DAY1, DAY2, DAY3 = "1796601600", "1796688000", "1796774400"


def _write(store: Path, out: Path, scenarios: Path, day: str, fault: str = "",
           mode: str = "swap") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COMPAT_FAULT"}
    env.update({"PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": day, **({"COMPAT_FAULT": fault} if fault else {})})
    return subprocess.run([sys.executable, "-c", WRITE, str(store), str(out), str(scenarios), mode], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path, list[int]]:
    """(store, scenarios, the folder with two publications, the folder after the third
    write done undisturbed, the numbers of the report-file points after which a file of
    history/ is written: the order the report writes its set in)."""
    root = tmp_path_factory.mktemp("history-faults")
    paths = tr.Paths(root)
    scenarios = tr.write_scenarios(root)
    store = tr.make_store(paths)
    before = root / "before"
    assert _write(paths.store, before, scenarios, DAY1).returncode == 0
    store.write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.LOAD_ERROR,
                         ErrorInfo("builtins.ValueError", "Unknown layer: 'Dense'")))
    assert _write(paths.store, before, scenarios, DAY2).returncode == 0
    assert len(history.read_history(before).entries) == 2
    # the third table: the cell loads again
    Store(paths.store).write(tr._load("tf2.4", "tf2.15", "dense", "default", Outcome.OK, diff=0.0))
    expected = root / "expected"
    shutil.copytree(before, expected)
    done = _write(paths.store, expected, scenarios, DAY3)
    assert done.returncode == 0, done.stderr
    order: dict[str, str | bytes] = {}
    probe = root / "probe"
    shutil.copytree(before, probe)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", DAY3)
        report.write_reports(Store(paths.store), probe, scenarios, keep=order)
    assert _files(probe) == _files(expected)
    points = [n for n, rel in enumerate(order, 1) if rel.startswith("history/")]
    return paths.store, scenarios, before, expected, points


def _check_whole(out: Path, want: Path) -> None:
    assert _files(out) == _files(want)
    past = history.read_history(out)
    assert past.problem == "" and len(past.entries) == len(history.read_history(want).entries)


@pytest.mark.parametrize("nth", range(6))
def test_a_kill_while_the_history_is_written_leaves_the_previous_state(
        tmp_path: Path, prepared: tuple[Path, Path, Path, Path, list[int]], nth: int) -> None:
    store, scenarios, before, expected, points = prepared
    entries = history.read_history(expected).entries
    assert len(entries) == 3 and entries[2]["id"].startswith("0003-2026-12-09-")
    assert len(points) == 6  # 3 snapshots, 2 changes files, the index
    out = tmp_path / "out"
    shutil.copytree(before, out)
    killed = _write(store, out, scenarios, DAY3, f"kill:report-file:{points[nth]}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _check_whole(out, before)
    again = _write(store, out, scenarios, DAY3)
    assert again.returncode == 0, again.stderr
    _check_whole(out, expected)
    assert not list(tmp_path.glob(".out.*"))  # what the killed write left is gone


@pytest.mark.parametrize(("point", "whole"), [("report-write", "before"), ("report-swap", "expected")])
def test_a_kill_before_or_after_the_swap_leaves_one_whole_history(
        tmp_path: Path, prepared: tuple[Path, Path, Path, Path, list[int]], point: str, whole: str) -> None:
    store, scenarios, before, expected, _points = prepared
    out = tmp_path / "out"
    shutil.copytree(before, out)
    killed = _write(store, out, scenarios, DAY3, f"kill:{point}:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _check_whole(out, before if whole == "before" else expected)
    assert _write(store, out, scenarios, DAY3).returncode == 0
    _check_whole(out, expected)


def test_the_in_place_fallback_killed_before_its_renames_keeps_the_history(
        tmp_path: Path, prepared: tuple[Path, Path, Path, Path, list[int]]) -> None:
    store, scenarios, before, expected, _points = prepared
    out = tmp_path / "out"
    shutil.copytree(before, out)
    killed = _write(store, out, scenarios, DAY3, "kill:report-write:1", mode="in-place")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert {k: v for k, v in _files(out).items() if not k.rsplit("/", 1)[-1].startswith(".")} == _files(before)
    assert history.read_history(out).problem == ""
    done = _write(store, out, scenarios, DAY3, mode="in-place")
    assert done.returncode == 0, done.stderr
    _check_whole(out, expected)
