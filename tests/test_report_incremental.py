"""The incremental report (issue 24 item 4): a report whose inputs did not change since the
last report written into the same folder is not rebuilt, and a rebuilt one writes only the
files whose bytes differ.

Over the small hand-made store of tests/test_report.py. Each way the report can go stale
(a changed record, a changed scenario description, a report file deleted or edited by
hand) is shown to rewrite it, next to its benign twin that does not.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from test_report import (  # noqa: F401  (fixtures)
    SCENARIO_DENSE,
    Paths,
    _files,
    make_records,
    make_store,
    paths,
    scenario_dir,
)

from runner import cli, report
from runner.records import Outcome, Store
from runner.scenario_catalog import Selection

SELECTION = Selection(("tf2.4", "tf2.15", "tf2.18"), ("custom", "dense"), ("h5",))


def _stats(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file and folder of the report folder, the folder included."""
    found = {".": (out.stat().st_ino, out.stat().st_mtime_ns)}
    for path in sorted(out.rglob("*")):
        st = path.stat()
        found[path.relative_to(out).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return found


def _update(store: Store, scenarios: Path, out: Path) -> report.Written:
    return report.update_reports(store, out, scenarios, catalog=[], selection=SELECTION)


def _age(store: Store, seconds: float = 10.0) -> None:
    """Date the record files back (as a run that ended a while ago left them): their
    identity alone then stands for their bytes (see report.RACY_NS)."""
    then = time.time() - seconds
    for path in store.records_dir.rglob("*.json"):
        os.utime(path, (then, then))


@pytest.fixture
def built(paths: Paths, scenario_dir: Path, tmp_path: Path) -> tuple[Store, Path]:  # noqa: F811
    store = make_store(paths)
    out = tmp_path / "out"
    with store.running():  # a run's report (the store's write lock) creates the manifest
        first = _update(store, scenario_dir, out)
    assert not first.reused and first.files == len(_files(out)) and first.cells > 0
    assert (store.root / report.MANIFEST_NAME).is_file()
    return store, out


def test_nothing_changed_skips_the_work_and_touches_no_file(
        built: tuple[Store, Path], scenario_dir: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    store, out = built
    before, stats = _files(out), _stats(out)
    monkeypatch.setattr(report, "write_reports", lambda *a, **k: pytest.fail("the report was rebuilt"))
    again = _update(store, scenario_dir, out)
    assert again.reused and again.written == [] and again.files == len(before)
    assert _files(out) == before and _stats(out) == stats  # no file, no folder rewritten
    manifest = json.loads((store.root / report.MANIFEST_NAME).read_text())
    assert list(manifest["reports"]) == [str(out)]
    # nothing of the manifest, nor of this machine, is in the report folder
    assert not any(report.MANIFEST_NAME in p.name for p in out.rglob("*"))

    # the command says so in one line, with the cell count and summary it would have printed
    assert cli._report(store, out, True, [], SELECTION, scenario_dir=scenario_dir) == 0
    said = capsys.readouterr().out
    lines = [line for line in said.splitlines() if line.startswith("report (unchanged): ")]
    assert len(lines) == 1 and "nothing rewritten" in lines[0], said
    assert f"report: {again.cells} cells -> {out}/" in said and again.summary in said
    assert _stats(out) == stats


def test_skipped_and_fully_rebuilt_reports_are_byte_identical(
        built: tuple[Store, Path], scenario_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    store, out = built
    assert _update(store, scenario_dir, out).reused
    full = tmp_path / "full"
    shutil.copytree(out, full)  # the same previous report, so CHANGES.md compares alike
    (store.root / report.MANIFEST_NAME).unlink()
    df = report.write_reports(store, full, scenario_dir, catalog=[], selection=SELECTION)
    assert df.attrs["written"] == [] and _files(full) == _files(out)
    # a rebuild of the folder itself without a manifest also finds every byte in place
    stats = _stats(out)
    rebuilt = _update(store, scenario_dir, out)
    assert not rebuilt.reused and rebuilt.written == [] and _stats(out) == stats


def _edit_record(store: Store, outcome: Outcome) -> None:
    rec = next(r for r in make_records(Paths(store.root.parent))
               if r.record_type == "load" and r.outcome is Outcome.OK)
    store.write(rec if outcome is Outcome.OK else type(rec)(**{**rec.__dict__, "outcome": outcome,
                                                                "phase": "load"}))


@pytest.mark.parametrize("same", [False, True], ids=["changed", "same-bytes"])
def test_a_changed_record_rewrites_the_report(
        built: tuple[Store, Path], scenario_dir: Path, same: bool) -> None:  # noqa: F811
    """A record rewritten with another outcome rewrites the files that show it; its twin, a
    record file replaced by the same bytes, is rebuilt (its identity changed) but no file
    is written."""
    store, out = built
    before, stats = _files(out), _stats(out)
    _edit_record(store, Outcome.OK if same else Outcome.MISMATCH)
    again = _update(store, scenario_dir, out)
    assert not again.reused
    if same:
        assert again.written == [] and _stats(out) == stats
        assert _update(store, scenario_dir, out).reused  # and recorded: the next one is skipped
        return
    assert {"README.md", "results.json.gz", "results.csv.gz"} <= set(again.written)
    after, new_stats = _files(out), _stats(out)
    assert after != before
    unchanged = [rel for rel in before if before[rel] == after.get(rel)]
    assert {"site/app.js", "index.html", "matrix.md"} <= set(unchanged)
    for rel in unchanged:  # hard-linked from the old report: same inode and mtime
        assert new_stats[rel] == stats[rel], rel
    assert sorted(rel for rel in before if before[rel] != after.get(rel)) == sorted(
        r for r in again.written if r in before)


def test_an_edit_in_place_that_restores_the_mtime_is_seen(
        built: tuple[Store, Path], scenario_dir: Path) -> None:  # noqa: F811
    """Same size, same mtime: the ctime (which nobody can set) still tells."""
    store, out = built
    _age(store)
    assert not _update(store, scenario_dir, out).reused  # identities changed (dated back)
    assert _update(store, scenario_dir, out).reused
    path = next(p for p in sorted(store.records_dir.rglob("*.json")) if b'"ok"' in p.read_bytes())
    st = path.stat()
    text = path.read_bytes()
    edited = text.replace(b'"ok"', b'"ko"', 1)
    assert len(edited) == len(text)
    with path.open("r+b") as fh:  # in place: the same inode
        fh.write(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino and path.stat().st_mtime_ns == st.st_mtime_ns
    again = _update(store, scenario_dir, out)
    assert not again.reused  # rebuilt (the file is now unusable: skipped and named)
    assert again.skipped and "README.md" in again.written


@pytest.mark.parametrize("what", ["description", "code only"])
def test_a_changed_scenario_description_rewrites_the_report(
        built: tuple[Store, Path], scenario_dir: Path, what: str) -> None:  # noqa: F811
    """A new docstring summary is on the scenario's page and README.md; its twin, a change
    to the scenario's code alone, is rebuilt but changes no byte."""
    store, out = built
    stats = _stats(out)
    text = (SCENARIO_DENSE.replace("Plain MLP (test fixture).", "A plain MLP, described anew.")
            if what == "description" else SCENARIO_DENSE.replace("ATOL = 1e-5", "ATOL = 1e-5  # tightened later"))
    (scenario_dir / "dense.py").write_text(text)
    again = _update(store, scenario_dir, out)
    assert not again.reused
    if what == "description":
        assert {"README.md", "grids/dense.md", "data/meta.js"} <= set(again.written)
        assert "A plain MLP, described anew." in (out / "grids" / "dense.md").read_text()
    else:
        assert again.written == [] and _stats(out) == stats
    assert _update(store, scenario_dir, out).reused


@pytest.mark.parametrize("damage", ["deleted", "edited", "touched", "user file added"])
def test_a_damaged_report_folder_is_repaired(
        built: tuple[Store, Path], scenario_dir: Path, damage: str) -> None:  # noqa: F811
    """A report file deleted or edited by hand is written again (and only it); its twins,
    a file whose mtime alone changed and a file of the user's in the folder, change nothing."""
    store, out = built
    before = _files(out)
    target = out / "grids" / "dense.md"
    if damage == "deleted":
        target.unlink()
    elif damage == "edited":
        target.write_text(target.read_text().replace("dense", "DENSE"))
    elif damage == "touched":
        os.utime(target, (1, 1))
    else:
        (out / "notes.txt").write_text("mine\n")
    stats = _stats(out)
    again = _update(store, scenario_dir, out)
    if damage in ("deleted", "edited"):
        assert not again.reused and again.written == ["grids/dense.md"]
        assert _files(out) == before
        after = _stats(out)
        assert all(after[rel] == stats[rel] for rel in before if rel != "grids/dense.md")
    else:
        assert again.reused and _stats(out) == stats
        assert _files(out) == ({**before, "notes.txt": b"mine\n"} if damage == "user file added" else before)


def test_a_stray_file_in_a_report_folder_is_removed_and_a_legacy_file_too(
        built: tuple[Store, Path], scenario_dir: Path) -> None:  # noqa: F811
    store, out = built
    before = _files(out)
    (out / "grids" / "gone.md").write_text("a scenario that no longer exists\n")
    (out / "results.csv").write_text("an earlier layout\n")
    again = _update(store, scenario_dir, out)
    assert not again.reused and again.written == ["grids/gone.md", "results.csv"]
    assert _files(out) == before


def test_another_folder_has_its_own_entry(built: tuple[Store, Path], scenario_dir: Path,  # noqa: F811
                                          tmp_path: Path) -> None:
    store, out = built
    other = tmp_path / "other"
    assert not _update(store, scenario_dir, other).reused
    assert _update(store, scenario_dir, other).reused and _update(store, scenario_dir, out).reused
    shutil.rmtree(other)
    assert not _update(store, scenario_dir, out.parent / "third").reused
    manifest = json.loads((store.root / report.MANIFEST_NAME).read_text())
    assert sorted(manifest["reports"]) == sorted([str(out), str(out.parent / "third")])  # the gone one dropped


def test_a_damaged_manifest_means_a_full_check(built: tuple[Store, Path], scenario_dir: Path) -> None:  # noqa: F811
    store, out = built
    stats = _stats(out)
    (store.root / report.MANIFEST_NAME).write_text("{not json")
    again = _update(store, scenario_dir, out)
    assert not again.reused and again.written == [] and _stats(out) == stats
    assert _update(store, scenario_dir, out).reused


def test_a_symlink_among_the_records_turns_the_skip_off(built: tuple[Store, Path], scenario_dir: Path) -> None:  # noqa: F811
    store, out = built
    (store.records_dir / "env" / "link.json").symlink_to(store.records_dir / "env" / "tf2.4.json")
    assert not _update(store, scenario_dir, out).reused
    assert not _update(store, scenario_dir, out).reused


@pytest.mark.parametrize("run", [False, True], ids=["report only", "a run's report"])
def test_only_a_run_creates_the_manifest(paths: Paths, scenario_dir: Path, tmp_path: Path,  # noqa: F811
                                         run: bool) -> None:
    """A report that only reads the store adds nothing to it (its lock file aside), so it
    does not skip next time; a run's report (holding the store's write lock) creates the
    manifest, and later reports, readers too, keep it current."""
    store = make_store(paths)
    out = tmp_path / "out"
    with store.running(reader=not run):
        assert not _update(store, scenario_dir, out).reused
    assert (store.root / report.MANIFEST_NAME).is_file() == run
    with store.running(reader=True):
        assert _update(store, scenario_dir, out).reused == run
        _edit_record(store, Outcome.MISMATCH)
        assert not _update(store, scenario_dir, out).reused
        assert _update(store, scenario_dir, out).reused == run


def test_the_inputs_digest_is_the_same_in_every_process(paths: Paths, scenario_dir: Path) -> None:  # noqa: F811
    """Nothing of a process (set order under hash randomisation, ...) enters the digest: two
    interpreters with different hash seeds agree (the scrubber's paths once came in set order)."""
    import subprocess
    import sys

    store = make_store(paths)
    home, pyenv = store.root.parent / "homes", store.root.parent / "pyenv"  # as long as .../store
    code = ("import sys; from pathlib import Path; from runner import report; from runner.records import Store\n"
            "from runner.scenario_catalog import Selection\n"
            "st = Store(sys.argv[1]); e = report._record_entries(st.records_dir)\n"
            "print(report._inputs_digest(report._records_digest(st.records_dir, e, 0), st, Path(sys.argv[2]), [],\n"
            "      Selection(('a',), ('b',), ('h5',)), None))\n")
    seen = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(report.__file__).parent.parent),
               "TMPDIR": "/tmp", "HOME": str(home), "PYENV_ROOT": str(pyenv)}
        seen.add(subprocess.run([sys.executable, "-c", code, str(store.root), str(scenario_dir)], env=env,
                                capture_output=True, text=True, check=True).stdout)
    assert len(seen) == 1, seen
