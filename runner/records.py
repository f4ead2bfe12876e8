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
import errno
import fcntl
import hashlib
import json
import marshal
import os
import sqlite3
import stat as stat_mod
import sys
import tempfile
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from runner import faults

__all__ = [
    "FINAL_OUTCOMES",
    "PREDICTIONS",
    "SCHEMA_VERSION",
    "TRAINING_FAILURES",
    "TRAINING_VERDICTS",
    "ErrorInfo",
    "Location",
    "NewerSchemaError",
    "Outcome",
    "Record",
    "RecordError",
    "RecordIndex",
    "Scan",
    "Store",
    "StoreBusyError",
    "atomic_write_many",
    "atomic_write_set",
    "atomic_write_text",
    "default_store_root",
    "first_line",
    "load_cell_id",
    "save_cell_id",
    "training_verdict",
    "upgrade",
]

SCHEMA_VERSION = 4
RecordType = Literal["save", "load", "env"]
RECORD_TYPES: tuple[str, ...] = ("save", "load", "env")


class Outcome(enum.Enum):
    """The closed set of cell outcomes (serialised as the lower-case value)."""

    OK = "ok"  # loaded (or saved), predictions within tolerance (a trained model: training resumed too)
    MISMATCH = "mismatch"  # loaded, predictions differ beyond tolerance
    # loaded, predictions match, but a trained model does not resume training like the saver's
    # (optimizer state lost, the next step diverges, or training cannot run): details["training"]
    TRAINING_MISMATCH = "training_mismatch"
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
FINAL_OUTCOMES = frozenset({Outcome.OK, Outcome.MISMATCH, Outcome.TRAINING_MISMATCH, Outcome.SAVE_ERROR,
                            Outcome.LOAD_ERROR, Outcome.NOT_APPLICABLE})

# A load's two comparisons (schema 3), kept in ``details``:
#   prediction      "match" | "differ": the loader's predictions against the saver's (its
#                   max |diff| is the record's ``max_abs_diff``); absent: not compared
#   training        a trained scenario's resumed training step against the saver's next step:
#                   "resumed" (state restored, the step lands where the saver's did),
#                   "state_lost" (the optimizer came back fresh or missing), "diverges" (the
#                   step count came back, the step lands elsewhere), "cannot_resume" (the step
#                   raised), "not_checked" (why in training_reason: an inference-only format
#                   or load variant, or predictions that already differ); absent: the scenario
#                   trains nothing, or the load did not get that far
#   training_diff   max |diff| of the resumed step's predictions from the saver's (or null)
#   training_reason why the verdict is not "resumed"
PREDICTIONS = ("match", "differ")
TRAINING_VERDICTS = ("resumed", "state_lost", "diverges", "cannot_resume", "not_checked")
TRAINING_FAILURES = ("state_lost", "diverges", "cannot_resume")


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
    # The digests the key was made of, by name ("env", "scenario", "artifact",
    # "component:load.h5", ...): what lets a planner say *which* input changed.
    key_parts: dict[str, str] = dataclasses.field(default_factory=dict)
    # A load's observations (its predictions, its training step: runner/judge.py), judged on
    # the host; ``judged_with`` names the judging code and tolerances of its verdict.
    observed: dict[str, Any] = dataclasses.field(default_factory=dict)
    judged_with: str = ""

    @property
    def prediction(self) -> str | None:
        """The prediction comparison: "match", "differ" or None (not compared)."""
        value = self.details.get("prediction")
        return value if value in PREDICTIONS else None

    @property
    def training(self) -> str | None:
        """The training-resume verdict (:data:`TRAINING_VERDICTS`) or None (not a trained
        scenario's load, or it stopped before)."""
        value = self.details.get("training")
        return value if value in TRAINING_VERDICTS else None

    @property
    def training_diff(self) -> float | None:
        value = self.details.get("training_diff")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

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
            "key_parts": self.key_parts,
            "observed": self.observed,
            "judged_with": self.judged_with,
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
        except (KeyError, ValueError, TypeError):
            raise RecordError(f"unknown outcome {d.get('outcome')!r}") from None
        if d.get("record_type") not in RECORD_TYPES:
            raise RecordError(f"unknown record_type {d.get('record_type')!r}")
        for key in ("cell_id", "stack"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise RecordError(f"record has no {key!r}")
        _check_types(d)
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
            key_parts={str(k): str(v) for k, v in (d.get("key_parts") or {}).items()},
            observed=dict(d.get("observed") or {}),
            judged_with=d.get("judged_with") or "",
        )


