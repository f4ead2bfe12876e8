"""The most common model in the wild: ``Sequential`` with ``input_shape=`` on the first layer,
compiled with a string optimizer and loss, never trained.

Every other scenario starts from ``keras.Input(...)``. Tutorials and most saved models
instead write ``Sequential([Dense(..., input_shape=(n,)), ...])`` and
``compile(optimizer="adam", loss="mse")``. Keras 2 stores that shape as
``batch_input_shape`` inside the first layer's own config (besides the InputLayer), and
Keras 3 layers refuse the key: ``ValueError: Unrecognized keyword arguments passed to
Dense: {'batch_input_shape': (None, 8)}`` (keras-team/keras#20106, the same message for
LSTM; tensorchiefs/dl_book#18). Keras 3 accepts ``input_shape=`` in code (with a warning)
but writes ``batch_shape`` into an InputLayer, which Keras 2 readers do not know
(keras-team/keras#19441). The compile config names the string loss ``"mse"``, which
Keras 3 cannot resolve from its own HDF5 file ("Could not locate function 'mse'").
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Dense(16, activation="relu", input_shape=(8,), name="hidden"),
            layers.Dense(4, activation="softmax", name="probs"),
        ],
        name="sequential_input_shape",
    )
    model.compile(optimizer="adam", loss="mse")
    return model


def inputs(np):
    return np.random.RandomState(30).uniform(-1.0, 1.0, size=(10, 8)).astype("float32")
