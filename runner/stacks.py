"""The stack catalog: loading, validation, selection, and finding interpreters.

Stdlib only: the noxfile imports this at collection time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CATALOG",
    "CatalogError",
    "Stack",
    "find_python",
    "find_uv",
    "load_catalog",
    "natural_key",
    "select",
    "stack_key",
]

DEFAULT_CATALOG = Path(__file__).with_name("stacks.toml")
KERAS_MODULES = ("auto", "tf.keras", "keras")
RUNTIMES = ("venv", "docker")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.+_-]{0,63}$")
_PYTHON_RE = re.compile(r"^(\d+)\.(\d+)$")
_ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_KEYS = {
    "id": str,
    "python": str,
    "requirements": list,
    "why": dict,
    "env": dict,
    "keras_module": str,
    "tags": list,
    "description": str,
    "runtime": str,
    "image": str,
    "sibling_of": str,
    "remedy": str,
}
_REQUIRED = ("id", "python", "requirements")


class CatalogError(ValueError):
    """A catalog entry is invalid; the message names the file, the entry and the key."""


@dataclasses.dataclass(frozen=True)
class Stack:
    """One isolated runtime: a TF/Keras release, its Python, pins and env vars."""

    id: str
    python: str
    requirements: tuple[str, ...]
    why: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    keras_module: str = "auto"
    tags: tuple[str, ...] = ()
    description: str = ""
    runtime: str = "venv"
    image: str = ""  # docker runtime: the base image ("" = python:X.Y-slim-bookworm)
    # A sibling differs from the stack it names by one thing a user can do (load through
    # tf_keras, pin h5py<3, ...): ``remedy`` names that thing; the runner re-runs failing
    # cells of ``sibling_of`` here to verify it (runner/diagnose.py names the remedies).
    sibling_of: str = ""
    remedy: str = ""

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "python": self.python,
            "requirements": list(self.requirements),
            "why": dict(self.why),
            "env": dict(self.env),
            "keras_module": self.keras_module,
            "tags": list(self.tags),
            "description": self.description,
            "runtime": self.runtime,
            "image": self.image,
            "sibling_of": self.sibling_of,
            "remedy": self.remedy,
        }


@functools.lru_cache(maxsize=4096)  # a report sorts ~10^5 rows by a few dozen stack ids
def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``tf2.4 < tf2.15 < tf2.18-tfkeras`` as a human would."""
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


def stack_key(stack_id: str) -> tuple[Any, ...]:
    """Release order of stack ids, the order of every table: TensorFlow's stacks first
    (TF 1.15 -> 2.21, each variant and tf_keras sibling right after its TF), then standalone
    Keras 3 by version and backend, then any other id (a catalog of other names keeps its
    natural order)."""
    family = 0 if re.match(r"tf\d", stack_id) else 1 if re.match(r"keras\d", stack_id) else 2
    return (family, *natural_key(stack_id))


def _fail(path: Path, where: str, message: str) -> CatalogError:
    return CatalogError(f"{path}: {where}: {message}")


