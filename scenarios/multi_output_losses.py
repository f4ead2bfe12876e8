"""Two named outputs, each with its own loss and loss weight, compiled and trained one step.

``compile(loss={"score": "mse", "label": "sparse_categorical_crossentropy"},
loss_weights={"score": 1.0, "label": 0.5}, metrics={"label": "accuracy"})`` is how
multi-task models are written. The per-output dicts are keyed by output layer names and
go through the saved training config: tf.keras could not reload output names given for
``loss_weights`` (tensorflow/tensorflow#35665), and Keras 3 changed how dict losses and
metrics map onto list outputs (keras-team/keras#18708, #21675). The loader resumes one
training step: a loss or loss weight lost on the way changes that step.
"""

ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    backend = getattr(keras.backend, "backend", None)
    if callable(backend) and backend() == "numpy":
        raise NotImplementedError("the Keras numpy backend is inference-only: it cannot fit")
    layers = keras.layers
    inp = keras.Input(shape=(6,), name="features")
    x = layers.Dense(8, activation="relu", name="shared")(inp)
    score = layers.Dense(1, name="score")(x)
    label = layers.Dense(3, activation="softmax", name="label")(x)
    model = keras.Model(inputs=inp, outputs=[score, label], name="multi_output_losses")
    model.compile(optimizer="adam",
                  loss={"score": "mse", "label": "sparse_categorical_crossentropy"},
                  loss_weights={"score": 1.0, "label": 0.5},
                  metrics={"label": "accuracy"})
    return model


def inputs(np):
    return np.random.RandomState(43).uniform(-1.0, 1.0, size=(8, 6)).astype("float32")


def train_data(np):
    rng = np.random.RandomState(44)
    x = rng.uniform(-1.0, 1.0, size=(16, 6)).astype("float32")
    score = x[:, :2].sum(axis=1, keepdims=True).astype("float32")
    label = (np.argmax(x[:, 2:5], axis=1)).astype("int32").reshape(-1, 1)
    return x, [score, label]
