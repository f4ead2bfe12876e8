"""The worker's components, and which of them each kind of cell runs.

A record's cache key covers what its cell executes, not the whole worker file: each
top-level definition of ``runner/_worker/worker.py`` belongs to one named component
(:data:`COMPONENTS`, checked to be complete by tests/test_components.py), and a cell's key
holds, per component, the digest of the definitions its code can reach by name from the
cell's roots (:func:`runner.codehash.closure`). Dispatch tables (``SAVERS``, ``LOADERS``,
``VARIANT_STEPS``) are followed only for the cell's own format and variant flags, so an
edit to the h5 loader changes the keys of h5 loads only.

The ``harness`` (process start, protocol files, watchdog, heartbeat) is reachable from no
cell's roots, so editing it recomputes nothing; a test proves that for every kind of cell.
Whatever can change an outcome must be reachable from a cell's roots: the per-cell state
reset (``_GlobalState``), the framework import and the seed are roots of every cell.

``runner/components.lock.json`` holds every component's digest; lint runs
``python -m runner components --check``, so a change of any key is a reviewed diff.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from runner import codehash

__all__ = [
    "CHECK_FILES",
    "CHECK_WORKER_PATH",
    "COMPONENTS",
    "LOCK_PATH",
    "WORKER_PATH",
    "cell_parts",
    "check_file_parts",
    "check_parts",
    "component_digests",
    "component_of",
    "probe_parts",
    "unassigned",
]

WORKER_DIR = Path(__file__).resolve().parent / "_worker"
WORKER_PATH = WORKER_DIR / "worker.py"
CHECK_WORKER_PATH = WORKER_DIR / "check_worker.py"
LOCK_PATH = Path(__file__).resolve().parent / "components.lock.json"

_STDLIB = ("__future__", "faulthandler", "gc", "importlib", "inspect", "json", "os", "platform", "random",
           "shutil", "signal", "sys", "time", "traceback", "warnings")

# component -> the worker's top-level names in it (every name in exactly one).
COMPONENTS: dict[str, tuple[str, ...]] = {
    # Not in any cell key: starting, feeding and supervising the process.
    "harness": ("PROTOCOL_VERSION", "PHASES", "COMMANDS", "WORKER_OUTCOMES", "REQUEST_FILE",
                "EVENTS_FILE", "LOG_FILE", "EXIT_OK", "EXIT_BAD_REQUEST", "EXIT_ORPHANED", "_Watchdog",
                "_WATCHDOG", "_Events", "_json_default", "_set_parent_death_signal", "HEARTBEAT_FILE",
                "HEARTBEAT_STALE_S", "_parent_gone", "run_cell", "_swallowed_timeout", "_usage", "main",
                "serve", "__main__"),
    "stdlib": _STDLIB,
    # Every cell: the framework import, per-cell isolation, error capture, predictions.
    "runtime": ("CellTimeout", "NotApplicable", "_Framework", "_truncate", "error_info", "_warnings_list",
                "MESSAGE_LIMIT", "TRACEBACK_LIMIT", "_keras_version", "_backend_name", "import_framework",
                "_dist_versions", "env_info", "VERSIONED_DISTS", "_GlobalState", "FULL_GC_EVERY", "_parameters",
                "_mixed_precision", "_get_policy", "_set_policy", "_seed_everything", "DEFAULT_SEED",
                "load_scenario", "SCENARIO_MODULE_PREFIX", "_as_list", "_model_input", "predict_outputs",
                "_tf_major", "guarded_cell", "_fit_one_step", "FORMATS", "MODEL_FILES", "REFERENCE_FILE",
                "SAVE_INFO_FILE", "_NoScope"),
    "save": ("save_cell", "_write_artifact", "_save_model", "SAVERS", "format_impossible",
             "_deterministic_weights", "sniff_artifact", "_replace_dir", "_raised_in"),
    "save.h5": ("_save_h5",),
    "save.savedmodel": ("_save_savedmodel",),
    "save.keras": ("_save_keras",),
    "save.json+weights": ("_save_json_weights",),
    "save.export": ("_save_export",),
    "save.signature": ("_export_keys", "_match_inputs", "_match_outputs"),
    "save.tf_checkpoint": ("_save_tf_checkpoint",),
    "save.keras+weights": ("_save_keras_weights_beside",),
    # Opt-in formats (OPT_IN_FORMATS: read by the host's catalog only).
    "formats.opt_in": ("OPT_IN_FORMATS", "_tf_checkpoint_impossible", "_only_default_load"),
    "load": ("load_cell", "_load_model", "LOADERS", "VARIANT_STEPS", "parse_variant", "VARIANT_FLAGS",
             "VARIANTS", "_load_with_load_model"),
    "load.h5": ("_load_h5",),
    "load.savedmodel": ("_load_savedmodel",),
    "load.keras": ("_load_keras",),
    "load.json+weights": ("_load_json_weights",),
    "load.inference": ("_load_for_inference", "_export_predictor", "_ordered_outputs"),
    "load.tf_checkpoint": ("_load_tf_checkpoint",),
    "load.keras+weights": ("_load_keras_weights_beside", "_file_digest"),
    "variant.custom_objects": ("_variant_custom_objects",),
    "variant.compile_false": ("_variant_compile_false",),
    "variant.unsafe": ("_variant_unsafe", "_safe_mode_scope", "_accepts"),
    "variant.tfsm": ("_variant_tfsm",),
    "variant.signature": ("_variant_signature", "_load_by_signature"),
    "observe": ("_encode_arrays",),
    "train": ("_resume_training", "_optimizer_steps"),
    # The names check_worker.py uses (``W.load_model`` ...): in check cells' keys only.
    "exports": ("load_model", "export_predictor", "seed_everything", "safe_mode_scope", "accepts", "tf_major",
                "truncate"),
}

# Roots of every cell that runs in a worker (reached by the harness, not by the cell's code).
_CELL_ROOTS = ("guarded_cell", "import_framework", "_GlobalState", "DEFAULT_SEED")


def component_of(name: str) -> str:
    for component, names in COMPONENTS.items():
        if name in names:
            return component
    raise KeyError(f"the worker's {name!r} belongs to no component (runner/components.py)")


def unassigned(defs: Iterable[str]) -> tuple[list[str], list[str]]:
    """(names defined but in no component, names in a component but not defined)."""
    defs = set(defs)
    listed = [n for names in COMPONENTS.values() for n in names]
    return sorted(defs - set(listed)), sorted(set(listed) - defs)


def _defs() -> dict[str, codehash.Definition]:
    return codehash.file_definitions(WORKER_PATH)


def _group(reached: dict[str, str]) -> dict[str, str]:
    """Per component, the digest of the reached definitions in it: the key parts."""
    by: dict[str, list[str]] = {}
    for name, digest in reached.items():
        by.setdefault(component_of(name), []).append(f"{name}={digest}")
    return {f"worker:{c}": hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
            for c, lines in sorted(by.items())}


def cell_parts(phase: str, fmt: str, variant: str = "default") -> dict[str, str]:
    """The worker components a ``phase`` ("save"/"load") cell of ``fmt`` (and, for loads,
    ``variant``: "default" or flags joined by "+") runs, as key parts."""
    if phase == "save":
        reached = codehash.closure(_defs(), (*_CELL_ROOTS, "save_cell"), {"SAVERS": (fmt,)})
    elif phase == "load":
        flags = () if variant in ("", "default") else tuple(variant.split("+"))
        reached = codehash.closure(_defs(), (*_CELL_ROOTS, "load_cell"),
                                   {"LOADERS": (fmt,), "VARIANT_STEPS": flags})
    else:
        raise ValueError(f"no cells of phase {phase!r}")
    return _group(reached)


def probe_parts() -> dict[str, str]:
    """What a probe runs: the framework import and the versions it reports."""
    return _group(codehash.closure(_defs(), ("import_framework", "env_info")))


def _attributes_of(path: Path, alias: str) -> set[str]:
    """The names ``path`` uses as ``<alias>.<name>`` (found in its syntax tree)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == alias}


