"""Small CNN: Conv2D, MaxPooling2D, BatchNormalization (moving stats), Flatten, Dense."""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 3)),
            layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
            layers.MaxPooling2D(2, name="pool"),
            layers.BatchNormalization(name="bn"),
            layers.Flatten(name="flatten"),
            layers.Dense(5, activation="softmax", name="probs"),
        ],
        name="cnn",
    )


def inputs(np):
    return np.random.RandomState(4).uniform(0.0, 1.0, size=(6, 8, 8, 3)).astype("float32")
