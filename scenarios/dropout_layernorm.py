"""Dropout and LayerNormalization: inference ignores dropout, so outputs are deterministic."""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    if not hasattr(layers, "LayerNormalization"):
        raise NotImplementedError("this Keras has no LayerNormalization layer")
    return keras.Sequential(
        [
            keras.Input(shape=(10,)),
            layers.Dense(12, activation="relu", name="hidden"),
            layers.Dropout(0.5, name="dropout"),
            layers.LayerNormalization(name="layernorm"),
            layers.Dense(3, name="out"),
        ],
        name="dropout_layernorm",
    )


def inputs(np):
    return np.random.RandomState(8).uniform(-1.0, 1.0, size=(8, 10)).astype("float32")