# Every field a record may hold, with the JSON types it may have (None: null allowed):
# a field of another type (a hand edit, another tool's file) makes the record unreadable,
# a RecordError, never an AttributeError deep inside a report.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("key", "saver", "loader", "scenario", "format", "variant", "phase",
                     "worker_sha256", "scenario_sha256"), (str, type(None))),
    **dict.fromkeys(("max_abs_diff", "duration_s"), (int, float, type(None))),
    **dict.fromkeys(("env", "saver_env", "details", "key_parts", "observed"), (dict, type(None))),
    "judged_with": (str, type(None)),
    "error": (dict, type(None)),
    "warnings": (list, type(None)),
}


def _check_types(d: dict[str, Any]) -> None:
    """Raises RecordError naming the first field whose JSON type a record cannot have."""
    for key, types in _FIELD_TYPES.items():
        value = d.get(key)
        if not isinstance(value, types) or isinstance(value, bool):
            raise RecordError(f"field {key!r} is {type(value).__name__} {str(value)[:40]!r}, "
                              f"not {' or '.join('null' if t is type(None) else t.__name__ for t in types)}")
    for w in d.get("warnings") or []:
        if not isinstance(w, dict):
            raise RecordError(f"a warning is {type(w).__name__}, not an object")
    for key, value in (d.get("error") or {}).items():
        if key in ("type", "message", "traceback") and not isinstance(value, (str, type(None))):
            raise RecordError(f"error {key!r} is {type(value).__name__}, not a string")
    details = d.get("details") or {}
    for key, allowed in (("prediction", PREDICTIONS), ("training", TRAINING_VERDICTS)):
        if details.get(key) is not None and details[key] not in allowed:
            raise RecordError(f"details {key!r} is {str(details[key])[:40]!r}, not one of {', '.join(allowed)}")
    diff = details.get("training_diff")
    if diff is not None and (not isinstance(diff, (int, float)) or isinstance(diff, bool)):
        raise RecordError(f"details 'training_diff' is {type(diff).__name__}, not a number or null")


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


def training_verdict(reason: str) -> str:
    """The training verdict a schema-2 record's reason states (the texts of the worker's
    ``_check_resumed_training`` up to schema 2)."""
    if "although the step count was restored" in reason:
        return "diverges"
    if "training could not resume" in reason or "training cannot resume" in reason:
        return "cannot_resume"
    return "state_lost"  # no optimizer, a fresh step count, or a step diverging from a fresh optimizer


def _upgrade_to_3(d: dict[str, Any]) -> dict[str, Any]:
    """v2 recorded a trained scenario's training verdict as the load's outcome: a load whose
    predictions matched but whose resumed training step did not was ``mismatch`` with
    ``details.check == "optimizer_state"``, and when the resumed step's predictions
    differed their max |diff| had replaced the prediction's in ``max_abs_diff``. v3 keeps
    the two facts apart (``details.prediction``, ``details.training``, see above) and
    gives such a load the outcome ``training_mismatch``. What v2 did not record stays
    unknown: the prediction max |diff| a diverging step overwrote (null; it was within
    tolerance), and whether an ``ok`` load of a trained scenario was checked (the report
    knows which scenarios train)."""
    d = dict(d)
    details = dict(d.get("details") or {})
    outcome = d.get("outcome")
    if d.get("record_type") == "load":
        if outcome == "mismatch" and details.get("check") == "optimizer_state":
            reason = str(details.get("reason") or "")
            details.pop("check")
            d["outcome"] = "training_mismatch"
            details["prediction"] = "match"
            details["training"] = training_verdict(reason)
            details["training_reason"] = reason
            if reason.startswith("one more training step diverges"):
                details["training_diff"] = d.get("max_abs_diff")
                d["max_abs_diff"] = None  # overwritten by the step's diff; the prediction's was within tolerance
            else:
                details["training_diff"] = None
        elif outcome == "mismatch":
            details["prediction"] = "differ"
        elif outcome == "ok":
            details["prediction"] = "match"
            note = str(details.get("note") or "")
            if note.startswith(("inference-only export", "inference only (")):
                details["training"] = "not_checked"
                details["training_reason"] = note
    d["details"] = details
    d["schema_version"] = 3
    return d


