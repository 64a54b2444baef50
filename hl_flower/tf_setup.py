"""Import side effect: quiet TensorFlow's C++ logs before it loads."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# oneDNN's kernels are not faster here for this small CNN, vary results with
# the CPU and print a banner on every import; use TF's own kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
