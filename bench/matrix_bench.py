"""Benchmark the matrix runner on real stacks and print a table.

    nox -s bench                                  # default: tf2.15,keras3.15-jax
    nox -s bench -- --stacks tf2.15,tf2.18 --cold # --cold: an empty uv cache too (downloads)
    nox -s bench -- --per-cell tf2.15             # batched vs one process per cell, >= 100 loads
    nox -s bench -- --workflow .matrix            # the CI workflow's projected wall time
    nox -s bench -- --breakdown .matrix [--touching STACKS]  # where in-cell time went; the floor
    nox -s bench -- --split-merge .matrix         # the workflow's parts of a whole store, merged back
    nox -s bench -- --site reports [--screenshots docs]  # the site's timings in headless Chromium
    nox -s bench -- --report [--keep DIR]         # the report of a full-size store: skipped when unchanged

Each figure is one wall-clock measurement of ``python -m runner`` in a fresh temporary
store (and, with ``--cold``, a fresh uv cache), so the numbers include process start,
environment builds, TensorFlow imports and the report. Figures go in docs/benchmarks.md
with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # --breakdown reads records with the runner's own reader


def _run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "runner", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench: runner {args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def _cells(stdout: str) -> int:
    m = re.search(r"matrix: (\d+) cells run", stdout)
    return int(m.group(1)) if m else 0


def _cpu() -> float:
    """CPU seconds used so far by finished children (the runner and its workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def per_cell(stack: str, store: Path, env: dict[str, str], scenarios: str | None) -> list[list[object]]:
    """Batched (one worker per loader) vs one process per cell on the same >= 100 loads:
    every scenario in every format, saved and loaded in ``stack``."""
    sel = ["--stacks", stack, "--store", str(store)] + (["--scenarios", scenarios] if scenarios else [])
    _run(["save", *sel], env)
    rows: list[list[object]] = []
    per: dict[str, float] = {}
    for label, extra in (("batched: one worker for the whole phase", []),
                         ("one process per cell (--isolate)", ["--isolate"])):
        c0 = _cpu()
        wall, out = _run(["load", *sel, "--fresh", *extra], env)
        n = _cells(out)
        per[label] = wall / max(n, 1)
        rows.append([label, n, f"{wall:.1f}", f"{_cpu() - c0:.1f}", f"{1000 * wall / max(n, 1):.0f}"])
    a, b = per.values()
    rows.append(["ratio (per cell)", "", "", "", f"{b / a:.1f}x"])
    return rows


def projected_workflow(store: Path) -> list[str]:
    """The generated workflow's wall time projected from a store: the same measurement and
    plan as ``python -m runner ci-workflow --timings-from STORE --projection`` (each stack's
    in-cell seconds from its records, every sitting of a resumed run included; the job
    overhead and report time of the committed timings), without writing the timings file."""
    from runner import ci_workflow
    from runner.stacks import load_catalog

    catalog = load_catalog()
    committed = ci_workflow.read_timings(REPO / ci_workflow.TIMINGS_PATH)
    timings = ci_workflow.timings_from_store(store, catalog, committed)
    return ci_workflow.projection_text(ci_workflow.projection(catalog, timings))


def _link_tree(src: Path, dest: Path) -> None:
    """``src``'s files under ``dest`` as hard links (a part costs no disk, only inodes)."""
    for f in src.rglob("*"):
        if f.is_file():
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, target)


