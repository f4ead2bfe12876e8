"""Fault tier: a loader that changes the artifacts it reads (Keras 3.4.0/3.4.1 delete a
``model.weights.h5`` next to a ``.keras`` they load, keras#19921) changes nothing for the
loaders after it: venv loaders read a hard-linked view, and an in-place write is caught
after the batch (its loads void, the artifact saved again by the next run)."""

from __future__ import annotations

import json
from pathlib import Path

import e2e
import pytest

from runner.cells import artifact_digest

pytestmark = pytest.mark.faults


def _digests(store: Path) -> dict[str, str | None]:
    return {str(p.relative_to(store)): artifact_digest(p) for p in sorted((store / "artifacts").glob("*/*/*"))}


def test_a_loader_deleting_files_next_to_its_model_changes_no_other_cell(tmp_path: Path, envs_dir: Path) -> None:
    clean = e2e.write_catalog(tmp_path / "clean.toml")
    proc = e2e.run_matrix(clean, tmp_path / "store-clean", tmp_path / "out-clean", envs_dir)
    assert proc.returncode == 0, e2e.describe(proc)
    # fk2.15 (the first loader) deletes save.json and reference.npz next to everything it loads
    deleting = e2e.write_catalog(tmp_path / "deleting.toml", {"fk2.15": {"load": [
        {"action": "delete_sibling", "arg": "save.json"}, {"action": "delete_sibling", "arg": "reference.npz"}]}})
    proc = e2e.run_matrix(deleting, tmp_path / "store", tmp_path / "out", envs_dir, "--jobs", "1")
    assert proc.returncode == 0, e2e.describe(proc)
    assert e2e.table(tmp_path / "out") == e2e.table(tmp_path / "out-clean")
    digests = _digests(tmp_path / "store")
    assert digests and None not in digests.values()  # every artifact still has its save.json
    assert "changed while it was loaded" not in proc.stdout + proc.stderr
    assert not (tmp_path / "store" / "views").exists() or not any((tmp_path / "store" / "views").iterdir())


def test_a_loader_writing_into_its_model_voids_its_loads(tmp_path: Path, envs_dir: Path) -> None:
    scribbling = e2e.write_catalog(tmp_path / "scribble.toml", {"fk3.9": {"load": {"action": "scribble",
                                                                                  "match": "fk2.15/mlp/h5"}}})
    proc = e2e.run_matrix(scribbling, tmp_path / "store", tmp_path / "out", envs_dir, "--jobs", "1")
    log = proc.stdout + proc.stderr
    assert "fk2.15/mlp/h5 changed while it was loaded" in log, e2e.describe(proc)
    recs = [json.loads(p.read_text()) for p in (tmp_path / "store" / "records" / "load" / "fk3.9" / "fk2.15").glob(
        "mlp__h5__*.json")]
    assert recs and all(r["outcome"] == "protocol_error" and r["error"]["type"] == "runner.artifact_changed"
                        for r in recs), recs
    # The twin: the clean rerun saves the artifact again and every cell is a result again.
    clean = e2e.write_catalog(tmp_path / "clean.toml")
    proc = e2e.run_matrix(clean, tmp_path / "store", tmp_path / "out", envs_dir)
    assert proc.returncode == 0, e2e.describe(proc)
    assert "protocol_error" not in {v[0] for v in e2e.table(tmp_path / "out").values()}
