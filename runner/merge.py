"""Merge store parts into one store: copy plus conflict detection.

Stdlib only. A *part* is a store directory (``records/`` and ``artifacts/``) written by
one job of a split run — a GitHub Actions job of the generated workflow, or one
``--shard K/N`` — and downloaded next to the others. Merging copies every record and
every artifact a copied ``ok`` save needs into the target store:

- a record the target does not have is copied (atomically);
- the same cell with the same cache key and outcome is fine (the target keeps its copy);
- the same cell with another key or outcome is a **conflict**: both records are listed
  and nothing of that cell is overwritten; the merge exits 1;
- an artifact is copied with its save record and must then match the digest that record
  carries, or the merge fails;
- a record from a newer schema, an unreadable record, or a stack the catalog does not
  know is bad input: one ``runner: error:`` line, exit 2, before anything is copied.

    python -m runner merge PART [PART ...] --store DIR [--catalog FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.cells import artifact_digest
from runner.records import Outcome, Record, RecordError, Store, atomic_write_text
from runner.stacks import DEFAULT_CATALOG, load_catalog

__all__ = ["EXIT_CONFLICT", "MergeError", "MergeResult", "add_parser", "cmd_merge", "merge"]

EXIT_CONFLICT = 1


class MergeError(ValueError):
    """A part cannot be merged (bad input): named in the message."""


@dataclasses.dataclass
class MergeResult:
    copied: int = 0
    identical: int = 0
    artifacts: int = 0
    conflicts: list[tuple[Record, Record, Path]] = dataclasses.field(default_factory=list)
    per_part: dict[str, int] = dataclasses.field(default_factory=dict)


def _read_part(part: Path, known: set[str]) -> list[tuple[Path, Record]]:
    """Every record of ``part`` (validated before anything is copied).

    Raises:
        MergeError: not a store, unreadable or newer-schema record, unknown stack.
    """
    if not part.is_dir():
        raise MergeError(f"part {part}: not a directory")
    records_dir = part / "records"
    found: list[tuple[Path, Record]] = []
    for path in sorted(records_dir.rglob("*.json")) if records_dir.is_dir() else []:
        try:
            rec = Record.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MergeError(f"part {part}: {path.relative_to(part)}: {exc}") from None
        for stack in (rec.stack, rec.saver, rec.loader):
            if stack is not None and stack not in known:
                raise MergeError(f"part {part}: {path.relative_to(part)} names stack {stack!r}, "
                                 "which the catalog does not have (merging parts of another catalog?)")
        found.append((path, rec))
    return found


def _same(a: Record, b: Record) -> bool:
    return a.key == b.key and a.outcome is b.outcome


def merge(parts: Sequence[Path], store: Store, known_stacks: set[str]) -> MergeResult:
    """Merge ``parts`` into ``store`` (see the module docstring).

    Raises:
        MergeError: bad input, found before anything is copied.
    """
    every = [(part, _read_part(part, known_stacks)) for part in parts]
    result = MergeResult()
    part_store = {part: Store(part) for part in parts}
    for part, found in every:
        result.per_part[str(part)] = len(found)
        for _path, rec in found:
            target = store.record_path(rec)
            have = store.read(target)
            if have is not None:
                if _same(have, rec):
                    result.identical += 1
                else:
                    result.conflicts.append((have, rec, part))
                continue
            if rec.record_type == "save" and rec.outcome is Outcome.OK:
                assert rec.saver and rec.scenario and rec.format
                src = part_store[part].artifact_dir(rec.saver, rec.scenario, rec.format)
                dst = store.artifact_dir(rec.saver, rec.scenario, rec.format)
                want = rec.details.get("artifact_sha256")
                if artifact_digest(src) != want:
                    raise MergeError(f"part {part}: the artifact of {rec.cell_id} is missing or does "
                                     "not match its save record's digest")
                if artifact_digest(dst) != want:
                    tmp = dst.with_name(dst.name + ".merge-tmp")
                    shutil.rmtree(tmp, ignore_errors=True)
                    shutil.copytree(src, tmp)
                    shutil.rmtree(dst, ignore_errors=True)
                    tmp.replace(dst)
                    result.artifacts += 1
            atomic_write_text(target, json.dumps(rec.to_dict(), indent=1, sort_keys=True) + "\n")
            result.copied += 1
    return result


def _describe(rec: Record, where: str) -> str:
    msg = (rec.error.message.splitlines() or [""])[0][:100] if rec.error else ""
    return f"    {where}: {rec.outcome.value} key {rec.key[:12] or '-'}" + (f" ({msg})" if msg else "")


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "merge", help="merge store parts (records + artifacts of split jobs) into one store; "
                      "exit 1 on conflicting cells, 2 on bad input")
    p.add_argument("parts", nargs="+", type=Path, help="part directories (each a store)")
    p.add_argument("--store", type=Path, required=True, help="the store to merge into")
    p.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG, help="stack catalog TOML")


def cmd_merge(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    known = {s.id for s in load_catalog(args.catalog)}
    store = Store(args.store)
    with store.running():
        try:
            result = merge(args.parts, store, known)
        except RecordError as exc:  # the target store holds a newer-schema record
            raise MergeError(str(exc)) from None
    for name, n in result.per_part.items():
        print(f"merge: {name}: {n} records" + (" (an empty part)" if n == 0 else ""), file=out)
    print(f"merge: {result.copied} records copied, {result.identical} identical, "
          f"{result.artifacts} artifacts copied, {len(result.conflicts)} conflicts -> {store.root}",
          file=out)
    for have, new, where in result.conflicts:
        print(f"merge: CONFLICT {new.cell_id}:", file=out)
        print(_describe(have, f"in {store.root}"), file=out)
        print(_describe(new, f"in {where}"), file=out)
    return EXIT_CONFLICT if result.conflicts else 0
