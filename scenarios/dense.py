"""Plain Sequential MLP: the smallest model every release can save and load."""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(8,)),
            layers.Dense(16, activation="relu", name="hidden"),
            layers.Dense(4, activation="softmax", name="probs"),
        ],
        name="dense",
    )


def inputs(np):
    return np.random.RandomState(0).uniform(-1.0, 1.0, size=(16, 8)).astype("float32")
