"""Benchmark the matrix runner on real stacks and print a table.

    nox -s bench                                  # default: tf2.15,keras3.15-jax
    nox -s bench -- --stacks tf2.15,tf2.18 --cold # --cold: an empty uv cache too (downloads)

Each figure is one wall-clock measurement of ``python -m runner`` in a fresh temporary
store (and, with ``--cold``, a fresh uv cache), so the numbers include process start,
environment builds, TensorFlow imports and the report. Figures go in docs/benchmarks.md
with the command that produced them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stacks", default="tf2.15,keras3.15-jax")
    parser.add_argument("--cold", action="store_true", help="also use an empty uv cache")
    args = parser.parse_args()
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


if __name__ == "__main__":
    sys.exit(main())
