"""Fake-tier registered custom layer, loaded with and without custom_objects."""

ATOL = 1e-6
RTOL = 1e-6
LOAD_VARIANTS = ("default", "custom_objects")
PACKAGE = "compat_scenarios"


def scale_shift_class(keras):
    class ScaleShift(keras.layers.Layer):
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
            config["init_scale"] = self.init_scale
            return config

    return keras.utils.register_keras_serializable(package=PACKAGE)(ScaleShift)


def custom_objects(keras):
    return {"ScaleShift": scale_shift_class(keras)}


def build(keras):
    cls = scale_shift_class(keras)
    inp = keras.Input(shape=(3,), name="x")
    x = keras.layers.Dense(4, name="pre")(inp)
    out = cls(init_scale=2.0, name="scale_shift")(x)
    return keras.Model(inputs=inp, outputs=out, name="custom")


def inputs(np):
    return np.random.RandomState(2).uniform(-1.0, 1.0, size=(5, 3)).astype("float32")
