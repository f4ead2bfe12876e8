"""A FAKE TensorFlow: ``tf.keras`` is the fake ``keras`` package. Python 3.7 syntax."""

import keras._behavior as _behavior

_behavior.fire("tf_import")

import keras  # noqa: E402

__version__ = str(_behavior.setting("tf_version", "2.15.0"))
FAKE = True


class _Random(object):
    seeds = []

    def set_seed(self, seed):
        self.seeds.append(seed)


random = _Random()
