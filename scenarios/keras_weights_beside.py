"""A .keras file with its weights saved beside it as model.weights.h5 (keras#19921).

Users keep ``model.keras`` and ``model.weights.h5`` (``save_weights``) in one folder. Keras
3.4.0 and 3.4.1 load a ``.keras`` archive by extracting its own ``model.weights.h5`` next
to the file and deleting it afterwards: the user's weights file of that name is
overwritten, then gone ("No such file or directory: 'model.weights.h5'", keras#19921,
fixed by keras#19924). The loader loads the ``.keras`` file, checks the file beside it is
still there unchanged, loads it into the model and predicts. It does so in a private copy
of the folder, so what a loader does to it never reaches the loaders after it.
"""

FORMATS = ("keras+weights",)


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(7,)),
            layers.Dense(5, activation="relu", name="hidden"),
            layers.Dense(3, activation="softmax", name="probs"),
        ],
        name="keras_weights_beside",
    )


def inputs(np):
    return np.random.RandomState(31).uniform(-1.0, 1.0, size=(6, 7)).astype("float32")
