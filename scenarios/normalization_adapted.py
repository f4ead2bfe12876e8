"""A ``Normalization`` preprocessing layer adapted to data, inside the model.

The adapted mean and variance are state, not trained weights, and several releases lose
them on reload: TF 2.7 HDF5 loads of EfficientNet's Normalization "do not correspond to
the ones of the ImageNet database" (keras-team/keras#15348), "very different results
when using a model after it has been dumped to disk and reloaded if it uses
normalization layers" (keras-team/keras#17486, TF 2.11), and Keras 3's legacy HDF5 loader
restores ``adapt_mean`` but never recomputes the mean actually used
(keras-team/keras#20147, PR #20163). TF 1.x has no Normalization layer.

The worker's seeded weights would overwrite the adapted statistics, so this scenario
seeds every other layer itself (``init_weights``) and leaves the Normalization as adapted.
"""

ATOL = 1e-5
RTOL = 1e-5


def _normalization(keras):
    layers = keras.layers
    cls = getattr(layers, "Normalization", None)
    if cls is None:
        cls = getattr(getattr(getattr(layers, "experimental", None), "preprocessing", None),
                      "Normalization", None)
    if cls is None:
        raise NotImplementedError("this Keras has no Normalization preprocessing layer")
    return cls


def _adapt_data(np):
    rng = np.random.RandomState(37)
    return (rng.normal(size=(64, 4)) * [1.0, 5.0, 0.2, 10.0] + [0.0, 3.0, -1.0, 50.0]).astype("float32")


def build(keras):
    import numpy as np

    layers = keras.layers
    norm = _normalization(keras)(name="norm")
    norm.adapt(_adapt_data(np))
    return keras.Sequential(
        [
            keras.Input(shape=(4,)),
            norm,
            layers.Dense(6, activation="relu", name="hidden"),
            layers.Dense(2, name="out"),
        ],
        name="normalization_adapted",
    )


def init_weights(model, np):
    rng = np.random.RandomState(38)
    for layer in model.layers:
        if type(layer).__name__ == "Normalization":
            continue
        values = layer.get_weights()
        if values:
            layer.set_weights([rng.uniform(-0.5, 0.5, size=v.shape).astype(v.dtype)
                               if np.asarray(v).dtype.kind == "f" else v for v in values])


def inputs(np):
    return _adapt_data(np)[:10]