def split_parts(store: Path, parts: Path) -> list[Path]:
    """``store`` cut the way the generated workflow's jobs upload it: per stack, a save part
    (its env record, save records and artifacts) and a load part (its env record, every
    save record, as a load job holds them after downloading, and its own load records)."""
    records = store / "records"
    stacks = sorted({p.stem for p in (records / "env").glob("*.json")})
    saves: list[Path] = []
    loads: list[Path] = []
    for stack in stacks:
        save, load = parts / f"save-{stack}", parts / f"load-{stack}"
        for part in (save, load):
            (part / "records" / "env").mkdir(parents=True)
            os.link(records / "env" / f"{stack}.json", part / "records" / "env" / f"{stack}.json")
        for src, dest in ((records / "save" / stack, save / "records" / "save" / stack),
                          (store / "artifacts" / stack, save / "artifacts" / stack),
                          (records / "save", load / "records" / "save"),
                          (records / "load" / stack, load / "records" / "load" / stack)):
            if src.is_dir():
                _link_tree(src, dest)
        saves.append(save)
        loads.append(load)
    return saves + loads  # the report job's order: `merge parts/* load-parts/*`


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def split_merge(store: Path, tmp: Path, env: dict[str, str] | None = None,
                catalog: Path | None = None, scenario_dir: Path | None = None) -> list[list[object]]:
    """The report job's half of the workflow on a whole store: cut it into the jobs' parts,
    ``runner merge`` them into an empty store, write both stores' reports; the merged
    records and the reports must be byte-identical to the single store's."""
    env = {**os.environ} if env is None else env
    cat = ["--catalog", str(catalog)] if catalog else []
    sel = cat + (["--scenario-dir", str(scenario_dir)] if scenario_dir else [])
    parts = split_parts(store, tmp / "parts")
    merged = tmp / "merged"
    rows: list[list[object]] = [["parts (hard links)", len(parts), "", ""]]
    wall, _ = _run(["merge", *map(str, parts), "--store", str(merged), *cat], env)
    same = _tree_bytes(merged / "records") == _tree_bytes(store / "records")
    rows.append(["merge into an empty store", sum(1 for _ in (merged / "records").rglob("*.json")),
                 f"{wall:.1f}", "records byte-identical" if same else "RECORDS DIFFER"])
    reports = []
    for label, src in (("report of the merged store", merged), ("report of the single store", store)):
        dest = tmp / f"reports-{label.split()[-2]}"
        wall, _ = _run(["report", "--store", str(src), "--out", str(dest), *sel], env)
        reports.append(_tree_bytes(dest))
        rows.append([label, len(reports[-1]), f"{wall:.1f}", ""])
    rows[-1][3] = "byte-identical" if reports[0] == reports[1] else "REPORTS DIFFER"
    return rows


