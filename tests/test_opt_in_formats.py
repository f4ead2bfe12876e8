"""Opt-in formats (issue 25 item 2): cells only where a scenario names them, keys that leave
every other cell alone, and the .keras-with-weights-beside loader under the fake framework
(real worker processes, real files). The real stacks' findings are in
tests/test_real_scenarios.py (Keras 3.4.1 deleting the file; TF checkpoints across Keras 2/3).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import REAL_SCENARIOS, FakeStack

from runner import components, scenario_catalog
from runner._worker import worker as w

H5_MAGIC = b"\x89HDF\r\n\x1a\n"
DELETED = "keras.models.load_model('model.keras') deleted model.weights.h5, the weights file beside it"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_opt_in_formats_are_cells_only_of_the_scenarios_naming_them() -> None:
    scenarios = {s.name: s for s in scenario_catalog.discover_scenarios(REAL_SCENARIOS)}
    assert scenario_catalog.FORMATS == w.FORMATS + w.OPT_IN_FORMATS
    assert set(w.OPT_IN_FORMATS) == {"tf_checkpoint", "keras+weights"}
    named = {fmt: sorted(n for n, s in scenarios.items() if s.uses(fmt)) for fmt in w.OPT_IN_FORMATS}
    assert named == {"tf_checkpoint": ["tf_checkpoint_adam"], "keras+weights": ["keras_weights_beside"]}
    # Every scenario keeps every default format (one that leaves one out records it n/a).
    assert all(s.uses(f) for s in scenarios.values() for f in w.FORMATS)
    for fmt in w.OPT_IN_FORMATS:
        assert set(w.SAVERS) >= {fmt} and set(w.LOADERS) >= {fmt}


def test_opt_in_formats_enter_no_other_cells_key() -> None:
    opt_in = {"worker:formats.opt_in", "worker:save.tf_checkpoint", "worker:save.keras+weights",
              "worker:load.tf_checkpoint", "worker:load.keras+weights"}
    for fmt in w.FORMATS:
        assert not opt_in & set(components.cell_parts("save", fmt)), fmt
        for variant in ("default", "custom_objects", "compile_false+unsafe", "tfsm", "signature"):
            assert not opt_in & set(components.cell_parts("load", fmt, variant)), (fmt, variant)
    assert {"worker:save.tf_checkpoint", "worker:formats.opt_in"} <= set(components.cell_parts("save", "tf_checkpoint"))
    beside = set(components.cell_parts("load", "keras+weights"))
    assert "worker:load.keras+weights" in beside and "worker:load.tf_checkpoint" not in beside


def _saved_pair(fake: FakeStack) -> dict[str, str]:
    save = fake.save_cell("beside", "keras_weights_beside", "keras+weights", scenarios=REAL_SCENARIOS)
    fake.save_ok([save], {"version": "3.4.1"})
    art = Path(save["artifact_dir"])
    assert {p.name for p in art.iterdir()} >= {"model.keras", "model.weights.h5"}
    return save


def test_a_load_that_deletes_the_weights_beside_is_the_finding_and_touches_no_artifact(fake: FakeStack) -> None:
    save = _saved_pair(fake)
    art = Path(save["artifact_dir"])
    before = {p.name: _digest(p) for p in art.iterdir()}
    deleting = {"version": "3.4.1", "load": {"action": "delete_sibling", "arg": "model.weights.h5"}}
    [bad] = fake.run("load", [fake.load_cell(save)], deleting)
    assert bad["outcome"] == "load_error" and bad["phase"] == "load", bad
    assert bad["error"]["message"] == DELETED
    # The loader deleted its private copy: the artifact the next loader reads is whole.
    assert {p.name: _digest(p) for p in art.iterdir()} == before
    # Twin: the same pair, a loader that leaves its folder alone: loads, weights file too.
    [good] = fake.run("load", [fake.load_cell(save)], {"version": "3.4.1"})
    assert (good["outcome"], good["max_abs_diff"]) == ("ok", 0.0), good


def test_the_weights_file_beside_is_really_loaded(fake: FakeStack) -> None:
    """The loader reads the weights file into the model: a weights file of other values
    changes the predictions (so the check above is not vacuous)."""
    save = _saved_pair(fake)
    weights = Path(save["artifact_dir"]) / "model.weights.h5"
    data = weights.read_bytes()
    assert data.startswith(H5_MAGIC)
    payload = json.loads(data[len(H5_MAGIC):])
    payload["weights"][0]["data"][0][0] += 3.0
    weights.write_bytes(H5_MAGIC + json.dumps(payload).encode())
    [res] = fake.run("load", [fake.load_cell(save)], {"version": "3.4.1"})
    assert res["outcome"] == "mismatch" and res["max_abs_diff"] > 0, res


@pytest.mark.parametrize("variant", ["compile_false", "unsafe"])
def test_load_options_do_not_apply_to_a_tf_checkpoint(fake: FakeStack, variant: str) -> None:
    """A TF checkpoint is read into a model built from code: compile=False or safe mode off
    would change nothing, so such a remedy is not applicable (never a false "fixed").
    Twin: the default load reads the checkpoint and predicts what the saver did."""
    save = fake.save_cell("ckpt", "tf_checkpoint_adam", "tf_checkpoint", scenarios=REAL_SCENARIOS)
    fake.save_ok([save])
    assert (Path(save["artifact_dir"]) / "checkpoint" / "ckpt").is_file()
    [res] = fake.run("load", [fake.load_cell(save, variant)])
    assert res["outcome"] == "not_applicable", res
    assert "does not apply to a tf_checkpoint load" in res["error"]["message"]
    [twin] = fake.run("load", [fake.load_cell(save)])
    assert twin["details"]["prediction"] == "match" and twin["max_abs_diff"] == 0.0, twin

