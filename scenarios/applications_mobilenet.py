"""A ``keras.applications`` architecture: MobileNet (v1) with ``weights=None`` at 32x32.

Transfer-learning models are the most shared files, and they bring the real layer mix:
ZeroPadding2D, strided Conv2D, DepthwiseConv2D, BatchNormalization, ReLU(max_value=6),
global pooling. Known breaks: Keras 3 refusing Keras 2's DepthwiseConv2D
``groups`` key in MobileNet-based ``.h5`` files (keras-team/keras#19151), "Layer count
mismatch when loading weights" across TF releases for MobileNetV3 (tensorflow/tensorflow
#55432). ``weights=None`` downloads nothing; ``alpha=0.25`` and a 32x32 input keep it small
(about 0.2 M parameters); ``include_top=False`` and an average pooling compare a feature
vector rather than a saturated softmax.

The saved model is the application cut after its fourth depthwise block
(``conv_pw_4_relu``: ~30 layers, both strided ZeroPadding2D blocks included), built from
the full ``keras.applications.MobileNet`` graph as users build feature extractors
(``Model(base.input, base.get_layer(...).output)``). Whole, it cost too much for a table
of 33 x 33 stacks: MobileNetV2 took 70 s to write its TF 2.15 SavedModel (155 layers
traced), and the whole v1 (~90 layers) took 30-60 s per SavedModel/export save in the full
catalog run (nine timeouts at the 60 s limit in TF 1.15-2.3 and on JAX). On the JAX
backend the first build in a process still compiles one initializer program per weight
shape of the whole base (20-60 s by machine load, Keras 3.15; NumPy 2-5 s).
"""

ATOL = 1e-4
RTOL = 1e-4


def build(keras):
    applications = getattr(keras, "applications", None)
    factory = getattr(applications, "MobileNet", None)
    if factory is None:
        raise NotImplementedError("this Keras has no keras.applications.MobileNet")
    base = factory(input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None)
    features = base.get_layer("conv_pw_4_relu").output
    pooled = keras.layers.GlobalAveragePooling2D(name="features")(features)
    return keras.Model(inputs=base.input, outputs=pooled, name="mobilenet_cut")


def init_weights(model, np):
    # Seeded like the worker's weights, but scaled by fan-in so the layers' activations
    # stay in a range where float32 differences remain visible.
    rng = np.random.RandomState(41)
    names = [str(getattr(w, "path", None) or getattr(w, "name", "")) for w in model.weights]
    new = []
    values = model.get_weights()
    for i, name in enumerate(names):
        value = np.asarray(values[i])
        if value.dtype.kind != "f":
            new.append(value)
        elif "variance" in name:
            new.append(rng.uniform(0.5, 1.5, size=value.shape).astype(value.dtype))
        elif value.ndim >= 2:
            fan_in = int(np.prod(value.shape[:-1])) if "depthwise" not in name else int(
                np.prod(value.shape[:2]))
            bound = (3.0 / max(fan_in, 1)) ** 0.5
            new.append(rng.uniform(-bound, bound, size=value.shape).astype(value.dtype))
        else:
            new.append(rng.uniform(-0.2, 0.2, size=value.shape).astype(value.dtype))
    model.set_weights(new)


def inputs(np):
    return np.random.RandomState(42).uniform(-1.0, 1.0, size=(2, 32, 32, 3)).astype("float32")
