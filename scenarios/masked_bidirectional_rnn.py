"""Variable-length token sequences: Embedding(mask_zero=True) into a Bidirectional LSTM.

Zero-padded sequences of different lengths are masked; the mask must reach every
recurrent layer through the Bidirectional wrapper in the loader too, or the padded steps
change the result. Bidirectional models have a long record of breaking on load:
"Loading a saved Bidirectional LSTM is broken" (keras-team/keras#10626, a weight file
"containing 3 layers into a model with 0 layers"), and Keras 2.13-2.15 and 3.0 failing to
load each other's Bidirectional ``.keras`` files (keras-team/keras#18913). As in ``rnn``,
constructor defaults are left as each release has them (TF 1.x: hard_sigmoid). One
recurrent layer, unrolled: TF 2.15 took 140 s to write a SavedModel of a Bidirectional
LSTM followed by a Bidirectional GRU, and still 40-48 s for one Bidirectional LSTM (the
fused-kernel selection traces each masked RNN several times), against a 60-second save
limit; ``unroll=True`` (7 steps) takes the plain cell path and saves in about 20 s.
"""

ATOL = 1e-5
RTOL = 1e-5
VOCAB = 12


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(7,), dtype="int32"),
            layers.Embedding(VOCAB, 4, mask_zero=True, name="embed"),
            layers.Bidirectional(layers.LSTM(4, unroll=True, name="lstm"), name="bi_lstm"),
            layers.Dense(2, name="out"),
        ],
        name="masked_bidirectional_rnn",
    )


def inputs(np):
    rng = np.random.RandomState(35)
    tokens = rng.randint(1, VOCAB, size=(6, 7))
    lengths = [7, 5, 3, 1, 6, 2]
    for row, n in enumerate(lengths):
        tokens[row, n:] = 0  # post-padding, masked by the Embedding
    return tokens.astype("int32")
