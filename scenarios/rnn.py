"""Stacked recurrent layers: LSTM (return_sequences) into GRU into Dense.

Constructor defaults are left as each release has them, as a user's model would: TF 1.x
writes ``recurrent_activation="hard_sigmoid"`` and GRU ``reset_after=False`` into the
config, TF 2 / Keras 3 ``"sigmoid"`` and ``reset_after=True``. Keras 3 redefined
``hard_sigmoid`` (slope 1/6 instead of 0.2), so a TF 1.x LSTM/GRU loaded by Keras 3 may
compute different numbers: that is a finding, not a scenario bug.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(5, 3)),
            layers.LSTM(6, return_sequences=True, name="lstm"),
            layers.GRU(4, name="gru"),
            layers.Dense(2, name="out"),
        ],
        name="rnn",
    )


def inputs(np):
    return np.random.RandomState(6).uniform(-1.0, 1.0, size=(4, 5, 3)).astype("float32")
