"""Compatibility-matrix worker: the only code that runs inside a stack.

It is executed by path, ``python -I worker.py <probe|save|load> <control_dir>``, in an
environment that holds one TensorFlow/Keras release and nothing of the host. It imports
only the standard library at module level; TensorFlow, Keras, numpy and the scenario
modules are imported inside the phase functions, so an import failure becomes data.
It must stay Python 3.7 syntax (TF 1.15 stacks): no walrus, no ``X | Y``, no ``list[int]``.

Protocol (PROTOCOL_VERSION = 1)
-------------------------------
Input, ``<control_dir>/request.json``::

    {"protocol": 1, "phase": "probe|save|load", "keras_module": "auto|tf.keras|keras",
     "parent_pid": 1234 | null, "extra_sys_path": [...], "seed": 1234,
     (parent_pid null: inside a container; the host then touches <control_dir>/heartbeat
      at every poll and the worker exits, status 3, between cells once it is 120 s stale)
     "cells": [CELL, ...]}

    save CELL: {"cell_id", "scenario", "scenario_path", "format", "artifact_dir"}
    load CELL: {"cell_id", "scenario", "scenario_path", "format", "artifact_dir",
                "variant"}                      variant: "default" or flags "a+b"
                                                (see VARIANT_FLAGS)
    optional: request "cell_timeout" (seconds), a cell's "timeout_s" (overrides it)

Output, ``<control_dir>/events.jsonl``: one JSON object per line, appended and flushed::

    {"event": "ready", "env": {...}, "import_s": 2.1}     framework imported
    {"event": "import_error", "error": ERROR}              framework import failed
    {"event": "started", "cell_id": "..."}                 written *before* each cell
    {"event": "result", "cell_id": "...", "outcome": "...", "phase": "...",
     "error": ERROR | null, "warnings": [{"category", "message"}],
     "max_abs_diff": float | null, "duration_s": float, "details": {...}}
    {"event": "done"}

    ERROR = {"type": "builtins.ValueError", "message": "<= 2 KB", "traceback": "tail"}

Outcomes written here: ok (a save), observed (a load that loaded and predicted: its
``details["observed"]`` holds the predictions and, for a trained scenario, what one more
training step gave; the host judges them against the saver's reference, runner/judge.py),
save_error, load_error, not_applicable, and timeout when the in-worker watchdog
interrupted a cell. The host synthesises timeout/crash/
protocol_error when this process dies or does not answer its watchdog (it blames the cell
of the last ``started`` line without a ``result``).

Watchdog: the request's ``cell_timeout`` (or a cell's own ``timeout_s``) arms SIGALRM
before each cell; the handler raises :class:`CellTimeout` in the main thread, the cell
becomes ``timeout`` (phase where it was) and the worker goes on with the next cell, so a
pure-Python hang (Keras 3 deserialising some Keras 2 HDF5 files loops forever) costs
the limit and no fresh framework import. A hang inside C code never returns to the
interpreter; the host's deadline (limit + grace) kills the process group as before.
Every later result of this process carries ``details["after_interrupt"]`` (how many cells
were interrupted before it in this process), so such a cell can be told apart. The first
cell of a process (``details["first_in_worker"]``) gets at least the request's
``cell_timeout``: it pays the backend's warm-up, whichever cell it is.

Exit status: 0 whenever the protocol was followed, including failed saves/loads (those
are results, not errors); 2 for a bad command line or request; 3 when the host that
started this worker has gone away. Stdout and stderr are not part of the protocol
(Keras prints there); the host sends them to a log file.

Artifacts: ``artifact_dir`` holds the saved model (``model.h5``, ``model.keras`` or
``savedmodel/``), ``reference.npz`` (inputs ``x0..``, saver predictions ``y0..``) and
``save.json`` (provenance). A save writes everything to a sibling temp dir first and
renames it into place, so a killed save leaves no half artifact.
"""

from __future__ import print_function

import faulthandler
import gc
import importlib.util
import inspect
import json
import os
import platform
import random
import shutil
import signal
import sys
import time
import traceback
import warnings

PROTOCOL_VERSION = 1
PHASES = ("import", "build", "save", "load", "predict", "compare", "train")
COMMANDS = ("probe", "save", "load")
WORKER_OUTCOMES = ("ok", "observed", "save_error", "load_error", "not_applicable", "timeout")
FORMATS = ("h5", "savedmodel", "keras", "json+weights", "export")
# Load variants: "default" (what a user types first) or flags joined by "+", each one
# thing a user can do about a failing load (the remedies the diagnosis names):
#   custom_objects  pass the scenario's classes/functions as custom_objects=
#   compile_false   load_model(..., compile=False): inference only, no optimizer/loss
#   unsafe          turn Keras safe mode off (safe_mode=False / SafeModeScope(False))
#   tfsm            read a TF SavedModel directory for inference only (TFSMLayer in
#                   Keras 3, tf.saved_model.load in TF 2, a TF 1 session)
#   signature       Keras 3: call a SavedModel's serving signature with named inputs
#                   (tf.saved_model.load), past TFSMLayer's positional call
VARIANT_FLAGS = ("custom_objects", "compile_false", "unsafe", "tfsm", "signature")
VARIANTS = ("default", *VARIANT_FLAGS)
MODEL_FILES = {"h5": "model.h5", "savedmodel": "savedmodel", "keras": "model.keras",
               "json+weights": "model.json", "export": "export"}
# Formats only the scenarios that name them in their FORMATS use (their own finding, not
# a column for every scenario): a TF checkpoint of weights and optimizer read into a model
# built from code; a .keras file with its weights saved beside it as model.weights.h5.
OPT_IN_FORMATS = ("tf_checkpoint", "keras+weights")
REQUEST_FILE = "request.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.txt"
REFERENCE_FILE = "reference.npz"
SAVE_INFO_FILE = "save.json"
EXIT_OK = 0
EXIT_BAD_REQUEST = 2
EXIT_ORPHANED = 3
MESSAGE_LIMIT = 2048
TRACEBACK_LIMIT = 8000
DEFAULT_SEED = 1234
FULL_GC_EVERY = 25
# Modules loaded from scenario files get this prefix and are never left in sys.modules,
# so a later "default" load cannot find a custom class a previous cell defined.
SCENARIO_MODULE_PREFIX = "compat_scenario_"
# Distributions whose installed version is worth recording (when present).
VERSIONED_DISTS = ("tensorflow", "tensorflow-cpu", "keras", "tf-keras", "numpy", "h5py",
                   "jax", "jaxlib", "torch", "protobuf", "ml-dtypes")


class CellTimeout(BaseException):
    """Raised in the main thread by the watchdog when a cell exceeds its limit. A
    BaseException, so a scenario's or Keras's ``except Exception`` cannot swallow it."""


