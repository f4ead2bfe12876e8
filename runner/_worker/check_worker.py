"""Check worker: load a user's own model file in one stack, run it, write its outputs.

Run by path like ``worker.py`` (``python -I check_worker.py check <control_dir>``), inside a
stack, with the same protocol (``worker.serve``). Standard library only at module level,
Python 3.7 syntax. It uses the public functions of ``worker.py`` (imported by path), so a
user's model is loaded the way the matrix loads its own artifacts. Cells::

    {"cell_id", "format": "h5|keras|savedmodel|json+weights|export", "model_path",
     "weights_file": "model.weights.h5" | null, "variant": "default" | "a+b",
     "custom_objects_path": path | null, "inputs_path": npz | null, "out_dir": path, "seed"}

Before anything is loaded, every stored config the load would deserialise (HDF5
``model_config``/``training_config``, ``config.json`` + ``metadata.json``, the
architecture JSON, ``keras_metadata.pb`` or the SavedModel object graph) is parsed with a
JSON parser (``config_scan.read_stored``: bounded, no recursion) and its whole tree is
checked against an allowlist of this release's built-ins, built here from the stack's own
Keras (``config_scan.builtin_allowlist``). Bytecode, functions or classes imported from a
module outside Keras/TF, TF-op layers outside a list of pure ops, a vocabulary read from a
file, and any name of this release's Keras/TF namespace that is not a built-in yet would
resolve, are refused unless the variant is ``unsafe``: ``load_error`` with error type
``runner.refused_unsafe`` (the ``Refused`` exception), each finding with its path in the
config, in every stack, with or without Keras safe mode. A name nothing could resolve
(a module path of another release, a custom class without --custom-objects) is left to
the loader, which fails on it with nothing run. With ``compile_false`` the compile and
training configs are not read by the load, so they are not checked either. A config that
cannot be parsed within the limits is ``check_worker.BadConfig``, never loaded.

The host compares outputs; this worker only writes ``outputs.npz`` (``y0..``, their own
dtypes) and ``details``: ``provenance``, ``code_in_file``, ``safe_mode``, ``signature``,
``inputs`` (given|generated), ``inputs_sha256``, ``output_shapes``, ``loaded_class``.
User-input problems have error types of their own (``check_worker.BadInputs``,
``check_worker.CustomObjectsError``, ``check_worker.NoSignature``).
"""

from __future__ import print_function

import hashlib
import importlib.util
import os
import sys


