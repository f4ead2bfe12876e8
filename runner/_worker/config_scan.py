"""Structural check of a model file's stored Keras config: what a load would deserialise.

Standard library only, Python 3.7 syntax. Run inside a stack by path (the check worker
loads it with ``importlib.util.spec_from_file_location``, as it loads ``worker.py``) and
imported on the host as ``runner._worker.config_scan``. Nothing here imports Keras or
TensorFlow at module level; :func:`builtin_allowlist` is handed the modules of a stack.

1. :func:`stored_configs` reads EVERY config a load deserialises -- HDF5 root attributes
   ``model_config``/``training_config``; a ``.keras`` zip's ``config.json`` (and
   ``metadata.json``); the architecture JSON; a Keras SavedModel's ``keras_metadata.pb``
   node metadata and the ``SavedUserObject.metadata`` of ``saved_model.pb``'s object
   graph (where TF 2.0-2.4 kept it) -- and parses each with ``json.loads`` after bounding
   its size, bracket depth and node count (:class:`Limits`); a violation raises
   :class:`ConfigTooLarge`, anything malformed :class:`BadConfig` (one-line messages).
2. :func:`scan` walks each whole tree (iteratively) and reports ``(json_path, reason)``
   for everything that is not an inert built-in of the loading stack's Keras/TF:
   serialized Python (Lambda layers, Keras 3 ``__lambda__``), functions and classes
   resolved from a module or registry outside the :class:`Allowlist`, TF-op layers
   calling TF symbols outside :data:`TF_OPS`, and identifier strings (``"activation":
   "my_act"``) that only a custom-object registry could resolve. Names in
   ``custom_names`` (what the user's ``--custom-objects`` file defines or registers) pass;
   Lambda-like layers never do. ``unsafe=True`` (the user takes responsibility) returns
   no findings at all.
3. :func:`builtin_allowlist` builds the :class:`Allowlist` INSIDE a stack from its public
   Keras namespaces (and a few internal classes a real load meets, :data:`INTERNAL_CLASSES`);
   it round-trips through JSON (:meth:`Allowlist.to_json`) for the host.

Protobuf field numbers (verified against the ``*_pb2`` descriptors of TF 2.15.1/Keras 2.15):
``SavedMetadata.nodes = 1``; Keras ``SavedObject``: ``node_id = 2``, ``node_path = 3``,
``identifier = 4``, ``metadata = 5``. ``SavedModel.meta_graphs = 2``;
``MetaGraphDef.object_graph_def = 7``; ``SavedObjectGraph.nodes = 1``;
``SavedObject.user_object = 4``; ``SavedUserObject``: ``identifier = 1``, ``metadata = 3``.
"""

from __future__ import print_function

import collections
import importlib.util
import json
import os
import re
import stat
import sys
import zipfile

__all__ = ["DEFAULT_LIMITS", "TF_OPS", "Allowlist", "BadConfig", "ConfigTooLarge", "Finding", "Limits",
           "builtin_allowlist", "custom_names_of", "describe", "parse_json", "provenance", "read_stored",
           "resolvable_in_stack", "scan",
           "stored_configs"]


def _load_pbwire():
    if __package__:  # imported on the host as runner._worker.config_scan
        from . import pbwire

        return pbwire
    name = "compat_matrix_pbwire"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pbwire.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


pbwire = _load_pbwire()

# ============================================================== limits and errors

Limits = collections.namedtuple("Limits", ["config_bytes", "depth", "nodes", "pb_bytes"])
Limits.__doc__ = """Bounds of one stored config: its bytes (declared and actual), bracket depth and
JSON node count; ``pb_bytes`` bounds ``saved_model.pb``/``keras_metadata.pb`` files."""
DEFAULT_LIMITS = Limits(config_bytes=64 << 20, depth=200, nodes=2000000, pb_bytes=1 << 30)


class BadConfig(ValueError):
    """A stored config is malformed (not UTF-8, not JSON, wrong shape, unreadable container)."""


class ConfigTooLarge(BadConfig):
    """A stored config exceeds a :class:`Limits` bound; nothing past the bound was read."""


def _limits(limits):
    if limits is None:
        return DEFAULT_LIMITS
    if isinstance(limits, dict):
        return DEFAULT_LIMITS._replace(**limits)
    return limits


# ============================================================== parsing (bounded)

# A JSON string (escapes included) or one structural character: the lexer of the pre-scan.
_TOKEN = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|([\[{])|([\]}])|(,)', re.S)


def _reject_constant(name):
    raise BadConfig("it holds %s, which is not JSON" % name)


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise BadConfig("key %r appears twice in one object" % (key,))
        out[key] = value
    return out


