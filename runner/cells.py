"""Cell helpers shared by every producer of cells (the matrix, ``check``) and by the
readers of their records (``report``, ``diagnose``, ``merge``): cache keys, the one cache
rule, a worker result as a record, load cell ids, and an artifact's content digest.

Stdlib only, host side, and nothing of planning or execution: importing it never imports
the matrix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner import components, keys
from runner._worker import worker as _w
from runner.records import ErrorInfo, Outcome, Record

__all__ = [
    "DEFAULT_SEED",
    "MODEL_FILES",
    "REFUSED",
    "artifact_digest",
    "check_key",
    "held_at_full_limit",
    "parse_load_cell_id",
    "record_from_result",
    "reusable",
    "why_rerun",
]


# The worker's vocabulary, read here so that the producers of cells import its constants
# from one place (runner._worker.__init__: the host reads the worker's constants, never
# calls its functions).
DEFAULT_SEED: int = _w.DEFAULT_SEED
MODEL_FILES: dict[str, str] = dict(_w.MODEL_FILES)
# The error type of a load refused before loading, because it would run code from the file
# (check_worker.Refused; tests/test_check.py pins that the two agree).
REFUSED = "runner.refused_unsafe"


def reusable(old: Record, limit: float, full: float | None = None) -> bool:
    """May ``old`` (whose key matches) stand for this run? The one cache rule (the matrix's
    and ``check``'s): final outcomes may. A timeout may once it happened in two runs in a
    row at the cell's limit in force now; every other per-run outcome (crash,
    protocol_error, env_unavailable) is retried, and so is a timeout that did not hold at
    the full limit (:func:`held_at_full_limit`)."""
    if old.outcome.final:
        return True
    if old.outcome is not Outcome.TIMEOUT or not held_at_full_limit(old):
        return False
    held = old.details.get("full_limit_s")
    same = old.details.get("limit_s") == limit if held is None else (full is None or held == full)
    return same and old.details.get("timeouts_in_a_row", 0) >= 2


def why_rerun(old: Record | None, key: str, parts: Mapping[str, str], limit: float, full: float | None = None,
              fresh: bool = False, product: Callable[[Record], str] | None = None) -> str | None:
    """The one reuse-or-rerun decision of every producer of cells (the matrix, ``check``):
    None when ``old`` stands for this run, else why the cell runs — what ``--dry-run``
    prints. ``parts``: the key's named parts, so a changed key names what changed.
    ``product``: why what an ``ok`` record stands for (a save's artifact, a check's
    outputs) can no longer be used, "" when it can; such a record runs again."""
    if fresh:
        return "--fresh"
    if old is None:
        return NO_RECORD
    if old.key != key:
        return "changed: " + ", ".join(keys.changed_parts(old.key_parts, parts))
    if not reusable(old, limit, full):
        return f"{old.outcome.value} is retried"
    if product is not None and old.outcome is Outcome.OK:
        return product(old) or None
    return None


def check_key(model_sha256: str, env_fingerprint: str, fmt: str, variant: str, *, custom_objects: str,
              inputs: str, seed: int, sandbox: bool) -> tuple[str, dict[str, str]]:
    """A ``check`` cell's key: a load cell of a user's file. Its parts are a matrix load's
    (:func:`runner.keys.load_key`: the file's content digest as ``artifact``, the loader's
    env, the format, the variant and the worker components the load runs, following only
    its own format and flags) plus what only a check has: the check files
    (:func:`runner.components.check_parts`), the custom-objects file (when the variant
    imports it), the inputs, the seed and whether it loads in the sandbox."""
    parts = {"artifact": model_sha256, "env": env_fingerprint, "format": fmt, "variant": variant,
             **components.check_parts(fmt, variant), "inputs": inputs, "seed": str(seed),
             "sandbox": "yes" if sandbox else "no"}
    if "custom_objects" in variant.split("+"):
        parts["custom_objects"] = custom_objects  # only this variant imports the file
    return keys.key_of("check", parts), parts


NO_RECORD = "no record yet"


def held_at_full_limit(rec: Record) -> bool:
    """Whether a timeout held at the full limit: it ran at it, or its group's representative
    timed out at it (``confirmed_by``). Records without a full limit (``check``'s, whose
    limit is fixed) ran at theirs."""
    full = rec.details.get("full_limit_s")
    return (bool(rec.details.get("confirmed_by")) or full is None or bool(rec.details.get("first_in_worker"))
            or float(rec.details.get("limit_s") or 0) >= full)


def record_from_result(phase: str, res: dict[str, Any], *, key: str, stack: str, saver: str, scenario: str,
                       scenario_sha256: str, fmt: str, worker_sha256: str = "", loader: str | None = None,
                       variant: str | None = None, saver_env: dict[str, Any] | None = None,
                       limit_s: float | None = None, old: Record | None = None,
                       key_parts: dict[str, str] | None = None, judged_with: str = "") -> Record:
    """The record of one worker result (as :func:`runner.execute.run_cells` yields it): the
    matrix's, also ``check``'s (``scenario`` is then the model's id). An unknown outcome is a
    ``protocol_error``; ``limit_s`` (the cell limit in force) and, for a timeout, how many
    runs in a row timed out are kept in ``details``: runs at the same limit (a fixed one:
    ``check``), or under the same full limit (the matrix's loads). A timeout that did not
    hold at the full limit is an attempt of its own run, whose full-limit re-run carries
    its count instead of adding one."""
    details = dict(res.get("details") or {})
    details["limit_s"] = limit_s
    if res.get("outcome") == Outcome.TIMEOUT.value:
        full = details.get("full_limit_s")
        again = (old is not None and old.key == key and old.outcome is Outcome.TIMEOUT
                 and old.details.get("full_limit_s") == full
                 and (full is not None or old.details.get("limit_s") == details["limit_s"]))
        rows = int(old.details.get("timeouts_in_a_row", 1)) if again and old is not None else 0
        details["timeouts_in_a_row"] = rows + 1 if old is None or not again or held_at_full_limit(old) else rows
    try:
        outcome = Outcome(res.get("outcome"))
    except ValueError:
        outcome = Outcome.PROTOCOL_ERROR
        res = {**res, "error": {"type": "runner.protocol_error",
                                "message": f"worker reported unknown outcome {res.get('outcome')!r}"}}
    return Record(
        record_type=phase,  # type: ignore[arg-type]
        cell_id=res["cell_id"], stack=stack, outcome=outcome, key=key, saver=saver,
        loader=loader, scenario=scenario, format=fmt, variant=variant,
        phase=res.get("phase"), error=ErrorInfo.from_dict(res.get("error")),
        warnings=tuple((str(w.get("category")), str(w.get("message")))
                       for w in res.get("warnings") or []),
        max_abs_diff=res.get("max_abs_diff"), duration_s=res.get("duration_s"),
        env=res.get("env") or {}, saver_env=saver_env or {},
        worker_sha256=worker_sha256 or keys.worker_digest(key_parts or {}), scenario_sha256=scenario_sha256,
        details=details, key_parts=dict(key_parts or {}),
        observed=dict(res.get("observed") or {}), judged_with=judged_with if res.get("observed") else "",
    )


def parse_load_cell_id(cid: str) -> tuple[str, str, str, str, str]:
    """(scenario, format, saver, loader, variant) of a load cell id."""
    head, variant = cid.rsplit(":", 1)
    scenario, fmt, pair = head.split(":", 2)
    saver, loader = pair.split("->", 1)
    return scenario, fmt, saver, loader, variant


def artifact_digest(art: Path) -> str | None:
    """sha256 over an artifact directory (sorted relative file names and their bytes), or
    None when it has no save.json: a save's proof that the files loaded are the files saved."""
    if not (art / _w.SAVE_INFO_FILE).is_file():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in art.rglob("*") if p.is_file()):
        digest.update(path.relative_to(art).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()
