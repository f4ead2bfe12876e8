"""A tiny numpy "Keras": layers, functional/Sequential models, save and load.

Just enough of the Keras API for the compatibility-matrix worker and the scenarios:
``Input``, ``layers.{Layer, Dense, Concatenate, InputLayer}``, ``Model``, ``Sequential``,
``models.load_model``, the custom-object registry. Python 3.7 syntax.

Saved files: JSON (config + weights as lists) behind the magic bytes of the real format,
so the worker's sniffing sees ``h5`` (HDF5 signature), ``keras_v3`` (a zip) or
``savedmodel`` (a directory with ``saved_model.pb``).
"""

import json
import os
import re
import zipfile

import numpy as np

from . import _behavior
from . import utils as _utils

H5_MAGIC = b"\x89HDF\r\n\x1a\n"
PB_MAGIC = b"FAKE-SAVEDMODEL\n"
_name_counts = {}


def reset_names():
    _name_counts.clear()


def _unique_name(prefix):
    n = _name_counts.get(prefix, 0)
    _name_counts[prefix] = n + 1
    return prefix if n == 0 else "%s_%d" % (prefix, n)


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# ----------------------------------------------------------------------- variables


class Variable(object):
    """A named weight; numpy arithmetic works on it (``x * layer.scale``)."""

    __array_priority__ = 100

    def __init__(self, value, name, trainable=True):
        self._value = np.array(value)
        self.name = name
        self.path = name
        self.trainable = trainable

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return self._value.dtype

    def numpy(self):
        return np.array(self._value)

    def assign(self, value):
        value = np.asarray(value)
        if value.shape != self._value.shape:
            raise ValueError("Cannot assign value of shape %s to variable %s of shape %s"
                             % (value.shape, self.name, self._value.shape))
        self._value = value.astype(self._value.dtype)

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __add__(self, other):
        return self._value + np.asarray(other)

    def __radd__(self, other):
        return np.asarray(other) + self._value

    def __sub__(self, other):
        return self._value - np.asarray(other)

    def __rsub__(self, other):
        return np.asarray(other) - self._value

    def __mul__(self, other):
        return self._value * np.asarray(other)

    def __rmul__(self, other):
        return np.asarray(other) * self._value

    def __truediv__(self, other):
        return self._value / np.asarray(other)

    def __neg__(self):
        return -self._value

    def __repr__(self):
        return "<fake Variable %s shape=%s>" % (self.name, self._value.shape)


def _initial_value(initializer, shape, dtype):
    if initializer == "zeros":
        return np.zeros(shape, dtype)
    if initializer == "ones":
        return np.ones(shape, dtype)
    limit = np.sqrt(6.0 / max(1, sum(shape[-2:]) if len(shape) >= 2 else shape[0]))
    return np.random.uniform(-limit, limit, size=shape).astype(dtype)


# -------------------------------------------------------------------------- tensors


class KerasTensor(object):
    """A symbolic tensor: a shape and the layer call that produced it."""

    def __init__(self, shape, layer, inbound):
        self.shape = tuple(shape)
        self.layer = layer
        self.inbound = list(inbound)

    def __repr__(self):
        return "<fake KerasTensor shape=%s from %s>" % (self.shape, self.layer.name)


def _is_symbolic(inputs):
    if isinstance(inputs, KerasTensor):
        return True
    return (isinstance(inputs, (list, tuple)) and len(inputs) > 0
            and all(isinstance(t, KerasTensor) for t in inputs))


# --------------------------------------------------------------------------- layers

_KNOWN_LAYER_KWARGS = ("input_shape", "batch_input_shape", "autocast")


