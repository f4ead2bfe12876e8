"""The remedy phase's plan: which cells are re-run to verify the remedies of failing loads."""

from __future__ import annotations

import io
from pathlib import Path

from runner import matrix, scenario_catalog
from runner.records import ErrorInfo, Outcome, Record, Store, load_cell_id
from runner.stacks import Stack

K2 = {"keras": "2.15.0", "backend": "tensorflow"}
K3 = {"keras": "3.0.5", "backend": "tensorflow"}
SAVEDMODEL = ("File format not supported: filepath=/some/long/path/to/an/artifact/directory/of/"
              "the/store/savedmodel. Keras 3 only supports V3 `.keras` files and legacy H5 format files")
UNKNOWN = "Unknown layer: 'ScaleShift'. Please ensure you are using a `keras.utils.custom_object_scope`"


def _stack(sid: str, **kw: str) -> Stack:
    return Stack(id=sid, python="3.11", requirements=(f"x=={sid}",), **kw)  # type: ignore[arg-type]


def _scenario(tmp: Path, name: str, custom: bool) -> scenario_catalog.Scenario:
    path = tmp / f"{name}.py"
    path.write_text("def build(keras):\n    return None\n\n\ndef inputs(np):\n    return None\n"
                    + ("\n\ndef custom_objects(keras):\n    return {}\n" if custom else ""))
    return scenario_catalog.read_scenario(path)


def _fail(store: Store, saver: str, loader: str, sc: str, fmt: str, message: str,
          variant: str = "default", etype: str = "builtins.ValueError") -> None:
    store.write(Record(record_type="load", cell_id=load_cell_id(sc, fmt, saver, loader, variant),
                       stack=loader, outcome=Outcome.LOAD_ERROR, saver=saver, loader=loader,
                       scenario=sc, format=fmt, variant=variant, phase="load",
                       error=ErrorInfo(etype, message), env=K3, saver_env=K2))


def test_plan_names_variant_and_sibling_remedies_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    saver, loader = _stack("tf2.15"), _stack("tf2.16")
    sibling = _stack("tf2.16-tfkeras", sibling_of="tf2.16", remedy="tf_keras")
    dense, custom = _scenario(tmp_path, "dense", False), _scenario(tmp_path, "custom", True)
    _fail(store, "tf2.15", "tf2.16", "dense", "savedmodel", SAVEDMODEL)
    _fail(store, "tf2.15", "tf2.16", "custom", "h5", UNKNOWN)
    _fail(store, "tf2.15", "tf2.16", "dense", "h5", UNKNOWN)  # no custom_objects() in dense
    runner = matrix._Runner([loader], [saver], [dense, custom], ["h5", "savedmodel"], store,
                            matrix.Options(), io.StringIO(), env_factory=lambda s, st: None)  # type: ignore[arg-type,return-value]
    plan = runner.plan_remedies([saver, loader, sibling])
    got = {sid: sorted((c[1].name, c[2], c[3]) for c in cells) for sid, cells in plan.items()}
    assert got == {
        # Keras 2 SavedModel in Keras 3: read it for inference here, or load it through tf_keras
        "tf2.16": [("custom", "h5", "compile_false"), ("custom", "h5", "custom_objects"),
                   ("dense", "h5", "compile_false"), ("dense", "savedmodel", "tfsm")],
        "tf2.16-tfkeras": [("dense", "savedmodel", "default")],
    }


def test_remedy_cells_of_a_success_are_none(tmp_path: Path) -> None:
    ok = Record(record_type="load", cell_id="c", stack="b", outcome=Outcome.OK, saver="a", loader="b",
                scenario="dense", format="h5", variant="default")
    assert matrix.remedy_cells(ok, _scenario(tmp_path, "dense", False), []) == []


ADD_SLOT = "'_UserObject' object has no attribute 'add_slot'"
OPTIMIZER = "Unknown optimizer: Custom>Adam"


