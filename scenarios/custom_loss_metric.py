"""Compiled with a custom loss function and a custom metric function (neither registered).

The model itself is plain; what is saved is the compile configuration naming the two
functions. ``default`` loads without them (Keras 2 recompiles on load and needs them);
``custom_objects`` passes both. Keras 3 also fails the ``default`` load of its own
``.keras`` file ("Could not locate function 'scaled_mse'"): compile config errors are
not downgraded to a warning.
"""

ATOL = 1e-5
RTOL = 1e-5
LOAD_VARIANTS = ("default", "custom_objects")

_fns = {}


def _ops(keras):
    ops = getattr(keras, "ops", None)  # Keras 3
    return ops if ops is not None else keras.backend


def functions(keras):
    """Define (once per Keras module) ``scaled_mse`` and ``mean_abs_error_x2``."""
    if id(keras) in _fns:
        return _fns[id(keras)]
    ops = _ops(keras)

    def scaled_mse(y_true, y_pred):
        return 0.5 * ops.mean(ops.square(y_pred - y_true), axis=-1)

    def mean_abs_error_x2(y_true, y_pred):
        return 2.0 * ops.mean(ops.abs(y_pred - y_true), axis=-1)

    _fns[id(keras)] = (scaled_mse, mean_abs_error_x2)
    return _fns[id(keras)]


def custom_objects(keras):
    loss, metric = functions(keras)
    return {"scaled_mse": loss, "mean_abs_error_x2": metric}


def build(keras):
    layers = keras.layers
    loss, metric = functions(keras)
    model = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            layers.Dense(8, activation="relu", name="hidden"),
            layers.Dense(2, name="out"),
        ],
        name="custom_loss_metric",
    )
    model.compile(optimizer="sgd", loss=loss, metrics=[metric])
    return model


def inputs(np):
    return np.random.RandomState(13).uniform(-1.0, 1.0, size=(8, 6)).astype("float32")