class _Watchdog(object):
    """SIGALRM-based per-cell limit (see the module docstring); inert where the platform
    has no ``setitimer`` or this is not the main thread (the host's deadline still holds)."""

    REFIRE_S = 0.5  # code that swallows the exception (a bare ``except:``) gets it again

    def __init__(self):
        self.limit = None
        self.armed = False
        self.tripped = False  # fired during the current cell (even if the exception was swallowed)
        self.fired = 0  # cells interrupted so far in this process
        try:
            signal.signal(signal.SIGALRM, self._fire)
            self.usable = hasattr(signal, "setitimer")
        except (AttributeError, ValueError):
            self.usable = False

    def _fire(self, signum, frame):
        if self.armed:
            self.tripped = True
            raise CellTimeout("cell exceeded its %g s limit; interrupted inside the worker"
                              % self.limit)

    def arm(self, limit):
        self.limit = limit
        self.tripped = False
        if self.usable and limit:
            self.armed = True
            signal.setitimer(signal.ITIMER_REAL, float(limit), self.REFIRE_S)

    def disarm(self):
        self.armed = False
        if self.usable:
            signal.setitimer(signal.ITIMER_REAL, 0)


_WATCHDOG = None


class NotApplicable(Exception):
    """This (scenario, format) cannot exist in this stack: recorded as not_applicable."""


class _Framework(object):
    """What the worker imported: numpy, the Keras API module, TF (or None)."""

    def __init__(self, np, keras, tf):
        self.np = np
        self.keras = keras
        self.tf = tf
        self.keras_version = _keras_version(keras)
        try:
            self.keras_major = int(self.keras_version.split(".")[0])
        except (AttributeError, ValueError):
            self.keras_major = 2
        self.backend = _backend_name(keras)


# --------------------------------------------------------------------------- helpers


def _truncate(text, limit):
    text = text if isinstance(text, str) else repr(text)
    if len(text) <= limit:
        return text
    return text[: limit - 20] + " ...[truncated]"


def error_info(exc):
    """Serialise an exception: qualified type, short message, traceback tail."""
    cls = type(exc)
    tb = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    # This file runs as __main__; name its own exceptions after the worker instead.
    module = "worker" if cls.__module__ == "__main__" else cls.__module__
    return {
        "type": "%s.%s" % (module, getattr(cls, "__qualname__", cls.__name__)),
        "message": _truncate(str(exc), MESSAGE_LIMIT),
        "traceback": tb[-TRACEBACK_LIMIT:],
    }


def _warnings_list(caught):
    seen = []
    out = []
    for w in caught:
        key = (w.category.__name__, _truncate(str(w.message), 500))
        if key not in seen:
            seen.append(key)
            out.append({"category": key[0], "message": key[1]})
    return out[:50]


class _Events(object):
    """Append-only JSON-lines writer; every line is flushed before returning."""

    def __init__(self, path):
        self._fh = open(path, "a")

    def write(self, obj):
        self._fh.write(json.dumps(obj, sort_keys=True, default=_json_default) + "\n")
        self._fh.flush()


