"""``python -m runner check MODEL``: is *my* model safe to load in these releases?

Stdlib only. The model file is inspected on the host without running anything from it
(magic bytes, zip/JSON metadata, HDF5 superblock, a minimal protobuf walk for a
SavedModel's TensorFlow version); it is loaded, run and compared only inside each
selected stack, by ``runner/_worker/check_worker.py`` (the matrix worker's loading code,
imported by path). The stacks' venvs are the matrix's (``$COMPAT_ENVS_DIR`` or
``.matrix/envs``); records and outputs go to a store of their own (``.matrix-check``),
with the matrix's record schema and cache keys.

Every stack's predictions are compared with a reference: the ``y0..`` arrays of
``--inputs``, or else the outputs of the stack closest to the file's provenance (same
Keras major.minor, then nearest). A failing stack gets the diagnosis of
:mod:`runner.diagnose`; a remedy with a load variant is re-run to verify it.

Exit status: 0 when every selected stack loads the model and matches the reference,
1 otherwise, 2 for bad input (one ``runner: error:`` line; nothing presented as a report).
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import hashlib
import html
import io
import json
import math
import os
import re
import struct
import sys
import zipfile
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from runner import diagnose, execute
from runner._worker import worker as _w
from runner.diagnose import major_minor, variant_name
from runner.envs import StackEnv, ensure_env
from runner.matrix import cache_key
from runner.records import ErrorInfo, Outcome, Record, Store, atomic_write_text, load_cell_id
from runner.stacks import DEFAULT_CATALOG, Stack, load_catalog, natural_key, select

__all__ = [
    "CHECK_WORKER_PATH",
    "CheckInputError",
    "ModelFile",
    "add_parser",
    "inspect_model",
    "read_npz",
    "run_check",
]

CHECK_WORKER_PATH = Path(__file__).resolve().parent / "_worker" / "check_worker.py"
DEFAULT_STORE = ".matrix-check"
DEFAULT_TAGS = ("quick",)
SAVER = "model"  # the records' saver field: the file the user brought
SEED = 1234
USER_ERRORS = ("check_worker.BadInputs", "check_worker.CustomObjectsError",
               "check_worker.NoSignature")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXTRA_SYS_PATH: tuple[str, ...] = ()  # a seam for the fast tier's fake frameworks


def _sniff(path: Path) -> str:
    return str(_w.sniff_artifact(str(path)))  # type: ignore[no-untyped-call]


class CheckInputError(ValueError):
    """Something the user supplied cannot be used (the message says what and why)."""


# ============================================================== the model file (host)


@dataclasses.dataclass(frozen=True)
class ModelFile:
    path: Path
    format: str  # a matrix format: h5, keras, savedmodel, json+weights, export
    written_as: str  # what the bytes are (worker.sniff_artifact)
    sha256: str
    size: int
    provenance: dict[str, str]
    weights: Path | None = None

    @property
    def model_id(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.path.name)[:40] or "model"
        return f"{stem}-{self.sha256[:12]}"


def _hash_path(path: Path, digest: Any) -> int:
    """Feed a file or a directory tree (sorted relative names + bytes) into ``digest``."""
    size = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f != path:
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):  # type: ignore[misc]
                digest.update(block)
                size += len(block)
    return size


def _h5_check(path: Path, what: str) -> None:
    """Truncated or damaged HDF5: the superblock's end-of-file address is past the end."""
    data = path.read_bytes()[:64]
    size = path.stat().st_size
    if len(data) < 16:
        raise CheckInputError(f"{what} {path} is truncated ({size} bytes): not a complete HDF5 file")
    version = data[8]
    if version in (0, 1):
        offsets = data[13]
        at = 24 + 2 * offsets + (4 if version == 1 else 0)
    elif version in (2, 3):
        offsets = data[9]
        at = 12 + 2 * offsets
    else:
        raise CheckInputError(f"{what} {path} is damaged: unknown HDF5 superblock version {version}")
    if offsets not in (2, 4, 8) or len(data) < at + offsets:
        raise CheckInputError(f"{what} {path} is truncated or damaged: its HDF5 superblock is incomplete")
    eof = int.from_bytes(data[at:at + offsets], "little")
    if eof > size:
        raise CheckInputError(f"{what} {path} is truncated: the HDF5 superblock says {eof} bytes, "
                              f"the file has {size}")


def _keras_zip(path: Path) -> dict[str, str]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            bad = zf.testzip()
            if bad is not None:
                raise CheckInputError(f"model file {path} is damaged: member {bad} fails its CRC check")
            if "config.json" not in names:
                raise CheckInputError(f"model file {path} is a zip but not a Keras v3 file "
                                      "(no config.json inside)")
            meta: dict[str, Any] = {}
            if "metadata.json" in names:
                meta = json.loads(zf.read("metadata.json"))
            json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CheckInputError(f"model file {path} is truncated or damaged: not a readable zip ({exc})") from None
    except ValueError as exc:
        raise CheckInputError(f"model file {path} is damaged: its metadata is not valid JSON ({exc})") from None
    out = {k: str(meta[k]) for k in ("keras_version", "backend", "date_saved") if meta.get(k)}
    if out:
        out["source"] = "metadata.json in the .keras zip"
    return out


