"""Fake ``keras.models``."""

from ._core import Model, Sequential, load_model, save_model  # noqa: F401
