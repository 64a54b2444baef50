"""Flower strategies: HL and the baselines it is compared with."""

from .baselines import (
    BestNode,
    NearestUnvisited,
    RandomHop,
    RoundRobin,
    RuleBasedHop,
    Standalone,
)
from .episodes import EpisodeResult, NodeFailure, RoundOutcome, StepResult
from .fedavg import FLOWER_STRATEGIES, FlowerBaseline
from .hl import HomogeneousLearning
from .metered_grid import MeteredGrid, Traffic
from .travelling import TravellingModel

HOP_BASELINES: dict[str, type[RuleBasedHop]] = {
    rule.name: rule for rule in (RandomHop, RoundRobin, NearestUnvisited, Standalone,
                                 BestNode)}

__all__ = ["FLOWER_STRATEGIES", "HOP_BASELINES", "BestNode", "EpisodeResult", "FlowerBaseline",
           "HomogeneousLearning",
           "MeteredGrid", "NearestUnvisited", "NodeFailure", "RandomHop", "RoundOutcome",
           "RoundRobin", "RuleBasedHop", "Standalone", "StepResult", "Traffic",
           "TravellingModel"]