def test_plan_tries_tf_keras_for_every_keras2_file_failing_in_keras3_on_tf(tmp_path: Path) -> None:
    """Issue 11 item 4: a Keras 2 export whose optimizer slots TF 2.16 cannot restore and a
    Keras 2 HDF5 whose training config Keras 3.0 cannot read are re-run in tf2.16-tfkeras;
    a loader without TensorFlow (keras3.0-jax) has no tf_keras to try."""
    store = Store(tmp_path / "store")
    saver, loader, jax = _stack("tf2.10"), _stack("tf2.16"), _stack("keras3.0-jax")
    sibling = _stack("tf2.16-tfkeras", sibling_of="tf2.16", remedy="tf_keras")
    trained = _scenario(tmp_path, "trained_adam", False)
    _fail(store, "tf2.10", "tf2.16", "trained_adam", "export", ADD_SLOT)
    _fail(store, "tf2.10", "tf2.16", "trained_adam", "h5", OPTIMIZER)
    for fmt, message in (("export", ADD_SLOT), ("h5", OPTIMIZER)):
        store.write(Record(record_type="load", cell_id=load_cell_id("trained_adam", fmt, "tf2.10", "keras3.0-jax",
                                                                      "default"),
                           stack="keras3.0-jax", outcome=Outcome.LOAD_ERROR, saver="tf2.10", loader="keras3.0-jax",
                           scenario="trained_adam", format=fmt, variant="default", phase="load",
                           error=ErrorInfo("builtins.ValueError", message),
                           env={"keras": "3.0.5", "backend": "jax"}, saver_env=K2))
    runner = matrix._Runner([loader, jax], [saver], [trained], ["h5", "export"], store,
                            matrix.Options(), io.StringIO(), env_factory=lambda s, st: None)  # type: ignore[arg-type,return-value]
    plan = runner.plan_remedies([saver, loader, jax, sibling])
    got = {sid: sorted((c[1].name, c[2], c[3]) for c in cells) for sid, cells in plan.items()}
    assert got == {
        "tf2.16": [("trained_adam", "h5", "compile_false")],
        "tf2.16-tfkeras": [("trained_adam", "export", "default"), ("trained_adam", "h5", "default")],
        "keras3.0-jax": [("trained_adam", "h5", "compile_false")],
    }


POSITIONAL = ("Exception encountered when calling TFSMLayer.call().\n\nBinding inputs to tf.function failed due "
              "to `too many positional arguments`. Received args: ([...],) and kwargs: {} for signature")


def test_a_remedy_that_fails_further_on_is_followed_by_its_own(tmp_path: Path) -> None:
    """A legacy SavedModel in Keras 3: the default load is refused (tfsm remedy); read through
    TFSMLayer it fails on a multi-input signature, whose own remedy (signature) is planned in
    the next round on top of tfsm, once; the report's remedy results follow the same chain.
    Twin: a tfsm remedy that loads plans nothing further."""
    from runner import diagnose

    store = Store(tmp_path / "store")
    saver, loader = _stack("tf2.15"), _stack("tf2.16")
    multi = _scenario(tmp_path, "multi_io", False)
    _fail(store, "tf2.15", "tf2.16", "multi_io", "savedmodel", SAVEDMODEL)
    runner = matrix._Runner([loader], [saver], [multi], ["savedmodel"], store,
                            matrix.Options(), io.StringIO(), env_factory=lambda s, st: None)  # type: ignore[arg-type,return-value]
    seen: set[tuple[str, str, str, str, str]] = set()
    first = runner.plan_remedies([saver, loader], seen=seen)
    assert {sid: [c[3] for c in cells] for sid, cells in first.items()} == {"tf2.16": ["tfsm"]}
    assert runner.plan_remedies([saver, loader], after=first, seen=set(seen)) == {}  # not run yet: nothing
    _fail(store, "tf2.15", "tf2.16", "multi_io", "savedmodel", POSITIONAL, variant="tfsm", etype="builtins.TypeError")
    second = runner.plan_remedies([saver, loader], after=first, seen=seen)
    assert {sid: [c[3] for c in cells] for sid, cells in second.items()} == {"tf2.16": ["tfsm+signature"]}
    assert runner.plan_remedies([saver, loader], after=first, seen=seen) == {}  # planned once
    store.write(Record(record_type="load", cell_id=load_cell_id("multi_io", "savedmodel", "tf2.15", "tf2.16",
                                                                "tfsm+signature"),
                       stack="tf2.16", outcome=Outcome.OK, saver="tf2.15", loader="tf2.16", scenario="multi_io",
                       format="savedmodel", variant="tfsm+signature", env=K3, saver_env=K2))
    default = store.read(store.load_record_path("tf2.16", "tf2.15", "multi_io", "savedmodel", "default"))
    assert default is not None

    def lookup(stack: str, variant: str) -> Record | None:
        return store.read(store.load_record_path(stack, "tf2.15", "multi_io", "savedmodel", variant))

    results = diagnose.remedy_results(default, diagnose.diagnose(default), lookup, has_custom_objects=False,
                                      siblings={})
    assert [(r.variant, r.outcome, r.fixed) for r in results] == [
        ("tfsm", "load_error", False), ("tfsm+signature", "ok", True)]
    assert results[0].category == "tfsm_positional_inputs"
    # Twin: the tfsm load works, so no further round.
    store.write(Record(record_type="load", cell_id=load_cell_id("multi_io", "savedmodel", "tf2.15", "tf2.16", "tfsm"),
                       stack="tf2.16", outcome=Outcome.OK, saver="tf2.15", loader="tf2.16", scenario="multi_io",
                       format="savedmodel", variant="tfsm", env=K3, saver_env=K2))
    assert runner.plan_remedies([saver, loader], after=first, seen=set()) == {}


def test_remedy_rounds_and_report_depth_agree() -> None:
    from runner import diagnose

    assert matrix.REMEDY_ROUNDS == diagnose.REMEDY_DEPTH
