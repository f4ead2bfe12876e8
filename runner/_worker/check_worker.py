"""Check worker: load a user's own model file in one stack, run it, write its outputs.

Run by path, exactly like ``worker.py``: ``python -I check_worker.py check <control_dir>``,
inside a stack environment. Standard library only at module level, Python 3.7 syntax.
It imports ``worker.py`` (next to it) by path and reuses its framework import, model
loading, comparison, global-state reset and event writing, so a user's model is loaded
the same way the matrix loads its own artifacts.

Protocol: the one documented in ``worker.py`` (``request.json`` in, ``events.jsonl``
out: ``ready``/``import_error``, then ``started`` and ``result`` per cell, ``done``),
with ``"phase": "check"`` and these cells::

    {"cell_id", "format": "h5|keras|savedmodel|json+weights|export",
     "model_path", "weights_file": "model.weights.h5" | null   (json+weights: next to model_path)
     "variant": "default" | flags "a+b" (worker.VARIANT_FLAGS),
     "custom_objects_path": path | null,   imported only when the variant has custom_objects
     "inputs_path": npz | null,            x0.. inputs, optional y0.. reference outputs
     "out_dir": path,                      inputs.npz + outputs.npz are written here
     "atol", "rtol", "seed"}

Result ``details``: ``provenance`` (what the file says about who saved it, read here
with h5py for HDF5), ``signature`` (input shapes/dtypes), ``inputs`` ("given" or
"generated"), ``inputs_sha256``, ``output_shapes``, ``loaded_class``, ``compared``
(true when reference outputs were given and compared here). Outputs are written as
float64 ``y0..`` so the host can compare stacks with the standard library alone.

Outcomes: ok (loaded and predicted; within tolerance when reference outputs were given),
mismatch, load_error, not_applicable. Problems with what the *user* supplied have their
own error types, so the host can report them as bad input: ``check_worker.BadInputs``
(inputs do not fit the model), ``check_worker.CustomObjectsError`` (the custom-objects
file failed to import or has no ``custom_objects(keras)``/``CUSTOM_OBJECTS``),
``check_worker.NoSignature`` (no input signature to generate inputs from).
"""

from __future__ import print_function

import hashlib
import importlib.util
import json
import os
import sys
import time
import warnings

COMMAND = "check"
DEFAULT_BATCH = 4
DEFAULT_FREE_DIM = 8
CUSTOM_OBJECTS_FUNCTION = "custom_objects"
CUSTOM_OBJECTS_DICT = "CUSTOM_OBJECTS"


def _load_worker():
    """worker.py, loaded by path (this script runs with ``-I``: no package imports)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
    spec = importlib.util.spec_from_file_location("compat_matrix_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = _load_worker()


class BadInputs(Exception):
    """The given inputs do not fit the model's input signature."""


class CustomObjectsError(Exception):
    """The user's custom-objects file failed to import or defines nothing usable."""


class NoSignature(Exception):
    """The model has no input signature to generate inputs from."""


for _cls in (BadInputs, CustomObjectsError, NoSignature):
    _cls.__module__ = "check_worker"


# --------------------------------------------------------------------- provenance


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def provenance(path, fmt):
    """What an HDF5 file's root attributes say about who saved it (needs h5py)."""
    if fmt != "h5":
        return {}  # the host reads the other formats' metadata with the standard library
    try:
        import h5py
    except Exception:
        return {}
    out = {}
    try:
        with h5py.File(path, "r") as fh:
            for key in ("keras_version", "backend"):
                value = _text(fh.attrs.get(key))
                if value:
                    out[key] = value
    except Exception as exc:  # the load will say more; provenance never fails a cell
        out["error"] = W._truncate("%s: %s" % (type(exc).__name__, exc), 200)
    if out:
        out["source"] = "HDF5 root attributes (h5py)"
    return out


# ----------------------------------------------------------------- custom objects