def synthetic_store(table: Path, store: Path) -> int:
    """A store of one record per cell of a published table (``reports/results.json.gz``):
    every save, load and remedy cell at its record path, with the table's outcome, phase,
    error (type, message, traceback) and a record's usual env, digests and details, and a
    small artifact for every ``ok`` save (so ``merge`` can check its digest). Written with
    plain writes (no fsync): a bench fixture, not a run. Returns the number of records."""
    import gzip
    import hashlib

    from runner.cells import artifact_digest
    from runner.records import Outcome, Record, Store, load_cell_id, save_cell_id

    data = json.loads(gzip.decompress(table.read_bytes()))
    cols = {c: i for i, c in enumerate(data["columns"])}
    vals = data["values"]
    st = Store(store)
    st.ensure()

    def h(*parts: object) -> str:
        return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()

    def env(stack: str) -> dict[str, Any]:
        e = data["stacks"].get(stack) or {}
        return {"backend": e.get("backend"), "keras": e.get("keras"), "keras_api": e.get("keras_api"),
                "tensorflow": e.get("tensorflow"), "python": e.get("python"), "platform": "linux-x86_64",
                "numpy": "1.26.4", "h5py": "3.11.0", "env_vars": {},
                "dists": {"h5py": "3.11.0", "keras": str(e.get("keras")), "numpy": "1.26.4",
                          "protobuf": "4.25.9", "tensorflow-cpu": str(e.get("tensorflow"))}}

    def write(rec: Record) -> None:
        path = st.record_path(rec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec.to_dict(), indent=1, sort_keys=True) + "\n")

    for stack in data["stacks"]:
        write(Record(record_type="env", cell_id=f"env:{stack}", stack=stack, outcome=Outcome.OK,
                     key=h("env", stack), env=env(stack), duration_s=12.5))
    digests: dict[tuple[str, str, str], str | None] = {}
    seen: set[Path] = set()
    n = 0
    rows = [{c: (vals[c][cell[i]] if c in vals and cell[i] is not None else cell[i]) for c, i in cols.items()}
            for cell in data["cells"]]
    # The table has a row for a save only where it failed; every artifact a load names was
    # an ok save: a record (and an artifact) for each.
    failed = {(v["saver"], v["scenario"], v["format"]) for v in rows if v["source"] == "save"}
    oks = sorted({(v["saver"], v["scenario"], v["format"]) for v in rows if v["source"] != "save"} - failed)
    rows = [{"source": "save", "saver": sv, "scenario": sc, "format": fmt, "outcome": "ok", "phase": "save",
             "max_abs_diff": None, "written_as": "", "error_id": None} for sv, sc, fmt in oks] + rows
    for v in sorted(rows, key=lambda v: v["source"] != "save"):  # saves first
        sc, fmt, saver = v["scenario"], v["format"], v["saver"]
        error = None
        if v["error_id"] is not None:
            etype, msg, tb = data["errors"][v["error_id"]]
            error = {"type": etype, "message": data["messages"][msg] if msg is not None else "",
                     "traceback": data["tracebacks"][tb] if tb is not None else ""}
        common = {"outcome": v["outcome"], "phase": v["phase"], "max_abs_diff": v["max_abs_diff"],
                  "duration_s": 0.137, "worker_sha256": h("worker"), "scenario_sha256": h("scenario", sc),
                  "scenario": sc, "format": fmt, "saver": saver,
                  "warnings": [{"category": "UserWarning", "message": "You are saving your model as an HDF5 "
                                "file via `model.save()`. This file format is considered legacy."}]}
        if v["source"] == "save":
            art = st.artifact_dir(saver, sc, fmt)
            details: dict[str, Any] = {"limit_s": 60.0, "written_as": v["written_as"] or fmt,
                                       "model_file": f"model.{fmt}"}
            if v["outcome"] == "ok":
                art.mkdir(parents=True, exist_ok=True)
                (art / f"model.{fmt}").write_text(h("model", saver, sc, fmt))
                (art / "save.json").write_text("{}\n")
                details["artifact_sha256"] = digests[saver, sc, fmt] = artifact_digest(art)
            raw = {**common, "record_type": "save", "cell_id": save_cell_id(sc, fmt, saver), "stack": saver,
                   "key": h("save", saver, sc, fmt), "env": env(saver), "details": details,
                   "key_parts": {"env": h("env", saver), "scenario": h("scenario", sc),
                                 f"component:save.{fmt}": h("save", fmt), "component:runtime": h("rt")}}
        else:
            loader, variant = v["loader"], v["variant"]
            details = {"limit_s": 10.0, "limit_rule": "10 x the slower save (0.2 s), at least 10 s",
                       "prediction": "match" if v["outcome"] == "ok" else None}
            raw = {**common, "record_type": "load", "stack": loader, "loader": loader, "variant": variant,
                   "cell_id": load_cell_id(sc, fmt, saver, loader, variant),
                   "key": h("load", loader, saver, sc, fmt, variant), "env": env(loader),
                   "saver_env": env(saver), "details": {k: x for k, x in details.items() if x is not None},
                   "key_parts": {"env": h("env", loader), "artifact": str(digests.get((saver, sc, fmt))),
                                 f"component:load.{fmt}": h("load", fmt), f"variant:{variant}": h(variant),
                                 "component:compare": h("cmp")}}
        raw["schema_version"] = 4
        raw["error"] = error
        rec = Record.from_dict(raw)
        path = st.record_path(rec)
        if path in seen:
            continue
        seen.add(path)
        write(rec)
        n += 1
    return n