def parse_json(raw, source, limits=None):
    """``json.loads`` of one stored config, after checking its size, its bracket depth
    (counted outside strings, so ``json.loads`` never recurses deeper than ``limits.depth``)
    and its node count. Strict: UTF-8 only, no NaN/Infinity, no duplicate keys."""
    limits = _limits(limits)
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > limits.config_bytes:
            raise ConfigTooLarge("%s has %d bytes, over the limit of %d" % (source, len(raw), limits.config_bytes))
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadConfig("%s is not valid UTF-8 (%s at byte %d)" % (source, exc.reason, exc.start)) from None
    elif isinstance(raw, str):
        text = raw
        if len(text) > limits.config_bytes:
            raise ConfigTooLarge("%s has %d characters, over the limit of %d"
                                 % (source, len(text), limits.config_bytes))
    else:
        raise BadConfig("%s is a %s, not text" % (source, type(raw).__name__))
    # Valid JSON has at most ~4 tokens (strings, brackets, commas) per node: the token
    # budget bounds this loop on input that is not JSON at all.
    depth, nodes, budget = 0, 1, 5 * limits.nodes + 16
    for tokens, match in enumerate(_TOKEN.finditer(text), 1):
        kind = match.lastindex
        if kind == 2:
            depth += 1
            nodes += 1
            if depth > limits.depth:
                raise ConfigTooLarge("%s nests deeper than %d levels" % (source, limits.depth))
        elif kind == 3:
            depth -= 1
            if depth < 0:
                raise BadConfig("%s is not valid JSON (a bracket closes what was never opened)" % source)
        elif kind == 4:
            nodes += 1
        if nodes > limits.nodes or tokens > budget:
            raise ConfigTooLarge("%s has more than %d JSON nodes" % (source, limits.nodes))
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except BadConfig as exc:
        raise BadConfig("%s: %s" % (source, exc)) from None
    except RecursionError:
        raise ConfigTooLarge("%s nests too deeply to parse" % source) from None
    except ValueError as exc:
        raise BadConfig("%s is not valid JSON (%s)" % (source, str(exc).splitlines()[0][:200])) from None


def _check_size(size, cap, source, what="bytes"):
    if size > cap:
        raise ConfigTooLarge("%s has %d %s, over the limit of %d" % (source, size, what, cap))


