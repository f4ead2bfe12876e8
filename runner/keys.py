"""Cache keys from what a cell uses: named parts, each a digest of one input.

A save cell's key is made of the saver's environment, the scenario (its file and every
helper file beside it that it imports), the format and the worker components the save
runs (:mod:`runner.components`). A load cell's key is made of the artifact's *content*
digest (not the save's key: a save recomputed into the same bytes keeps its loads), the
loader's environment, the format and variant, the worker components the load runs, and
the scenario only when the variant imports it (``custom_objects``). No tolerance: the
worker observes and the host judges (runner/judge.py), so a tolerance change re-judges
stored observations and runs nothing. The process harness enters no key.

Every record keeps its parts (``Record.key_parts``), so a planner can say which input
changed (:func:`changed_parts`), and ``--dry-run`` prints exactly that.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from runner import components
from runner.codehash import CACHE_PROTOCOL, code_digest, source_digest

__all__ = ["changed_parts", "key_of", "load_key", "save_key", "scenario_digest", "worker_digest"]


# A scenario's top-level constants that only the host reads (its judge's tolerances): not
# part of the scenario's digest.
HOST_ONLY = ("ATOL", "RTOL")


def key_of(phase: str, parts: Mapping[str, str]) -> str:
    """The key of a cell of ``phase`` made of ``parts`` (names and digests)."""
    return hashlib.sha256(json.dumps([f"cache-protocol:{CACHE_PROTOCOL}", phase, sorted(parts.items())])
                          .encode()).hexdigest()


def _imported_helpers(path: Path) -> list[Path]:
    """The files beside ``path`` that it imports (``import x`` / ``from x import y`` /
    ``from . import x``, at any depth of the module), as the worker resolves them with the
    scenario's directory first on ``sys.path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(a.name for a in node.names)
    out = []
    for name in sorted(names):
        for candidate in (path.parent / f"{name}.py", path.parent / name / "__init__.py"):
            if candidate.is_file():
                out.append(candidate)
                break
    return out


@functools.lru_cache(maxsize=512)
def _scenario_digest(path: str, _stamp: tuple[tuple[str, int, int], ...]) -> str:
    seen: dict[str, str] = {}
    todo = [Path(path)]
    while todo:
        p = todo.pop()
        if str(p) in seen:
            continue
        # The tolerances are the host's (they enter load keys as "tolerance"), not the saver's.
        seen[str(p)] = (source_digest(p.read_text(encoding="utf-8"), str(p), without=HOST_ONLY)
                        if str(p) == path else code_digest(p))
        todo.extend(_imported_helpers(p))
    root = Path(path).parent
    lines = [f"{Path(p).relative_to(root).as_posix() if Path(p).is_relative_to(root) else p}={d}"
             for p, d in sorted(seen.items())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def scenario_digest(path: Path) -> str:
    """The behaviour digest of a scenario file and of every helper file it imports
    (transitively), so editing a shared helper recomputes the scenarios that use it."""
    path = Path(path).resolve()
    stamp = []
    for p in sorted({path, *path.parent.glob("*.py"), *path.parent.glob("*/__init__.py")}):
        st = p.stat()
        stamp.append((str(p), st.st_mtime_ns, st.st_size))
    return _scenario_digest(str(path), tuple(stamp))


def save_key(env_fingerprint: str, scenario_sha256: str, fmt: str) -> tuple[str, dict[str, str]]:
    """``scenario_sha256``: :func:`scenario_digest` of the scenario (``Scenario.sha256``)."""
    parts = {"env": env_fingerprint, "scenario": scenario_sha256, "format": fmt,
             **components.cell_parts("save", fmt)}
    return key_of("save", parts), parts


def load_key(artifact_sha256: str | None, env_fingerprint: str, scenario_sha256: str, fmt: str, variant: str
             ) -> tuple[str, dict[str, str]]:
    """No tolerance: a load observes, the host judges (runner/judge.py ``judged_with``)."""
    parts = {"artifact": artifact_sha256 or "", "env": env_fingerprint, "format": fmt, "variant": variant,
             **components.cell_parts("load", fmt, variant)}
    if "custom_objects" in variant.split("+"):
        parts["scenario"] = scenario_sha256  # only this variant imports the scenario
    return key_of("load", parts), parts


def worker_digest(parts: Mapping[str, str]) -> str:
    """One digest of the worker components among ``parts`` (``Record.worker_sha256``)."""
    return hashlib.sha256(json.dumps(sorted((k, v) for k, v in parts.items() if k.startswith("worker:")))
                          .encode()).hexdigest()


def changed_parts(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The names of the parts that differ (added, removed or changed); ``["key scheme"]``
    for a record made before keys had parts."""
    if not old:
        return ["key scheme"]
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