def _load_worker():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
    spec = importlib.util.spec_from_file_location("compat_matrix_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


W = _load_worker()
COMMAND = "check"
REFUSED = "runner.refused_unsafe"


def _load_sibling(filename, name):
    if __package__:  # imported on the host as runner._worker.check_worker
        return importlib.import_module("runner._worker." + filename[:-3])
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


CS = _load_sibling("config_scan.py", "compat_matrix_config_scan")
_ALLOWLISTS = {}  # id(keras module) -> its Allowlist (built once per worker process)


class BadInputs(Exception):
    """The given inputs do not fit the model's input signature."""


class CustomObjectsError(Exception):
    """The user's custom-objects file failed to import or defines nothing usable."""


class NoSignature(Exception):
    """The model has no input signature to generate inputs from."""


class Refused(Exception):
    """Loading would run code stored in the file, and the variant is not ``unsafe``."""


class BadConfig(Exception):
    """A stored config cannot be parsed within the limits: never loaded."""


for _cls in (BadInputs, CustomObjectsError, NoSignature, BadConfig):
    _cls.__module__ = "check_worker"
Refused.__module__, Refused.__qualname__ = REFUSED.split(".")  # recorded as REFUSED


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def stored_config(path, fmt):
    """(provenance, [(source, parsed config)]) of a model file, read and parsed without
    deserialising anything (``config_scan.read_stored``): the one reader, also the host's
    before any stack runs (only HDF5 needs h5py). Raises ``config_scan.BadConfig``."""
    return CS.read_stored(path, fmt)


_COMPILE_KEYS = ("compile_config", "training_config")


def _loaded_configs(configs, flags):
    """The configs the load of ``flags`` deserialises: without compile, not the compile or
    training config (a variant that does not read them must not be refused for them)."""
    if "compile_false" not in flags:
        return configs
    return [(source, {k: v for k, v in tree.items() if k not in _COMPILE_KEYS} if isinstance(tree, dict) else tree)
            for source, tree in configs if source not in _COMPILE_KEYS]


def allowlist(fw):
    """This stack's built-ins (built from its own Keras/TF, once per process)."""
    key = id(fw.keras)
    if key not in _ALLOWLISTS:
        _ALLOWLISTS[key] = CS.builtin_allowlist(fw.keras, fw.tf)
    return _ALLOWLISTS[key]


def findings(fw, configs, flags, custom_objects):
    """The config_scan findings of this load (they refuse it unless the variant is ``unsafe``;
    found either way, so the report says what an unsafe load let run)."""
    names = CS.custom_names_of(custom_objects, fw.keras)
    return CS.scan(_loaded_configs(configs, flags), allowlist(fw), names, resolves=CS.resolvable_in_stack)


def user_custom_objects(fw, path):
    """Import the user's file (here, in the stack) and return its custom objects dict."""
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # the file may import its neighbours
    try:
        module = W.load_scenario("user_objects", path)  # the way the matrix imports a scenario's
        provider = getattr(module, "custom_objects", None)
        objects = provider(fw.keras) if callable(provider) else getattr(module, "CUSTOM_OBJECTS", None)
        if not isinstance(objects, dict):
            raise TypeError("define custom_objects(keras) returning a dict, or a module-level dict "
                            "CUSTOM_OBJECTS (got %s)" % type(objects).__name__)
        return objects
    except Exception as exc:
        raise CustomObjectsError("%s: %s: %s" % (os.path.basename(path), type(exc).__name__,
                                                 W.truncate(str(exc), 500))) from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def _dims(shape):
    try:
        dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    except (TypeError, ValueError):
        return None
    dims = [getattr(d, "value", d) for d in dims]
    return [None if d is None or d < 0 else int(d) for d in dims]


def _spec(name, shape, dtype):
    return {"name": _text(name), "shape": None if shape is None else _dims(shape),
            "dtype": str(getattr(dtype, "name", None) or dtype or "float32")}


def generate_inputs(np, signature, seed):
    """Seeded inputs for a signature (batch 4, other unknown dims 8): the same everywhere."""
    if not signature:
        raise NoSignature("the model has no input signature (a subclassed model?): pass --inputs")
    rng = np.random.RandomState(seed)
    xs = []
    for spec in signature:
        if spec["shape"] is None:
            raise NoSignature("input %s has an unknown rank: pass --inputs" % spec["name"])
        shape = tuple((4 if i == 0 else 8) if d is None else d for i, d in enumerate(spec["shape"]))
        dtype = spec["dtype"]
        if dtype.startswith(("float", "bfloat")):
            xs.append(rng.uniform(-1.0, 1.0, size=shape).astype("float32" if dtype == "bfloat16" else dtype))
        elif dtype.startswith(("int", "uint", "bool")):
            xs.append(rng.randint(0, 2 if dtype == "bool" else 10, size=shape).astype(dtype))
        else:
            raise NoSignature("cannot generate %s inputs for %s: pass --inputs" % (dtype, spec["name"]))
    return xs


def check_inputs(xs, signature):
    check_shapes([tuple(x.shape) for x in xs], signature)


def check_shapes(shapes, signature):
    """The one rule (and words) for inputs of these ``shapes`` against a model's input
    ``signature``: each stack applies it to the signature it loads, the host (through
    ``inspect``) to the architecture's before any stack runs."""
    if not signature:
        return
    if len(shapes) != len(signature):
        raise BadInputs("the inputs file has %d input array(s) (x0..), the model takes %d"
                        % (len(shapes), len(signature)))
    for i, (shape, spec) in enumerate(zip(shapes, signature)):
        dims, shape = spec["shape"], tuple(shape)
        if dims is not None and (len(shape) != len(dims) or any(d not in (None, s) for d, s in zip(dims, shape))):
            raise BadInputs("x%d has shape %s, the model's input %s expects (%s)" % (
                i, shape, spec["name"] or i, ", ".join(str(d) for d in dims)))


def _serving(fw, path):
    """The serving_default signature of a SavedModel, inputs by sorted name."""
    tf = fw.tf
    if W.tf_major(fw) >= 2:
        specs = tf.saved_model.load(path).signatures["serving_default"].structured_input_signature[1]
        return [_spec(n, specs[n].shape, specs[n].dtype) for n in sorted(specs)]
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        sig = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path).signature_def["serving_default"]
        return [_spec(n, None if sig.inputs[n].tensor_shape.unknown_rank else
                      [d.size for d in sig.inputs[n].tensor_shape.dim], tf.as_dtype(sig.inputs[n].dtype))
                for n in sorted(sig.inputs)]


