"""Measure the docker runtime against venvs (figures for docs/benchmarks.md).

    python3 tests/docker/bench.py [--base compat-test/python:{python}] [--stack keras3.15-numpy] [--cells 24]

Prints: runtime image build cold and warm, container start cost, the stack's venv build
(venv vs docker, warm uv caches), and a batched save+load of the same cells in both
runtimes (wall time, framework import, mean per-cell time, ratio).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner import envs, execute
from runner import runtime_docker as rd
from runner.records import Store
from runner.stacks import load_catalog

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="compat-test/python:{python}")
    ap.add_argument("--stack", default="keras3.15-numpy")
    ap.add_argument("--python", default="3.11")
    ap.add_argument("--cells", type=int, default=24)
    ap.add_argument("--envs-dir", default=None, help="keep the stacks' venvs (and docker's uv cache) here")
    ap.add_argument("--cold-image", action="store_true", help="remove the runtime image first")
    args = ap.parse_args()
    eng = rd.engine()
    base = rd.base_image_name(args.python, override=args.base)
    tag = rd.image_tag(eng.image(base).id, args.python)
    if args.cold_image and eng.image(tag) is not None:
        eng.client.images.remove(tag, force=True)
    t0 = time.monotonic()
    info = rd.ensure_image(eng, base, args.python)
    print(f"runtime image {info.tag}: {'built' if info.built else 'reused'} in {time.monotonic() - t0:.2f} s, "
          f"{eng.image(info.tag).attrs['Size'] / 1e6:.0f} MB (base {eng.image(base).attrs['Size'] / 1e6:.0f} MB)")
    eng._images.clear()
    t0 = time.monotonic()
    rd.ensure_image(eng, base, args.python)
    print(f"runtime image warm (tag lookup): {time.monotonic() - t0:.3f} s")
    starts = []
    for _ in range(5):
        t0 = time.monotonic()
        c = eng.client.containers.run(info.id, ["compat-python", "-c", "pass"], detach=True, network_mode="none",
                                      read_only=True, tmpfs={"/tmp": ""}, init=True, user=rd.NOBODY,
                                      cap_drop=["ALL"], entrypoint=[])
        c.wait()
        c.remove(force=True)
        starts.append(time.monotonic() - t0)
    print(f"container start+run+remove (python -c pass): median {statistics.median(starts):.2f} s "
          f"(min {min(starts):.2f}, max {max(starts):.2f})")

    stack = next(s for s in load_catalog() if s.id == args.stack)
    stack = dataclasses.replace(stack, python=args.python)
    with tempfile.TemporaryDirectory(prefix="compat-bench-") as tmp:
        per: dict[str, dict[str, float]] = {}
        for runtime in ("venv", "docker"):
            store = Store(Path(tmp) / runtime, envs_dir=Path(args.envs_dir or Path(tmp) / "envs"))
            t0 = time.monotonic()
            senv = envs.ensure_env(stack, store, runtime=rd.RuntimeSettings(runtime, args.base))
            assert senv.ok, senv.reason
            build = time.monotonic() - t0
            names = ["dense", "cnn", "multi_io", "embedding"]
            cells = [{"cell_id": f"save:{i}", "scenario": names[i % 4],
                      "scenario_path": str(SCENARIOS / f"{names[i % 4]}.py"), "format": "keras" if i % 2 else "h5",
                      "artifact_dir": str(Path(tmp) / runtime / "art" / str(i))} for i in range(args.cells)]
            for phase in ("save", "load"):
                if phase == "load":
                    cells = [{**c, "cell_id": c["cell_id"].replace("save", "load"), "variant": "default",
                              "atol": 1e-6, "rtol": 1e-6} for c in cells]
                t0 = time.monotonic()
                res = list(execute.run_cells(senv.python or "", phase, cells, workdir=Path(tmp) / runtime / phase,
                                             env=execute.child_env(stack.env_dict), keras_module=stack.keras_module,
                                             spawn=senv.spawn, cell_timeout=120))
                wall = time.monotonic() - t0
                ok = sum(r["outcome"] == "ok" for r in res)
                cell_s = sum(r["duration_s"] or 0 for r in res)
                per[f"{phase}"] = per.get(phase, {})
                per[phase][runtime] = wall
                per[phase][runtime + "_cells"] = cell_s
                print(f"{runtime:6} {phase}: {len(res)} cells ({ok} ok) wall {wall:.2f} s, sum of cell times "
                      f"{cell_s:.2f} s, per cell {cell_s / len(res) * 1000:.0f} ms; overhead (wall - cells) "
                      f"{wall - cell_s:.2f} s")
            print(f"{runtime:6} env build (warm uv cache of its runtime): {build:.1f} s")
        for phase in ("save", "load"):
            p = per[phase]
            print(f"{phase}: docker/venv wall {p['docker'] / p['venv']:.2f}x, per-cell "
                  f"{p['docker_cells'] / p['venv_cells']:.2f}x")
        root = rd.docker_envs_root(Path(args.envs_dir or Path(tmp) / "envs"))
        du = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and f.stat().st_nlink == 1) / 1e6
        print(f"docker envs dir files with a single link (not shared with the uv cache): {du:.0f} MB")


if __name__ == "__main__":
    main()
