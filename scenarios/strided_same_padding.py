"""Strided convolution and pooling with ``padding="same"`` on an even and an odd input size.

With a stride above 1, "same" padding is asymmetric: TensorFlow pads the extra row and
column at the bottom/right, and only as much as the input size needs, so an 8x8 and a
7x7 input are padded differently. Other backends have computed it differently
(tensorflow/tensorflow#17654, keras-team/keras#9473, and the docstring warning added in
keras-team/keras#9629: "same" is inconsistent across backends with strides != 1);
average pooling must also leave the padded cells out of the mean. A model saved on one
backend and loaded on another (Keras 3: TensorFlow, JAX, PyTorch, NumPy) then computes
different numbers at the borders, which only a comparison of outputs shows.

Two inputs (8x8 and 7x7), each through Conv2D(stride 2) then MaxPooling2D and
AveragePooling2D (pool 3, stride 2), all ``padding="same"``, flattened into two outputs,
so every border cell is compared.
"""

ATOL = 1e-5
RTOL = 1e-5


def _branch(layers, x, prefix):
    x = layers.Conv2D(3, 3, strides=2, padding="same", name=prefix + "_conv")(x)
    mx = layers.MaxPooling2D(3, strides=2, padding="same", name=prefix + "_maxpool")(x)
    av = layers.AveragePooling2D(3, strides=2, padding="same", name=prefix + "_avgpool")(x)
    merged = layers.Concatenate(name=prefix + "_merge")([mx, av])
    return layers.Flatten(name=prefix + "_flat")(merged)


def build(keras):
    layers = keras.layers
    even = keras.Input(shape=(8, 8, 2), name="even")
    odd = keras.Input(shape=(7, 7, 2), name="odd")
    return keras.Model(inputs=[even, odd],
                       outputs=[_branch(layers, even, "even"), _branch(layers, odd, "odd")],
                       name="strided_same_padding")


def inputs(np):
    rng = np.random.RandomState(31)
    return [
        rng.uniform(-1.0, 1.0, size=(4, 8, 8, 2)).astype("float32"),
        rng.uniform(-1.0, 1.0, size=(4, 7, 7, 2)).astype("float32"),
    ]
