"""The report: one row per cell, derived outcomes, the written files, golden tables.

A small store is built from hand-made records (three stacks, one of them unavailable;
saves and loads covering every interesting outcome) with a scenario directory of two
hand-made scenarios, so nothing here depends on the shipped scenarios or catalog.

Golden files: ``tests/data/golden/matrix.md`` and ``tests/data/golden/results.csv`` are
the exact expected output for that store. After an intended change to the report,
regenerate them with::

    UPDATE_GOLDEN=1 python3 -m pytest -q tests/test_report.py

then review the diff (``git diff tests/data/golden``) before committing it.
"""

from __future__ import annotations

import csv
import difflib
import html
import html.parser
import io
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from runner import gate, report
from runner.records import ErrorInfo, Outcome, Record, Store, load_cell_id, save_cell_id

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
REPORT_FILES = ("results.csv", "results.json", "matrix.md", "index.html", "errors.md")

ENVS = {
    "tf2.4": {"python": "3.8.18", "tensorflow": "2.4.4", "keras": "2.4.0",
              "backend": "tensorflow", "keras_api": "tf.keras", "env_vars": {}},
    "tf2.15": {"python": "3.11.7", "tensorflow": "2.15.1", "keras": "2.15.0",
               "backend": "tensorflow", "keras_api": "tf.keras",
               "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}},
}

SCENARIO_DENSE = '''"""Plain MLP (test fixture)."""

ATOL = 1e-5


def build(keras):
    return None


def inputs(np):
    return None
'''

SCENARIO_CUSTOM = '''"""Custom layer (test fixture)."""

LOAD_VARIANTS = ("default", "custom_objects")


def build(keras):
    return None


def inputs(np):
    return None


def custom_objects(keras):
    return {}
'''


class Paths:
    """The machine paths that must never reach a published file."""

    def __init__(self, root: Path) -> None:
        self.store = root / "store"
        self.home = root / "home"
        self.pyenv = root / "pyenv-root"


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    p = Paths(tmp_path)
    monkeypatch.setenv("HOME", str(p.home))
    monkeypatch.setenv("PYENV_ROOT", str(p.pyenv))
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    return p


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "dense.py").write_text(SCENARIO_DENSE)
    (d / "custom.py").write_text(SCENARIO_CUSTOM)
    (d / "_helper.py").write_text("X = 1\n")
    return d


def _open_error(p: Paths, saver: str, scenario: str) -> ErrorInfo:
    art = p.store / "artifacts" / saver / scenario / "h5"
    return ErrorInfo(
        "builtins.OSError",
        f"Unable to open file '{art}/model.h5' (log {p.store}/runs/load-tf2.4/worker.log, "
        f"home {p.home}/.keras, python {p.pyenv}/versions/3.8.18/bin/python)\nsecond line",
        f'Traceback (most recent call last):\n  File "{p.pyenv}/versions/3.8.18/lib/h5py.py", '
        f"line 1\nOSError: Unable to open file '{art}/model.h5'\n")


def _save(saver: str, scenario: str, fmt: str, outcome: Outcome,
          error: ErrorInfo | None = None) -> Record:
    return Record(record_type="save", cell_id=save_cell_id(scenario, fmt, saver), stack=saver,
                  outcome=outcome, key=f"key-{saver}-{scenario}-{fmt}", saver=saver,
                  scenario=scenario, format=fmt, phase="save", error=error, duration_s=1.5,
                  env=ENVS.get(saver, {}), details={"written_as": _written_as(saver, fmt)})


def _written_as(saver: str, fmt: str) -> str:
    """What the worker's magic-byte sniff reports; TF <= 2.12 writes HDF5 for '.keras'."""
    if fmt == "keras":
        return "h5" if saver == "tf2.4" else "keras_v3"
    return fmt


def _load(saver: str, loader: str, scenario: str, variant: str, outcome: Outcome,
          error: ErrorInfo | None = None, diff: float | None = None) -> Record:
    return Record(record_type="load", cell_id=load_cell_id(scenario, "h5", saver, loader, variant),
                  stack=loader, outcome=outcome, key="k", saver=saver, loader=loader,
                  scenario=scenario, format="h5", variant=variant,
                  phase=None if outcome is Outcome.OK else "load", error=error,
                  max_abs_diff=diff, duration_s=0.25, env=ENVS.get(loader, {}),
                  saver_env=ENVS.get(saver, {}))