class Layer(object):
    def __init__(self, name=None, trainable=True, dtype=None, **kwargs):
        unknown = sorted(k for k in kwargs if k not in _KNOWN_LAYER_KWARGS)
        if unknown:
            raise TypeError("Keyword argument not understood: %r" % unknown[0])
        self.name = name or _unique_name(_snake(type(self).__name__))
        self.trainable = trainable
        self.dtype = dtype or "float32"
        self._weights = []
        self.built = False
        self._inbound = []
        self._inbound_is_list = False
        self._output = None

    def add_weight(self, name=None, shape=None, initializer="glorot_uniform", dtype=None,
                   trainable=True, **kwargs):
        value = _initial_value(initializer, tuple(int(d) for d in shape), dtype or self.dtype)
        var = Variable(value, "%s/%s:0" % (self.name, name or "w%d" % len(self._weights)),
                       trainable)
        self._weights.append(var)
        return var

    def build(self, input_shape):
        self.built = True

    def call(self, inputs):
        return inputs

    @property
    def weights(self):
        return list(self._weights)

    def get_weights(self):
        return [w.numpy() for w in self._weights]

    def set_weights(self, weights):
        if len(weights) != len(self._weights):
            raise ValueError("Layer %s expects %d weights, received %d"
                             % (self.name, len(self._weights), len(weights)))
        for var, value in zip(self._weights, weights):
            var.assign(value)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _ensure_built(self, input_shape):
        if not self.built:
            self.build(input_shape)
            self.built = True

    def __call__(self, inputs):
        if _is_symbolic(inputs):
            is_list = isinstance(inputs, (list, tuple))
            tensors = list(inputs) if is_list else [inputs]
            shapes = [t.shape for t in tensors]
            self._ensure_built(shapes if is_list else shapes[0])
            zeros = [np.zeros((1,) + tuple(s[1:]), "float32") for s in shapes]
            out = np.asarray(self.call(zeros if is_list else zeros[0]))
            self._inbound, self._inbound_is_list = tensors, is_list
            self._output = KerasTensor((None,) + out.shape[1:], self, tensors)
            return self._output
        if isinstance(inputs, (list, tuple)):
            arrays = [np.asarray(a) for a in inputs]
            self._ensure_built([a.shape for a in arrays])
            return np.asarray(self.call(arrays))
        array = np.asarray(inputs)
        self._ensure_built(array.shape)
        return np.asarray(self.call(array))


def _identity(x):
    return x


def _softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


ACTIVATIONS = {
    None: _identity,
    "linear": _identity,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "softmax": _softmax,
}


class Dense(Layer):
    def __init__(self, units, activation=None, use_bias=True, **kwargs):
        super(Dense, self).__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError("Unknown activation function: '%s'" % (activation,))
        self.units = int(units)
        self.activation = activation
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (int(input_shape[-1]), self.units))
        self.bias = self.add_weight("bias", (self.units,), "zeros") if self.use_bias else None
        self.built = True

    def call(self, inputs):
        y = np.dot(np.asarray(inputs, "float32"), np.asarray(self.kernel))
        if self.bias is not None:
            y = y + self.bias
        return ACTIVATIONS[self.activation](y).astype("float32")

    def get_config(self):
        config = super(Dense, self).get_config()
        config.update({"units": self.units, "activation": self.activation,
                       "use_bias": self.use_bias})
        return config


class Concatenate(Layer):
    def __init__(self, axis=-1, **kwargs):
        super(Concatenate, self).__init__(**kwargs)
        self.axis = axis

    def call(self, inputs):
        return np.concatenate([np.asarray(x) for x in inputs], axis=self.axis)

    def get_config(self):
        config = super(Concatenate, self).get_config()
        config["axis"] = self.axis
        return config


class InputLayer(Layer):
    def __init__(self, shape=None, **kwargs):
        super(InputLayer, self).__init__(**kwargs)
        self.shape = tuple(shape or ())
        self.built = True

    def get_config(self):
        config = super(InputLayer, self).get_config()
        config["shape"] = list(self.shape)
        return config


def Input(shape=None, name=None, dtype=None, batch_size=None, **kwargs):  # noqa: N802
    layer = InputLayer(shape=shape, name=name or _unique_name("input"), dtype=dtype)
    layer._output = KerasTensor((batch_size,) + tuple(shape), layer, [])
    return layer._output


BUILTIN_LAYERS = {"Dense": Dense, "Concatenate": Concatenate, "InputLayer": InputLayer}


def _class_name(layer):
    return _utils._GLOBAL_CUSTOM_NAMES.get(type(layer), type(layer).__name__)


