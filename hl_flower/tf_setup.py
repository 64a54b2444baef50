"""Import side effect: quiet, reproducible TensorFlow before it loads."""

import os

from .determinism import pin_numerics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
pin_numerics()