def make_records(p: Paths) -> list[Record]:
    unavailable = ErrorInfo(
        "runner.EnvUnavailable",
        f"no Python 3.12 interpreter (looked in {p.pyenv}/versions and {p.home}/.local/bin)\n"
        "install it with pyenv")
    return [
        Record(record_type="env", cell_id="env:tf2.4", stack="tf2.4", outcome=Outcome.OK,
               env=ENVS["tf2.4"], duration_s=30.0),
        Record(record_type="env", cell_id="env:tf2.15", stack="tf2.15", outcome=Outcome.OK,
               env=ENVS["tf2.15"], duration_s=40.0),
        Record(record_type="env", cell_id="env:tf2.18", stack="tf2.18",
               outcome=Outcome.ENV_UNAVAILABLE, phase="import", error=unavailable,
               duration_s=0.5),
        # saves
        _save("tf2.4", "dense", "h5", Outcome.OK),
        _save("tf2.15", "dense", "h5", Outcome.OK),
        _save("tf2.18", "dense", "h5", Outcome.ENV_UNAVAILABLE, unavailable),
        _save("tf2.4", "dense", "keras", Outcome.NOT_APPLICABLE,
              ErrorInfo("compat.NotApplicable", "the .keras format needs Keras >= 2.13")),
        _save("tf2.15", "dense", "keras", Outcome.SAVE_ERROR,
              ErrorInfo("builtins.ValueError", "Unable to serialize | pipe in message")),
        _save("tf2.18", "dense", "keras", Outcome.ENV_UNAVAILABLE, unavailable),
        _save("tf2.4", "custom", "h5", Outcome.OK),
        _save("tf2.15", "custom", "h5", Outcome.OK),
        # loads
        _load("tf2.4", "tf2.4", "dense", "default", Outcome.OK, diff=0.0),
        _load("tf2.4", "tf2.15", "dense", "default", Outcome.OK, diff=1e-7),
        _load("tf2.15", "tf2.4", "dense", "default", Outcome.LOAD_ERROR,
              _open_error(p, "tf2.15", "dense")),
        _load("tf2.15", "tf2.15", "dense", "default", Outcome.MISMATCH, diff=0.5),
        _load("tf2.4", "tf2.4", "custom", "default", Outcome.CRASH,
              ErrorInfo("runner.crash", "worker died with signal 11 (SIGSEGV)")),
        _load("tf2.4", "tf2.15", "custom", "default", Outcome.TIMEOUT,
              ErrorInfo("runner.timeout", "cell exceeded 300 s")),
        _load("tf2.15", "tf2.15", "custom", "default", Outcome.OK, diff=0.0),
        _load("tf2.15", "tf2.18", "custom", "default", Outcome.ENV_UNAVAILABLE, unavailable),
        _load("tf2.4", "tf2.4", "custom", "custom_objects", Outcome.LOAD_ERROR,
              _open_error(p, "tf2.4", "custom")),
        _load("tf2.4", "tf2.15", "custom", "custom_objects", Outcome.OK, diff=0.0),
    ]


def make_store(p: Paths, reverse: bool = False) -> Store:
    store = Store(p.store)
    recs = make_records(p)
    for rec in reversed(recs) if reverse else recs:
        store.write(rec)
    return store