def _read_regular(path, cap, source):
    """The bytes of a regular file (no symlink as its last component), at most ``cap``."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise BadConfig("%s cannot be read (%s)" % (source, exc.strerror or exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise BadConfig("%s is not a regular file" % source)
    _check_size(st.st_size, cap, source)
    try:
        return pbwire.read_capped(path, cap)
    except OSError as exc:
        raise BadConfig("%s cannot be read (%s)" % (source, exc.strerror or exc)) from None
    except ValueError as exc:  # pbwire: not a regular file, or it grew past the cap while read
        error = ConfigTooLarge if "limit" in str(exc) else BadConfig
        raise error("%s: %s" % (source, exc)) from None


def _zip_member(zf, name, cap, source):
    """A zip member's bytes, refused when its declared size or the bytes it really
    inflates to pass ``cap`` (read in chunks; stops one chunk past the cap)."""
    infos = [i for i in zf.infolist() if i.filename == name]
    if len(infos) > 1:
        raise BadConfig("%s appears %d times in the zip" % (source, len(infos)))
    info = infos[0]
    _check_size(info.file_size, cap, source, "bytes (declared)")
    chunks, got = [], 0
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(min(1 << 20, cap + 1 - got))
                if not chunk:
                    break
                got += len(chunk)
                if got > cap:
                    raise ConfigTooLarge("%s inflates past the limit of %d bytes" % (source, cap))
                chunks.append(chunk)
    except BadConfig:
        raise
    except Exception as exc:  # BadZipFile (CRC, size), zlib.error, EOFError, encrypted, unknown method
        raise BadConfig("%s cannot be read from the zip (%s: %s)"
                        % (source, type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])) from None
    return b"".join(chunks)


def _h5_attr(fh, name, cap):
    """An HDF5 root attribute as bytes/str (or None), refused before reading when its
    stored size passes ``cap`` (fixed-length strings), and after (variable-length ones)."""
    if name not in fh.attrs:
        return None
    try:
        import h5py

        size = h5py.h5a.open(fh.id, name.encode("utf-8")).get_storage_size()
    except Exception:
        size = 0
    _check_size(size, cap, name)
    value = fh.attrs[name]
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):
        value = value.tolist()  # a numpy scalar or 0-d array
        if isinstance(value, list):
            if len(value) != 1:
                raise BadConfig("%s is an array of %d values, not one string" % (name, len(value)))
            value = value[0]
    if not isinstance(value, (bytes, str)):
        raise BadConfig("%s is a %s, not a string" % (name, type(value).__name__))
    _check_size(len(value), cap, name)
    return value


def _saved_model_nodes(data, source):
    """(source, metadata bytes) of every ``SavedUserObject`` with metadata in a
    ``SavedModel`` message (all meta graphs)."""
    out = []
    try:
        model = pbwire.message(data)
        for g, graph in enumerate(model.get(2, [])):  # SavedModel.meta_graphs
            for objects in pbwire.message(graph).get(7, []):  # MetaGraphDef.object_graph_def
                for n, node in enumerate(pbwire.message(objects).get(1, [])):  # SavedObjectGraph.nodes
                    for user in pbwire.message(node).get(4, []):  # SavedObject.user_object
                        fields = pbwire.message(user)
                        meta = pbwire.first(fields, 3)  # SavedUserObject.metadata
                        if isinstance(meta, (bytes, bytearray)) and meta:
                            ident = pbwire.text(pbwire.first(fields, 1, b""))
                            out.append(("%s/meta_graphs/%d/object_graph_def/nodes/%d(%s)/user_object/metadata"
                                        % (source, g, n, ident), bytes(meta)))
    except ValueError as exc:
        raise BadConfig("%s does not parse as a SavedModel (%s)" % (source, exc)) from None
    return out


def _keras_metadata_nodes(data, source):
    out = []
    try:
        for n, node in enumerate(pbwire.message(data).get(1, [])):  # SavedMetadata.nodes
            fields = pbwire.message(node)
            meta = pbwire.first(fields, 5, b"")  # SavedObject.metadata
            if not isinstance(meta, (bytes, bytearray)):
                raise ValueError("node %d: metadata is not a string" % n)
            path = pbwire.text(pbwire.first(fields, 3, b""))  # node_path
            out.append(("%s/nodes/%d(%s)" % (source, n, path), bytes(meta)))
    except ValueError as exc:
        raise BadConfig("%s does not parse as Keras SavedMetadata (%s)" % (source, exc)) from None
    return out


def _prov(config, keys):
    if not isinstance(config, dict):
        return {}
    return {k: str(config[k]) for k in keys if config.get(k) is not None and config.get(k) != ""}


def read_stored(path, fmt, limits=None):
    """``(provenance, [(source, parsed config), ...])`` of a model file, reading and parsing
    every config a load of ``fmt`` deserialises, and nothing else. Raises :class:`BadConfig`
    (or :class:`ConfigTooLarge`) with a one-line message."""
    limits = _limits(limits)
    cap = limits.config_bytes
    if fmt == "h5":
        import h5py

        try:
            fh = h5py.File(path, "r")
        except (OSError, ValueError) as exc:
            raise BadConfig("%s is not a readable HDF5 file (%s)" % (os.path.basename(path), exc)) from None
        configs, prov = [], {}
        with fh:
            try:
                for name in ("model_config", "training_config"):
                    raw = _h5_attr(fh, name, cap)
                    if raw is not None:
                        configs.append((name, parse_json(raw, name, limits)))
                for key in ("keras_version", "backend"):
                    value = fh.attrs.get(key)
                    if value is not None:
                        prov[key] = str(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
            except BadConfig:
                raise
            except Exception as exc:  # an attribute h5py cannot read (damaged, exotic dtype)
                raise BadConfig("the HDF5 root attributes cannot be read (%s: %s)"
                                % (type(exc).__name__, str(exc)[:200])) from None
        prov["source"] = "HDF5 root attributes (h5py)"
        return prov, configs
    if fmt == "keras":
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BadConfig("%s is not a readable zip (%s)" % (os.path.basename(path), exc)) from None
        with zf:
            names = zf.namelist()
            if "config.json" not in names:
                raise BadConfig("%s is a zip without config.json: not a Keras v3 file" % os.path.basename(path))
            config = parse_json(_zip_member(zf, "config.json", cap, "config.json"), "config.json", limits)
            configs = [("config.json", config)]
            meta = {}
            if "metadata.json" in names:
                meta = parse_json(_zip_member(zf, "metadata.json", cap, "metadata.json"), "metadata.json", limits)
                if not isinstance(meta, dict):
                    raise BadConfig("metadata.json is a JSON %s, not an object" % type(meta).__name__)
                configs.append(("metadata.json", meta))
        if not isinstance(config, dict):
            raise BadConfig("config.json is a JSON %s, not an object" % type(config).__name__)
        return dict(_prov(meta, ("keras_version", "backend", "date_saved")),
                    source="metadata.json in the .keras zip"), configs
    if fmt == "json+weights":
        source = os.path.basename(path)
        config = parse_json(_read_regular(path, cap, source), source, limits)
        return dict(_prov(config, ("keras_version", "backend")), source="the architecture JSON"), [(source, config)]
    if fmt == "savedmodel":
        if not os.path.isdir(path):
            raise BadConfig("%s is not a SavedModel directory" % os.path.basename(path))
        raw = []
        meta_path = os.path.join(path, "keras_metadata.pb")
        if os.path.lexists(meta_path):
            raw.extend(_keras_metadata_nodes(_read_regular(meta_path, limits.pb_bytes, "keras_metadata.pb"),
                                             "keras_metadata.pb"))
        raw.extend(_saved_model_nodes(_read_regular(os.path.join(path, "saved_model.pb"), limits.pb_bytes,
                                                    "saved_model.pb"), "saved_model.pb"))
        configs = [(source, parse_json(data, source, limits)) for source, data in raw]
        prov = {}
        for _source, config in configs:  # the first node that names them (the root model)
            for key, value in _prov(config, ("keras_version", "backend")).items():
                prov.setdefault(key, value)
        return prov, configs
    return {}, []  # an export is graphs and weights: no Keras config is deserialised


def stored_configs(path, fmt, limits=None):
    """``[(source, parsed JSON), ...]``: every stored config a load of ``fmt`` deserialises."""
    return read_stored(path, fmt, limits)[1]


def provenance(path, fmt, limits=None):
    """The saver's provenance (``keras_version``, ``backend``, ``date_saved`` where stored,
    ``source``), read with the same bounded readers as :func:`stored_configs`."""
    return read_stored(path, fmt, limits)[0]


# ============================================================== the allowlist

# Lambda-like layers: they call code or arbitrary TF symbols named by the file; never
# allowed by class name (Lambda always refused; TF-op layers checked against TF_OPS).
LAMBDA_LIKE = frozenset(["Lambda", "TFOpLambda", "SlicingOpLambda", "ClassMethod", "InstanceMethod",
                         "InstanceProperty", "TensorFlowOpLayer"])
# Built-in classes that are not inert: they load other files or unpickle/run code.
EXCLUDED_CLASSES = frozenset(["TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"]) | LAMBDA_LIKE
EXCLUDED_FUNCTIONS = frozenset(["get", "serialize", "deserialize"])
# Namespaces (relative to the Keras module) whose classes are built-ins ...
CLASS_NAMESPACES = ("", "layers", "layers.experimental", "layers.experimental.preprocessing", "activations",
                    "initializers", "regularizers", "constraints", "losses", "metrics", "optimizers",
                    "optimizers.schedules", "optimizers.legacy", "optimizers.experimental", "models",
                    "mixed_precision", "dtype_policies", "quantizers")
# ... and whose functions are (activation, loss, metric, initializer... functions).
FUNCTION_NAMESPACES = ("activations", "initializers", "regularizers", "constraints", "losses", "metrics")
# Identifier strings (``"activation": "relu"``, ``"loss": "mse"``) come from these.
IDENTIFIER_NAMESPACES = ("activations", "initializers", "regularizers", "constraints", "losses", "metrics",
                         "optimizers", "optimizers.legacy", "optimizers.experimental")
# Strings Keras resolves without a namespace lookup (compile_utils special cases).
EXTRA_IDENTIFIERS = frozenset(["accuracy", "acc", "crossentropy", "ce", "linear"])
# Classes a real load meets that no public namespace exports: (module, class) candidates,
# imported when present ("{root}" is the Keras package: keras, tf_keras).
INTERNAL_CLASSES = (
    ("{root}.src.models.functional", "Functional"),  # Keras 3
    ("{root}.src.engine.functional", "Functional"),  # Keras 2.13-2.15, tf_keras
    ("{root}.engine.functional", "Functional"),  # Keras 2.6-2.12
    ("tensorflow.python.keras.engine.functional", "Functional"),  # TF 2.4-2.5 tf.keras
    ("{root}.src.trainers.compile_utils", "CompileMetrics"),
    ("{root}.src.trainers.compile_utils", "CompileLoss"),
    ("{root}.src.trainers.compile_utils", "MetricsList"),
)
# Config special forms that deserialise to data (walked, never looked up by name).
SPECIAL_DATA = frozenset(["__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__", "__keras_tensor__",
                          "__tuple__", "TensorShape", "CompositeTensor", "TypeSpec", "__typespec__"])
# TF symbols a TFOpLambda/SlicingOpLambda may name (``config.function``, without "tf."):
# pure tensor math and array ops only; ``compat.v1.<name>`` passes when ``<name>`` does.
_TF_OPS_TEXT = """
__operators__.add __operators__.getitem __operators__.eq __operators__.ne __operators__.ge __operators__.gt
__operators__.le __operators__.lt
abs add_n argmax argmin broadcast_to cast clip_by_value concat cumsum einsum expand_dims eye fill gather gather_nd
identity linspace matmul maximum minimum norm one_hot ones ones_like pad range rank reduce_max reduce_mean
reduce_min reduce_prod reduce_sum repeat reshape reverse round shape sign size slice split sqrt square squeeze
stack stop_gradient strided_slice tensordot tile transpose truediv unstack where zeros zeros_like
math.abs math.add math.add_n math.argmax math.argmin math.ceil math.cos math.cosh math.cumprod math.cumsum
math.divide math.divide_no_nan math.equal math.erf math.exp math.expm1 math.floor math.floordiv math.floormod
math.greater math.greater_equal math.l2_normalize math.less math.less_equal math.log math.log1p
math.log_sigmoid math.logical_and math.logical_not math.logical_or math.logical_xor math.maximum math.minimum
math.multiply math.negative math.not_equal math.pow math.reciprocal math.reduce_all math.reduce_any
math.reduce_euclidean_norm math.reduce_logsumexp math.reduce_max math.reduce_mean math.reduce_min
math.reduce_prod math.reduce_std math.reduce_sum math.reduce_variance math.round math.rsqrt math.sigmoid
math.sign math.sin math.sinh math.softplus math.sqrt math.square math.squared_difference math.subtract
math.tan math.tanh math.top_k math.truediv
nn.bias_add nn.elu nn.gelu nn.l2_normalize nn.leaky_relu nn.log_softmax nn.relu nn.relu6 nn.selu nn.sigmoid
nn.silu nn.softmax nn.softplus nn.softsign nn.swish nn.tanh
linalg.matmul linalg.l2_normalize linalg.norm linalg.einsum linalg.matrix_transpose
image.resize
"""
TF_OPS = frozenset(_TF_OPS_TEXT.split())

_IDENT_KEYS = frozenset(["activation", "recurrent_activation", "loss", "losses", "metrics", "weighted_metrics",
                         "optimizer", "fn"])
_IDENT_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
_KERAS_PACKAGES = ("keras", "tf_keras", "tensorflow")
_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _snake(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _is_builtin_module(module):
    return isinstance(module, str) and module.split(".")[0] in _KERAS_PACKAGES


class Allowlist(object):
    """The inert built-ins of one stack's Keras/TF.

    ``classes``: class name -> modules it may be serialised under (public namespaces such
    as ``keras.layers``, the defining ``__module__``); ``functions``: function name ->
    modules likewise; ``identifiers``: strings a ``get()`` resolves to a built-in
    (activations, losses, metrics, optimizers, initializers, regularizers, constraints).
    """

    def __init__(self, classes=None, functions=None, identifiers=(), keras_version=None):
        self.classes = {k: frozenset(v) for k, v in (classes or {}).items()}
        self.functions = {k: frozenset(v) for k, v in (functions or {}).items()}
        self.identifiers = frozenset(identifiers)
        self.keras_version = keras_version

    @staticmethod
    def _ok(table, name, module):
        if not isinstance(name, str) or not (module is None or isinstance(module, str)):
            return False  # JSON lists/dicts where a name belongs: never a built-in
        mods = table.get(name)
        return mods is not None and (module is None or module in mods)

    def class_ok(self, name, module=None):
        """``name`` is a built-in class (serialised under ``module``, when given)."""
        return self._ok(self.classes, name, module)

    def function_ok(self, name, module=None):
        """``name`` is a built-in function (of ``module``, when given)."""
        return self._ok(self.functions, name, module)

    def builtin_function_name(self, name):
        """A function name Keras resolves among its built-in modules (``"module": "builtins"``)."""
        mods = self.functions.get(name) if isinstance(name, str) else None
        mods = mods or ()
        return any(m.split(".")[0] in ("keras", "tf_keras") for m in mods)

    def to_json(self):
        return {"keras_version": self.keras_version, "identifiers": sorted(self.identifiers),
                "classes": {k: sorted(v) for k, v in sorted(self.classes.items())},
                "functions": {k: sorted(v) for k, v in sorted(self.functions.items())}}

    @classmethod
    def from_json(cls, data):
        return cls(data.get("classes"), data.get("functions"), data.get("identifiers", ()), data.get("keras_version"))


def _namespace(root, dotted):
    obj = root
    for part in [p for p in dotted.split(".") if p]:
        try:
            obj = getattr(obj, part)
        except Exception:
            return None
        if obj is None:
            return None
    return obj


def _public_names(ns):
    try:
        names = list(getattr(ns, "__all__", None) or dir(ns))
    except Exception:
        return []
    return [n for n in names if isinstance(n, str) and not n.startswith("_")]


def _canonical_modules(obj, root_name):
    """The modules a Keras serializer writes for a built-in ``obj`` (its public API name:
    Keras 3 ``api_export``, Keras 2 ``tf_export`` under the ``keras`` API)."""
    names = []
    fn = getattr(sys.modules.get("%s.src.api_export" % root_name), "get_name_from_symbol", None)
    if fn is not None:
        try:
            names.append(fn(obj))
        except Exception:
            pass
    fn = getattr(sys.modules.get("tensorflow.python.util.tf_export"), "get_canonical_name_for_symbol", None)
    if fn is not None:
        try:
            names.append(fn(obj, api_name="keras"))
        except Exception:
            pass
    out = set()
    for name in names:
        if isinstance(name, str) and "." in name:
            module = name.rsplit(".", 1)[0]
            out.add(module if module.split(".")[0] in ("keras", "tf_keras") else "keras." + module)
    return out


def builtin_allowlist(keras, tf=None):
    """The :class:`Allowlist` of this stack, built from the Keras module object its users
    call (``tf.keras``, ``keras``, ``tf_keras``) and, optionally, ``tensorflow``:

    - classes exported by :data:`CLASS_NAMESPACES` of ``keras`` (the top level only for
      classes a sub-namespace exports too) whose ``__module__`` is under ``keras``,
      ``tf_keras`` or ``tensorflow``, minus :data:`EXCLUDED_CLASSES` (Lambda-like layers
      and layers that load files or unpickle); each under the public modules it is
      exported from, its ``__module__`` and its canonical API module;
    - functions of :data:`FUNCTION_NAMESPACES` (activations, initializers, regularizers,
      constraints, losses, metrics) likewise, minus ``get``/``serialize``/``deserialize``;
    - :data:`INTERNAL_CLASSES` found in this release (``Functional``, Keras 3 compile
      containers), and built-in classes of the global registry under their registered
      names (Keras 2.11+ registers its optimizers as ``Custom>Adam``);
    - identifier strings: the names of :data:`IDENTIFIER_NAMESPACES` (attribute names,
      class names, lower-case and snake_case class names), the keys of their
      ``ALL_OBJECTS_DICT`` (Keras 3 aliases such as ``mse``) and :data:`EXTRA_IDENTIFIERS`;
    - with ``tf``: the functions of ``tf.nn`` and ``tf.math`` under their defining modules
      (what a Keras 2 ``.keras`` file names for ``activation=tf.nn.relu``).
    """
    import importlib
    import inspect

    root_name = (getattr(keras, "__name__", "keras") or "keras").split(".")[0]
    roots = {"keras", root_name}

    def builtin_obj(obj):
        return (getattr(obj, "__module__", None) or "").split(".")[0] in _KERAS_PACKAGES

    excluded = set()
    for cname in EXCLUDED_CLASSES:
        for ns_name in ("layers", "layers.experimental"):
            obj = getattr(_namespace(keras, ns_name), cname, None)
            if inspect.isclass(obj):
                excluded.add(obj)

    def usable_class(obj):
        return inspect.isclass(obj) and builtin_obj(obj) and obj not in excluded \
            and obj.__name__ not in EXCLUDED_CLASSES

    classes, functions, identifiers = {}, {}, set(EXTRA_IDENTIFIERS)
    seen_classes = set()
    for ns_name in [n for n in CLASS_NAMESPACES if n] + [""] + list(FUNCTION_NAMESPACES):
        ns = _namespace(keras, ns_name)
        if ns is None:
            continue
        public = {r + ("." + ns_name if ns_name else "") for r in roots}
        for attr in _public_names(ns):
            try:
                obj = getattr(ns, attr)
            except Exception:
                continue
            if ns_name in CLASS_NAMESPACES and usable_class(obj):
                if attr in EXCLUDED_CLASSES or (not ns_name and obj not in seen_classes):
                    continue  # the top level only re-exports what a modeling namespace has
                seen_classes.add(obj)
                mods = public | {obj.__module__} | _canonical_modules(obj, root_name)
                for name in (attr, obj.__name__):
                    classes.setdefault(name, set()).update(mods)
                if ns_name in IDENTIFIER_NAMESPACES:
                    identifiers.update([attr, obj.__name__, obj.__name__.lower(), _snake(obj.__name__)])
            elif ns_name in FUNCTION_NAMESPACES and builtin_obj(obj) and callable(obj) \
                    and not inspect.isclass(obj) and not inspect.ismodule(obj) and attr not in EXCLUDED_FUNCTIONS:
                name = getattr(obj, "__name__", attr)
                mods = public | {obj.__module__} | _canonical_modules(obj, root_name)
                for n in {attr, name}:
                    functions.setdefault(n, set()).update(mods)
                identifiers.update([attr, name])
    for ns_name in IDENTIFIER_NAMESPACES:  # what ``<namespace>.get(name)`` resolves (Keras 3: "mse")
        for root in roots:
            table = getattr(sys.modules.get("%s.src.%s" % (root, ns_name)), "ALL_OBJECTS_DICT", None)
            for key, obj in (table.items() if isinstance(table, dict) else ()):
                if isinstance(key, str) and builtin_obj(obj) and obj not in excluded:
                    identifiers.add(key)
    for module_tpl, cname in INTERNAL_CLASSES:
        module_name = module_tpl.format(root=root_name)
        if module_name.split(".")[0] not in sys.modules:
            continue  # never import a package this stack's Keras did not
        try:
            obj = getattr(importlib.import_module(module_name), cname, None)
        except Exception:
            obj = None
        if usable_class(obj):
            classes.setdefault(cname, set()).update([module_name, obj.__module__])
    for key, obj in _registry(keras).items():  # built-ins registered by name ("Custom>Adam" in Keras 2.11+)
        if usable_class(obj) and obj.__name__ in classes:
            classes.setdefault(key, set()).update(classes[obj.__name__])
    if tf is not None:
        for ns_name in ("nn", "math"):
            ns = _namespace(tf, ns_name)
            for attr in _public_names(ns) if ns is not None else ():
                try:
                    obj = getattr(ns, attr)
                except Exception:
                    continue
                if callable(obj) and not inspect.isclass(obj) and builtin_obj(obj) \
                        and attr not in EXCLUDED_FUNCTIONS:
                    for n in {attr, getattr(obj, "__name__", attr)}:
                        functions.setdefault(n, set()).update([obj.__module__, "tensorflow." + ns_name])
    if root_name == "tf_keras":  # tf_keras reads "keras.X" modules as "tf_keras.X"
        for table in (classes, functions):
            for mods in table.values():
                mods.update(["keras." + m[len("tf_keras."):] for m in list(mods) if m.startswith("tf_keras.")])
    version = getattr(keras, "__version__", None) or getattr(sys.modules.get(root_name), "__version__", None)
    return Allowlist(classes, functions, identifiers, str(version) if version else None)


def _registry(keras):
    """This Keras' global custom-object registry (name -> object), or {}."""
    for ns_name in ("saving", "utils"):
        get = getattr(_namespace(keras, ns_name), "get_custom_objects", None)
        if callable(get):
            try:
                return dict(get())
            except Exception:
                continue
    return {}