def _layer_class(class_name, custom_objects):
    if class_name in BUILTIN_LAYERS:
        return BUILTIN_LAYERS[class_name]
    custom_objects = custom_objects or {}
    for key in (class_name, class_name.split(">")[-1]):
        if key in custom_objects:
            return custom_objects[key]
    if class_name in _utils._GLOBAL_CUSTOM_OBJECTS:
        return _utils._GLOBAL_CUSTOM_OBJECTS[class_name]
    raise ValueError(_behavior.UNKNOWN_LAYER % class_name)


# --------------------------------------------------------------------------- models


class Model(object):
    """A functional model: ``Model(inputs=..., outputs=..., name=...)``."""

    def __init__(self, inputs=None, outputs=None, name=None, **kwargs):
        self.name = name or _unique_name(_snake(type(self).__name__))
        _behavior.fire("build", self.name)
        self._source = ""
        self._perturb = 0.0
        self.optimizer = None
        self.loss = None
        if inputs is None:
            return
        self._inputs_is_list = isinstance(inputs, (list, tuple))
        self._outputs_is_list = isinstance(outputs, (list, tuple))
        self.inputs = list(inputs) if self._inputs_is_list else [inputs]
        self.outputs = list(outputs) if self._outputs_is_list else [outputs]
        self._layers = []
        seen = set()

        def visit(tensor):
            layer = tensor.layer
            if id(layer) in seen:
                return
            for parent in tensor.inbound:
                visit(parent)
            seen.add(id(layer))
            self._layers.append(layer)

        for out in self.outputs:
            visit(out)

    @property
    def layers(self):
        return list(self._layers)

    @property
    def weights(self):
        return [w for layer in self._layers for w in layer.weights]

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError("You called `set_weights(weights)` on model %s with a weight list "
                             "of length %d, but the model was expecting %d weights."
                             % (self.name, len(weights), len(mine)))
        for var, value in zip(mine, weights):
            var.assign(value)

    def _forward(self, xs):
        values = {}
        for tensor, x in zip(self.inputs, xs):
            values[id(tensor)] = x
        for layer in self._layers:
            if isinstance(layer, InputLayer):
                continue
            args = [values[id(t)] for t in layer._inbound]
            values[id(layer._output)] = layer(args if layer._inbound_is_list else args[0])
        return [values[id(t)] for t in self.outputs]

    def __call__(self, x, training=None):
        """An eager call computes what predict() does (the worker calls models directly)."""
        return self.predict(x)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        _behavior.fire("predict", "%s %s" % (self.name, self._source))
        xs = list(x) if isinstance(x, (list, tuple)) else [x]
        xs = [np.asarray(a, "float32") for a in xs]
        outs = [np.asarray(o, "float32") for o in self._forward(xs)]
        if self._perturb:
            outs = [o + np.float32(self._perturb) for o in outs]
        return outs if self._outputs_is_list else outs[0]

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        from . import optimizers

        self.optimizer = optimizers.get(optimizer)
        self.loss = loss

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", shuffle=True, **kwargs):
        """One optimizer step per epoch over the whole batch (a made-up gradient: see
        keras/optimizers.py)."""
        _behavior.fire("fit", "%s %s" % (self.name, self._source))
        if self.optimizer is None:
            raise RuntimeError("You must call `compile()` before using the model.")
        xs = [np.asarray(a, "float32") for a in (x if isinstance(x, (list, tuple)) else [x])]
        ys = [np.asarray(a, "float32") for a in (y if isinstance(y, (list, tuple)) else [y])]
        for _ in range(int(epochs)):
            error = float(np.mean([np.mean(np.asarray(o, "float32") - t)
                                   for o, t in zip(self._forward(xs), ys)]))
            weights = [w for w in self.weights if w.trainable]
            self.optimizer.apply(weights, [np.float32(0.1 * error) + np.float32(0.05) * np.asarray(w)
                                           for w in weights])

    def get_config(self):
        return {
            "name": self.name,
            "layers": [{"class_name": _class_name(layer), "config": layer.get_config(),
                        "inbound": [t.layer.name for t in layer._inbound],
                        "inbound_is_list": layer._inbound_is_list}
                       for layer in self._layers],
            "input_layers": [t.layer.name for t in self.inputs],
            "output_layers": [t.layer.name for t in self.outputs],
            "inputs_is_list": self._inputs_is_list,
            "outputs_is_list": self._outputs_is_list,
        }

    def save(self, filepath, overwrite=True, save_format=None, **kwargs):
        save_model(self, filepath, save_format=save_format)

    def save_weights(self, filepath, overwrite=True, save_format=None, **kwargs):
        """The weights alone, as HDF5 (the magic bytes, then JSON), whatever the name."""
        filepath = os.fspath(filepath)
        _behavior.fire("save", filepath)
        payload = json.dumps({"weights": [{"dtype": str(w.dtype), "shape": list(w.shape), "data": w.tolist()}
                                          for w in self.get_weights()]}).encode("utf-8")
        with open(filepath, "wb") as fh:
            fh.write(H5_MAGIC + payload)

    def load_weights(self, filepath, **kwargs):
        filepath = os.fspath(filepath)
        if not os.path.exists(filepath):
            raise FileNotFoundError("[Errno 2] Unable to open file (name = '%s')" % filepath)
        with open(filepath, "rb") as fh:
            data = fh.read()
        if not data.startswith(H5_MAGIC):
            raise ValueError("fake keras: %s is not a weights file" % filepath)
        weights = json.loads(data[len(H5_MAGIC):].decode("utf-8"))["weights"]
        self.set_weights([np.array(w["data"], dtype=w["dtype"]).reshape(w["shape"]) for w in weights])

    def summary(self, print_fn=None):
        (print_fn or print)("fake model %s: %d layers" % (self.name, len(self._layers)))


