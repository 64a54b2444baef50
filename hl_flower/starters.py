"""Where an episode starts: one node, every node, or a list drawn per episode.

``--starter`` takes a node id (the paper's fixed starter, node 0), ``random``
(every node) or a comma-separated list such as ``0,3,7``. With more than one
candidate the starter of an episode is a stratified random draw: the
candidates are shuffled once per block of as many consecutive draws as there
are candidates, and draw ``i`` takes the ``i``-th node of that order, where
``i = seed + episode - 1`` (so ``sim.py compare --seed S``, whose seeds are
S+1, S+2, ..., draws from ``i = S`` on). So

- the same seed and episode always give the same starter, on any machine
  (the order comes from numpy's PCG64 seeded with the block number);
- every method of ``sim.py compare`` starts at the same node for a given
  seed (each plays episode 0 of its seed);
- a block of draws starts once at every candidate: ``compare --seed S
  --seeds 20`` over 10 nodes with S a multiple of 10 (seeds S+1..S+20)
  starts exactly twice at every node, and a training run's episodes 10b+1
  .. 10b+10 (seed 0) once each.

Training seeds ``s`` and ``s + 1`` therefore see the same sequence of
starters shifted by one episode; everything else about them differs.
"""

from __future__ import annotations

import numpy as np

from .config import ConfigError

RANDOM = "random"
STREAM = 0x57A27E  # keeps the starter draws apart from every other seeded stream


def starter_nodes(text: str | int, num_nodes: int) -> tuple[int, ...]:
    """The candidate starters ``--starter`` names, in the order given.

    Raises
    ------
    ConfigError
        For anything but a node id in 0..num_nodes-1, ``random`` or a list of
        distinct node ids; one line naming the fix.
    """
    spec = str(text).strip().lower()
    if spec == RANDOM:
        return tuple(range(num_nodes))
    parts = [part.strip() for part in spec.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise ConfigError(f"--starter {text!r} is not a node id, 'random' or a list of "
                          f"node ids; use for example --starter 0, --starter random "
                          f"or --starter 0,3,7")
    nodes = tuple(int(part) for part in parts)
    outside = [node for node in nodes if node >= num_nodes]
    if outside:
        raise ConfigError(f"--starter {text}: node {outside[0]} is not a node of "
                          f"--nodes {num_nodes}; use 0..{num_nodes - 1}")
    if len(set(nodes)) != len(nodes):
        raise ConfigError(f"--starter {text} names a node twice; list each node once")
    return nodes


def starter_of(nodes: tuple[int, ...], seed: int, episode: int) -> int:
    """The node that trains at step 1 of ``episode`` of a run seeded ``seed``.

    ``nodes`` are the candidates (:func:`starter_nodes`); one candidate is
    returned as is. Raises ValueError for no candidates.
    """
    if not nodes:
        raise ValueError("no starter candidates")
    if len(nodes) == 1:
        return nodes[0]
    block, position = divmod(seed + episode - 1 + len(nodes), len(nodes))  # >= 0
    order = np.random.default_rng([STREAM, len(nodes), block]).permutation(len(nodes))
    return nodes[int(order[position])]