def user_custom_objects(fw, path):
    """Import the user's file (here, in the stack) and return its custom objects dict."""
    name = W.SCENARIO_MODULE_PREFIX + "user_custom_objects"
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the file may import its neighbours
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        provider = getattr(module, CUSTOM_OBJECTS_FUNCTION, None)
        objects = provider(fw.keras) if callable(provider) else getattr(module, CUSTOM_OBJECTS_DICT, None)
        if not isinstance(objects, dict):
            raise TypeError("define %s(keras) returning a dict, or a module-level dict %s (got %s)"
                            % (CUSTOM_OBJECTS_FUNCTION, CUSTOM_OBJECTS_DICT, type(objects).__name__))
        return objects
    except Exception as exc:
        raise CustomObjectsError("%s: %s: %s" % (os.path.basename(path), type(exc).__name__,
                                                 W._truncate(str(exc), 500))) from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


# ------------------------------------------------------------------------- inputs


def _dims(shape):
    if shape is None:
        return None
    try:
        dims = shape.as_list()
    except Exception:
        try:
            dims = list(shape)
        except TypeError:
            return None
    out = []
    for d in dims:
        d = getattr(d, "value", d)
        out.append(None if d is None or (isinstance(d, int) and d < 0) else int(d))
    return out


def _dtype_name(dtype):
    if dtype is None:
        return "float32"
    name = getattr(dtype, "name", None)
    return str(name if name is not None else dtype)


def keras_signature(model):
    tensors = getattr(model, "inputs", None)
    if not tensors:
        return None
    out = []
    for t in tensors:
        out.append({"name": _text(getattr(t, "name", None)), "shape": _dims(getattr(t, "shape", None)),
                    "dtype": _dtype_name(getattr(t, "dtype", None))})
    return out


def generate_inputs(np, signature, seed):
    """Deterministic inputs for a signature: the same arrays in every stack and numpy."""
    if not signature:
        raise NoSignature("the model has no input signature (a subclassed model?): "
                          "pass --inputs with x0.. arrays")
    rng = np.random.RandomState(seed)
    xs = []
    for spec in signature:
        dims = spec["shape"]
        if dims is None:
            raise NoSignature("input %s has an unknown rank: pass --inputs" % (spec.get("name"),))
        shape = tuple(DEFAULT_BATCH if i == 0 and d is None else (DEFAULT_FREE_DIM if d is None else d)
                      for i, d in enumerate(dims))
        dtype = spec["dtype"]
        if dtype.startswith(("float", "bfloat")):
            xs.append(rng.uniform(-1.0, 1.0, size=shape).astype("float32" if dtype == "bfloat16" else dtype))
        elif dtype.startswith(("int", "uint")):
            xs.append(rng.randint(0, 10, size=shape).astype(dtype))
        elif dtype == "bool":
            xs.append(rng.randint(0, 2, size=shape).astype("bool"))
        else:
            raise NoSignature("cannot generate %s inputs for %s: pass --inputs" % (dtype, spec.get("name")))
    return xs


def check_inputs(xs, signature):
    """Raise BadInputs when the given arrays cannot be this signature's inputs."""
    if not signature:
        return
    if len(xs) != len(signature):
        raise BadInputs("the inputs file has %d input array(s) (x0..), the model takes %d"
                        % (len(xs), len(signature)))
    for i, (x, spec) in enumerate(zip(xs, signature)):
        dims = spec["shape"]
        if dims is None:
            continue
        ok = x.ndim == len(dims) and all(d is None or d == s for d, s in zip(dims, x.shape))
        if not ok:
            shown = "(%s)" % ", ".join("None" if d is None else str(d) for d in dims)
            raise BadInputs("x%d has shape %s, the model's input %s expects %s"
                            % (i, tuple(x.shape), spec.get("name") or i, shown))


def _sha256_arrays(np, xs):
    digest = hashlib.sha256()
    for x in xs:
        x = np.ascontiguousarray(x)
        digest.update(("%s%s" % (x.dtype.str, x.shape)).encode())
        digest.update(x.tobytes())
    return digest.hexdigest()