class Sequential(Model):
    def __init__(self, layers=None, name=None, **kwargs):
        super(Sequential, self).__init__(name=name)
        self._inputs_is_list = False
        self._outputs_is_list = False
        self._layers = []
        self._input = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor):
            self._input = layer
            return
        if self._input is not None and not self._layers:
            out = layer(self._input)
        elif self._layers and self._layers[-1]._output is not None:
            out = layer(self._layers[-1]._output)
        else:
            out = None
        self._layers.append(layer)
        if out is not None:
            self.inputs, self.outputs = [self._input], [out]

    def _forward(self, xs):
        x = xs[0]
        for layer in self._layers:
            x = layer(x)
        return [x]

    def get_config(self):
        return {
            "name": self.name,
            "input_shape": list(self._input.shape[1:]) if self._input is not None else None,
            "layers": [{"class_name": _class_name(layer), "config": layer.get_config()}
                       for layer in self._layers],
        }


# ---------------------------------------------------------------------- save / load


def save_model(model, filepath, save_format=None):
    filepath = os.fspath(filepath)
    _behavior.fire("save", filepath)
    if _behavior.keras_major() >= 3:
        if save_format is not None:
            raise ValueError(
                "The `save_format` argument is deprecated in Keras 3. Please remove this "
                "argument and pass a file path with either `.keras` or `.h5` extension."
                "Received: save_format=%s" % save_format)
        if filepath.endswith(".keras"):
            fmt = "keras"
        elif filepath.endswith((".h5", ".hdf5")):
            fmt = "h5"
        else:
            raise ValueError(
                "Invalid filepath extension for saving. Please add either a `.keras` extension "
                "for the native Keras format (recommended) or a `.h5` extension. Use "
                "`model.export(filepath)` if you want to export a SavedModel for use with "
                "TFLite/TFServing/etc. Received: filepath=%s." % filepath)
    elif save_format == "h5" or (save_format is None and filepath.endswith((".h5", ".hdf5"))):
        fmt = "h5"
    elif save_format == "tf":
        fmt = "savedmodel"
    elif save_format is not None:
        raise ValueError("Unknown format \"%s\". Supported formats: \"tf\", \"h5\"" % save_format)
    elif filepath.endswith(".keras"):
        fmt = "h5" if _behavior.setting("keras_as_h5") else "keras"
    else:
        fmt = "savedmodel"
    payload = json.dumps({
        "fake_keras": _behavior.keras_version(),
        "format": fmt,
        "class_name": type(model).__name__,
        "config": model.get_config(),
        "weights": [{"dtype": str(w.dtype), "shape": list(w.shape), "data": w.tolist()}
                    for w in model.get_weights()],
        "training": _training_payload(model),
    }).encode("utf-8")
    if fmt == "h5":
        with open(filepath, "wb") as fh:
            fh.write(H5_MAGIC + payload)
    elif fmt == "keras":
        with zipfile.ZipFile(filepath, "w") as zf:
            zf.writestr("metadata.json", json.dumps({"keras_version": _behavior.keras_version()}))
            zf.writestr("config.json", payload)
    else:
        os.makedirs(os.path.join(filepath, "variables"))
        with open(os.path.join(filepath, "saved_model.pb"), "wb") as fh:
            fh.write(PB_MAGIC + payload)