def custom_names_of(custom_objects=None, keras=None):
    """The names a load can resolve through the user's custom objects: the dict's keys and
    its values' ``__name__`` (``--custom-objects``), plus every name in this Keras'
    global registry (``register_keras_serializable`` in the user's file put them there)."""
    names = set()
    for key, value in (custom_objects or {}).items():
        names.add(str(key))
        if getattr(value, "__name__", None):
            names.add(value.__name__)
    if keras is not None:
        names.update(str(k) for k in _registry(keras))
    return frozenset(names)


# ============================================================== the scan


def _custom(name, custom_names):
    if not isinstance(name, str) or not custom_names:
        return False
    return name in custom_names or (">" in name and name.split(">", 1)[1] in custom_names)


class Finding(tuple):
    """``(json_path, reason)``, plus ``kind``: ``"code"`` (the load would run or import
    Python named by the file: bytecode, a function or class from a module, a TF symbol),
    ``"custom"`` (a class/function/name that is not a built-in of this Keras: only a
    custom-object registry could resolve it) or ``"file"`` (a built-in that reads another
    file named by the config). Compares and unpacks as the 2-tuple."""

    def __new__(cls, path, reason, kind):
        self = tuple.__new__(cls, (path, reason))
        self.kind = kind
        return self

    def __getnewargs__(self):
        return (self[0], self[1], self.kind)

    @property
    def path(self):
        return self[0]

    @property
    def reason(self):
        return self[1]


