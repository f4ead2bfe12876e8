"""``bisect``: the first release between two adjacent catalog stacks where a cell's outcome changes.

Fast tier: the search itself (pure), the catalog's lines, and end to end on fake releases —
wheels of ``compat-fake-release`` (one per version, each carrying the fake Keras's
behaviour of that release) in a local folder that uv installs from, so the candidate
stacks are real venvs built by the runner's env builder and their cells real workers.
Real tier: a Keras patch flip found for real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import e2e
import pytest

from runner import bisect, bisect_results, gate
from runner.records import Outcome, Record, Store, save_cell_id
from runner.stacks import load_catalog

# ------------------------------------------------------------------------------ the search
LINE = ["3.5.0", "3.6.0", "3.7.0", "3.7.1", "3.8.0", "3.9.0"]


def _flip(outcomes: list[str | None], releases: list[str] | None = None) -> bisect.Flip:
    """A flip whose release i has ``outcomes[i]`` (ends included)."""
    stack = load_catalog()[0]
    rec = Record(record_type="load", cell_id="x", stack=stack.id, outcome=Outcome(outcomes[0]))
    releases = releases or [f"1.{i}.0" for i in range(len(outcomes))]
    return bisect.Flip("loader", stack, stack, rec, rec, str(outcomes[0]), str(outcomes[-1]), "keras", releases)


def _probe_table(table: Mapping[int, list[str | None]], asked: list[list[tuple[int, int]]]) -> Any:
    def probe(asks: list[tuple[bisect.Flip, int]]) -> list[str | None]:
        asked.append([(id(f), i) for f, i in asks])
        return [table[id(f)][i] for f, i in asks]
    return probe


@pytest.mark.parametrize("first_bad", range(1, 10))
def test_the_search_finds_the_first_changed_release_in_log_steps(first_bad: int) -> None:
    outcomes: list[str | None] = ["ok"] * first_bad + ["load_error"] * (10 - first_bad)
    flip = _flip(outcomes)
    asked: list[list[tuple[int, int]]] = []
    rounds = bisect.search([flip], _probe_table({id(flip): outcomes}, asked))
    result = flip.result(0.0)
    assert result["first_changed"] == f"1.{first_bad}.0" and result["last_as_before"] == f"1.{first_bad - 1}.0"
    assert rounds == len(asked) <= 4  # 8 releases between the ends: at most ceil(log2(9)) probes
    assert result["unbuilt_between"] == []


@pytest.mark.parametrize("between", [0, 1, 2, 3, 4, 7, 8, 9, 16, 38])
def test_max_probes_is_the_searchs_worst_case_exactly(between: int) -> None:
    """The dry run's bound: no position of the change needs more probes, and one needs all."""
    worst = 0
    for first_bad in range(1, between + 2):
        outcomes: list[str | None] = ["ok"] * first_bad + ["load_error"] * (between + 2 - first_bad)
        flip = _flip(outcomes)
        asked: list[list[tuple[int, int]]] = []
        bisect.search([flip], _probe_table({id(flip): outcomes}, asked))
        assert flip.result(0.0)["first_changed"] == f"1.{first_bad}.0"
        worst = max(worst, len(asked))
    assert worst == bisect.max_probes(_flip(["ok"] * (between + 2)))


def test_a_release_without_outcome_is_skipped_and_named() -> None:
    outcomes: list[str | None] = ["ok", "ok", None, "load_error", "load_error"]
    flip = _flip(outcomes)
    bisect.search([flip], _probe_table({id(flip): outcomes}, []))
    result = flip.result(0.0)
    # 1.2.0 could not be built: the change is somewhere in (1.1.0, 1.3.0], and the result says so
    assert (result["last_as_before"], result["first_changed"]) == ("1.1.0", "1.3.0")
    assert result["unbuilt_between"] == ["1.2.0"]


