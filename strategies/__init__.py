"""Flower strategies: Homogeneous Learning and the baselines it is compared with."""

from .hl import EpisodeResult, HomogeneousLearning, StepResult

__all__ = ["EpisodeResult", "HomogeneousLearning", "StepResult"]
