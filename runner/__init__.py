"""TF/Keras compatibility matrix runner.

Saves every scenario model in every format in each stack (an isolated TensorFlow/Keras
environment), loads every artifact in every stack, compares predictions with the saver's
reference outputs, and publishes the outcomes as tables.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
