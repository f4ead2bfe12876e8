"""A ``keras.applications`` architecture: MobileNet (v1) with ``weights=None`` at 32x32.

Transfer-learning models are the most shared files, and they bring the real layer mix:
ZeroPadding2D, strided Conv2D, DepthwiseConv2D, BatchNormalization, ReLU(max_value=6),
global pooling. Known breaks: Keras 3 refusing Keras 2's DepthwiseConv2D
``groups`` key in MobileNet-based ``.h5`` files (keras-team/keras#19151), "Layer count
mismatch when loading weights" across TF releases for MobileNetV3 (tensorflow/tensorflow
#55432). ``weights=None`` downloads nothing; ``alpha=0.25`` and a 32x32 input keep it small
(about 0.2 M parameters); ``include_top=False, pooling="avg"`` compares the feature vector
(256 values) rather than a saturated softmax. MobileNetV2 was tried first: TF 2.15 took
70 s to write its SavedModel (155 layers traced), over the 60-second save limit; v1 has
about half the layers. On the JAX backend the first build in a process still compiles about
25 initializer programs (one per weight shape): 20-60 s by machine load, measured with
Keras 3.15 (NumPy backend: 2-5 s), so a loaded machine can reach the 60-second save limit
there.
"""

ATOL = 1e-4
RTOL = 1e-4


def build(keras):
    applications = getattr(keras, "applications", None)
    factory = getattr(applications, "MobileNet", None)
    if factory is None:
        raise NotImplementedError("this Keras has no keras.applications.MobileNet")
    return factory(input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None,
                   pooling="avg")


def init_weights(model, np):
    # Seeded like the worker's weights, but scaled by fan-in so 50 layers of activations
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