def _parse_stack(path: Path, index: int, raw: Any) -> Stack:
    where = f"stack #{index + 1}"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a table ([[stack]])")
    if isinstance(raw.get("id"), str):
        where = f"stack #{index + 1} ({raw['id']})"
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise _fail(path, where, f"unknown key {unknown[0]!r} (allowed: {', '.join(_KEYS)})")
    for key in _REQUIRED:
        if key not in raw:
            raise _fail(path, where, f"missing required key {key!r}")
    for key, typ in _KEYS.items():
        if key in raw and not isinstance(raw[key], typ):
            raise _fail(path, where, f"{key!r} must be a {typ.__name__}")
    sid = raw["id"]
    if not _ID_RE.match(sid):
        raise _fail(path, where, f"id {sid!r} must match {_ID_RE.pattern}")
    if not _PYTHON_RE.match(raw["python"]):
        raise _fail(path, where, f"python {raw['python']!r} must look like '3.11'")
    reqs = raw["requirements"]
    if not reqs or not all(isinstance(r, str) and r.strip() for r in reqs):
        raise _fail(path, where, "requirements must be a non-empty list of strings")
    why = raw.get("why", {})
    for req, reason in why.items():
        if req not in reqs:
            raise _fail(path, where, f"why names {req!r}, which is not in requirements")
        if not isinstance(reason, str) or not reason.strip():
            raise _fail(path, where, f"why[{req!r}] must be a non-empty string")
    for req in reqs[1:]:
        if req not in why:
            raise _fail(path, where, f"requirement {req!r} has no 'why' entry saying why it is there")
    env = raw.get("env", {})
    for name, value in env.items():
        if not _ENV_RE.match(name) or not isinstance(value, str):
            raise _fail(path, where, f"env {name!r} must be an UPPER_CASE name with a string value")
    keras_module = raw.get("keras_module", "auto")
    if keras_module not in KERAS_MODULES:
        raise _fail(path, where, f"keras_module must be one of {', '.join(KERAS_MODULES)}")
    runtime = raw.get("runtime", "venv")
    if runtime not in RUNTIMES:
        raise _fail(path, where, f"runtime must be one of {', '.join(RUNTIMES)}")
    image = raw.get("image", "")
    if "image" in raw and (runtime != "docker" or not image.strip() or any(c.isspace() for c in image)):
        raise _fail(path, where, "image names a docker base image (no spaces) and needs runtime = \"docker\"")
    tags = raw.get("tags", [])
    if not all(isinstance(t, str) and _ID_RE.match(t) for t in tags):
        raise _fail(path, where, "tags must be lower-case words")
    if ("sibling_of" in raw) != ("remedy" in raw):
        raise _fail(path, where, "'sibling_of' and 'remedy' go together (which stack, what differs)")
    if "remedy" in raw and not _ID_RE.match(raw["remedy"]):
        raise _fail(path, where, f"remedy {raw['remedy']!r} must be a lower-case word")
    return Stack(
        id=sid,
        python=raw["python"],
        requirements=tuple(reqs),
        why=tuple(sorted(why.items())),
        env=tuple(sorted(env.items())),
        keras_module=keras_module,
        tags=tuple(tags),
        description=raw.get("description", ""),
        runtime=runtime,
        image=image,
        sibling_of=raw.get("sibling_of", ""),
        remedy=raw.get("remedy", ""),
    )


def load_catalog(path: Path | str = DEFAULT_CATALOG) -> list[Stack]:
    """Read and validate a catalog; stacks come back in natural id order.

    Raises:
        CatalogError: unreadable TOML or an invalid entry (one line naming it).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None
    extra = sorted(set(data) - {"stack"})
    if extra:
        raise CatalogError(f"{path}: unknown top-level key {extra[0]!r} (only [[stack]] tables)")
    raw_stacks = data.get("stack", [])
    if not isinstance(raw_stacks, list) or not raw_stacks:
        raise CatalogError(f"{path}: no [[stack]] entries")
    stacks = [_parse_stack(path, i, raw) for i, raw in enumerate(raw_stacks)]
    seen: set[str] = set()
    for stack in stacks:
        if stack.id in seen:
            raise CatalogError(f"{path}: duplicate stack id {stack.id!r}")
        seen.add(stack.id)
    for stack in stacks:
        if stack.sibling_of and (stack.sibling_of not in seen or stack.sibling_of == stack.id):
            raise CatalogError(f"{path}: stack {stack.id!r}: sibling_of names {stack.sibling_of!r}, "
                               "which is not another stack of this catalog")
    return sorted(stacks, key=lambda s: natural_key(s.id))


def select(
    stacks: Sequence[Stack], ids: Iterable[str] = (), tags: Iterable[str] = ()
) -> list[Stack]:
    """Stacks named in ``ids`` or carrying any of ``tags``; all stacks when both are empty.

    Raises:
        CatalogError: an id or tag that matches nothing (a typo must not select nothing).
    """
    ids, tags = list(ids), list(tags)
    known = {s.id for s in stacks}
    for sid in ids:
        if sid not in known:
            raise CatalogError(f"unknown stack {sid!r} (known: {', '.join(sorted(known, key=natural_key))})")
    all_tags = {t for s in stacks for t in s.tags}
    for tag in tags:
        if tag not in all_tags:
            raise CatalogError(f"unknown tag {tag!r} (known: {', '.join(sorted(all_tags))})")
    if not ids and not tags:
        return list(stacks)
    return [s for s in stacks if s.id in ids or set(s.tags) & set(tags)]


# ----------------------------------------------------------------------- interpreters

_python_cache: dict[str, str | None] = {}


# Prints "X.Y" and the *base* interpreter: a venv's python (e.g. nox's own session venv,
# first on PATH inside a session) must not become the base of a stack's venv.
_PROBE = """
import os, sys
exe = sys.executable
if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
    base = os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])
    exe = base if os.path.exists(base) else exe