def test_flips_are_searched_together_in_rounds() -> None:
    a_out: list[str | None] = ["ok", "ok", "ok", "mismatch", "mismatch", "mismatch"]
    b_out: list[str | None] = ["load_error", "ok", "ok", "ok", "ok", "ok"]
    a, b = _flip(a_out), _flip(b_out)
    asked: list[list[tuple[int, int]]] = []
    rounds = bisect.search([a, b], _probe_table({id(a): a_out, id(b): b_out}, asked))
    assert rounds == 2 and all(len(r) == 2 for r in asked)  # one round asks both flips
    assert (a.result(0)["first_changed"], b.result(0)["first_changed"]) == ("1.3.0", "1.1.0")


def test_adjacent_stacks_are_neighbours_on_one_line_of_the_catalog() -> None:
    cat = load_catalog()
    by = {s.id: s for s in cat}
    jax = next(line for line in bisect.lines(cat) if by["keras3.12-jax"] in line)
    assert [s.id for s in jax][:3] == ["keras3.0-jax", "keras3.1-jax", "keras3.2-jax"]
    assert by["keras3.0-jax0.4"] not in jax  # a remedy sibling is on no line
    assert bisect.adjacent_pair(cat, by["keras3.12-jax"], by["keras3.10-jax"]) == (by["keras3.10-jax"],
                                                                                     by["keras3.12-jax"])
    for a, b, why in [("keras3.8-jax", "keras3.12-jax", "not adjacent"), ("tf2.20", "tf2.21", "keras"),
                      ("keras3.15-jax", "keras3.15-torch", "not on one line"),
                      ("keras3.0-jax0.4", "keras3.1-jax", "remedy sibling")]:
        with pytest.raises(bisect.BisectError, match=why):
            bisect.adjacent_pair(cat, by[a], by[b])


