"""String inputs through a ``StringLookup`` with a fixed vocabulary, inside the model.

Text models ship their preprocessing inside the saved model, so the file is called on raw
strings. The vocabulary lives in the layer config (and a lookup table, not a weight):
"StringLookup layer does not retrieve vocabulary after saving and loading the model"
(tensorflow/tensorflow#61369, keras-team/keras#18376), and an exported Keras 3 SavedModel
with TextVectorization expects float inputs instead of strings (keras-team/keras#19396,
"could not convert string to float"). Keras 3 has string tensors only on the TensorFlow
backend, and TF 1.x has no StringLookup, so those stacks cannot build it.

The inputs are a numpy unicode array (no pickling in ``reference.npz``); out-of-vocabulary
tokens map to the OOV index.
"""

ATOL = 1e-5
RTOL = 1e-5
VOCAB = ["red", "green", "blue", "cyan", "magenta"]


def _string_lookup(keras):
    backend = getattr(keras.backend, "backend", None)
    if callable(backend) and backend() != "tensorflow":
        raise NotImplementedError("Keras 3 has string tensors only on the TensorFlow backend, "
                                  "this stack runs %s" % backend())
    layers = keras.layers
    cls = getattr(layers, "StringLookup", None)
    if cls is None:
        cls = getattr(getattr(getattr(layers, "experimental", None), "preprocessing", None),
                      "StringLookup", None)
    if cls is None:
        raise NotImplementedError("this Keras has no StringLookup layer (TF >= 2.4)")
    return cls


def build(keras):
    layers = keras.layers
    lookup = _string_lookup(keras)(vocabulary=VOCAB, name="lookup")
    inp = keras.Input(shape=(3,), dtype="string", name="colors")
    ids = lookup(inp)
    # TF 2.4-2.5 reserve index 0 for a mask token "" by default (one more index than later
    # releases): size the Embedding from the layer, as a user of that release had to
    size = getattr(lookup, "vocabulary_size", None) or lookup.vocab_size
    x = layers.Embedding(int(size()), 4, name="embed")(ids)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    out = layers.Dense(2, name="out")(x)
    return keras.Model(inputs=inp, outputs=out, name="string_lookup")


def inputs(np):
    words = [*VOCAB, "black", "white"]  # two out-of-vocabulary tokens
    rng = np.random.RandomState(39)
    return np.array([[words[i] for i in row] for row in rng.randint(0, len(words), size=(6, 3))])
