"""Fault injection on real processes and real filesystems (fake Keras only).

Every test breaks a real run of ``python -m runner matrix`` over the fake catalog of
tests/e2e.py — SIGKILL at named points (runner/faults.py), a real Ctrl-C, two runs on
one store, damaged records, artifacts and venvs, read-only and full filesystems (small
tmpfs mounts) — then checks the promise: the run ends with one ``runner: error:`` line
and loses nothing, and the next run ends with the same table as a clean run.

Each test adds a row (fault, expected, observed) to the reliability table; with
``COMPAT_RELIABILITY_OUT=docs/reliability.md`` the module writes it there (the
published docs/reliability.md is made that way). Marked ``faults``: its own tier in
``nox -s tests`` (about a minute), not the < 2 min fast tier.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e
import pytest
import tamper
from conftest import live_pids_mentioning

pytestmark = pytest.mark.faults

ROWS: list[tuple[str, str, str]] = []


def _row(fault: str, expected: str, observed: str) -> None:
    # No path of this machine in the published table: a test's temp dir reads <tmp>.
    observed = re.sub(r"\S*/pytest-of-[^/\s`]+/pytest-\d+/[^/\s`]+", "<tmp>", observed)
    observed = observed.replace(str(e2e.REPO), "<repo>")
    observed = re.sub(r"[^\s`(]*/pytest-of[^\s`);]*", "<tmp>/…", observed)  # a path cut short by truncation
    ROWS.append((fault, expected, observed))


@pytest.fixture(scope="module", autouse=True)
def _reliability_table() -> Iterator[None]:
    yield
    target = os.environ.get("COMPAT_RELIABILITY_OUT")
    if not target or not ROWS:
        return
    lines = ["# Reliability: faults injected, what the runner promises, what it did", "",
             "Made by the fault-injection suite, `tests/test_faults.py`, on real processes and "
             "real files (only Keras is fake: tests/e2e.py's catalog of three fake stacks, two "
             "scenarios, five formats = 92 table cells):", "",
             "```", "COMPAT_RELIABILITY_OUT=docs/reliability.md python3 -m pytest -m faults "
             "tests/test_faults.py", "```", "",
             "It runs in CI (`nox -s tests`, tier `faults`). \"Same table\" means the rerun's "
             "results.json.gz has every cell with the outcome, category and remedy of a clean run.", "",
             "| fault | expected | observed |", "|---|---|---|"]
    lines += [f"| {f} | {e} | {o} |" for f, e, o in sorted(ROWS)]
    old = Path(target).read_text(encoding="utf-8") if Path(target).exists() else ""
    attacks = old[old.index(tamper.SECTION):] if tamper.SECTION in old else ""  # tests/tamper.py's section
    Path(target).write_text("\n".join(lines) + "\n" + (f"\n{attacks}" if attacks else ""), encoding="utf-8")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, catalog: Path, envs_dir: Path) -> dict[Any, Any]:
    """The table of an undisturbed run: what every recovery must end with."""
    root = tmp_path_factory.mktemp("clean")
    proc = e2e.run_matrix(catalog, root / "store", root / "out", envs_dir, "-j", "2")
    assert proc.returncode == 0, e2e.describe(proc)
    table = e2e.table(root / "out")
    assert len(table) == 92 and {"ok", "load_error", "not_applicable"} <= {v[0] for v in table.values()}
    return table


def _recover(catalog: Path, store: Path, out: Path, envs_dir: Path,
             clean: dict[Any, Any]) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run again undisturbed; assert the clean table; return the run and cells it recomputed."""
    proc = e2e.run_matrix(catalog, store, out, envs_dir, "-j", "2")
    assert proc.returncode == 0, e2e.describe(proc)
    assert e2e.table(out) == clean
    assert e2e.temp_files(store) == [] and e2e.temp_files(out) == []
    assert live_pids_mentioning(str(store)) == []
    ran = next(ln for ln in proc.stdout.splitlines() if " cells run, " in ln)
    return proc, int(ran.split("matrix: ", 1)[1].split(" cells run")[0])


