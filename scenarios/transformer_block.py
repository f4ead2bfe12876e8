"""A transformer encoder block: MultiHeadAttention, residual Adds, LayerNormalization, FFN.

MultiHeadAttention builds its sub-layers from the shapes of its first call, not in
``build()``, so restoring its weights has gone wrong in several releases: weights
silently re-initialised after a SavedModel load (tensorflow/tensorflow#47722,
keras-team/keras#16796), and "Cannot create MultiHeadAttention layer from config with
weights" (keras-team/keras#18285). TF 1.x has no MultiHeadAttention (added in TF 2.4).
"""

ATOL = 1e-4
RTOL = 1e-4


def build(keras):
    layers = keras.layers
    if not hasattr(layers, "MultiHeadAttention"):
        raise NotImplementedError("this Keras has no MultiHeadAttention layer (TF >= 2.4)")
    inp = keras.Input(shape=(6, 8), name="tokens")
    att = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inp, inp)
    x = layers.Add(name="residual_1")([inp, att])
    x = layers.LayerNormalization(epsilon=1e-6, name="ln_1")(x)
    ff = layers.Dense(16, activation="relu", name="ffn_1")(x)
    ff = layers.Dense(8, name="ffn_2")(ff)
    x = layers.Add(name="residual_2")([x, ff])
    x = layers.LayerNormalization(epsilon=1e-6, name="ln_2")(x)
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    out = layers.Dense(3, name="head")(x)
    return keras.Model(inputs=inp, outputs=out, name="transformer_block")


def inputs(np):
    return np.random.RandomState(36).uniform(-1.0, 1.0, size=(4, 6, 8)).astype("float32")
