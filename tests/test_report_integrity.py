"""Report integrity on real runner processes and real files (issue 23, item 7).

Each test breaks ``python -m runner report`` (or ``matrix``, ``gate``, ``explain``) the
way a user or a machine did, over the fake catalog of tests/e2e.py (real stores, real
workers, real uv; only Keras is fake), and checks the promise:

- a missing store is one ``runner: error:`` line, exit 2, and the report folder untouched;
- a SIGKILL at any point of a report write leaves the folder holding the complete old
  or the complete new report (a plain directory), and the next write removes what the
  killed one left;
- ``report`` holds the store's lock: refused (one line) or queued (``--wait``) while a
  matrix writes the store, and never touches that run's files;
- unreadable, stray or out-of-selection record files are skipped and counted, never a
  traceback, in ``report``, ``gate --store`` and ``explain``;
- SIGTERM stops a run as Ctrl-C does: the same message, exit 143, workers and uv
  installs ended;
- ``results.csv.gz`` starts with its header row, and the pandas recipe of
  docs/reports-schema.md reads every row (also those whose message holds a ``#``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import e2e
import pytest
from conftest import live_pids_mentioning

pytestmark = pytest.mark.faults

SCHEMA_DOC = e2e.REPO / "docs" / "reports-schema.md"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, catalog: Path, envs_dir: Path) -> tuple[Path, Path]:
    """(store, report folder) of one undisturbed run; tests work on copies."""
    root = tmp_path_factory.mktemp("built")
    proc = e2e.run_matrix(catalog, root / "store", root / "out", envs_dir, "-j", "2")
    assert proc.returncode == 0, e2e.describe(proc)
    assert len(e2e.table(root / "out")) == 92
    return root / "store", root / "out"


def _copy(built: tuple[Path, Path], dest: Path) -> tuple[Path, Path]:
    store, out = dest / "store", dest / "out"
    shutil.copytree(built[0], store, symlinks=True)
    shutil.copytree(built[1], out, symlinks=True)
    return store, out


def report_argv(catalog: Path, store: Path, out: Path | None, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "runner", "report", "--catalog", str(catalog),
            "--scenario-dir", str(e2e.FAKE_SCENARIOS), "--scenarios", e2e.SCENARIOS,
            "--store", str(store), *extra]
    return argv + (["--out", str(out)] if out is not None else [])


def run_report(catalog: Path, store: Path, out: Path | None, envs_dir: Path, *extra: str,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(report_argv(catalog, store, out, *extra), cwd=e2e.REPO,
                          env=e2e.runner_env(envs_dir, env), capture_output=True, text=True,
                          timeout=300, check=False)


def runner(envs_dir: Path, *argv: str, cwd: Path = e2e.REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *argv], cwd=cwd, env=e2e.runner_env(envs_dir),
                          capture_output=True, text=True, timeout=300, check=False)


def _leftovers(out: Path) -> list[str]:
    """What a report write leaves beside its folder (``.<name>.new-<pid>`` / ``.old-<pid>``)."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, e2e.describe(proc)


# ------------------------------------------------------------------- 1. missing store


@pytest.mark.parametrize(("kind", "said"), [("mistyped", "holds no records (no such directory)"),
                                           ("empty directory", "holds no records (it has no records/ folder)"),
                                           ("no cell of the selection", "holds no cell of this selection")])
def test_a_store_without_records_is_one_line_and_the_report_stays(
        tmp_path: Path, built: tuple[Path, Path], catalog: Path, envs_dir: Path, kind: str, said: str) -> None:
    """`report --store <typo>` exited 0 and replaced a 92-cell report with an empty table."""
    _store, out = _copy(built, tmp_path)
    before = e2e.report_files(out)
    typo = tmp_path / "stroe"
    if kind != "mistyped":
        typo.mkdir()
    if kind == "no cell of the selection":  # records, but of another catalog
        (typo / "records" / "env").mkdir(parents=True)
        shutil.copy2(built[0] / "records" / "env" / "fk2.15.json", typo / "records" / "env" / "other.json")
    inside = sorted(p.relative_to(typo).as_posix() for p in typo.rglob("*")) if typo.exists() else None
    beside = sorted(os.listdir(out.parent))
    proc = run_report(catalog, typo, out, envs_dir)
    e2e.one_error_line(proc, str(typo), said)
    assert e2e.report_files(out) == before
    assert sorted(os.listdir(out.parent)) == beside  # no store made, no temp folder left
    if inside is None:
        assert not typo.exists() and proc.stdout == ""
    else:  # a store that exists gets only the report's lock file
        assert sorted(p.relative_to(typo).as_posix() for p in typo.rglob("*")
                      if p.name != ".running.lock") == inside


