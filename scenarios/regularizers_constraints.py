"""Regularizers, constraints, initializers and a custom activation, all referenced by name.

``Dense(..., kernel_initializer="he_normal", kernel_regularizer="l2",
kernel_constraint="max_norm", activation="scaled_tanh")``, where ``scaled_tanh`` is a
user function made known by ``get_custom_objects()["scaled_tanh"] = fn`` (the way
keras-team/keras#8636 was answered). Every name is resolved again on load: built-in names
and their serialized forms moved between releases (``Orthogonal`` vs
``OrthogonalInitializer``, ``l1_l2``, ``max_norm`` classes), and a custom activation is
unknown to a loader that did not register it ("Unknown activation function: scaled_tanh",
keras-team/keras#3487; Keras 3: "Could not interpret activation function identifier").

Keras 2.13-2.15 write the function as ``{"class_name": "function", "config":
"scaled_tanh"}``, which their own HDF5 reader cannot read back even with custom_objects
("Unknown activation function: 'function'", keras-team/keras#20833): the .keras file of
the same model loads.

``default``: the loader has only the file. ``custom_objects``: it passes the activation.
The worker restores the custom-object registry after each cell, so the saver's
registration never leaks into a load. Keras 3 looks string activations up among its
built-ins only, so there the layer is given the function object (saved by its name).
"""

ATOL = 1e-5
RTOL = 1e-5
LOAD_VARIANTS = ("default", "custom_objects")

_fns = {}


def scaled_tanh_fn(keras):
    if id(keras) in _fns:
        return _fns[id(keras)]
    ops = getattr(keras, "ops", None) or keras.backend

    def scaled_tanh(x):
        return 1.7159 * ops.tanh(x * (2.0 / 3.0))

    _fns[id(keras)] = scaled_tanh
    return scaled_tanh


def custom_objects(keras):
    return {"scaled_tanh": scaled_tanh_fn(keras)}


def build(keras):
    layers = keras.layers
    fn = scaled_tanh_fn(keras)
    keras.utils.get_custom_objects()["scaled_tanh"] = fn
    # Keras 3 resolves a string activation among its built-ins only ("Could not interpret
    # activation function identifier: scaled_tanh" at build time, measured with 3.15), so
    # a Keras 3 user passes the function itself; it is still saved under its name.
    activation = fn if hasattr(keras, "ops") else "scaled_tanh"
    regularizers = keras.regularizers
    return keras.Sequential(
        [
            keras.Input(shape=(6,)),
            layers.Dense(8, activation=activation, kernel_initializer="he_normal",
                         bias_initializer="ones", kernel_regularizer="l2",
                         bias_regularizer=regularizers.L1L2(l1=1e-4, l2=1e-3),
                         kernel_constraint="max_norm", name="custom_act"),
            layers.Dense(5, activation="elu", kernel_initializer="lecun_uniform",
                         activity_regularizer="l1", kernel_constraint="unit_norm",
                         bias_constraint="non_neg", name="constrained"),
            layers.Dense(2, kernel_initializer="glorot_normal", name="out"),
        ],
        name="regularizers_constraints",
    )


def inputs(np):
    return np.random.RandomState(47).uniform(-1.0, 1.0, size=(7, 6)).astype("float32")
