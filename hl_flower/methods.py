"""Names of the methods ``sim.py compare`` runs (light: no Flower, no TF).

``HL-greedy`` is HL's trained policy with epsilon = 0 and no learning; the
hop baselines are in ``strategies/baselines.py``; ``FedAvg``, ``FedProx``,
``FedAvgM``, ``FedAdam`` and ``FedYogi`` are Flower's own strategies of those
names (``strategies/fedavg.py``). A compare without ``--methods`` runs
:data:`DEFAULT_METHODS`.
"""

from __future__ import annotations

from .config import ConfigError

HL_GREEDY = "HL-greedy"
FEDAVG = "FedAvg"
HOP_RULES = ("RandomHop", "RoundRobin", "NearestUnvisited", "Standalone", "BestNode")
# Flower's aggregating strategies (flwr.serverapp.strategy), by Flower's name
FLOWER_STRATEGIES = (FEDAVG, "FedProx", "FedAvgM", "FedAdam", "FedYogi")
METHODS = (HL_GREEDY, *HOP_RULES, *FLOWER_STRATEGIES)
DEFAULT_METHODS = (HL_GREEDY, *HOP_RULES, FEDAVG)  # BestNode only where episodes
# start at several nodes (:func:`default_methods`): with one starter it is a
# hop to --best-node and Standalone there.


def default_methods(several_starters: bool) -> tuple[str, ...]:
    """The methods a compare without ``--methods`` runs."""
    return tuple(m for m in DEFAULT_METHODS if several_starters or m != "BestNode")


def check_methods(names: list[str]) -> list[str]:
    """The names (in any case) as spelled in :data:`METHODS`, in its order,
    or a ConfigError naming the bad one."""
    known = {m.lower() for m in METHODS}
    unknown = [n for n in names if n.lower() not in known]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r} in --methods; "
                          f"choose from {','.join(METHODS)}")
    if not names:
        raise ConfigError(f"--methods is empty; choose from {','.join(METHODS)}")
    given = {n.lower() for n in names}
    return [m for m in METHODS if m.lower() in given]