def store_index(store: Path, tmp: Path, catalog: Path | None = None, merge: bool = True) -> list[list[object]]:
    """The store's read paths on ``store`` (each in a fresh process, so no memory of the
    last): the matrix's planning reads (``Store.read`` of every cell's record path, saves
    then loads per loader, as ``plan_saves`` / ``read_saved`` / ``plan_loads`` order them)
    with the index cold (absent: built as it reads), warm, and with the index switched off
    (``COMPAT_STORE_INDEX=off``: files only); ``scan()`` warm; then the workflow's 66 parts
    merged into an empty store. Every pass must return the same records."""
    rows: list[list[object]] = []
    index = store / ".records-index.sqlite"
    prog = ("import sys, time, hashlib\nfrom pathlib import Path\nsys.path.insert(0, {repo!r})\n"
            "from runner.records import Store\nst = Store({store!r})\nlock = st.running()\nlock.__enter__()\n"
            "t = time.perf_counter()\n{body}\nst.index and st.index.flush()\n"
            "print(round(time.perf_counter() - t, 2), n, d.hexdigest(), round(cpu, 2))\n")
    # wall and CPU seconds of the reads alone (hashing what they return is not timed)
    reads = ("d = hashlib.sha256(); n = 0; cpu = 0.0\n"
             "paths = sorted(st.records_dir.glob('save/*/*.json')) + sorted(st.records_dir.glob('load/*/*/*.json'))\n"
             "t = time.perf_counter(); wall = 0.0\n"
             "for p in paths:\n    w, c = time.perf_counter(), time.process_time()\n    r = st.read(p)\n"
             "    wall += time.perf_counter() - w; cpu += time.process_time() - c\n"
             "    n += 1\n    d.update(repr(r).encode())\n"
             "t = time.perf_counter() - wall\n")
    scan = ("w, c = time.perf_counter(), time.process_time()\ns = st.scan()\n"
            "wall, cpu = time.perf_counter() - w, time.process_time() - c\nn = len(s.records)\n"
            "d = hashlib.sha256()\nfor r in s.records:\n    d.update(repr(r).encode())\n"
            "t = time.perf_counter() - wall\n")

    def run(label: str, body: str, index_on: bool = True) -> str:
        env = {**os.environ, "COMPAT_STORE_INDEX": "on" if index_on else "off"}
        proc = subprocess.run([sys.executable, "-c", prog.format(repo=str(REPO), store=str(store), body=body)],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"bench: {label} failed:\n{proc.stderr[-2000:]}")
        wall, n, digest, cpu = proc.stdout.split()
        rows.append([label, int(n), f"{wall} (CPU {cpu})", digest[:12]])
        return digest

    for f in store.glob(".records-index.sqlite*"):
        f.unlink()
    digests = {run("planning reads, files only (index off)", reads, index_on=False)}
    digests.add(run("planning reads, index cold (absent: built while reading)", reads))
    size = index.stat().st_size if index.exists() else 0
    digests.add(run("planning reads, index warm", reads))
    digests.add(run("planning reads, index warm (again)", reads))
    rows.append(["index size", "", "", f"{size / 1e6:.0f} MB"])
    scans = {run("scan(), files only (index off)", scan, index_on=False)}
    scans.add(run("scan(), index warm", scan))
    rows.append(["same records in every pass", "", "", "yes" if len(digests) == 1 and len(scans) == 1 else "NO"])
    if not merge:
        return rows
    parts = split_parts(store, tmp / "parts")
    merged = tmp / "merged"
    env = {**os.environ}
    wall, _ = _run(["merge", *map(str, parts), "--store", str(merged),
                    *(["--catalog", str(catalog)] if catalog else [])], env)
    same = _tree_bytes(merged / "records") == _tree_bytes(store / "records")
    n = sum(1 for _ in (merged / "records").rglob("*.json"))
    rows.append([f"merge of {len(parts)} parts into an empty store", n, f"{wall:.1f}",
                 "records byte-identical" if same else "RECORDS DIFFER"])
    return rows


