"""Partitions drawn by Flower Datasets' partitioners from the training labels.

``iid``, ``dirichlet:<alpha>``, ``pathological:<k>`` and ``shard:<s>`` split
the whole training set over the N nodes with ``flwr-datasets``'
``IidPartitioner``, ``DirichletPartitioner``, ``PathologicalPartitioner``
and ``ShardPartitioner``. They see an in-memory Hugging Face ``Dataset`` of
two columns, ``label`` and ``index`` (the sample's position in the training
set), so the indices of a node's partition map back to the numpy arrays;
nothing is downloaded or written to disk. As ``FederatedDataset`` does by
default, the rows are shuffled (here with ``--partition-seed``) before the
partitioner splits them; the partitioner draws with the same seed.

This module imports ``datasets`` and ``flwr_datasets`` (seconds of start-up),
so :mod:`hl_flower.data` imports it only when such a partition is asked for.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # in-memory data only: never the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
from flwr_datasets.partitioner import (  # noqa: E402
    DirichletPartitioner,
    IidPartitioner,
    PathologicalPartitioner,
    ShardPartitioner,
)
from flwr_datasets.partitioner.partitioner import Partitioner  # noqa: E402

from .config import PartitionSpec, parse_partition  # noqa: E402
from .data import DataError  # noqa: E402

datasets.disable_progress_bars()

LABEL, INDEX = "label", "index"
DIRICHLET_MIN_SIZE = 10  # flwr-datasets' default min_partition_size
DIRICHLET_DRAWS = 11  # DirichletPartitioner's first draw and its 10 retries
# Fixes named in the one-line errors, per kind.
FIXES = {"iid": "use fewer --nodes",
         "dirichlet": "use a larger alpha, fewer --nodes or another --partition-seed",
         "pathological": "use fewer --nodes or fewer classes per node",
         "shard": "use fewer --nodes or fewer shards per node"}


class DrawnPartition:
    """One draw of a partitioner over the training labels; each node's
    indices are fetched from it when first asked for (one ``select`` of a
    few milliseconds), so a process pays only for the nodes it uses.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels 0..C-1 of the whole training set, shape (n,).
    num_nodes : int
        N, the number of partitions.
    partition : str
        ``iid``, ``dirichlet:<alpha>``, ``pathological:<k>`` or ``shard:<s>``.
    seed : int
        ``--partition-seed``: the shuffle before partitioning and the
        partitioner's own draws.
    num_classes : int
        C.

    Raises
    ------
    DataError
        The training set cannot be split so (raised here, when every node's
        share is drawn): fewer samples (or shards) than nodes, more classes
        per node than classes, a class asked of more nodes than it has
        samples, or no Dirichlet draw that leaves every node its minimum
        size; one line naming the fix.
    """

    def __init__(self, labels: np.ndarray, num_nodes: int, partition: str, seed: int,
                 num_classes: int) -> None:
        spec = parse_partition(partition)
        _check_sizes(len(labels), num_nodes, partition, spec, num_classes)
        order = np.random.default_rng(seed).permutation(len(labels))
        self.num_nodes = num_nodes
        self._partitioner = _partitioner(spec, num_nodes, len(labels), seed)
        self._partitioner.dataset = datasets.Dataset.from_dict({LABEL: labels[order],
                                                                INDEX: order})
        self._nodes: dict[int, np.ndarray] = {}
        try:
            with warnings.catch_warnings():  # Dirichlet redraws, unused classes: not errors
                warnings.simplefilter("ignore")
                self.node(0)  # the partitioner draws every node's share on first use
        except ValueError as err:
            raise DataError(f"--partition {partition} cannot split this training set "
                            f"({len(labels)} samples, {num_classes} classes) over "
                            f"{num_nodes} nodes: {_why(spec, err, len(labels), num_nodes)}; "
                            f"{FIXES[spec.kind]}") from None

    def node(self, node: int) -> np.ndarray:
        """Node ``node``'s indices into the labels: read-only int64 (m,),
        m >= 1, in the partitioner's order; no index is on two nodes."""
        if node not in self._nodes:
            shard = self._partitioner.load_partition(node).with_format("numpy")
            indices = np.asarray(shard[INDEX], dtype=np.int64)
            indices.setflags(write=False)
            self._nodes[node] = indices
        return self._nodes[node]

    def all_nodes(self) -> list[np.ndarray]:
        """:meth:`node` of nodes 0..N-1."""
        return [self.node(node) for node in range(self.num_nodes)]


def dirichlet_min_size(samples: int, num_nodes: int) -> int:
    """Fewest samples a ``dirichlet`` node may get: flwr-datasets' default 10,
    or half the even share n / N where that is smaller, and at least 1."""
    return max(1, min(DIRICHLET_MIN_SIZE, samples // (2 * num_nodes)))


def _partitioner(spec: PartitionSpec, num_nodes: int, samples: int,
                 seed: int) -> Partitioner:
    """The flwr-datasets partitioner of ``spec``, seeded."""
    if spec.kind == "iid":
        return IidPartitioner(num_nodes)  # contiguous slices of the shuffled rows
    if spec.kind == "dirichlet":
        return DirichletPartitioner(num_nodes, LABEL, float(spec.parameter),
                                    min_partition_size=dirichlet_min_size(samples, num_nodes),
                                    self_balancing=True, seed=seed)
    if spec.kind == "pathological":
        # first-deterministic: node n's first class is n % C, as in the paper's
        # setup and NIID-Bench; its other classes are drawn.
        return PathologicalPartitioner(num_nodes, LABEL, int(spec.parameter),
                                       class_assignment_mode="first-deterministic",
                                       seed=seed)
    return ShardPartitioner(num_nodes, LABEL, num_shards_per_partition=int(spec.parameter),
                            seed=seed)


def _check_sizes(samples: int, num_nodes: int, text: str, spec: PartitionSpec,
                 num_classes: int) -> None:
    """DataError where the sizes alone rule ``spec`` out (before any draw)."""
    if spec.kind == "pathological" and spec.parameter > num_classes:
        raise DataError(f"--partition {text}: the training set has {num_classes} "
                        f"classes; use pathological:{num_classes} or less")
    per_node = int(spec.parameter) if spec.kind == "shard" else 1
    if samples < num_nodes * per_node:
        needs = (f"{num_nodes} nodes x {per_node} shards need at least "
                 f"{num_nodes * per_node} samples" if spec.kind == "shard" else
                 f"{num_nodes} nodes need at least one sample each")
        raise DataError(f"--partition {text}: {needs}, and the training set has "
                        f"{samples}; {FIXES[spec.kind]}")


def _why(spec: PartitionSpec, err: ValueError, samples: int, num_nodes: int) -> str:
    """Why the partitioner refused, in one clause: for Dirichlet the size it
    could not reach, else the first sentence of its message."""
    if spec.kind == "dirichlet":
        return (f"{DIRICHLET_DRAWS} draws each left a node with fewer than "
                f"{dirichlet_min_size(samples, num_nodes)} samples")
    text = " ".join(str(err).split()).split(". ")[0].rstrip(".")
    return text[:1].lower() + text[1:]
