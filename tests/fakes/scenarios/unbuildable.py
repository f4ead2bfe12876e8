"""Fake-tier scenario whose model cannot exist in this stack (build raises NotImplementedError)."""


def build(keras):
    raise NotImplementedError("needs keras.layers.Imaginary, which this stack lacks")


def inputs(np):
    return np.zeros((1, 1), "float32")