def _lambda_reason(config):
    config = config if isinstance(config, dict) else {}
    fn, kind = config.get("function"), config.get("function_type")
    if kind == "lambda" or isinstance(fn, list) or (isinstance(fn, dict) and fn.get("class_name") == "__lambda__"):
        return "Lambda layer: serialized Python bytecode"
    if isinstance(fn, dict) and fn.get("class_name") == "function":
        return "Lambda layer: Python function %s.%s" % (fn.get("module"), fn.get("config"))
    if kind == "function" or isinstance(fn, str):
        return "Lambda layer: Python function %s.%s" % (config.get("module"), fn)
    return "Lambda layer: Python code (function_type %r)" % (kind,)


_LAMBDA_CODE_KEYS = ("function", "output_shape", "mask")  # one finding per Lambda layer covers these
_VOCABULARY_LAYERS = frozenset(["StringLookup", "IntegerLookup", "TextVectorization"])


def _check_function(obj, allowed, custom_names):
    name, module, registered = obj.get("config"), obj.get("module"), obj.get("registered_name")
    has_module = module is not None
    if not isinstance(name, str):
        return "code", "function with a non-string name (%s)" % type(name).__name__
    if _custom(name, custom_names):
        return None
    if registered not in (None, name, "function") and not _custom(registered, custom_names):
        return "custom", "function %s registered as %r (a custom object)" % (name, registered)
    if not has_module:
        ok = allowed.function_ok(name)
    elif module == "builtins":
        ok = allowed.builtin_function_name(name)
    else:
        ok = allowed.function_ok(name, module)
    if ok:
        return None
    if has_module and module != "builtins" and not _is_builtin_module(module):
        return "code", "Python function %s.%s, imported on load" % (module, name)
    return "custom", "function %s%s is not a built-in of this Keras" % (
        (module + ".") if isinstance(module, str) else "", name)


