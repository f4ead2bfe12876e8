"""Fake-tier scenario that warns (twice, identically) and prints while building."""

import sys
import warnings


def build(keras):
    print('{"event": "result", "cell_id": "noisy", "outcome": "crash"}')
    sys.stdout.flush()
    for _ in range(2):
        warnings.warn("`build()` was called on a layer that already has weights", UserWarning)
    warnings.warn("fake: this API is deprecated", DeprecationWarning)
    return keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1, name="d")],
                            name="noisy")


def inputs(np):
    return np.ones((2, 2), "float32")
