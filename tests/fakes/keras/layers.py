"""Fake ``keras.layers``."""

from ._core import Concatenate, Dense, Input, InputLayer, Layer  # noqa: F401
