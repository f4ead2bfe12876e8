"""The code that runs *inside* a stack.

Kept empty on purpose: ``worker.py`` is executed by file path (``python -I worker.py``)
inside TensorFlow/Keras environments that have none of the host's packages. The host may
import ``runner._worker.worker`` only to read its constants (the shared vocabulary).
"""