def _check_worker_roots() -> tuple[str, ...]:
    """The worker names a check cell depends on: what check_worker.py uses as ``W.<name>``,
    in its load cells and in ``inspect`` (the host's reading of the file, run as a process:
    the host calls no worker function itself, so nothing else of the worker decides a
    check's answer)."""
    return tuple(sorted(_attributes_of(CHECK_WORKER_PATH, "W") - {"serve"}))  # serve: the harness


# The files of check's own cells besides worker.py: the check worker, the config scan and
# wire reader it loads, the graph scan and its allowlist (the host's refusal, read by the
# check worker's ``inspect``). Each is a component of its own, in every check key and in
# the lock, so a change to the refusal code is a reviewed diff and never a stale verdict.
CHECK_FILES = ("check_worker.py", "config_scan.py", "pbwire.py", "graph_scan.py", "graph_ops.json")


def check_file_parts(folder: Path = WORKER_DIR) -> dict[str, str]:
    """``check:<file>`` -> its digest (code: :func:`codehash.code_digest`; data: sha256)."""
    return {f"check:{name}": (codehash.code_digest(folder / name) if name.endswith(".py")
                              else hashlib.sha256((folder / name).read_bytes()).hexdigest())
            for name in CHECK_FILES}


def check_parts(fmt: str, variant: str = "default") -> dict[str, str]:
    """What a ``check`` cell of ``fmt`` in ``variant`` runs, as key parts: the worker
    components it reaches through check_worker.py (following, like a matrix load, only its
    own format's reader and its own variant's flags) and the check files."""
    flags = () if variant in ("", "default") else tuple(variant.split("+"))
    return {**_group(codehash.closure(_defs(), (*_CELL_ROOTS, *_check_worker_roots()),
                                      {"LOADERS": (fmt,), "VARIANT_STEPS": flags})),
            **check_file_parts()}


