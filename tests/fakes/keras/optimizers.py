"""Fake ``keras.optimizers``: an Adam whose step depends on its state (moments, step count).

Python 3.7 syntax. The update is Adam's rule over a made-up gradient (the fake has no
autodiff): ``g = 0.1 * mean(prediction - target) + 0.05 * w`` per weight. A fresh Adam's
first step differs from a resumed second step, so a loader that loses the state lands
elsewhere than the saver, as with the real Keras.
"""

import numpy as np

from . import _core


class Optimizer(object):
    def __init__(self, learning_rate=0.001, name=None, **kwargs):
        self.learning_rate = float(learning_rate)
        self.name = name or type(self).__name__.lower()
        self.iterations = _core.Variable(np.array(0, "int64"), "iteration", trainable=False)
        self.slots = {}  # weight index -> {"m": array, "v": array}

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_state(self):
        return {"iterations": int(self.iterations.numpy()),
                "slots": [[int(i), {k: v.tolist() for k, v in sorted(s.items())}]
                          for i, s in sorted(self.slots.items())]}

    def set_state(self, state):
        self.iterations.assign(np.array(int(state.get("iterations", 0)), "int64"))
        self.slots = {int(i): {k: np.array(v, "float32") for k, v in s.items()}
                      for i, s in state.get("slots", [])}

    def apply(self, weights, gradients):
        raise NotImplementedError


class Adam(Optimizer):
    B1, B2, EPS = 0.9, 0.999, 1e-7

    def apply(self, weights, gradients):
        t = int(self.iterations.numpy()) + 1
        for i, (var, g) in enumerate(zip(weights, gradients)):
            slot = self.slots.setdefault(i, {"m": np.zeros(var.shape, "float32"),
                                             "v": np.zeros(var.shape, "float32")})
            slot["m"] = (self.B1 * slot["m"] + (1 - self.B1) * g).astype("float32")
            slot["v"] = (self.B2 * slot["v"] + (1 - self.B2) * g * g).astype("float32")
            m_hat = slot["m"] / (1 - self.B1 ** t)
            v_hat = slot["v"] / (1 - self.B2 ** t)
            var.assign(np.asarray(var) - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.EPS))
        self.iterations.assign(np.array(t, "int64"))


class SGD(Optimizer):
    def apply(self, weights, gradients):
        for var, g in zip(weights, gradients):
            var.assign(np.asarray(var) - self.learning_rate * g)
        self.iterations.assign(np.array(int(self.iterations.numpy()) + 1, "int64"))


CLASSES = {"Adam": Adam, "SGD": SGD}


def get(identifier):
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ("adam", "sgd"):
        return CLASSES["Adam" if identifier.lower() == "adam" else "SGD"]()
    raise ValueError("Could not interpret optimizer identifier: %r" % (identifier,))


def deserialize(config):
    return CLASSES[config["class_name"]].from_config(config["config"])


def serialize(optimizer):
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
