"""Why a cell failed and what a user can do about it: ordered rules over real messages.

Each rule matches a failing record on its phase, the qualified exception type and a
regular expression over the message and traceback tail (the innermost exception is
often only in the traceback: Keras 3 wraps deserialization errors), plus, where the
direction matters, the saver's and loader's versions. The first matching rule gives
the record a stable ``category`` id, an explanation a user can act on, and the
remedies worth trying. Remedies are *tried*, never just advised: the runner re-runs the
failing cell with each remedy (a load ``variant`` flag, or the sibling stack that
differs by one pin; see runner/matrix.py) and the reports say what happened.

Rules are grounded in the messages the real matrix produced (each has a test quoting
one) and in upstream threads: keras-team/keras#18468 (Keras 3 cannot read legacy
SavedModel), tensorflow/tensorflow#44467 (h5py 3 ``'str' object has no attribute
'decode'``), keras-team/keras#19441 (``batch_shape`` in Keras 2 readers),
keras-team/tf-keras#97 / keras#18558 (Lambda safe mode), keras#19282 (Keras 2 h5
``time_major``; keras#20750 its GRU form), keras#19959 (a Functional model inside a Sequential),
tensorflow#60359 (op not registered in older TF).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from runner.records import Outcome, Record

__all__ = [
    "CATEGORIES",
    "OTHER",
    "REMEDIES",
    "RULES",
    "Diagnosis",
    "Remedy",
    "RemedyResult",
    "Rule",
    "combine_variant",
    "diagnose",
    "major_minor",
    "normalise",
    "remedy_results",
    "remedy_targets",
    "sibling_map",
    "signature",
    "tf_keras_for_keras2",
]


@dataclasses.dataclass(frozen=True)
class Remedy:
    """One thing a user can do; ``variant`` (a worker load flag) or ``sibling`` (a stack's remedy)."""

    id: str
    label: str
    variant: str | None = None
    sibling: str | None = None


REMEDIES: dict[str, Remedy] = {r.id: r for r in (
    Remedy("custom_objects", "pass the classes/functions as load_model(..., custom_objects={...})",
           variant="custom_objects"),
    Remedy("compile_false", "load_model(..., compile=False) and compile again yourself",
           variant="compile_false"),
    Remedy("unsafe", "safe_mode=False (only for files you made or trust)", variant="unsafe"),
    Remedy("tfsm", "read the SavedModel for inference only (keras.layers.TFSMLayer / "
                   "tf.saved_model.load)", variant="tfsm"),
    Remedy("signature", "call the SavedModel's serving signature with named inputs: "
                        "tf.saved_model.load(path).signatures['serving_default'](**inputs)", variant="signature"),
    Remedy("tf_keras", "load through tf_keras: pip install tf-keras, TF_USE_LEGACY_KERAS=1",
           sibling="tf_keras"),
    Remedy("pin_h5py2", "pin h5py<3", sibling="pin_h5py2"),
    Remedy("pin_jax", "pin jax to the Keras release's era (jax[cpu]==0.4.25, numpy<2)",
           sibling="pin_jax"),
)}


@dataclasses.dataclass(frozen=True)
class Rule:
    category: str
    title: str
    explanation: str
    pattern: str = ""  # regex over error_text(rec).text (re.S; case-sensitive: 6x faster)
    types: tuple[str, ...] = ()  # qualified exception type suffixes; empty = any
    outcomes: tuple[Outcome, ...] = (Outcome.LOAD_ERROR,)
    phases: tuple[str, ...] = ()  # record.phase values; empty = any
    when: Callable[[Record], bool] | None = None
    remedies: tuple[str, ...] = ()
    family: str = "version"  # custom_object | version | backend | safety | numeric | environment
    # The wording of this rule's cause in an innermost message: a failing record whose
    # innermost message matches it belongs to this category and no other
    # (tests/test_diagnose_published.py checks it over the whole published table). Empty
    # where the cause is told by versions or names, not by words (config keys added vs
    # removed, a custom vs a built-in class, a mismatch).
    defining: str = ""

    def matches(self, rec: Record, text: str) -> bool:
        if rec.outcome not in self.outcomes:
            return False
        if self.phases and rec.phase not in self.phases:
            return False
        etype = rec.error.type if rec.error else ""
        if self.types and not any(etype == t or etype.endswith("." + t) for t in self.types):
            return False
        if self.pattern and not _compiled(self.pattern).search(text):
            return False
        return self.when is None or self.when(rec)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.S)


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    category: str
    title: str
    explanation: str
    family: str
    remedies: tuple[Remedy, ...]


# ------------------------------------------------------------------------ predicates

