"""HL-Flower: Homogeneous Learning (Sun & Ochiai, 2022) on Flower."""

__version__ = "0.1.0"
