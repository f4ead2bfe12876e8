"""Compiled with Adam (fixed learning rate) and trained one step before saving.

The worker fits one step (whole set, no shuffle), saves, and the loader resumes one
more step: equal results mean Adam's moments and iteration count survived the file.

Real behaviours seen (not scenario bugs): Keras 2 (TF 1.15-2.15) reloads a legacy TF
SavedModel with a fresh Adam (iteration 0), so the resumed step diverges; Keras 3 (3.6,
3.15) cannot reload its own HDF5 file when the loss was given as ``"mse"`` ("Could not
locate function 'mse'" / "Could not deserialize 'keras.metrics.mse' because it is not a
KerasSaveable subclass"). ``"mse"`` is kept because it is what users write.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    backend = getattr(keras.backend, "backend", None)
    if callable(backend) and backend() == "numpy":
        raise NotImplementedError("the Keras numpy backend is inference-only: it cannot fit")
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            layers.Dense(8, activation="relu", name="hidden"),
            layers.Dense(1, name="out"),
        ],
        name="trained_adam",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    return model


def inputs(np):
    return np.random.RandomState(15).uniform(-1.0, 1.0, size=(8, 6)).astype("float32")


def train_data(np):
    rng = np.random.RandomState(16)
    x = rng.uniform(-1.0, 1.0, size=(16, 6)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) * 0.5).astype("float32")
    return x, y