def _upgrade_to_4(d: dict[str, Any]) -> dict[str, Any]:
    """Schema 4 adds ``key_parts``. A schema-3 record was keyed by one digest of the whole
    worker: it has no parts, so no planner can say which input it was made from (its key
    never equals a schema-4 key, so it is recomputed, and ``--dry-run`` says why)."""
    d = dict(d)
    d["key_parts"] = {}
    d["schema_version"] = 4
    return d


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _upgrade_to_2, 2: _upgrade_to_3, 3: _upgrade_to_4}


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


# ------------------------------------------------------------------------------ index

_OUTCOME_BY_VALUE = {o.value: o for o in Outcome}
_PLAIN_FIELDS = tuple(f.name for f in dataclasses.fields(Record) if f.name not in ("outcome", "error", "warnings"))


def _record_from_clean(d: dict[str, Any]) -> Record:
    """:meth:`Record.from_dict` of a dict that :meth:`Record.to_dict` wrote from a record
    this very code built (the index's rows): the same record, without the upgrade and the
    type checks it already passed. Every field but the three below is taken by its own
    name, so a field added to :class:`Record` can never be dropped here."""
    e = d["error"]
    return Record(
        outcome=_OUTCOME_BY_VALUE[d["outcome"]],
        error=ErrorInfo(e["type"], e["message"], e["traceback"]) if e is not None else None,
        warnings=tuple((w["category"], w["message"]) for w in d["warnings"]),
        **{name: d[name] for name in _PLAIN_FIELDS})


Ident = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns


def _ident(st: os.stat_result) -> Ident:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _stamp() -> str:
    """What the index's rows depend on: its own layout, the schema, and this module's code
    (a runner whose record code differs, older or newer, never serves this one's rows)."""
    try:
        code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    except OSError:  # pragma: no cover - a zipped install: one stamp per process is safe
        code = f"pid{os.getpid()}-{time.time_ns()}"
    python = f"py{sys.version_info[0]}.{sys.version_info[1]}m{marshal.version}"  # marshal's format
    return f"{RecordIndex.FORMAT}:{SCHEMA_VERSION}:{code}:{python}"


