"""Fake-tier trained MLP: compiled with Adam and trained one step before saving.

Outside tests/fakes/scenarios so the fake catalogs' scenario counts stay as they are;
tests point their cells here. The loader resumes one more step (runner/_worker/worker.py).
"""

ATOL = 1e-6
RTOL = 1e-6


def build(keras):
    layers = keras.layers
    model = keras.Sequential(
        [keras.Input(shape=(4,)), layers.Dense(5, activation="relu", name="hidden"),
         layers.Dense(1, name="out")],
        name="trained_mlp",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    return model


def inputs(np):
    return np.random.RandomState(3).uniform(-1.0, 1.0, size=(6, 4)).astype("float32")


def train_data(np):
    rng = np.random.RandomState(4)
    x = rng.uniform(-1.0, 1.0, size=(8, 4)).astype("float32")
    return x, (x.sum(axis=1, keepdims=True) * 0.5).astype("float32")