def _pb_fields(data: bytes) -> Iterable[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message; raises ValueError if malformed."""
    i, n = 0, len(data)

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            if i >= n or shift > 63:
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, wire, varint()
        elif wire == 1:
            i += 8
            yield field, wire, None
        elif wire == 2:
            length = varint()
            if i + length > n:
                raise ValueError("truncated length-delimited field")
            yield field, wire, data[i:i + length]
            i += length
        elif wire == 5:
            i += 4
            yield field, wire, None
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i > n:
            raise ValueError("truncated message")


def _saved_model_tf_version(pb: Path) -> str | None:
    """SavedModel.meta_graphs[0].meta_info_def.tensorflow_version (fields 2 → 1 → 5)."""
    data = pb.read_bytes()
    try:
        for field, wire, value in _pb_fields(data):
            if field == 2 and wire == 2:
                for f2, w2, v2 in _pb_fields(value):
                    if f2 == 1 and w2 == 2:
                        for f3, w3, v3 in _pb_fields(v2):
                            if f3 == 5 and w3 == 2:
                                return bytes(v3).decode("utf-8", "replace")
                return None
    except ValueError as exc:
        raise CheckInputError(f"SavedModel {pb.parent} is truncated or damaged: "
                              f"saved_model.pb does not parse ({exc})") from None
    if not data:
        raise CheckInputError(f"SavedModel {pb.parent} is damaged: saved_model.pb is empty")
    return None


def _saved_model(path: Path) -> tuple[str, dict[str, str]]:
    pb = path / "saved_model.pb"
    out: dict[str, str] = {}
    tf_version = _saved_model_tf_version(pb)
    if tf_version:
        out["tensorflow_version"] = tf_version
    meta = path / "keras_metadata.pb"
    fmt = "export"
    if meta.is_file():
        fmt = "savedmodel"
        text = meta.read_bytes()[: 1 << 22].decode("utf-8", "replace")
        for key in ("keras_version", "backend"):
            found = re.search(rf'"{key}"\s*:\s*"([^"]+)"', text)
            if found:
                out[key] = found.group(1)
    if out:
        out["source"] = "keras_metadata.pb / saved_model.pb" if meta.is_file() else "saved_model.pb"
    return fmt, out


def _find_weights(model_json: Path) -> Path | None:
    stem = model_json.stem
    for name in (f"{stem}.weights.h5", "model.weights.h5", f"{stem}.h5", "weights.h5"):
        candidate = model_json.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def inspect_model(path: Path, weights: Path | None = None) -> ModelFile:
    """Detect the format from the content and read the provenance. Runs nothing from the file.

    Raises:
        CheckInputError: missing, unknown format, truncated or damaged.
    """
    if not path.exists():
        raise CheckInputError(f"model file not found: {path}")
    written_as = _sniff(path)
    provenance: dict[str, str] = {}
    if written_as == "h5":
        _h5_check(path, "model file")
        fmt = "h5"  # its attributes are variable-length strings: read with h5py in a stack
    elif written_as == "keras_v3":
        fmt, provenance = "keras", _keras_zip(path)
    elif written_as == "savedmodel":
        fmt, provenance = _saved_model(path)
    elif written_as == "json":
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckInputError(f"model file {path} is truncated or damaged: not valid JSON ({exc})") from None
        if not isinstance(config, dict) or "class_name" not in config:
            raise CheckInputError(f"model file {path} is JSON but not a Keras model architecture "
                                  "(no class_name)")
        provenance = {k: str(config[k]) for k in ("keras_version", "backend") if config.get(k)}
        if provenance:
            provenance["source"] = "the architecture JSON"
        weights = weights or _find_weights(path)
        if weights is None:
            raise CheckInputError(f"{path} is an architecture JSON: its weights file was not found "
                                  "next to it; pass --weights FILE")
        if not weights.is_file():
            raise CheckInputError(f"weights file not found: {weights}")
        if _sniff(weights) != "h5":
            raise CheckInputError(f"weights file {weights} is not HDF5")
        _h5_check(weights, "weights file")
        fmt = "json+weights"
    elif written_as == "directory":
        raise CheckInputError(f"{path} is a directory without saved_model.pb: not a SavedModel")
    else:
        raise CheckInputError(
            f"cannot tell the model format of {path}: it is not HDF5, a .keras zip, a SavedModel "
            "directory or a Keras architecture JSON (detected from its first bytes)")
    digest = hashlib.sha256()
    size = _hash_path(path, digest)
    if weights is not None:
        size += _hash_path(weights, digest)
    return ModelFile(path=path.absolute(), format=fmt, written_as=written_as,
                     sha256=digest.hexdigest(), size=size, provenance=provenance,
                     weights=weights.absolute() if weights is not None else None)


def stage_model(model: ModelFile, root: Path) -> tuple[Path, str | None]:
    """Links under ``root`` named as each Keras release insists (``.h5``/``.keras``
    suffixes, ``model.weights.h5``), pointing at the user's files; (model path, weights name)."""
    root.mkdir(parents=True, exist_ok=True)
    names = {"h5": "model.h5", "keras": "model.keras", "savedmodel": "savedmodel",
             "export": "savedmodel", "json+weights": "model.json"}
    links = [(root / names[model.format], model.path)]
    weights_name = None
    if model.weights is not None:
        weights_name = "model.weights.h5"
        links.append((root / weights_name, model.weights))
    for link, target in links:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return links[0][0], weights_name


# =========================================================================== npz (host)


@dataclasses.dataclass(frozen=True)
class NpyArray:
    shape: tuple[int, ...]
    dtype: str
    values: array[float] | None  # only for little-endian float64 (what the check worker writes)


def _parse_npy(raw: bytes, name: str, *, data: bool) -> NpyArray:
    if not raw.startswith(NPY_MAGIC) or len(raw) < 10:
        raise ValueError(f"{name} is not a .npy array")
    major = raw[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", raw[8:10]), 10
    else:
        (hlen,), start = struct.unpack("<I", raw[8:12]), 12
    header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
    if not isinstance(header, dict) or "shape" not in header or "descr" not in header:
        raise ValueError(f"{name} has a malformed .npy header")
    shape = tuple(int(d) for d in header["shape"])
    values = None
    if data and header["descr"] == "<f8" and not header.get("fortran_order"):
        values = array("d")
        values.frombytes(raw[start + hlen: start + hlen + 8 * math.prod(shape)])
        if sys.byteorder != "little":
            values.byteswap()
        if len(values) != math.prod(shape):
            raise ValueError(f"{name} is truncated")
    return NpyArray(shape=shape, dtype=str(header["descr"]), values=values)


def read_npz(path: Path, *, data: bool = False) -> dict[str, NpyArray]:
    """Arrays of an ``.npz`` by key (``x0``...), read with the standard library.

    Raises:
        ValueError: not a readable npz (the message says why).
    """
    out: dict[str, NpyArray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-4]
                raw = zf.read(info) if data else zf.open(info).read(4096)
                out[key] = _parse_npy(raw, info.filename, data=data)
    except (zipfile.BadZipFile, OSError, EOFError, SyntaxError, struct.error) as exc:
        raise ValueError(f"not a readable .npz file ({exc})") from None
    return out


def check_inputs_file(path: Path) -> tuple[int, int]:
    """(number of x arrays, number of y arrays) of a ``--inputs`` file.

    Raises:
        CheckInputError: missing, unreadable, or keys not x0..xN / y0..yM.
    """
    if not path.is_file():
        raise CheckInputError(f"inputs file not found: {path}")
    try:
        arrays = read_npz(path)
    except ValueError as exc:
        raise CheckInputError(f"inputs file {path}: {exc}") from None
    xs = sorted(k for k in arrays if k.startswith("x"))
    ys = sorted(k for k in arrays if k.startswith("y"))
    if not xs:
        raise CheckInputError(f"inputs file {path} has no x0 array (keys: {', '.join(sorted(arrays)) or 'none'})")
    for prefix, keys in (("x", xs), ("y", ys)):
        if set(keys) != {f"{prefix}{i}" for i in range(len(keys))}:
            raise CheckInputError(f"inputs file {path}: keys must be {prefix}0..{prefix}{len(keys) - 1}, "
                                  f"got {', '.join(keys)}")
    return len(xs), len(ys)


def check_custom_objects_file(path: Path) -> None:
    """Parse (never run) the file: it must define ``custom_objects`` or ``CUSTOM_OBJECTS``.

    Raises:
        CheckInputError: missing, does not parse, or defines neither.
    """
    if not path.is_file():
        raise CheckInputError(f"custom-objects file not found: {path}")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise CheckInputError(f"custom-objects file {path} fails to import: "
                              f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}"
                              + (f" (line {line})" if line else "")) from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    if "custom_objects" not in names and "CUSTOM_OBJECTS" not in names:
        raise CheckInputError(f"custom-objects file {path} defines neither custom_objects(keras) "
                              "nor a CUSTOM_OBJECTS dict")


# ==================================================================== compare (host)


def compare(got: Sequence[NpyArray], ref: Sequence[NpyArray], atol: float,
            rtol: float) -> tuple[bool, float | None, str]:
    """(close, max |diff|, reason) of two output lists, like numpy.allclose(equal_nan=True)."""
    if len(got) != len(ref):
        return False, None, f"{len(got)} outputs, the reference has {len(ref)}"
    worst = 0.0
    close = True
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        if g.shape != r.shape:
            return False, None, f"output {i} has shape {list(g.shape)}, the reference {list(r.shape)}"
        if g.values is None or r.values is None:
            return False, None, f"output {i} is not numeric ({g.dtype}): cannot compare"
        for a, b in zip(g.values, r.values, strict=True):
            if math.isnan(a) or math.isnan(b):
                if math.isnan(a) != math.isnan(b):
                    return False, None, f"output {i} has NaN where the reference has numbers"
                continue
            d = abs(a - b)
            worst = max(worst, d)
            if d > atol + rtol * abs(b):
                close = False
    return close, worst, "" if close else f"max |diff| {worst:.3g} beyond atol {atol:g} + rtol {rtol:g}"


def closeness(provenance: Mapping[str, str], env: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key: same Keras major.minor as the file first, then nearest version, same backend."""
    want = major_minor(provenance.get("keras_version"))
    have = major_minor(env.get("keras"))
    field = "keras"
    if want is None:
        want, have, field = (major_minor(provenance.get("tensorflow_version")),
                             major_minor(env.get("tensorflow")), "tensorflow")
    if want is None or have is None:
        return (2, 0, 0, 0, field)
    backend = provenance.get("backend")
    return (0 if want == have else 1, abs(want[0] - have[0]), abs(want[1] - have[1]),
            0 if not backend or backend == env.get("backend") else 1, field)


# ====================================================================== the check run


@dataclasses.dataclass
class Row:
    """One selected stack's line of the table."""

    stack: str
    versions: str = ""
    outcome: str = "not_run"  # final: after comparison with the reference
    passed: bool = False
    category: str = ""
    explanation: str = ""
    remedy: str = ""
    max_abs_diff: float | None = None
    note: str = ""
    record: Record | None = None


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
    atol: float = 1e-5
    rtol: float = 1e-5
    fresh: bool = False
    cell_timeout: float = 300.0
    import_timeout: float = 600.0
    jobs: int = 2


def _file_sha(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else ""


def _first_line(text: str | None) -> str:
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def _versions(env: Mapping[str, Any]) -> str:
    parts = []
    if env.get("tensorflow"):
        parts.append(f"TF {env['tensorflow']}")
    if env.get("keras"):
        parts.append(f"Keras {env['keras']}")
    if env.get("backend") and env.get("backend") != "tensorflow":
        parts.append(str(env["backend"]))
    return ", ".join(parts)


class _Check:
    def __init__(self, opt: Options, model: ModelFile, stacks: Sequence[Stack], catalog: Sequence[Stack],
                 out: TextIO, env_factory: Callable[[Stack, Store], StackEnv],
                 extra_sys_path: Sequence[str]) -> None:
        self.opt = opt
        self.model = model
        self.stacks = list(stacks)
        self.catalog = list(catalog)
        self.out = out
        self.env_factory = env_factory
        self.extra_sys_path = list(extra_sys_path)
        envs_dir = opt.envs_dir or (Path(os.environ["COMPAT_ENVS_DIR"]) if os.environ.get("COMPAT_ENVS_DIR")
                                    else Path(os.environ.get("COMPAT_STORE", ".matrix")) / "envs")
        self.store = Store(opt.store, envs_dir=envs_dir)
        self.base_flags = ({"custom_objects"} if opt.custom_objects else set()) | ({"unsafe"} if opt.unsafe else set())
        self.worker_shas = (hashlib.sha256(CHECK_WORKER_PATH.read_bytes()).hexdigest(), execute.worker_sha256())
        self.input_shas = (_file_sha(opt.custom_objects), _file_sha(opt.inputs))
        self.envs: dict[str, StackEnv] = {}
        self.provenance: dict[str, str] = dict(model.provenance)
        self.staged: tuple[Path, str | None] | None = None

    def log(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # ------------------------------------------------------------------------ cells
    def out_dir(self, stack: str, variant: str) -> Path:
        return self.store.root / "outputs" / self.model.model_id / stack / variant

    def cell(self, senv: StackEnv, variant: str) -> tuple[dict[str, Any], str]:
        assert self.staged is not None
        flags = set(variant.split("+")) if variant != "default" else set()
        key = cache_key("check", self.model.sha256, self.model.format, senv.fingerprint, variant,
                   self.worker_shas, self.input_shas[0] if "custom_objects" in flags else "",
                   self.input_shas[1], SEED, self.opt.atol, self.opt.rtol)
        cid = load_cell_id(self.model.model_id, self.model.format, SAVER, senv.stack.id, variant)
        return {"cell_id": cid, "format": self.model.format, "model_path": str(self.staged[0]),
                "weights_file": self.staged[1], "variant": variant,
                "custom_objects_path": str(self.opt.custom_objects.absolute()) if self.opt.custom_objects else None,
                "inputs_path": str(self.opt.inputs.absolute()) if self.opt.inputs else None,
                "out_dir": str(self.out_dir(senv.stack.id, variant)), "atol": self.opt.atol,
                "rtol": self.opt.rtol, "seed": SEED}, key

    def record(self, senv: StackEnv, variant: str, res: Mapping[str, Any], key: str) -> Record:
        try:
            outcome = Outcome(res.get("outcome"))
        except ValueError:
            outcome = Outcome.PROTOCOL_ERROR
        if not self.provenance:
            found = (res.get("details") or {}).get("provenance") or {}
            if found and not found.get("error"):
                self.provenance = {str(k): str(v) for k, v in found.items()}
        prov = self.provenance
        return Record(
            record_type="load", cell_id=str(res["cell_id"]), stack=senv.stack.id, outcome=outcome,
            key=key, saver=SAVER, loader=senv.stack.id, scenario=self.model.model_id,
            format=self.model.format, variant=variant, phase=res.get("phase"),
            error=ErrorInfo.from_dict(res.get("error")),
            warnings=tuple((str(w.get("category")), str(w.get("message"))) for w in res.get("warnings") or []),
            max_abs_diff=res.get("max_abs_diff"), duration_s=res.get("duration_s"),
            env=res.get("env") or senv.versions,
            saver_env={"keras": prov.get("keras_version"), "backend": prov.get("backend"),
                       "tensorflow": prov.get("tensorflow_version")},
            worker_sha256=self.worker_shas[0], scenario_sha256=self.model.sha256,
            details=dict(res.get("details") or {}))

    def run_variants(self, senv: StackEnv, variants: Sequence[str]) -> dict[str, Record]:
        """Run (or take from the cache) one cell per variant in this stack."""
        done: dict[str, Record] = {}
        todo: list[dict[str, Any]] = []
        keys: dict[str, tuple[str, str]] = {}
        for variant in variants:
            cell, key = self.cell(senv, variant)
            path = self.store.load_record_path(senv.stack.id, SAVER, self.model.model_id,
                                               self.model.format, variant)
            old = self.store.read(path)
            outputs = self.out_dir(senv.stack.id, variant) / "outputs.npz"
            if (not self.opt.fresh and old is not None and old.key == key
                    and (old.outcome is not Outcome.OK or outputs.exists())):
                done[variant] = old
                continue
            todo.append(cell)
            keys[cell["cell_id"]] = (variant, key)
        if todo:
            assert senv.python is not None
            self.log(f"[check {senv.stack.id}] loading with {', '.join(c['variant'] for c in todo)}")
            for res in execute.run_cells(
                    senv.python, "check", todo, workdir=self.store.root / "runs" / f"check-{senv.stack.id}",
                    env=execute.child_env(senv.stack.env_dict), keras_module=senv.stack.keras_module,
                    cell_timeout=self.opt.cell_timeout, import_timeout=self.opt.import_timeout,
                    extra_sys_path=self.extra_sys_path, worker_path=CHECK_WORKER_PATH):
                variant, key = keys[res["cell_id"]]
                rec = self.record(senv, variant, res, key)
                self.store.write(rec)
                done[variant] = rec
        return done

    def each(self, fn: Callable[[Stack], Any], stacks: Sequence[Stack]) -> None:
        if self.opt.jobs <= 1 or len(stacks) <= 1:
            for s in stacks:
                fn(s)
            return
        with ThreadPoolExecutor(max_workers=self.opt.jobs) as pool:
            for future in [pool.submit(fn, s) for s in stacks]:
                future.result()

    # ---------------------------------------------------------------------- the run
    def run(self) -> tuple[list[Row], dict[str, Any]]:
        self.store.ensure()
        self.staged = stage_model(self.model, self.store.root / "models" / self.model.model_id)
        base = variant_name(self.base_flags)
        results: dict[str, Record] = {}

        def env_and_load(stack: Stack) -> None:
            try:
                senv = self.env_factory(stack, self.store)
            except Exception as exc:
                senv = StackEnv(stack=stack, ok=False, reason=f"building the stack raised "
                                f"{type(exc).__name__}: {exc}", error_type="runner.EnvBuildError")
            self.envs[stack.id] = senv
            if not senv.ok:
                self.log(f"[env] {stack.id}: UNAVAILABLE: {_first_line(senv.reason)}")
                return
            rec = self.run_variants(senv, [base])[base]
            results[stack.id] = rec
            self.log(f"[check {stack.id}] {rec.outcome.value}"
                     + (f" - {rec.error.type.rsplit('.', 1)[-1]}: {_first_line(rec.error.message)[:100]}"
                        if rec.error and rec.outcome is not Outcome.OK else ""))

        self.each(env_and_load, self.stacks)
        self._refuse_bad_input(results)
        reference, ref_note = self._reference(results)
        rows = [self._row(stack, results.get(stack.id), reference) for stack in self.stacks]
        self._remedies(rows, reference)
        meta = {"reference": reference, "reference_note": ref_note, "variant": base,
                "provenance": self.provenance}
        return rows, meta

    def _refuse_bad_input(self, results: Mapping[str, Record]) -> None:
        """User-file problems every stack agrees on are bad input (exit 2), not findings."""
        ran = [r for r in results.values() if r.phase != "import" and r.outcome in (Outcome.OK, Outcome.MISMATCH,
                                                                                   Outcome.LOAD_ERROR)]
        user = [r for r in ran if r.error and r.error.type in USER_ERRORS]
        if ran and len(user) == len(ran):
            err = user[0].error
            assert err is not None
            what = {"check_worker.BadInputs": f"inputs file {self.opt.inputs} does not fit the model: ",
                    "check_worker.CustomObjectsError": f"custom-objects file {self.opt.custom_objects} "
                                                       "fails to import: ",
                    "check_worker.NoSignature": "cannot generate inputs: "}[err.type]
            raise CheckInputError(what + _first_line(err.message))

    def _reference(self, results: Mapping[str, Record]) -> tuple[str | None, str]:
        if self.opt.inputs is not None and check_inputs_file(self.opt.inputs)[1]:
            return "given", f"the y0.. arrays of {self.opt.inputs.name}"
        ok = [(sid, r) for sid, r in results.items() if r.outcome is Outcome.OK]
        if not ok:
            return None, "no stack loaded the model: nothing to compare with"
        prov = self.provenance
        sid, rec = min(ok, key=lambda p: (closeness(prov, p[1].env)[:4], natural_key(p[0])))
        key = closeness(prov, rec.env)
        if key[0] == 0:
            why = f"same {key[4]} major.minor as the file's"
        elif key[0] == 1:
            why = f"nearest {key[4]} version to the file's"
        else:
            why = "the file names no version; first stack that loaded it"
        return sid, f"{sid} ({_versions(rec.env)}): {why}"

    def _outputs(self, stack: str, variant: str) -> list[NpyArray]:
        arrays = read_npz(self.out_dir(stack, variant) / "outputs.npz", data=True)
        return [arrays[f"y{i}"] for i in range(len(arrays))]

    def _compare(self, rec: Record, reference: str | None) -> tuple[str, float | None, str]:
        """(final outcome, max |diff|, note) of a record that loaded, against the reference."""
        assert rec.loader is not None and rec.variant is not None
        if rec.outcome is not Outcome.OK or reference in (None, "given") or rec.details.get("compared"):
            return rec.outcome.value, rec.max_abs_diff, str(rec.details.get("reason") or "")
        ref = self._record_of(reference)
        if ref is None:
            return rec.outcome.value, None, ""
        if ref.details.get("inputs_sha256") != rec.details.get("inputs_sha256"):
            return "mismatch", None, "its input signature differs from the reference stack's"
        try:
            close, diff, reason = compare(self._outputs(rec.loader, rec.variant),
                                          self._outputs(str(reference), str(ref.variant)),
                                          self.opt.atol, self.opt.rtol)
        except (ValueError, KeyError, OSError) as exc:
            return "mismatch", None, f"outputs unreadable: {exc}"
        return ("ok" if close else "mismatch"), diff, reason

    def _record_of(self, stack: str | None) -> Record | None:
        if stack is None or stack == "given":
            return None
        return self.store.read(self.store.load_record_path(stack, SAVER, self.model.model_id,
                                                           self.model.format, variant_name(self.base_flags)))

    def _row(self, stack: Stack, rec: Record | None, reference: str | None) -> Row:
        senv = self.envs.get(stack.id)
        row = Row(stack=stack.id)
        if senv is None or not senv.ok or rec is None:
            row.outcome = "env_unavailable"
            row.note = _first_line(senv.reason if senv else "")
            row.category = "env_unavailable"
            return row
        row.versions = _versions(rec.env or senv.versions)
        outcome, diff, note = self._compare(rec, reference)
        row.outcome, row.max_abs_diff, row.record = outcome, diff, rec
        row.passed = outcome == "ok"
        if stack.id == reference:
            row.note = "reference"
        elif note:
            row.note = note
        if not row.passed:
            final = dataclasses.replace(rec, outcome=Outcome(outcome),
                                        details={**rec.details, **({"reason": note} if note else {})})
            if rec.error and rec.error.type == "check_worker.CustomObjectsError":
                row.category, row.explanation = "custom_objects_file", "your custom-objects file fails here"
            else:
                diag = diagnose.diagnose(final)
                if diag is not None:
                    row.category, row.explanation = diag.category, diag.explanation
                    row.record = final
                elif outcome == "not_applicable":
                    row.category = "format_unreadable_here"
                elif outcome != "ok":
                    row.category = "unclassified"
            if rec.error and not note:
                message = _first_line(rec.error.message).replace(str(self.store.root), "<check-store>")
                row.note = f"{rec.error.type.rsplit('.', 1)[-1]}: {message[:100]}"
        return row

    def _remedies(self, rows: Sequence[Row], reference: str | None) -> None:
        """Re-run each failing stack with the load variants its diagnosis names."""
        plans: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            if row.passed or row.record is None or row.outcome == "mismatch":
                continue
            diag = diagnose.diagnose(row.record)
            texts: list[str] = []
            for remedy in getattr(diag, "remedies", ()) or ():
                if remedy.variant:
                    flags = self.base_flags | set(remedy.variant.split("+"))
                    if flags == self.base_flags:
                        continue
                    if "unsafe" in flags and not self.opt.unsafe:
                        texts.append(f"{remedy.id}: not tried (safe mode stays on; --unsafe runs code "
                                     "from the model file inside the stack)")
                        continue
                    if "custom_objects" in flags and self.opt.custom_objects is None:
                        texts.append(f"{remedy.id}: pass --custom-objects FILE to try it")
                        continue
                    plans.setdefault(row.stack, []).append((remedy.id, variant_name(flags)))
                elif remedy.sibling:
                    sibling = next((s.id for s in self.catalog if s.sibling_of == row.stack
                                    and s.remedy == remedy.sibling), None)
                    texts.append(f"{remedy.label}" + (f" (stack {sibling})" if sibling else ""))
            row.remedy = "; ".join(texts)
        by_id = {r.stack: r for r in rows}

        def verify(stack: Stack) -> None:
            row = by_id[stack.id]
            plan = plans[stack.id]
            recs = self.run_variants(self.envs[stack.id], [v for _, v in plan])
            verdicts: list[str] = []
            for remedy_id, variant in plan:
                rec = recs[variant]
                outcome, diff, _note = self._compare(rec, reference)
                if outcome == "ok":
                    verdicts.insert(0, f"fixed by {remedy_id} (verified"
                                    + (f", max |diff| {diff:.3g})" if diff is not None else ")"))
                elif outcome == "not_applicable":
                    verdicts.append(f"{remedy_id} does not apply here"
                                    + (f" ({_first_line(rec.error.message)[:80]})" if rec.error else ""))
                else:
                    verdicts.append(f"{remedy_id} tried, still fails ({outcome})")
            row.remedy = "; ".join([*verdicts, *([row.remedy] if row.remedy else [])])

        self.each(verify, [s for s in self.stacks if s.id in plans])


# ============================================================================ output


HEADERS = ["stack", "versions", "outcome", "category", "remedy", "max abs diff", "note"]


def _cells(row: Row) -> list[str]:
    diff = "" if row.max_abs_diff is None else f"{row.max_abs_diff:.3g}"
    outcome = row.outcome + (" (reference)" if row.note == "reference" else "")
    return [row.stack, row.versions, outcome, row.category, row.remedy, diff,
            "" if row.note == "reference" else row.note]


def markdown_table(rows: Sequence[Row]) -> str:
    body = [_cells(r) for r in rows]
    esc = [[c.replace("|", "\\|").replace("\n", " ") for c in line] for line in body]
    widths = [max(len(h), *(len(line[i]) for line in esc)) for i, h in enumerate(HEADERS)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in esc]
    return "\n".join(out)


def _header_lines(model: ModelFile, meta: Mapping[str, Any], inputs: Path | None) -> list[str]:
    prov = meta.get("provenance") or model.provenance
    saved_by = ", ".join(f"{k} {prov[k]}" for k in ("keras_version", "backend", "tensorflow_version", "date_saved")
                         if prov.get(k)) or "nothing (no version metadata found)"
    return [f"model: {model.path.name} ({model.format}, {model.size} bytes, sha256 {model.sha256[:12]})",
            f"provenance: {saved_by}" + (f" [from {prov['source']}]" if prov.get("source") else ""),
            f"load variant: {meta['variant']} (safe mode {'OFF' if 'unsafe' in meta['variant'] else 'on'})",
            "inputs: " + (f"{inputs.name}" if inputs else f"generated from the model's input signature (seed {SEED})"),
            f"reference: {meta['reference_note']}"]


def write_outputs(out: Path, rows: Sequence[Row], header: Sequence[str], summary: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    md = ["# Is my model safe to upgrade?", "", *[f"- {h}" for h in header], "",
          markdown_table(rows), "", summary, ""]
    atomic_write_text(out / "check.md", "\n".join(md))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([h.replace(" ", "_") for h in HEADERS] + ["passed"])
    for r in rows:
        writer.writerow([*_cells(r), "yes" if r.passed else "no"])
    atomic_write_text(out / "check.csv", buf.getvalue())
    esc = html.escape
    colors = {True: "#c8e6c9", False: "#ffcdd2"}
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Model check</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:0.25em 0.6em;text-align:left}</style></head><body>",
             "<h1>Is my model safe to upgrade?</h1><ul>", *[f"<li>{esc(h)}</li>" for h in header],
             "</ul><table><tr>", "".join(f"<th>{esc(h)}</th>" for h in HEADERS), "</tr>"]
    for r in rows:
        parts.append(f"<tr style='background:{colors[r.passed]}'>"
                     + "".join(f"<td>{esc(c)}</td>" for c in _cells(r)) + "</tr>")
    parts += ["</table>", f"<p>{esc(summary)}</p></body></html>"]
    atomic_write_text(out / "check.html", "\n".join(parts) + "\n")


# =============================================================================== CLI


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "check", help="load your own model file in the selected stacks and compare predictions")
    p.add_argument("model", type=Path, help=".h5, .keras, SavedModel directory, architecture JSON "
                   "(weights next to it or --weights) or exported SavedModel; detected from content")
    p.add_argument("--weights", type=Path, default=None, help="weights file of an architecture JSON")
    p.add_argument("--custom-objects", type=Path, default=None,
                   help="a .py file defining custom_objects(keras) -> dict, or a CUSTOM_OBJECTS dict; "
                        "imported only inside each stack's worker")
    p.add_argument("--inputs", type=Path, default=None,
                   help=".npz with x0.. inputs (and optionally y0.. reference outputs)")
    p.add_argument("--stacks", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], default=[])
    p.add_argument("--tags", "-t", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], default=[],
                   help=f"catalog tags (default when no --stacks/--tags: {','.join(DEFAULT_TAGS)})")
    p.add_argument("--unsafe", action="store_true",
                   help="turn Keras safe mode off (lets the model file run its Lambda code, inside the stack)")
    p.add_argument("--out", type=Path, default=None, help="write check.md, check.html, check.csv here")
    p.add_argument("--store", type=Path, default=Path(os.environ.get("COMPAT_CHECK_STORE", DEFAULT_STORE)),
                   help=f"records and outputs of checks (default {DEFAULT_STORE})")
    p.add_argument("--envs-dir", type=Path, default=None,
                   help="stack venvs to reuse (default $COMPAT_ENVS_DIR, else .matrix/envs)")
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--fresh", action="store_true", help="recompute even if recorded")
    p.add_argument("--cell-timeout", type=float, default=300.0)
    p.add_argument("--import-timeout", type=float, default=600.0)
    p.add_argument("--jobs", "-j", type=int, default=min(2, os.cpu_count() or 1))


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(model=args.model, weights=args.weights, custom_objects=args.custom_objects,
                   inputs=args.inputs, stacks=tuple(args.stacks), tags=tuple(args.tags),
                   unsafe=args.unsafe, out=args.out, store=args.store, envs_dir=args.envs_dir,
                   catalog=args.catalog, atol=args.atol, rtol=args.rtol, fresh=args.fresh,
                   cell_timeout=args.cell_timeout, import_timeout=args.import_timeout,
                   jobs=max(1, args.jobs))