class RecordIndex:
    """A derived cache of parsed records, ``<store>/.records-index.sqlite``: per record
    file (its path under ``records/``) the file's stat identity (device, inode, size,
    mtime and ctime in ns), a CRC and the record (its ``to_dict()`` in :mod:`marshal`'s
    format: 12 µs a record to decode and build, against 28 for compressed JSON and 38 for
    the file itself; marshal holds only this runner's own plain dicts here, CRC-checked,
    and whoever can write the store's root can already replace the stacks' interpreters
    under ``envs/``, so it opens nothing new). The record files stay
    the source of truth: a row is served only when the file's stat now equals the row's
    identity and the row's CRC matches; anything else (no row, another identity, a
    damaged, deleted, truncated or foreign-version index, a locked or read-only one) is a
    miss, and the file is read as without an index. So the index costs speed, never
    correctness.

    Why an equal identity means equal content: the store replaces a record by renaming a
    new file in (a new inode, a new ctime), an edit in place sets mtime and ctime to the
    file system's clock, and nobody can set a ctime. A row is written only for a file
    whose mtime and ctime are older, by :data:`RACY_NS`, than the file system's clock read
    *before* the file was read (git's "racily clean" rule): any later change then stamps
    a ctime at or after that clock, which no trusted row holds. Files written a moment
    ago are simply read again until they are old enough.

    Only usable records get rows: a damaged or newer-schema file is read (and reported)
    every time, exactly as without an index. Thread-safe; several processes may share
    the file (SQLite's own locking; a busy index drops its pending rows).
    """

    FORMAT = 2
    RACY_NS = 2_000_000_000  # a file changed less than 2 s before the clock read is not indexed
    FLUSH_ROWS = 4096  # rows gathered before a write transaction
    DIRS_KEPT = 8  # directories whose rows are kept in memory
    NAME = ".records-index.sqlite"

    def __init__(self, db: Path) -> None:
        self.db = db
        self.hits = 0  # records served from the index
        self.misses = 0  # records read from their files (then indexed when old enough)
        self.create = False  # may create the file: set while the store's write lock is held
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._state = "closed"  # closed | open | readonly | off
        self._pending: dict[str, tuple[Any, ...]] = {}  # rows to write, by path
        self._dirs: dict[str, dict[str, tuple[Any, ...]]] = {}  # rows read, by directory
        self._clock: tuple[float, int] | None = None  # (monotonic when read, fs clock ns)

    # -- connection
    def _open(self) -> sqlite3.Connection | None:
        if self._state == "off":
            return None
        if self._conn is not None:
            return self._conn
        if not self.db.parent.is_dir():
            return None  # no store yet: an index never creates one
        if not self.create and not self.db.exists():
            return None  # only a writer (the store's lock held) creates the file; readers use it
        stamp = _stamp()
        for attempt in range(2):
            conn = None
            try:
                conn = sqlite3.connect(self.db, timeout=2.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA page_size=16384")  # a new file only: rows of ~0.5 KB, fewer pages
                conn.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL)")
                conn.execute("CREATE TABLE IF NOT EXISTS rec(path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, "
                             "size INTEGER, mtime INTEGER, ctime INTEGER, crc INTEGER, body BLOB)")
                row = conn.execute("SELECT v FROM meta WHERE k = 'stamp'").fetchone()
                if row is None or row[0] != stamp:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("DELETE FROM rec")
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('stamp', ?)", (stamp,))
                    conn.execute("COMMIT")
                self._conn, self._state = conn, "open"
                return conn
            except sqlite3.OperationalError:
                # read-only store or directory, or busy: use an existing index of this
                # very code read-only, else none (every read goes to the files)
                if conn is not None:
                    conn.close()
                return self._open_readonly(stamp)
            except sqlite3.DatabaseError:  # not a database, malformed: rebuild it once
                if conn is not None:
                    conn.close()
                if attempt or not self._discard():
                    break
        self._state = "off"
        return None

    def _open_readonly(self, stamp: str) -> sqlite3.Connection | None:
        try:
            conn = sqlite3.connect(f"{self.db.absolute().as_uri()}?mode=ro", uri=True, timeout=2.0,
                                   check_same_thread=False)
            row = conn.execute("SELECT v FROM meta WHERE k = 'stamp'").fetchone()
            if row is not None and row[0] == stamp:
                self._conn, self._state = conn, "readonly"
                return conn
            conn.close()
        except sqlite3.Error:
            pass
        self._state = "off"
        return None

    def _discard(self) -> bool:
        """Remove a damaged index file (and its journal) so it is rebuilt."""
        try:
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{self.db}{suffix}").unlink(missing_ok=True)
            return True
        except OSError:
            return False

    def _broken(self) -> None:
        """The index failed under us (damaged since it was opened): this process stops
        using it and removes it, so the next one rebuilds it."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn, self._state = None, "off"
        self._pending.clear()
        self._dirs.clear()
        self._discard()

    # -- rows
    def _rows(self, conn: sqlite3.Connection, rel: str) -> dict[str, tuple[Any, ...]]:
        """The rows of ``rel``'s directory (one query per directory: the matrix reads a
        directory's records one after the other), the last few directories kept."""
        folder = rel.rpartition("/")[0]
        rows = self._dirs.get(folder)
        if rows is None:
            lo = f"{folder}/" if folder else ""
            hi = f"{folder}0" if folder else "\U0010ffff"  # "0" sorts right after "/"
            rows = {r[0]: r[1:] for r in conn.execute(
                "SELECT path, dev, ino, size, mtime, ctime, crc, body FROM rec WHERE path >= ? AND path < ?",
                (lo, hi))}
            if len(self._dirs) >= self.DIRS_KEPT:
                self._dirs.pop(next(iter(self._dirs)))
            self._dirs[folder] = rows
        return rows

    def get(self, rel: str, ident: Ident) -> Record | None:
        """The indexed record of ``rel`` if its row holds ``ident`` (the file's stat now)."""
        with self._lock:
            conn = self._open()
            if conn is None:
                return None
            try:
                row = self._rows(conn, rel).get(rel)
            except sqlite3.OperationalError:
                row = None  # busy: a miss
            except sqlite3.DatabaseError:
                self._broken()
                return None
            if row is None or row[:5] != ident:
                pending = self._pending.get(rel)
                row = pending[1:] if pending is not None else row
        if row is None or row[:5] != ident:
            return None
        body = row[6]
        try:
            if not isinstance(body, bytes) or zlib.crc32(body) != row[5]:
                return None
            rec = _record_from_clean(marshal.loads(zlib.decompress(body)))
        except (ValueError, KeyError, TypeError, AttributeError, EOFError, zlib.error):
            return None
        self.hits += 1
        return rec

    def clock(self) -> int | None:
        """The file system's clock now (ns), read before a file whose row may be written:
        the mtime of the index file, touched. None: no rows can be written."""
        with self._lock:
            if self._open() is None or self._state != "open":
                return None
            now = time.monotonic()
            if self._clock is None or now - self._clock[0] > 1.0:
                try:
                    os.utime(self.db, None)
                    self._clock = (now, self.db.stat().st_mtime_ns)
                except OSError:
                    return None
            return self._clock[1]

    def put(self, rel: str, ident: Ident, rec: Record, clock: int | None) -> None:
        """Index ``rec``, read from ``rel`` whose stat was ``ident``, if the file had not
        changed for :data:`RACY_NS` before ``clock`` (read before the file was)."""
        if clock is None or max(ident[3], ident[4]) >= clock - self.RACY_NS:
            return
        # zlib level 1: a 2.2 KB row becomes ~0.5 KB (the index was as large as the store)
        # for ~5 us of decompression a read
        body = zlib.compress(marshal.dumps(rec.to_dict()), 1)
        row = (*ident, zlib.crc32(body), body)
        with self._lock:
            if self._state != "open":
                return
            self._pending[rel] = (rel, *row)
            rows = self._dirs.get(rel.rpartition("/")[0])
            if rows is not None:
                rows[rel] = row
            if len(self._pending) >= self.FLUSH_ROWS:
                self._flush()

    def _flush(self) -> None:
        rows, self._pending = list(self._pending.values()), {}
        conn = self._conn
        if not rows or conn is None or self._state != "open":
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO rec VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except sqlite3.OperationalError:  # busy, read-only, disk full: the rows are dropped
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            self._broken()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def close(self) -> None:
        with self._lock:
            self._flush()
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
            self._conn = None
            if self._state != "off":
                self._state = "closed"