def component_digests() -> dict[str, str]:
    """Every component's digest over all its definitions (the committed lock's content)."""
    defs = _defs()
    out = {}
    for component, names in COMPONENTS.items():
        lines = sorted(f"{n}={defs[n].digest}" for n in names if n in defs)
        out[f"worker:{component}"] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return out


def _lock_text() -> str:
    return json.dumps({"cache_protocol": codehash.CACHE_PROTOCOL,
                       "components": {**component_digests(), **check_file_parts()}},
                      indent=1, sort_keys=True) + "\n"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("components", help="show or check the lock of the worker's component digests",
                       description="Each cache key covers the worker components its cell runs; "
                                   "runner/components.lock.json records their digests so that a "
                                   "change of any key shows up as a reviewed diff.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the lock differs from the code")
    mode.add_argument("--write", action="store_true", help="rewrite the lock from the code")
    p.set_defaults(func=cmd_components)


def cmd_components(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    missing, stale = unassigned(_defs())
    if missing or stale:
        for name in missing:
            print(f"runner: error: worker.py's {name!r} belongs to no component "
                  "(add it to COMPONENTS in runner/components.py)", file=sys.stderr)
        for name in stale:
            print(f"runner: error: COMPONENTS lists {name!r}, which worker.py does not define", file=sys.stderr)
        return 2
    text = _lock_text()
    if args.write:
        LOCK_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {LOCK_PATH.name}", file=out)
        return 0
    if args.check:
        try:
            old = json.loads(LOCK_PATH.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        new = json.loads(text)
        changed = sorted(k for k in set(new["components"]) | set(old.get("components", {}))
                         if new["components"].get(k) != old.get("components", {}).get(k))
        if old.get("cache_protocol") != new["cache_protocol"]:
            changed.insert(0, "cache_protocol")
        if changed:
            print(f"components changed since {LOCK_PATH.name}: {', '.join(changed)}; the records of the cells "
                  "that run them will be recomputed. Review, then `python -m runner components --write`.",
                  file=out)
            return 1
        print(f"{LOCK_PATH.name} is current ({len(new['components'])} components)", file=out)
        return 0
    for name, digest in sorted(json.loads(text)["components"].items()):
        print(f"{digest[:12]}  {name}", file=out)
    return 0
