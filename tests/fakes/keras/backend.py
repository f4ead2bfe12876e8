"""Fake ``keras.backend``."""

import os

from . import _behavior, _core


def backend():
    if _behavior.keras_major() >= 3:
        return os.environ.get("KERAS_BACKEND") or "tensorflow"
    return "tensorflow"


def clear_session():
    _core.reset_names()
