"""A model of DepthwiseConv2D layers only (the MobileNet building block), no Conv2DTranspose.

Keras 2.x writes ``groups: 1`` into every DepthwiseConv2D config (it inherits Conv2D's
get_config), and Keras 3 refuses it: ``ValueError: Unrecognized keyword arguments passed
to DepthwiseConv2D: {'groups': 1}`` (keras-team/keras#19151, the Teachable Machine /
MobileNet ``.h5`` files). ``conv_transpose_depthwise`` has the layer too, but there
Conv2DTranspose fails first, so this scenario isolates the DepthwiseConv2D break.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(6, 6, 3)),
            layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu",
                                   name="dw_same"),
            layers.DepthwiseConv2D(3, strides=2, padding="valid", name="dw_strided"),
            layers.GlobalAveragePooling2D(name="gap"),
        ],
        name="depthwise_only",
    )


def inputs(np):
    return np.random.RandomState(32).uniform(-1.0, 1.0, size=(5, 6, 6, 3)).astype("float32")
