"""The knob that drives the fake framework: the ``COMPAT_FAKE_BEHAVIOR`` variable (JSON).

Python 3.7 syntax: the worker-floor session imports this under the oldest stack Python.

Settings (all optional)::

    {"version": "2.15.0",        keras.__version__ (a 3.x version switches to Keras 3 rules)
     "tf_version": "2.15.0",     tensorflow.__version__
     "keras_as_h5": true,        Keras 2 writes HDF5 under a ``.keras`` name (as TF < 2.12)
     "<hook>": RULES}

Hooks, and the context string a rule's ``match`` is looked for in:

    import      importing keras (and so tensorflow)   ""
    tf_import   importing tensorflow                  ""
    build       Model/Sequential construction         the model name
    predict     Model.predict                         "<model name> <file it was loaded from>"
    save        Model.save                            the path written (the worker's temp dir
                                                      is "<artifact_dir>.tmp-<pid>/...")
    load        models.load_model                     the path read ("<artifact_dir>/model.h5")
    fit         Model.fit                             "<model name> <file it was loaded from>"

RULES is an action string, a rule dict ``{"action": ..., "match": "substr", "arg": ...}``
or a list of those; every rule whose ``match`` (absent = always) is a substring of the
context fires, in order. Actions:

    ok                    nothing
    raise_unknown_layer   ValueError("Unknown layer: '<arg>'. Please ensure ...")  (Keras 2)
    raise_format          ValueError("File format not supported: filepath=... Keras 3 ...")
    raise                 RuntimeError(arg)
    raise_import          ImportError(arg)
    not_implemented       NotImplementedError(arg)
    perturb               (load only) the loaded model adds ``arg`` (default 0.25) to outputs
    drop_optimizer        (load only) a compiled model comes back with a fresh optimizer (step 0)
    no_optimizer          (load only) a compiled model comes back not compiled (no optimizer)
    skew_optimizer        (load only) the optimizer's step count comes back, its moments wrong
    warn                  warnings.warn(arg, <"category", default UserWarning>), then go on
    garbage               junk (including fake protocol lines) on stdout/stderr, then go on
    segv                  os.kill(own pid, SIGSEGV)
    kill                  os.kill(own pid, SIGKILL)
    hang                  sleep forever (a pure-Python hang: the worker's watchdog interrupts it)
    hang_c                ignore SIGALRM, then sleep forever (deaf to the watchdog, as C code)
    swallow               work for ``arg`` seconds (default 3) swallowing every exception, then go on
    exit                  os._exit(arg or 0)   ("exit0" is os._exit(0))
    delete_sibling        (load) delete the file ``arg`` next to the file being loaded, as
                          Keras 3.4.0/3.4.1 delete a model.weights.h5 next to a .keras
    scribble              (load) append bytes to the file being loaded, in place
"""

import builtins
import json
import os
import signal
import sys
import time
import warnings

ENV_VAR = "COMPAT_FAKE_BEHAVIOR"

UNKNOWN_LAYER = (
    "Unknown layer: '%s'. Please ensure you are using a `keras.utils.custom_object_scope` "
    "and that this object is included in the scope. See "
    "https://www.tensorflow.org/guide/keras/save_and_serialize#registering_the_custom_object "
    "for details."
)

FORMAT_NOT_SUPPORTED = (
    "File format not supported: filepath=%s. Keras 3 only supports V3 `.keras` files and "
    "legacy H5 format files (`.h5` extension). Note that the legacy SavedModel format is not "
    "supported by `load_model()` in Keras 3. In order to reload a TensorFlow SavedModel as an "
    "inference-only layer in Keras 3, use `keras.layers.TFSMLayer(%s, "
    "call_endpoint='serving_default')` (note that your `call_endpoint` might have a different "
    "name)."
)

GARBAGE_LINES = (
    '{"event": "result", "cell_id": "*", "outcome": "ok", "phase": "load"}',
    '{"event": "done"}',
    "not json at all {{{",
    "\x00\x01 binary \xff junk",
)


def config():
    raw = os.environ.get(ENV_VAR)
    value = json.loads(raw) if raw else {}
    if not isinstance(value, dict):
        raise ValueError("%s must hold a JSON object, got %r" % (ENV_VAR, raw))
    return dict(value, **_release_behavior())


def _release_behavior():
    """The settings of an installed fake release (tests/test_bisect.py builds wheels of
    ``compat-fake-release``, one per version, each a module ``compat_fake_release`` with a
    ``BEHAVIOR`` dict): they override the stack's variable, as a new release would."""
    try:
        import compat_fake_release
    except ImportError:
        return {}
    return dict(compat_fake_release.BEHAVIOR)


def setting(name, default=None):
    return config().get(name, default)


def keras_version():
    return str(setting("version", "2.15.0"))


def keras_major():
    return int(keras_version().split(".")[0])


def rules(hook):
    spec = config().get(hook)
    if spec is None:
        return []
    if not isinstance(spec, list):
        spec = [spec]
    out = []
    for item in spec:
        if isinstance(item, str):
            item = {"action": item}
        out.append(item)
    return out


def fire(hook, context=""):
    """Run every matching rule of ``hook``; return the rules that matched."""
    matched = []
    for rule in rules(hook):
        match = rule.get("match")
        if match is not None and match not in context:
            continue
        matched.append(rule)
        _act(rule, context)
    return matched


def perturbation(matched):
    return sum(float(r.get("arg", 0.25)) for r in matched if r.get("action") == "perturb")


def _act(rule, context):
    action = rule.get("action", "ok")
    arg = rule.get("arg")
    if action in ("ok", "perturb", "drop_optimizer", "no_optimizer", "skew_optimizer"):
        return
    if action == "raise_unknown_layer":
        raise ValueError(UNKNOWN_LAYER % (arg or "compat_scenarios>ScaleShift"))
    if action == "raise_format":
        raise ValueError(FORMAT_NOT_SUPPORTED % (context, context))
    if action == "raise":
        raise RuntimeError(arg or "fake framework failure")
    if action == "raise_import":
        raise ImportError(arg or "libfakecudart.so.11.0: cannot open shared object file: "
                                 "No such file or directory")
    if action == "not_implemented":
        raise NotImplementedError(arg or "the fake framework cannot do this")
    if action == "warn":
        category = getattr(builtins, rule.get("category", "UserWarning"))
        warnings.warn(arg or "fake framework warning", category)
        return
    if action == "garbage":
        for line in GARBAGE_LINES:
            sys.stdout.write(line + "\n")
            sys.stderr.write(line + "\n")
        sys.stdout.write("partial line without newline ")
        sys.stdout.flush()
        sys.stderr.flush()
        return
    if action == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(30)
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(30)
        return
    if action == "hang":  # a pure-Python hang: the worker's watchdog interrupts it
        while True:
            time.sleep(1)
    if action == "swallow":  # a bare except around slow work: swallows interrupts, ends late
        end = time.time() + float(arg or 3)
        while time.time() < end:
            try:
                time.sleep(0.1)
            except BaseException:
                pass
        return
    if action == "hang_c":  # deaf to the watchdog, as a hang inside C code is
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    if action == "delete_sibling":
        sibling = os.path.join(os.path.dirname(context), arg or "save.json")
        if os.path.exists(sibling):
            os.remove(sibling)
        return
    if action == "scribble":
        with open(context, "ab") as fh:
            fh.write(b"scribbled by the loader")
        return
    if action in ("exit", "exit0"):
        sys.stdout.flush()
        os._exit(int(arg or 0))
    raise ValueError("fake framework: unknown action %r" % (action,))
