"""Embedding over int32 token ids, averaged and classified."""

ATOL = 1e-5
RTOL = 1e-5
VOCAB = 20


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(7,), dtype="int32"),
            layers.Embedding(VOCAB, 5, name="embed"),
            layers.GlobalAveragePooling1D(name="pool"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="embedding",
    )


def inputs(np):
    return np.random.RandomState(7).randint(0, VOCAB, size=(9, 7)).astype("int32")
