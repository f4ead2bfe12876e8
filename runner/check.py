"""``python -m runner check MODEL``: is *my* model safe to load in these releases?

The host reads the model file without running anything from it (format, integrity,
provenance, a SavedModel's graph ops) and checks ``--inputs`` before any stack runs: its own
checks (sizes, links, FIFOs, the HDF5 superblock, the zip's declared sizes) in this process,
and the parsing through the check worker's ``inspect`` process (:func:`inspect_op`: the
reader the stacks scan the file with, under the host's interpreter), so the host imports
and calls nothing of the worker files. Each selected stack loads the file in
``runner/_worker/check_worker.py`` (the matrix worker's loading code), through the matrix's
executor and record schema, with a scrubbed environment and a throwaway HOME/TMPDIR. A check
cell is a load cell of the user's file: the matrix's key scheme (:func:`runner.cells.check_key`),
reuse-or-rerun decision (:func:`runner.cells.why_rerun`), remedy targets
(:func:`runner.diagnose.remedy_targets`) and comparison (:func:`runner.judge.compare_outputs`).
What is check's own: provenance, input validation, the reference, the safety policy. The
check worker refuses a file whose stored config carries code (Lambda bytecode, imported
functions) unless ``--unsafe``; the host refuses a SavedModel graph with ops that may touch
files outside the sandbox unless ``--unsafe``.

Reference: the ``y0..`` arrays of ``--inputs``; else the catalog stack matching the file's
provenance (same Keras, else TF, major.minor), added to the run when not selected; else
none: the stacks that loaded are cross-checked and every row says "unverified". Comparison
(numpy, :func:`compare`): per output, ``|Δ| ≤ atol + rtol·|ref|`` with ``rtol = k`` and
``atol = k·max|ref|``, k from the output dtype (:data:`DTYPE_K`); ``--atol/--rtol`` override.

Exit status: 0 every selected stack loads the model and matches the reference; 1 otherwise;
2 bad input (one ``runner: error:`` line; no report).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import dataclasses
import functools
import hashlib
import html
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runner import cells, components, diagnose, execute, judge, runtime_docker, safefs
from runner.cells import record_from_result, why_rerun
from runner.cli_options import add_common, add_stacks, add_workers
from runner.diagnose import major_minor, variant_name
from runner.envs import RuntimeSettings, StackEnv, ensure_env
from runner.matrix import build_env, fan_out, run_stack_cells
from runner.records import Outcome, Record, Store, atomic_write_set, default_store_root, first_line, load_cell_id
from runner.stacks import DEFAULT_CATALOG, Stack, load_catalog, natural_key, select

__all__ = ["CHECK_WORKER_PATH", "CheckInputError", "Options", "add_parser", "compare", "inspect_model",
           "run_check", "tolerance"]

# The check worker: the stacks' loader of a user's file, and the host's reader of it
# (``inspect``, run as a process: the host imports and calls nothing of the worker files).
CHECK_WORKER_PATH = components.CHECK_WORKER_PATH
DEFAULT_STORE = ".matrix-check"
DEFAULT_TAGS = ("quick",)
SAVER = "model"  # the records' saver field: the file the user brought
SEED = cells.DEFAULT_SEED  # the matrix worker's seed
USER_ERRORS = {"check_worker.BadInputs": "inputs file {inputs} does not fit the model: ",
               "check_worker.CustomObjectsError": "custom-objects file {custom} fails to import: ",
               "check_worker.NoSignature": "cannot generate inputs: "}
REFUSED = cells.REFUSED  # the error type of a load the safety policy refused
EXIT_OK, EXIT_FAIL = 0, 1
EXTRA_SYS_PATH: tuple[str, ...] = ()  # a seam for the fast tier's fake frameworks
# k per output dtype: float32 sums over ~1e4-1e5 terms (a conv layer) reordered by another
# kernel differ by ~sqrt(n)·eps ≈ 2.5e-5 of the output scale; k leaves ~4x headroom, while a
# changed computation (padding, semantics) is ~1e-1 of the scale, 1000x above it.
DTYPE_K = {"float16": 1e-2, "bfloat16": 5e-2, "float32": 1e-4, "float64": 1e-9}
# The only host variables a stack sees (no credentials, tokens, proxies or user config).
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
UNVERIFIED = "loads (unverified: no reference)"
GRAPH_REFUSAL = ("refused on the host before loading: the SavedModel's graph has {found}. Loading or calling it "
                 "could touch this machine's files; it runs only in the docker sandbox (--sandbox on) or with "
                 "--unsafe if you trust the file.")


def check_code_digest() -> str:
    """One digest of check's own files (``Record.worker_sha256`` of nothing but them): the
    check worker, the config scan and wire reader it loads, the graph scan and its
    allowlist. Each is also a named part of every check key
    (:func:`runner.components.check_file_parts`): a change to any is a new key, never a
    stale cached verdict."""
    parts = components.check_file_parts(CHECK_WORKER_PATH.parent)
    return hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(parts.items())).encode()).hexdigest()


INSPECT_TIMEOUT_S = 600.0  # one inspect request (a 1 GiB saved_model.pb is parsed in it)


def inspect_op(op: str, **args: Any) -> dict[str, Any]:
    """The check worker's answer to one ``inspect`` request about a user's file: run as
    ``python -I check_worker.py inspect`` under the host's interpreter (no framework, no
    host variables), request on stdin, answer on stdout. The reading code is the one the
    stacks use, and the host calls none of it in its own process.

    Raises:
        CheckInputError: the reader died or overran :data:`INSPECT_TIMEOUT_S` (on a file
            built to exhaust it), or answered something else than one JSON object.
    """
    import subprocess

    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    try:
        proc = subprocess.run([sys.executable, "-I", str(CHECK_WORKER_PATH), "inspect"],
                              input=json.dumps({"op": op, **args}), capture_output=True, text=True, env=env,
                              timeout=INSPECT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise CheckInputError(f"{args.get('path')}: reading it took over {INSPECT_TIMEOUT_S:g} s "
                              "(a file built to exhaust its reader?)") from None
    try:
        answer = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        tail = first_line((proc.stderr.strip().splitlines() or [""])[-1])[:200]
        raise CheckInputError(f"{args.get('path')}: its reader failed (exit {proc.returncode}): {tail}")
    return answer


def _sniff(path: Path) -> str:
    return str(inspect_op("sniff", path=str(path))["kind"])


def _stored_config(path: Path, fmt: str) -> tuple[dict[str, str], Any]:
    """(provenance, parsed architecture or None) of a model file, read by the check worker's
    reader (the one the stacks scan it with: bounded, no recursion).

    Raises:
        CheckInputError: a config that cannot be parsed within the limits.
    """
    answer = inspect_op("stored_config", path=str(path), format=fmt)
    if "error" in answer:
        raise CheckInputError(f"model file {path}: its stored config cannot be read safely: "
                              f"{answer['error']['message']}")
    return {str(k): str(v) for k, v in answer["provenance"].items()}, answer.get("config")


class CheckInputError(ValueError):
    """Something the user supplied cannot be used (the message says what and why)."""


# ============================================================== the model file (host)


@dataclasses.dataclass(frozen=True)
class ModelFile:
    path: Path
    format: str  # a matrix format: h5, keras, savedmodel, json+weights, export
    sha256: str
    size: int
    provenance: dict[str, str]
    config: dict[str, Any] | None = None  # the architecture, when readable without h5py
    weights: Path | None = None
    graph_ops: str = ""  # a SavedModel's graph ops not known to be inert (graph_scan.describe), "" if none

    @property
    def model_id(self) -> str:
        return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.path.name)[:40] or 'model'}-{self.sha256[:12]}"


# Caps on the host's work for one check (printed by ``check --help``): the host streams the
# model and never holds more than one config in memory.
MAX_MODEL_BYTES = 16 << 30  # the model file or SavedModel tree, plus its weights file
MAX_UNZIPPED_BYTES = 16 << 30  # a .keras zip's members, as declared (zipfile reads no more)
MAX_CONFIG_BYTES = 64 << 20  # one stored config (config.json, model_config, architecture JSON)
MAX_INPUTS_BYTES = 2 << 30  # --inputs: the .npz file and its arrays, decompressed
MAX_SAVED_MODEL_PB = 1 << 30  # a SavedModel's saved_model.pb (its graphs, parsed on the host)
MAX_OUTPUTS_BYTES = 2 << 30  # a stack's outputs.npz, read back from its (worker-writable) folder


def _kind_of(path: Path, what: str) -> os.stat_result:
    """stat of a user-given path: a regular file or a directory, else :class:`CheckInputError`
    (a FIFO would block the host, a device would never end)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckInputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise CheckInputError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(
            st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise CheckInputError(f"{what} {path} is {kind}: only regular files and SavedModel directories are read")
    return st


def _tree(root: Path, what: str) -> list[tuple[str, Path, int]]:
    """``(relative name, path, size)`` of a model file, or of every file of a SavedModel tree
    in sorted order. Inside a tree nothing is followed: a symlink, FIFO or device is refused."""
    st = _kind_of(root, what)
    if stat.S_ISREG(st.st_mode):
        return [(".", root, st.st_size)]
    out = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            p = Path(folder) / name
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise CheckInputError(f"{what} {root} holds {p.relative_to(root)}, which is "
                                      f"{'a symbolic link' if stat.S_ISLNK(mode) else 'not a regular file'}: "
                                      "refused (a model tree is plain files and folders)")
            if stat.S_ISREG(mode):
                out.append((str(p.relative_to(root)), p, p.lstat().st_size))
        dirs.sort()
    return sorted(out)


def _digest(parts: Sequence[tuple[str, Sequence[tuple[str, Path, int]]]], copy_to: Path | None = None) -> str:
    """sha256 over ``(name, files)`` parts, streamed in 1 MiB chunks; with ``copy_to`` each
    file is copied there as it is read (``<part name>/<relative name>``), so what is copied
    is exactly what was hashed."""
    digest = hashlib.sha256()
    for part, files in parts:
        for rel, path, _size in files:
            digest.update(rel.encode() + b"\0")
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as src, ((copy_to / part / rel if rel != "." else copy_to / part).open("xb")
                                              if copy_to is not None else contextlib.nullcontext()) as dst:
                if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                    raise CheckInputError(f"{path} changed into a non-regular file while being read")
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    if dst is not None:
                        dst.write(chunk)
    return digest.hexdigest()


def _h5_check(path: Path, what: str) -> None:
    """Refused when the HDF5 superblock's end-of-file address is past the end (reads the
    superblock only)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        data = fh.read(64)
    version = data[8] if len(data) > 8 else -1
    offsets = {0: 13, 1: 13, 2: 9, 3: 9}.get(version)
    width = data[offsets] if offsets is not None and len(data) > offsets else 0
    at = (24 + 2 * width + (4 if version == 1 else 0)) if version in (0, 1) else 12 + 2 * width
    if width not in (2, 4, 8) or len(data) < at + width:
        raise CheckInputError(f"{what} {path} is truncated or damaged: its HDF5 superblock is incomplete")
    eof = int.from_bytes(data[at:at + width], "little")
    if eof > size:
        raise CheckInputError(f"{what} {path} is truncated: the HDF5 superblock says {eof} bytes, "
                              f"the file has {size}")


def _saved_model(path: Path) -> tuple[str, dict[str, str], str]:
    """A SavedModel is Keras's when ``keras_metadata.pb`` (TF >= 2.5) or the object graph of
    ``saved_model.pb`` (TF 2.0-2.4) holds Keras metadata; otherwise it is an export."""
    answer = inspect_op("saved_model", path=str(path), max_bytes=MAX_SAVED_MODEL_PB)
    error = answer.get("error") or {}
    why = {"not_plain": f"SavedModel {path}: {error.get('message')}",
           "unreadable": f"SavedModel {path}: saved_model.pb cannot be read as a plain file ({error.get('message')})",
           "damaged": f"SavedModel {path} is truncated or damaged: saved_model.pb does not parse "
                      f"({error.get('message')})",
           "empty": f"SavedModel {path} is damaged: saved_model.pb is empty",
           "bad_config": f"model file {path}: its stored config cannot be read safely: {error.get('message')}",
           "bad_graph": f"SavedModel {path}: {error.get('message')}"}
    if error:
        raise CheckInputError(why.get(str(error.get("type")), f"SavedModel {path}: {error.get('message')}"))
    out = {str(k): str(v) for k, v in answer["provenance"].items()}  # keras_version, backend from the Keras metadata
    if answer.get("tensorflow_version"):
        out["tensorflow_version"] = str(answer["tensorflow_version"])
    meta = (path / "keras_metadata.pb").is_file()
    keras = meta or "keras_version" in out
    out["source"] = ("keras_metadata.pb and saved_model.pb" if meta else
                     "the object graph of saved_model.pb" if keras else "saved_model.pb")
    return ("savedmodel" if keras else "export"), out, str(answer.get("graph_ops") or "")


def _json_config(path: Path) -> dict[str, Any] | None:
    """The first Keras architecture JSON in an HDF5 file (its ``model_config`` attribute is
    stored as plain bytes), or None; searched in 1 MiB chunks, at most
    :data:`MAX_CONFIG_BYTES` of it decoded."""
    marker = b'{"class_name"'
    with path.open("rb") as fh:
        at, tail = 0, b""
        while chunk := fh.read(1 << 20):
            found = (tail + chunk).find(marker)
            if found >= 0:
                fh.seek(at - len(tail) + found)
                raw = fh.read(MAX_CONFIG_BYTES)
                break
            at += len(chunk)
            tail = chunk[-(len(marker) - 1):]
        else:
            return None
    try:
        value = json.JSONDecoder().raw_decode(raw.decode("utf-8", "replace"))[0]
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _zip_members(path: Path) -> list[str]:
    """The member names of a .keras zip whose declared sizes are within the caps and whose
    every member passes its CRC check (zipfile reads no more than a member declares)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > MAX_UNZIPPED_BYTES:
                raise CheckInputError(f"model file {path} unpacks to {total} bytes, over the cap of "
                                      f"{MAX_UNZIPPED_BYTES} (see check --help)")
            big = next((i for i in infos if i.filename in ("config.json", "metadata.json")
                        and i.file_size > MAX_CONFIG_BYTES), None)
            if big is not None:
                raise CheckInputError(f"model file {path}: its {big.filename} unpacks to {big.file_size} bytes, "
                                      f"over the cap of {MAX_CONFIG_BYTES} for a stored config (see check --help)")
            bad = zf.testzip()
            members = zf.namelist()
    except CheckInputError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise CheckInputError(f"model file {path} is truncated or damaged: not a readable zip ({exc})") from None
    if bad is not None:
        raise CheckInputError(f"model file {path} is damaged: member {bad} fails its CRC check")
    return members


def inspect_model(path: Path, weights: Path | None = None) -> ModelFile:
    """Detect the format from the content and read the provenance. Runs nothing from the
    file; reads it in bounded pieces (the caps above), never a FIFO, device or link inside a
    SavedModel tree.

    Raises:
        CheckInputError: missing, unknown format, truncated or damaged, over a cap.
    """
    _kind_of(path, "model file")
    kind = _sniff(path)
    prov: dict[str, str] = {}
    config = None
    graph_ops = ""
    if kind == "h5":
        _h5_check(path, "model file")
        fmt, config = "h5", _json_config(path)  # versions: h5py, in a stack
    elif kind == "keras_v3":
        fmt = "keras"
        if "config.json" not in _zip_members(path):
            raise CheckInputError(f"model file {path} is a zip but not a Keras v3 file (no config.json)")
        prov, config = _stored_config(path, fmt)
    elif kind == "savedmodel":
        fmt, prov, graph_ops = _saved_model(path)
    elif kind == "json":
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckInputError(f"model file {path} has {path.stat().st_size} bytes, over the cap of "
                                  f"{MAX_CONFIG_BYTES} for an architecture JSON (see check --help)")
        prov, config = _stored_config(path, "json+weights")
        if not isinstance(config, dict) or "class_name" not in config:
            raise CheckInputError(f"model file {path} is JSON but not a Keras model architecture (no class_name)")
        names = (f"{path.stem}.weights.h5", "model.weights.h5", f"{path.stem}.h5", "weights.h5")
        weights = weights or next((path.with_name(n) for n in names if path.with_name(n).is_file()), None)
        if weights is None:
            raise CheckInputError(f"{path} is an architecture JSON: its weights file was not found next to it; "
                                  "pass --weights FILE")
        if not weights.exists():
            raise CheckInputError(f"weights file {weights} is missing or not HDF5")
        if not stat.S_ISREG(_kind_of(weights, "weights file").st_mode) or _sniff(weights) != "h5":
            raise CheckInputError(f"weights file {weights} is missing or not HDF5")
        _h5_check(weights, "weights file")
        fmt = "json+weights"
    elif kind == "directory":
        raise CheckInputError(f"{path} is a directory without saved_model.pb: not a SavedModel")
    else:
        raise CheckInputError(f"cannot tell the model format of {path}: it is not HDF5, a .keras zip, a "
                              "SavedModel directory or a Keras architecture JSON (detected from its first bytes)")
    parts = _parts(path, weights)
    size = sum(n for _, files in parts for _, _, n in files)
    if size > MAX_MODEL_BYTES:
        raise CheckInputError(f"model {path} has {size} bytes, over the cap of {MAX_MODEL_BYTES} (see check --help)")
    return ModelFile(path=path.absolute(), format=fmt, sha256=_digest(parts), size=size,
                     provenance=prov if len(prov) > 1 else {}, config=config,
                     weights=weights.absolute() if weights is not None else None, graph_ops=str(graph_ops))


def _parts(path: Path, weights: Path | None) -> list[tuple[str, list[tuple[str, Path, int]]]]:
    """What a model is made of, each part under the name the stacks load it by."""
    return [("model", _tree(path, "model")), *([("weights", _tree(weights, "weights file"))] if weights else [])]


def stage(model: ModelFile, folder: Path) -> None:
    """Copy the model (and its weights file) into ``folder`` under the names the worker
    loads (``model.h5``, ``savedmodel/``, ..., ``model.weights.h5``), read-only; the copy is
    hashed as it is written and must be the file that was inspected. A folder from an
    earlier check is reused only while its contents still hash to the model's digest (a
    load outside the sandbox could have changed it).

    Raises:
        CheckInputError: the model changed since it was inspected.
    """
    names = {"model": cells.MODEL_FILES[model.format], "weights": "model.weights.h5"}
    if folder.is_dir() and not folder.is_symlink():
        with contextlib.suppress(CheckInputError, OSError):
            staged = [(part, _tree(folder / names[part], "staged model")) for part, _ in _parts(model.path,
                                                                                              model.weights)]
            if _digest(staged) == model.sha256:
                return
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        parts = _parts(model.path, model.weights)
        for part, files in parts:
            if files[0][0] != ".":  # a SavedModel tree: its folders first
                for rel, _, _ in files:
                    (tmp / names[part] / rel).parent.mkdir(parents=True, exist_ok=True)
        renamed = [(names[part], files) for part, files in parts]
        if _digest(renamed, copy_to=tmp) != model.sha256:
            raise CheckInputError(f"model {model.path} changed while it was being checked; run check again")
        for root, dirs, fnames in os.walk(tmp):
            for name in fnames:
                (Path(root) / name).chmod(0o444)
            for name in dirs:
                (Path(root) / name).chmod(0o755)
        tmp.chmod(0o755)
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def input_shapes(config: Mapping[str, Any] | None) -> list[list[int | None]] | None:
    """The batch shapes of a Keras architecture's inputs (Keras 2 and 3 configs), or None."""
    if not isinstance(config, Mapping):
        return None
    inner = config.get("config") or {}
    layers = [x for x in inner.get("layers") or [] if isinstance(x, dict)]

    def shape(layer: Mapping[str, Any]) -> Any:
        c = layer.get("config") or {}
        return c.get("batch_shape") or c.get("batch_input_shape")

    if config.get("class_name") == "Sequential":
        found = [shape(layers[0])] if layers else []
    else:
        names = inner.get("input_layers") or []
        names = [names] if names and isinstance(names[0], str) else names
        by_name = {x.get("name") or (x.get("config") or {}).get("name"): x for x in layers}
        found = [shape(by_name.get(n[0], {})) if isinstance(n, list) and n else None for n in names]
    if not found or not all(isinstance(s, list) for s in found):
        return None
    return found


def read_inputs(path: Path, model: ModelFile) -> tuple[list[Any], list[Any]]:
    """(x arrays, y arrays) of ``--inputs``, checked on the host before any stack runs.

    Raises:
        CheckInputError: missing, not an npz, pickled objects, keys, or shapes the model refuses.
    """
    import numpy as np

    if stat.S_ISDIR(_kind_of(path, "inputs file").st_mode):
        raise CheckInputError(f"inputs file {path} is a directory, not an .npz file")
    if path.stat().st_size > MAX_INPUTS_BYTES:
        raise CheckInputError(f"inputs file {path} has {path.stat().st_size} bytes, over the cap of "
                              f"{MAX_INPUTS_BYTES} (see check --help)")
    if not zipfile.is_zipfile(path):
        raise CheckInputError(f"inputs file {path}: not a readable .npz file (not a zip)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            unpacked = sum(info.file_size for info in npz.zip.infolist())
            if unpacked > MAX_INPUTS_BYTES:
                raise CheckInputError(f"inputs file {path} unpacks to {unpacked} bytes, over the cap of "
                                      f"{MAX_INPUTS_BYTES} (see check --help)")
            arrays = {k: npz[k] for k in npz.files}
        odd = sorted(k for k, a in arrays.items() if not isinstance(a, np.ndarray))
        if odd:
            raise CheckInputError(f"inputs file {path}: member {odd[0]} is not a numpy array (.npy); "
                                  "save numeric arrays x0.. (and y0..)")
    except CheckInputError:
        raise
    except ValueError as exc:
        why = ("holds pickled Python objects (object dtype), never loaded" if "allow_pickle" in str(exc)
               else f"a member is not a numpy array ({first_line(str(exc))[:200]})")
        raise CheckInputError(f"inputs file {path}: {why}; save numeric arrays x0.. (and y0..)") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckInputError(f"inputs file {path}: not a readable .npz file ({exc})") from None
    out: list[list[Any]] = []
    for prefix in ("x", "y"):
        keys = sorted((k for k in arrays if k.startswith(prefix)), key=natural_key)
        if keys != [f"{prefix}{i}" for i in range(len(keys))]:
            raise CheckInputError(f"inputs file {path}: keys must be {prefix}0..{prefix}{len(keys) - 1}, "
                                  f"got {', '.join(keys)}")
        out.append([arrays[k] for k in keys])
    xs, ys = out
    if not xs:
        raise CheckInputError(f"inputs file {path} has no x0 array (keys: {', '.join(sorted(arrays)) or 'none'})")
    for i, a in enumerate(xs + ys):
        name = f"x{i}" if i < len(xs) else f"y{i - len(xs)}"
        if a.dtype.kind not in "biuf" or a.ndim == 0:
            raise CheckInputError(f"inputs file {path}: {name} is {a.dtype} with shape {a.shape}: "
                                  "numeric arrays with a batch dimension only")
        if a.shape[0] != xs[0].shape[0]:
            raise CheckInputError(f"inputs file {path}: {name} has {a.shape[0]} rows, x0 has {xs[0].shape[0]}")
    signature = [{"name": "", "shape": s} for s in input_shapes(model.config) or []]
    # the rule (and words) each stack applies to the signature it loads
    answer = inspect_op("check_shapes", path=str(path), shapes=[list(x.shape) for x in xs], signature=signature)
    if "error" in answer:
        raise CheckInputError(USER_ERRORS["check_worker.BadInputs"].format(inputs=path) + answer["error"]["message"])
    return xs, ys


def check_custom_objects_file(path: Path) -> None:
    """Parse (never run) the file: it must define ``custom_objects`` or ``CUSTOM_OBJECTS``."""
    if not path.is_file():
        raise CheckInputError(f"custom-objects file not found: {path}")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise CheckInputError(f"custom-objects file {path} fails to import: {type(exc).__name__}: "
                              f"{getattr(exc, 'msg', exc)}" + (f" (line {line})" if line else "")) from None
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    names |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    names |= {(a.asname or a.name) for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    if not names & {"custom_objects", "CUSTOM_OBJECTS"}:
        raise CheckInputError(f"custom-objects file {path} defines neither custom_objects(keras) "
                              "nor a CUSTOM_OBJECTS dict")


# ====================================================================== comparison


@dataclasses.dataclass(frozen=True)
class Diff:
    ok: bool
    abs: float | None = None  # max |Δ| over all outputs
    rel: float | None = None  # that |Δ| over the output's max |ref|
    atol: float | None = None  # the tolerance floor of the worst output
    reason: str = ""

    def cell(self) -> str:
        if self.abs is None:
            return ""
        return f"{self.abs:.2g} ({self.rel:.1g}) / {self.atol:.1g}"


def tolerance(ref: Any, atol: float | None = None, rtol: float | None = None) -> tuple[float, float]:
    """(atol, rtol) for one reference output: ``rtol = k``, ``atol = k·max|ref|``."""
    import numpy as np

    k = DTYPE_K.get(ref.dtype.name, 1e-4) if ref.dtype.kind == "f" else 0.0
    scale = float(np.nanmax(np.abs(ref))) if ref.size and not np.isnan(ref).all() else 0.0
    return (k * scale if atol is None else atol), (k if rtol is None else rtol)


def compare(got: Sequence[Any], ref: Sequence[Any], atol: float | None = None,
            rtol: float | None = None) -> Diff:
    """Outputs against a reference: the matrix's rule (:func:`runner.judge.compare_outputs`,
    numpy's allclose), with each output's own tolerance."""
    import numpy as np

    if len(got) != len(ref):
        return Diff(False, reason=f"{len(got)} outputs, the reference has {len(ref)}")
    worst = Diff(True, 0.0, 0.0, 0.0)
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        a, rt = tolerance(r, atol, rtol)
        outcome, diff, more = judge.compare_outputs([g], [r], a, rt)
        if diff is None:
            return Diff(False, reason=f"output {i}: {more.get('reason')}")
        scale = float(np.nanmax(np.abs(r))) if r.size and not np.isnan(r).all() else 0.0
        rel = diff / scale if scale else (0.0 if diff == 0 else float("inf"))
        if outcome != "ok" or (worst.ok and diff >= (worst.abs or 0.0)):
            worst = Diff(worst.ok and outcome == "ok", diff, rel, a,
                         "" if outcome == "ok" else f"output {i}: max |Δ| {diff:.3g} (rel {rel:.2g}) beyond "
                         f"atol {a:.2g} + rtol {rt:.2g}·|ref|")
    return worst


# ====================================================================== the check run


@dataclasses.dataclass(frozen=True)
class Options:
    model: Path
    weights: Path | None = None
    custom_objects: Path | None = None
    inputs: Path | None = None
    stacks: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    unsafe: bool = False
    out: Path | None = None
    store: Path = Path(DEFAULT_STORE)
    envs_dir: Path | None = None
    catalog: Path = DEFAULT_CATALOG
    atol: float | None = None
    rtol: float | None = None
    fresh: bool = False
    cell_timeout: float = 300.0
    import_timeout: float = 600.0
    jobs: int = 2
    sandbox: str = "off"  # on|off|auto (the command line's default): loads in a docker sandbox


@dataclasses.dataclass
class Row:
    stack: str  # "↳ variant" / "↳ sibling stack" for a remedy
    outcome: str
    category: str = ""
    diff: Diff | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    passed: bool = False
    selected: bool = False  # part of the verdict (not a remedy, not the added reference)
    source: tuple[str, str] | None = None  # (stack, variant) of outputs nothing verified
    remedies: list[tuple[diagnose.Remedy, str, str]] = dataclasses.field(default_factory=list)  # to run


def _versions(env: Mapping[str, Any]) -> str:
    parts = [f"TF {env['tensorflow']}" if env.get("tensorflow") else "",
             f"Keras {env['keras']}" if env.get("keras") else "",
             str(env.get("backend") or "") if env.get("backend") not in (None, "tensorflow") else ""]
    return ", ".join(p for p in parts if p)


def catalog_versions(stack: Stack) -> dict[str, str]:
    """The Keras/TF major.minor a catalog stack pins (before it is built)."""
    pins: dict[str, str] = dict(re.findall(r"^(tensorflow|tensorflow-cpu|keras|tf-keras)==([\d.]+)", r)[0]
                for r in stack.requirements if re.match(r"^(tensorflow|tensorflow-cpu|keras|tf-keras)==\d", r))
    tf = pins.get("tensorflow") or pins.get("tensorflow-cpu") or ""
    legacy = stack.env_dict.get("TF_USE_LEGACY_KERAS") == "1" or (major_minor(tf) or (9, 0)) < (2, 16)
    bundled = {(1, 15): "2.2.4", (2, 0): "2.2.4", (2, 1): "2.2.4", (2, 2): "2.3.0", (2, 3): "2.4.0"}
    keras = (pins.get("tf-keras") or bundled.get(major_minor(tf) or (0, 0), tf)) if legacy else pins.get("keras", "")
    return {"keras": keras, "tensorflow": tf, "backend": stack.env_dict.get("KERAS_BACKEND", "tensorflow")}


def closeness(prov: Mapping[str, str], env: Mapping[str, Any]) -> tuple[int, ...]:
    """Sort key: same Keras (else TF) major.minor as the file, then nearest, then same backend,
    then the nearest TF when the file names one."""
    field = "keras" if major_minor(prov.get("keras_version")) else "tensorflow"
    want, have = major_minor(prov.get(f"{field}_version")), major_minor(env.get(field))
    if want is None or have is None:
        return (3, 0, 0, 0, 0)
    tf_want, tf_have = major_minor(prov.get("tensorflow_version")), major_minor(env.get("tensorflow"))
    tf_gap = abs(tf_want[1] - tf_have[1]) + 100 * abs(tf_want[0] - tf_have[0]) if tf_want and tf_have else 0
    return (0 if want == have else 1 if want[0] == have[0] else 2, abs(want[0] - have[0]),
            abs(want[1] - have[1]), 0 if prov.get("backend") in (None, env.get("backend")) else 1, tf_gap)


class _Check:
    def __init__(self, opt: Options, model: ModelFile, stacks: Sequence[Stack], catalog: Sequence[Stack],
                 log: TextIO, env_factory: Callable[[Stack, Store], StackEnv], extra_sys_path: Sequence[str],
                 given: tuple[list[Any], list[Any]] | None) -> None:
        self.opt, self.model, self.stacks, self.catalog = opt, model, list(stacks), list(catalog)
        self.log, self.env_factory, self.extra_sys_path = log, env_factory, list(extra_sys_path)
        # the matrix's stack venvs ($COMPAT_ENVS_DIR, else the matrix store's envs/)
        envs = opt.envs_dir or Store(default_store_root()).envs_dir
        self.store = Store(opt.store, envs_dir=envs)
        self.base = variant_name(({"custom_objects"} if opt.custom_objects else set()) | ({"unsafe"} if opt.unsafe
                                                                                              else set()))
        digest = hashlib.sha256
        # What a check cell's key holds besides a matrix load's parts (cells.check_key).
        self.shas = (digest(opt.custom_objects.read_bytes()).hexdigest() if opt.custom_objects else "",
                     digest(opt.inputs.read_bytes()).hexdigest() if opt.inputs else "")
        self.given = given
        self.envs: dict[str, StackEnv] = {}
        self.records: dict[tuple[str, str], Record] = {}
        self.home = Path(tempfile.mkdtemp(prefix="compat-check-"))
        self.staged = self.store.root / "models" / model.model_id
        self.selected = {s.id for s in stacks}
        self.siblings = diagnose.sibling_map(catalog)
        self.sandbox, self.sandbox_line = sandbox_mode(opt.sandbox)
        self.unsandboxed: dict[str, str] = {}  # auto: stacks the docker runtime could not build, and why
        if self.sandbox and env_factory is ensure_env:  # the stacks are built for the docker runtime
            self.env_factory = functools.partial(ensure_env, runtime=RuntimeSettings(runtime="docker"))

    # ------------------------------------------------------------------ running cells
    def sandbox_env(self, stack: Stack) -> dict[str, str]:
        """Only what the stack needs: an allow-list of host variables, a throwaway HOME/TMPDIR."""
        home = self.home / stack.id
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env = execute.child_env(stack.env_dict, base={k: os.environ[k] for k in ENV_ALLOW if k in os.environ})
        tmp = str(home / "tmp")
        env.update(HOME=str(home), TMPDIR=tmp, TMP=tmp, TEMP=tmp, KERAS_HOME=str(home / ".keras"),
                   XDG_CACHE_HOME=str(home / ".cache"), MPLCONFIGDIR=tmp)
        return {**env, **stack.env_dict}

    def boxed(self, stack: str) -> bool:
        return self.sandbox and stack not in self.unsandboxed

    def out_dir(self, stack: str, variant: str) -> Path:
        return self.store.root / "outputs" / self.model.model_id / stack / variant

    def env(self, stack: Stack) -> StackEnv:
        if stack.id not in self.envs:
            self.envs[stack.id] = build_env(self.env_factory, stack, self.store)
            if self.sandbox and self.opt.sandbox == "auto" and not self.envs[stack.id].ok:
                self.unsandboxed[stack.id] = first_line(self.envs[stack.id].reason)[:120]
                self.envs[stack.id] = build_env(ensure_env, stack, self.store)  # auto: the venv (said in the report)
        return self.envs[stack.id]

    def decision(self, senv: StackEnv, variant: str) -> tuple[str, dict[str, str], Record | None, str | None]:
        """A check cell's (key, key parts, record, why it runs or None): the matrix's one
        decision (:func:`runner.cells.why_rerun`) for a load cell of the user's file, whose
        product is its outputs (an ``ok`` whose outputs cannot be read back runs again)."""
        m = self.model
        key, parts = cells.check_key(m.sha256, senv.fingerprint, m.format, variant, custom_objects=self.shas[0],
                                     inputs=self.shas[1], seed=SEED, sandbox=self.boxed(senv.stack.id))
        old = self.store.read(self.store.load_record_path(senv.stack.id, SAVER, m.model_id, m.format, variant))
        why = why_rerun(old, key, parts, self.opt.cell_timeout, fresh=self.opt.fresh,
                        product=lambda rec: self.unreadable_outputs(senv.stack.id, variant))
        return key, parts, old, why

    def run(self, stack: Stack, variants: Sequence[str]) -> None:
        """Run (or take from the cache: the matrix's rule) one cell per variant in ``stack``."""
        senv = self.env(stack)
        if not senv.ok or senv.python is None:
            return
        m = self.model
        todo, keys = [], {}
        for variant in variants:
            key, parts, old, why = self.decision(senv, variant)
            if why is None and old is not None:
                self.records[stack.id, variant] = old
                continue
            cid = load_cell_id(m.model_id, m.format, SAVER, stack.id, variant)
            keys[cid] = (variant, key, old, parts)
            todo.append({"cell_id": cid, "format": m.format,
                         "model_path": str(self.staged / cells.MODEL_FILES[m.format]),
                         "weights_file": "model.weights.h5" if m.weights else None, "variant": variant,
                         "custom_objects_path": str(self.opt.custom_objects.absolute()) if self.opt.custom_objects
                         else None, "inputs_path": str(self.opt.inputs.absolute()) if self.opt.inputs else None,
                         "out_dir": str(self.out_dir(stack.id, variant)), "seed": SEED})
        if not todo:
            return
        if m.graph_ops and not self.opt.unsafe and not self.boxed(stack.id):
            # Refused on the host: graph ops that may touch files run only where nothing of
            # the host is in reach (the sandbox), or with --unsafe. Recorded as every refusal.
            for cell in todo:
                variant, key, old, parts = keys[str(cell["cell_id"])]
                rec = record_from_result("load", {
                    "cell_id": cell["cell_id"], "outcome": Outcome.LOAD_ERROR.value, "phase": "load",
                    "error": {"type": REFUSED, "message": GRAPH_REFUSAL.format(found=m.graph_ops), "traceback": ""},
                    "details": {"graph_ops": m.graph_ops, "code_in_file": [m.graph_ops]}, "env": senv.versions},
                    key=key, stack=stack.id, saver=SAVER, scenario=m.model_id, scenario_sha256=m.sha256,
                    fmt=m.format, worker_sha256=check_code_digest(), loader=stack.id, variant=variant,
                    limit_s=self.opt.cell_timeout, old=old, key_parts=parts)
                self.store.write(rec)
                self.records[stack.id, variant] = rec
            print(f"[check {stack.id}] refused on the host: {m.graph_ops}", file=self.log, flush=True)
            return
        try:
            spawn = (runtime_docker.sandbox_spawn(senv) if self.boxed(stack.id)
                     else functools.partial(execute.host_spawn, cwd=self.home))
        except runtime_docker.DockerUnavailable as exc:
            self.envs[stack.id] = dataclasses.replace(senv, ok=False, reason=f"--sandbox: {exc}")
            return
        print(f"[check {stack.id}] loading with {', '.join(v for v, _, _, _ in keys.values())}", file=self.log,
              flush=True)

        def to_record(res: dict[str, Any]) -> Record:
            variant, key, old, parts = keys[res["cell_id"]]
            why = self.unreadable_outputs(stack.id, variant) if res.get("outcome") == Outcome.OK.value else ""
            if why:  # "ok" from a worker whose outputs are a planted link, FIFO or flood: that attack
                res = {**res, "outcome": Outcome.PROTOCOL_ERROR.value,
                       "error": {"type": execute.TAMPERED, "message": why, "traceback": ""}}
            return record_from_result("load", {**res, "env": res.get("env") or senv.versions}, key=key,
                                      stack=stack.id, saver=SAVER, scenario=m.model_id, scenario_sha256=m.sha256,
                                      fmt=m.format, worker_sha256=check_code_digest(), loader=stack.id,
                                      variant=variant, limit_s=self.opt.cell_timeout, old=old, key_parts=parts)

        for rec in run_stack_cells(senv, "check", todo, self.store, to_record, cell_timeout=self.opt.cell_timeout,
                                   import_timeout=self.opt.import_timeout, env=self.sandbox_env(senv.stack),
                                   worker_path=CHECK_WORKER_PATH, spawn=spawn, extra_sys_path=self.extra_sys_path):
            self.records[stack.id, str(rec.variant)] = rec
            print(f"[check {stack.id}] {rec.variant}: {rec.outcome.value}", file=self.log, flush=True)

    def each(self, jobs: Sequence[tuple[Stack, Sequence[str]]]) -> None:
        fan_out(lambda job: self.run(*job), jobs, self.opt.jobs)

    def unreadable_outputs(self, stack: str, variant: str) -> str:
        """Why a cell's outputs cannot be read back ("" when they can)."""
        try:
            self.outputs(stack, variant)
        except safefs.Tampered as exc:
            return f"the worker tampered with its outputs folder: {exc.strerror}"
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            return f"the worker's outputs.npz cannot be read: {type(exc).__name__}: {str(exc)[:200]}"
        return ""

    def outputs(self, stack: str, variant: str) -> list[Any]:
        import numpy as np

        # The folder is the worker's (in the sandbox: the code under test's): never followed.
        data = safefs.read_bytes(self.out_dir(stack, variant), "outputs.npz", MAX_OUTPUTS_BYTES)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return [npz[f"y{i}"] for i in range(len(npz.files))]

    # ------------------------------------------------------------------ provenance, reference
    def provenance(self) -> dict[str, str]:
        if self.model.provenance:
            return self.model.provenance
        for (_, _), rec in sorted(self.records.items(), key=lambda kv: natural_key(kv[0][0])):
            found = rec.details.get("provenance") or {}
            if found.get("keras_version"):
                return {str(k): str(v) for k, v in found.items()}
        return {}

    def reference_stack(self, prov: Mapping[str, str]) -> tuple[Stack | None, str]:
        if not prov:
            return None, "the file names no Keras or TensorFlow version"
        pool = [s for s in self.catalog if closeness(prov, catalog_versions(s))[0] < 2]
        if not pool:
            return None, "no catalog stack has the file's Keras major version"
        best = min(pool, key=lambda s: (closeness(prov, catalog_versions(s)), s.id not in self.selected,
                                        natural_key(s.id)))
        why = "same" if closeness(prov, catalog_versions(best))[0] == 0 else "nearest"
        field = "Keras" if prov.get("keras_version") else "TF"
        return best, f"{why} {field} major.minor as the file's" + (
            "" if best.id in self.selected else "; not selected, added to the run as the reference")

    # ------------------------------------------------------------------ the whole check
    def check(self) -> tuple[list[Row], list[str]]:
        self.store.ensure()
        self.staged.parent.mkdir(parents=True, exist_ok=True)
        stage(self.model, self.staged)  # a read-only copy: what every stack (and the sandbox's mount) loads
        stacks = list(self.stacks)
        ref_stack, why = self.reference_stack(self.model.provenance)
        if ref_stack is not None and ref_stack not in stacks:
            stacks.append(ref_stack)
        self.each([(s, [self.base]) for s in stacks])
        self.refuse_bad_input()
        prov = self.provenance()
        if not self.model.provenance:
            ref_stack, why = self.reference_stack(prov)
            if ref_stack is not None and ref_stack not in stacks:
                stacks.append(ref_stack)
                self.each([(ref_stack, [self.base])])
        ref_rec = self.records.get((ref_stack.id, self.base)) if ref_stack else None
        reference: list[Any] | None = None
        if self.given and self.given[1]:
            reference, ref_line = self.given[1], f"the y0.. arrays of {self.opt.inputs.name if self.opt.inputs else ''}"
            ref_stack = None
        elif ref_stack is not None and ref_rec is not None and ref_rec.outcome is Outcome.OK:
            reference = self.outputs(ref_stack.id, self.base)
            ref_line = f"{ref_stack.id} ({_versions(ref_rec.env)}): {why}"
        else:
            ref_line = "none: " + (f"{ref_stack.id} ({why}) does not load the file" if ref_stack else why)
            ref_stack = None
        # Diagnosed as loads of a file these versions saved; generated inputs must be the reference's.
        self.saver_env = {"keras": prov.get("keras_version"), "backend": prov.get("backend"),
                          "tensorflow": prov.get("tensorflow_version")}
        self.inputs_sha = ref_rec.details.get("inputs_sha256") if ref_rec and ref_stack and not self.given else None
        rows = self.rows(stacks, ref_stack, reference)
        header = self.header(prov, ref_line, reference, stacks)
        return rows, header

    def refuse_bad_input(self) -> None:
        """User-file problems every stack agrees on are bad input (exit 2), not findings."""
        ran = [r for r in self.records.values()
               if r.phase != "import" and r.outcome in (Outcome.OK, Outcome.LOAD_ERROR)]
        user = [r for r in ran if r.error and r.error.type in USER_ERRORS]
        if ran and len(user) == len(ran) and user[0].error is not None:
            what = USER_ERRORS[user[0].error.type].format(inputs=self.opt.inputs, custom=self.opt.custom_objects)
            raise CheckInputError(what + first_line(user[0].error.message))

    def verdict(self, stack: str, variant: str, reference: list[Any] | None,
                remedy: diagnose.Remedy | None = None) -> Row:
        """The row of one load: a stack's own (``remedy`` None) or a remedy's re-run of it."""
        senv, rec = self.envs.get(stack), self.records.get((stack, variant))
        label = f"↳ {stack if remedy.sibling else remedy.id}" if remedy else stack
        row = Row(label, "env_unavailable", "env_unavailable", selected=remedy is None and stack in self.selected)
        if senv is None or not senv.ok or rec is None:
            row.notes.append(first_line(senv.reason if senv else "not run"))
            return row
        row.outcome, row.category = rec.outcome.value, ""
        if remedy is not None:
            row.notes.append(f"remedy {remedy.id}" + (f" (sibling stack {stack})" if remedy.sibling else ""))
        if rec.error is not None:
            text = first_line(rec.error.message).replace(str(self.store.root), "<check-store>")
            kind = rec.error.type.rsplit(".", 1)[-1]
            row.notes.append(text if rec.error.type == REFUSED else f"{kind}: {text[:160]}")
        if rec.outcome is Outcome.OK and reference is None:
            row.outcome, row.source = UNVERIFIED, (stack, variant)
        elif rec.outcome is Outcome.OK and reference is not None:
            diff = compare(self.outputs(stack, variant), reference, self.opt.atol, self.opt.rtol)
            if self.inputs_sha and rec.details.get("inputs_sha256") != self.inputs_sha:
                diff = Diff(False, reason="its generated inputs differ from the reference stack's (another "
                                          "input signature)")
            row.diff, row.passed = diff, diff.ok
            row.outcome = ("fixed (verified)" if remedy else "ok") if diff.ok else "mismatch"
            row.notes += [diff.reason] if diff.reason else []
        if row.passed or row.outcome == UNVERIFIED:
            return row
        final = dataclasses.replace(rec, outcome=Outcome.MISMATCH if row.outcome == "mismatch" else rec.outcome,
                                    saver_env=self.saver_env, details={**rec.details, "reason": " ".join(row.notes)})
        if rec.error and rec.error.type == REFUSED:
            row.category = "refused_unsafe"
        elif rec.error and rec.error.type == "check_worker.CustomObjectsError":
            row.category = "custom_objects_file"
        else:
            diag = diagnose.diagnose(final)
            row.category = diag.category if diag else ""
            if remedy is None:
                row.remedies = self.remedies(final, diag, row.notes)
        return row

    def remedies(self, failed: Record, diag: diagnose.Diagnosis | None,
                 notes: list[str]) -> list[tuple[diagnose.Remedy, str, str]]:
        """``(remedy, stack, variant)`` of the diagnosis' remedies for a failing load, where
        the matrix verifies them (:func:`diagnose.remedy_targets`), but none that would run
        code from the file without ``--unsafe``; ``notes`` say what was not tried."""
        out = []
        for remedy, stack, variant in diagnose.remedy_targets(
                failed, diag, has_custom_objects=self.opt.custom_objects is not None, siblings=self.siblings):
            if "unsafe" in variant.split("+") and not self.opt.unsafe:
                notes.append(f"remedy {remedy.id} not tried: it runs code from the file (pass --unsafe)")
            else:
                out.append((remedy, stack, variant))
        if diag is not None and diagnose.REMEDIES["custom_objects"] in diag.remedies and not self.opt.custom_objects:
            notes.append("remedy custom_objects: pass --custom-objects FILE to try it")
        return out

    def rows(self, stacks: Sequence[Stack], ref_stack: Stack | None, reference: list[Any] | None) -> list[Row]:
        by_stack = {s.id: self.verdict(s.id, self.base, reference) for s in stacks}
        if ref_stack is not None:
            by_stack[ref_stack.id].outcome = "ok (reference)"
        planned = [cell for row in by_stack.values() for cell in row.remedies]
        self.each([(s, sorted({v for _, st, v in planned if st == s.id}))
                   for s in self.catalog if any(st == s.id for _, st, _ in planned)])
        rows: list[Row] = []
        for stack in sorted(stacks, key=lambda s: natural_key(s.id)):
            rows.append(by_stack[stack.id])
            rows += [self.verdict(st, variant, reference, remedy)
                     for remedy, st, variant in by_stack[stack.id].remedies]
        loaded = [r for r in rows if r.source is not None]
        for row in loaded[1:]:  # no reference: cross-check what loaded against the first that did
            pivot = loaded[0].source
            assert pivot is not None and row.source is not None
            row.diff = compare(self.outputs(*row.source), self.outputs(*pivot), self.opt.atol, self.opt.rtol)
            if not row.diff.ok:
                name = pivot[0] + ("" if pivot[1] == self.base else f" {pivot[1]}")
                row.notes.append(f"disagrees with {name}: {row.diff.reason or 'not comparable'}")
        return rows

    def header(self, prov: Mapping[str, str], ref_line: str, reference: list[Any] | None,
               stacks: Sequence[Stack]) -> list[str]:
        saved_by = ", ".join(f"{k} {prov[k]}" for k in ("keras_version", "backend", "tensorflow_version",
                                                         "date_saved") if prov.get(k))
        m = self.model
        lines = [f"model: {m.path.name} ({m.format}, {m.size} bytes, sha256 {m.sha256[:12]})",
                 f"provenance: {saved_by} [from {prov['source']}]" if saved_by else "provenance: none in the file",
                 "inputs: " + (self.opt.inputs.name if self.opt.inputs else f"generated (signature, seed {SEED})"),
                 f"reference: {ref_line}"]
        if reference is not None:
            if self.opt.atol is not None or self.opt.rtol is not None:
                lines.append(f"tolerance: given, |Δ| ≤ {self.opt.atol if self.opt.atol is not None else 'k·max|ref|'}"
                             f" + {self.opt.rtol if self.opt.rtol is not None else 'k'}·|ref|")
            else:
                tols = ", ".join(f"y{i} {r.dtype} atol {tolerance(r)[0]:.2g} rtol {tolerance(r)[1]:.2g}"
                                 for i, r in enumerate(reference))
                lines.append(f"tolerance: |Δ| ≤ atol + rtol·|ref| per output, atol = k·max|ref|, rtol = k "
                             f"(k by dtype): {tols}")
        else:
            lines.append("verification: no reference, so no stack or remedy is verified; the stacks that "
                         "loaded were cross-checked against each other (see notes)")
        recs = [self.records.get((s.id, self.base)) for s in stacks]
        found = sorted({f for r in recs if r for f in r.details.get("code_in_file") or []})
        by_mode: dict[str, list[str]] = {}
        for r in sorted((r for r in recs if r and r.details.get("safe_mode")), key=lambda r: natural_key(r.stack)):
            by_mode.setdefault(str(r.details["safe_mode"]), []).append(r.stack)
        modes = [f"{mode} in {', '.join(ids)}" for mode, ids in sorted(by_mode.items())]
        checked = [r for r in recs if r and "code_in_file" in r.details]
        lines.append("safety: " + ((
            "stored configs parsed and checked against each stack's built-ins before loading: "
            + (f"{len(found)} finding(s): " + "; ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3
                                                                      else "")
               + (" (allowed to run: --unsafe)" if self.opt.unsafe else " -> refused")
               if found else "nothing that would run or import code, or resolve to a class that is not a "
                          "built-in (a name nothing resolves is left to the loader, which fails on it)"))
            if checked and any(r.details.get("configs_checked") for r in checked)
            else "no stored config (graphs only: see graph:)" if checked
            else "not reached (no stack loaded the file)"))
        lines.append("safe mode: " + ("; ".join(modes) or "not reached"))
        boxed = [s.id for s in sorted(stacks, key=lambda s: natural_key(s.id)) if self.boxed(s.id)]
        if m.format in ("savedmodel", "export"):
            lines.append("graph: scanned on the host against the allowlist of inert ops: " + (
                "every op is inert" if not m.graph_ops else m.graph_ops + (
                    " (allowed to run: --unsafe)" if self.opt.unsafe else
                    " -> refused outside the sandbox" + (f"; loaded in the sandbox in {', '.join(boxed)}"
                                                         if boxed else ""))))
        lines.append("sandbox: " + "; ".join(([f"{self.sandbox_line} in {', '.join(boxed)}"] if boxed else []) + [
            f"off in {sid}: its docker runtime failed ({why}), so it loaded in its venv with a scrubbed environment"
            for sid, why in sorted(self.unsandboxed.items())]) if self.sandbox else f"sandbox: {self.sandbox_line}")
        lines.append("stacks: " + "; ".join(f"{s.id} = {_versions(self.envs[s.id].versions)}" for s in
                                            sorted(stacks, key=lambda s: natural_key(s.id))
                                            if s.id in self.envs and self.envs[s.id].ok))
        return lines


HEADERS = ["stack", "outcome", "category", "Δ abs (rel) / atol", "notes"]  # Δ: the worst output's max |Δ|
CSV_HEADERS = ["stack", "outcome", "category", "max_delta", "notes"]


NOTE_REFS_WIDTH = 7  # "1,2,3,4": with the widest stack, outcome, category and Δ the table stays ≤ 120 columns
TABLE_WIDTH = 120
UNVERIFIED_SHORT = "loads, unverified"  # UNVERIFIED where the full words would push the table past TABLE_WIDTH


def render(rows: Sequence[Row]) -> tuple[list[list[str]], str, list[str]]:
    """Table cells, the table as Markdown and the de-duplicated footnotes it refers to. A row whose note numbers
    would be wider than :data:`NOTE_REFS_WIDTH` gets its notes as one footnote instead."""
    from tabulate import tabulate

    from runner.report import footnoted

    per_row = [list(r.notes) for r in rows]
    refs, notes = footnoted(per_row)
    while wide := [i for i, ref in enumerate(refs) if len(ref) > NOTE_REFS_WIDTH]:  # each row joins once
        for i in wide:
            per_row[i] = ["; ".join(per_row[i])]
        refs, notes = footnoted(per_row)
    body = [[r.stack, r.outcome, r.category, r.diff.cell() if r.diff else "", n]
            for r, n in zip(rows, refs, strict=True)]
    table = tabulate(body, headers=HEADERS, tablefmt="github", disable_numparse=True)
    if max(map(len, table.splitlines())) > TABLE_WIDTH:  # the widest outcome beside the widest category
        body = [[c[0], UNVERIFIED_SHORT if c[1] == UNVERIFIED else c[1], *c[2:]] for c in body]
        table = tabulate(body, headers=HEADERS, tablefmt="github", disable_numparse=True)
    return body, table, notes


def write_outputs(out: Path, body: Sequence[Sequence[str]], text: str) -> None:
    """check.md, check.csv and check.html, replaced as a set (the report's own rule)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([CSV_HEADERS, *body])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_set({out / "check.md": f"# Is my model safe to upgrade?\n\n```\n{text}```\n",
                      out / "check.csv": buf.getvalue(),
                      out / "check.html": "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Model "
                      f"check</title></head><body><pre>{html.escape(text)}</pre></body></html>\n"})


# =============================================================================== CLI


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check", help="load your own model file in the selected stacks and compare predictions",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=caps_text())
    add_common(p, Path(os.environ.get("COMPAT_CHECK_STORE", DEFAULT_STORE)),
               f"records and outputs of checks (default {DEFAULT_STORE})")
    add_stacks(p, tags_help=f"catalog tags (default when no --stacks/--tags: {','.join(DEFAULT_TAGS)})")
    add_workers(p, 300.0, "seconds one load cell may take (default 300)")
    p.add_argument("model", type=Path, help=".h5, .keras, SavedModel directory, architecture JSON "
                   "(weights next to it or --weights) or exported SavedModel; detected from content")
    p.add_argument("--weights", type=Path, default=None, help="weights file of an architecture JSON")
    p.add_argument("--custom-objects", type=Path, default=None,
                   help="a .py file defining custom_objects(keras) -> dict, or a CUSTOM_OBJECTS dict; "
                        "imported only inside each stack's worker")
    p.add_argument("--inputs", type=Path, default=None, help=".npz with x0.. inputs (and optionally y0.. outputs)")
    p.add_argument("--unsafe", action="store_true",
                   help="let code stored in the model file (Lambda bytecode) run, inside the stacks")
    p.add_argument("--out", type=Path, default=None, help="write check.md, check.html, check.csv here")
    p.add_argument("--envs-dir", type=Path, default=None,
                   help="stack venvs to reuse (default $COMPAT_ENVS_DIR, else .matrix/envs)")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance (default: k·max|ref| per output)")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance (default: k by output dtype)")
    p.add_argument("--sandbox", choices=("auto", "on", "off"), default=os.environ.get("COMPAT_CHECK_SANDBOX", "auto"),
                   help="load in network-less, read-only, non-root docker containers (auto: when a Docker "
                        "engine answers; the stacks are then built for the docker runtime)")


def _size(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


def caps_text() -> str:
    """The host's limits on a file it does not trust (each refusal is one error line, exit 2)."""
    rows = [("model file or SavedModel tree, with its weights file", MAX_MODEL_BYTES),
            ("a .keras zip's members, unpacked", MAX_UNZIPPED_BYTES),
            ("one stored config (config.json, model_config, JSON)", MAX_CONFIG_BYTES),
            ("a SavedModel's saved_model.pb", MAX_SAVED_MODEL_PB),
            ("--inputs .npz, file and arrays unpacked", MAX_INPUTS_BYTES)]
    return "\n".join(["limits on the files you give (over a limit: one 'runner: error:' line, exit 2, nothing run):",
                      *(f"  {label:<54}{_size(n)}" for label, n in rows),
                      "  a FIFO, device or socket as any of them, or a symlink inside a SavedModel: refused"])


def options_from_args(args: argparse.Namespace) -> Options:
    given: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(Options)}
    return Options(**given | {"stacks": tuple(args.stacks), "tags": tuple(args.tags)})


def sandbox_mode(mode: str) -> tuple[bool, str]:
    """(whether loads run in the docker sandbox, the report's line saying so).

    Raises:
        CheckInputError: ``on`` without a reachable Docker engine.
    """
    venv = "loads run in the stack venvs with a scrubbed environment and a throwaway HOME"
    if mode == "off":
        return False, f"off (--sandbox off): {venv}"
    why = runtime_docker.sandbox_unavailable()
    if why is None:
        return True, "docker (no network, read-only model and root filesystem, non-root, no host variables)"
    if mode == "on":
        raise CheckInputError(f"--sandbox on: no Docker engine answers: {first_line(why)}")
    return False, f"off (no Docker engine answers: {first_line(why)}): {venv}"


def run_check(opt: Options, *, out: TextIO = sys.stdout, log: TextIO = sys.stderr,
              env_factory: Callable[[Stack, Store], StackEnv] | None = None,
              extra_sys_path: Sequence[str] | None = None) -> int:
    """Check ``opt.model`` in the selected stacks; print the table; return the exit status.

    Progress goes to ``log``; ``out`` gets the same bytes on a cached rerun.

    Raises:
        CheckInputError: bad input (before or after the stacks ran; no report is written).
        runner.stacks.CatalogError: unknown stack or tag.
    """
    catalog = load_catalog(opt.catalog)
    stacks = select(catalog, opt.stacks, opt.tags or (() if opt.stacks else DEFAULT_TAGS))
    model = inspect_model(opt.model, opt.weights)
    if opt.custom_objects is not None:
        check_custom_objects_file(opt.custom_objects)
    given = read_inputs(opt.inputs, model) if opt.inputs is not None else None
    if opt.out is not None and opt.out.exists() and not opt.out.is_dir():
        raise CheckInputError(f"--out {opt.out} exists and is not a directory")
    run = _Check(opt, model, stacks, catalog, log, env_factory or ensure_env,
                 EXTRA_SYS_PATH if extra_sys_path is None else extra_sys_path, given)
    print(f"check: sandbox: {run.sandbox_line}", file=log, flush=True)
    try:
        with run.store.running(wait=True):  # one writer per store: a second check queues
            rows, header = run.check()
    finally:
        shutil.rmtree(run.home, ignore_errors=True)
    verdict = [r for r in rows if r.selected]
    passed = sum(r.passed for r in verdict)
    status = EXIT_OK if all(r.passed for r in verdict) else EXIT_FAIL
    body, table, notes = render(rows)
    fixed = sum(r.outcome == "fixed (verified)" for r in rows)
    summary = (f"{passed} of {len(verdict)} stacks load the model and match the reference"
               + (f"; {fixed} remed{'y' if fixed == 1 else 'ies'} verified" if fixed else "") + f"; exit {status}.")
    text = "\n".join([*header, table, *notes, summary]) + "\n"
    out.write(text)
    out.flush()
    if opt.out is not None:
        write_outputs(opt.out, body, text)
        print(f"check: report -> {opt.out}/", file=log, flush=True)
    return status
