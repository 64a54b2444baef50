"""The ``progress`` observation: what the episode has done so far.

With one node per step (k = 1) the reference observation is the PCA of a
stack whose rows are all the global model but one: it has a single non-zero
component, so it tells the DQN little beyond which node just trained. This
observation keeps the DQN informed of the episode instead:

per node (N values each, in this order)
    holder    1 for the node(s) that just trained, else 0
    visits    steps the node trained this episode / max_steps
    since     steps since the node last trained / max_steps (1 if never)
    distance  distance from the (lead) holder / largest distance
per step
    accuracy  test accuracy of the model the holder received (0 at step 1)
    step      step / max_steps
    update    ||trained - received|| / ||received||: how far the holder's
              epoch moved the model (large when its data is new to the model)

The server knows everything but the update, so it sends the first part
(:func:`progress_context`) with the train message and the holder appends the
update size it measured (:func:`progress_observation`).

With ``relative`` actions the per-node features are listed in the order of
:func:`node_order` (the holder, then the others from nearest to farthest)
instead of by node id, and Q-value r means "the r-th node of that order":
action 0 is "keep the model", action 1 "the nearest other node". The same
network then serves every holder, which it otherwise learns separately.
"""

from __future__ import annotations

import numpy as np


class EpisodeProgress:
    """Which node trained when in the current episode (kept by the server)."""

    def __init__(self, num_nodes: int) -> None:
        self.visits = np.zeros(num_nodes, np.int64)
        self.last_visit = np.full(num_nodes, -1, np.int64)  # -1 = not yet
        self.accuracy = 0.0  # of the model the next holder receives

    def record(self, holders: list[int], step: int, accuracy: float) -> None:
        """``holders`` trained in ``step``; the result scored ``accuracy``."""
        self.visits[holders] += 1
        self.last_visit[holders] = step
        self.accuracy = accuracy


def node_order(distance: np.ndarray, holder: int) -> np.ndarray:
    """Node ids by rank from ``holder``: itself first, then by distance (ties
    by id)."""
    row = distance[holder]
    nodes = np.arange(len(row))
    return np.lexsort((nodes, row, nodes != holder))


def ranks_to_nodes(ranks: list[int], order: list[int] | np.ndarray) -> list[int]:
    """Relative actions to node ids."""
    return [int(order[r]) for r in ranks]


def nodes_to_ranks(nodes: list[int], order: list[int] | np.ndarray) -> tuple[int, ...]:
    """Node ids to relative actions."""
    rank_of = {int(node): rank for rank, node in enumerate(order)}
    return tuple(rank_of[n] for n in nodes)


def progress_context(progress: EpisodeProgress, holders: list[int], step: int,
                     max_steps: int, distance: np.ndarray,
                     relative: bool = False) -> np.ndarray:
    """Every feature but the update size, as if ``holders`` train in ``step``;
    with ``relative`` the nodes are listed in :func:`node_order`."""
    visits = progress.visits.copy()
    last_visit = progress.last_visit.copy()
    visits[holders] += 1
    last_visit[holders] = step
    holder = np.zeros(len(visits))
    holder[holders] = 1.0
    since = np.where(last_visit < 0, 1.0, (step - last_visit) / max_steps)
    largest = float(np.max(distance)) or 1.0
    order = node_order(distance, holders[0]) if relative else slice(None)
    per_node = [holder, visits / max_steps, np.clip(since, 0.0, 1.0),
                distance[holders[0]] / largest]
    return np.concatenate([*(feature[order] for feature in per_node),
                           [progress.accuracy, step / max_steps]]).astype(np.float32)


def update_size(received: np.ndarray, trained: np.ndarray) -> float:
    """Relative size of one local training's change to the flattened model."""
    scale = float(np.linalg.norm(received)) or 1.0
    return float(np.linalg.norm(trained.astype(np.float64) - received)) / scale


def progress_observation(context: np.ndarray, update: float) -> np.ndarray:
    """The full observation: the server's context plus the holder's update size."""
    return np.append(np.asarray(context, np.float32), np.float32(update))