def major_minor(version: str | None) -> tuple[int, int] | None:
    """``(3, 6)`` for "3.6.0" or "2.2.4-tf"; None when there is no version."""
    m = re.match(r"(\d+)\.(\d+)", str(version or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def _keras(env: Mapping[str, Any]) -> tuple[int, int] | None:
    return major_minor(env.get("keras"))


def _saver_newer(rec: Record) -> bool:
    s, lo = _keras(rec.saver_env), _keras(rec.env)
    return s is not None and lo is not None and s > lo


def _saver_older(rec: Record) -> bool:
    s, lo = _keras(rec.saver_env), _keras(rec.env)
    return s is not None and lo is not None and s < lo


def _same_major_saver_newer(rec: Record) -> bool:
    s, lo = _keras(rec.saver_env), _keras(rec.env)
    return s is not None and lo is not None and s[0] == lo[0] and s > lo


def _cross_major(rec: Record) -> bool:
    s, lo = _keras(rec.saver_env), _keras(rec.env)
    return s is not None and lo is not None and s[0] != lo[0]


def _keras3_forward(saver_from: tuple[int, int], loader_below: tuple[int, int]) -> Callable[[Record], bool]:
    """A forward break between Keras 3 minor releases: a file of Keras ``saver_from`` or newer
    failing in a Keras 3 release older than ``loader_below`` (and than the saver)."""
    def when(rec: Record) -> bool:
        s, lo = _keras(rec.saver_env), _keras(rec.env)
        return s is not None and lo is not None and s >= saver_from and (3, 0) <= lo < loader_below and lo < s
    return when


def _keras2_file_in_keras3(rec: Record) -> bool:
    s, lo = _keras(rec.saver_env), _keras(rec.env)
    return s is not None and lo is not None and s[0] == 2 and lo[0] == 3


def _diff_backend(rec: Record) -> bool:
    return bool(rec.saver_env.get("backend") and rec.env.get("backend")
                and rec.saver_env.get("backend") != rec.env.get("backend"))


def _keras2_file_in_keras3_tf(rec: Record) -> bool:
    """A Keras 2 file failing to load in a Keras 3 that runs on TensorFlow (tf_keras can exist)."""
    s, lo = _keras(rec.saver_env), _keras(rec.env)
    return (rec.record_type == "load" and s is not None and lo is not None and s[0] == 2
            and lo[0] >= 3 and bool(rec.env.get("tensorflow") or rec.env.get("backend") == "tensorflow"))


# Layers Keras added after TF 1.15 (MultiHeadAttention and EinsumDense: TF 2.4).
_NEWER_LAYERS = frozenset((
    "MultiHeadAttention", "EinsumDense", "Normalization", "StringLookup", "IntegerLookup",
    "TextVectorization", "Discretization", "CategoryEncoding", "Hashing", "Rescaling",
))

# Keras's own optimizer classes (a compile-config object, whatever module path the file names).
_OPTIMIZERS = ("Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "Adafactor", "Ftrl", "Lion", "Nadam",
               "SGD", "RMSprop")
_OPTIMIZER_RE = "|".join(_OPTIMIZERS)

# Class and function names Keras itself ships: "Could not locate class 'Functional'" is a
# version mismatch, "Could not locate class 'Affine'" an unknown custom object.
_BUILTIN = frozenset((
    "Sequential", "Functional", "Model", "InputLayer", "Dense", "Conv2D", "Conv2DTranspose",
    "DepthwiseConv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "BatchNormalization", "LayerNormalization", "Dropout", "Flatten", "Reshape",
    "Concatenate", "Add", "Multiply", "Embedding", "LSTM", "GRU", "SimpleRNN",
    "Bidirectional", "Activation", "Lambda", "TFOpLambda", "SlicingOpLambda",
    "GlorotUniform", "Zeros", "Ones", "Orthogonal", "HeNormal", "RandomNormal",
    # optimizers: Keras 2.11-2.15 register their own as "Custom>Adam", which TF <= 2.10 cannot
    # resolve ("Unknown optimizer: Custom>Adam" / "... Custom>Adam. Please ensure ...")
    *_OPTIMIZERS, "LossScaleOptimizer",
    "MeanSquaredError", "MeanMetricWrapper", "DTypePolicy", "FloatDTypePolicy", "QuantizedDTypePolicy",
    "Policy",
    "mse", "mae", "mean_squared_error", "mean_absolute_error", "categorical_crossentropy",
    "sparse_categorical_crossentropy", "binary_crossentropy", "accuracy",
    *_NEWER_LAYERS,
))

# The name ends on a word character: "Unknown optimizer: Custom>Adam. Please ensure ..."
# names Adam, not "Adam." (whose last dotted part would be empty, hence "custom").
_NAME_RE = re.compile(
    r"(?:Could not locate (?:class|function) |Unknown (?:layer|loss function|metric function|"
    r"metric|optimizer|activation function)s?:? ?|Could not deserialize class )"
    r"'?(?:[\w.]+>)?([\w.]*\w)'?")


def _unknown_names(text: str) -> set[str]:
    return {m.group(1).rsplit(".", 1)[-1] for m in _NAME_RE.finditer(text)}


def _custom_unknown(rec: Record) -> bool:
    text = _text(rec)
    if re.search(r"parent module compat_scenario_\w+ cannot be imported|Unable to restore custom object",
                 text):
        return True
    # Keras 2.13-2.15 keep an unknown layer as its class *name* and fail when calling it;
    # model_from_json returns the unknown model class's name instead of a model.
    if re.search(r"'str' object is not callable.*process_node|process_node.*'str' object is not "
                 r"callable|'str' object has no attribute 'load_weights'", text, re.S):
        return True
    # Keras 2.13+ and 3 resolve a function saved as {'module': 'builtins', 'class_name':
    # 'function', 'config': name} only through custom objects (built-in activations are
    # saved as plain strings)
    if re.search(r"(?:Could not interpret activation function identifier: |Unknown activation function ')"
                 r"\{'module': 'builtins', 'class_name': 'function'", text):
        return True
    names = _unknown_names(text)
    return bool(names - _BUILTIN)


def _newer_builtin_layer(rec: Record) -> bool:
    """A layer Keras added after the loader's release, named as unknown in a newer saver's file."""
    names = _unknown_names(_text(rec))
    if not names or not names <= _NEWER_LAYERS:
        return False
    # TF 2.3 and 2.4 both report Keras 2.4.0; only TF 2.4 has MultiHeadAttention
    s_tf, lo_tf = major_minor(rec.saver_env.get("tensorflow")), major_minor(rec.env.get("tensorflow"))
    return _saver_newer(rec) or (_keras(rec.saver_env) == _keras(rec.env) and s_tf is not None
                                 and lo_tf is not None and s_tf > lo_tf)


def _builtin_unknown(rec: Record) -> bool:
    names = _unknown_names(_text(rec))
    return bool(names) and names <= _BUILTIN


def _text(rec: Record) -> str:
    """What the rules read: :func:`error_text`'s ``text``."""
    return error_text(rec).text


# ------------------------------------------------------------------ the error's own text
#
# Keras wraps errors raised while it rebuilds a model, and each wrapper embeds the config it
# was rebuilding ("Error when deserializing class 'Dense' using config={...}.\n\nException
# encountered: <inner>", "<class 'Sequential'> could not be deserialized properly ...
# \n\nconfig={...}.\n\nException encountered: <inner>"); a .keras load arrives wrapped 4-5
# times, the outer dumps holding the whole model config, compile config included. A rule
# that reads those dumps matches what the file *contains* (steps_per_execution, a
# quantization_config key, a module path), not what went wrong. So rules read the innermost
# exception's own message with the dumps cut out, the wrappers' headers (which class was
# being rebuilt or called) and the traceback's frames (where it failed); never a dump.

@dataclasses.dataclass(frozen=True)
class ErrorText:
    """A failing record's text as the rules read it."""

    innermost: str  # the innermost exception's own message (or the record's reason), no dumps
    headers: str  # the wrappers' headers, one a line: "Error when deserializing class 'Dense'"
    frames: str  # the traceback's frame lines ("File ..., line N, in f" and the code line)
    reason: str  # the record's details["reason"] (a mismatch's or a check note's text)

    @property
    def text(self) -> str:
        """Headers, innermost message, frames, reason: what a rule's pattern searches."""
        return "\n".join((self.headers, self.innermost, self.frames, self.reason))


# Keras's deserialization wrappers put the inner exception last, after this marker (Keras
# 2.13-2.15 and 3); the innermost message is what follows the last one.
_ENCOUNTERED = "Exception encountered: "
# A layer-call wrapper: Keras 3 "Exception encountered when calling Dense.call().\n\n<inner>
# \n\nArguments received by Dense.call(): ...", Keras 2.13+ "... when calling layer 'x' (type
# Dense).\n\n<inner>\n\nCall arguments received by layer 'x' (type Dense): ..."
_CALL_HEAD_RE = re.compile(r"Exception encountered when calling [^\n]*")
_CALL_TAIL_RE = re.compile(r"\n\n(?:Call a|A)rguments received by ")
_HEADER_RE = re.compile(
    r"Error when deserializing class '[\w.]+'|<class '[\w.]+'> could not be deserialized properly|"
    r"Exception encountered when calling [^\n]*?(?:\.call\(\)|\(type \w+\))")
# Where an embedded config starts inside a message: the wrappers' "config={" / "using
# config={", Keras 3's "Full object config: {" after "Could not locate class 'X'.".
_DUMP_START_RE = re.compile(r"(?:using |\b)config=\{|Full object config: \{")
_FRAME_RE = re.compile(r'", line \d+, in [^\s]+$')
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_CUT = " ...[truncated]"  # the worker's mark at the end of a message it cut (runner/_worker/worker.py)
_TYPE_PREFIX_RE = re.compile(r"^[A-Za-z_][\w.]*: ")


def _skip_braces(text: str, start: int) -> int:
    """The index just past the brace-balanced ``{...}`` at ``text[start]`` (or len(text) when
    it is cut off). Braces inside quoted strings are not counted."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _drop_dumps(text: str, *, cut_start: bool = False) -> str:
    """``text`` with each config embedded in it replaced by ``{…}`` (one cut off by a
    truncation runs to the end). ``cut_start``: the text is a tail that may begin inside a
    dump; drop everything up to the dump's last unmatched closing brace."""
    if cut_start:  # cut after the deepest unmatched closing brace: where the dump ends
        depth, low, cut = 0, 0, -1
        for i, ch in enumerate(text):
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth < low:
                    low, cut = depth, i
        if cut >= 0:
            text = "{…}" + text[cut + 1:]
    out, pos = [], 0
    while (m := _DUMP_START_RE.search(text, pos)) is not None:
        brace = m.end() - 1
        out.append(text[pos:brace] + "{…}")
        pos = _skip_braces(text, brace)
    out.append(text[pos:])
    return "".join(out)


def _join(head: str, tail: str) -> str:
    """One message from its head and its tail (overlapping, identical, or with a gap)."""
    head, tail = head.strip(), tail.strip()
    if not tail or tail in head:
        return head
    if not head or head in tail:
        return tail
    at = head.find(tail[:60])
    if at >= 0 and tail.startswith(head[at:]):
        return head[:at] + tail
    return f"{head}\n…\n{tail}"


def _unwrap_calls(text: str) -> str:
    """The message inside layer-call wrappers (each removed, innermost kept)."""
    while (m := _CALL_HEAD_RE.match(text.lstrip())) is not None:
        body = text.lstrip()[m.end():]
        tail = _CALL_TAIL_RE.search(body)
        inner = (body[:tail.start()] if tail else body).strip()
        if not inner:
            break
        text = inner
    return text


def _split_traceback(tb: str) -> tuple[str, str]:
    """``(frames, final)``: the frame lines (each with its code line) and the text after the
    last frame, i.e. the raised exception's "Type: message" (or, in a tail cut inside that
    message, the part of it the tail holds)."""
    lines = tb.splitlines()
    frames: list[str] = []
    last = -1
    i = 0
    while i < len(lines):
        if _FRAME_RE.search(lines[i]):
            frames.append(lines[i].strip())
            last = i
            # the code line, then caret/tilde marker lines (Python >= 3.11)
            j = i + 1
            while j < len(lines) and lines[j].startswith("    ") and not _FRAME_RE.search(lines[j]):
                if lines[j].strip().strip("^~ "):
                    frames.append(lines[j].strip())
                last = j
                j += 1
            i = j
            continue
        i += 1
    final = "\n".join(lines[last + 1:]).strip()
    if last >= 0:
        final = _TYPE_PREFIX_RE.sub("", final, count=1)
    return "\n".join(frames), final


@functools.lru_cache(maxsize=8192)
def _error_text(message: str, traceback: str, reason: str) -> ErrorText:
    message = _ANSI_RE.sub("", message)
    frames, final = _split_traceback(_ANSI_RE.sub("", traceback))
    headers = dict.fromkeys(m.group(0) for src in (message, final) for m in _HEADER_RE.finditer(src))
    # The innermost message ends the outermost one. The record keeps the message's head
    # (2048 characters; the published table 600) and the traceback's tail (8000; the table
    # 800), which ends with the raised exception's text. After the last marker in the tail
    # is the innermost message; a tail without a marker lies inside the innermost message,
    # which then starts after the head's last marker (unless the head ends inside a wrapper)
    # or, unwrapped, with the head itself.
    message = message.removesuffix(_CUT)
    cut = next((k for k in range(len(_ENCOUNTERED) - 1, 3, -1) if final.startswith(_ENCOUNTERED[-k:])), 0)
    if _ENCOUNTERED in final:
        inner = _drop_dumps(final.rsplit(_ENCOUNTERED, 1)[1])
    elif cut and (_ENCOUNTERED in message or _HEADER_RE.match(message)):
        inner = _drop_dumps(final[cut:])  # the tail begins inside the last marker ("untered: ...")
    else:
        wrapped = _ENCOUNTERED in message
        head = message.rsplit(_ENCOUNTERED, 1)[1] if wrapped else message
        if wrapped and _HEADER_RE.match(head):
            head = ""
        inner = _join(_drop_dumps(_unwrap_calls(head)), _drop_dumps(final, cut_start=True))
    inner = _unwrap_calls(inner).strip()
    return ErrorText(inner, "\n".join(headers), frames, reason)


def error_text(rec: Record) -> ErrorText:
    """The record's error as the rules read it: the innermost exception's own message (a
    mismatch's reason when there is no exception), wrapper headers and traceback frames,
    with every embedded config dump cut out."""
    reason = str(rec.details.get("reason") or "")
    if rec.error is None:
        return _error_text(reason, "", "")
    return _error_text(rec.error.message, rec.error.traceback, reason)


def _held_at_full_limit(rec: Record) -> bool:
    from runner.cells import held_at_full_limit  # the one cache rule's; imported when needed

    return held_at_full_limit(rec)


# A resumed training step's verdict: ``training_mismatch`` since record schema 3 (a results
# table of schema <= 3 calls it ``mismatch``); the rules reading its reason accept both.
_RESUMED = (Outcome.TRAINING_MISMATCH, Outcome.MISMATCH)

# The innermost wordings of the causes below (their rules' ``defining`` phrases).
_QUANTIZATION_CONFIG = r"Unrecognized keyword arguments? passed to \w+: \{[^}]*'quantization_config'"
_INITIALIZER_AXES = r"\w+\.__init__\(\) got an unexpected keyword argument '(?:input|output)_axes'"
_FUNCTIONAL_GET_TENSOR = (r"get_tensor\(\) (?:missing 2 required positional arguments: 'node_index' and "
                          r"'tensor_index'|takes 3 positional arguments but \d+ were given)")
_BN_AXIS_LIST = r"int\(\) argument must be a string, a bytes-like object or a real number, not 'list'"
_COMPILE_CONFIG = (
    r"is not a valid argument, kwargs should be empty|Could not locate function '(?:mse|mae|"
    r"mean_squared_error|mean_absolute_error|accuracy|categorical_crossentropy)'|"
    r"Could not deserialize 'keras\.(?:metrics|losses)\.|Invalid value for argument `reduction`\. "
    rf"Expected one of .{{0,200}}Received: reduction=auto|Could not deserialize class '(?:{_OPTIMIZER_RE})' "
    r"because its parent module|"
    rf"Unknown optimizer: '?(?:Custom>)?(?:{_OPTIMIZER_RE})'?(?![\w>])")
# Keras 2's recurrent-layer argument Keras 3 removed (keras-team/keras#20750).
_RNN_TIME_MAJOR = r"Unrecognized keyword arguments? passed to \w+: \{[^}]*'time_major'"
# The worker's finding for a .keras file whose neighbour model.weights.h5 the load removed
# or rewrote (Keras 3.4.0/3.4.1, keras-team/keras#19921).
_WEIGHTS_BESIDE_DELETED = r"load_model\('[^']+'\) (?:deleted|overwrote) model\.weights\.h5, the weights file beside it"
_LEGACY_OPTIMIZER_CHECKPOINT = r"restore a checkpoint from a legacy (?:TF-)?Keras optimizer into a v2\.11\+ Optimizer"
_OPTIMIZER_NOT_TRACKABLE = r"`Checkpoint` was expecting optimizer to be a trackable object"
_CHECKPOINT_SHAPES = r"Received incompatible tensor with shape \S+ when attempting to restore variable"
# A Keras 3 Sequential rebuild feeding a nested Functional model's output twice
# (keras-team/keras#19959): the Keras >= 3.4 wording, and the older one of tensorflow#63853.
_SEQUENTIAL_TWO_INPUTS = (r"Layer [\"'][\w/]+[\"'] (?:expects 1 input\(s\), but it received 2 input tensors|"
                          r"expected 1 input\(s\)\. Received 2 instead)")
# A policy class unknown to the loader, or a policy it cannot parse (Keras 2 "Policy" in Keras 3.0;
# any Keras 3 DTypePolicy class name a release lacks).
_DTYPE_POLICY = (r"Could not locate class '(?:\w*DTypePolicy\w*|Policy)'|Unknown dtype policy|"
                 r"Cannot convert .{0,200} to a DTypePolicy|is not a valid dtype policy")
_MODEL_MODULE_PATH = r"Could not deserialize class '(?:Functional|Sequential|Model)' because its parent module"
_TRAINING_RESUME = (r"This optimizer can only be called for the variables it was originally built with|"
                    r"`optimizer_variables` must be a list of tensors corresponding 1:1|"
                    r"numpy\(\) is only available when eager execution is enabled|"
                    r"Connecting to invalid output \d+ of source node")

# "Unknown activation function: 'function'" (Keras >= 2.11), "...: function" (Keras 2.4-2.10) or
# "Unknown activation: function" (TF 1.15-2.3; measured):
# an object looked up by the literal name "function", which no custom_objects can supply.
_FUNCTION_UNREADABLE = (r"Unknown (?:activation function|activation|loss function|metric function|function|object): ?"
                        r"'?function'?(?![\w'])")

# TFSMLayer.call() handing a multi-input signature its inputs by position: too many positional
# arguments (TF <= 2.18, any saver; TF >= 2.19, Keras 2 savers), or the inputs bound as one
# list and a named input missing (a TF 1.15 export in TF >= 2.19). The second spelling is this
# cause only inside TFSMLayer.call(); elsewhere a missing argument is another call's failure.
_TFSM_POSITIONAL = (r"Binding inputs to tf\.function failed due to `too many positional arguments`|"
                    r"calling TFSMLayer\.call\(\)[\s\S]{0,40}Binding inputs to tf\.function failed due to "
                    r"`missing a required argument")

RULES: tuple[Rule, ...] = (
    # ------------------------------------------------------------ environment
    Rule("env_unavailable", "The stack could not be built or imported",
         "The environment for this release could not be installed or its framework failed to "
         "import on this machine (no wheel for the Python/platform, a dependency conflict, or an "
         "import-time error), so nothing could be saved or loaded here.",
         outcomes=(Outcome.ENV_UNAVAILABLE,), family="environment"),
    Rule("h5py3_str_decode", "Old Keras reading HDF5 with h5py 3",
         "TF 1.x and early TF 2 call .decode() on HDF5 attributes, but h5py 3 already returns "
         "str. Every HDF5 load fails with 'str' object has no attribute 'decode' whenever pip "
         "resolves h5py>=3: tensorflow-cpu 1.15.0 leaves h5py unpinned (1.15.5 and TF 2.2-2.4 "
         "pin h5py 2.10, measured in this catalog). Pin h5py<3 in that environment.",
         r"'str' object has no attribute 'decode'", ("AttributeError",),
         remedies=("pin_h5py2",), family="environment",
         defining=r"'str' object has no attribute 'decode'"),
    Rule("numpy_too_new", "TensorFlow older than its numpy",
         "This TensorFlow was built against an older numpy: with numpy >= 1.20 TF <= 2.4 "
         "cannot convert symbolic tensors in RNN layers (NotImplementedError: Cannot convert a "
         "symbolic Tensor). Pin numpy<1.20 for this release.",
         r"Cannot convert a symbolic Tensor", ("NotImplementedError",),
         outcomes=(Outcome.LOAD_ERROR, Outcome.SAVE_ERROR), family="environment",
         defining=r"Cannot convert a symbolic Tensor"),
    Rule("dependency_api_removed", "A dependency removed an API this release uses",
         "The framework calls a function its dependency no longer has (module 'jax' has no "
         "attribute 'spmd_mode', numpy's np.object/np.bool aliases, ...): the stack resolved a "
         "newer jax/numpy/h5py than this Keras/TF release was built for. Pin the dependency to "
         "a version from the release's era.",
         r"module '(?:jax|jaxlib|numpy|h5py|torch|ml_dtypes|google\.protobuf)[\w.]*' has no attribute",
         outcomes=(Outcome.LOAD_ERROR, Outcome.SAVE_ERROR, *_RESUMED), remedies=("pin_jax",),
         family="environment",
         defining=r"module '(?:jax|jaxlib|numpy|h5py|torch|ml_dtypes|google\.protobuf)[\w.]*' has no attribute"),
    # ------------------------------------------------------------ safety
    Rule("safe_mode_lambda", "Safe mode refuses a Python lambda",
         "The file contains a Lambda layer whose function is Python bytecode. Keras >= 2.13 "
         "and Keras 3 refuse to deserialize it by default because loading it can execute "
         "arbitrary code. If you made the file or trust it, load with safe_mode=False (or "
         "keras.config.enable_unsafe_deserialization()); better, replace the lambda with a "
         "registered custom layer.",
         r"Lambda.{0,40}(?:is a Python lambda|whose .function. is a Python lambda)|"
         r"Deserializing it is unsafe|arbitrary code execution",
         remedies=("unsafe",), family="safety",
         defining=(r"Lambda.{0,40}(?:is a Python lambda|"
                   r"whose .function. is a Python lambda)|Deserializing it is unsafe")),
    Rule("refused_unsafe", "Refused: the file would run its own Python code",
         "The check worker read the file's stored config before loading and found code the "
         "file carries (a Lambda's marshalled bytecode, or a function imported from a module "
         "outside Keras/TF). This stack has no safe mode that would refuse it (Keras <= 2.12, "
         "TF 1, any Keras 2 HDF5), so loading would run it. If you made the file or trust it, "
         "check again with --unsafe (with Docker, inside the sandbox only).",
         r"refused before loading", ("runner.refused_unsafe",), remedies=(), family="safety",
         defining=r"refused before loading"),
    Rule("lambda_bytecode", "Lambda bytecode from another Python version",
         "A Lambda layer stores its function as marshalled Python bytecode, which only the "
         "Python version that wrote it can read. Loading it under a different Python fails with "
         "a marshal/code-object error (or worse, silently misbehaves). Rebuild the Lambda in code "
         "(or make it a registered custom layer) and load the weights only.",
         r"bad marshal data|EOF read where object expected|codeobject\.c|unknown opcode|"
         r"code\(\) argument|code expected at most|marshal data too short|"
         r"bad argument to internal function",
         outcomes=(Outcome.LOAD_ERROR, Outcome.CRASH), family="version",
         defining=r"bad marshal data|EOF read where object expected|unknown opcode|marshal data too short"),
    # ------------------------------------------------------------ custom objects
    Rule("function_config_unreadable", "A function serialized as {'class_name': 'function'}",
         "Keras 2.13-2.15 (and tf_keras) write a plain function (a custom activation, loss or metric) as "
         "{'class_name': 'function', 'config': '<name>'}, and readers of the older layout (their "
         "own HDF5 loader, Keras <= 2.12) look up an object literally named 'function': the load "
         "fails with \"Unknown activation function: 'function'\" (Keras 2.4-2.10 print it without "
         "the quotes, TF 1.15-2.3 as \"Unknown activation: function\") even when the function is "
         "passed in custom_objects, which is why passing them is not offered (keras-team/keras#20833). Save "
         "the model as .keras (Keras >= 2.13 reads it with custom_objects), load it with the "
         "saver's release, or wrap the function in a registered custom layer.",
         _FUNCTION_UNREADABLE, family="version", defining=_FUNCTION_UNREADABLE),
    Rule("legacy_h5_custom_function", "Keras 3's HDF5 reader fails on a given custom function",
         "Keras 3's legacy HDF5 reader, given a custom activation function in custom_objects for "
         "a Keras 2 file that names it, puts the function object into a config it then writes as "
         "JSON and fails (\"Object of type function is not JSON serializable\"; measured: Keras "
         "3.3 reading a TF 1.15 file). The file itself is fine: load it with a Keras 2 release, "
         "or rebuild the model in code and load only the weights.",
         r"Object of type function is not JSON serializable",
         when=lambda rec: rec.record_type == "load" and (
             (rec.format == "h5" and (_keras(rec.env) or (0, 0))[0] >= 3) or "legacy_h5_format" in _text(rec)),
         family="version"),
    Rule("builtin_layer_newer", "A built-in layer the loader's release does not have yet",
         "The file uses a layer Keras added after the loader's release: MultiHeadAttention "
         "exists from TF 2.4, Normalization and the other preprocessing layers not at all in "
         "TF 1.15. The loader reports it as an unknown layer, as if it were a custom class, but "
         "passing custom objects cannot help. Load with a release that has the layer.",
         r"Unknown layer|Could not locate class", when=_newer_builtin_layer, family="version"),
    Rule("custom_object_unknown", "Custom class or function unknown to the loader",
         "The model uses a layer, loss or metric that is not part of Keras. The loading process "
         "must know its class: import the module that defines (and registers) it, or pass it as "
         "custom_objects={'Name': Class}. Registration with @register_keras_serializable only "
         "helps if the registering module is imported before load_model().",
         r"Unknown (?:layer|loss function|metric|metric function|optimizer|activation function)|Could not locate "
         r"(?:class|function)|Could not deserialize class|Unable to restore custom object|"
         r"'str' object is not callable|'str' object has no attribute 'load_weights'|"
         r"(?:Could not interpret activation function identifier: |Unknown activation function ')"
         r"\{'module': 'builtins', 'class_name': 'function'",
         when=_custom_unknown, remedies=("custom_objects", "compile_false"),
         family="custom_object",
         defining=r"Unable to restore custom object"),
    # ------------------------------------------------------------ format readability
    Rule("keras3_rejects_savedmodel", "Keras 3 cannot load a Keras 2 SavedModel",
         "Keras 3's load_model() only reads .keras zips and legacy .h5 files. A TF SavedModel "
         "written by Keras 2 (model.save(dir) / save_format='tf') can only be used for inference "
         "(keras.layers.TFSMLayer or tf.saved_model.load), or loaded as a full model through "
         "tf_keras (TF_USE_LEGACY_KERAS=1).",
         r"File format not supported: filepath=.*?Keras 3 only supports", ("ValueError",),
         remedies=("tfsm", "tf_keras"), family="version",
         defining=r"File format not supported: filepath=.*?Keras 3 only supports"),
    Rule("keras_zip_not_understood", "The loader predates the .keras zip format",
         "The .keras (Keras v3 zip) format appeared in Keras 2.12 / TF 2.12. Older releases "
         "take a path that is not .h5 for a SavedModel directory and fail with 'SavedModel file "
         "does not exist' or 'No model found in config file'; TF 2.8-2.11 open any single file "
         "as HDF5 and h5py finds no HDF5 signature in the zip. Save as .h5 for older readers.",
         r"SavedModel file does not exist at: .*\.keras|No model found in config file|"
         r"Unable to (?:synchronously )?open file \(file signature not found\)|"
         r"No model config found in the file at (?:<tensorflow\.python\.platform\.gfile|\S*\.keras)",
         when=lambda rec: rec.format in ("keras", "keras+weights"), family="version"),
    Rule("hdf5_named_keras", "HDF5 written under a .keras name",
         "Releases before TF 2.12 write HDF5 when given a .keras file name; Keras 3 checks "
         "the content, finds no zip archive and reports 'File not found ... accessible .keras "
         "zip file'. Rename the file to .h5 and load it as HDF5.",
         r"Please ensure the file is an accessible `\.keras` zip file|is not a zip file",
         family="version",
         defining=r"Please ensure the file is an accessible `\.keras` zip file"),
    Rule("op_not_registered", "SavedModel needs ops this TensorFlow does not have",
         "The SavedModel graph was written by a newer TensorFlow and uses ops or op attributes "
         "(DisableCopyOnRead, debug_name, exponential_avg_factor, ...) that this older TF does "
         "not register, or an op configuration it has no kernel for (newer TF's "
         "LayerNormalization runs FusedBatchNorm in NCHW layout, which TF 1.15's CPU kernel "
         "refuses). SavedModels are forward compatible only; re-export with the older "
         "release (or load the weights into a model built in code).",
         r"Op type not registered|NodeDef mentions attr .* not in Op|"
         r"CPU implementation of FusedBatchNorm only supports NHWC", family="version",
         defining=(r"Op type not registered|"
                   r"NodeDef mentions attr .* not in Op|CPU implementation of FusedBatchNorm only supports NHWC")),
    Rule("savedmodel_tags", "SavedModel with several MetaGraphs needs tags",
         "The SavedModel holds more than one MetaGraph (TF 1 exports write train/eval/serve). "
         "tf.saved_model.load() then needs tags=['serve'].",
         r"requires a [`']tags=[`'] argument", family="version",
         defining=r"requires a [`']tags=[`'] argument"),
    Rule("savedmodel_internal", "SavedModel object graph not understood by this release",
         "The SavedModel's object graph (trackable names, restored functions, keras metadata) "
         "was written by a different Keras/TF and this release cannot rebuild it. Load the "
         "SavedModel for inference only or load through the release that wrote it. A Keras 2 "
         "SavedModel with optimizer state fails even tf.saved_model.load() in TF >= 2.16 with "
         "Keras 3 ('_UserObject' object has no attribute 'add_slot': no Keras 2 optimizer class "
         "is registered to restore its slots); load it with tf_keras (TF_USE_LEGACY_KERAS=1).",
         r"_track_trackable|Could not find matching function to call loaded from the SavedModel|"
         r"Unable to restore object of class|restored function|_layer_call_argspecs\[|"
         r"'_UserObject' object has no attribute 'add_slot'|"
         r"'(?:Functional|Sequential|Model)' object has no attribute 'predict'|"
         # TF <= 2.5 Sequential.add() given an object a SavedModel loader restored (a Keras or
         # tf.keras model there is mixing the two APIs: keras-team/keras#13773, #11848) ...
         r"The added layer must be an instance of class Layer\. Found: <[\w.]*saved_model\.[\w.]+|"
         # ... and in any wording, the repr of an object TF could restore only as a plain
         # _UserObject (not the frame "in _recreate_base_user_object": every load passes it)
         r"_recreate_base_user_object\.<locals>\._UserObject",
         family="version", remedies=("tfsm",),
         defining=(r"'_UserObject' object has no attribute 'add_slot'|"
                   r"Could not find matching function to call loaded from the SavedModel")),
    Rule("savedmodel_metadata_moved", "SavedModel Keras metadata in a file this release does not read",
         "TF >= 2.6 writes a Keras SavedModel's layer and model metadata only to "
         "keras_metadata.pb and leaves the object graph's metadata fields empty; TF 1.15-2.5 "
         "parse an empty field as JSON and fail with 'Expecting value: line 1 column 1'. Load "
         "it with TF >= 2.6, or read it for inference only with tf.saved_model.load and the "
         "serving signature.",
         r"Expecting value: line 1 column 1 \(char 0\).*saved_model(?:/json_utils\.py\", line \d+, in decode\b|"
         r".*in (?:_load_layer|_recreate_base_user_object|_reconstruct_model)\b)", family="version",
         remedies=("tfsm",)),
    # ------------------------------------------------------------ Keras 3 minor-to-minor forward breaks
    # A newer Keras 3 writes a config an older Keras 3 cannot rebuild. The versions are the
    # catalog's (3.0.5, 3.3.3, 3.4.1, 3.6.0, 3.9.0, 3.11.2, 3.13.2, 3.15.1): a span's open end
    # lies between the last release measured without the break and the first measured with it.
    Rule("keras3_quantization_config", "A newer Keras 3 layer config (quantization_config) in an older Keras 3",
         "Newer Keras 3 releases write a quantization_config entry into the config of their Dense "
         "and Embedding layers (None for a layer that is not quantized; measured: the files of "
         "Keras 3.13.2 and 3.15.1 carry it, those of 3.11.2 do not, 3.12 is not in the catalog). "
         "Keras 3.0-3.11 refuse any layer argument they "
         "do not know (\"Unrecognized keyword arguments passed to Dense: {'quantization_config': "
         "None}\"), so the model cannot be rebuilt there from any format that stores its config "
         "(.keras, .h5, json); load_model(compile=False) does not help, the layer itself fails. "
         "Load with Keras >= 3.13, or build the model in code with the older Keras and load only "
         "the weights (model.load_weights).",
         _QUANTIZATION_CONFIG, when=_keras3_forward((3, 12), (3, 13)), defining=_QUANTIZATION_CONFIG),
    Rule("keras3_initializer_axes", "A Keras 3.15 initializer config (input_axes) in an older Keras 3",
         "Keras 3.15 writes two new arguments, input_axes and output_axes (None unless set), into "
         "the config of its variance-scaling initializers (GlorotUniform, HeNormal, ...). Keras "
         "3.0-3.13 (measured; 3.14 is not in the catalog) refuse them (\"GlorotUniform.__init__() "
         "got an unexpected keyword argument 'input_axes'\"), so a model whose layers use such an "
         "initializer (the default kernel initializer of Dense and Conv layers) cannot be rebuilt "
         "there from any format that stores its config; compile=False does not help. Load with "
         "Keras >= 3.15, or build the model in code with the older Keras and load only the weights.",
         _INITIALIZER_AXES, when=_keras3_forward((3, 14), (3, 15)), defining=_INITIALIZER_AXES),
    Rule("keras3_functional_layout", "A newer Keras 3 Functional config in Keras 3.0-3.3",
         "Newer Keras 3 releases (measured: the files of 3.11.2 and 3.13.2; those of 3.4.1-3.9.0 "
         "load) write a Functional model's input_layers/output_layers references in a layout the "
         "Functional reader of Keras 3.0-3.3 does not parse: it unpacks a reference the wrong way "
         "into an internal get_tensor() (\"functional_from_config.<locals>.get_tensor() missing 2 "
         "required positional arguments: 'node_index' and 'tensor_index'\", or \"takes 3 "
         "positional arguments but 8 were given\"). Keras 3.4 and later read it. Load with Keras "
         ">= 3.4, or build the model in code and load only the weights; compile=False does not help.",
         _FUNCTIONAL_GET_TENSOR, when=_keras3_forward((3, 10), (3, 4)), defining=_FUNCTIONAL_GET_TENSOR),
    # ------------------------------------------------------------ compile state
    Rule("keras3_batch_input_shape", "Keras 3 refuses batch_input_shape in a layer config",
         "Keras 2 stores an input shape as batch_input_shape inside a layer's own config: the "
         "first layer of Sequential([Dense(..., input_shape=(n,)), ...]), an Embedding, and (before "
         "Keras 3.4) the InputLayer. Keras 3 layers refuse the key (\"Unrecognized keyword "
         "arguments passed to Dense: {'batch_input_shape': ...}\", keras-team/keras#20106). Load "
         "the file through tf_keras "
         "(TF_USE_LEGACY_KERAS=1) where TensorFlow is installed; elsewhere rebuild the model in "
         "code with keras.Input(shape=...) first and load only the weights.",
         r"Unrecognized keyword arguments? passed to \w+: \{[^}]*'batch_input_shape'",
         outcomes=(Outcome.LOAD_ERROR,), remedies=("tf_keras",), family="version",
         defining=r"Unrecognized keyword arguments? passed to \w+: \{[^}]*'batch_input_shape'"),
    Rule("tfsm_positional_inputs", "TFSMLayer passes a multi-input signature's inputs by position",
         "Keras 3 reads a TF SavedModel (a Keras 2 model.save SavedModel, or an export) through "
         "keras.layers.TFSMLayer, as its error message and docs say; TFSMLayer hands its inputs to the "
         "serving signature positionally, and the serving_default signature of a model with several inputs "
         "takes them by name only (\"Binding inputs to tf.function failed due to `too many positional "
         "arguments`\", keras-team/keras#20813; measured: a TF 2.15 two-input model, exported or saved as a "
         "SavedModel, in Keras 3.13 on TF 2.21). A TF 1.15 export read by TF >= 2.19 fails on the same call "
         "the other way round: its inputs arrive as one positional list and the first named input is "
         "missing (\"failed due to `missing a required argument: 'features'`\"). Load the SavedModel with "
         "tf.saved_model.load and call signatures['serving_default'] with the inputs by name.",
         _TFSM_POSITIONAL, types=("TypeError",), remedies=("signature",), family="version",
         defining=_TFSM_POSITIONAL),
    Rule("keras_deletes_weights_beside", "load_model deleted the model.weights.h5 beside the .keras file",
         "Keras 3.4.0 and 3.4.1 load a .keras archive by extracting its own model.weights.h5 into the "
         "folder of the .keras file and deleting it afterwards: a user's weights file of that name in the "
         "same folder is overwritten, then gone (\"No such file or directory: 'model.weights.h5'\", "
         "keras-team/keras#19921, fixed by keras-team/keras#19924; measured: Keras 3.4.1 deletes it, for "
         "the files of every saver it reads). The model itself loads; the file beside it does not survive "
         "the load. Keep the .keras file in a folder of its own (or name the weights file otherwise), or "
         "load with a Keras release before 3.4 or from 3.5 on. No load option avoids it.",
         _WEIGHTS_BESIDE_DELETED, types=("RuntimeError",), family="version", defining=_WEIGHTS_BESIDE_DELETED),
    Rule("legacy_optimizer_checkpoint", "A TF checkpoint of a legacy optimizer in TF >= 2.11",
         "The checkpoint holds the state of a Keras optimizer from before TensorFlow 2.11 (now "
         "tf.keras.optimizers.legacy); the TF 2.11+ optimizers refuse to restore it (\"You are trying to "
         "restore a checkpoint from a legacy Keras optimizer into a v2.11+ Optimizer\"; keras-team/keras-io"
         "#1426). The weights are fine: compile the model with the legacy optimizer class "
         "(tf.keras.optimizers.legacy.Adam) before load_weights, or load with TF <= 2.10 and save again.",
         _LEGACY_OPTIMIZER_CHECKPOINT, family="version", defining=_LEGACY_OPTIMIZER_CHECKPOINT),
    Rule("optimizer_not_trackable", "tf.train.Checkpoint refuses this Keras 3 optimizer",
         "tf.train.Checkpoint takes TensorFlow trackable objects only; the optimizers of Keras 3.0 on "
         "TensorFlow are not (\"`Checkpoint` was expecting optimizer to be a trackable object\"), so a TF "
         "checkpoint with the optimizer's state can be neither written nor read there (measured: Keras "
         "3.0.5, the Keras of TF 2.16, refuses both; 3.4.1 and later write and read it). Checkpoint the model alone "
         "(tf.train.Checkpoint(model=...)) and lose the optimizer's state, or save .keras / .weights.h5.",
         _OPTIMIZER_NOT_TRACKABLE, outcomes=(Outcome.LOAD_ERROR, Outcome.SAVE_ERROR), family="version",
         defining=_OPTIMIZER_NOT_TRACKABLE),
    Rule("tf_checkpoint_keras2_layout", "A Keras 2 TF checkpoint read into a Keras 3 model",
         "A TF checkpoint matches variables by the object graph that wrote it; Keras 2's (model.save_weights "
         "without .h5) and Keras 3's (tf.train.Checkpoint(model=, optimizer=)) differ, so the restore pairs "
         "variables of different shapes and stops (\"Received incompatible tensor with shape ... when "
         "attempting to restore variable\"). Keras 3's own load_weights reads no TF checkpoint at all. Read "
         "it through tf_keras (TF_USE_LEGACY_KERAS=1) and save it again as .weights.h5.",
         _CHECKPOINT_SHAPES, when=lambda rec: rec.format == "tf_checkpoint", remedies=("tf_keras",),
         family="version"),
    Rule("keras3_rnn_time_major", "Keras 3 refuses time_major in a Keras 2 recurrent layer",
         "Keras 2 (TF 2.x tf.keras, tf_keras) writes time_major (False unless set) into the config of "
         "its LSTM and GRU layers; Keras 3 removed the argument and refuses any constructor argument it "
         "does not know (\"Unrecognized keyword arguments passed to GRU: {'time_major': False}\", "
         "keras-team/keras#20750; measured: TF 2.13-2.15 and tf_keras 2.21 .h5 and .keras files in Keras "
         "3.4-3.15, where Keras 3.0-3.3 stop earlier at the Orthogonal initializer), so the model cannot "
         "be rebuilt and compile=False does not help. Load the file through tf_keras "
         "(TF_USE_LEGACY_KERAS=1) where TensorFlow is installed; for an .h5 file, passing "
         "custom_objects={'GRU': a GRU subclass whose __init__ drops time_major} (the same for LSTM) "
         "also works, while Keras 3's .keras reader keeps its built-in class and fails again; or "
         "rebuild the model in code and load only the weights.",
         _RNN_TIME_MAJOR, remedies=("custom_objects", "tf_keras"), family="version",
         defining=_RNN_TIME_MAJOR),
    Rule("functional_in_sequential", "A Sequential holding a Functional model not rebuilt by this Keras 3",
         "The file is a Sequential model with a Functional model among its layers (model.add(base_model): "
         "a transfer-learning head on a keras.applications base). Some Keras 3 releases rebuild it with the "
         "nested model's output reaching the next layer twice (\"Layer 'dense' expects 1 input(s), but it "
         "received 2 input tensors\"; keras-team/keras#19959, tensorflow/tensorflow#63853). Measured: "
         "Keras 3.4.1 fails so on Keras 2 .h5 files, on the files of Keras 3.3.3-3.6.0 and on its own; "
         "Keras 3.13.2 and 3.15.1 on Keras 2 .h5 files and the files of Keras 3.3.3-3.6.0 (3.6.0: .keras "
         "measured), while they read their own; Keras 3.3.3 and 3.5.0 read all of these, 3.6.0 the .keras "
         "ones. A Sequential nested in a Sequential alone loads. The file is fine and compile=False does "
         "not help: load it with a release that reads it (the saver's, or 3.5/3.6 for an older file; a "
         "Keras 2 file through tf_keras, TF_USE_LEGACY_KERAS=1), or rebuild the model in code and load "
         "only the weights.",
         _SEQUENTIAL_TWO_INPUTS, when=lambda rec: (_keras(rec.env) or (0, 0))[0] >= 3, family="version",
         defining=_SEQUENTIAL_TWO_INPUTS),
    Rule("batchnorm_axis_list", "BatchNormalization axis saved as a list by Keras 2",
         "Keras 2.13-2.15 and tf_keras write a BatchNormalization layer's axis into a .keras file "
         "as a list ('axis': [3]). Every Keras 3 release (measured: 3.0.5 to 3.15.1) converts it "
         "with int() and fails (\"int() argument must be a string, a bytes-like object or a real "
         "number, not 'list'\"), so the model cannot be rebuilt; compile=False does not help. Load "
         "the file through tf_keras (TF_USE_LEGACY_KERAS=1) where TensorFlow is installed, or "
         "rebuild the model in code with Keras 3 and load only the weights.",
         _BN_AXIS_LIST, when=_keras2_file_in_keras3, remedies=("tf_keras",), family="version",
         defining=_BN_AXIS_LIST),
    Rule("compile_config", "Training config (loss/metrics/optimizer) not restored",
         "The architecture and weights are fine but the saved training configuration (loss, "
         "metrics, optimizer, steps_per_execution) cannot be rebuilt by this release: built-in "
         "loss/metric names, metric classes, a loss's reduction ('auto' is Keras 2's), optimizer "
         "arguments and an optimizer's module path (a Keras 3 backend's own optimizer class, Keras "
         "2's keras.optimizers.experimental) changed between releases. "
         "load_model(compile=False) loads the model for inference; compile it again to train.",
         # where it failed (frames), the object being rebuilt (a wrapper's header), or the
         # innermost message naming a training-config object
         r"compile_args_from_training_config|_resolve_compile_arguments_compat|compile_from_config|"
         r"reduction_metrics\.py|steps_per_execution|base_optimizer\.py.*Argument\(s\) not recognized|"
         r"Argument\(s\) not recognized.*base_optimizer\.py|optimizer_v2.*from_config|"
         r"<class 'keras\.src\.(?:losses|metrics|optimizers)\.[\w.]+'> could not be deserialized properly|"
         r"Invalid value for argument `reduction`|" + _COMPILE_CONFIG + "|"
         # reached only for a built-in optimizer: custom_object_unknown takes the others
         r"Unknown optimizer",
         remedies=("compile_false",), family="version", defining=_COMPILE_CONFIG),
    Rule("tf1_predict_uncompiled", "TF 1 predict() needs a compiled SavedModel",
         "TF 1.x Keras runs predict() through the training-input machinery, which reads "
         "model.loss: a SavedModel loaded with compile=False has none and predict() raises "
         "AttributeError. In TF 1.x load it compiled (pass the custom loss/metric as "
         "custom_objects), or compile it yourself before predicting.",
         r"object has no attribute 'loss'.*_compile_from_inputs", ("AttributeError",),
         family="version"),
    # ------------------------------------------------------------ config changes
    # (before the generic config rules: a wrapper "Error when deserializing class 'StringLookup'"
    # around this message is no config key added or removed)
    Rule("backend_needs_tensorflow", "The layer needs TensorFlow, which this backend's environment lacks",
         "Keras 3's StringLookup (like its other lookup and text preprocessing layers) runs on "
         "TensorFlow whatever the backend: in a jax, torch or numpy environment without "
         "TensorFlow the layer cannot even be created ('Layer StringLookup requires TensorFlow. "
         "Install it via pip install tensorflow'). Install tensorflow(-cpu) next to the backend.",
         r"requires TensorFlow\. Install it via", family="backend",
         defining=r"requires TensorFlow\. Install it via"),
    Rule("dtype_policy_config", "Dtype / mixed-precision policy not understood",
         "The layer's dtype / mixed-precision policy is serialized differently across releases "
         "(Keras 2: a Policy dict or string; Keras 3.x: a DTypePolicy object with "
         "quantization fields, its class named DTypePolicy, FloatDTypePolicy or a quantized one "
         "depending on the release), and old TF mixes float16/float32 when tracing a "
         "mixed-precision model for SavedModel. The reader cannot parse the other's form: Keras "
         "3.0 knows no Keras 2 'Policy' class (\"Could not locate class 'Policy'\"). Load with "
         "the saver's release, or rebuild the model in code and load only the weights.",
         r"quantization_mode|unhashable type: 'dict'|type float32 that does not match type float16|"
         r"expected to be a half tensor but is a float tensor|"
         r"'(?:str|Dense|Conv2D|Layer)' object has no attribute '(?:convert_input|variable_dtype)'|"
         + _DTYPE_POLICY,
         outcomes=(Outcome.LOAD_ERROR, Outcome.SAVE_ERROR), defining=_DTYPE_POLICY,
         remedies=("tf_keras",), family="version"),
    Rule("builtin_renamed", "Built-in object renamed between releases",
         "The file names a built-in Keras object (an initializer, activation, ...) by a name "
         "the loader's Keras does not have: Keras 2 and Keras >= 3.4 call the orthogonal "
         "initializer 'Orthogonal', Keras 3.0-3.3 only know 'OrthogonalInitializer'. Load with "
         "a release that knows the name, or rebuild the model in code and load the weights.",
         r"Could not interpret (?:initializer|activation|regularizer|constraint) identifier",
         remedies=("tf_keras",), family="version",
         defining=r"Could not interpret (?:initializer|regularizer|constraint) identifier"),
    Rule("input_shape_convention", "Input shape rebuilt with the wrong rank",
         "The loader rebuilt the model's layers from the file's recorded input shapes with the "
         "wrong rank or unknown dimensions (every TF 2.2 / Keras 2.3 HDF5 file in Keras 3: "
         "'Expected shape (None, None, 8)', 'Kernel shape must have the same length as input', "
         "'Shapes used to initialize variables must be fully-defined'): Keras 3 reads that "
         "era's input-shape fields differently. Rebuild the model in code and load the weights.",
         r"Kernel shape must have the same length as input|Shapes used to initialize variables "
         r"must be fully-defined|Invalid input shape for input|is incompatible with the layer: "
         r"expected ndim|Conv2DTranspose\.call\(\).*tuple index out of range",
         when=_cross_major, remedies=("tf_keras",), family="version"),
    Rule("export_signature_dtype", "Exported signature refuses the input dtype",
         "An exported SavedModel's serving function has a fixed input signature: an Embedding "
         "model's indices are exported as int32, and this loader's TFSMLayer passes float "
         "inputs through uncast, so they are refused ('Can not cast TensorSpec ... float32 ... "
         "to ... int32', 'expected to be a int32 tensor but is a float tensor'). Keras 3.0's "
         "TFSMLayer (TF 2.16) converts every input to float before the call, so a string "
         "signature (StringLookup on raw strings) fails with 'could not convert string to "
         "float'. Cast the inputs to the signature's dtype, or call the signature through "
         "tf.saved_model.load.",
         r"Binding inputs to tf\.function failed due to `Can not cast TensorSpec|"
         r"TFSMLayer\.call\(\).*was expected to be a int32 tensor but is a float tensor|"
         r"could not convert string to float: .*predict_tfsm",
         family="version",
         defining=r"Binding inputs to tf\.function failed due to `Can not cast TensorSpec"),
    Rule("layer_build_signature", "A layer cannot be rebuilt from the file's shapes",
         "Keras 3 rebuilds each layer by calling build() with the input shapes the file records; "
         "a layer whose build() takes several shapes cannot be rebuilt from a Keras 2 file that "
         "records one (MultiHeadAttention from TF 2.4: \"build() missing 1 required positional "
         "argument: 'value_shape'\" in Keras 3, KeyError 'query_shape' in Keras 2.15, whose "
         "MultiHeadAttention expects the shapes in its config). Load it through tf_keras where "
         "TensorFlow is installed, or with the saver's release, or "
         "rebuild the model in code and load only the weights.",
         r"\.build\(\) missing \d+ required positional arguments?|(?:KeyError: |(?m:^))'(?:query|value|key)_shape'",
         remedies=("tf_keras",),
         family="version",
         defining=r"\.build\(\) missing \d+ required positional arguments?"),
    Rule("nested_model_config", "Nested model config not rebuilt",
         "A model used as a layer inside another model is serialized with node references "
         "whose layout changed between Keras 2 and Keras 3 (and that Keras 3.0 cannot even "
         "read back from its own JSON); the loader cannot reconnect the inner model's nodes.",
         r"graph of the Functional model either has loops or disconnected nodes|"
         r"_inbound_nodes\[node_index\].*list index out of range|list index out of range.*_inbound_nodes\[node_index\]",
         remedies=("tf_keras",), family="version",
         defining=r"graph of the Functional model either has loops or disconnected nodes"),
    Rule("config_key_added", "Config written by a newer Keras",
         "The saver's Keras writes config keys this older loader does not know (for example "
         "batch_shape/optional in InputLayer, groups in Conv2D, keepdims, jit_compile in "
         "optimizers). Configs are not forward compatible: load with the saver's release or "
         "newer, or rebuild the model in code and load only the weights.",
         r"Unrecognized keyword argument|Keyword argument not understood|Argument\(s\) not "
         r"recognized|unexpected keyword argument|Error when deserializing class",
         when=_saver_newer, family="version"),
    Rule("config_key_removed", "Config key removed in the loader's Keras",
         "The file carries config keys or values that the loader's newer Keras removed "
         "(time_major in LSTM, batch_input_shape, is_legacy_optimizer/jit_compile in "
         "optimizers, ...). The loader refuses instead of ignoring them.",
         r"Unrecognized keyword argument|Keyword argument not understood|Argument\(s\) not "
         r"recognized|unexpected keyword argument|Error when deserializing class",
         when=_saver_older, remedies=("tf_keras",), family="version"),
    Rule("internal_module_path", "Internal module path recorded in the file",
         "The file names an internal module (keras.src.engine..., tf_keras.src...) that does not "
         "exist in the loader's Keras; private paths move between releases.",
         r"parent module [\w.]+ cannot be imported", remedies=("tf_keras",), family="version",
         defining=_MODEL_MODULE_PATH),
    Rule("keras_major_class_path", "Keras 2/3 class names and module paths differ",
         "Keras 2 and Keras 3 serialize model classes with different names and module paths "
         "(keras.engine.functional vs keras.src.models.functional, 'Model' vs 'Functional'). "
         "A built-in Keras class is then 'unknown' to the other major version.",
         r"Could not locate class|Unknown layer|Could not deserialize class|cannot be imported|"
         r"could not be deserialized properly",
         when=_builtin_unknown, remedies=("tf_keras",), family="version"),
    # ------------------------------------------------------------ weights
    Rule("weights_structure", "Weights do not fit the rebuilt model",
         "The loader rebuilt a model whose layers or variables differ from what the weights "
         "file holds (subclassed models have no variables until called; weight names and "
         "ordering changed between releases; the layer count differs).",
         r"Layer count mismatch|expected \d+ variables, but received|has not created its "
         r"variables yet|You are trying to load a weight file containing|Shapes \([^)]*\) and "
         r"\([^)]*\) are incompatible|axes don't match array|could not be loaded\. Example error|"
         r"Cannot assign value to variable .{0,200}Shape mismatch",
         remedies=("tf_keras",), family="version",
         defining=(r"Layer count mismatch|"
                   r"expected \d+ variables, but received|You are trying to load a weight file containing")),
    Rule("weight_name_collision", "Two weights with the same HDF5 name",
         "The HDF5 writer names datasets after weights; a nested model or several layers of one "
         "type produced two weights with the same name (Keras 3.0-3.1 h5 writer) and h5py "
         "refuses the second. Save as .keras, or give the layers unique names.",
         r"Unable to (?:synchronously )?create dataset \(name already exists\)|"
         r"Unable to (?:synchronously )?create group \(name already exists\)",
         outcomes=(Outcome.SAVE_ERROR, Outcome.LOAD_ERROR), family="version",
         defining=r"Unable to (?:synchronously )?create (?:dataset|group) \(name already exists\)"),
    Rule("h5_cannot_hold_state", "HDF5 cannot hold this layer's state",
         "The layer keeps state that is not a tf.Variable (TF 2.4-2.5 lookup layers such as "
         "StringLookup hold their vocabulary in a lookup table), and the Keras HDF5 writer "
         "refuses it: \"Save or restore weights that is not an instance of `tf.Variable` is not "
         "supported in h5, use `save_format='tf'` instead\". Save as a SavedModel there, or "
         "(TF >= 2.6) pass the vocabulary to the constructor, where it becomes config.",
         r"is not supported in h5, use `save_format='tf'`",
         outcomes=(Outcome.SAVE_ERROR,), family="version",
         defining=r"is not supported in h5, use `save_format='tf'`"),
    Rule("subclassed_save", "Subclassed model cannot be saved in this format",
         "Subclassed models have no config graph: HDF5 and json need a Functional/Sequential "
         "model, and Keras 3 export needs serving_only=True. Save a Functional model or use "
         ".keras with get_config()/from_config().",
         r"requires the model to be a Functional model or a Sequential model|Subclassed models "
         r"can only be exported|[Ss]ubclassed [Mm]odel", outcomes=(Outcome.SAVE_ERROR, Outcome.LOAD_ERROR),
         family="version"),
    # ------------------------------------------------------------ backends
    Rule("loss_dict_misrouted", "Per-output losses applied to the wrong outputs",
         "The model was compiled with per-output losses keyed by output name "
         "(loss={'score': 'mse', 'label': 'sparse_categorical_crossentropy'}) and its outputs are a "
         "list. Keras 3.6 (TF 2.18, measured) pairs the dict with the outputs in sorted key order "
         "instead of by name, so a loss gets the other output's targets; here the sparse "
         "cross-entropy received the regression targets (\"Received a label value of -1 which is "
         "outside the valid range\"); with compatible shapes it trains the wrong objective "
         "silently (keras-team/keras#18708, #21675). Keras 3.15 routes by name; otherwise pass "
         "the losses as a list in output order, or make the outputs a dict.",
         r"Received a label value of .{0,40}outside the valid range.*compile_loss|compile_loss.*"
         r"Received a label value of .{0,40}outside the valid range|"
         # a resumed training step's reason, cut (300 characters) before the label text
         r"training could not resume: InvalidArgumentError: Graph execution error:\s+Detected at node "
         r"compile_loss/sparse_categorical_crossentropy/SparseSoftmaxCrossEntropyWithLogits",
         when=lambda rec: "Received a label value" in _text(rec) or _keras(rec.env) == (3, 6),
         outcomes=(Outcome.SAVE_ERROR, Outcome.LOAD_ERROR, *_RESUMED), family="version",
         defining=r"Received a label value of .{0,40}outside the valid range"),
    Rule("rnn_unroll_timesteps", "An unrolled RNN rebuilt without its number of timesteps",
         "An unrolled recurrent layer (unroll=True) needs a static number of timesteps. TF 1.15 "
         "and TF 2.2 write a Sequential model without its InputLayer: the first layer, an "
         "Embedding, keeps batch_input_shape [None, None] and input_length None, so every "
         "release that rebuilds the model from that config (TF 1.15 itself, TF 2.2-2.15, "
         "tf_keras) gets an unknown time dimension. TF 2.2-2.7 trace a SavedModel's layer calls "
         "with an unknown time dimension, so they cannot write a SavedModel or an export of such "
         "a model at all. Give the Embedding input_length (or the first layer the full "
         "input_shape), or do not unroll.",
         r"Unrolling requires a fixed number of timesteps|Cannot unroll a RNN if the time "
         r"dimension is undefined", outcomes=(Outcome.SAVE_ERROR, Outcome.LOAD_ERROR), family="version",
         defining=(r"Unrolling requires a fixed number of timesteps|"
                   r"Cannot unroll a RNN if the time dimension is undefined")),
    Rule("tf1_keras_savedmodel", "TF 1.15's Keras SavedModel cannot be rebuilt as a Keras model",
         "TF 1.15 writes a Keras SavedModel with its experimental Keras SavedModel code, and TF "
         "1.15 and 2.2 cannot rebuild some of them as Keras models, not even TF 1.15 its own: a "
         "Bidirectional wrapper's restored layers ('Unable to save the object ListWrapper' in "
         "TF 1.15; in TF 2.2 the restored wrapper yields one direction's units where the next "
         "layer expects both), and a per-output loss dict keyed by output names, which TF "
         "1.15's loader (given TF 1.15's or TF 2.2's SavedModel) calls output_1, output_2 "
         "('Unknown entries in loss dictionary'). Load without compiling, read it for inference "
         "only, or save as HDF5 from TF 1.15.",
         r"Unable to save the object ListWrapper|Unknown entries in loss dictionary|"
         r"is incompatible with the layer: expected axis -1 of input shape to have value",
         when=lambda rec: rec.format == "savedmodel" and (2, 2) in (_keras(rec.saver_env), _keras(rec.env)),
         remedies=("compile_false", "tfsm"), family="version",
         defining=r"Unable to save the object ListWrapper|Unknown entries in loss dictionary"),
    Rule("lookup_table_state", "A lookup table's saved state does not fit the loader's layer",
         "StringLookup was experimental in TF 2.3-2.5 and kept its vocabulary in a "
         "MutableHashTable that the SavedModel's checkpoint restores. Later releases rebuild the "
         "layer with another table (a static one from the config's vocabulary), so the saved "
         "table is left unbound ('Python objects that were not bound to checkpointed values'), "
         "its saved restore function no longer takes the checkpoint key ('save_fn(checkpoint_key)"
         "', TF 2.11-2.13, even through tf.saved_model.load), or TF 2.5 rebuilds the layer with "
         "no vocabulary. Read it for inference only, or re-save it from TF 2.6 or later (the "
         "vocabulary is in the config there).",
         r"not bound to checkpointed values.{0,300}(?:HashTable|[Ll]ookup)|save_fn\(checkpoint_key\)"
         r": expected argument|You must set the layer's vocabulary before calling it",
         remedies=("tfsm",), family="version",
         defining=(r"save_fn\(checkpoint_key\): expected argument|"
                   r"You must set the layer's vocabulary before calling it")),
    Rule("variable_dtype_changed", "A saved variable has another dtype than the loader's layer",
         "The SavedModel's checkpoint holds a layer variable whose dtype the loader's layer no "
         "longer uses: the adapted Normalization's sample count is int32 in TF 2.2's "
         "experimental layer and int64 from TF 2.3 on, so restoring it fails ('expected dtype "
         "int64 does not equal original dtype int32 [Op:RestoreV2]'). Read the SavedModel for "
         "inference only, or re-save it from TF 2.3 or later.",
         r"expected dtype \w+ does not equal original dtype \w+", remedies=("tfsm",), family="version",
         defining=r"expected dtype \w+ does not equal original dtype \w+"),
    Rule("layer_call_fails", "This Keras and backend cannot run the model",
         "Keras raised inside a layer's call() while running the model: in the saver while it "
         "built the model or computed its reference outputs, before any file was written, or in "
         "a loader after the file loaded. This release and backend cannot run the model at all "
         "(Keras 3.3 and 3.15 on PyTorch: a masked, unrolled LSTM fails with \"'tuple' object "
         "has no attribute 'shape'\"). Use another backend or a newer Keras release.",
         r"Exception encountered when calling \w+\.call\(\)",
         outcomes=(Outcome.SAVE_ERROR, Outcome.LOAD_ERROR), phases=("build", "predict"), family="backend"),
    Rule("backend_cannot_train", "Backend cannot train",
         "The loader's Keras backend (numpy) is inference-only: the model loads and predicts, "
         "but training cannot resume here.",
         r"not implemented for NumPy backend|NumPy backend", outcomes=_RESUMED,
         family="backend",
         defining=r"not implemented for NumPy backend"),
    Rule("model_subclass_lost", "The model subclass (and its train_step) was not restored",
         "The loader was given the model's class in custom_objects, yet rebuilt a plain "
         "Functional model: the subclass's own methods (an overridden train_step) are gone, so "
         "fit() silently runs the default training step and diverges from the saver's (TF 2.4 "
         "/ Keras 2.4 with a functional-style Model subclass; tensorflow/tensorflow#38103, "
         "#46530). Load with a release that restores the class (TF >= 2.5 does, measured with "
         "2.15), or rebuild the model from its class and load the weights.",
         r"training step diverges", outcomes=_RESUMED,
         when=lambda rec: rec.details.get("loaded_class") == "Functional"
         and "custom_objects" in str(rec.variant or ""), family="version"),
    Rule("training_diverges", "Resumed training diverges although the model came back",
         "Predictions match, and the model's class and its optimizer's step count were restored, "
         "yet one more training step lands elsewhere than the saver's: the loader trains "
         "differently. Seen with a Model subclass overriding train_step loaded in TF 1.15, whose "
         "Keras (2.2.4-tf) has no train_step and runs its own training loop; otherwise the "
         "optimizer's slot variables came back in the wrong places or the release updates "
         "differently. For the train_step case, resume training with TF >= 2.2, whose fit() "
         "calls train_step.",
         r"although the step count was restored", outcomes=_RESUMED, family="version"),
    Rule("training_resume_fails", "Training cannot resume: the next training step fails",
         "The model loads and predicts like the saver's, but one more training step raises an "
         "error in the loader, so training cannot continue from the file as it is (this is no "
         "loss of optimizer state: training does not run at all). Measured: Keras 3 (each of "
         "3.0-3.15 on at least one backend) reading a Keras 3 HDF5 file with its optimizer, whose "
         "restored optimizer was "
         "built for other variables than the loaded model's (\"Unknown variable: ... This "
         "optimizer can only be called for the variables it was originally built with\"; jax: "
         "\"optimizer_variables must be a list of tensors corresponding 1:1 ...\"; Keras 3.9 and "
         "3.11 on TensorFlow: \"numpy() is only available when eager execution is enabled\"), and TF 1.15 "
         "reading a TF 1.15 or 2.2 Keras SavedModel, whose restored functions give no usable "
         "gradient (\"Connecting to invalid output 1 of source node ...\"). To train on, load with "
         "compile=False and compile again (the optimizer starts fresh), or save in a format that "
         "restores the optimizer for the loader (.keras from Keras 3 loads with it in the same or "
         "a newer Keras 3).",
         r"training could not resume: ", outcomes=_RESUMED, family="version",
         defining=_TRAINING_RESUME),
    Rule("optimizer_state_lost", "Optimizer state not restored",
         "Predictions match, but the optimizer came back fresh (or missing): resuming training "
         "restarts Adam's moments and step count. This format/release pair does not carry "
         "optimizer state; save as .keras (Keras >= 2.12) or keep a training checkpoint.",
         r"optimizer state|optimizer's step count|no optimizer",
         outcomes=_RESUMED, family="numeric",
         defining=r"optimizer state (?:lost|not restored|was not restored)"),
    Rule("tf_checkpoint_partial_restore", "A TF checkpoint of the other Keras major, read without an error",
         "Keras 2 and Keras 3 write TF checkpoints with different object graphs (model.save_weights "
         "without .h5 vs tf.train.Checkpoint(model=, optimizer=)). Reading one with the other's way "
         "raises no error when the restore only checks that something matched, while the layers keep "
         "their fresh initial weights: the predictions are wrong, silently. Measured: Keras 3.4-3.15 "
         "checkpoints read by Keras 2.15, and TF 1.15-2.10 checkpoints (legacy optimizers) read by "
         "Keras 3.4-3.15; TF 2.11-2.15 checkpoints fail loudly in Keras 3 instead. Move weights between "
         "the majors as .weights.h5/.h5, or read the checkpoint with its own major (tf_keras for Keras 2).",
         outcomes=(Outcome.MISMATCH,), family="version",
         when=lambda rec: (rec.format == "tf_checkpoint" and _keras(rec.saver_env) is not None
                           and _keras(rec.env) is not None
                           and (_keras(rec.saver_env) or (0, 0))[0] != (_keras(rec.env) or (0, 0))[0])),
    Rule("numerical_mismatch_backend", "Predictions differ across backends",
         "The model loaded, but its predictions differ from the saver's beyond the tolerance, "
         "and saver and loader run different backends: kernels and layouts differ.",
         outcomes=(Outcome.MISMATCH,), when=_diff_backend, family="backend"),
    Rule("numerical_mismatch", "Predictions differ",
         "The model loaded, but its predictions differ from the saver's beyond the tolerance: "
         "weights were assigned to the wrong variables, a layer default changed meaning, or "
         "the computation itself changed.",
         outcomes=(Outcome.MISMATCH,), family="numeric"),
    Rule("newer_minor_file", "File from a newer release of the same Keras major",
         "Saver and loader share the Keras major version, but the saver is newer and wrote a "
         "config layout the older loader does not parse (node/inbound format, initializer and "
         "layer configs changed between minor releases): within a major, files are backward "
         "compatible at best, not forward. Load with the saver's release or newer.",
         when=_same_major_saver_newer, family="version"),
    # ------------------------------------------------------------ process failures
    # What was seen, not a guess at why: no result within the full limit, a process that
    # died, or a protocol broken (by the code under test, or by a loader changing its input).
    Rule("timeout_not_final", "Interrupted at an adaptive limit: not a result yet",
         "The cell was interrupted at an adaptive time limit below the full one and no run has "
         "confirmed it at the full limit: it may be slow, not stuck (a torch loader compiling the "
         "resumed training step took 15-43 s against a 10-17 s adaptive limit). It is not "
         "published as a timeout; the next run re-runs it at the full limit.",
         outcomes=(Outcome.TIMEOUT,), when=lambda rec: not _held_at_full_limit(rec), family="environment"),
    Rule("timeout_full_limit", "No result within the full time limit",
         "The cell gave no result within its full time limit: the worker's watchdog interrupted "
         "it, or the supervisor killed a worker stuck outside Python. Only a timeout that held at "
         "the full limit is published (one interrupted at a shorter adaptive limit is re-run, or "
         "shown as not final); the phase says where it was. Seen with Keras 3.0-3.13 on Keras 2 "
         "HDF5 files of nested models (a loop in the legacy loader): load such files through "
         "tf_keras, or with a timeout.",
         outcomes=(Outcome.TIMEOUT,), remedies=("tf_keras",), family="version"),
    Rule("process_died", "The worker process died in this cell",
         "The process running the cell died before it gave a result: killed by a signal (SIGSEGV "
         "or SIGABRT from native code, SIGKILL from the kernel's out-of-memory killer) or exited "
         "with a status of its own. The footnote gives the signal or exit code and the record "
         "keeps the log tail; the cells after it ran in a fresh worker.",
         outcomes=(Outcome.CRASH,), remedies=("tf_keras",), family="version"),
    Rule("control_tampered", "The code under test tampered with the worker's control folder",
         "While this cell ran, the worker's control folder (request, events, log) gained a link, a "
         "FIFO or a flood of events: the code being loaded attacked the runner's protocol. The "
         "worker was killed and no result of it counts; the cell is re-run by the next run, and a "
         "file that does this every time is hostile.",
         types=("runner.control_tampered",), outcomes=(Outcome.PROTOCOL_ERROR,), family="safety"),
    Rule("artifact_changed", "A loader changed the artifact it read",
         "The saved artifact changed while this batch of loads read it (Keras 3.4.0/3.4.1 delete a "
         "model.weights.h5 next to the .keras they load, keras-team/keras#19921), so no load of "
         "the batch is evidence of what the saver wrote: the loads are void, the artifact is saved "
         "again and the loads re-run by the next run.",
         types=("runner.artifact_changed",), outcomes=(Outcome.PROTOCOL_ERROR,), family="environment"),
    Rule("protocol_broken", "The worker broke the runner's protocol",
         "The worker did not follow the protocol for this cell (it reported done without a result, "
         "exited between cells, went quiet outside any cell, or wrote an outcome the runner does "
         "not know): a fact about this run, retried by the next.",
         outcomes=(Outcome.PROTOCOL_ERROR,), family="environment"),
)

OTHER = Rule("other", "Unclassified failure",
             "No rule explains this failure yet; the message and traceback are in the report.",
             outcomes=tuple(o for o in Outcome if o.failed), family="other")

# A Keras 2 file that fails in a Keras 3 stack on TensorFlow >= 2.16 is worth loading with
# the same TensorFlow through tf_keras (Keras 2; TF_USE_LEGACY_KERAS=1) whatever the category:
# what broke is usually the Keras 3 reader itself (its legacy HDF5 loader, no SavedModel
# loader, no Keras 2 optimizer class for tf.saved_model.load: "'_UserObject' object has no
# attribute 'add_slot'"). So such a failure also names the tf_keras remedy, which the runner
# verifies in the loader's -tfkeras sibling where the catalog has one; except in the
# categories below, whose cause that sibling shares: the same Python (bytecode), the same
# TF (ops, MetaGraph tags), the saver's own writer; and other families: custom objects, safe
# mode (tf_keras's HDF5 loader has none: "fixing" a refused Lambda that way would run its
# code), the environment, the backend.
_TF_KERAS_CANNOT_HELP = frozenset(("lambda_bytecode", "op_not_registered", "savedmodel_tags",
                                   "weight_name_collision", "subclassed_save"))


def tf_keras_for_keras2(rule: Rule) -> bool:
    """Whether a Keras 2 file failing with ``rule`` in a Keras 3 stack on TensorFlow also gets
    the ``tf_keras`` remedy (in addition to ``rule.remedies``)."""
    return (rule.family in ("version", "numeric", "other") and rule.category not in _TF_KERAS_CANNOT_HELP
            and "tf_keras" not in rule.remedies)


CATEGORIES: dict[str, Rule] = {r.category: r for r in (*RULES, OTHER)}
if len(CATEGORIES) != len(RULES) + 1:  # pragma: no cover - a duplicate id is a coding error
    raise RuntimeError("duplicate rule category in runner.diagnose.RULES")


def diagnose(rec: Record) -> Diagnosis | None:
    """The first matching rule's diagnosis, ``other`` when none matches, None when not failed."""
    if not rec.outcome.failed:
        return None
    text = _text(rec)
    # A report diagnoses ~10^5 records, many with the same message and versions.
    # The key holds everything a rule or a remedy looks at besides the text.
    memo = (rec.record_type, rec.outcome, rec.phase, rec.format, rec.error.type if rec.error else "",
            hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest(),
            rec.saver_env.get("keras"), rec.saver_env.get("backend"), rec.saver_env.get("tensorflow"),
            rec.env.get("keras"), rec.env.get("backend"), rec.env.get("tensorflow"), rec.variant,
            rec.details.get("loaded_class"), rec.outcome is Outcome.TIMEOUT and _held_at_full_limit(rec))
    found = _MEMO.get(memo)
    if found is None:
        rule = next((r for r in RULES if r.matches(rec, text)), OTHER)
        remedies = rule.remedies
        if tf_keras_for_keras2(rule) and _keras2_file_in_keras3_tf(rec):
            remedies += ("tf_keras",)
        found = _MEMO[memo] = Diagnosis(rule.category, rule.title, rule.explanation, rule.family,
                                        tuple(REMEDIES[r] for r in remedies))
    return found


_MEMO: dict[tuple[Any, ...], Diagnosis] = {}


def variant_name(flags: Iterable[str]) -> str:
    """The load variant of a set of flags, in canonical order; "default" for none."""
    from runner._worker.worker import VARIANT_FLAGS
    wanted = set(flags)
    return "+".join(f for f in VARIANT_FLAGS if f in wanted) or "default"


def combine_variant(variant: str | None, flag: str) -> str:
    """``variant`` with one more flag, in canonical order (``custom_objects+compile_false``)."""
    flags = set() if variant in (None, "", "default") else set(str(variant).split("+"))
    return variant_name(flags | {flag})


Siblings = Mapping[str, Sequence[tuple[str, str]]]  # loader id -> [(sibling id, remedy id)]


def sibling_map(stacks: Iterable[Any]) -> dict[str, list[tuple[str, str]]]:
    """``{loader: [(sibling stack id, remedy id)]}`` from catalog stacks (runner.stacks.Stack)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for s in stacks:
        if getattr(s, "sibling_of", "") and getattr(s, "remedy", ""):
            out.setdefault(s.sibling_of, []).append((s.id, s.remedy))
    return out


def remedy_targets(rec: Record, diag: Diagnosis | None, *, has_custom_objects: bool,
                   siblings: Siblings) -> list[tuple[Remedy, str, str]]:
    """Where each remedy of ``rec`` is verified: ``(remedy, loader stack id, variant)``.

    A variant remedy is the same cell with one more load flag (skipped when it cannot
    change anything: the flag is already set, no custom objects exist, tfsm on a format
    that is no SavedModel); a sibling remedy is the same cell in each sibling stack.
    """
    if diag is None or rec.record_type != "load" or not rec.loader:
        return []
    variant = rec.variant or "default"
    flags = set() if variant == "default" else set(variant.split("+"))
    out: list[tuple[Remedy, str, str]] = []
    for remedy in diag.remedies:
        if remedy.variant is not None:
            if remedy.variant in flags or (remedy.variant == "custom_objects" and not has_custom_objects):
                continue
            if remedy.variant == "signature" and rec.format not in ("savedmodel", "export"):
                continue
            if remedy.variant == "tfsm" and rec.format != "savedmodel":
                continue
            out.append((remedy, rec.loader, combine_variant(variant, remedy.variant)))
        if remedy.sibling is not None:
            out.extend((remedy, sid, variant) for sid, rid in siblings.get(rec.loader, ())
                       if rid == remedy.sibling)
    return out


@dataclasses.dataclass(frozen=True)
class RemedyResult:
    """A remedy that was run: where, with which variant, and what came out."""

    remedy: Remedy
    loader: str
    variant: str
    outcome: str
    category: str = ""

    @property
    def fixed(self) -> bool:
        return self.outcome == Outcome.OK.value

    def text(self) -> str:
        where = f" in {self.loader}" if self.remedy.sibling else ""
        if self.fixed:
            return f"fixed by {self.remedy.id}{where} (verified)"
        why = f"{self.outcome}" + (f", {self.category}" if self.category else "")
        return f"{self.remedy.id}{where} tried, still fails ({why})"


# How far a chain of remedies is followed: runner/matrix.py runs as many rounds (REMEDY_ROUNDS).
REMEDY_DEPTH = 3


def remedy_results(rec: Record, diag: Diagnosis | None, lookup: Callable[[str, str], Record | None],
                   *, has_custom_objects: bool, siblings: Siblings) -> list[RemedyResult]:
    """The remedies of ``rec`` that were actually run (``lookup(loader, variant)`` finds
    the record of the same artifact there), and the remedies of those that failed for a
    cause with a remedy of its own (tfsm, then signature), as run by the matrix's remedy
    rounds; remedies never run are left out."""
    out: list[RemedyResult] = []
    seen: set[tuple[str, str]] = set()
    todo = [(rec, diag, 1)]
    while todo:  # a remedy that failed further on is followed by its own (the matrix's rounds)
        failed, why, depth = todo.pop(0)
        for remedy, loader, variant in remedy_targets(failed, why, has_custom_objects=has_custom_objects,
                                                      siblings=siblings):
            if (loader, variant) in seen:
                continue
            seen.add((loader, variant))
            got = lookup(loader, variant)
            if got is None or got.outcome is Outcome.NOT_APPLICABLE:
                continue
            sub = diagnose(got)
            out.append(RemedyResult(remedy, loader, variant, got.outcome.value,
                                    sub.category if sub else ""))
            if sub is not None and depth < REMEDY_DEPTH:
                todo.append((got, sub, depth + 1))
    return out


_NOISE = (
    (re.compile(r"0x[0-9a-f]+"), "0x…"),
    (re.compile(r"(?:/[\w.+-]+)+/?"), "<path>"),
    (re.compile(r"\{.*\}", re.S), "{…}"),
    (re.compile(r"\[[^\]]{40,}\]", re.S), "[…]"),
    (re.compile(r"\b\d+\b"), "N"),
    (re.compile(r"\s+"), " "),
)


def normalise(message: str) -> str:
    """A message's first line without what varies by cell: paths, numbers, configs, ids."""
    text = next((ln.strip() for ln in message.strip().splitlines() if ln.strip()), "")
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    return text.strip()[:160]


def signature(rec: Record) -> str:
    """The normalised message: what stays the same across releases, scenarios and paths."""
    if rec.error is None:
        return normalise(str(rec.details.get("reason") or rec.outcome.value))
    return normalise(rec.error.message)
