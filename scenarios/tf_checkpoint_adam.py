"""Weights and Adam state through a TF checkpoint (save_weights without .h5 / tf.train.Checkpoint).

The route of training scripts and ModelCheckpoint(save_weights_only=True): the saver
trains one step with Adam and writes a TF checkpoint (``ckpt.index`` + ``ckpt.data-*``);
the model is ``trained_adam``'s (imported, so that scenario's row and this one differ only
in the file format); the loader builds it from the code, reads the checkpoint into it,
predicts, and resumes one more training step (equal results mean Adam's moments and
iteration count came back). Keras 2 writes it with ``model.save_weights(prefix)``; Keras 3
has no TF-checkpoint ``save_weights``, so its TensorFlow users write and read it with
``tf.train.Checkpoint(model=..., optimizer=...)``; Keras 3 on JAX/torch/numpy cannot.

Where users meet it: a checkpoint written before TF 2.11 read in TF >= 2.11 fails with
"You are trying to restore a checkpoint from a legacy Keras optimizer into a v2.11+
Optimizer" (keras-team/keras-io#1426 switched its examples to the legacy optimizers for
this); optimizer variables not restored from a checkpoint: tensorflow/tensorflow#33424.
"""

import trained_adam  # beside this file; its digest is in this scenario's key

FORMATS = ("tf_checkpoint",)
ATOL = 1e-5
RTOL = 1e-5


def build(keras):
    return trained_adam.build(keras)


def inputs(np):
    return trained_adam.inputs(np)


def train_data(np):
    return trained_adam.train_data(np)
