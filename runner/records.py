"""Records: one schema-versioned JSON file per cell, and the store that holds them.

Stdlib only. The worker writes plain result events; the host turns each into a
:class:`Record` stamped with ids, cache key and the versions actually installed, and
writes it atomically (temp file + ``os.replace``), so a killed run never leaves a half
record and a re-run overwrites rather than duplicates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from runner import faults

__all__ = [
    "FINAL_OUTCOMES",
    "SCHEMA_VERSION",
    "ErrorInfo",
    "NewerSchemaError",
    "Outcome",
    "Record",
    "RecordError",
    "Store",
    "StoreBusyError",
    "atomic_write_set",
    "atomic_write_text",
    "default_store_root",
    "first_line",
    "load_cell_id",
    "save_cell_id",
    "upgrade",
]

SCHEMA_VERSION = 2
RecordType = Literal["save", "load", "env"]
RECORD_TYPES: tuple[str, ...] = ("save", "load", "env")


class Outcome(enum.Enum):
    """The closed set of cell outcomes (serialised as the lower-case value)."""

    OK = "ok"  # loaded (or saved), predictions within tolerance
    MISMATCH = "mismatch"  # loaded, predictions (or a trained model's next step) differ beyond tolerance
    SAVE_ERROR = "save_error"
    LOAD_ERROR = "load_error"
    NOT_APPLICABLE = "not_applicable"  # the (scenario, format) cannot exist in that stack
    TIMEOUT = "timeout"  # host: the cell exceeded its time limit
    CRASH = "crash"  # host: the worker died in this cell (signal / exit code)
    PROTOCOL_ERROR = "protocol_error"  # host: the worker broke the protocol
    ENV_UNAVAILABLE = "env_unavailable"  # the stack could not be built or imported
    NOT_RUN = "not_run"  # report: nothing recorded for this cell

    @property
    def failed(self) -> bool:
        return self not in (Outcome.OK, Outcome.NOT_APPLICABLE, Outcome.NOT_RUN)

    @property
    def final(self) -> bool:
        """A fact about the cell, not about one run: only these are cache hits."""
        return self in FINAL_OUTCOMES


# timeout, crash, protocol_error and env_unavailable are facts about one run (a slow
# machine, an OOM kill, a damaged venv): the next run retries them.
FINAL_OUTCOMES = frozenset({Outcome.OK, Outcome.MISMATCH, Outcome.SAVE_ERROR, Outcome.LOAD_ERROR,
                            Outcome.NOT_APPLICABLE})


class RecordError(ValueError):
    """A record file cannot be used (corrupt, unknown outcome, newer schema)."""


class NewerSchemaError(RecordError):
    """A record was written by a newer runner: overwriting it would lose its information."""


class StoreBusyError(RuntimeError):
    """Another run holds the store's lock."""


@dataclasses.dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ErrorInfo | None:
        if not d:
            return None
        return cls(type=str(d.get("type", "")), message=str(d.get("message", "")),
                   traceback=str(d.get("traceback", "")))


def first_line(text: str | None) -> str:
    """The first non-blank line of ``text``, stripped ("" for none): how every table,
    log line and gate message quotes an error."""
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def save_cell_id(scenario: str, fmt: str, saver: str) -> str:
    return f"{scenario}:{fmt}:{saver}"


def load_cell_id(scenario: str, fmt: str, saver: str, loader: str, variant: str) -> str:
    return f"{scenario}:{fmt}:{saver}->{loader}:{variant}"


