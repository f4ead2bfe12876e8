"""A FAKE Keras for the fast test tier: numpy only, behaviour driven by COMPAT_FAKE_BEHAVIOR.

See ``_behavior.py`` for the knob. Python 3.7 syntax (the worker floor imports it).
"""

from . import _behavior

_behavior.fire("import")

__version__ = _behavior.keras_version()
FAKE = True

from . import backend, layers, models, optimizers, utils  # noqa: E402,F401
from .layers import Input, Layer  # noqa: E402,F401
from .models import Model, Sequential  # noqa: E402,F401
