"""Test-only: compare two matrix stores cell by cell (the docker runtime's against the venv's).

    python3 tests/docker/compare_runs.py DOCKER_STORE VENV_STORE [--catalog runner/stacks.toml]

For every record both stores hold (env, save, load, remedy; keyed by type and cell id):
outcome, diagnosis category (runner.diagnose) and max_abs_diff. Prints a per-Python table
(the stack that ran the cell: the saver of a save, the loader of a load), every difference,
and each stack's environment (interpreter, installed versions) differences. Exit 1 on an
outcome or category difference.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.diagnose import diagnose
from runner.records import Record, Store
from runner.stacks import load_catalog


def category(rec: Record) -> str | None:
    diag = diagnose(rec)
    return diag.category if diag else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("docker_store", type=Path)
    ap.add_argument("venv_store", type=Path)
    ap.add_argument("--catalog", type=Path, default=Path(__file__).resolve().parents[2] / "runner/stacks.toml")
    args = ap.parse_args()
    python_of = {s.id: s.python for s in load_catalog(args.catalog)}
    stores = {}
    for name, root in (("docker", args.docker_store), ("venv", args.venv_store)):
        stores[name] = {(r.record_type, r.cell_id): r for r in Store(root).iter_records()}
    docker, venv = stores["docker"], stores["venv"]
    only = {"docker": sorted(set(docker) - set(venv)), "venv": sorted(set(venv) - set(docker))}
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    diffs: list[str] = []
    numeric: list[str] = []
    hard = 0
    for key in sorted(set(docker) & set(venv)):
        d, v = docker[key], venv[key]
        runner = d.loader or d.saver or d.stack
        row = rows[(python_of.get(runner, "?"), runner)]
        if d.record_type == "env":
            continue
        row["cells"] += 1
        row[f"{d.outcome.value}"] += 1
        same = d.outcome == v.outcome and category(d) == category(v)
        if same:
            row["equal"] += 1
        else:
            hard += 1
            diffs.append(f"{key[1]}: docker {d.outcome.value}/{category(d)} "
                         f"({(d.error.message if d.error else '')[:120]!r}) vs venv {v.outcome.value}/"
                         f"{category(v)} ({(v.error.message if v.error else '')[:120]!r})")
        if d.max_abs_diff != v.max_abs_diff:
            row["diff_ne"] += 1
            numeric.append(f"{key[1]}: max_abs_diff docker {d.max_abs_diff!r} vs venv {v.max_abs_diff!r}")
    print("| Python | stack | docker python | venv python | cells | outcomes (docker) | equal | max_abs_diff differs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (py, stack), row in sorted(rows.items(), key=lambda kv: (tuple(int(x) for x in kv[0][0].split(".")), kv[0][1])):
        denv = docker.get(("env", f"env:{stack}"))
        venv_env = venv.get(("env", f"env:{stack}"))
        outcomes = ", ".join(f"{k} {n}" for k, n in sorted(row.items())
                             if k not in ("cells", "equal", "diff_ne"))
        print(f"| {py} | {stack} | {(denv.env.get('python') or denv.outcome.value) if denv else '-'} | "
              f"{venv_env.env.get('python') if venv_env else '-'} | {row['cells']} | {outcomes} | "
              f"{row['equal']}/{row['cells']} | {row['diff_ne']} |")
    print()
    for stack in sorted({k[1][4:] for k in docker if k[0] == "env"}):
        de, ve = docker.get(("env", f"env:{stack}")), venv.get(("env", f"env:{stack}"))
        if not de or not ve:
            continue
        # The installed versions and the interpreter; the docker_* keys exist in docker only.
        dd = {k: x for k, x in de.env.items() if k != "runtime" and not k.startswith("docker_")}
        vd = {k: x for k, x in ve.env.items() if k != "runtime" and not k.startswith("docker_")}
        changed = {n: (dd.get(n), vd.get(n)) for n in sorted(set(dd) | set(vd)) if dd.get(n) != vd.get(n)}
        print(f"env {stack}: docker {de.outcome.value} vs venv {ve.outcome.value}; "
              f"differing (docker, venv): {changed or 'none'}")
    for side, keys in only.items():
        if keys:
            print(f"only in {side}: {len(keys)} records, e.g. {keys[:5]}")
    print(f"outcome/category differences: {hard}")
    for line in diffs:
        print("  " + line)
    print(f"max_abs_diff differences: {len(numeric)}")
    for line in numeric[:40]:
        print("  " + line)
    return 1 if hard else 0


if __name__ == "__main__":
    sys.exit(main())