@dataclasses.dataclass(frozen=True)
class Record:
    """One cell's outcome. ``env`` holds the versions installed where it ran."""

    record_type: RecordType
    cell_id: str
    stack: str
    outcome: Outcome
    key: str = ""
    saver: str | None = None
    loader: str | None = None
    scenario: str | None = None
    format: str | None = None
    variant: str | None = None
    phase: str | None = None
    error: ErrorInfo | None = None
    warnings: tuple[tuple[str, str], ...] = ()
    max_abs_diff: float | None = None
    duration_s: float | None = None
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    saver_env: dict[str, Any] = dataclasses.field(default_factory=dict)
    worker_sha256: str = ""
    scenario_sha256: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "record_type": self.record_type,
            "cell_id": self.cell_id,
            "stack": self.stack,
            "outcome": self.outcome.value,
            "key": self.key,
            "saver": self.saver,
            "loader": self.loader,
            "scenario": self.scenario,
            "format": self.format,
            "variant": self.variant,
            "phase": self.phase,
            "error": self.error.to_dict() if self.error else None,
            "warnings": [{"category": c, "message": m} for c, m in self.warnings],
            "max_abs_diff": self.max_abs_diff,
            "duration_s": self.duration_s,
            "env": self.env,
            "saver_env": self.saver_env,
            "worker_sha256": self.worker_sha256,
            "scenario_sha256": self.scenario_sha256,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Record:
        """Build from any supported schema version (older ones are upgraded).

        Raises:
            RecordError: newer schema, unknown record type or outcome, missing ids.
        """
        d = upgrade(raw)
        try:
            outcome = Outcome(d["outcome"])
        except (KeyError, ValueError):
            raise RecordError(f"unknown outcome {d.get('outcome')!r}") from None
        if d.get("record_type") not in RECORD_TYPES:
            raise RecordError(f"unknown record_type {d.get('record_type')!r}")
        for key in ("cell_id", "stack"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise RecordError(f"record has no {key!r}")
        diff = d.get("max_abs_diff")
        return cls(
            record_type=d["record_type"],
            cell_id=d["cell_id"],
            stack=d["stack"],
            outcome=outcome,
            key=d.get("key") or "",
            saver=d.get("saver"),
            loader=d.get("loader"),
            scenario=d.get("scenario"),
            format=d.get("format"),
            variant=d.get("variant"),
            phase=d.get("phase"),
            error=ErrorInfo.from_dict(d.get("error")),
            warnings=tuple((str(w.get("category", "")), str(w.get("message", "")))
                           for w in d.get("warnings") or []),
            max_abs_diff=float(diff) if diff is not None else None,
            duration_s=d.get("duration_s"),
            env=dict(d.get("env") or {}),
            saver_env=dict(d.get("saver_env") or {}),
            worker_sha256=d.get("worker_sha256") or "",
            scenario_sha256=d.get("scenario_sha256") or "",
            details=dict(d.get("details") or {}),
        )


# --------------------------------------------------------------------- schema upgrade


def _upgrade_to_2(d: dict[str, Any]) -> dict[str, Any]:
    """v1 (the first draft layout) named stacks ``saver_env``/``loader_env``, had no
    variant or cell id, and kept ``returncode``/``log_tail`` at the top level."""
    d = dict(d)
    saver = d.pop("saver_env", None)
    loader = d.pop("loader_env", None)
    d["saver"], d["loader"] = saver, loader
    rtype = d.get("record_type")
    if rtype == "load":
        d.setdefault("variant", "default")
        d["cell_id"] = load_cell_id(d["scenario"], d["format"], saver, loader, d["variant"])
        d["stack"] = loader
    elif rtype == "save":
        d["cell_id"] = save_cell_id(d["scenario"], d["format"], saver)
        d["stack"] = saver
    else:
        d["stack"] = d.get("stack") or saver
        d["cell_id"] = d.get("cell_id") or f"env:{d['stack']}"
    details = dict(d.get("details") or {})
    for key in ("returncode", "log_tail"):
        if key in d:
            details[key] = d.pop(key)
    d["details"] = details
    d["key"] = ""  # v1 had no cache key: never a cache hit, recomputed on the next run
    d["schema_version"] = 2
    return d


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_to_2}


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a record dict step by step to :data:`SCHEMA_VERSION`.

    Raises:
        RecordError: no or non-integer version, or newer than this code understands.
    """
    if not isinstance(raw, dict):
        raise RecordError(f"record is not a JSON object but {type(raw).__name__}")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(f"record has no integer schema_version: {version!r}")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"record schema_version {version} is newer than this runner's {SCHEMA_VERSION}; "
            "upgrade the runner")
    d = raw
    while version < SCHEMA_VERSION:
        step = _UPGRADES.get(version)
        if step is None:
            raise RecordError(f"no upgrade path from schema_version {version}")
        try:
            d = step(d)
        except (KeyError, TypeError, AttributeError) as exc:
            raise RecordError(f"cannot upgrade schema_version {version} record: "
                              f"{type(exc).__name__}: {exc}") from None
        version = d["schema_version"]
    return d


# ------------------------------------------------------------------------------ store


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never half."""
    atomic_write_set({path: text})


def atomic_write_set(files: Mapping[Path, str | bytes], fault_point: str = "record-write") -> None:
    """Write several files as a set: every new file is written and synced to a temp file
    beside its target first, and only then are the targets replaced. A full disk or a
    write error leaves every old file in place (renames need no space). Text is written
    as UTF-8, bytes (a gzip'd table) as they are."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; published files are not secret
            with os.fdopen(fd, "wb") as fh:
                fh.write(text if isinstance(text, bytes) else text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        faults.point(fault_point)
        for tmp, path in temps:
            Path(tmp).replace(path)
    except BaseException:
        for tmp, _path in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def default_store_root() -> Path:
    """The matrix's work directory: ``$COMPAT_STORE``, else ``.matrix``."""
    return Path(os.environ.get("COMPAT_STORE", ".matrix"))


