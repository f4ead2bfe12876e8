"""Fake-tier scenario with a bug: build raises an ordinary error (a save_error, not n/a)."""


def build(keras):
    raise KeyError("scenario bug")


def inputs(np):
    return np.zeros((1, 1), "float32")
