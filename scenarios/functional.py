"""Functional API model with two named inputs merged into one output."""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    features = keras.Input(shape=(6,), name="features")
    extra = keras.Input(shape=(3,), name="extra")
    x = layers.Dense(8, activation="tanh", name="encode")(features)
    x = layers.Concatenate(name="merge")([x, extra])
    out = layers.Dense(2, name="head")(x)
    return keras.Model(inputs=[features, extra], outputs=out, name="functional_two_inputs")


def inputs(np):
    rng = np.random.RandomState(1)
    return [
        rng.uniform(-1.0, 1.0, size=(10, 6)).astype("float32"),
        rng.uniform(-1.0, 1.0, size=(10, 3)).astype("float32"),
    ]
