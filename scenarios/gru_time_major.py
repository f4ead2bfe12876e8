"""A GRU sequence classifier saved as HDF5 by Keras 2: Keras 3 refuses its ``time_major`` key.

keras-team/keras#20750 ("Unrecognized keyword arguments passed to GRU: {'time_major':
False} using TensorFlow 2.18"): a user's ``.h5`` GRU model, written by TF 2.x's Keras 2,
cannot be loaded by Keras 3, which removed the argument and refuses every constructor
argument it does not know, although the file only records the default (False).
``scenarios/rnn.py`` hits the same key first in its LSTM (LSTM -> GRU -> Dense), so the
GRU wording of the issue never appears there; here the GRU is the only recurrent layer.
``custom_objects`` hands the loader the workaround users write: a ``GRU`` subclass that
drops ``time_major`` (harmless in Keras 2, where False is the default).

Seen for real (2026-12-07): the .h5 and .keras files of Keras 2.15 and tf_keras 2.21 fail
with the issue's message in Keras 3.4.1, 3.5.0, 3.13.2 and 3.15.1 (Keras 3.3.3 stops earlier:
"Could not interpret initializer identifier ... Orthogonal"); the custom_objects GRU fixes the
.h5 file (verified) but not the .keras one (Keras 3's .keras reader keeps its built-in GRU);
tf_keras (tf2.21-tfkeras) loads both.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(6, 4)),
            layers.GRU(5, name="gru"),
            layers.Dense(2, activation="softmax", name="probs"),
        ],
        name="gru_time_major",
    )


def inputs(np):
    return np.random.RandomState(25).uniform(-1.0, 1.0, size=(5, 6, 4)).astype("float32")


def custom_objects(keras):
    base = keras.layers.GRU

    class GRU(base):
        """The built-in GRU, minus the ``time_major`` argument Keras 3 no longer takes."""

        def __init__(self, *args, **kwargs):
            kwargs.pop("time_major", None)
            super(GRU, self).__init__(*args, **kwargs)

    return {"GRU": GRU}