def _training_payload(model):
    """A compiled model's optimizer, its state and the loss (None when not compiled)."""
    if getattr(model, "optimizer", None) is None:
        return None
    from . import optimizers

    return {"optimizer": optimizers.serialize(model.optimizer), "state": model.optimizer.get_state(),
            "loss": model.loss}


def _restore_training(model, training, matched):
    """Compile the loaded model as it was saved; the ``load`` hook's optimizer actions
    lose (``drop_optimizer``, ``no_optimizer``) or damage (``skew_optimizer``) the state."""
    from . import optimizers

    actions = set(r.get("action") for r in matched)
    if not training or "no_optimizer" in actions:
        return
    model.compile(optimizer=optimizers.deserialize(training["optimizer"]), loss=training.get("loss"))
    if "drop_optimizer" in actions:
        return
    model.optimizer.set_state(training["state"])
    if "skew_optimizer" in actions:
        for slot in model.optimizer.slots.values():
            slot["m"] = -slot["m"]


def _read_payload(filepath):
    keras3 = _behavior.keras_major() >= 3
    if os.path.isdir(filepath):
        if keras3:
            raise ValueError(_behavior.FORMAT_NOT_SUPPORTED % (filepath, filepath))
        pb = os.path.join(filepath, "saved_model.pb")
        if not os.path.exists(pb):
            raise OSError("SavedModel file does not exist at: %s/{saved_model.pbtxt|"
                          "saved_model.pb}" % filepath)
        with open(pb, "rb") as fh:
            return fh.read()[len(PB_MAGIC):]
    if not os.path.exists(filepath):
        raise OSError("No file or directory found at %s" % filepath)
    if keras3 and not filepath.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(_behavior.FORMAT_NOT_SUPPORTED % (filepath, filepath))
    with open(filepath, "rb") as fh:
        data = fh.read()
    if data.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(filepath) as zf:
            return zf.read("config.json")
    if data.startswith(H5_MAGIC):
        return data[len(H5_MAGIC):]
    raise ValueError("fake keras: %s is not a model file" % filepath)


def _from_config(class_name, config, custom_objects):
    if class_name == "Sequential":
        layers = [_layer_class(spec["class_name"], custom_objects).from_config(spec["config"])
                  for spec in config["layers"]]
        head = [Input(shape=tuple(config["input_shape"]))] if config["input_shape"] else []
        return Sequential(head + layers, name=config["name"])
    tensors = {}
    for spec in config["layers"]:
        cls = _layer_class(spec["class_name"], custom_objects)
        if cls is InputLayer:
            conf = spec["config"]
            tensors[conf["name"]] = Input(shape=tuple(conf["shape"]), name=conf["name"])
            continue
        layer = cls.from_config(spec["config"])
        inbound = [tensors[name] for name in spec["inbound"]]
        tensors[layer.name] = layer(inbound if spec["inbound_is_list"] else inbound[0])
    inputs = [tensors[n] for n in config["input_layers"]]
    outputs = [tensors[n] for n in config["output_layers"]]
    return Model(inputs=inputs if config["inputs_is_list"] else inputs[0],
                 outputs=outputs if config["outputs_is_list"] else outputs[0],
                 name=config["name"])


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True, **kwargs):
    filepath = os.fspath(filepath)
    matched = _behavior.fire("load", filepath)
    data = json.loads(_read_payload(filepath).decode("utf-8"))
    model = _from_config(data["class_name"], data["config"], custom_objects)
    model.set_weights([np.array(w["data"], dtype=w["dtype"]).reshape(w["shape"])
                       for w in data["weights"]])
    model._source = filepath
    model._perturb = _behavior.perturbation(matched)
    if compile:
        _restore_training(model, data.get("training"), matched)
    return model