class Store:
    """The work directory: records, artifacts, stack environments and run logs.

    Layout::

        records/env/<stack>.json
        records/save/<saver>/<scenario>__<format>.json
        records/load/<loader>/<saver>/<scenario>__<format>__<variant>.json
        artifacts/<saver>/<scenario>/<format>/      (model file, reference.npz, save.json)
        envs/<env-key>/                              (stack virtualenvs; or $COMPAT_ENVS_DIR)
        runs/<phase>-<stack>/                         (worker control dirs and logs)
    """

    def __init__(self, root: Path | str, envs_dir: Path | str | None = None) -> None:
        self.root = Path(root).absolute()
        # Stack venvs are pure caches of (interpreter, requirements): several stores (the
        # matrix, test runs) can share one directory of them via $COMPAT_ENVS_DIR.
        shared = envs_dir or os.environ.get("COMPAT_ENVS_DIR")
        self.envs_dir = Path(shared).absolute() if shared else self.root / "envs"
        self.unreadable: list[Path] = []  # records read() could not use (recomputed)

    def ensure(self) -> None:
        """Create the root with a ``*`` .gitignore and a CACHEDIR.TAG, as nox does."""
        self.root.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# created by the compat matrix runner\n*\n")
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n"
                           "# The compat matrix work directory; see https://bford.info/cachedir/\n")

    @contextlib.contextmanager
    def running(self, wait: bool = False) -> Iterator[None]:
        """Hold the store's exclusive lock for a run: one writer per store.

        The lock file names its holder (pid, command line), so a second run says who is
        busy; ``wait=True`` queues behind it instead. Holding the lock, the run removes
        temp files a killed run left mid-write.

        Raises:
            StoreBusyError: another run holds the lock and ``wait`` is false.
        """
        self.ensure()
        path = self.root / ".running.lock"
        with path.open("a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "an unknown process"
                raise StoreBusyError(f"store {self.root} is in use by {holder}; wait for it to "
                                     "finish, or pass --wait to queue behind it") from None
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} (runner {' '.join(sys.argv[1:])[:200]})\n")
                fh.flush()
                for stale in self.records_dir.rglob(".*.tmp") if self.records_dir.is_dir() else []:
                    stale.unlink(missing_ok=True)
                yield
            finally:
                with contextlib.suppress(OSError):
                    fh.seek(0)
                    fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def env_record_path(self, stack: str) -> Path:
        return self.records_dir / "env" / f"{stack}.json"

    def save_record_path(self, saver: str, scenario: str, fmt: str) -> Path:
        return self.records_dir / "save" / saver / f"{scenario}__{fmt}.json"

    def load_record_path(self, loader: str, saver: str, scenario: str, fmt: str,
                         variant: str) -> Path:
        return self.records_dir / "load" / loader / saver / f"{scenario}__{fmt}__{variant}.json"

    def artifact_dir(self, saver: str, scenario: str, fmt: str) -> Path:
        return self.root / "artifacts" / saver / scenario / fmt

    def record_path(self, record: Record) -> Path:
        if record.record_type == "env":
            return self.env_record_path(record.stack)
        assert record.scenario and record.format and record.saver
        if record.record_type == "save":
            return self.save_record_path(record.saver, record.scenario, record.format)
        assert record.loader and record.variant
        return self.load_record_path(record.loader, record.saver, record.scenario,
                                     record.format, record.variant)

    def write(self, record: Record) -> Path:
        path = self.record_path(record)
        atomic_write_text(path, json.dumps(record.to_dict(), indent=1, sort_keys=True) + "\n")
        return path

    def read(self, path: Path) -> Record | None:
        """The record at ``path``, or None if absent or unusable (then it is recomputed,
        and the path is added to :attr:`unreadable` so the run can say so).

        Raises:
            NewerSchemaError: written by a newer runner; overwriting it would lose data.
        """
        try:
            return Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except NewerSchemaError as exc:
            raise NewerSchemaError(f"{path}: {exc}") from None
        except (OSError, ValueError, KeyError, TypeError):
            self.unreadable.append(path)
            return None

    def iter_records(self) -> Iterator[Record]:
        """Every record in the store, in path order.

        Raises:
            RecordError: a record file is corrupt or from a newer schema (named in the
                message): a report must not silently drop cells.
        """
        if not self.records_dir.is_dir():
            return
        for path in sorted(self.records_dir.rglob("*.json")):
            try:
                yield Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordError(f"{path}: {exc}") from None
