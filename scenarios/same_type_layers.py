"""Several Dense layers with auto-generated names, in two parallel branches.

The saver's names (``dense``, ``dense_1``, ...) come from a per-process counter; the
loader must restore each weight into the right layer regardless of its own counter.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    inp = keras.Input(shape=(6,))
    a = layers.Dense(5, activation="relu")(inp)
    a = layers.Dense(4)(a)
    b = layers.Dense(5, activation="tanh")(inp)
    b = layers.Dense(4)(b)
    merged = layers.Add()([a, b])
    out = layers.Dense(3)(merged)
    return keras.Model(inputs=inp, outputs=out)


def inputs(np):
    return np.random.RandomState(10).uniform(-1.0, 1.0, size=(7, 6)).astype("float32")
