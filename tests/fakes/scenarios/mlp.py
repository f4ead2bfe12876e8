"""Fake-tier Sequential MLP (fast, every format)."""

ATOL = 1e-6
RTOL = 1e-6


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [keras.Input(shape=(4,)), layers.Dense(5, activation="relu", name="hidden"),
         layers.Dense(2, name="out")],
        name="mlp",
    )


def inputs(np):
    return np.random.RandomState(0).uniform(-1.0, 1.0, size=(6, 4)).astype("float32")
