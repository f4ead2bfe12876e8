"""Models as layers of a Sequential: a Sequential block and a Functional base (keras-team/keras#19959).

keras-team/keras#19959 ("Can't load a saved model, Keras 3.4 regression"): a
``Sequential`` built with ``model.add(base_model)``, where ``base_model`` is a Functional
model on its own ``Input`` (there a frozen ResNet50V2, here two small convolutions),
followed by pooling and Dense layers, saved as ``.keras``: Keras 3.4.1 could not load it
("Layer 'dense' expected 1 input(s). Received 2 instead"; also tensorflow/tensorflow#63853,
keras-team/keras#20084) while Keras 3.3.3 read the same file. A ``Sequential`` block nested
in the ``Sequential`` comes first, as ``data_augmentation`` blocks do in the
transfer-learning guides; ``nested_model`` nests models in a Functional model instead.

Seen for real (2026-12-07, .h5 and .keras): Keras 3.4.1 fails on every file of this model
(Keras 2.15 .h5, Keras 3.3.3-3.6.0, its own); Keras 3.13.2 and 3.15.1 fail the same way on
Keras 2 .h5 files and the files of Keras 3.3.3-3.6.0 but read their own; Keras 3.3.3,
3.5.0 and 3.6.0 read them. A Sequential-in-Sequential without the Functional base loads in
Keras 3.4.1: the Functional base is what triggers the break.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    block = keras.Sequential(
        [keras.Input(shape=(8, 8, 3)), layers.Conv2D(3, 1, name="mix")],
        name="block",
    )
    base_in = keras.Input(shape=(8, 8, 3), name="base_in")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="base_conv")(base_in)
    base = keras.Model(base_in, layers.Conv2D(4, 1, name="base_proj")(x), name="base")
    model = keras.Sequential(name="nested_sequential")
    model.add(keras.Input(shape=(8, 8, 3)))
    model.add(block)
    model.add(base)
    model.add(layers.GlobalAveragePooling2D(name="pool"))
    model.add(layers.Dense(4, activation="relu", name="dense"))
    model.add(layers.Dense(2, name="out"))
    return model


def inputs(np):
    return np.random.RandomState(26).uniform(-1.0, 1.0, size=(4, 8, 8, 3)).astype("float32")