def _check_object(obj, allowed, custom_names):
    """``(kind, reason)`` of an object dict (one with ``class_name``), or None when inert."""
    name = obj.get("class_name")
    cfg = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    module = obj.get("module")
    has_module = module is not None  # Keras never imports a module that is absent or null
    registered = obj.get("registered_name")
    builtin_module = not has_module or _is_builtin_module(module)
    if not isinstance(name, str):
        return "code", "an object whose class_name is a %s" % type(name).__name__
    if name == "__lambda__":
        return "code", "serialized Python bytecode (Keras 3 __lambda__)"
    if name == "Lambda":
        return "code", _lambda_reason(obj.get("config"))
    if name in ("TFOpLambda", "SlicingOpLambda"):
        fn = cfg.get("function")
        base = fn[len("compat.v1."):] if isinstance(fn, str) and fn.startswith("compat.v1.") else fn
        if isinstance(base, str) and base in TF_OPS and builtin_module:
            return None
        return "code", "%s calls tf.%s, outside the allowlist of pure tensor ops" % (name, fn)
    if name in ("InstanceProperty", "InstanceMethod"):
        attr = cfg.get("attr_name")
        if isinstance(attr, str) and _SAFE_NAME.match(attr) and builtin_module:
            return None
        return "code", "%s reads tensor attribute %r" % (name, attr)
    if name in ("ClassMethod", "TensorFlowOpLayer"):
        node = cfg.get("node_def") if isinstance(cfg.get("node_def"), dict) else {}
        return "code", "%s runs a TF symbol the file names (%s)" % (name, cfg.get("cls_symbol") or node.get("op"))
    if name == "TypeSpec":
        return None if isinstance(obj.get("type_spec"), str) else ("code", "TypeSpec without a type_spec name")
    if name == "__typespec__":
        spec = obj.get("spec_name")
        if isinstance(spec, str) and _SAFE_NAME.match(spec) and isinstance(module, str) \
                and module.split(".")[0] == "tensorflow" and registered is None:
            return None
        return "code", "type spec %s from module %s" % (spec, module)
    if name in SPECIAL_DATA:
        return None
    if name == "function":
        return _check_function(obj, allowed, custom_names)
    if name in _VOCABULARY_LAYERS and isinstance(cfg.get("vocabulary"), str):
        return "file", "%s reads its vocabulary from the file %r" % (name, cfg["vocabulary"])
    if has_module:
        if (registered in (None, name) or allowed.class_ok(registered)) and allowed.class_ok(name, module):
            return None
        if isinstance(registered, str) and registered in custom_names:
            return None  # what Keras looks up first (custom objects and the registry)
        if not _is_builtin_module(module):
            return "code", "class %s from module %s, imported on load" % (name, module)
        if isinstance(registered, str) and registered != name:
            return "custom", "custom class %s registered as %r (module %s)" % (name, registered, module)
        return "custom", "class %s (module %s) is not a built-in of this Keras" % (name, module)
    if allowed.class_ok(name) or _custom(name, custom_names):
        return None
    if ">" in name:
        return "custom", "custom class %s (a registered name)" % name
    return "custom", "class %s is not a built-in of this Keras" % name