# ------------------------------------------------------ 2. a kill during the report write


@pytest.mark.parametrize("point", ["report-file:1", "report-file:9", "report-write:1", "report-swap:1"])
def test_a_sigkill_during_a_report_write_leaves_a_whole_report(
        tmp_path: Path, built: tuple[Path, Path], catalog: Path, envs_dir: Path, point: str) -> None:
    """A kill during the old renames left an index linking to missing pages. Now the report
    is written to a new folder and swapped in: the folder is always one whole report."""
    store, out = _copy(built, tmp_path)
    # The next report differs: a loader column gone, and a scenario's pages gone.
    (store / "records" / "env" / "fk3.9.json").unlink()
    for save in (store / "records" / "save").rglob("h5_only__*.json"):
        save.unlink()
    before = e2e.report_files(out)
    expected_dir = tmp_path / "expected"
    shutil.copytree(out, expected_dir)
    assert run_report(catalog, store, expected_dir, envs_dir).returncode == 0
    expected = e2e.report_files(expected_dir)
    assert "grids/h5_only.md" in before and "grids/h5_only.md" not in expected  # a page the index linked

    proc = run_report(catalog, store, out, envs_dir, env={"COMPAT_FAULT": f"kill:{point}"})
    assert proc.returncode == -signal.SIGKILL, e2e.describe(proc)
    assert out.is_dir() and not out.is_symlink()
    seen = e2e.report_files(out)
    assert seen == (expected if point.startswith("report-swap") else before)
    left = _leftovers(out)
    assert len(left) == 1 and re.fullmatch(r"\.out\.new-\d+", left[0]), left

    again = run_report(catalog, store, out, envs_dir)
    assert again.returncode == 0, e2e.describe(again)
    assert e2e.report_files(out) == expected
    assert _leftovers(out) == [] and e2e.temp_files(out) == []
    assert out.is_dir() and not out.is_symlink()