def _redescribed(tmp_path: Path) -> tuple[str, str]:
    """``--scenario-dir`` arguments of a copy of the fake scenarios whose mlp has another
    description: the next report differs (its tables show descriptions) while no cell key
    does (a docstring is not behaviour), so a report really is written, and nothing else."""
    copy = tmp_path / "scenarios-redescribed"
    shutil.copytree(e2e.FAKE_SCENARIOS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    mlp = copy / "mlp.py"
    text = mlp.read_text()
    assert text.startswith('"""Fake-tier Sequential MLP')
    mlp.write_text(text.replace('"""Fake-tier Sequential MLP', '"""Fake-tier Sequential MLP, described again', 1))
    return "--scenario-dir", str(copy)


def _all_readable(store: Path) -> int:
    n = 0
    for path in (store / "records").rglob("*.json"):
        json.loads(path.read_text())
        n += 1
    return n


# ------------------------------------------------------------------------- SIGKILL


@pytest.mark.parametrize("point", ["env-built:2", "save-result:4", "record-write:7",
                                   "load-result:5", "record-write:40"])
def test_sigkill_then_rerun_gives_the_clean_table(tmp_path: Path, catalog: Path, envs_dir: Path,
                                                  clean: dict[Any, Any], point: str) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    proc = e2e.run_matrix(catalog, store, out, envs_dir, "-j", "1", env={"COMPAT_FAULT": f"kill:{point}"})
    assert proc.returncode == -signal.SIGKILL, e2e.describe(proc)
    readable = _all_readable(store) if (store / "records").exists() else 0
    left = len(e2e.temp_files(store))
    _proc, ran = _recover(catalog, store, out, envs_dir, clean)
    _row(f"SIGKILL of the runner at `{point}`", "no half record; rerun = clean table",
         f"killed; {readable} records readable, {left} temp file(s) left and removed by the rerun; "
         f"rerun exit 0, {ran} cells recomputed, same table")


def test_sigkill_during_report_write_keeps_the_old_reports(tmp_path: Path, catalog: Path,
                                                           envs_dir: Path, clean: dict[Any, Any]) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    assert e2e.run_matrix(catalog, store, out, envs_dir).returncode == 0
    before = e2e.report_files(out)
    proc = e2e.run_matrix(catalog, store, out, envs_dir, *_redescribed(tmp_path),
                          env={"COMPAT_FAULT": "kill:report-write:1"})
    assert proc.returncode == -signal.SIGKILL, e2e.describe(proc)
    after = e2e.report_files(out)  # temp files aside
    assert after == before
    _recover(catalog, store, out, envs_dir, clean)
    _row("SIGKILL between writing the five report files and renaming them",
         "reports all old or all new", "all five files byte-identical to the previous report; "
         "the rerun removed the temp files and wrote the clean table")


# ------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_with_two_jobs_stops_within_two_seconds(tmp_path: Path, envs_dir: Path,
                                                        clean: dict[Any, Any], catalog: Path) -> None:
    hanging = e2e.write_catalog(tmp_path / "hang.toml",
                                {"fk3.9": {"load": {"action": "hang"}}, "fk3.5": {"load": {"action": "hang"}}})
    store, out = tmp_path / "store", tmp_path / "out"
    logs = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    # Files, not pipes: a pipe nobody reads until the end could block the runner's output.
    # Started with SIGINT ignored, as a shell starts a background job (CI may): the runner
    # must still stop on Ctrl-C.
    argv = ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *e2e.matrix_argv(hanging, store, out, "-j", "2")]
    proc = subprocess.Popen(argv, cwd=e2e.REPO, env=e2e.runner_env(envs_dir), stdout=logs[0],
                            stderr=logs[1], text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(live_pids_mentioning(f"{store}/runs/load-")) >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the two hanging loaders never started")
        time.sleep(0.5)  # both workers are inside a hanging cell
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        for fh in logs:
            fh.close()
    stdout, stderr = (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()
    assert rc == 130, (stdout[-2000:], stderr[-2000:])
    assert took < 2.0, took
    assert "interrupted" in stderr
    assert live_pids_mentioning(str(store)) == []
    assert e2e.temp_files(store) == []
    recs = e2e.records_by_id(store)
    assert not {r["outcome"] for r in recs.values()} & {"crash", "timeout", "protocol_error"}
    assert not out.exists()  # no report from an interrupted run
    _p, ran = _recover(catalog, store, out, envs_dir, clean)
    _row("Ctrl-C (SIGINT) at `--jobs 2`, both loaders inside a hanging cell",
         "exit 130 within 2 s, workers killed, no false crash/timeout record",
         f"exit 130 after {took:.1f} s, no worker left, {len(recs)} records kept (none crash/timeout); "
         f"rerun with the clean catalog: same table ({ran} cells run)")


# --------------------------------------------------------------- two runs, one store


def test_a_second_run_on_a_busy_store_is_refused_or_waits(tmp_path: Path, catalog: Path,
                                                          envs_dir: Path, clean: dict[Any, Any]) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    first = subprocess.Popen(e2e.matrix_argv(catalog, store, out, "-j", "1"), cwd=e2e.REPO,
                             env=e2e.runner_env(envs_dir), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = store / ".running.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and f"pid {first.pid}" in lock.read_text()):
        time.sleep(0.05)
    busy = e2e.run_matrix(catalog, store, tmp_path / "out2", envs_dir)
    line = e2e.one_error_line(busy, f"in use by pid {first.pid}", "--wait")
    waited = e2e.run_matrix(catalog, store, tmp_path / "out3", envs_dir, "--wait")
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, (first_out[-2000:], first_err[-2000:])
    assert waited.returncode == 0, e2e.describe(waited)
    assert e2e.table(out) == clean and e2e.table(tmp_path / "out3") == clean
    kinds = e2e.kinds(e2e.records_by_id(store))
    assert not set(kinds) & {"crash", "protocol_error", "timeout"}
    _recover(catalog, store, out, envs_dir, clean)
    _row("two runs started on one store", "the second is refused naming the holder, or queues "
         "with `--wait`; both end with the clean table",
         f"refused: `{line.split(': ', 2)[2]}`; with --wait: exit 0 after the first; "
         "no crash/protocol_error record; same table")


# ---------------------------------------------------------------- damaged store


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_unreadable_records_are_recomputed(tmp_path: Path, catalog: Path, envs_dir: Path,
                                           clean: dict[Any, Any], damage: str) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    assert e2e.run_matrix(catalog, store, out, envs_dir).returncode == 0
    victims = [store / "records" / "load" / "fk3.5" / "fk2.15" / "mlp__h5__default.json",
               store / "records" / "save" / "fk2.15" / "mlp__keras.json"]
    for v in victims:
        data = v.read_bytes()
        v.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(300))
    proc, ran = _recover(catalog, store, out, envs_dir, clean)
    assert "2 unreadable record files were recomputed" in proc.stdout
    _row(f"{damage} record files (a save and a load)", "recomputed and said so; clean table",
         f"\"2 unreadable record files were recomputed\"; {ran} cells recomputed "
         "(the save and every load of its artifact); same table")


def test_a_newer_schema_record_stops_the_run_untouched(tmp_path: Path, catalog: Path,
                                                       envs_dir: Path, clean: dict[Any, Any]) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    assert e2e.run_matrix(catalog, store, out, envs_dir).returncode == 0
    victim = store / "records" / "load" / "fk3.9" / "fk3.5" / "mlp__keras__default.json"
    data = json.loads(victim.read_text())
    data["schema_version"] = 99
    victim.write_text(json.dumps(data))
    before = victim.read_bytes()
    proc = e2e.run_matrix(catalog, store, out, envs_dir)
    line = e2e.one_error_line(proc, str(victim), "newer")
    assert victim.read_bytes() == before
    victim.unlink()
    _recover(catalog, store, out, envs_dir, clean)
    _row("a record from a newer schema", "one error line, exit 2, the record untouched",
         f"`{line}`; file byte-identical")


def test_a_deleted_artifact_is_saved_again_and_its_loads_rerun(tmp_path: Path, catalog: Path,
                                                               envs_dir: Path, clean: dict[Any, Any]) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    assert e2e.run_matrix(catalog, store, out, envs_dir).returncode == 0
    (store / "artifacts" / "fk2.15" / "mlp" / "h5" / "model.h5").unlink()
    proc, ran = _recover(catalog, store, out, envs_dir, clean)
    assert "1 saves redone because their artifact was missing or changed" in proc.stdout
    records = e2e.records_by_id(store)
    digest = records["mlp:h5:fk2.15"]["details"]["artifact_sha256"]
    loads = [r for r in records.values() if r["cell_id"].startswith("mlp:h5:fk2.15->")]
    assert len(loads) == 3 and {r["details"]["artifact_sha256"] for r in loads} == {digest}
    # The fake writes byte-identical files, so the loads of the same bytes stay valid (their
    # key holds the artifact digest); a re-save with other bytes recomputes them:
    assert ran == 1
    (store / "artifacts" / "fk2.15" / "mlp" / "h5" / "model.h5").write_bytes(b"tampered")
    proc2, ran2 = _recover(catalog, store, out, envs_dir, clean)
    assert "1 saves redone" in proc2.stdout and ran2 == 1
    _row("an artifact's model file deleted, or its bytes changed", "the save is redone (no false "
         "load_error); loads recomputed unless the re-saved bytes are identical",
         f"\"1 saves redone\"; {ran} cell run: the re-save has the recorded digest, so the 3 loads "
         "of those bytes stay valid; same table")


def test_a_damaged_venv_is_not_a_permanent_result(tmp_path: Path, catalog: Path,
                                                  clean: dict[Any, Any],
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    envs_dir = tmp_path_factory.mktemp("damaged-envs")
    store, out = tmp_path / "store", tmp_path / "out"
    assert e2e.run_matrix(catalog, tmp_path / "warm", tmp_path / "warm-out", envs_dir).returncode == 0
    inits = list(envs_dir.glob("*/lib/python*/site-packages/keras/__init__.py"))
    assert len(inits) == 1
    # Damage of the same size as the file: the file check of the installed set cannot see
    # it; the cells' own import does.
    size = inits[0].stat().st_size
    damage = "raise ImportError('damaged on purpose')\n"
    inits[0].write_text(damage + "#" * (size - len(damage) - 1) + "\n")
    assert inits[0].stat().st_size == size
    damaged = e2e.run_matrix(catalog, store, out, envs_dir)
    assert damaged.returncode == 0, e2e.describe(damaged)
    got = e2e.records_by_id(store)
    unavailable = sum(r["outcome"] == "env_unavailable" for r in got.values())
    assert unavailable > 0
    assert not any(r["outcome"] in ("save_error", "load_error") and r.get("phase") == "import"
                   for r in got.values())
    proc, ran = _recover(catalog, store, out, envs_dir, clean)
    assert "retried" in proc.stdout and "env_unavailable" in proc.stdout
    _row("a stack venv damaged after its probe was cached", "per-run env_unavailable, never a "
         "cached load_error; the next run re-probes, rebuilds and gets the clean table",
         f"{unavailable} cells env_unavailable in the damaged run; next run retried them, "
         f"rebuilt the venv, {ran} cells run, same table")


def test_a_deleted_dependency_is_rebuilt_not_published(tmp_path: Path, catalog: Path, clean: dict[Any, Any],
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 23: with h5py/ deleted from tf2.15's venv (its dist-info kept) a run published
    save_error/load_error ImportError rows and served them from the cache after the venv
    was repaired. Here numpy/ goes (dist-info kept): the run's check of every installed
    file finds it before any cell, rebuilds the venv once from the uv cache, and publishes
    the clean table; nothing is cached from the damage."""
    envs_dir = tmp_path_factory.mktemp("deleted-envs")
    assert e2e.run_matrix(catalog, tmp_path / "warm", tmp_path / "warm-out", envs_dir).returncode == 0
    (numpy,) = envs_dir.glob("*/lib/python*/site-packages/numpy")
    assert list(numpy.parent.glob("numpy-*.dist-info"))
    shutil.rmtree(numpy)
    proc = e2e.run_matrix(catalog, tmp_path / "store", tmp_path / "out", envs_dir)
    assert proc.returncode == 0, e2e.describe(proc)
    assert e2e.table(tmp_path / "out") == clean
    got = e2e.records_by_id(tmp_path / "store")
    assert not [r for r in got.values() if "ImportError" in str((r.get("error") or {}).get("type"))]
    assert numpy.is_dir()  # rebuilt
    _row("a dependency's package folder deleted from a stack venv (its dist-info kept, as h5py/ in issue 23)",
         "found by the check of every installed file before any cell; the venv rebuilt once; the clean table, "
         "no ImportError row, nothing cached from the damage",
         f"exit 0; same table as the clean run ({len(got)} records, none an ImportError); numpy/ restored")


# ------------------------------------------------------------------- filesystems


@contextlib.contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}): "
                    "the filesystem faults need root or CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(path)], check=True)


def test_read_only_store_is_one_line_and_loses_nothing(tmp_path: Path, catalog: Path,
                                                       envs_dir: Path, clean: dict[Any, Any]) -> None:
    with _tmpfs(tmp_path / "fs", "8m") as fs:
        store, out = fs / "store", tmp_path / "out"
        assert e2e.run_matrix(catalog, store, out, envs_dir).returncode == 0
        n = _all_readable(store)
        _remount(fs, "ro")
        proc = e2e.run_matrix(catalog, store, tmp_path / "out2", envs_dir, "--fresh")
        line = e2e.one_error_line(proc, "store", "not writable", "Read-only")
        assert "matrix:" not in proc.stdout and not (tmp_path / "out2").exists()
        assert _all_readable(store) == n
        _remount(fs, "rw")
        _recover(catalog, store, out, envs_dir, clean)
    _row("read-only store", "one error line before any work, exit 2", f"`{line}`; {n} records intact")


def test_read_only_reports_dir_is_one_line_before_any_work(tmp_path: Path, catalog: Path,
                                                           envs_dir: Path, clean: dict[Any, Any]) -> None:
    with _tmpfs(tmp_path / "fs", "1m") as fs:
        _remount(fs, "ro")
        store = tmp_path / "store"
        proc = e2e.run_matrix(catalog, store, fs / "reports", envs_dir)
        line = e2e.one_error_line(proc, "report directory", "not writable")
        assert not (store / "records").exists()
    _row("read-only report directory", "one error line before any work, exit 2",
         f"`{line}`; nothing run")


def test_a_full_store_stops_with_one_line_and_keeps_every_record(tmp_path: Path, catalog: Path,
                                                                 envs_dir: Path, clean: dict[Any, Any]) -> None:
    with _tmpfs(tmp_path / "fs", "256k") as fs:
        store, out = fs / "store", tmp_path / "out"
        proc = e2e.run_matrix(catalog, store, out, envs_dir, "-j", "1")
        line = e2e.one_error_line(proc, "No space left on device")
        n = _all_readable(store)
        recs = e2e.records_by_id(store)
        assert not any("No space left" in json.dumps(r.get("error")) for r in recs.values())
        _remount(fs, "size=16m")
        _p, ran = _recover(catalog, store, out, envs_dir, clean)
    _row("the store's disk fills up mid-run (256 KB tmpfs)", "one error line, exit 2, no false "
         "save_error/load_error, every record readable; rerun = clean table",
         f"`{line}`; {n} records readable, none blames a cell for the disk; rerun with room: "
         f"{ran} cells run, same table")


def test_a_full_reports_disk_leaves_the_old_reports(tmp_path: Path, catalog: Path, envs_dir: Path,
                                                    clean: dict[Any, Any]) -> None:
    store = tmp_path / "store"
    with _tmpfs(tmp_path / "fs", "2m") as fs:
        out = fs / "reports"
        assert e2e.run_matrix(catalog, store, out, envs_dir).returncode == 0
        before = e2e.report_files(out)
        args = _redescribed(tmp_path)
        free = shutil.disk_usage(fs).free
        (fs / "filler").write_bytes(b"\0" * max(0, free - 4 * 1024))  # the changed files do not fit
        proc = e2e.run_matrix(catalog, store, out, envs_dir, *args)
        line = e2e.one_error_line(proc, "No space left on device")
        assert e2e.report_files(out) == before and not e2e.temp_files(out)  # all old, no temp
        (fs / "filler").unlink()
        _recover(catalog, store, out, envs_dir, clean)
    _row("the report disk fills up while the five report files are written",
         "one error line, exit 2, reports all old (never a mix)",
         f"`{line}`; all five files byte-identical to the previous report, no temp file")


# ------------------------------------------------------------------------ hangs


def test_a_hang_is_interrupted_in_the_worker_and_kept_only_when_it_repeats(
        tmp_path: Path, envs_dir: Path) -> None:
    """A load that hangs in Python: the worker's watchdog stops it at the cell's adaptive
    limit (the floor here: fake saves take milliseconds), the same worker loads the rest,
    and the timeout is cached only after a second run times out at the same limit."""
    catalog = e2e.write_catalog(tmp_path / "catalog.toml", {
        "fk3.5": {"load": {"match": "fk2.15/mlp/h5/", "action": "hang"}}})
    store = tmp_path / "store"
    cid = "mlp:h5:fk2.15->fk3.5:default"
    seen = []
    for command in ("save+load", "load", "load"):
        t0 = time.monotonic()
        for part in command.split("+"):
            argv = e2e.matrix_argv(catalog, store, None, "-j", "1")
            argv[argv.index("matrix")] = part
            proc = subprocess.run(argv, cwd=e2e.REPO, env=e2e.runner_env(envs_dir), capture_output=True,
                                  text=True, timeout=300, check=False)
            assert proc.returncode == 0, e2e.describe(proc)
        spawned = len(list((store / "runs" / "load-fk3.5").glob("w*"))) if "[load fk3.5]" in proc.stdout else 0
        seen.append((time.monotonic() - t0, e2e.records_by_id(store)[cid], spawned))
    (t1, first, spawns1), (_t2, second, _s2), (t3, third, spawns3) = seen
    # Run 1: interrupted at the adaptive 10 s limit in the worker, which goes on (no new
    # worker for the rest of the phase); then, as a timeout below the full limit, re-run
    # alone at the full 20 s, where it holds: that is the record.
    assert first["outcome"] == "timeout" and first["details"]["interrupted_in_worker"] is True
    assert first["details"]["limit_s"] == 20.0, first["details"]
    assert "the full limit, confirming a timeout at 10 s" in first["details"]["limit_rule"]
    assert first["error"]["message"] == "cell exceeded its 20 s limit; interrupted inside the worker"
    assert spawns1 == 1  # the load phase's one worker (the confirmation is a phase of its own)
    assert first["details"]["timeouts_in_a_row"] == 1 and second["details"]["timeouts_in_a_row"] == 2
    # Run 2 ran this cell alone: a process's first cell gets the full limit (backend warm-up),
    # so its timeout held at the full limit and needs no confirmation.
    assert second["details"]["first_in_worker"] is True and second["details"]["limit_s"] == 10.0
    assert second["error"]["message"].startswith("cell exceeded its 20 s limit")
    assert third == second and spawns3 == 0  # kept: nothing ran in fk3.5's load phase
    _row("a load that hangs in Python (fake Keras sleeping forever)",
         "interrupted in the worker at its adaptive limit, the worker goes on; published only once it held at "
         "the full limit; kept only once it repeats",
         f"timeout at 10 s then confirmed at the full {first['details']['limit_s']:g} s in run 1 ({t1:.0f} s), "
         f"one worker for the load phase; re-tried in run 2 (held at the full limit as its worker's first cell); "
         f"cached in run 3 ({t3:.0f} s, no load worker started)")


def test_a_worker_over_its_memory_limit_is_recycled_between_cells(tmp_path: Path, worker_python: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24 item 7 on real processes: a scenario that leaves 16 MiB behind per cell in
    the real worker (fake Keras), a 160 MiB limit. Every cell once, the same outcomes as
    the same batch in one worker with recycling off, and no cell interrupted."""
    from conftest import FAKES, by_id, consume
    from test_recycle import HOARDER

    from runner import execute
    from runner._worker import worker as w

    monkeypatch.setattr(execute, "RECYCLE_MIN_CELLS", 4)  # the later, shorter batches recycle too
    scenario = tmp_path / "hoarder.py"
    scenario.write_text(HOARDER.format(mb=16))
    runs = {}
    for name, limit in (("off", 0), ("on", 160 << 20)):
        cells = [{"cell_id": f"save:c{i:02d}", "scenario": "hoarder", "scenario_path": str(scenario),
                  "format": "h5", "artifact_dir": str(tmp_path / name / "artifacts" / f"c{i:02d}")}
                 for i in range(40)]
        workdir = tmp_path / name / "work"
        t0 = time.monotonic()
        results = consume(execute.run_cells(worker_python, "save", cells, workdir=workdir,
                                            env=execute.child_env({}), cell_timeout=30.0,
                                            extra_sys_path=[str(FAKES)], rss_limit=limit), workdir)
        got = by_id(results)  # fails on a cell recorded twice
        assert sorted(got) == [c["cell_id"] for c in cells]
        arts = list((tmp_path / name / "artifacts").iterdir())
        complete = sum((a / w.SAVE_INFO_FILE).is_file() for a in arts)
        assert complete == len(arts) == 40  # no save was cut short, no temp dir left
        workers = sorted(p for p in workdir.iterdir() if p.is_dir())
        runs[name] = ({k: v["outcome"] for k, v in got.items()}, workers, time.monotonic() - t0,
                      [r["details"]["worker_over_limit"]["rss_mib"] for r in results
                       if "worker_over_limit" in r["details"]])
    (off, off_workers, _t_off, off_rss), (on, on_workers, t_on, on_rss) = runs["off"], runs["on"]
    assert len(off_workers) == 1 and not off_rss
    assert len(on_workers) >= 3 and len(on_workers) - 1 <= len(on_rss) <= len(on_workers)
    assert on == off and set(on.values()) == {"ok"}
    _row("a worker whose memory grows past its limit (16 MiB left behind per cell, a 160 MiB limit)",
         "retired between cells, never inside one; a fresh worker takes the rest; every cell recorded "
         "once, with the outcomes of the same batch in one worker",
         f"{len(on_workers)} workers for 40 saves (over the limit at {', '.join(f'{m} MiB' for m in on_rss)}) "
         f"in {t_on:.1f} s; 40 results, none repeated, outcomes identical to one worker with recycling off; "
         "all 40 artifacts complete")