def _ident_key(key):
    return isinstance(key, str) and (key in _IDENT_KEYS or key.endswith(_IDENT_SUFFIXES))


def resolvable_in_stack(module, name):
    """Whether Keras, loading in this process, could resolve ``name`` in ``module`` (a Keras
    or TF module path a config names): False when the module does not exist in this release
    (its parent package lacks it) or is loaded and lacks the name; True otherwise (exists
    but is not imported yet: assume it resolves). Imports nothing beyond parent packages."""
    if not isinstance(module, str) or not _is_builtin_module(module):
        return True
    if module in sys.modules:
        return hasattr(sys.modules[module], str(name))
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def scan(configs, allowed, custom_names=frozenset(), unsafe=False, limits=None, resolves=None):
    """:class:`Finding` s ``(json_path, reason)`` over ``configs`` (``[(source, tree)]``, as
    :func:`stored_configs` returns), in document order. Iterative: no recursion limit.

    ``allowed``: the loading stack's :class:`Allowlist`. ``custom_names``: names the user's
    custom objects define or register (:func:`custom_names_of`); they pass as classes,
    functions and identifier strings, never as Lambda layers. ``unsafe``: ``[]`` -- the
    user allowed the file's code and takes responsibility for all of it.

    ``resolves(module, name)`` (a stack passes :func:`resolvable_in_stack`): a ``custom``
    finding -- a name that is not a built-in of this release -- is kept only when the
    loader could resolve it to something: module-qualified and present in this release.
    A name Keras cannot resolve (a module path of another release, a class no registry
    holds) makes the load fail on its own with nothing run, so the loader's own error
    (and its diagnosis) stands. ``code`` and ``file`` findings are always kept.
    """
    if unsafe:
        return []
    limits = _limits(limits)
    custom_names = frozenset(custom_names or ())
    findings = []
    seen = 0
    for source, tree in configs:
        stack = [(tree, str(source), False)]
        while stack:
            value, path, ident = stack.pop()
            seen += 1
            if seen > limits.nodes:
                raise ConfigTooLarge("the stored configs have more than %d JSON nodes" % limits.nodes)
            if isinstance(value, dict):
                skip = ()
                if "class_name" in value:
                    found = _check_object(value, allowed, custom_names)
                    if found and (found[0] != "custom" or resolves is None or (
                            value.get("module") is not None and resolves(
                                value.get("module"), value.get("config") if value.get("class_name") == "function"
                                else value.get("class_name")))):
                        findings.append(Finding(path, found[1], found[0]))
                    ident = False
                    if value.get("class_name") == "function":
                        skip = ("config",)  # the function's name: checked above
                children = []
                for key, child in value.items():
                    if key in skip:
                        continue
                    if key == "config" and value.get("class_name") == "Lambda" and isinstance(child, dict):
                        child = {k: v for k, v in child.items() if k not in _LAMBDA_CODE_KEYS}
                    children.append((child, "%s/%s" % (path, key), ident or _ident_key(key)))
                stack.extend(reversed(children))
            elif isinstance(value, (list, tuple)):
                stack.extend(reversed([(child, "%s/%d" % (path, i), ident) for i, child in enumerate(value)]))
            elif ident and isinstance(value, str) and value not in allowed.identifiers \
                    and not _custom(value, custom_names) and resolves is None:
                findings.append(Finding(path, "%r is not a built-in name of this Keras (only a custom-object "
                                                  "registry could resolve it)" % value, "custom"))
    return findings


def describe(findings, limit=3):
    """One line for a refusal: the first ``limit`` findings and how many more."""
    if not findings:
        return "nothing that runs code or needs custom objects"
    shown = "; ".join("%s: %s" % (path, reason) for path, reason in findings[:limit])
    more = len(findings) - limit
    return shown + (" and %d more" % more if more > 0 else "")