def _index_enabled() -> bool:
    return os.environ.get("COMPAT_STORE_INDEX", "on").strip().lower() not in ("off", "0", "no", "false")


def atomic_write_many(files: Iterable[tuple[Path, bytes]], chunk: int = 1024, threads: int = 16,
                      fault_point: str = "record-write") -> int:
    """Write many independent files, each as :func:`atomic_write_text` does (a synced temp
    file beside it, then renamed over it: a reader or a killed run sees the old or the new
    file, never half), in chunks whose temp files are written and synced by ``threads``
    threads at once (a file system commits concurrent syncs together: one sync per file,
    one after the other, is what made merging a whole store take minutes). A failure
    leaves every file of the failing chunk as it was; earlier chunks stay written.
    Returns the number of files written."""
    import concurrent.futures

    counter = iter(range(1 << 62))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

    def prepare(item: tuple[Path, bytes]) -> tuple[str, Path]:
        path, data = item
        folder, name = os.path.split(path)
        while True:  # a temp name no other writer uses (pid, thread-safe counter); the
            # umask applies to 0o666 as for any new file (mkstemp's 0600 needs a chmod)
            tmp = os.path.join(folder, f".{name}.{os.getpid()}-{next(counter)}.tmp")  # noqa: PTH118
            try:
                fd = os.open(tmp, flags, 0o666)
                break
            except FileExistsError:
                continue
            except FileNotFoundError:
                Path(folder).mkdir(parents=True, exist_ok=True)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp, path

    done = 0
    it = iter(files)
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        while True:
            batch = [x for _, x in zip(range(chunk), it, strict=False)]
            if not batch:
                return done
            futures = [pool.submit(prepare, item) for item in batch]
            temps: list[tuple[str, Path]] = []
            try:
                error: BaseException | None = None
                for fut in futures:
                    try:
                        temps.append(fut.result())
                    except BaseException as exc:  # wait for the others, then remove every temp
                        error = error or exc
                if error is not None:
                    raise error
                faults.point(fault_point)
                for tmp, path in temps:
                    os.replace(tmp, path)  # noqa: PTH105 - 200,000 of them in a merge
                    done += 1
                temps = []
            finally:
                for tmp, _path in temps:
                    Path(tmp).unlink(missing_ok=True)


