"""Functional model with two named inputs and two named outputs (list order matters)."""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    signal = keras.Input(shape=(10,), name="signal")
    meta = keras.Input(shape=(4,), name="meta")
    a = layers.Dense(8, activation="relu", name="signal_enc")(signal)
    b = layers.Dense(4, activation="tanh", name="meta_enc")(meta)
    joint = layers.Concatenate(name="joint")([a, b])
    score = layers.Dense(1, name="score")(joint)
    probs = layers.Dense(3, activation="softmax", name="class_probs")(joint)
    # Outputs are a list, so predict() returns them in this order in every release.
    return keras.Model(inputs=[signal, meta], outputs=[score, probs], name="multi_io")


def inputs(np):
    rng = np.random.RandomState(3)
    return [
        rng.uniform(-1.0, 1.0, size=(8, 10)).astype("float32"),
        rng.uniform(-1.0, 1.0, size=(8, 4)).astype("float32"),
    ]
