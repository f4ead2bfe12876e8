"""Conv2DTranspose (upsampling) followed by DepthwiseConv2D, channels-last."""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(4, 4, 2)),
            layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu",
                                   name="up"),
            layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", name="depthwise"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(2, name="out"),
        ],
        name="conv_transpose_depthwise",
    )


def inputs(np):
    return np.random.RandomState(5).uniform(-1.0, 1.0, size=(5, 4, 4, 2)).astype("float32")