def has_safe_mode(fw):
    """Whether this Keras can refuse code stored in a file (SafeModeScope or ``safe_mode=``)."""
    return W.safe_mode_scope(fw) is not None or W.accepts(fw.keras.models.load_model, "safe_mode")


def load(fw, cell, flags, custom_objects):
    """(loaded class, signature, predict): the matrix worker's ``load_model``, the way a user
    of this stack would load the file. An export, and a Keras SavedModel under the ``tfsm``
    remedy, are read with their serving signature (no Keras model comes back).
    """
    fmt, path = cell["format"], cell["model_path"]
    serving = fmt == "export" or ("tfsm" in flags and fmt == "savedmodel")
    if serving and fw.tf is None:
        raise W.NotApplicable("a TF SavedModel can only be read with TensorFlow, which this stack lacks")
    if "unsafe" in flags and not has_safe_mode(fw):
        flags = flags - {"unsafe"}  # --unsafe lifts a restriction this Keras never had
    signature = _serving(fw, path) if serving else None
    saved = {"format": fmt, "weights_file": cell.get("weights_file"), "n_inputs": len(signature) if signature else 1}
    model, predict = W.load_model(fw, path, custom_objects, saved, flags)
    if model is None:
        return "exported SavedModel", signature, predict
    inputs = getattr(model, "inputs", None) or []
    signature = [_spec(getattr(t, "name", None), getattr(t, "shape", None), getattr(t, "dtype", None))
                 for t in inputs] or None
    return type(model).__name__, signature, predict


def _safe_mode(fw, fmt, flags):
    if fmt == "export" or "tfsm" in flags:
        return "not needed (graphs only: no Python from the file runs)"
    if "unsafe" in flags:
        return "off (--unsafe)"
    if fmt == "keras" and has_safe_mode(fw):
        return "on"
    return "none (no safe mode for %s files)" % fmt


def _write_npz(np, path, prefix, arrays):
    tmp = path + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as fh:
        np.savez(fh, **{"%s%d" % (prefix, i): a for i, a in enumerate(arrays)})
    os.replace(tmp, path)


def check_cell(fw, cell, ctx, seed):
    np = fw.np
    flags = W.parse_variant(cell.get("variant", "default"))
    details = ctx["details"]  # kept in the result even when a later step raises
    fmt = cell["format"]
    try:
        prov, configs = stored_config(cell["model_path"], fmt)
    except CS.BadConfig as exc:
        raise BadConfig("the stored config cannot be read safely: %s" % exc) from None
    details.update(provenance=prov, safe_mode=_safe_mode(fw, fmt, flags))
    custom_objects = None
    if "custom_objects" in flags:  # imported before the scan: its names are the user's to pass
        custom_objects = user_custom_objects(fw, cell["custom_objects_path"])
    found = [] if fmt == "export" or "tfsm" in flags else findings(fw, configs, flags, custom_objects)
    details["code_in_file"] = ["%s: %s" % (path, reason) for path, reason in found]
    details["findings"] = [[f.path, f.reason, f.kind] for f in found]
    details["configs_checked"] = len(configs) if fmt != "export" and "tfsm" not in flags else 0
    if found and "unsafe" not in flags:
        raise Refused("refused before loading: %d object(s) of the stored config are not inert built-ins of "
                      "this release: %s. Loading it could run code from the file (safe mode here: %s). Rerun "
                      "with --unsafe only if you trust the file." % (len(found), CS.describe(found),
                                                                     details["safe_mode"]))
    W.seed_everything(fw, seed)
    details["loaded_class"], signature, predict = load(fw, cell, flags, custom_objects)
    details["signature"] = signature
    ctx["phase"] = "predict"
    if cell.get("inputs_path"):
        given = dict(np.load(cell["inputs_path"], allow_pickle=False))
        xs = [given["x%d" % i] for i in range(len([k for k in given if k.startswith("x")]))]
        check_inputs(xs, signature)
        details["inputs"] = "given"
    else:
        xs = generate_inputs(np, signature, seed)
        details["inputs"] = "generated"
    digest = hashlib.sha256()
    for x in xs:
        x = np.ascontiguousarray(x)
        digest.update(("%s%s" % (x.dtype.str, x.shape)).encode() + x.tobytes())
    details["inputs_sha256"] = digest.hexdigest()
    got = [np.asarray(y) for y in predict(xs)]
    got = [y if y.dtype.kind in "biuf" and y.dtype.name != "bfloat16" else y.astype("float32") for y in got]
    details["output_shapes"] = [list(y.shape) for y in got]
    if not os.path.isdir(cell["out_dir"]):
        os.makedirs(cell["out_dir"])
    _write_npz(np, os.path.join(cell["out_dir"], "outputs.npz"), "y", got)
    return "ok", None, details