def default_store_root() -> Path:
    """The matrix's work directory: ``$COMPAT_STORE``, else ``.matrix``."""
    return Path(os.environ.get("COMPAT_STORE", ".matrix"))


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a record file sits in the store's layout: its type and ids (``stack`` is the
    stack it ran in; a save's ``saver`` is that stack, an env record has no cell ids)."""

    record_type: str
    stack: str
    saver: str | None = None
    scenario: str | None = None
    format: str | None = None
    variant: str | None = None


@dataclasses.dataclass
class Scan:
    """What :meth:`Store.scan` read: the usable records, the files it skipped (path and
    why), and how many files the caller's selection left unread."""

    records: list[Record] = dataclasses.field(default_factory=list)
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    unselected: int = 0


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
        self._holder: int | None = None  # the thread holding running(), through this object
        # The parsed-record cache (a derived file beside records/, never the truth; see
        # RecordIndex). COMPAT_STORE_INDEX=off reads the files only.
        self.index: RecordIndex | None = None
        self._records_base = str(self.records_dir) + os.sep
        if _index_enabled():
            self.index = RecordIndex(self.root / RecordIndex.NAME)
            weakref.finalize(self, self.index.close)

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
    def running(self, wait: bool = False, reader: bool = False) -> Iterator[None]:
        """Hold the store's exclusive lock for a run: one writer per store.

        The lock file names its holder (pid, command line), so a second run says who is
        busy; ``wait=True`` queues behind it instead. Holding the lock, the run removes
        temp files a killed run left mid-write. The thread holding it may enter again
        through the same Store (``matrix`` keeps it from its first cell to its report).
        A ``reader`` (the report) of a store it may not write takes a shared lock on the
        lock file instead, so it still waits for, or refuses, a run that writes.

        Raises:
            StoreBusyError: another run holds the lock and ``wait`` is false.
        """
        me = threading.get_ident()
        if self._holder == me:
            yield
            return
        path = self.root / ".running.lock"
        try:
            if not reader:  # a reader adds nothing to the store but its lock file
                self.ensure()
            fh = path.open("a+")
        except OSError as exc:
            if not reader or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            try:
                fh = path.open("r")
            except FileNotFoundError:  # never locked, and no run can create its lock file
                yield
                return
        with fh:
            try:
                mode = fcntl.LOCK_SH if fh.mode == "r" else fcntl.LOCK_EX
                fcntl.flock(fh, mode | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "an unknown process"
                raise StoreBusyError(f"store {self.root} is in use by {holder}; wait for it to "
                                     "finish, or pass --wait to queue behind it") from None
            if fh.mode == "r":
                try:
                    self._holder = me
                    yield
                finally:
                    self._holder = None
                    fcntl.flock(fh, fcntl.LOCK_UN)
                return
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} (runner {' '.join(sys.argv[1:])[:200]})\n")
                fh.flush()
                for stale in self.records_dir.rglob(".*.tmp") if self.records_dir.is_dir() else []:
                    stale.unlink(missing_ok=True)
                if self.index is not None and not reader:
                    self.index.create = True  # a run (not a reader) may add the index file
                self._holder = me
                yield
            finally:
                self._holder = None
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

    def record_relpath(self, record: Record) -> str:
        """:meth:`record_path` under ``records/``, as a POSIX string (no Path objects: what
        merging a whole store asks 200,000 times)."""
        if record.record_type == "env":
            return f"env/{record.stack}.json"
        assert record.scenario and record.format and record.saver
        if record.record_type == "save":
            return f"save/{record.saver}/{record.scenario}__{record.format}.json"
        assert record.loader and record.variant
        return (f"load/{record.loader}/{record.saver}/"
                f"{record.scenario}__{record.format}__{record.variant}.json")

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
            rel = self._indexed(path)
            if rel is None:
                return Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
            st = os.stat(path)  # noqa: PTH116 - one stat, no Path method around it
            if not stat_mod.S_ISREG(st.st_mode):  # read as ever (and never indexed)
                return Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
            return self._read_indexed(path, rel, _ident(st), follow=True)
        except FileNotFoundError:
            return None
        except NewerSchemaError as exc:
            raise NewerSchemaError(f"{path}: {exc}") from None
        except (OSError, ValueError, KeyError, TypeError):
            self.unreadable.append(path)
            return None

    def _indexed(self, path: Path) -> str | None:
        """``path``'s key in the index (its path under records/), or None: no index, or
        a file off the records directory."""
        if self.index is None:
            return None
        text, base = str(path), self._records_base
        if not text.startswith(base):
            if path.is_absolute():
                return None
            text = str(path.absolute())
            if not text.startswith(base):
                return None
        rel = text[len(base):]
        if os.sep != "/":  # pragma: no cover - the index keys are POSIX paths
            rel = rel.replace(os.sep, "/")
        return rel if rel and ".." not in rel.split("/") else None

    def _read_indexed(self, path: Path, rel: str, ident: Ident, follow: bool) -> Record:
        """The record of the regular file ``path`` whose stat is ``ident``: from the index
        when its row holds that identity, else from the file (then indexed).

        Raises: as reading and parsing the file does (OSError, ValueError, RecordError, ...).
        """
        assert self.index is not None
        rec = self.index.get(rel, ident)
        if rec is not None:
            return rec
        self.index.misses += 1
        clock = self.index.clock()  # before the file is read (see RecordIndex)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
        try:
            before = os.fstat(fd)
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        rec = Record.from_dict(json.loads(b"".join(chunks).decode("utf-8")))
        if _ident(before) == _ident(after) == ident:  # else changed while read: not indexed
            self.index.put(rel, ident, rec, clock)
        return rec

    def location(self, path: Path) -> Location | None:
        """What the store's layout says of the record file at ``path`` (None: off the layout)."""
        try:
            parts = path.relative_to(self.records_dir).parts
        except ValueError:
            return None
        if not parts or not parts[-1].endswith(".json") or parts[-1].startswith("."):
            return None
        name = parts[-1][: -len(".json")]
        if len(parts) == 2 and parts[0] == "env" and name:
            return Location("env", name)
        if len(parts) == 3 and parts[0] == "save":
            fields = name.rsplit("__", 1)
            if len(fields) == 2 and all(fields):
                return Location("save", parts[1], parts[1], fields[0], fields[1])
        if len(parts) == 4 and parts[0] == "load":
            fields = name.rsplit("__", 2)
            if len(fields) == 3 and all(fields):
                return Location("load", parts[1], parts[2], fields[0], fields[1], fields[2])
        return None

    def scan(self, want: Callable[[Location], bool] | None = None) -> Scan:
        """Every usable record whose location ``want`` accepts (default all), in path order;
        files it rejects are counted, not read. A file that cannot be used (truncated, not
        JSON, a field of the wrong type, off the layout or not at its own record's path,
        not a regular file) is skipped and listed with the reason, so one damaged or stray
        file never stops a report.

        Raises:
            NewerSchemaError: a wanted record was written by a newer runner (named).
        """
        found = Scan()
        if not self.records_dir.is_dir():
            return found
        for path in sorted(self.records_dir.rglob("*.json")):
            loc = self.location(path)
            if loc is None:
                if not path.name.startswith("."):
                    found.skipped.append((path, "not a record file of the store's layout"))
                continue
            if want is not None and not want(loc):
                found.unselected += 1
                continue
            try:
                st = os.lstat(path)
                if not stat_mod.S_ISREG(st.st_mode):  # a symlink, a directory, a FIFO ...
                    raise RecordError("not a regular file")
                rel = self._indexed(path)
                if rel is None:
                    rec = Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
                else:
                    rec = self._read_indexed(path, rel, _ident(st), follow=False)
                at = self.record_path(rec)
            except NewerSchemaError as exc:
                raise NewerSchemaError(f"{path}: {exc}") from None
            except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
                found.skipped.append((path, first_line(f"{type(exc).__name__}: {exc}")[:200]))
                continue
            if at != path:
                found.skipped.append((path, f"holds the record of {rec.cell_id}, whose file is "
                                            f"{at.relative_to(self.root).as_posix()}"))
                continue
            found.records.append(rec)
        if self.index is not None:
            self.index.flush()
        return found

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
                rel = self._indexed(path)
                st = path.stat() if rel is not None else None
                if rel is not None and st is not None and stat_mod.S_ISREG(st.st_mode):
                    rec = self._read_indexed(path, rel, _ident(st), follow=True)
                else:
                    rec = Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise RecordError(f"{path}: {exc}") from None
            yield rec
        if self.index is not None:
            self.index.flush()