def report_incremental(store: Path, tmp: Path) -> list[list[object]]:
    """The report of ``store``, each step in a fresh process: as a run writes it (the store's
    write lock held, as ``matrix`` does) into an empty folder; again with nothing changed,
    by ``python -m runner report`` and by a run (skipped: nothing read or written); with the
    manifest gone (rebuilt, no byte written); with one load record changed (only the files
    that differ written); with it changed back. Wall and CPU seconds (the machine may be
    shared) and what the report said."""
    out = tmp / "reports"
    prog = ("import sys\nfrom pathlib import Path\nsys.path.insert(0, {repo!r})\n"
            "from runner import cli, scenario_catalog as sc\nfrom runner.records import Store\n"
            "from runner.stacks import load_catalog\n"
            "cat = load_catalog(); names = [s.name for s in sc.discover_scenarios(sc.DEFAULT_SCENARIOS)]\n"
            "st = Store({store!r})\n"
            "whole = all(st.save_record_path(s.id, n, f).is_file() for s in cat for n in names for f in sc.FORMATS)\n"
            "sel = sc.Selection(tuple(s.id for s in cat), tuple(names), tuple(sc.FORMATS), whole=whole)\n"
            "with st.running():\n    sys.exit(cli._report(st, Path({out!r}), False, cat, sel))\n")
    run = [sys.executable, "-c", prog.format(repo=str(REPO), store=str(store), out=str(out))]
    reader = [sys.executable, "-m", "runner", "report", "--store", str(store), "--out", str(out)]
    rows: list[list[object]] = []

    def step(label: str, argv: list[str]) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.exit(f"bench: {label} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        said = next((ln for ln in proc.stdout.splitlines() if ln.startswith("report (")), "?")
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        rows.append([label, f"{wall:.1f}", f"{cpu:.1f}", said.split(" (left as")[0].split(": the records")[0]])

    if out.exists():
        import shutil

        shutil.rmtree(out)
    step("a run's report into an empty folder", run)
    step("nothing changed: python -m runner report", reader)
    step("nothing changed: a run's report", run)
    (store / "reports-manifest.json").unlink(missing_ok=True)
    step("nothing changed, no manifest: a run's report", run)
    path = next(p for p in sorted((store / "records" / "load").rglob("*.json")) if '"outcome": "ok"' in p.read_text())
    original = path.read_bytes()
    changed = json.loads(original)
    changed.update(outcome="mismatch")
    changed["details"].update(prediction="differ", reason="bench: one changed record")
    try:
        path.with_name(".bench.tmp").write_text(json.dumps(changed, indent=1, sort_keys=True) + "\n")
        path.with_name(".bench.tmp").replace(path)
        step(f"one load record changed ({path.relative_to(store).as_posix()}: ok -> mismatch)", run)
    finally:
        path.with_name(".bench.tmp").write_bytes(original)
        path.with_name(".bench.tmp").replace(path)
    step("that record changed back", run)
    return rows


def breakdown(store: Path, cores: int, scenarios: set[str] | None = None,
              touching: set[str] | None = None) -> list[list[object]]:
    """Where a store's time inside cells went (the records' ``duration_s``), by kind of
    cell, and the wall-time floor it implies on ``cores`` cores if every core were busy
    with cells all the time (worker imports, the host and idle tails come on top).
    ``scenarios``: only their cells (environments are counted either way). ``touching``:
    only the cells of these stacks' rows and columns (saved or loaded by one of them, their
    environments): what adding those stacks to a catalog costs."""
    from runner.records import Outcome, Store
    from runner.scenario_catalog import discover_scenarios

    # A scenario's declared load variants are its grid cells; any other variant is a remedy run.
    grid = {sc.name: set(sc.variants) for sc in discover_scenarios()}
    kinds: dict[str, list[float]] = {}
    for rec in Store(store).iter_records():
        if scenarios is not None and rec.record_type != "env" and rec.scenario not in scenarios:
            continue
        if touching is not None and not touching & {rec.stack, rec.saver, rec.loader}:
            continue
        if rec.record_type == "env":
            kind = "environments (build + probe)"
        elif rec.record_type == "save":
            kind = "saves"
        else:
            kind = "grid loads" if rec.variant in grid.get(str(rec.scenario), {"default"}) else "remedy load variants"
        if rec.outcome is Outcome.TIMEOUT:
            kind += ", timed out"
        kinds.setdefault(kind, []).append(float(rec.duration_s or 0.0))
    rows: list[list[object]] = []
    total = 0.0
    for kind in sorted(kinds):
        secs = kinds[kind]
        total += sum(secs)
        rows.append([kind, len(secs), f"{sum(secs) / 60:.1f}", f"{sum(secs) / len(secs):.3f}"])
    rows.append(["all cells", sum(len(v) for v in kinds.values()), f"{total / 60:.1f}", ""])
    rows.append([f"floor on {cores} cores (in-cell time / {cores})", "", f"{total / 60 / cores:.1f}", ""])
    return rows


def site_timings(reports: Path, shots: Path | None, repeat: int = 3) -> list[list[str]]:
    """Open ``reports/index.html`` from ``file://`` in the system Chromium (playwright, no
    download) as a reader would: the overview's first paint (the page's own
    ``COMPAT_FIRST_PAINT_MS``, from navigation start), the upgrade path of the most common
    question (tf2.15, h5) and a failing cell's details, a search over every format. Each
    figure is the median of ``repeat`` fresh pages; with ``shots`` the two screenshots the
    docs show are written there."""
    from playwright.sync_api import sync_playwright

    from runner.site import find_chromium

    exe = find_chromium()
    if exe is None:
        raise SystemExit("bench: error: no Chromium found (install Debian's chromium or set COMPAT_CHROMIUM)")
    base = (reports / "index.html").resolve().as_uri()
    ready = "#view[data-ready='1']"
    steps: dict[str, list[float]] = {}

    def timed(name: str, action: Any) -> Any:
        t0 = time.perf_counter()
        out = action()
        steps.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
        return out

    errors: list[str] = []

    def new_page() -> Any:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        return page

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        for i in range(repeat):
            page = new_page()
            page.goto(base)
            page.wait_for_selector(ready, timeout=60_000)
            steps.setdefault("overview: first paint (from navigation start)", []).append(
                float(page.evaluate("window.COMPAT_FIRST_PAINT_MS")))
            if shots and i == 0:
                page.screenshot(path=str(shots / "site-overview.png"))
            page.close()
            page = new_page()
            timed("upgrade path tf2.15 / h5: page opened and drawn",
                  lambda p=page: (p.goto(base + "#view=upgrade&saver=tf2.15&format=h5"),
                                  p.wait_for_selector(ready, timeout=60_000)))
            cell = page.locator("#view td button[data-outcome='load_error']").first
            timed("a failing cell's details (click to shown)",
                  lambda p=page, c=cell: (c.click(), p.wait_for_selector("#d-id", timeout=60_000)))
            if shots and i == 0:
                page.screenshot(path=str(shots / "site-upgrade-path.png"))
            page.close()
            page = new_page()
            timed("search 'batch_input_shape' over every format (all data files)",
                  lambda p=page: (p.goto(base + "#view=search&q=batch_input_shape"),
                                  p.wait_for_selector("#search-count", timeout=120_000)))
            page.close()
            if errors:
                raise SystemExit(f"bench: error: the site raised in the browser: {errors[0]}")
        browser.close()
    return [[name, f"{sorted(ms)[len(ms) // 2]:.0f}", " ".join(f"{m:.0f}" for m in ms)]
            for name, ms in steps.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stacks", default="tf2.15,keras3.15-jax")
    parser.add_argument("--cold", action="store_true", help="also use an empty uv cache")
    parser.add_argument("--per-cell", metavar="STACK",
                        help="only: batched vs one process per cell on every scenario x format of STACK")
    parser.add_argument("--scenarios", default=None, help="with --per-cell or --breakdown: a scenario subset")
    parser.add_argument("--workflow", metavar="STORE", type=Path,
                        help="only: the CI workflow's projected wall time from STORE's measured times")
    parser.add_argument("--breakdown", metavar="STORE", type=Path,
                        help="only: where STORE's in-cell time went, and the floor on --cores cores")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="with --breakdown")
    parser.add_argument("--touching", metavar="STACKS", default=None,
                        help="with --breakdown: only cells saved or loaded by one of these stacks (their cost)")
    parser.add_argument("--split-merge", metavar="STORE", type=Path,
                        help="only: cut STORE into the workflow's parts, merge them, compare records and reports")
    parser.add_argument("--store-index", metavar="TABLE", type=Path, nargs="?", const=REPO / "reports/results.json.gz",
                        help="only: a synthetic store of one record per cell of TABLE (default the published "
                             "reports/results.json.gz): planning reads and scan() with the index off/cold/warm, "
                             "then a merge of its 66 parts")
    parser.add_argument("--report", metavar="TABLE", type=Path, nargs="?", const=REPO / "reports/results.json.gz",
                        help="only: the report of a synthetic store of TABLE (as --store-index): into an empty "
                             "folder, again with nothing changed (skipped), without its manifest, after one "
                             "changed record")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="with --store-index or --report: build (or reuse) the store here")
    parser.add_argument("--site", metavar="REPORTS", type=Path,
                        help="only: the offline site's timings in headless Chromium (REPORTS/index.html)")
    parser.add_argument("--screenshots", metavar="DIR", type=Path, help="with --site: write the two screenshots")
    parser.add_argument("--check-files", action="store_true",
                        help="check's host reading of hostile files: peak memory and time per file")
    args = parser.parse_args()
    if args.check_files:
        print(tabulate(check_files(), headers=["file", "result", "peak MB", "wall s"], tablefmt="github"))
        return 0
    if args.store_index:
        with tempfile.TemporaryDirectory(prefix="bench-index-", dir=args.keep) as tmp:
            store = (args.keep or Path(tmp)) / "store"
            t0 = time.perf_counter()
            n = synthetic_store(args.store_index, store) if not store.is_dir() else "reused"
            print(f"synthetic store: {n} records from {args.store_index} in {time.perf_counter() - t0:.0f} s")
            rows = store_index(store, Path(tmp))
        print(tabulate(rows, headers=["step", "records", "wall s", "result"], tablefmt="github"))
        return 0 if all("DIFFER" not in str(r[3]) and r[3] != "NO" for r in rows) else 1
    if args.report:
        with tempfile.TemporaryDirectory(prefix="bench-report-", dir=args.keep) as tmp:
            store = (args.keep or Path(tmp)) / "store"
            n = synthetic_store(args.report, store) if not store.is_dir() else "reused"
            print(f"synthetic store: {n} records from {args.report}", flush=True)
            steps = report_incremental(store, Path(tmp))
        print(tabulate(steps, headers=["step", "wall s", "CPU s", "the report said"], tablefmt="github"))
        return 0
    if args.site:
        rows = site_timings(args.site, args.screenshots)
        print(tabulate(rows, headers=["step", "median ms", "each run ms"], tablefmt="github"))
        return 0
    if args.split_merge:
        # In the store (git-ignored, same file system): parts are hard links to its files.
        with tempfile.TemporaryDirectory(prefix="bench-split-", dir=args.split_merge) as tmp:
            rows = split_merge(args.split_merge.resolve(), Path(tmp))
        print(tabulate(rows, headers=["step", "files", "wall s", "result"], tablefmt="github"))
        return 0 if all("DIFFER" not in str(r[3]) for r in rows) else 1
    if args.breakdown:
        only = set(args.scenarios.split(",")) if args.scenarios else None
        touching = set(args.touching.split(",")) if args.touching else None
        print(tabulate(breakdown(args.breakdown, args.cores, only, touching),
                       headers=["cells", "count", "in-cell min", "mean s"], tablefmt="github"))
        return 0
    if args.workflow:
        print("\n".join(projected_workflow(args.workflow)))
        return 0
    if args.per_cell:
        with tempfile.TemporaryDirectory(prefix="compat-bench-") as tmp:
            rows = per_cell(args.per_cell, Path(tmp) / "store", {**os.environ}, args.scenarios)
        print(f"stack: {args.per_cell}")
        print(tabulate(rows, headers=["loads", "cells", "wall s", "CPU s", "ms per cell"],
                       tablefmt="github"))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="compat-bench-") as tmp:
        env = {**os.environ}
        env.pop("COMPAT_ENVS_DIR", None)  # fresh venvs in the temp store
        if args.cold:
            env["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
        store = Path(tmp) / "store"
        sel = ["--stacks", args.stacks, "--store", str(store)]
        wall, out = _run(["save", *sel], env)
        rows.append(["build envs + all saves (batched)", f"{wall:.1f}", _cells(out)])
        wall, out = _run(["load", *sel], env)
        rows.append(["all loads (batched, one worker per loader)", f"{wall:.1f}", _cells(out)])
        wall, out = _run(["matrix", *sel, "--out", str(Path(tmp) / "reports")], env)
        rows.append(["warm no-op matrix (all cached) + report", f"{wall:.1f}", _cells(out)])
        sub = [*sel, "--scenarios", "dense", "--formats", "h5", "--fresh"]
        wall, out = _run(["load", *sub], env)
        n = _cells(out)
        rows.append(["dense/h5 loads, batched (--fresh)", f"{wall:.1f}", n])
        wall, out = _run(["load", *sub, "--isolate"], env)
        rows.append(["dense/h5 loads, one process per cell (--isolate)", f"{wall:.1f}", _cells(out)])
    print(f"stacks: {args.stacks}; uv cache: {'empty (cold)' if args.cold else 'shared'}")
    print(tabulate(rows, headers=["step", "wall s", "cells run"], tablefmt="github"))
    return 0


_PEAK = ("import re, time\nfrom pathlib import Path\nfrom runner import check\nt = time.monotonic()\n"
         "try:\n    check.inspect_model(Path({path!r}))\n    result = 'read'\n"
         "except check.CheckInputError as exc:\n    result = 'refused: ' + str(exc).split(': ', 1)[-1][:70]\n"
         "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024\n"
         "print(result + '\\t' + str(peak) + '\\t' + str(round(time.monotonic() - t, 1)))\n")


def check_files() -> list[list[str]]:
    """``check``'s host side on files made to exhaust it: each inspected in a fresh process
    (its own VmHWM: ru_maxrss would carry this process's peak across exec)."""
    import struct
    import zipfile

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        padded = Path(tmp) / "padded.h5"  # a valid superblock claiming 2 GiB, sparse zeros
        size = 2 << 30
        head = b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + struct.pack("<HHI", 4, 16, 0)
        with padded.open("wb") as fh:
            fh.write(head + struct.pack("<QQQQ", 0, 2**64 - 1, size, 2**64 - 1))
            fh.truncate(size)
        bomb = Path(tmp) / "bomb.keras"  # 1 GiB config.json deflated to ~1 MB
        with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("config.json", "w") as out:
            out.write(b'{"class_name": "Sequential", "config": {"name": "')
            for _ in range(1024):
                out.write(b" " * (1 << 20))
            out.write(b'"}}')
        deep = Path(tmp) / "deep.json"
        deep.write_text('{"class_name": "Sequential", "config": ' + "[" * 1_000_000 + "]" * 1_000_000 + "}")
        (Path(tmp) / "deep.weights.h5").write_bytes(head + struct.pack("<QQQQ", 0, 2**64 - 1, 512, 2**64 - 1)
                                                    + b"\0" * 448)
        fifo = Path(tmp) / "fifo.h5"
        os.mkfifo(fifo)
        for label, path in (("2 GiB zero-padded .h5", padded), (f".keras of {bomb.stat().st_size >> 10} KB "
                                                                "with a 1 GiB config", bomb),
                            ("architecture JSON nested 1,000,000 deep", deep), ("a FIFO as the model", fifo)):
            try:
                proc = subprocess.run([sys.executable, "-c", _PEAK.format(path=str(path))], capture_output=True,
                                      text=True, timeout=120, check=False, cwd=REPO)
            except subprocess.TimeoutExpired:
                rows.append([label, "hung: killed after 120 s", "?", "120"])
                continue
            result, peak, wall = [*proc.stdout.strip().split("\t"), "?", "?", "?"][:3]
            rows.append([label, result if proc.returncode == 0 else f"crashed: {proc.stderr[-200:]}", peak, wall])
    return rows


if __name__ == "__main__":
    sys.exit(main())
