"""Models used as layers: a Sequential encoder and a functional head inside a functional model.

Seen for real: Keras 3.6 (TF 2.18) loops forever in ``functional_from_config`` on a
Keras 2 HDF5 file of this model (recorded as timeout); Keras 3.15 rejects the same file
("Invalid Functional model configuration ... loops or disconnected nodes").
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    encoder = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            layers.Dense(8, activation="relu", name="enc_dense"),
            layers.Dense(5, activation="tanh", name="enc_proj"),
        ],
        name="encoder",
    )
    head_in = keras.Input(shape=(5,), name="head_in")
    head_out = layers.Dense(2, name="head_dense")(head_in)
    head = keras.Model(inputs=head_in, outputs=head_out, name="head")

    inp = keras.Input(shape=(6,), name="x")
    z = encoder(inp)
    out = head(z)
    return keras.Model(inputs=inp, outputs=out, name="nested_model")


def inputs(np):
    return np.random.RandomState(9).uniform(-1.0, 1.0, size=(10, 6)).astype("float32")
