"""``python -m runner``: usage errors, ``stacks --json``, ``report`` and ``show``.

Every command runs in a subprocess from the repository root (derived from this file)
with ``--store`` inside ``tmp_path``. Bad input must be exactly one stderr line starting
with ``runner: error:``, exit status 2, and nothing written to the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import gate
from runner.records import ErrorInfo, Outcome, Record, Store, load_cell_id, save_cell_id
from runner.stacks import load_catalog

REPO = Path(__file__).resolve().parent.parent


def run(*args: str | Path, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k != "COMPAT_STORE" and not k.startswith("COMPAT_PYTHON_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          check=False)


def _assert_usage_error(res: subprocess.CompletedProcess[str], *fragments: str) -> str:
    lines = res.stderr.splitlines()
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("runner: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def _assert_store_untouched(store: Path) -> None:
    assert not store.exists() or not any(store.iterdir()), sorted(store.rglob("*"))


BAD_TOML = "[[stack]\nid = 'x'\n"


@pytest.mark.parametrize(("args", "fragments"), [
    (["matrix", "--stacks", "tf2.15,tf9.99"], ["unknown stack 'tf9.99'"]),
    (["save", "--stacks", "nope"], ["unknown stack 'nope'"]),
    (["load", "--stacks", "nope"], ["unknown stack 'nope'"]),
    (["matrix", "--tags", "qiuck"], ["unknown tag 'qiuck'"]),
    (["save", "-t", "quick,nonsense"], ["unknown tag 'nonsense'"]),
    (["matrix", "--scenarios", "dense,no_such_scenario"], ["unknown scenario 'no_such_scenario'"]),
    (["load", "--scenarios", "nope"], ["unknown scenario 'nope'"]),
    (["matrix", "--formats", "h5,onnx"], ["unknown format 'onnx'"]),
    (["save", "--formats", "pickle"], ["unknown format 'pickle'"]),
    (["matrix", "--catalog", "{bad_catalog}"], ["{bad_catalog}", "not valid TOML"]),
    (["save", "--catalog", "{bad_catalog}"], ["{bad_catalog}", "not valid TOML"]),
    (["report", "--catalog", "{bad_catalog}", "--out", "{out}"], ["{bad_catalog}"]),
    (["stacks", "--catalog", "{bad_catalog}"], ["{bad_catalog}", "not valid TOML"]),
    (["matrix", "--catalog", "{invalid_catalog}"], ["{invalid_catalog}", "stack #1 (x)",
                                                   "missing required key 'python'"]),
    (["matrix", "--catalog", "{missing_catalog}"], ["{missing_catalog}", "not found"]),
    (["matrix", "--scenario-dir", "{missing_dir}"], ["{missing_dir}", "not found"]),
], ids=["stack", "stack_save", "stack_load", "tag", "tag_save", "scenario", "scenario_load",
        "format", "format_save", "bad_toml", "bad_toml_save", "bad_toml_report",
        "bad_toml_stacks", "invalid_catalog", "missing_catalog", "missing_scenario_dir"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    values = {
        "bad_catalog": tmp_path / "bad.toml",
        "invalid_catalog": tmp_path / "invalid.toml",
        "missing_catalog": tmp_path / "missing.toml",
        "missing_dir": tmp_path / "no-scenarios",
        "out": tmp_path / "reports",
    }
    values["bad_catalog"].write_text(BAD_TOML)
    values["invalid_catalog"].write_text("[[stack]]\nid = 'x'\nrequirements = ['a==1']\n")
    store = tmp_path / "store"
    res = run(*[a.format(**values) for a in args], "--store", store)
    _assert_usage_error(res, *[f.format(**values) for f in fragments])
    _assert_store_untouched(store)
    assert not values["out"].exists()


def test_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    _assert_usage_error(run(), "required", "--help")


def test_help_names_the_command_it_was_started_as() -> None:
    """``python -m runner`` says so; the console entry pip installs (``compat-matrix``,
    pyproject's ``runner.cli:console``) names itself."""
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'compat-matrix = "runner.cli:console"' in pyproject
    module = run("--help")
    assert module.returncode == 0 and module.stdout.startswith("usage: python -m runner "), module.stdout
    env = {k: v for k, v in os.environ.items() if k != "COMPAT_STORE"}
    for args, usage in ((["--help"], "usage: compat-matrix "), (["report", "--help"], "usage: compat-matrix report ")):
        console = subprocess.run([sys.executable, "-c", "from runner.cli import console; console()", *args],
                                 cwd=REPO, capture_output=True, text=True, timeout=60, env=env, check=False)
        assert console.returncode == 0, console.stderr
        assert console.stdout.startswith(usage), console.stdout
        assert "python -m runner" not in console.stdout.split("\n\n", 1)[0]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--jobs", "0"], "--jobs/-j: must be at least 1, not 0"),
    (["--jobs", "-1"], "must be at least 1, not -1"),
    (["-j", "two"], "not an integer"),
    (["--load-timeout", "0"], "--load-timeout: must be a positive number of seconds"),
    (["--cell-timeout", "-5"], "--cell-timeout: must be a positive"),
    (["--import-timeout", "nan"], "--import-timeout: must be a positive"),
    (["--load-timeout", "inf"], "must be a positive"),
    (["--stacks", ""], "--stacks: empty list"),
    (["--scenarios", ","], "--scenarios: empty list"),
    (["--formats", " , "], "--formats: empty list"),
    (["--tags", ""], "--tags/-t: empty list"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
@pytest.mark.parametrize("command", ["matrix", "save", "load"])
def test_bad_options_are_refused_not_coerced(tmp_path: Path, command: str, args: list[str],
                                             fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    from runner import cli

    store = tmp_path / "store"
    with pytest.raises(SystemExit) as info:
        cli.main([command, *args, "--store", str(store)])
    err = capsys.readouterr().err
    assert info.value.code == 2
    _assert_usage_error(subprocess.CompletedProcess([], 2, "", err), fragment)
    assert not store.exists()


@pytest.mark.parametrize("setup", ["store_is_a_file", "store_read_only", "out_is_a_file",
                                   "out_read_only"])
def test_unwritable_store_or_reports_is_one_line_before_any_work(tmp_path: Path, setup: str) -> None:
    if os.geteuid() == 0 and setup.endswith("read_only"):
        # root ignores permission bits: a read-only bind mount would be needed; the fault
        # suite (tests/test_faults.py) covers read-only filesystems for real.
        pytest.skip("root writes to a chmod 0555 directory; see tests/test_faults.py")
    store, out = tmp_path / "store", tmp_path / "out"
    if setup == "store_is_a_file":
        store.write_text("not a directory")
    elif setup == "out_is_a_file":
        out.write_text("not a directory")
    elif setup.endswith("read_only"):
        target = store if setup.startswith("store") else out
        target.mkdir()
        target.chmod(0o555)
    res = run("matrix", "--stacks", "tf2.15", "--scenarios", "dense", "--store", store, "--out", out)
    _assert_usage_error(res, "not ")
    assert "matrix:" not in res.stdout  # nothing started


def test_stacks_json_lists_the_catalog(tmp_path: Path) -> None:
    store = tmp_path / "store"
    res = run("stacks", "--json", "--store", store)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    catalog = load_catalog()
    assert [r["id"] for r in rows] == [s.id for s in catalog]
    for row, stack in zip(rows, catalog, strict=True):
        assert {k: v for k, v in row.items() if k != "interpreter_found"} == stack.to_dict()
        assert isinstance(row["interpreter_found"], bool)
    _assert_store_untouched(store)


def test_stacks_json_with_a_custom_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "c.toml"
    catalog.write_text("[[stack]]\nid = 'zz1'\npython = '3.98'\nrequirements = ['x==1']\n"
                       "[[stack]]\nid = 'zz0'\npython = '3.98'\nrequirements = ['x==2']\n")
    res = run("stacks", "--json", "--catalog", catalog,
              env={"PYENV_ROOT": str(tmp_path / "no-pyenv")})
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["id"], r["interpreter_found"]) for r in rows] == [("zz0", False), ("zz1", False)]


def _store_with_records(root: Path) -> Store:
    store = Store(root)
    env = {"python": "3.11.7", "tensorflow": "2.15.1", "keras": "2.15.0", "backend": "tensorflow"}
    store.write(Record(record_type="env", cell_id="env:tf2.15", stack="tf2.15",
                       outcome=Outcome.OK, env=env))
    for scenario in ("dense", "functional"):
        store.write(Record(record_type="save", cell_id=save_cell_id(scenario, "h5", "tf2.15"),
                           stack="tf2.15", outcome=Outcome.OK, saver="tf2.15",
                           scenario=scenario, format="h5", env=env))
    store.write(Record(record_type="load",
                       cell_id=load_cell_id("dense", "h5", "tf2.15", "tf2.15", "default"),
                       stack="tf2.15", outcome=Outcome.OK, saver="tf2.15", loader="tf2.15",
                       scenario="dense", format="h5", variant="default", max_abs_diff=0.0,
                       env=env, saver_env=env))
    store.write(Record(record_type="load",
                       cell_id=load_cell_id("functional", "h5", "tf2.15", "tf2.15", "default"),
                       stack="tf2.15", outcome=Outcome.LOAD_ERROR, saver="tf2.15",
                       loader="tf2.15", scenario="functional", format="h5", variant="default",
                       error=ErrorInfo("builtins.ValueError", "bad input shape"),
                       env=env, saver_env=env))
    return store


def test_report_from_a_store(tmp_path: Path) -> None:
    store = _store_with_records(tmp_path / "store")
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    out = tmp_path / "out"
    res = run("report", "--store", store.root, "--out", out)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == [
        "CHANGES.md", "README.md", "data", "errors.md", "grids", "heatmap.svg", "heatmaps", "index.html",
        "matrix.md", "results.csv.gz", "results.json.gz", "site"]
    outcomes = {cid: c.outcome for cid, c in gate.load_results(out / gate.RESULTS_JSON).items()}
    assert outcomes == {"dense:h5:tf2.15->tf2.15:default": "ok",
                        "functional:h5:tf2.15->tf2.15:default": "load_error"}
    [line] = [line for line in res.stdout.splitlines() if line.startswith("report: 2 cells")]
    # one short line: where the report went, and (once) that it is not the published table
    assert line.startswith(f"report: 2 cells -> {out}/ (NOT the published table; a subset, "), line
    assert line.lower().count("published table") == 1 and len(line) - len(str(out)) < 160, line
    # the report only reads the store; it holds the store's lock while it does (its lock file)
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == sorted(
        [*before, Path(".running.lock")])


def test_report_names_a_corrupt_record(tmp_path: Path) -> None:
    """A newer-schema record of the selection stops the report (this runner would drop what
    it cannot read); one of a stack outside the selection is not even read."""
    store = _store_with_records(tmp_path / "store")
    outside = store.env_record_path("broken")
    outside.write_text('{"schema_version": 99}')
    res = run("report", "--store", store.root, "--out", tmp_path / "out0")
    assert res.returncode == 0, res.stderr
    assert "report: 1 record file(s) outside the selection were not read" in res.stdout
    bad = store.load_record_path("tf2.15", "tf2.15", "dense", "keras", "default")
    bad.write_text('{"schema_version": 99}')
    res = run("report", "--store", store.root, "--out", tmp_path / "out")
    line = _assert_usage_error(res, str(bad), "newer")
    assert "schema_version 99" in line
    assert not (tmp_path / "out").exists()


def test_report_of_a_store_without_records_touches_nothing(tmp_path: Path) -> None:
    store = _store_with_records(tmp_path / "store")
    out = tmp_path / "out"
    assert run("report", "--store", store.root, "--out", out).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    typo = tmp_path / "stroe"
    res = run("report", "--store", typo, "--out", out)
    _assert_usage_error(res, str(typo), "holds no records", "no such directory")
    assert res.stdout == "" and not typo.exists()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_report_waits_for_or_refuses_a_run_holding_the_store(tmp_path: Path) -> None:
    store = _store_with_records(tmp_path / "store")
    with store.running():
        res = run("report", "--store", store.root, "--out", tmp_path / "out")
        _assert_usage_error(res, f"in use by pid {os.getpid()}", "--wait")
        assert not (tmp_path / "out").exists()
        waiting = subprocess.Popen([sys.executable, "-m", "runner", "report", "--store", str(store.root),
                                    "--out", str(tmp_path / "out"), "--wait"], cwd=REPO,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert waiting.poll() is None  # queued
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "report: 2 cells" in out


def test_sigterm_is_handled_like_ctrl_c_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from runner import cli

    before = signal.getsignal(signal.SIGTERM)

    def stop(args: object) -> int:
        assert signal.getsignal(signal.SIGTERM) is cli._on_sigterm
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:  # the run's cleanup (killing workers) ...
            os.kill(os.getpid(), signal.SIGTERM)  # ... is not cut short by a second SIGTERM
            time.sleep(0.1)
            raise
        return 0

    monkeypatch.setattr(cli, "_cmd_show", stop)
    assert cli.main(["show", "x"]) == cli.EXIT_TERMINATED
    assert cli._SIGTERMS == [signal.SIGTERM, signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) == before


def _json_docs(text: str) -> list[dict[str, object]]:
    decoder = json.JSONDecoder()
    docs, i = [], 0
    text = text.strip()
    while i < len(text):
        obj, i = decoder.raw_decode(text, i)
        docs.append(obj)
        while i < len(text) and text[i].isspace():
            i += 1
    return docs


def test_show_prints_matching_records(tmp_path: Path) -> None:
    store = _store_with_records(tmp_path / "store")
    res = run("show", "--store", store.root, "functional:h5")
    assert res.returncode == 0, res.stderr
    docs = {str(d["cell_id"]): d for d in _json_docs(res.stdout)}
    assert sorted(docs) == ["functional:h5:tf2.15", "functional:h5:tf2.15->tf2.15:default"]
    assert docs["functional:h5:tf2.15"]["outcome"] == "ok"
    load = Record.from_dict(docs["functional:h5:tf2.15->tf2.15:default"])
    assert load.outcome is Outcome.LOAD_ERROR
    assert load.error == ErrorInfo("builtins.ValueError", "bad input shape")

    # a query starting with "-" needs "--" (argparse would take it for an option)
    res = run("show", "--store", store.root, "--", "->tf2.15")
    assert res.returncode == 0, res.stderr
    assert len(_json_docs(res.stdout)) == 2


def test_show_without_a_match(tmp_path: Path) -> None:
    store = _store_with_records(tmp_path / "store")
    res = run("show", "--store", store.root, "no-such-cell")
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.splitlines() == ["runner: no recorded cell id contains 'no-such-cell'"]


def test_show_on_a_missing_store_writes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    res = run("show", "--store", store, "dense")
    assert res.returncode == 1
    _assert_store_untouched(store)



def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`python -m runner stacks | head -1` where head has gone: no 'runner: error: Broken
    pipe' and no traceback at exit; exit 141, as any command killed by SIGPIPE. Twin: with
    its reader there, the same command prints the catalog and exits 0."""
    repo = Path(__file__).resolve().parent.parent
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: EPIPE, every time
    try:
        proc = subprocess.run([sys.executable, "-m", "runner", "stacks"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=repo, check=False)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, ""), proc.stderr
    whole = subprocess.run([sys.executable, "-m", "runner", "stacks"], capture_output=True, text=True, cwd=repo,
                           check=False)
    assert whole.returncode == 0 and whole.stdout.count("\n") > 10