def _json_default(obj):
    for attr in ("item", "tolist"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    return repr(obj)


def _set_parent_death_signal():
    """Ask Linux to SIGKILL us when the host dies, so a killed run leaves no orphan."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


HEARTBEAT_FILE = "heartbeat"  # touched by the host at every poll when there is no parent pid
HEARTBEAT_STALE_S = 120.0


def _parent_gone(parent_pid, control_dir=None):
    """Has the host that started us gone away? By pid on a host; inside a container (no
    host pid), by the heartbeat file the host touches while it supervises us going stale."""
    if parent_pid is not None:
        return os.getppid() != parent_pid
    if control_dir is None:
        return False
    try:
        age = time.time() - os.stat(os.path.join(control_dir, HEARTBEAT_FILE)).st_mtime
    except OSError:
        return False  # a host that writes no heartbeat (an older runner)
    return age > HEARTBEAT_STALE_S


# ------------------------------------------------------------------ framework import


def _keras_version(keras):
    version = getattr(keras, "__version__", None)
    if version:
        return str(version)
    top = sys.modules.get(keras.__name__.split(".")[0])
    version = getattr(top, "__version__", None)
    return str(version) if version else None


def _backend_name(keras):
    backend = getattr(keras, "backend", None)
    fn = getattr(backend, "backend", None)
    if callable(fn):
        try:
            return str(fn())
        except Exception:
            pass
    return "tensorflow"


def import_framework(keras_module):
    """Import numpy and the Keras API this stack's users get.

    ``auto``: ``tf.keras`` when TensorFlow is installed (so ``TF_USE_LEGACY_KERAS`` is
    honoured as a TF user would see it), else standalone ``keras``.
    """
    import numpy as np

    tf = None
    if keras_module in ("auto", "tf.keras"):
        try:
            import tensorflow as tf
        except ImportError as exc:
            if keras_module == "tf.keras" or getattr(exc, "name", "tensorflow") != "tensorflow":
                raise
            tf = None
    if keras_module == "keras" or tf is None:
        import keras

        # Keras 3 on the TensorFlow backend has imported TF itself: export needs it.
        tf = sys.modules.get("tensorflow")
    else:
        keras = tf.keras
        # tf.keras is a lazy module in some releases: touch it so errors surface here.
        keras.models  # noqa: B018
    return _Framework(np, keras, tf)


def _dist_versions():
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        metadata = None
    out = {}
    if metadata is None:
        return out
    for name in VERSIONED_DISTS:
        try:
            out[name] = metadata.version(name)
        except Exception:
            pass
    return out


def env_info(fw):
    """The versions actually installed and in use (not the requested pins)."""
    info = {
        "python": platform.python_version(),
        "platform": "%s-%s" % (sys.platform, platform.machine()),
        "keras_api": fw.keras.__name__,
        "keras": fw.keras_version,
        "backend": fw.backend,
        "numpy": getattr(fw.np, "__version__", None),
        "tensorflow": getattr(fw.tf, "__version__", None) if fw.tf is not None else None,
        "env_vars": {k: os.environ[k] for k in ("KERAS_BACKEND", "TF_USE_LEGACY_KERAS")
                     if k in os.environ},
        "dists": _dist_versions(),
    }
    h5py = sys.modules.get("h5py")
    if h5py is not None:
        info["h5py"] = getattr(h5py, "__version__", None)
    return info


# -------------------------------------------------------------------- global state


class _GlobalState(object):
    """Snapshot of process-global Keras state a cell may change; restored after each cell.

    A cell's outcome in a batch must equal its outcome alone in a fresh process, so the
    custom-object registry (which a scenario fills when it registers its classes), the
    dtype policy and the RNG seeds go back to their state from before the first cell.
    """

    def __init__(self, fw):
        self.fw = fw
        self.registries = []
        get_custom_objects = getattr(getattr(fw.keras, "utils", None), "get_custom_objects", None)
        dicts = []
        if get_custom_objects is not None:
            dicts.append(get_custom_objects())
            module = sys.modules.get(get_custom_objects.__module__)
            for name in ("_GLOBAL_CUSTOM_OBJECTS", "_GLOBAL_CUSTOM_NAMES",
                         "GLOBAL_CUSTOM_OBJECTS", "GLOBAL_CUSTOM_NAMES"):
                candidate = getattr(module, name, None)
                if isinstance(candidate, dict):
                    dicts.append(candidate)
        seen = set()
        for d in dicts:
            if id(d) not in seen:
                seen.add(id(d))
                self.registries.append((d, dict(d)))
        self.policy = _get_policy(fw)
        self.modules = set(sys.modules)
        self.path = list(sys.path)
        self.cells = 0

    def restore(self):
        for live, saved in self.registries:
            live.clear()
            live.update(saved)
        added = [os.path.abspath(p) for p in sys.path if p not in self.path]
        for name, module in list(sys.modules.items()):
            if name in self.modules:
                continue
            where = os.path.abspath(getattr(module, "__file__", None) or "/nonexistent")
            # A scenario module, or a helper file it imported from its directory.
            if name.startswith(SCENARIO_MODULE_PREFIX) or any(where.startswith(d + os.sep) for d in added):
                del sys.modules[name]
        sys.path[:] = self.path
        if self.policy is not None:
            _set_policy(self.fw, self.policy)
        clear = getattr(getattr(self.fw.keras, "backend", None), "clear_session", None)
        if clear is not None:
            try:
                # Keras >= 3.3's clear_session() runs a full gc.collect() by default: 0.45 s
                # a cell in a JAX worker (py-spy: 83 % of its time), more than the load.
                if "free_memory" in _parameters(clear):
                    clear(free_memory=False)
                else:
                    clear()
            except Exception:
                pass
        # A full collection walks every object TensorFlow ever created (~0.13 s a cell,
        # measured: three times a typical load). The young generations hold what one cell
        # made; the full sweep every FULL_GC_EVERY cells bounds memory all the same.
        self.cells += 1
        gc.collect(1)
        if self.cells % FULL_GC_EVERY == 0:
            gc.collect()


def _parameters(fn):
    """The names ``fn`` accepts (empty when it cannot be introspected)."""
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _mixed_precision(fw):
    mp = getattr(fw.keras, "mixed_precision", None)
    if mp is not None and hasattr(mp, "global_policy"):
        return mp
    return getattr(mp, "experimental", None)


def _get_policy(fw):
    mp = _mixed_precision(fw)
    try:
        return mp.global_policy().name if mp is not None else None
    except Exception:
        return None


def _set_policy(fw, name):
    mp = _mixed_precision(fw)
    setter = getattr(mp, "set_global_policy", None) or getattr(mp, "set_policy", None)
    if setter is not None:
        try:
            setter(name)
        except Exception:
            pass


def _seed_everything(fw, seed):
    random.seed(seed)
    fw.np.random.seed(seed)
    if fw.tf is not None:
        setter = getattr(getattr(fw.tf, "random", None), "set_seed", None)
        if setter is not None:
            setter(seed)


# ------------------------------------------------------------------------ scenarios


def load_scenario(name, path):
    """Load a scenario module by path; it is deliberately *not* put in sys.modules. Its
    directory goes first on sys.path until the cell ends (``_GlobalState.restore``), so a
    scenario can import helper files beside it (their digests are in its key)."""
    here = os.path.dirname(os.path.abspath(path))
    if here not in sys.path:
        sys.path.insert(0, here)
    spec = importlib.util.spec_from_file_location(SCENARIO_MODULE_PREFIX + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _as_list(value):
    if isinstance(value, dict):
        return [value[k] for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _model_input(xs):
    return xs[0] if len(xs) == 1 else list(xs)


def predict_outputs(fw, model, xs):
    """The model's outputs on ``xs`` as numpy arrays, the same way in saver and loader.

    Eager stacks call the model (``model(x, training=False)``): ``predict()`` traces a new
    function for every freshly loaded model, 0.15 s a cell against 0.01 s for a call
    (measured with TF 2.15), which made it most of a matrix's run time. TF 1 graph mode
    has no eager call, so it uses ``predict()``.
    """
    eager = getattr(fw.tf, "executing_eagerly", None) if fw.tf is not None else None
    if eager is not None and not eager():
        return [fw.np.asarray(y) for y in _as_list(model.predict(_model_input(xs), verbose=0))]
    out = model(_model_input(xs), training=False)
    convert = getattr(getattr(fw.keras, "ops", None), "convert_to_numpy", None)
    return [fw.np.asarray(convert(y) if convert is not None else y) for y in _as_list(out)]


def _deterministic_weights(fw, model, seed):
    """Overwrite every float weight with seeded values, identical in every release.

    Initialiser RNGs differ across releases; fixed weights make the reference outputs
    a property of the scenario, not of the saver's random streams.
    """
    np = fw.np
    rng = np.random.RandomState(seed)
    values = model.get_weights()
    names = [str(getattr(w, "path", None) or getattr(w, "name", "")) for w in model.weights]
    new = []
    for i, arr in enumerate(values):
        arr = np.asarray(arr)
        name = names[i] if i < len(names) else ""
        if arr.dtype.kind != "f":
            new.append(arr)
        elif "variance" in name:
            new.append(rng.uniform(0.5, 1.5, size=arr.shape).astype(arr.dtype))
        else:
            new.append(rng.uniform(-0.5, 0.5, size=arr.shape).astype(arr.dtype))
    model.set_weights(new)


# -------------------------------------------------------------------------- formats


def sniff_artifact(path):
    """What is really on disk: old TF writes HDF5 under a ``.keras`` name."""
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return "savedmodel"
        return "directory"
    if not os.path.exists(path):
        return "missing"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04"):
        return "keras_v3"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def _tf_major(fw):
    try:
        return int(str(fw.tf.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def format_impossible(fw, fmt):
    """Why ``fmt`` cannot be written in this stack at all (a reason), or None. Checked
    before the scenario is built or trained, so a format that cannot exist is
    not_applicable even where building or training would fail first."""
    if fmt == "savedmodel" and fw.keras_major >= 3:
        return ("Keras %s cannot write the legacy TF SavedModel format with model.save(); "
                "it only exports inference artifacts (model.export)" % fw.keras_version)
    if fmt == "export" and fw.keras_major >= 3 and fw.tf is None:
        return "model.export() writes a TF SavedModel and needs TensorFlow, which this stack does not have"
    return None


def _save_h5(fw, model, tmp, xs, ys):
    path = os.path.join(tmp, MODEL_FILES["h5"])
    if fw.keras_major >= 3:
        model.save(path)
    else:
        model.save(path, save_format="h5")
    return {"model_file": MODEL_FILES["h5"]}


def _save_savedmodel(fw, model, tmp, xs, ys):
    model.save(os.path.join(tmp, MODEL_FILES["savedmodel"]), save_format="tf")
    info = {"model_file": MODEL_FILES["savedmodel"]}
    # The same signature keys let a loader read this SavedModel for inference only
    # (the tfsm remedy); failing to work them out does not fail the save.
    try:
        info.update(_export_keys(fw, os.path.join(tmp, MODEL_FILES["savedmodel"]), xs, ys))
    except Exception as exc:
        info["export_keys_error"] = _truncate("%s: %s" % (type(exc).__name__, exc), 300)
    return info


def _save_keras(fw, model, tmp, xs, ys):
    model.save(os.path.join(tmp, MODEL_FILES["keras"]))
    return {"model_file": MODEL_FILES["keras"]}


def _save_json_weights(fw, model, tmp, xs, ys):
    # The route the Keras docs call robust: architecture as JSON + a weights file, named
    # as a user of this release must (Keras 3 insists on the .weights.h5 suffix).
    with open(os.path.join(tmp, MODEL_FILES["json+weights"]), "w") as fh:
        fh.write(model.to_json())
    weights = "model.weights.h5" if fw.keras_major >= 3 else "weights.h5"
    model.save_weights(os.path.join(tmp, weights))
    return {"model_file": MODEL_FILES["json+weights"], "weights_file": weights}


def _save_export(fw, model, tmp, xs, ys):
    path = os.path.join(tmp, MODEL_FILES["export"])
    if fw.keras_major >= 3:
        model.export(path)
    elif _tf_major(fw) >= 2:
        fw.tf.saved_model.save(model, path)
    else:
        fw.tf.keras.experimental.export_saved_model(model, path)
    info = {"model_file": MODEL_FILES["export"]}
    info.update(_export_keys(fw, path, xs, ys))
    return info


def _tf_checkpoint_impossible(fw):
    if fw.tf is None:
        return "a TF checkpoint needs TensorFlow, which this stack does not have"
    if fw.keras_major >= 3 and _backend_name(fw) != "tensorflow":
        return ("Keras %s on %s keeps its variables outside TensorFlow: tf.train.Checkpoint cannot write "
                "or read them" % (fw.keras_version, _backend_name(fw)))
    return None


def _save_tf_checkpoint(fw, model, tmp, xs, ys):
    """Weights and optimizer state as a TF checkpoint (``ckpt.index`` + ``ckpt.data-*``):
    what Keras 2's ``model.save_weights(path)`` writes for a path without ``.h5``. Keras 3
    writes no TF checkpoint with ``save_weights``; its TensorFlow users write one with
    ``tf.train.Checkpoint(model=..., optimizer=...)``, and its loaders read it that way."""
    impossible = _tf_checkpoint_impossible(fw)
    if impossible:
        raise NotApplicable(impossible)
    folder = os.path.join(tmp, "checkpoint")
    os.makedirs(folder)
    prefix = os.path.join(folder, "ckpt")
    if fw.keras_major >= 3:
        fw.tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(prefix)
        writer = "tf.train.Checkpoint(model=, optimizer=).write"
    else:
        model.save_weights(prefix, save_format="tf")
        writer = "model.save_weights(save_format='tf')"
    return {"model_file": "checkpoint", "checkpoint_prefix": "ckpt", "checkpoint_writer": writer}


def _save_keras_weights_beside(fw, model, tmp, xs, ys):
    """A ``.keras`` file and, in the same folder, the model's weights as ``model.weights.h5``
    (``save_weights``): the pair users keep side by side, which Keras 3.4.0/3.4.1's
    ``load_model`` overwrites and deletes (it extracts the archive's own weights file of
    that name next to the ``.keras`` file, then removes it: keras#19921)."""
    model.save(os.path.join(tmp, "model.keras"))
    if sniff_artifact(os.path.join(tmp, "model.keras")) != "keras_v3":
        raise NotApplicable("Keras %s writes no Keras v3 archive for model.save('*.keras')" % fw.keras_version)
    model.save_weights(os.path.join(tmp, "model.weights.h5"))
    return {"model_file": "model.keras", "weights_file": "model.weights.h5"}


# One writer per format. A dispatch table: a save cell's key covers only its own entry
# (runner/components.py), so editing how h5 is written recomputes h5 saves only.
SAVERS = {"h5": _save_h5, "savedmodel": _save_savedmodel, "keras": _save_keras,
          "json+weights": _save_json_weights, "export": _save_export,
          "tf_checkpoint": _save_tf_checkpoint, "keras+weights": _save_keras_weights_beside}


def _save_model(fw, model, fmt, tmp, xs, ys):
    """Write ``model`` in ``fmt`` into the directory ``tmp``; return save.json fields (the
    files written; for SavedModels, how the signature names inputs and outputs)."""
    impossible = format_impossible(fw, fmt)
    if impossible:
        raise NotApplicable(impossible)
    if fmt not in SAVERS:
        raise ValueError("unknown format %r" % (fmt,))
    return SAVERS[fmt](fw, model, tmp, xs, ys)


def parse_variant(variant):
    """The set of flags of a load variant ("default" is the empty set)."""
    if variant in (None, "", "default"):
        return frozenset()
    flags = str(variant).split("+")
    if any(f not in VARIANT_FLAGS for f in flags) or len(set(flags)) != len(flags):
        raise ValueError("unknown load variant %r (flags: %s)" % (variant, ", ".join(VARIANT_FLAGS)))
    return frozenset(flags)


def _safe_mode_scope(fw):
    """Keras' SafeModeScope class (Keras >= 2.13 and 3), or None for older releases."""
    root = fw.keras.__name__.split(".")[0]
    for name in (root + ".src.saving.serialization_lib", root + ".saving.serialization_lib",
                 "keras.src.saving.serialization_lib"):
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        scope = getattr(module, "SafeModeScope", None)
        if scope is not None:
            return scope
    return None


def _accepts(fn, name):
    try:
        import inspect
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _variant_custom_objects(fw, fmt, opts):
    """custom_objects: the user hands the loader the classes, so import the scenario
    (which defines them). Without this flag the scenario is never imported: the loader has
    not seen its custom classes. (``check`` passes the user's own objects instead.)"""
    cell = opts.get("cell")
    if opts.get("custom_objects") is None and cell is not None:
        scenario = load_scenario(cell["scenario"], cell["scenario_path"])
        provider = getattr(scenario, "custom_objects", None)
        opts["custom_objects"] = provider(fw.keras) if provider is not None else {}


def _variant_compile_false(fw, fmt, opts):
    if fmt in ("json+weights", "export"):
        raise NotApplicable("%s is never compiled on load; compile=False changes nothing" % fmt)
    opts["kwargs"]["compile"] = False


def _variant_unsafe(fw, fmt, opts):
    scope = _safe_mode_scope(fw)
    if fmt != "json+weights" and _accepts(fw.keras.models.load_model, "safe_mode"):
        opts["kwargs"]["safe_mode"] = False
    elif scope is None:
        raise NotApplicable("Keras %s has no safe mode to turn off" % fw.keras_version)
    opts["scope"] = scope


def _variant_signature(fw, fmt, opts):
    """signature: call the SavedModel's serving signature with named inputs
    (tf.saved_model.load(path).signatures["serving_default"](**inputs)), the way past
    TFSMLayer's positional call for a multi-input signature (keras#20813)."""
    if fmt not in ("export", "savedmodel"):
        raise NotApplicable("the signature remedy reads TF SavedModel directories; this is %s" % fmt)
    if fw.keras_major < 3:
        raise NotApplicable("Keras %s reads a SavedModel's signature with named inputs already (tfsm)"
                            % fw.keras_version)
    opts["loader"] = _load_by_signature


def _variant_tfsm(fw, fmt, opts):
    if fmt != "savedmodel":
        raise NotApplicable("the tfsm remedy reads TF SavedModel directories; this is %s" % fmt)
    opts["loader"] = _load_for_inference


# A load variant's flags, applied in VARIANT_FLAGS order; a dispatch table like SAVERS
# (a load cell's key covers the entries of its own flags only).
VARIANT_STEPS = {"custom_objects": _variant_custom_objects, "compile_false": _variant_compile_false,
                 "unsafe": _variant_unsafe, "tfsm": _variant_tfsm, "signature": _variant_signature}


def _load_with_load_model(fw, path, saved, opts):
    """``keras.models.load_model`` as a user of this stack calls it, under the variant's
    safe-mode scope (a no-op scope when there is none)."""
    scope = opts.get("scope")
    guard = scope(False) if scope is not None else _NoScope()
    with guard:
        model = fw.keras.models.load_model(path, **opts["kwargs"])

    def predict(xs):
        return predict_outputs(fw, model, xs)

    return model, predict


def _load_h5(fw, path, saved, opts):
    return _load_with_load_model(fw, path, saved, opts)


def _load_savedmodel(fw, path, saved, opts):
    return _load_with_load_model(fw, path, saved, opts)


def _load_keras(fw, path, saved, opts):
    return _load_with_load_model(fw, path, saved, opts)


def _load_json_weights(fw, path, saved, opts):
    scope = opts.get("scope")
    guard = scope(False) if scope is not None else _NoScope()
    with guard:
        with open(path) as fh:
            model = fw.keras.models.model_from_json(fh.read(), **opts["kwargs"])
        model.load_weights(os.path.join(os.path.dirname(path), saved["weights_file"]))

    def predict(xs):
        return predict_outputs(fw, model, xs)

    return model, predict


def _load_by_signature(fw, path, saved, opts):
    """A SavedModel read through its serving signature, called with named inputs."""
    return None, _export_predictor(fw, path, saved, by_signature=True)


def _load_for_inference(fw, path, saved, opts):
    """An exported (or, with tfsm, any) SavedModel read for inference: no Keras model."""
    return None, _export_predictor(fw, path, saved)


def _only_default_load(fmt, opts):
    """A load of ``fmt`` takes no remedy that changes how ``load_model`` is called."""
    kwargs = set(opts["kwargs"]) - {"custom_objects"}
    if kwargs or opts.get("scope") is not None:
        raise NotApplicable("%s does not apply to a %s load" % (", ".join(sorted(kwargs)) or "safe mode", fmt))


def _load_tf_checkpoint(fw, path, saved, opts):
    """The scenario's model built from its code (a checkpoint holds no architecture), then
    the checkpoint read into it as its stack's users do: ``model.load_weights(prefix)``
    in Keras 2 (which restores the optimizer's slots when training resumes), and in
    Keras 3 ``tf.train.Checkpoint(model=, optimizer=).read(prefix)`` after building the
    optimizer, asserting that something matched (as Keras 2's load_weights does)."""
    _only_default_load("tf_checkpoint", opts)
    impossible = _tf_checkpoint_impossible(fw)
    if impossible:
        raise NotApplicable(impossible)
    cell = opts.get("cell")
    if cell is None:
        raise NotApplicable("a TF checkpoint holds weights only: the model comes from the scenario's code")
    scenario = load_scenario(cell["scenario"], cell["scenario_path"])
    model = scenario.build(fw.keras)
    prefix = os.path.join(path, saved["checkpoint_prefix"])
    if fw.keras_major >= 3:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not getattr(optimizer, "built", True):
            optimizer.build(model.trainable_variables)
        fw.tf.train.Checkpoint(model=model, optimizer=optimizer).read(prefix).assert_nontrivial_match()
    else:
        model.load_weights(prefix)

    def predict(xs):
        return predict_outputs(fw, model, xs)

    return model, predict


def _file_digest(path):
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _load_keras_weights_beside(fw, path, saved, opts):
    """``load_model`` of the ``.keras`` file with the weights file beside it, then that
    weights file loaded into the model. Both are copied to a private folder first: what
    the load does to its folder (Keras 3.4.0/3.4.1 overwrite and delete model.weights.h5
    there) is the finding, and never reaches the artifact the next loader reads."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="compat-beside-")
    try:
        for name in (saved["model_file"], saved["weights_file"]):
            shutil.copyfile(os.path.join(os.path.dirname(path), name), os.path.join(folder, name))
        beside = os.path.join(folder, saved["weights_file"])
        before = _file_digest(beside)
        model, predict = _load_with_load_model(fw, os.path.join(folder, saved["model_file"]), saved, opts)
        if not os.path.exists(beside):
            raise RuntimeError("keras.models.load_model(%r) deleted %s, the weights file beside it"
                               % (saved["model_file"], saved["weights_file"]))
        if _file_digest(beside) != before:
            raise RuntimeError("keras.models.load_model(%r) overwrote %s, the weights file beside it"
                               % (saved["model_file"], saved["weights_file"]))
        model.load_weights(beside)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return model, predict


# One reader per format, a dispatch table like SAVERS.
LOADERS = {"h5": _load_h5, "savedmodel": _load_savedmodel, "keras": _load_keras,
           "json+weights": _load_json_weights, "export": _load_for_inference,
           "tf_checkpoint": _load_tf_checkpoint, "keras+weights": _load_keras_weights_beside}


def _load_model(fw, path, custom_objects, saved, flags=frozenset(), cell=None):
    """Load a Keras model the way a user of this stack would; return (model, predict_fn).

    ``flags`` are the load variant's remedies (see VARIANT_FLAGS); ``cell`` is the matrix
    cell (its scenario provides the custom objects), None for ``check``.
    """
    fmt = saved["format"]
    if fmt not in LOADERS:
        raise ValueError("unknown format %r" % (fmt,))
    opts = {"kwargs": {}, "scope": None, "loader": LOADERS[fmt], "custom_objects": custom_objects,
            "cell": cell}
    if "custom_objects" in flags:
        VARIANT_STEPS["custom_objects"](fw, fmt, opts)
    if "tfsm" in flags or "signature" in flags:  # inference only: the other remedies do not apply
        for flag in ("tfsm", "signature"):
            if flag in flags:
                VARIANT_STEPS[flag](fw, fmt, opts)
    else:
        for flag in ("compile_false", "unsafe"):
            if flag in flags:
                VARIANT_STEPS[flag](fw, fmt, opts)
    if opts["custom_objects"] is not None:
        opts["kwargs"]["custom_objects"] = opts["custom_objects"]
    return opts["loader"](fw, path, saved, opts)


class _NoScope(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _export_predictor(fw, path, saved, by_signature=False):
    """A callable over an exported inference SavedModel (no Keras model comes back).

    Keras 3 users read it with keras.layers.TFSMLayer, as Keras documents ("serve" for
    model.export(), else the signature TF writes by default); TFSMLayer passes its inputs
    positionally, which a multi-input serving_default signature (keyword-only) refuses
    (keras#20813): that failure is the cell's finding. ``by_signature`` (the ``signature``
    remedy, and every TF 2 user's way) calls the serving signature with named inputs
    through tf.saved_model.load."""
    keys = saved.get("export_keys") or {}
    if fw.tf is None:
        raise NotApplicable("an exported TF SavedModel can only be loaded with TensorFlow, "
                            "which this stack does not have")
    tf = fw.tf
    endpoint = "serve" if saved.get("export_endpoint") == "serve" else "serving_default"
    if fw.keras_major >= 3 and not by_signature:
        layer = fw.keras.layers.TFSMLayer(path, call_endpoint=endpoint)

        def predict_tfsm(xs):
            out = layer(xs[0] if len(xs) == 1 else list(xs))
            return _ordered_outputs(fw.np, out, keys.get("outputs"))

        return predict_tfsm
    if _tf_major(fw) >= 2:
        obj = tf.saved_model.load(path)
        fn = obj.signatures["serving_default"]
        names = keys.get("inputs") or sorted(fn.structured_input_signature[1])

        def predict_sig(xs, _keep_alive=obj):
            # The signature holds only weak references to the loaded variables: the
            # loaded object must stay alive while it is called (as a user's would).
            out = fn(**{n: tf.constant(x) for n, x in zip(names, xs)})
            return _ordered_outputs(fw.np, out, keys.get("outputs"))

        return predict_sig

    def predict_v1(xs):
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
            sig = meta.signature_def["serving_default"]
            names = keys.get("inputs") or sorted(sig.inputs)
            feed = {sig.inputs[n].name: x for n, x in zip(names, xs)}
            out = sess.run({k: v.name for k, v in sig.outputs.items()}, feed)
        return _ordered_outputs(fw.np, out, keys.get("outputs"))

    return predict_v1


def _ordered_outputs(np, out, order):
    if isinstance(out, dict):
        names = order if order and set(order) == set(out) else sorted(out)
        return [np.asarray(out[k]) for k in names]
    return [np.asarray(o) for o in _as_list(out)]


def _export_keys(fw, path, xs, ys):
    """How the exported signature names inputs and outputs, in the model's order.

    The saver works this out once (by shape for inputs, by value for outputs) so that
    every loader can call the signature and compare outputs in the right order.
    """
    info = {"export_endpoint": "serving_default"}
    if fw.tf is None:
        return info
    tf = fw.tf
    if _tf_major(fw) >= 2:
        obj = tf.saved_model.load(path)
        if hasattr(obj, "serve"):
            info["export_endpoint"] = "serve"
        fn = obj.signatures.get("serving_default") if hasattr(obj, "signatures") else None
        if fn is None:
            return info
        specs = fn.structured_input_signature[1]
        shapes = {n: tuple(specs[n].shape[1:]) for n in specs}
        names = _match_inputs(shapes, xs)
        if names is None:
            return info
        out = fn(**{n: tf.constant(x) for n, x in zip(names, xs)})
    else:
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
            sig = meta.signature_def["serving_default"]
            shapes = {n: tuple(d.size for d in sig.inputs[n].tensor_shape.dim)[1:] for n in sig.inputs}
            names = _match_inputs(shapes, xs)
            if names is None:
                return info
            feed = {sig.inputs[n].name: x for n, x in zip(names, xs)}
            out = sess.run({k: v.name for k, v in sig.outputs.items()}, feed)
    outputs = _match_outputs(fw.np, out, ys)
    if outputs is not None:
        info["export_keys"] = {"inputs": names, "outputs": outputs}
    return info


def _match_inputs(shapes, xs):
    """Signature input names in the order of ``xs``, matched by shape (None if ambiguous)."""
    free = sorted(shapes)
    names = []
    for x in xs:
        match = [n for n in free
                 if len(shapes[n]) == x.ndim - 1
                 and all(d in (None, -1, s) for d, s in zip(shapes[n], x.shape[1:]))]
        if not match:
            return None
        names.append(match[0])
        free.remove(match[0])
    return names


def _match_outputs(np, out, ys):
    """Signature output names in the order of ``ys``, matched by value."""
    names = []
    for y in ys:
        scores = sorted((float(np.max(np.abs(np.asarray(v, dtype="float64") - y)))
                         if np.asarray(v).shape == y.shape else float("inf"), k)
                        for k, v in out.items() if k not in names)
        if not scores or scores[0][0] == float("inf"):
            return None
        names.append(scores[0][1])
    return names


# ---------------------------------------------------------------------------- cells


def _replace_dir(tmp, final):
    trash = None
    if os.path.exists(final):
        trash = final + ".old-%d" % os.getpid()
        os.rename(final, trash)
    os.rename(tmp, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _raised_in(exc, path):
    """True if the innermost frame of ``exc``'s traceback is in the file ``path``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    return os.path.abspath(tb.tb_frame.f_code.co_filename) == os.path.abspath(path)


def _fit_one_step(model, tx, ty):
    model.fit(_model_input(tx), ty[0] if len(ty) == 1 else list(ty), batch_size=len(ty[0]),
              epochs=1, shuffle=False, verbose=0)


def save_cell(fw, cell, ctx, seed):
    np = fw.np
    ctx["phase"] = "build"
    scenario = load_scenario(cell["scenario"], cell["scenario_path"])
    fmt = cell["format"]
    allowed = getattr(scenario, "FORMATS", None)
    if allowed is not None and fmt not in allowed:
        raise NotApplicable("scenario %s does not support format %s" % (cell["scenario"], fmt))
    impossible = format_impossible(fw, fmt)
    if impossible:
        raise NotApplicable(impossible)
    _seed_everything(fw, seed)
    try:
        model = scenario.build(fw.keras)
    except NotImplementedError as exc:
        # Only the scenario saying so means "cannot exist here"; the same exception
        # raised inside Keras/TF (e.g. TF 1.15's LSTM under a newer numpy) is a failure.
        if _raised_in(exc, cell["scenario_path"]):
            raise NotApplicable(str(exc) or "scenario cannot be built in this stack") from exc
        raise
    init = getattr(scenario, "init_weights", None)
    if init is not None:
        init(model, np)
    else:
        _deterministic_weights(fw, model, seed)
    xs = [np.asarray(x) for x in _as_list(scenario.inputs(np))]
    train = None
    if hasattr(scenario, "train_data"):
        # Trained scenarios: one optimizer step before saving, so the artifact carries
        # optimizer state (Adam moments, iteration count) as well as weights.
        ctx["phase"] = "build"
        tx, ty = scenario.train_data(np)
        train = ([np.asarray(a) for a in _as_list(tx)], [np.asarray(a) for a in _as_list(ty)])
        _fit_one_step(model, train[0], train[1])
    ctx["phase"] = "predict"
    ys = predict_outputs(fw, model, xs)

    ctx["phase"] = "save"
    final = cell["artifact_dir"]
    parent = os.path.dirname(final)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    tmp = final + ".tmp-%d" % os.getpid()
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        return _write_artifact(fw, model, fmt, xs, ys, train, tmp, final, cell)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed save leaves nothing behind


def _write_artifact(fw, model, fmt, xs, ys, train, tmp, final, cell):
    np = fw.np
    files = _save_model(fw, model, fmt, tmp, xs, ys)
    model_file = files["model_file"]
    written_as = sniff_artifact(os.path.join(tmp, model_file))
    info = {
        "scenario": cell["scenario"],
        "format": fmt,
        "written_as": written_as,
        "n_inputs": len(xs),
        "n_outputs": len(ys),
        "output_shapes": [list(y.shape) for y in ys],
        "env": env_info(fw),
    }
    info.update(files)
    arrays = {}
    for i, x in enumerate(xs):
        arrays["x%d" % i] = x
    for i, y in enumerate(ys):
        arrays["y%d" % i] = y
    if train is not None:
        # The saver's model after one *more* step: a loader that resumes training from
        # the artifact must land here if the optimizer state survived.
        _fit_one_step(model, train[0], train[1])
        zs = predict_outputs(fw, model, xs)
        for name, group in (("tx", train[0]), ("ty", train[1]), ("z", zs)):
            for i, a in enumerate(group):
                arrays["%s%d" % (name, i)] = np.asarray(a)
        info["n_train_x"], info["n_train_y"], info["n_z"] = len(train[0]), len(train[1]), len(zs)
    with open(os.path.join(tmp, REFERENCE_FILE), "wb") as fh:
        np.savez(fh, **arrays)
    with open(os.path.join(tmp, SAVE_INFO_FILE), "w") as fh:
        json.dump(info, fh, indent=1, sort_keys=True)
    _replace_dir(tmp, final)
    details = {"written_as": written_as, "model_file": model_file}
    if fmt == "keras" and written_as != "keras_v3":
        details["note"] = "model.save('*.keras') wrote %s, not the Keras v3 zip format" % written_as
    return "ok", None, details


def _encode_arrays(np, arrays):
    """Arrays as JSON for the host (runner/judge.py decodes them): numeric ones as zlib-
    compressed bytes in base64, others as lists."""
    import base64
    import zlib

    out = []
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind in "biufc":
            data = base64.b64encode(zlib.compress(np.ascontiguousarray(a).tobytes(), 6)).decode("ascii")
            out.append({"dtype": a.dtype.str, "shape": list(a.shape), "zlib": data})
        else:
            out.append({"dtype": a.dtype.str, "shape": list(a.shape), "list": a.tolist()})
    return out


def _resume_training(fw, model, ref, saved, ctx):
    """Train the loaded model one more step on the saver's batch and observe where it lands
    (the host compares that with the saver's model after the same step, ``z*`` in
    reference.npz): ``{"outputs", "steps"}``, or what stopped it (``no_model``,
    ``no_optimizer``, ``error``)."""
    if model is None:
        return {"no_model": True}
    if getattr(model, "optimizer", None) is None:
        return {"no_optimizer": True}
    tx = [ref["tx%d" % i] for i in range(saved["n_train_x"])]
    ty = [ref["ty%d" % i] for i in range(saved["n_train_y"])]
    ctx["phase"] = "train"
    try:
        _fit_one_step(model, tx, ty)
        got = predict_outputs(fw, model, [ref["x%d" % i] for i in range(saved["n_inputs"])])
    except Exception as exc:  # what stopped it is the finding
        return {"error": "%s: %s" % (type(exc).__name__, _truncate(str(exc), 300))}
    return {"outputs": _encode_arrays(fw.np, got), "steps": _optimizer_steps(fw, model)}


def _optimizer_steps(fw, model):
    iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
    if iterations is None:
        return None
    get_value = getattr(getattr(fw.keras, "backend", None), "get_value", None)
    try:
        value = get_value(iterations) if get_value is not None else iterations.numpy()
        return int(fw.np.asarray(value))
    except Exception:  # an unreadable counter is not evidence either way
        return None


def load_cell(fw, cell, ctx, seed):
    """Load the artifact the way a user of this stack would, predict on the saver's inputs
    and, for a trained scenario, try one more training step: observations only (outcome
    "observed"); the host judges them against the saver's reference (runner/judge.py)."""
    np = fw.np
    ctx["phase"] = "load"
    art = cell["artifact_dir"]
    with open(os.path.join(art, SAVE_INFO_FILE)) as fh:
        saved = json.load(fh)
    ref = dict(np.load(os.path.join(art, REFERENCE_FILE), allow_pickle=False))
    xs = [ref["x%d" % i] for i in range(saved["n_inputs"])]
    flags = parse_variant(cell.get("variant", "default"))
    _seed_everything(fw, seed)
    model, predict = _load_model(fw, os.path.join(art, saved["model_file"]), None, saved, flags, cell)
    ctx["phase"] = "predict"
    got = [np.asarray(y) for y in predict(xs)]
    observed = {"outputs": _encode_arrays(np, got)}
    details = {"observed": observed,
               "loaded_class": type(model).__name__ if model is not None else "exported SavedModel",
               "written_as": saved.get("written_as")}
    # What is observed survives an interrupt of the training step.
    ctx["details"] = details
    if "n_z" in saved and saved["format"] != "export" and not flags & {"compile_false", "tfsm", "signature"}:
        observed["training"] = _resume_training(fw, model, ref, saved, ctx)
    return "observed", None, details


def run_cell(fw, phase, cell, seed):
    """Run one cell and return its result event; never raises for framework errors."""
    if phase == "save":
        return guarded_cell(save_cell, fw, cell, seed, "build", "save_error")
    return guarded_cell(load_cell, fw, cell, seed, "load", "load_error")


def guarded_cell(fn, fw, cell, seed, first_phase, failure):
    """``fn(fw, cell, ctx, seed) -> (outcome, diff, details)`` as a result event: an
    exception becomes ``failure`` (or not_applicable), with what ``ctx["details"]`` held."""
    started = time.time()
    ctx = {"phase": first_phase, "details": {}}
    result = {"event": "result", "cell_id": cell["cell_id"], "error": None,
              "max_abs_diff": None, "details": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome, diff, details = fn(fw, cell, ctx, seed)
            result["max_abs_diff"] = diff
            result["details"] = details
        except NotApplicable as exc:
            outcome = "not_applicable"
            result["error"] = error_info(exc)
            result["details"] = ctx["details"]
        except Exception as exc:
            outcome = failure
            result["error"] = error_info(exc)
            result["details"] = ctx["details"]
            result["max_abs_diff"] = ctx.get("max_abs_diff")
        except CellTimeout as exc:
            outcome = "timeout"
            result["error"] = dict(error_info(exc), type="runner.timeout")
            result["details"] = dict(ctx["details"], interrupted_in_worker=True)
            result["max_abs_diff"] = ctx.get("max_abs_diff")  # predictions compared before the interrupt
        result["warnings"] = _warnings_list(caught)
    result["outcome"] = outcome
    result["phase"] = ctx["phase"]
    result["duration_s"] = round(time.time() - started, 4)
    return result


# ----------------------------------------------------------------------------- main


def _swallowed_timeout(result, limit):
    """The watchdog fired during the cell, but the code it interrupted swallowed every
    CellTimeout and finished late: over the limit all the same, so a timeout (as the
    host's deadline would have made it)."""
    result["error"] = {"type": "runner.timeout", "traceback": "",
                       "message": "cell exceeded its %g s limit; the code it interrupted "
                                  "swallowed the interrupt and finished after %.1f s"
                                  % (limit, result.get("duration_s") or 0.0)}
    result["details"] = dict(result.get("details") or {}, interrupted_in_worker=True,
                             swallowed_outcome=result.get("outcome"))
    # The interrupt may have landed inside a predict or a training step that went on:
    # no comparison made after it is evidence.
    for key in ("observed", "prediction", "training", "training_diff", "training_reason", "reason"):
        result["details"].pop(key, None)
    result["max_abs_diff"] = None
    result["outcome"] = "timeout"


def _usage(message, commands):
    sys.stderr.write("worker: %s\nusage: worker.py <%s> <control_dir>\n"
                     % (message, "|".join(commands)))
    return EXIT_BAD_REQUEST


def main(argv):
    return serve(argv, COMMANDS, run_cell)


def serve(argv, commands, cell_runner):
    """The worker protocol around ``cell_runner(fw, command, cell, seed) -> result event``
    (the check worker serves its own command with it)."""
    faulthandler.enable()
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if len(argv) != 3 or argv[1] not in commands:
        return _usage("bad arguments %r" % (argv[1:],), commands)
    command, control_dir = argv[1], argv[2]
    try:
        with open(os.path.join(control_dir, REQUEST_FILE)) as fh:
            request = json.load(fh)
    except (OSError, ValueError) as exc:
        return _usage("cannot read request: %s" % exc, commands)
    if request.get("protocol") != PROTOCOL_VERSION or request.get("phase") != command:
        return _usage("request does not match protocol %d / command %s"
                      % (PROTOCOL_VERSION, command), commands)
    for path in request.get("extra_sys_path") or []:
        sys.path.insert(0, path)
    _set_parent_death_signal()
    parent_pid = request.get("parent_pid")
    if _parent_gone(parent_pid, control_dir):
        return EXIT_ORPHANED
    events = _Events(os.path.join(control_dir, EVENTS_FILE))
    seed = int(request.get("seed", DEFAULT_SEED))
    cells = request.get("cells") or []

    t0 = time.time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fw = import_framework(request.get("keras_module", "auto"))
            info = env_info(fw)
    except Exception as exc:
        err = error_info(exc)
        events.write({"event": "import_error", "error": err})
        for cell in cells:
            events.write({"event": "started", "cell_id": cell["cell_id"]})
            events.write({"event": "result", "cell_id": cell["cell_id"],
                          "outcome": "save_error" if command == "save" else "load_error",
                          "phase": "import", "error": err, "warnings": [],
                          "max_abs_diff": None, "duration_s": 0.0, "details": {}})
        events.write({"event": "done"})
        return EXIT_OK
    events.write({"event": "ready", "env": info, "import_s": round(time.time() - t0, 3)})

    if command != "probe":
        global _WATCHDOG
        _WATCHDOG = _Watchdog()
        state = _GlobalState(fw)
        first = True
        for cell in cells:
            if _parent_gone(parent_pid, control_dir):
                return EXIT_ORPHANED
            events.write({"event": "started", "cell_id": cell["cell_id"]})
            limit = cell.get("timeout_s") or request.get("cell_timeout")
            if first and limit and request.get("cell_timeout"):
                # The first cell of a process pays the backend's warm-up (lazy imports, XLA or
                # torch initialisation: up to ~10 s measured), whichever cell it is.
                limit = max(limit, request["cell_timeout"])
            _WATCHDOG.arm(limit)
            try:
                result = cell_runner(fw, command, cell, seed)
            except CellTimeout as exc:  # fired outside the cell's own guard (its last lines)
                result = {"event": "result", "cell_id": cell["cell_id"], "outcome": "timeout",
                          "phase": None, "error": dict(error_info(exc), type="runner.timeout"),
                          "warnings": [],
                          "max_abs_diff": None, "duration_s": None,
                          "details": {"interrupted_in_worker": True}}
            finally:
                _WATCHDOG.disarm()
            if _WATCHDOG.tripped and result.get("outcome") != "timeout":
                _swallowed_timeout(result, _WATCHDOG.limit)
            if _WATCHDOG.fired:
                result.setdefault("details", {})["after_interrupt"] = _WATCHDOG.fired
            if first:
                result.setdefault("details", {})["first_in_worker"] = True
                first = False
            if result.get("outcome") == "timeout":
                _WATCHDOG.fired += 1
            state.restore()
            events.write(result)
    events.write({"event": "done"})
    return EXIT_OK


# The set other worker scripts in this directory (check_worker.py) may use.
load_model = _load_model
export_predictor = _export_predictor
seed_everything = _seed_everything
safe_mode_scope = _safe_mode_scope
accepts = _accepts
tf_major = _tf_major
truncate = _truncate


if __name__ == "__main__":
    sys.exit(main(sys.argv))