def run_cell(fw, command, cell, seed):
    return W.guarded_cell(check_cell, fw, cell, int(cell.get("seed", seed)), "load", "load_error")


# ------------------------------------------------------------------ inspect (no stack)
# What the host needs to know of a user's file before any stack runs: its format, its
# provenance and architecture, a SavedModel's TF version and graph ops, whether --inputs
# fit. The host runs ``python -I check_worker.py inspect`` (its own interpreter, no
# framework) with one request on stdin and reads one answer on stdout, so it calls no
# function of the worker files and the parsing of a file it does not trust runs in a
# process of its own. A file problem is an answer ``{"error": {"type", "message"}}``.


def _error(kind, message):
    return {"error": {"type": kind, "message": str(message)}}


def _stored(path, fmt):
    try:
        prov, configs = stored_config(path, fmt)
    except CS.BadConfig as exc:
        return _error("bad_config", exc)
    return {"provenance": {str(k): str(v) for k, v in prov.items()},
            "config": configs[0][1] if configs else None}


def _inspect_saved_model(path, max_bytes):
    """A SavedModel's ``tensorflow_version`` (``meta_graphs[0].meta_info_def``, fields 2 ->
    1 -> 5), its Keras provenance and its graph's ops not known to be inert (``graph_ops``,
    described; "" when every op is inert), read from one bounded read of saved_model.pb."""
    pb = CS.pbwire
    try:
        data = pb.read_capped(os.path.join(path, "saved_model.pb"), max_bytes)
    except ValueError as exc:
        return _error("not_plain", exc)
    except OSError as exc:
        return _error("unreadable", exc.strerror or exc)
    try:
        graph = next((v for f, w, v in pb.fields(data) if f == 2 and w == 2), b"")
        info = next((v for f, w, v in pb.fields(graph) if f == 1 and w == 2), b"")
        version = next((v for f, w, v in pb.fields(info) if f == 5 and w == 2), None)
    except ValueError as exc:
        return _error("damaged", exc)
    if not data:
        return _error("empty", "saved_model.pb is empty")
    out = _stored(path, "savedmodel")
    if "error" in out:
        return out
    if version:
        out["tensorflow_version"] = bytes(version).decode("utf-8", "replace")
    GS = _load_sibling("graph_scan.py", "compat_matrix_graph_scan")
    try:  # the graph scan parses the bytes already read (saved_model.pb can be 1 GiB)
        found = GS.scan_bytes(data)
    except GS.BadGraph as exc:
        return _error("bad_graph", exc)
    out["graph_ops"] = GS.describe(found) if found else ""
    return out


def inspect(request):
    """One host request (``op`` and its arguments) -> its answer (a JSON-able dict)."""
    op = request.get("op")
    if op == "sniff":
        return {"kind": W.sniff_artifact(request["path"])}
    if op == "stored_config":
        return _stored(request["path"], request["format"])
    if op == "saved_model":
        return _inspect_saved_model(request["path"], int(request["max_bytes"]))
    if op == "check_shapes":
        try:
            check_shapes(request["shapes"], request["signature"])
        except BadInputs as exc:
            return _error("bad_inputs", exc)
        return {}
    raise ValueError("unknown inspect op %r" % (op,))


def _inspect_main():
    import json

    answer = inspect(json.loads(sys.stdin.read()))
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["inspect"]:
        sys.exit(_inspect_main())
    sys.exit(W.serve(sys.argv, (COMMAND,), run_cell))
