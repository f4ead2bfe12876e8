"""A Lambda layer wrapping a Python lambda (serialised as bytecode).

Keras 3 refuses to deserialise a Python lambda unless ``safe_mode=False``; Keras 2 HDF5
stores marshalled bytecode, which another Python version may not read. Both are
findings, not scenario bugs.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(6,)),
            layers.Dense(4, name="dense"),
            layers.Lambda(lambda t: t * 2.0 + 1.0, name="affine_lambda"),
            layers.Dense(2, name="out"),
        ],
        name="lambda_layer",
    )


def inputs(np):
    return np.random.RandomState(14).uniform(-1.0, 1.0, size=(8, 6)).astype("float32")
