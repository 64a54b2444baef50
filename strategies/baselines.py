"""Fixed next-node rules to compare HL with, on the same nodes and settings.

Each is a :class:`TravellingModel` whose server applies a rule instead of the
holder's DQN: the node trains exactly as under HL (one local epoch on the
travelling model, with the proximal term when ``proximal_mu`` > 0, and the
server adopting the path average when ``path_average`` > 0), only the choice
of the next node differs. They move one
node at a time (k = 1). When a node fails, the same rule picks its
replacement among the nodes available then.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import ConfigRecord, MetricRecord
from flwr.serverapp import Grid

from hl_flower.config import HLConfig

from .travelling import TravellingModel


class RuleBasedHop(TravellingModel):
    """A travelling model whose next node comes from :meth:`next_node`.

    Takes :class:`TravellingModel`'s keyword arguments; ``k`` must be 1.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if self.k != 1:
            raise ValueError(f"{self.name} moves the model to one node at a time; "
                             f"k must be 1, got {self.k}")
        self.rng = np.random.default_rng([self.seed, 7])

    @staticmethod
    def settings_of(config: HLConfig) -> dict[str, Any]:
        """:meth:`TravellingModel.settings_of` with k = 1, whatever the run's."""
        return TravellingModel.settings_of(config) | {"k": 1}

    def next_node(self, holder: int, candidates: list[int]) -> int:
        """The node among ``candidates`` that trains after ``holder``."""
        raise NotImplementedError

    def stay_or_nearest(self, holder: int, candidates: list[int]) -> int:
        """The holder if it is a candidate, else the candidate nearest to it."""
        return holder if holder in candidates else self.nearest(holder, candidates)

    def choose_next(self, grid: Grid, metrics: MetricRecord, step_config: ConfigRecord
                    ) -> tuple[None, list[int]]:
        """Apply the rule to the current holder, over all nodes."""
        return None, [self.next_node(self.selected[0], list(range(self.num_nodes)))]

    def replacement(self, failed: int, taken: set[int], server_round: int) -> int:
        """Apply the rule from the failed node, over the available nodes."""
        return self.next_node(failed, self.available_nodes(taken, server_round))

class RandomHop(RuleBasedHop):
    """Next node uniformly at random among all N (the paper's baseline)."""

    name = "RandomHop"

    def next_node(self, holder: int, candidates: list[int]) -> int:
        """Any candidate, the holder included, with equal probability."""
        return int(candidates[self.rng.integers(len(candidates))])


class RoundRobin(RuleBasedHop):
    """Nodes in a fixed cycle from the starter, as ``FedXgbCyclic`` does."""

    name = "RoundRobin"

    def next_node(self, holder: int, candidates: list[int]) -> int:
        """The next partition id among the candidates, wrapping around."""
        n = self.num_nodes
        return min(candidates, key=lambda node: (node - holder - 1) % n)


class NearestUnvisited(RuleBasedHop):
    """Greedy on the distance matrix among nodes not yet visited in this pass.

    When every node has been visited the pass is over and a new one starts
    from the holder (the holder counts as visited).
    """

    name = "NearestUnvisited"

    def begin_episode(self, episode: int) -> None:
        """A new pass starts at the starter."""
        super().begin_episode(episode)
        self.visited = {self.starter}

    def next_node(self, holder: int, candidates: list[int]) -> int:
        """The closest candidate not visited in this pass (lowest id on ties)."""
        self.visited.add(holder)
        if len(self.visited) == self.num_nodes:
            self.visited = {holder}
        unvisited = [n for n in candidates if n not in self.visited]
        return self.nearest(holder, unvisited or candidates)


class Standalone(RuleBasedHop):
    """The starter trains alone every step (the paper's standalone learning)."""

    name = "Standalone"

    def next_node(self, holder: int, candidates: list[int]) -> int:
        """The model never leaves the holder (unless it failed)."""
        return self.stay_or_nearest(holder, candidates)


class BestNode(RuleBasedHop):
    """An oracle: after the starter's step the model moves to a given node
    and stays there.

    The node ``best_node`` is the best node to train alone, picked on
    training seeds (``benchmarks/standalone_nodes.py``), so BestNode is the
    ceiling of every "go somewhere and stay" rule. Takes
    :class:`TravellingModel`'s keyword arguments and ``best_node`` (a node id;
    ValueError otherwise).
    """

    name = "BestNode"

    def __init__(self, *, best_node: int = 0, **settings: Any) -> None:
        super().__init__(**settings)
        if not 0 <= best_node < self.num_nodes:
            raise ValueError(f"best_node must be in 0..{self.num_nodes - 1}, "
                             f"got {best_node}")
        self.best_node = best_node

    @staticmethod
    def settings_of(config: HLConfig) -> dict[str, Any]:
        """:meth:`RuleBasedHop.settings_of` and the ``--best-node``."""
        return RuleBasedHop.settings_of(config) | {"best_node": config.best_node}

    def next_node(self, holder: int, candidates: list[int]) -> int:
        """The best node; while it is unavailable, stay (or the nearest)."""
        if self.best_node in candidates:
            return self.best_node
        return self.stay_or_nearest(holder, candidates)
