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
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.cells import artifact_digest
from runner.records import SCHEMA_VERSION, Outcome, Record, RecordError, Store, atomic_write_many
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


@dataclasses.dataclass
class _Item:
    """One distinct record file of the parts (a path under ``records/`` and its bytes),
    validated once however many parts carry it (every load job's part carries every save
    record): what merging needs of it without holding the record."""

    target: str  # the record's own path under the store's records/
    key: str
    outcome: Outcome
    cell_id: str
    artifact: tuple[str, str, str, str] | None  # an ok save's (saver, scenario, format, digest)
    canonical: bytes | None  # the bytes to write, when the part's file is not them already
    source: Path  # the first part file with these bytes


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _parse(part: Path, path: Path, data: bytes, known: set[str]) -> tuple[dict[str, Any], Record]:
    try:
        raw = json.loads(data.decode("utf-8"))
        rec = Record.from_dict(raw)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MergeError(f"part {part}: {path.relative_to(part)}: {exc}") from None
    for stack in (rec.stack, rec.saver, rec.loader):
        if stack is not None and stack not in known:
            raise MergeError(f"part {part}: {path.relative_to(part)} names stack {stack!r}, "
                             "which the catalog does not have (merging parts of another catalog?)")
    return raw, rec


def _read_part(part: Path, known: set[str], store: Store,
               items: dict[tuple[str, bytes], _Item]) -> list[tuple[str, bytes]]:
    """Every record file of ``part`` as (path under records/, digest of its bytes); each
    distinct one is parsed and validated once (into ``items``), before anything is copied.

    Raises:
        MergeError: not a store, unreadable or newer-schema record, unknown stack.
    """
    if not part.is_dir():
        raise MergeError(f"part {part}: not a directory")
    records_dir = part / "records"
    found: list[tuple[str, bytes]] = []
    base = len(str(records_dir)) + 1
    paths = sorted(records_dir.rglob("*.json"), key=lambda p: p.parts) if records_dir.is_dir() else []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MergeError(f"part {part}: {path.relative_to(part)}: {exc}") from None
        ident = (str(path)[base:], _digest(data))
        if ident not in items:
            raw, rec = _parse(part, path, data, known)
            # The part's file is copied as it is (the bytes the store it came from holds);
            # a record of an older schema is written upgraded, as this runner writes it.
            text = None if raw.get("schema_version") == SCHEMA_VERSION else (
                json.dumps(rec.to_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8")
            artifact = None
            if rec.record_type == "save" and rec.outcome is Outcome.OK:
                assert rec.saver and rec.scenario and rec.format
                artifact = (rec.saver, rec.scenario, rec.format, str(rec.details.get("artifact_sha256")))
            items[ident] = _Item(store.record_relpath(rec), rec.key, rec.outcome, rec.cell_id,
                                 artifact, text, path)
        found.append(ident)
    return found


def _record(item: _Item) -> Record:
    """The record itself (for a conflict's message), read again from its part file."""
    return Record.from_dict(json.loads(item.canonical or item.source.read_bytes()))


def merge(parts: Sequence[Path], store: Store, known_stacks: set[str]) -> MergeResult:
    """Merge ``parts`` into ``store`` (see the module docstring).

    Every part file is read once to validate it (a file several parts carry with the same
    bytes is parsed once); a record whose bytes equal the store's file is identical without
    parsing either; new records are written in batches (:func:`atomic_write_many`), each
    after its artifact.

    Raises:
        MergeError: bad input, found before anything is copied.
    """
    items: dict[tuple[str, bytes], _Item] = {}
    every = [(part, _read_part(part, known_stacks, store, items)) for part in parts]
    result = MergeResult()
    part_store = {part: Store(part) for part in parts}
    # What this merge put at a target (copied, or found there): later parts' records of the
    # same cell are compared with it, as if it had been written already.
    placed: dict[str, _Item] = {}
    writes: list[tuple[str, _Item]] = []
    records_base = str(store.records_dir)
    for part, found in every:
        result.per_part[str(part)] = len(found)
        for ident in found:
            item = items[ident]
            have_item = placed.get(item.target)
            if have_item is not None:
                if have_item is item or (have_item.key == item.key and have_item.outcome is item.outcome):
                    result.identical += 1
                else:
                    result.conflicts.append((_record(have_item), _record(item), part))
                continue
            target = os.path.join(records_base, item.target)  # noqa: PTH118 - no Path per record
            try:
                with open(target, "rb") as fh:  # noqa: PTH123
                    current = fh.read()
            except (FileNotFoundError, NotADirectoryError):
                current = None
            except OSError:
                current = b""  # read() below says what it is
            if current is not None:
                if current == (item.canonical or item.source.read_bytes()):
                    result.identical += 1
                    placed[item.target] = item
                    continue
                have = store.read(Path(target))
                if have is not None:
                    if have.key == item.key and have.outcome is item.outcome:
                        result.identical += 1
                    else:
                        result.conflicts.append((have, _record(item), part))
                    continue
            if item.artifact is not None:
                saver, scenario, fmt, want = item.artifact
                src = part_store[part].artifact_dir(saver, scenario, fmt)
                dst = store.artifact_dir(saver, scenario, fmt)
                if artifact_digest(src) != want:
                    raise MergeError(f"part {part}: the artifact of {item.cell_id} is missing or does "
                                     "not match its save record's digest")
                if artifact_digest(dst) != want:
                    tmp = dst.with_name(dst.name + ".merge-tmp")
                    shutil.rmtree(tmp, ignore_errors=True)
                    shutil.copytree(src, tmp)
                    shutil.rmtree(dst, ignore_errors=True)
                    tmp.replace(dst)
                    result.artifacts += 1
            placed[item.target] = item
            writes.append((target, item))
            result.copied += 1
    atomic_write_many((Path(target), item.canonical or item.source.read_bytes()) for target, item in writes)
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
