"""A registered custom layer: the seed's "unknown layer" failure.

Loaded two ways. ``default``: the loader never imported this module, as a user who
only has the model file. ``custom_objects``: the loader imports it and passes the class,
the documented fix.
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
    if register is None:  # TF 1.15: no registry decorator; custom_objects is the only way
        return lambda cls: cls
    return register(package=PACKAGE)


def scale_shift_class(keras):
    """Define (once per Keras module) and register the ``ScaleShift`` layer."""
    if id(keras) in _classes:
        return _classes[id(keras)]

    class ScaleShift(keras.layers.Layer):
        """y = x * scale + shift, with one learned scale and shift per feature."""

        def __init__(self, init_scale=1.0, **kwargs):
            super(ScaleShift, self).__init__(**kwargs)
            self.init_scale = float(init_scale)

        def build(self, input_shape):
            dim = int(input_shape[-1])
            self.scale = self.add_weight(name="scale", shape=(dim,), initializer="ones")
            self.shift = self.add_weight(name="shift", shape=(dim,), initializer="zeros")
            super(ScaleShift, self).build(input_shape)

        def call(self, inputs):
            return inputs * self.scale * self.init_scale + self.shift

        def get_config(self):
            config = super(ScaleShift, self).get_config()
            config.update({"init_scale": self.init_scale})
            return config

    cls = _register(keras)(ScaleShift)
    _classes[id(keras)] = cls
    return cls


def custom_objects(keras):
    return {"ScaleShift": scale_shift_class(keras)}


def build(keras):
    layers = keras.layers
    scale_shift = scale_shift_class(keras)
    inp = keras.Input(shape=(5,), name="x")
    x = layers.Dense(6, activation="relu", name="pre")(inp)
    x = scale_shift(init_scale=2.0, name="scale_shift")(x)
    out = layers.Dense(3, name="post")(x)
    return keras.Model(inputs=inp, outputs=out, name="custom_layer")


def inputs(np):
    return np.random.RandomState(2).uniform(-1.0, 1.0, size=(12, 5)).astype("float32")
