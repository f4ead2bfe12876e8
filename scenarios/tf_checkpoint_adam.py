"""Weights and Adam state through a TF checkpoint (save_weights without .h5 / tf.train.Checkpoint).

The route of training scripts and ModelCheckpoint(save_weights_only=True): the saver
trains one step with Adam and writes a TF checkpoint (``ckpt.index`` + ``ckpt.data-*``);
the loader builds the same model from this file's code, reads the checkpoint into it,
predicts, and resumes one more training step (equal results mean Adam's moments and
iteration count came back). Keras 2 writes it with ``model.save_weights(prefix)``; Keras 3
has no TF-checkpoint ``save_weights``, so its TensorFlow users write and read it with
``tf.train.Checkpoint(model=..., optimizer=...)``; Keras 3 on JAX/torch/numpy cannot.

Where users meet it: a checkpoint written before TF 2.11 read in TF >= 2.11 fails with
"You are trying to restore a checkpoint from a legacy Keras optimizer into a v2.11+
Optimizer" (keras-team/keras-io#1426 switched its examples to the legacy optimizers for
this); optimizer variables not restored from a checkpoint: tensorflow/tensorflow#33424.
"""

FORMATS = ("tf_checkpoint",)
ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    backend = getattr(keras.backend, "backend", None)
    if callable(backend) and backend() == "numpy":
        raise NotImplementedError("the Keras numpy backend is inference-only: it cannot fit")
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(5,)),
            layers.Dense(6, activation="tanh", name="hidden"),
            layers.Dense(2, name="out"),
        ],
        name="tf_checkpoint_adam",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.02), loss="mean_squared_error")
    return model


def inputs(np):
    return np.random.RandomState(21).uniform(-1.0, 1.0, size=(8, 5)).astype("float32")


def train_data(np):
    rng = np.random.RandomState(22)
    x = rng.uniform(-1.0, 1.0, size=(12, 5)).astype("float32")
    y = np.stack([x[:, :3].sum(axis=1), x[:, 3:].prod(axis=1)], axis=1).astype("float32")
    return x, y