# -------------------------------------------------------------------------- model


def _tf_signature_predictor(fw, path):
    """An exported / inference SavedModel in TF 2: serving_default, inputs by sorted name."""
    tf = fw.tf
    obj = tf.saved_model.load(path)
    fn = obj.signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    names = sorted(specs)
    signature = [{"name": n, "shape": _dims(specs[n].shape), "dtype": _dtype_name(specs[n].dtype)}
                 for n in names]

    def predict(xs, _keep_alive=obj):
        out = fn(**{n: tf.constant(x) for n, x in zip(names, xs)})
        return [fw.np.asarray(out[k]) for k in sorted(out)]

    return signature, predict


def _tf1_signature(fw, path):
    tf = fw.tf
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        out = []
        for n in sorted(sig.inputs):
            info = sig.inputs[n]
            dims = None if info.tensor_shape.unknown_rank else [
                None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
            out.append({"name": n, "shape": dims,
                        "dtype": tf.as_dtype(info.dtype).name})
        return out


def load_for_check(fw, cell, flags, custom_objects):
    """(loaded class name, signature, predict) the way a user of this stack would load."""
    fmt = cell["format"]
    path = cell["model_path"]
    if fmt == "export" or "tfsm" in flags:
        if fmt not in ("export", "savedmodel"):
            raise W.NotApplicable("the tfsm remedy reads TF SavedModel directories; this is %s" % fmt)
        if fw.tf is None:
            raise W.NotApplicable("a TF SavedModel can only be read with TensorFlow, "
                                  "which this stack does not have")
        if W._tf_major(fw) >= 2:
            signature, predict = _tf_signature_predictor(fw, path)
        else:
            signature = _tf1_signature(fw, path)
            predict = W._export_predictor(fw, path, {"n_inputs": len(signature)})
        return "exported SavedModel", signature, predict
    if "unsafe" in flags and W._safe_mode_scope(fw) is None and not W._accepts(
            fw.keras.models.load_model, "safe_mode"):
        flags = flags - {"unsafe"}  # --unsafe asked to lift a restriction this Keras never had
    saved = {"format": fmt, "weights_file": cell.get("weights_file"), "n_inputs": 1}
    model, predict = W._load_model(fw, path, custom_objects, saved, flags)
    return type(model).__name__, keras_signature(model), predict


def _write_npz(np, path, prefix, arrays):
    tmp = path + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as fh:
        np.savez(fh, **{"%s%d" % (prefix, i): a for i, a in enumerate(arrays)})
    os.replace(tmp, path)


def check_cell(fw, cell, ctx, seed):
    np = fw.np
    flags = W.parse_variant(cell.get("variant", "default"))
    details = ctx["details"]  # kept in the result even when a later step raises
    details["provenance"] = provenance(cell["model_path"], cell["format"])
    ctx["phase"] = "load"
    custom_objects = None
    if "custom_objects" in flags:
        custom_objects = user_custom_objects(fw, cell["custom_objects_path"])
    W._seed_everything(fw, seed)
    loaded_class, signature, predict = load_for_check(fw, cell, flags, custom_objects)
    details["loaded_class"] = loaded_class
    details["signature"] = signature
    ctx["phase"] = "predict"
    refs = None
    if cell.get("inputs_path"):
        given = dict(np.load(cell["inputs_path"], allow_pickle=False))
        xs = [given["x%d" % i] for i in range(len([k for k in given if k.startswith("x")]))]
        ys = [given["y%d" % i] for i in range(len([k for k in given if k.startswith("y")]))]
        refs = ys or None
        check_inputs(xs, signature)
        details["inputs"] = "given"
    else:
        xs = generate_inputs(np, signature, seed)
        details["inputs"] = "generated"
    details["input_shapes"] = [list(x.shape) for x in xs]
    details["inputs_sha256"] = _sha256_arrays(np, xs)
    got = [np.asarray(y) for y in predict(xs)]
    details["output_shapes"] = [list(y.shape) for y in got]
    out_dir = cell["out_dir"]
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    _write_npz(np, os.path.join(out_dir, "inputs.npz"), "x", xs)
    _write_npz(np, os.path.join(out_dir, "outputs.npz"), "y",
               [y.astype("float64") if y.dtype.kind in "biuf" else y for y in got])
    details["outputs_file"] = "outputs.npz"
    ctx["phase"] = "compare"
    if refs is None:
        details["compared"] = False
        return "ok", None, details
    outcome, diff, more = W.compare_outputs(np, got, refs, float(cell["atol"]), float(cell["rtol"]))
    details.update(more)
    details["compared"] = True
    return outcome, diff, details


def run_cell(fw, cell, seed):
    """One cell's result event; never raises for framework or user-file errors."""
    started = time.time()
    ctx = {"phase": "load", "details": {}}
    result = {"event": "result", "cell_id": cell["cell_id"], "error": None,
              "max_abs_diff": None, "details": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome, diff, details = check_cell(fw, cell, ctx, seed)
            result["max_abs_diff"] = diff
            result["details"] = details
        except W.NotApplicable as exc:
            outcome = "not_applicable"
            result["error"] = W.error_info(exc)
            result["details"] = ctx["details"]
        except Exception as exc:
            outcome = "load_error"
            result["error"] = W.error_info(exc)
            result["details"] = ctx["details"]
        result["warnings"] = W._warnings_list(caught)
    result["outcome"] = outcome
    result["phase"] = ctx["phase"]
    result["duration_s"] = round(time.time() - started, 4)
    return result


# ----------------------------------------------------------------------------- main


def main(argv):
    import faulthandler

    faulthandler.enable()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if len(argv) != 3 or argv[1] != COMMAND:
        sys.stderr.write("check_worker: bad arguments %r\nusage: check_worker.py check <control_dir>\n"
                         % (argv[1:],))
        return W.EXIT_BAD_REQUEST
    control_dir = argv[2]
    try:
        with open(os.path.join(control_dir, W.REQUEST_FILE)) as fh:
            request = json.load(fh)
    except (OSError, ValueError) as exc:
        sys.stderr.write("check_worker: cannot read request: %s\n" % exc)
        return W.EXIT_BAD_REQUEST
    if request.get("protocol") != W.PROTOCOL_VERSION or request.get("phase") != COMMAND:
        sys.stderr.write("check_worker: request does not match protocol %d / check\n" % W.PROTOCOL_VERSION)
        return W.EXIT_BAD_REQUEST
    for path in request.get("extra_sys_path") or []:
        sys.path.insert(0, path)
    W._set_parent_death_signal()
    parent_pid = request.get("parent_pid")
    if W._parent_gone(parent_pid):
        return W.EXIT_ORPHANED
    events = W._Events(os.path.join(control_dir, W.EVENTS_FILE))
    cells = request.get("cells") or []
    t0 = time.time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fw = W.import_framework(request.get("keras_module", "auto"))
            info = W.env_info(fw)
    except Exception as exc:
        err = W.error_info(exc)
        events.write({"event": "import_error", "error": err})
        for cell in cells:
            events.write({"event": "started", "cell_id": cell["cell_id"]})
            events.write({"event": "result", "cell_id": cell["cell_id"], "outcome": "load_error",
                          "phase": "import", "error": err, "warnings": [], "max_abs_diff": None,
                          "duration_s": 0.0, "details": {}})
        events.write({"event": "done"})
        return W.EXIT_OK
    events.write({"event": "ready", "env": info, "import_s": round(time.time() - t0, 3)})
    state = W._GlobalState(fw)
    for cell in cells:
        if W._parent_gone(parent_pid):
            return W.EXIT_ORPHANED
        events.write({"event": "started", "cell_id": cell["cell_id"]})
        result = run_cell(fw, cell, int(cell.get("seed", request.get("seed", W.DEFAULT_SEED))))
        state.restore()
        events.write(result)
    events.write({"event": "done"})
    return W.EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv))
