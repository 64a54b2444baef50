"""HL-Flower: Homogeneous Learning (Sun & Ochiai, 2022) on Flower."""

from . import tf_setup  # noqa: F401  (quiet, reproducible TF before anyone imports it)

__version__ = "0.1.0"
