"""A custom layer that is *not* registered: only ``custom_objects`` can bring it back.

``default``: the loader has only the file, as a user who never imported the class.
``custom_objects``: the loader imports this module and passes ``{"Affine": cls}``.
"""

ATOL = 1e-5
RTOL = 1e-5
LOAD_VARIANTS = ("default", "custom_objects")

_classes = {}


def affine_class(keras):
    """Define (once per Keras module) the unregistered ``Affine`` layer."""
    if id(keras) in _classes:
        return _classes[id(keras)]

    class Affine(keras.layers.Layer):
        """y = x * w + b elementwise, plus a constant offset from the config."""

        def __init__(self, offset=0.0, **kwargs):
            super(Affine, self).__init__(**kwargs)
            self.offset = float(offset)

        def build(self, input_shape):
            dim = int(input_shape[-1])
            self.w = self.add_weight(name="w", shape=(dim,), initializer="ones")
            self.b = self.add_weight(name="b", shape=(dim,), initializer="zeros")
            super(Affine, self).build(input_shape)

        def call(self, inputs):
            return inputs * self.w + self.b + self.offset

        def get_config(self):
            config = super(Affine, self).get_config()
            config.update({"offset": self.offset})
            return config

    _classes[id(keras)] = Affine
    return Affine


def custom_objects(keras):
    return {"Affine": affine_class(keras)}


def build(keras):
    layers = keras.layers
    affine = affine_class(keras)
    inp = keras.Input(shape=(5,), name="x")
    x = layers.Dense(6, activation="relu", name="pre")(inp)
    x = affine(offset=0.25, name="affine")(x)
    out = layers.Dense(3, name="post")(x)
    return keras.Model(inputs=inp, outputs=out, name="custom_layer_unregistered")


def inputs(np):
    return np.random.RandomState(12).uniform(-1.0, 1.0, size=(10, 5)).astype("float32")
