"""Fake-tier scenario restricted to the h5 format."""

FORMATS = ("h5",)


def build(keras):
    return keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(2, name="d")],
                            name="h5_only")


def inputs(np):
    return np.ones((3, 2), "float32")