print("%d.%d" % sys.version_info[:2])
print(exe)
"""


def _probe_interpreter(candidate: str, version: str) -> str | None:
    """Run a candidate; return its base interpreter if it is CPython ``version``."""
    try:
        out = subprocess.run(
            [candidate, "-c", _PROBE],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln.strip() for ln in out.stdout.splitlines()]
    if out.returncode != 0 or len(lines) < 2 or lines[0] != version:
        return None
    return lines[1]


def _pyenv_candidates(version: str) -> list[str]:
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    versions = Path(root) / "versions"
    if not versions.is_dir():
        return []
    found = []
    for entry in versions.iterdir():
        m = re.match(rf"^{re.escape(version)}\.(\d+)$", entry.name)
        if m and (entry / "bin" / "python").exists():
            found.append((int(m.group(1)), str(entry / "bin" / "python")))
    return [p for _, p in sorted(found, reverse=True)]


def find_uv() -> list[str] | None:
    """The uv command: ``$UV``, ``uv`` on PATH, the binary of the ``uv`` package this
    interpreter has (nox's own), or ``python -m uv``. The one uv discovery (noxfile too)."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    found = shutil.which("uv")
    if found:
        return [found]
    with contextlib.suppress(ImportError, FileNotFoundError):
        import uv

        return [str(uv.find_uv_bin())]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True,
                          timeout=60, check=False).returncode == 0:
            return [sys.executable, "-m", "uv"]
    return None


def _uv_candidate(version: str) -> list[str]:
    uv = find_uv()
    if uv is None:
        return []
    try:
        out = subprocess.run(
            [*uv, "python", "find", "--no-python-downloads", version],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    path = out.stdout.strip()
    return [path] if out.returncode == 0 and path else []


def find_python(version: str) -> str | None:
    """Absolute path of a CPython ``X.Y`` interpreter, or None.

    Order: ``$COMPAT_PYTHON_X_Y``, ``pythonX.Y`` on PATH (verified by running it, since
    pyenv shims exist but fail unless ``PYENV_VERSION`` names them), ``$PYENV_ROOT``
    (default ``~/.pyenv``) ``/versions/X.Y.*``, newest patch first, then
    ``uv python find``.
    """
    if version in _python_cache:
        return _python_cache[version]
    candidates: list[str] = []
    override = os.environ.get("COMPAT_PYTHON_" + version.replace(".", "_"))
    if override:
        candidates.append(override)
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    candidates += _pyenv_candidates(version)
    result = None
    for candidate in candidates:
        result = _probe_interpreter(candidate, version)
        if result:
            break
    if result is None:
        for candidate in _uv_candidate(version):
            result = _probe_interpreter(candidate, version)
            if result:
                break
    _python_cache[version] = result
    return result