def run_check(opt: Options, *, out: TextIO = sys.stdout,
              env_factory: Callable[[Stack, Store], StackEnv] | None = None,
              extra_sys_path: Sequence[str] | None = None) -> int:
    """Check ``opt.model`` in the selected stacks; print the table; return the exit status.

    Raises:
        CheckInputError: bad input (before or after the stacks ran; no report is written).
        runner.stacks.CatalogError: unknown stack or tag.
    """
    catalog = load_catalog(opt.catalog)
    stacks = select(catalog, opt.stacks, opt.tags or (() if opt.stacks else DEFAULT_TAGS))
    model = inspect_model(opt.model, opt.weights)
    if opt.custom_objects is not None:
        check_custom_objects_file(opt.custom_objects)
    if opt.inputs is not None:
        check_inputs_file(opt.inputs)
    if opt.out is not None and opt.out.exists() and not opt.out.is_dir():
        raise CheckInputError(f"--out {opt.out} exists and is not a directory")
    check = _Check(opt, model, stacks, catalog, out, env_factory or ensure_env,
                   EXTRA_SYS_PATH if extra_sys_path is None else extra_sys_path)
    header = _header_lines(model, {"variant": variant_name(check.base_flags), "reference_note": "…"}, opt.inputs)
    print(header[0], file=out, flush=True)
    rows, meta = check.run()
    header = _header_lines(model, meta, opt.inputs)
    passed = sum(r.passed for r in rows)
    status = EXIT_OK if passed == len(rows) else EXIT_FAIL
    summary = (f"{passed} of {len(rows)} stacks load the model and match the reference"
               + ("." if status == EXIT_OK else f"; exit {status}."))
    print("\n".join(header[1:]), file=out)
    print(markdown_table(rows), file=out)
    print(summary, file=out, flush=True)
    if opt.out is not None:
        write_outputs(opt.out, rows, header, summary)
        print(f"check: report -> {opt.out}/", file=out, flush=True)
    return status