def test_releases_come_from_the_folder_or_the_index_final_ones_only(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("keras-3.11.2-py3-none-any.whl", "keras-3.11.3-py3-none-any.whl", "keras-3.12.0rc1-py3-none-any.whl",
                 "keras-3.9.0.tar.gz", "other-3.10.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv(bisect.RELEASES_ENV, str(tmp_path))
    bisect.list_releases.cache_clear()
    try:
        assert bisect.list_releases("keras") == ("3.9.0", "3.11.2", "3.11.3")
    finally:
        bisect.list_releases.cache_clear()
    assert bisect_results.notes_url("keras", "3.11.3") == "https://github.com/keras-team/keras/releases/tag/v3.11.3"
    assert bisect_results.notes_url("tensorflow-cpu", "2.15.1").endswith("tensorflow/releases/tag/v2.15.1")


def test_the_other_tests_fake_catalog_has_no_line_so_their_matrix_runs_bisect_nothing(tmp_path: Path) -> None:
    assert bisect.lines(load_catalog(e2e.write_catalog(tmp_path / "catalog.toml"))) == []


def test_a_result_annotates_the_table_only_while_both_cells_are_as_it_found_them(tmp_path: Path) -> None:
    older = {"stack": "a", "cell_id": "s:h5:x->a:default", "release": "3.10.0", "outcome": "ok", "key": "k1"}
    newer = {"stack": "b", "cell_id": "s:h5:x->b:default", "release": "3.12.4", "outcome": "load_error", "key": "k2"}
    result = {"version": 1, "side": "loader", "package": "keras", "older": older, "newer": newer,
              "candidates": ["3.11.2", "3.11.3"], "steps": [], "last_as_before": "3.11.2",
              "first_changed": "3.11.3", "unbuilt_between": [], "wall_s": 1.0}
    path = bisect_results.result_path(tmp_path, "loader", older["cell_id"], newer["cell_id"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(result))
    table = {older["cell_id"]: "ok", newer["cell_id"]: "load_error"}
    assert bisect_results.table_annotations(tmp_path, table) == {newer["cell_id"]: {
        "first_bad_release": "keras 3.11.3", "last_good_release": "keras 3.11.2",
        "release_notes": "https://github.com/keras-team/keras/releases/tag/v3.11.3", "was": "ok"}}
    # a cell whose outcome changed since (a newer record): the result no longer describes it
    assert bisect_results.table_annotations(tmp_path, {**table, older["cell_id"]: "load_error"}) == {}
    assert bisect_results.table_annotations(tmp_path, {**table, newer["cell_id"]: "mismatch"}) == {}
    # a fix (the newer stack loads): no "first failing release"
    path.write_text(json.dumps({**result, "older": {**older, "outcome": "load_error"},
                                "newer": {**newer, "outcome": "ok"}}))
    assert bisect_results.table_annotations(tmp_path, {older["cell_id"]: "load_error", newer["cell_id"]: "ok"}) == {}


# ----------------------------------------------------------------- end to end, fake releases
SAVE_RULE = {"action": "raise", "match": "/h5_only/", "arg": "fake release cannot write this model"}
LOAD_RULE = {"action": "raise", "match": "/mlp/h5", "arg": "fake release refuses this file"}


def _behavior(version: str) -> dict[str, Any]:
    key = tuple(int(p) for p in version.split("."))
    out: dict[str, Any] = {"version": version, "tf_version": "2.18.0"}
    if key >= (3, 6, 0):
        out["save"] = SAVE_RULE  # files of 3.6.0 on cannot be written: a saver-side flip
    if key >= (3, 7, 1):
        out["load"] = LOAD_RULE  # 3.7.1 on refuses mlp's .h5: a loader-side flip
    return out


def _wheel(folder: Path, version: str) -> None:
    """A wheel of ``compat-fake-release`` ``version``: one module with that release's behaviour."""
    dist = f"compat_fake_release-{version}.dist-info"
    files = {
        "compat_fake_release.py": f"BEHAVIOR = {_behavior(version)!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: compat-fake-release\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"compat_fake_release-{version}-py3-none-any.whl", "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fake-releases")
    for version in LINE:
        _wheel(folder, version)
    return folder


def _catalog(path: Path) -> Path:
    """Two stacks of one line (compat-fake-release 3.5.0 and 3.9.0) and one on no line."""
    req = f"compat-fake-frameworks @ {e2e._fakes_dist().as_uri()}"
    why = f'why = {{ "numpy" = "the fakes compute with numpy", "{req}" = "the fake Keras" }}'
    out = []
    for sid, release in (("fk3.5", "3.5.0"), ("fk3.9", "3.9.0")):
        out += ["[[stack]]", f'id = "{sid}"', f'python = "{e2e.HOST_PY}"',
                f'requirements = ["compat-fake-release=={release}", "numpy", "{req}"]', why,
                'tags = ["keras3"]', ""]
    out += ["[[stack]]", 'id = "fk-other"', f'python = "{e2e.HOST_PY}"', f'requirements = ["numpy", "{req}"]',
            f'why = {{ "{req}" = "the fake Keras" }}',
            f"env = {{ COMPAT_FAKE_BEHAVIOR = {json.dumps(json.dumps({'version': '3.9.0'}))} }}", ""]
    path.write_text("\n".join(out))
    return path


def _env(envs_dir: Path, releases: Path) -> dict[str, str]:
    return e2e.runner_env(envs_dir, {bisect.RELEASES_ENV: str(releases), "PIP_FIND_LINKS": str(releases)})


def _run(argv: list[str], envs_dir: Path, releases: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *argv], cwd=e2e.REPO, env=_env(envs_dir, releases),
                          capture_output=True, text=True, timeout=600, check=False)


def _tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()} \
        if root.exists() else {}


BREAKS = {  # the newer end's cell -> (first failing, last as before)
    "mlp:h5:fk3.5->fk3.9:default": ("3.7.1", "3.7.0"),
    "mlp:h5:fk3.9->fk3.9:default": ("3.7.1", "3.7.0"),
    "h5_only:h5:fk3.9->fk3.5:default": ("3.6.0", "3.5.0"),
    "h5_only:h5:fk3.9->fk3.9:default": ("3.6.0", "3.5.0"),
}


def test_matrix_bisects_every_flip_once_and_the_report_names_the_release(tmp_path: Path, envs_dir: Path,
                                                                         releases: Path) -> None:
    catalog, store, out = _catalog(tmp_path / "catalog.toml"), tmp_path / "store", tmp_path / "out"
    base = e2e.matrix_argv(catalog, store, out, "--stacks", "fk3.5,fk3.9")[3:]  # (after "-m runner")

    # --no-bisect: the run and its report as without the phase
    proc = _run([*base, "--no-bisect"], envs_dir, releases)
    assert proc.returncode == 0, e2e.describe(proc)
    assert "[bisect]" not in proc.stdout and not (store / "bisect").exists()
    rows = list(gate.results_rows(json.loads(gate.read_results_text(out / gate.RESULTS_JSON))))
    assert {r["first_bad_release"] for r in rows} == {""}, "no bisect ran: the columns are empty"
    assert "first failing release" not in (out / "errors.md").read_text()
    assert {r["cell_id"]: r["outcome"] for r in rows if r["cell_id"] in BREAKS} == {
        "mlp:h5:fk3.5->fk3.9:default": "load_error", "mlp:h5:fk3.9->fk3.9:default": "load_error",
        "h5_only:h5:fk3.9->fk3.5:default": "save_error", "h5_only:h5:fk3.9->fk3.9:default": "save_error"}

    # --dry-run predicts the phase from the stored cells, and builds, runs and writes nothing
    # (the lock file and the records' index, a cache of the records, aside: as in test_recompute)
    def written(root: Path) -> dict[str, int]:
        return {k: v for k, v in _tree(root).items() if not k.startswith((".running.lock", ".records-index"))}

    before = written(store)
    dry = _run([*base, "--dry-run"], envs_dir, releases)
    assert dry.returncode == 0, e2e.describe(dry)
    assert ("bisect (from the cells already stored; cells this run would compute may add or remove flips): "
            "4 flips, 0 answered by kept results, 4 to search") in dry.stdout, dry.stdout
    # 4 releases between 3.5.0 and 3.9.0: at most 3 probes each; the nearer end pins each one
    assert "at most 12 probes in 3 rounds; up to 4 candidate releases to build (0 already built)" in dry.stdout
    assert "        2  loader side fk3.5 -> fk3.9" in dry.stdout and "        2  saver side fk3.5 -> fk3.9" \
        in dry.stdout, dry.stdout
    assert written(store) == before
    quiet = _run([*base, "--dry-run", "--no-bisect"], envs_dir, releases)
    assert quiet.returncode == 0 and "bisect" not in quiet.stdout, e2e.describe(quiet)

    # the same run with the phase: only the bisects run (the table's cells are cached)
    proc = _run(base, envs_dir, releases)
    assert proc.returncode == 0, e2e.describe(proc)
    assert ("[bisect] 4 flips between adjacent Keras 3 stacks: 0 answered by earlier bisects, 8 releases probed "
            "in 2 rounds, 3 environments built") in proc.stdout, e2e.describe(proc)
    rows = list(gate.results_rows(json.loads(gate.read_results_text(out / gate.RESULTS_JSON))))
    found = {r["cell_id"]: (r["first_bad_release"], r["last_good_release"], r["release_notes"])
             for r in rows if r["first_bad_release"]}
    assert found == {cid: (f"compat-fake-release {first}", f"compat-fake-release {last}",
                           f"https://pypi.org/project/compat-fake-release/{first}/")
                     for cid, (first, last) in BREAKS.items()}
    assert all(r["source"] != "remedy" for r in rows if r["first_bad_release"])
    errors = (out / "errors.md").read_text()
    assert ("[compat-fake-release 3.7.1](https://pypi.org/project/compat-fake-release/3.7.1/) "
            "(was ok in 3.7.0)") in errors
    assert "[compat-fake-release 3.6.0](https://pypi.org/project/compat-fake-release/3.6.0/) (was ok in 3.5.0)" \
        in errors
    csv_head = gate.read_results_text(out / "results.csv.gz").splitlines()[0]
    assert csv_head.endswith("first_bad_release,last_good_release,release_notes")

    # each probe is an ordinary record of the bisect store, keyed by its candidate's environment
    bstore = Store(store / "bisect")
    probe = bstore.read(bstore.load_record_path("fk3.5+compat-fake-release3.7.0", "fk3.5", "mlp", "h5", "default"))
    bad = bstore.read(bstore.load_record_path("fk3.9+compat-fake-release3.7.1", "fk3.5", "mlp", "h5", "default"))
    assert probe is not None and bad is not None
    assert (probe.outcome.value, bad.outcome.value) == ("ok", "load_error")
    assert bad.env["keras"] == "3.7.1" and "fake release refuses this file" in bad.error.message  # type: ignore[union-attr]
    table = Store(store).read(Store(store).load_record_path("fk3.9", "fk3.5", "mlp", "h5", "default"))
    assert table is not None and probe.key_parts["env"] != table.key_parts["env"]
    saved = bstore.read(bstore.save_record_path("fk3.5+compat-fake-release3.6.0", "h5_only", "h5"))
    assert saved is not None and saved.outcome.value == "save_error"
    # the main table holds none of them
    assert not any("+compat-fake-release" in r["saver"] + r["loader"] for r in rows)

    # a second run: every flip answered by its kept result, nothing built or run
    before = _tree(store / "bisect")
    proc = _run(base, envs_dir, releases)
    assert proc.returncode == 0, e2e.describe(proc)
    assert "[bisect] 4 flips between adjacent Keras 3 stacks: 4 answered by earlier bisects, 0 releases probed" \
        in proc.stdout, e2e.describe(proc)
    assert _tree(store / "bisect") == before
    dry = _run([*base, "--dry-run"], envs_dir, releases)
    assert "4 flips, 4 answered by kept results, 0 to search" in dry.stdout and "at most" not in dry.stdout, \
        e2e.describe(dry)

    # the command: the kept result at once; --fresh searches again from the cached records
    where = ["--catalog", str(catalog), "--store", str(store), "--scenario-dir", str(e2e.FAKE_SCENARIOS)]
    proc = _run(["bisect", "mlp:h5:fk3.5->fk3.9", *where], envs_dir, releases)
    assert proc.returncode == 0, e2e.describe(proc)
    assert "first failing release: compat-fake-release 3.7.1 (load_error; was ok in 3.7.0)" in proc.stdout
    assert "kept result, nothing run: 0 probes" in proc.stdout, proc.stdout
    proc = _run(["bisect", "mlp:h5:fk3.5->fk3.9", *where, "--fresh"], envs_dir, releases)
    assert proc.returncode == 0, e2e.describe(proc)
    assert "searched: 2 probes in 2 rounds, 0 environments built, 0 cells run, 2 cached" in proc.stdout, proc.stdout
    assert "first failing release: compat-fake-release 3.7.1" in proc.stdout

    # the saver side, asked for with --side saver
    proc = _run(["bisect", "h5_only:h5:fk3.5->fk3.5:default", "--side", "saver", *where], envs_dir, releases)
    assert proc.returncode == 0, e2e.describe(proc)
    assert "first failing release: compat-fake-release 3.6.0 (save_error; was ok in 3.5.0)" in proc.stdout

    # bad input: one error line, exit 2, nothing built, run or written
    before = _tree(store / "bisect")
    for argv, fragment in [
            (["mlp:keras:fk3.5->fk3.9:default"], "does not differ between fk3.5 and fk3.9"),
            (["no-such-cell"], "no cell id contains"),
            (["mlp:h5:fk3.5->fk3.9:default", "--against", "fk-other"], "cannot bisect fk-other"),
            (["mlp:h5:fk3.5->fk3.9:default", "--against", "fk3.9"], "not adjacent"),
            (["mlp:h5:fk3.5->fk3.9:default", "--against", "nope"], "unknown stack 'nope'"),
            ([save_cell_id("mlp", "h5", "fk3.5")], "a save cell")]:
        proc = _run(["bisect", *argv, *where], envs_dir, releases)
        e2e.one_error_line(proc, fragment)
    assert _tree(store / "bisect") == before


@pytest.mark.real
def test_real_keras_patch_flip_lambda_h5(tmp_path: Path) -> None:
    """A Keras 2-free flip found for real: keras3.10-jax saves ``lambda_layer`` as .h5; Keras
    3.10.0 loads it by default, Keras 3.12.4 refuses the lambda (safe mode now covers .h5).
    The bisect builds the releases between (3.11.0 ... 3.12.3) on the nearer stack's jax and
    names the first that refuses."""
    env = {**os.environ, "PYTHONPATH": str(e2e.REPO)}
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "runner", "matrix", "--stacks", "keras3.10-jax,keras3.12-jax",
                           "--scenarios", "lambda_layer", "--formats", "h5", "--store", str(store),
                           "--out", str(tmp_path / "out")], cwd=e2e.REPO, env=env, capture_output=True, text=True,
                          timeout=3600, check=False)
    assert proc.returncode == 0, e2e.describe(proc)
    rows = {r["cell_id"]: r for r in gate.results_rows(json.loads(gate.read_results_text(
        tmp_path / "out" / gate.RESULTS_JSON)))}
    cell = rows["lambda_layer:h5:keras3.10-jax->keras3.12-jax:default"]
    assert rows["lambda_layer:h5:keras3.10-jax->keras3.10-jax:default"]["outcome"] == "ok"
    assert cell["outcome"] == "load_error", cell
    assert (cell["first_bad_release"], cell["last_good_release"]) == ("keras 3.11.3", "keras 3.11.2"), cell
    assert cell["release_notes"] == "https://github.com/keras-team/keras/releases/tag/v3.11.3"
    assert "[keras 3.11.3](https://github.com/keras-team/keras/releases/tag/v3.11.3) (was ok in 3.11.2)" in (
        tmp_path / "out" / "errors.md").read_text()