# (scenario, format, variant, saver) -> outcome per loader tf2.4, tf2.15, tf2.18
EXPECTED = {
    ("dense", "h5", "default", "tf2.4"): ("ok", "ok", "env_unavailable"),
    ("dense", "h5", "default", "tf2.15"): ("load_error", "mismatch", "env_unavailable"),
    ("dense", "h5", "default", "tf2.18"): ("env_unavailable",) * 3,
    ("dense", "keras", "default", "tf2.4"): ("not_applicable",) * 3,
    ("dense", "keras", "default", "tf2.15"): ("save_error",) * 3,
    ("dense", "keras", "default", "tf2.18"): ("env_unavailable",) * 3,
    ("custom", "h5", "default", "tf2.4"): ("crash", "timeout", "env_unavailable"),
    ("custom", "h5", "default", "tf2.15"): ("not_run", "ok", "env_unavailable"),
    ("custom", "h5", "custom_objects", "tf2.4"): ("load_error", "ok", "env_unavailable"),
    ("custom", "h5", "custom_objects", "tf2.15"): ("not_run", "not_run", "env_unavailable"),
}
LOADERS = ("tf2.4", "tf2.15", "tf2.18")


def _frame(p: Paths, **kw: object) -> pd.DataFrame:
    store = make_store(p)
    return report.build_frame(store.iter_records(), report._Scrubber(store), **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ build_frame


def test_one_row_per_cell_with_derived_outcomes(paths: Paths) -> None:
    df = _frame(paths, scenarios={"custom": report.ScenarioInfo(("default", "custom_objects"))})
    assert list(df.columns) == report.COLUMNS
    assert len(df) == sum(len(v) for v in EXPECTED.values()) == 30
    keys = list(zip(df.scenario, df.format, df.variant, df.saver, df.loader, strict=True))
    assert len(set(keys)) == len(keys), "one row per (saver artifact, loader, variant)"
    got = dict(zip(keys, df.outcome, strict=True))
    want = {(*k, lo): o for k, outs in EXPECTED.items() for lo, o in zip(LOADERS, outs, strict=True)}
    assert got == want
    assert set(df.cell_id) == {load_cell_id(s, f, sv, lo, v) for (s, f, v, sv, lo) in want}


def test_rows_say_where_the_outcome_came_from(paths: Paths) -> None:
    df = _frame(paths).set_index("cell_id")
    assert df.loc["dense:h5:tf2.15->tf2.4:default", "source"] == "load"
    assert df.loc["dense:keras:tf2.15->tf2.4:default", "source"] == "save"
    assert df.loc["dense:keras:tf2.15->tf2.4:default", "error_message"] == \
        "Unable to serialize | pipe in message"
    assert df.loc["dense:h5:tf2.4->tf2.18:default", "source"] == "env"
    assert df.loc["dense:h5:tf2.4->tf2.18:default", "error_type"] == "runner.EnvUnavailable"
    assert df.loc["dense:h5:tf2.18->tf2.4:default", "source"] == "save"
    assert df.loc["custom:h5:tf2.15->tf2.18:default", "source"] == "load"
    nr = df.loc["custom:h5:tf2.15->tf2.4:default"]
    assert (nr.outcome, nr.source) == ("not_run", "none")
    assert nr.saver_tensorflow == "2.15.1" and nr.loader_tensorflow == "2.4.4"
    ld = df.loc["dense:h5:tf2.4->tf2.15:default"]
    assert ld.saver_python == "3.8.18" and ld.loader_python == "3.11.7"
    assert ld.max_abs_diff == pytest.approx(1e-7)
    assert df.loc["dense:h5:tf2.15->tf2.15:default", "max_abs_diff"] == 0.5


def test_rows_are_in_natural_order(paths: Paths) -> None:
    df = _frame(paths)
    dense_h5 = df[(df.scenario == "dense") & (df.format == "h5")]
    assert list(zip(dense_h5.saver, dense_h5.loader, strict=True)) == [
        (s, lo) for s in LOADERS for lo in LOADERS]
    assert list(dict.fromkeys(zip(df.scenario, df.format, df.variant, strict=True))) == [
        ("custom", "h5", "default"), ("custom", "h5", "custom_objects"),
        ("dense", "h5", "default"), ("dense", "keras", "default")]


def test_variants_come_from_records_and_scenarios(paths: Paths) -> None:
    # custom_objects is known from the load records even without scenario metadata
    df = _frame(paths)
    assert len(df) == 30
    # a declared variant without any record yet shows as not_run (or the save/env reason)
    df = _frame(paths, scenarios={"dense": report.ScenarioInfo(("default", "custom_objects"))})
    extra = df[(df.scenario == "dense") & (df.variant == "custom_objects")]
    assert len(extra) == 18
    sel = extra[(extra.saver == "tf2.4") & (extra.format == "h5")]
    assert list(sel.outcome) == ["not_run", "not_run", "env_unavailable"]
    assert list(sel.source) == ["none", "none", "env"]


def test_stack_ids_filter(paths: Paths) -> None:
    df = _frame(paths, stack_ids=["tf2.4", "tf2.15"])
    assert set(df.saver) | set(df.loader) == {"tf2.4", "tf2.15"}
    assert len(df) == 16


def test_empty_store(tmp_path: Path, scenario_dir: Path) -> None:
    store = Store(tmp_path / "empty")
    df = report.write_reports(store, tmp_path / "out", scenario_dir)
    assert df.empty
    assert all((tmp_path / "out" / f).is_file() for f in REPORT_FILES)
    assert "(no cells)" in (tmp_path / "out" / "matrix.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------------- the files


def _write(p: Paths, scenario_dir: Path, out: Path, reverse: bool = False) -> pd.DataFrame:
    return report.write_reports(make_store(p, reverse), out, scenario_dir)


def test_write_reports_files(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    df = _write(paths, scenario_dir, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)  # no temp files
    first, body = (out / "results.csv").read_text(encoding="utf-8").split("\n", 1)
    assert first.startswith("# Selection: a subset, NOT the published table: ")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == len(df) == 30
    assert list(rows[0]) == report.CSV_COLUMNS
    # the CSV keeps a message's first line only; results.json the whole (bounded) message
    assert {r["error_message"] for r in rows if r["cell_id"] == "custom:h5:tf2.4->tf2.4:custom_objects"} \
        == {"Unable to open file '<artifact>/model.h5' (log <store>/runs/load-tf2.4/worker.log, home "
            "~/.keras, python <pyenv>/versions/3.8.18/bin/python)"}
    text = (out / "results.json").read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in results.json"))
    assert data["schema_version"] == 2 and data["columns"] == report.JSON_COLUMNS
    assert data["selection"] == first[2:]
    for name in ("matrix.md", "errors.md"):
        assert first[2:] in (out / name).read_text(encoding="utf-8")[:1000], name
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.index(html.escape(first[2:])) < page.index("<table")
    assert len(data["cells"]) == 30
    assert text.split("\"cells\": [")[1].count("\n  [") == 30  # one cell per line: diffs show changed cells
    assert data["stacks"]["tf2.15"]["tensorflow"] == "2.15.1"
    cols = data["columns"]
    crash = next(dict(zip(cols, c, strict=True)) for c in data["cells"] if c[cols.index("outcome")] == "crash")
    assert crash["max_abs_diff"] is None  # NaN is written as null
    assert data["errors"][crash["error_id"]][:2] == ["runner.crash", "worker died with signal 11 (SIGSEGV)"]
    # each distinct error once
    assert len(data["errors"]) == len({tuple(e) for e in data["errors"]})
    cells = gate.load_results(out / "results.json")  # the gate reads it back
    assert cells["custom:h5:tf2.4->tf2.4:default"].message == "worker died with signal 11 (SIGSEGV)"
    md = (out / "matrix.md").read_text(encoding="utf-8")
    for title in ("## `custom` · `h5`", "## `custom` · `h5` · load variant `custom_objects`",
                  "## `dense` · `h5`", "## `dense` · `keras`"):
        assert f"\n{title}\n" in md
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<td class='c ") == 30


def test_golden_files(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    # The golden matrix.md is the *correct* table: a "|" inside a cell is escaped as "\|"
    # (see test_markdown_tables_keep_their_columns), e.g. in the legend's "max \|diff\|".
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    update = os.environ.get("UPDATE_GOLDEN") == "1"
    for name in ("matrix.md", "results.csv", "errors.md"):
        got = (out / name).read_text(encoding="utf-8")
        golden = GOLDEN / name
        if update:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(got, encoding="utf-8")
        assert golden.is_file(), f"{golden} missing: run with UPDATE_GOLDEN=1 to create it"
        want = golden.read_text(encoding="utf-8")
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            f"golden/{name}", f"generated/{name}"))
        assert got == want, (f"{name} differs from the golden file (if intended, rerun with "
                             f"UPDATE_GOLDEN=1):\n{diff}")


def test_reports_are_deterministic(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    _write(paths, scenario_dir, tmp_path / "a")
    _write(paths, scenario_dir, tmp_path / "a")  # rewriting in place changes nothing either
    # a second store at another path, written in the opposite order
    other = Paths(tmp_path / "elsewhere" / "deeper")
    other.home, other.pyenv = paths.home, paths.pyenv
    _write(other, scenario_dir, tmp_path / "b", reverse=True)
    _write(paths, scenario_dir, tmp_path / "c")
    for name in REPORT_FILES:
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes(), name
        assert a == (tmp_path / "c" / name).read_bytes(), name


def test_no_machine_paths_leak(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    df = _write(paths, scenario_dir, out).set_index("cell_id")
    repo = str(Path(report.__file__).resolve().parent.parent)
    for name in REPORT_FILES:
        text = (out / name).read_text(encoding="utf-8")
        for leak in (str(tmp_path), str(paths.store), str(paths.home), str(paths.pyenv), repo):
            assert leak not in text, f"{leak} in {name}"
    msg = df.loc["dense:h5:tf2.15->tf2.4:default", "error_message"]
    assert msg == ("Unable to open file '<artifact>/model.h5' (log "
                   "<store>/runs/load-tf2.4/worker.log, home ~/.keras, python "
                   "<pyenv>/versions/3.8.18/bin/python)\nsecond line")
    tb = df.loc["dense:h5:tf2.15->tf2.4:default", "traceback_tail"]
    assert '"<pyenv>/versions/3.8.18/lib/h5py.py"' in tb and "'<artifact>/model.h5'" in tb
    # one error through different artifacts is one footnote per category, not one per saver
    # (tf2.15's file in tf2.4 is newer_minor_file, tf2.4's own file is other)
    md = (out / "matrix.md").read_text(encoding="utf-8")
    assert md.count("`builtins.OSError`: Unable to open file '<artifact>/model.h5'") == 2
    assert md.count("**other** · `builtins.OSError`: Unable to open file '<artifact>/model.h5'") == 1
    assert "unavailable: no Python 3.12 interpreter (looked in <pyenv>/versions and " \
           "~/.local/bin)" in md


def test_scrubber_with_the_real_environment(tmp_path: Path) -> None:
    store = Store(tmp_path / "st")
    scrub = report._Scrubber(store)
    home = str(Path.home())
    text = f"{store.root}/records/x.json {store.root}/artifacts/a/b/c/model.keras"
    assert scrub(text) == "<store>/records/x.json <artifact>/model.keras"
    if len(home) > 1 and not str(store.root).startswith(home):
        assert scrub(f"{home}/.cache/thing") == "~/.cache/thing"
    assert scrub(None) == ""


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action", "poster"):
                self.refs.append((tag, name, value or ""))


def test_index_html_is_self_contained(paths: Paths, scenario_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(paths, scenario_dir, out)
    page = (out / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    external = [r for r in parser.refs if re.match(r"\s*(https?:)?//", r[2], re.I)]
    assert external == []
    assert not [r for r in parser.refs if r[0] in ("script", "link", "img", "iframe")]
    assert "link" not in parser.tags
    assert not re.search(r"@import|url\(\s*['\"]?\s*(https?:)?//", page, re.I)
    assert "<script>" in page and "<style>" in page  # inline, not fetched


def test_index_html_escapes_record_text(tmp_path: Path, scenario_dir: Path) -> None:
    """Record text is data: it must neither add markup nor end or derail the script.

    Inside ``<script>``, the HTML tokenizer ends the element at ``</script`` and, after
    ``<!--``, treats ``<script`` as entering a "double escaped" state in which the real
    closing ``</script>`` no longer ends the element. So the embedded JSON must contain
    none of the three.
    """
    store = Store(tmp_path / "s")
    nasty = "<!--<script>alert('x')</SCRIPT><b>bold</b> & \"q\""  # no closing -->
    store.write(Record(record_type="env", cell_id="env:a", stack="a", outcome=Outcome.OK,
                       env=ENVS["tf2.4"]))
    store.write(_save("a", "dense", "h5", Outcome.OK))
    store.write(_load("a", "a", "dense", "default", Outcome.LOAD_ERROR,
                      ErrorInfo("x.Err", nasty, nasty)))
    report.write_reports(store, tmp_path / "out", scenario_dir)
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    head, sep, rest = page.partition("<script>")
    assert sep, "index.html has an inline script"
    body, sep, tail = rest.rpartition("</script>")
    assert sep and tail.strip() == "</body></html>"
    # outside the script, the text appears only HTML-escaped
    assert nasty not in head
    assert "&lt;!--&lt;script&gt;alert(&#x27;x&#x27;)&lt;/SCRIPT&gt;" in head
    # inside the script, nothing the tokenizer would act on
    for hazard in ("</script", "<!--", "<script"):
        assert hazard not in body.lower(), f"{hazard!r} inside the inline script"
    # and the data still round-trips to the original text
    m = re.search(r"^const E=(.*);$", body, re.M)
    assert m is not None
    assert json.loads(m.group(1))["1"]["message"] == nasty


def _table_blocks(md: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def test_markdown_tables_keep_their_columns(tmp_path: Path, scenario_dir: Path) -> None:
    """In GitHub Markdown an unescaped ``|`` inside a cell (even in backticks) starts a
    new cell, so every row must have as many unescaped pipes as the header."""
    store = Store(tmp_path / "s")
    store.write(Record(record_type="env", cell_id="env:a", stack="a", outcome=Outcome.OK,
                       env=ENVS["tf2.4"]))
    store.write(Record(record_type="env", cell_id="env:b", stack="b",
                       outcome=Outcome.ENV_UNAVAILABLE,
                       error=ErrorInfo("runner.EnvUnavailable", "pip failed: a | b")))
    store.write(_save("a", "dense", "h5", Outcome.OK))
    store.write(_load("a", "a", "dense", "default", Outcome.MISMATCH, diff=0.5))
    report.write_reports(store, tmp_path / "out", scenario_dir)
    md = (tmp_path / "out" / "matrix.md").read_text(encoding="utf-8")
    blocks = _table_blocks(md)
    assert len(blocks) >= 4  # stacks, legend, summary, one grid
    broken = []
    for block in blocks:
        header = len(re.findall(r"(?<!\\)\|", block[0]))
        broken += [line for line in block[1:] if len(re.findall(r"(?<!\\)\|", line)) != header]
    assert broken == []


def test_terminal_summary(paths: Paths) -> None:
    text = report.terminal_summary(_frame(paths))
    lines = text.splitlines()
    header = lines[0].split()
    assert header[0] == "loader"
    assert header[1:] == [o for o in report.SYMBOLS if o in set(EXPECTED_OUTCOMES)]
    body = {ln.split()[0]: [int(x) for x in ln.split()[1:]] for ln in lines[2:]}
    assert list(body) == ["tf2.4", "tf2.15", "tf2.18", "all"]
    assert sum(body["all"]) == 30
    assert [sum(v) for k, v in body.items() if k != "all"] == [10, 10, 10]


EXPECTED_OUTCOMES = {o for outs in EXPECTED.values() for o in outs}


def test_pair_overview_rounds_down_and_skips_impossible_cells() -> None:
    rows = ([{"saver": "a", "loader": "b", "outcome": "ok"}] * 199
            + [{"saver": "a", "loader": "b", "outcome": "load_error"}]
            + [{"saver": "b", "loader": "a", "outcome": "not_applicable"}] * 3
            + [{"saver": "b", "loader": "b", "outcome": "ok"}] * 2
            + [{"saver": "a", "loader": "a", "outcome": "save_error"}])
    table = report._pair_overview(pd.DataFrame(rows), "github").splitlines()
    assert [c.strip() for c in table[2].strip("|").split("|")] == ["**a**", "0", "99"]  # 199/200
    assert [c.strip() for c in table[3].strip("|").split("|")] == ["**b**", "–", "100"]