def test_without_an_atomic_exchange_a_kill_between_the_renames_is_repaired(tmp_path: Path) -> None:
    """Where renameat2(RENAME_EXCHANGE) is missing the old folder is renamed aside, then
    the new one in: a real SIGKILL between the two leaves no folder, and the next write
    puts the old report back before anything else."""
    out = tmp_path / "reports"
    code = ("import sys; from pathlib import Path; from runner import report\n"
            "report._renameat2 = None\n"
            "report._publish(Path(sys.argv[1]), {'README.md': sys.argv[2], 'grids/a.md': sys.argv[2]})\n")

    def write(text: str, fault: str = "") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "COMPAT_FAULT"}
        env.update({"PYTHONPATH": str(e2e.REPO), **({"COMPAT_FAULT": fault} if fault else {})})
        return subprocess.run([sys.executable, "-c", code, str(out), text], env=env, capture_output=True,
                              text=True, timeout=120, check=False)

    assert write("old").returncode == 0
    killed = write("new", "kill:report-swap:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    assert [n.split("-")[0] for n in _leftovers(out)] == [".reports.new", ".reports.old"]
    assert write("newer").returncode == 0
    assert e2e.report_files(out) == {"README.md": b"newer", "grids/a.md": b"newer"}
    assert _leftovers(out) == []


def test_the_published_reports_folder_of_a_checkout_stays_a_plain_tracked_directory(
        tmp_path: Path, envs_dir: Path) -> None:
    """`python -m runner report` into a repo's committed reports/: after a normal write
    and after a write killed mid-swap, git sees changes under reports/ only, reports/ is a
    plain directory, and the next write leaves nothing beside it."""
    copy = e2e.checkout_copy(tmp_path / "checkout")
    env = e2e.runner_env(envs_dir, {"PYTHONPATH": str(copy)})

    def run(*argv: str, fault: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runner", *argv], cwd=copy,
                              env={**env, **({"COMPAT_FAULT": fault} if fault else {})},
                              capture_output=True, text=True, timeout=600, check=False)

    def status() -> list[str]:
        return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                              capture_output=True, text=True, check=True).stdout.splitlines()

    proc = run("matrix")
    assert proc.returncode == 0 and "(the published table;" in proc.stdout, e2e.describe(proc)
    assert all(line[3:].startswith("reports/") for line in status()), status()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    subprocess.run([*git, "commit", "-qm", "published"], cwd=copy, check=True)
    inode = (copy / "reports").stat().st_ino

    (copy / ".matrix" / "records" / "env" / "fk3.9.json").unlink()
    killed = run("report", fault="kill:report-swap:1")
    assert killed.returncode == -signal.SIGKILL, e2e.describe(killed)
    assert (copy / "reports").is_dir() and not (copy / "reports").is_symlink()
    assert (copy / "reports").stat().st_ino != inode  # the new folder was swapped in
    assert list(copy.glob(".reports.new-*"))  # the killed write's leftover (.gitignore'd)
    proc = run("report")
    assert proc.returncode == 0 and "(the published table;" in proc.stdout, e2e.describe(proc)
    changed = status()
    assert changed and all(line[3:].startswith("reports/") for line in changed), changed
    assert _leftovers(copy / "reports") == []
    assert (copy / "reports").is_dir() and not (copy / "reports").is_symlink()
    assert "fk3.9" in (copy / "reports" / "CHANGES.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------- 3. the store lock


def test_report_holds_the_store_lock(tmp_path: Path, built: tuple[Path, Path], envs_dir: Path) -> None:
    """`report` took no lock and deleted a running matrix's temp files. Now, while a matrix
    writes the store, `report` is refused naming the holder, or waits with --wait."""
    slow = e2e.write_catalog(tmp_path / "slow.toml", {"fk3.9": {"load": {
        "match": "mlp/h5/", "action": "swallow", "arg": 2}}})
    store, out = tmp_path / "store", tmp_path / "out"
    logs = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    first = subprocess.Popen(e2e.matrix_argv(slow, store, out, "-j", "1"), cwd=e2e.REPO,
                             env=e2e.runner_env(envs_dir), stdout=logs[0], stderr=logs[1], text=True)
    waiting: subprocess.Popen[str] | None = None
    try:
        lock = store / ".running.lock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lock.exists() and f"pid {first.pid}" in lock.read_text()):
            time.sleep(0.05)
        busy = run_report(slow, store, out, envs_dir)
        assert first.poll() is None, "the matrix ended before the report was tried"
        line = e2e.one_error_line(busy, f"store {store} is in use by pid {first.pid}", "--wait")
        assert busy.stdout == ""
        waiting = subprocess.Popen(report_argv(slow, store, out, "--wait"), cwd=e2e.REPO,
                                   env=e2e.runner_env(envs_dir), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert first.poll() is None and waiting.poll() is None  # queued behind the matrix
        assert first.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
        w_out, w_err = waiting.communicate(timeout=300)
    finally:
        for proc in (first, waiting):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        for fh in logs:
            fh.close()
    assert waiting.returncode == 0, (w_out[-2000:], w_err[-2000:])
    assert "report: 92 cells" in w_out
    # The whole run's table: the report read the store only after the matrix released it,
    # and the matrix's own report (same folder) was not disturbed by it.
    assert e2e.table(out) == e2e.table(built[1])
    assert "matrix: " in (tmp_path / "stdout.txt").read_text() and "report: 92 cells" in line + w_out
    assert e2e.temp_files(store) == [] and e2e.temp_files(out) == [] and _leftovers(out) == []


# ------------------------------------------------------------ 4. damaged or stray records


def test_records_outside_the_selection_are_not_read(tmp_path: Path, built: tuple[Path, Path],
                                                    catalog: Path, envs_dir: Path) -> None:
    """A truncated record of a stack outside the selection blocked the report."""
    store, _out = _copy(built, tmp_path)
    want = run_report(catalog, store, tmp_path / "want", envs_dir, "--stacks", "fk2.15,fk3.5")
    assert want.returncode == 0, e2e.describe(want)
    for victim in (store / "records" / "load" / "fk3.9" / "fk2.15" / "mlp__h5__default.json",
                   store / "records" / "save" / "fk3.9" / "mlp__h5.json"):
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    proc = run_report(catalog, store, tmp_path / "got", envs_dir, "--stacks", "fk2.15,fk3.5")
    assert proc.returncode == 0 and proc.stderr == "", e2e.describe(proc)
    assert re.search(r"report: \d+ record file\(s\) outside the selection were not read", proc.stdout)
    assert "skipped" not in proc.stdout
    assert e2e.table(tmp_path / "got") == e2e.table(tmp_path / "want")


def _damage(store: Path) -> tuple[str, list[str]]:
    """A stray .json, a stray copy of a record and a record with a wrong-typed field; the
    damaged cell's id and the three files (from the store root)."""
    records = e2e.records_by_id(store)
    cid = next(c for c, r in sorted(records.items())
               if r["record_type"] == "load" and r["outcome"] == "load_error" and r["variant"] == "default")
    rec = records[cid]
    wrong = store / "records" / "load" / rec["loader"] / rec["saver"] / \
        f"{rec['scenario']}__{rec['format']}__default.json"
    wrong.write_text(json.dumps({**rec, "error": "boom"}))
    stray = store / "records" / "notes.json"
    stray.write_text("[1, 2]")
    copy = store / "records" / "load" / "fk3.5" / "fk2.15" / "mlp__h5__default copy.json"
    shutil.copy2(copy.with_name("mlp__h5__default.json"), copy)
    return cid, sorted(p.relative_to(store).as_posix() for p in (wrong, stray, copy))


def test_unusable_records_are_skipped_and_named_never_a_traceback(
        tmp_path: Path, built: tuple[Path, Path], catalog: Path, envs_dir: Path) -> None:
    """A stray .json or a record with a wrong-typed field blocked `report`, `gate` and
    `explain` with a traceback."""
    store, out = _copy(built, tmp_path)
    cid, files = _damage(store)
    proc = run_report(catalog, store, out, envs_dir)
    assert proc.returncode == 0 and proc.stderr == "", e2e.describe(proc)
    assert "report: skipped 3 record file(s) that cannot be used (README.md names them)" in proc.stdout
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "**3 record file(s) of this selection could not be used" in readme
    assert all(f"`{f}`" in readme for f in files), readme[:2000]
    data = json.loads(gzip.decompress((out / "results.json.gz").read_bytes()))
    assert sorted(s["path"] for s in data["skipped_records"]) == files
    got, want = e2e.table(out), e2e.table(built[1])

    def of(cell: tuple[Any, ...]) -> str:
        return f"{cell[0]}:{cell[1]}:{cell[2]}->{cell[3]}:{cell[4]}"

    assert [v[0] for k, v in want.items() if of(k) == cid] == ["load_error"]
    assert [v[0] for k, v in got.items() if of(k) == cid] == ["not_run"]  # its record is not used
    assert {k: v for k, v in got.items() if of(k) != cid} == {k: v for k, v in want.items() if of(k) != cid}

    gated = runner(envs_dir, "gate", "--baseline", str(built[1] / "results.json.gz"), "--store", str(store))
    _no_traceback(gated)
    assert gated.returncode == 0, e2e.describe(gated)
    assert "gate: note: skipped 3 record file(s) of the store that cannot be used" in gated.stdout

    other = next(c for c in e2e.records_by_id(built[0]) if "->" in c and c != cid)
    told = runner(envs_dir, "explain", "--store", str(store), "--catalog", str(catalog), other)
    _no_traceback(told)
    assert told.returncode == 0 and f"cell        {other}" in told.stdout, e2e.describe(told)
    missing = runner(envs_dir, "explain", "--store", str(store), "--catalog", str(catalog), cid)
    e2e.one_error_line(missing, cid, "3 record file(s) could not be read")


# ------------------------------------------------------------------------- 5. SIGTERM


def _start(argv: list[str], env: Mapping[str, str], tmp_path: Path) -> tuple[subprocess.Popen[str], Any]:
    logs = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    return subprocess.Popen(argv, cwd=e2e.REPO, env=dict(env), stdout=logs[0], stderr=logs[1],
                            text=True), logs


def _stop(proc: subprocess.Popen[str], logs: Any, tmp_path: Path, leftovers: str) -> tuple[str, str]:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    for pid in live_pids_mentioning(leftovers):  # what an old runner left running
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for fh in logs:
        fh.close()
    return (tmp_path / "stdout.txt").read_text(), (tmp_path / "stderr.txt").read_text()


def _wait_for(what: str, pids: Any, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(pids()) >= n:
            return
        time.sleep(0.1)
    pytest.fail(f"{what} never started")


def test_sigterm_stops_workers_like_ctrl_c(tmp_path: Path, envs_dir: Path) -> None:
    """SIGTERM exited 143 without a word; now: the interrupt message, workers ended."""
    hanging = e2e.write_catalog(tmp_path / "hang.toml",
                                {"fk3.9": {"load": {"action": "hang"}}, "fk3.5": {"load": {"action": "hang"}}})
    store = tmp_path / "store"
    proc, logs = _start(e2e.matrix_argv(hanging, store, tmp_path / "out", "-j", "2"),
                        e2e.runner_env(envs_dir), tmp_path)
    try:
        _wait_for("the two hanging loaders", lambda: live_pids_mentioning(f"{store}/runs/load-"), 2)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        stdout, stderr = _stop(proc, logs, tmp_path, str(store))
    assert rc == 143, (rc, stdout[-2000:], stderr[-2000:])
    assert took < 3.0, took
    assert stderr.strip().splitlines()[-1] == "runner: interrupted; recorded cells are kept, run again to finish"
    assert live_pids_mentioning(str(store)) == []
    assert e2e.temp_files(store) == []
    assert not {r["outcome"] for r in e2e.records_by_id(store).values()} & {"crash", "timeout", "protocol_error"}


@contextlib.contextmanager
def _silent_index() -> Iterator[str]:
    """A package index that accepts connections and never answers: uv waits on it."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(64)
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/simple"


def _uv_installs(envs: Path) -> list[int]:
    out = []
    for pid in live_pids_mentioning(str(envs)):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"pip" in cmd and b"install" in cmd:
                out.append(pid)
    return out


def test_sigterm_during_uv_installs_ends_them(tmp_path: Path) -> None:
    """SIGTERM left a `uv pip install` running (the builds run in the run's threads); now
    the installs are ended with the run and no stack is recorded unavailable."""
    if shutil.which("uv") is None and not os.environ.get("UV"):
        pytest.skip("uv not found")
    envs = tmp_path / "envs"  # empty: every stack is built now
    stacks = []
    for sid in ("hang-a", "hang-b"):
        req = f"compat-never-published-{sid}==1.0"
        stacks.append("\n".join([
            "[[stack]]", f'id = "{sid}"', f'python = "{e2e.HOST_PY}"', f'requirements = ["{req}"]',
            f'why = {{ "{req}" = "an install that hangs" }}', 'tags = ["hang"]',
            f'description = "{sid}"', ""]))
    catalog = tmp_path / "catalog.toml"
    catalog.write_text("\n".join(stacks))
    store = tmp_path / "store"
    with _silent_index() as index:
        env = {k: v for k, v in e2e.runner_env(envs).items()
               if not k.startswith(("UV_INDEX", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX", "UV_FIND_LINKS",
                                    "UV_OFFLINE", "UV_NO_INDEX", "PIP_"))}
        env.update({"PIP_INDEX_URL": index, "UV_HTTP_TIMEOUT": "600", "NO_PROXY": "127.0.0.1,localhost",
                    "no_proxy": "127.0.0.1,localhost"})
        proc, logs = _start(e2e.matrix_argv(catalog, store, tmp_path / "out", "-j", "2"), env, tmp_path)
        try:
            _wait_for("two uv installs", lambda: _uv_installs(envs), 2)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            time.sleep(0.2)
            left = _uv_installs(envs)
        finally:
            stdout, stderr = _stop(proc, logs, tmp_path, str(envs))
    assert rc == 143, (rc, stdout[-2000:], stderr[-2000:])
    assert "runner: interrupted; recorded cells are kept, run again to finish" in stderr
    assert left == []
    assert not (store / "records" / "env").exists() or list((store / "records" / "env").iterdir()) == []


# ---------------------------------------------------------------- 6. the CSV and its recipe


def _documented_recipe() -> str:
    section = SCHEMA_DOC.read_text(encoding="utf-8").split("## `results.csv.gz`", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    assert "read_csv" in code
    return code


def test_the_documented_pandas_recipe_reads_every_row(tmp_path: Path, envs_dir: Path) -> None:
    """results.csv.gz opened with a "#" line, and the documented read_csv(comment="#")
    dropped every row whose message holds a URL with "#"."""
    pytest.importorskip("pandas")
    url = "see https://keras.io/guides/serialization_and_saving/#custom-objects"
    hashed = e2e.write_catalog(tmp_path / "hash.toml", {"fk3.5": {"load": {"action": "raise", "arg": url}}})
    out = tmp_path / "out"
    proc = e2e.run_matrix(hashed, tmp_path / "store", out, envs_dir, "-j", "2")
    assert proc.returncode == 0, e2e.describe(proc)
    text = gzip.decompress((out / "results.csv.gz").read_bytes()).decode("utf-8")
    assert text.startswith("cell_id,scenario,format,variant,saver,loader,outcome,")
    cells = json.loads(gzip.decompress((out / "results.json.gz").read_bytes()))["cells"]
    code = _documented_recipe().replace('"reports/results.csv.gz"', repr(str(out / "results.csv.gz")))
    space: dict[str, Any] = {}
    exec(compile(code, str(SCHEMA_DOC), "exec"), space)  # the doc's own recipe, as a reader runs it
    df = space["df"]
    with_hash = int(df["error_message"].fillna("").str.contains("#", regex=False).sum())
    assert with_hash >= 10  # every load in fk3.5 raised it
    assert len(df) == len(cells)