@pytest.mark.real
def test_real_keras_saver_flip_quantization_config(tmp_path: Path) -> None:
    """The saver side for real: ``dense`` as .keras by Keras 3.14.1 fails in keras3.12-jax (the
    ``quantization_config`` Keras 3.13 added to Dense), Keras 3.12.4's loads; each probed
    release saves the model and keras3.12-jax loads it. The same run finds the loader-side fix
    (the 3.14.1 file loads from Keras 3.13.0 on), which gets no "first failing" column."""
    env = {**os.environ, "PYTHONPATH": str(e2e.REPO)}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "runner", "matrix", "--stacks", "keras3.12-jax,keras3.14-jax",
                           "--scenarios", "dense", "--formats", "keras", "--store", str(tmp_path / "store"),
                           "--out", str(out)], cwd=e2e.REPO, env=env, capture_output=True, text=True,
                          timeout=3600, check=False)
    assert proc.returncode == 0, e2e.describe(proc)
    assert "[bisect] 2 flips between adjacent Keras 3 stacks" in proc.stdout, e2e.describe(proc)
    rows = {r["cell_id"]: r for r in gate.results_rows(json.loads(gate.read_results_text(out / gate.RESULTS_JSON)))}
    bad = rows["dense:keras:keras3.14-jax->keras3.12-jax:default"]
    assert (bad["outcome"], bad["category"]) == ("load_error", "keras3_quantization_config"), bad
    assert (bad["first_bad_release"], bad["last_good_release"]) == ("keras 3.13.0", "keras 3.12.4"), bad
    fixed = rows["dense:keras:keras3.14-jax->keras3.14-jax:default"]
    assert fixed["outcome"] == "ok" and fixed["first_bad_release"] == "", fixed
    results = list(bisect_results.iter_results(tmp_path / "store"))
    fix = next(r for r in results if r["side"] == "loader")
    assert (fix["first_changed"], fix["last_as_before"], fix["newer"]["outcome"]) == ("3.13.0", "3.12.4", "ok")
