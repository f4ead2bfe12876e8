"""What a bisect found, as the report reads it: the result files under ``<store>/bisect/results/``.

Stdlib only, and no import of the matrix: ``runner/report.py`` reads these files (the
search itself, which runs cells, is ``runner/bisect.py``). One JSON file per flip — a cell
whose outcome differs between two adjacent catalog stacks of one line (see
``runner/bisect.py``) — written atomically when its search ends::

    {"version": 1, "side": "loader" | "saver", "package": "keras",
     "older": {"stack", "cell_id", "release", "outcome", "key"},
     "newer": {"stack", "cell_id", "release", "outcome", "key"},
     "candidates": ["3.11.0", ...],             releases between the two, oldest first
     "steps": [{"release", "stack", "outcome", "cell_id"}, ...],   in the order they ran
     "last_as_before": "3.11.2",                the newest release with the older end's outcome
     "first_changed": "3.11.3",                 the first release whose outcome differs
     "unbuilt_between": [],                     releases between the two that gave no outcome
     "wall_s": 12.3}

A result describes the table only while both of its cells still have the outcomes it
records: the report checks that before it shows one (:func:`table_annotations`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_DIR", "Annotation", "annotation", "iter_results", "notes_url", "result_path",
           "results_digest", "table_annotations"]

RESULTS_DIR = Path("bisect") / "results"  # under the store's root
VERSION = 1


def result_path(store_root: Path, side: str, older_cell: str, newer_cell: str) -> Path:
    """Where the result of one flip is kept (a digest of its identity names the file)."""
    digest = hashlib.sha256(f"{side}\0{older_cell}\0{newer_cell}".encode()).hexdigest()[:24]
    return store_root / RESULTS_DIR / f"{digest}.json"


def iter_results(store_root: Path) -> Iterator[dict[str, Any]]:
    """Every readable result file of the store, in file-name order (unreadable ones are passed
    over: a result is an annotation, and the next bisect writes it again)."""
    folder = store_root / RESULTS_DIR
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("older"), dict) \
                and isinstance(data.get("newer"), dict):
            yield data


def results_digest(store_root: Path) -> str:
    """Names and bytes of the result files (the incremental report's input)."""
    h = hashlib.sha256()
    folder = store_root / RESULTS_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            try:
                h.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                h.update(path.name.encode() + b"\0unreadable")
    return h.hexdigest()


_NOTES = {
    "keras": "https://github.com/keras-team/keras/releases/tag/v{version}",
    "tensorflow": "https://github.com/tensorflow/tensorflow/releases/tag/v{version}",
    "tensorflow-cpu": "https://github.com/tensorflow/tensorflow/releases/tag/v{version}",
    "tf-keras": "https://github.com/keras-team/tf-keras/releases/tag/v{version}",
}


def notes_url(package: str, version: str) -> str:
    """The release's notes: the project's GitHub release page for Keras, TensorFlow and
    tf-keras, else the release's page on the package index."""
    name = re.sub(r"[-_.]+", "-", package).lower()
    return _NOTES.get(name, "https://pypi.org/project/{package}/{version}/").format(package=name, version=version)


class Annotation(dict):  # type: ignore[type-arg]
    """What a table row shows of a bisect (a dict, so it is a frame row's extra columns):
    ``first_bad_release``, ``last_good_release``, ``release_notes``; plus ``was`` (the
    older end's outcome), which errors.md quotes."""


def annotation(result: Mapping[str, Any]) -> Annotation | None:
    """The row columns of a result whose newer end fails (a break); None for a fix (the
    newer end loads and matches) or a result without an answer."""
    first, last, package = result.get("first_changed"), result.get("last_as_before"), result.get("package")
    newer, older = result["newer"], result["older"]
    if not (first and last and package) or newer.get("outcome") == "ok":
        return None
    return Annotation(first_bad_release=f"{package} {first}", last_good_release=f"{package} {last}",
                      release_notes=notes_url(str(package), str(first)), was=str(older.get("outcome") or ""))


def table_annotations(store_root: Path, outcomes: Mapping[str, str]) -> dict[str, Annotation]:
    """Per table cell id, the annotation of the bisect that explains it: the newer end's cell
    of a break whose two cells still have the outcomes the result recorded (``outcomes``:
    the table's cell id -> outcome). Two results for one cell (its loader and its saver
    both flipped): the loader's is shown."""
    found: dict[str, Annotation] = {}
    for result in sorted(iter_results(store_root), key=lambda r: r.get("side") != "loader"):
        newer, older = result["newer"], result["older"]
        if outcomes.get(str(newer.get("cell_id"))) != newer.get("outcome") \
                or outcomes.get(str(older.get("cell_id"))) != older.get("outcome"):
            continue
        note = annotation(result)
        if note is not None:
            found.setdefault(str(newer["cell_id"]), note)
    return found
