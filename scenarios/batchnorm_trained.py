"""BatchNormalization whose moving mean/variance were updated by training, then saved.

Inference uses the moving statistics, not the batch's, so a file that drops or mis-maps
them (non-trainable weights are stored apart from trainable ones, in an order that changed
between releases) predicts different numbers after loading: keras-team/keras#3423
("Issue with BatchNormalization when used with load_weights"), tensorflow/tensorflow#3926.
One SGD step with ``momentum=0.5`` moves the statistics far from their initial values;
the loader then resumes one more step, which also checks the optimizer state.

The loss is a ``MeanSquaredError`` object rather than ``"mse"`` so this scenario does not
repeat trained_adam's Keras 3 HDF5 "Could not locate function 'mse'" finding.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    backend = getattr(keras.backend, "backend", None)
    if callable(backend) and backend() == "numpy":
        raise NotImplementedError("the Keras numpy backend is inference-only: it cannot fit")
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            layers.Dense(8, name="dense"),
            layers.BatchNormalization(momentum=0.5, name="bn"),
            layers.Activation("relu", name="relu"),
            layers.Dense(2, name="out"),
        ],
        name="batchnorm_trained",
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05),
                  loss=keras.losses.MeanSquaredError())
    return model


def inputs(np):
    return np.random.RandomState(33).uniform(-1.0, 1.0, size=(8, 6)).astype("float32")


def train_data(np):
    rng = np.random.RandomState(34)
    # shifted and scaled inputs: the batch statistics differ clearly from the initial ones
    x = (rng.normal(size=(16, 6)) * 3.0 + 2.0).astype("float32")
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5], axis=1).astype("float32")
    return x, y
