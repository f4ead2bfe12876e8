"""A custom layer registered with ``@register_keras_serializable`` and a full ``get_config``.

This is the fix the Keras docs give for "Unknown layer" / "Could not locate class"
(keras-team/keras#20579, keras-team/keras-core#689: a registered class must be imported
before ``load_model``): the registry, not ``custom_objects``, finds the class. So the
``custom_objects`` variant here only *imports* this module (which defines and registers
the class) and passes an empty ``custom_objects={}``; ``default`` never imports it. The
config carries a nested serialized activation and an integer, as real layers do. TF 1.x
has no registration decorator, so the pattern cannot be saved there; a TF 1.x loader
given the ``custom_objects`` variant gets the class explicitly (its only way).
"""

ATOL = 1e-5
RTOL = 1e-5
LOAD_VARIANTS = ("default", "custom_objects")
PACKAGE = "compat_scenarios"

_classes = {}


def _register(keras):
    saving = getattr(keras, "saving", None)
    register = getattr(saving, "register_keras_serializable", None)
    if register is None:
        register = getattr(keras.utils, "register_keras_serializable", None)
    if register is None:  # TF 1.x
        return None
    return register(package=PACKAGE)


def gated_dense_class(keras):
    """Define (once per Keras module) and register ``GatedDense``."""
    if id(keras) in _classes:
        return _classes[id(keras)]
    activations = keras.activations

    class GatedDense(keras.layers.Layer):
        """units outputs: activation(x W) * sigmoid(x G)."""

        def __init__(self, units=4, activation="tanh", **kwargs):
            super(GatedDense, self).__init__(**kwargs)
            self.units = int(units)
            self.activation = activations.get(activation)

        def build(self, input_shape):
            dim = int(input_shape[-1])
            self.kernel = self.add_weight(name="kernel", shape=(dim, self.units),
                                          initializer="glorot_uniform")
            self.gate = self.add_weight(name="gate", shape=(dim, self.units),
                                        initializer="glorot_uniform")
            super(GatedDense, self).build(input_shape)

        def call(self, inputs):
            value = self.activation(keras.backend.dot(inputs, self.kernel)
                                    if not hasattr(keras, "ops") else keras.ops.matmul(inputs, self.kernel))
            gate_in = (keras.backend.dot(inputs, self.gate) if not hasattr(keras, "ops")
                       else keras.ops.matmul(inputs, self.gate))
            return value * keras.activations.sigmoid(gate_in)

        def compute_output_shape(self, input_shape):
            return (*tuple(input_shape[:-1]), self.units)

        def get_config(self):
            config = super(GatedDense, self).get_config()
            config.update({"units": self.units,
                           "activation": activations.serialize(self.activation)})
            return config

    register = _register(keras)
    cls = register(GatedDense) if register is not None else GatedDense
    _classes[id(keras)] = cls
    return cls


def custom_objects(keras):
    cls = gated_dense_class(keras)
    if _register(keras) is None:
        # TF 1.x has no registry: importing the module is not enough, pass the class
        return {"GatedDense": cls}
    return {}  # importing the module registered the class: nothing to pass


def build(keras):
    if _register(keras) is None:
        raise NotImplementedError("this Keras has no register_keras_serializable (TF 1.x)")
    layers = keras.layers
    gated = gated_dense_class(keras)
    inp = keras.Input(shape=(6,), name="x")
    x = layers.Dense(5, activation="relu", name="pre")(inp)
    x = gated(units=4, activation="tanh", name="gated")(x)
    out = layers.Dense(2, name="post")(x)
    return keras.Model(inputs=inp, outputs=out, name="registered_custom_layer")


def inputs(np):
    return np.random.RandomState(40).uniform(-1.0, 1.0, size=(9, 6)).astype("float32")
