"""Labelled data and the HL partition of a training set into nodes.

Node ``n`` holds ``main_samples`` samples of class ``n % C`` and
``other_samples`` samples of the other classes, as in the paper's
experiments (Sun & Ochiai 2022). ``reference``
slices both as the paper's code does, so the ``other`` samples of different
nodes largely coincide; ``disjoint`` gives every node its own ``other``
samples, taken from the back of each class so they rarely meet ``main`` slices.
``iid``, ``dirichlet:<alpha>``, ``pathological:<k>`` and ``shard:<s>`` are
drawn over the whole training set by Flower Datasets' partitioners
(:mod:`hl_flower.flower_partitions`, imported only for them), with sizes of
their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .config import parse_partition

if TYPE_CHECKING:
    from .flower_partitions import DrawnPartition


class DataError(ValueError):
    """A dataset cannot be loaded or partitioned; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Samples (n, ...) and integer labels 0..C-1 (n,), training and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int = 0  # number of label values; 0: count them in the labels

    @property
    def num_classes(self) -> int:
        """Number of label values (labels are 0..C-1)."""
        if self.classes:
            return self.classes
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (an image: channel last)."""
        return tuple(self.x_train.shape[1:])


def node_indices(labels: np.ndarray, node: int, num_nodes: int, main: int,
                 other: int, partition: str, num_classes: int,
                 partition_seed: int = 0) -> np.ndarray:
    """Indices into the training set of node ``node``'s samples (unshuffled).

    Parameters
    ----------
    labels : np.ndarray
        Integer labels 0..C-1 of the training set, shape (n,).
    node, num_nodes : int
        The node n (0..N-1) and N.
    main, other : int
        Samples of class n % C and of the other classes (``reference`` and
        ``disjoint`` only; the drawn kinds size nodes themselves).
    partition : str
        ``--partition``: reference, disjoint, iid, dirichlet:<alpha>,
        pathological:<k> or shard:<s>.
    num_classes : int
        C.
    partition_seed : int
        Seed of the drawn kinds (unused by ``reference`` and ``disjoint``).

    Returns
    -------
    np.ndarray
        int64 indices into ``labels`` (m,), m >= 1 unless ``main`` and
        ``other`` ask for none.

    Raises
    ------
    DataError
        The training set is too small for the nodes and sizes asked for (or
        a drawn kind cannot split it); one line naming the fix.
    """
    if parse_partition(partition).drawn:
        return drawn_partition(labels, num_nodes, partition, partition_seed,
                               num_classes).node(node)
    own_class = node % num_classes
    block = node // num_classes  # nodes sharing a class take successive slices
    in_class = np.flatnonzero(labels == own_class)
    main_idx = in_class[block * main:(block + 1) * main]
    if len(main_idx) < main:
        fits = largest_main_samples(labels, num_nodes, num_classes)
        raise DataError(
            f"node {node} needs {main} samples of class {own_class} "
            f"(slice {block * main}..{(block + 1) * main}) but the training set "
            f"has {len(in_class)}; use fewer --nodes or --main-samples {fits} or less")
    if partition == "reference":
        others = np.flatnonzero(labels != own_class)
        other_idx = others[block * other:(block + 1) * other]
        if len(other_idx) < other:
            raise DataError(f"node {node} needs {other} samples of other "
                            f"classes but only {len(others)} exist; use fewer "
                            "--nodes or a smaller --other-samples")
    else:
        other_idx = _disjoint_other(labels, node, num_nodes, other, num_classes)
    return np.concatenate([main_idx, other_idx])


_DRAWN: dict[tuple, DrawnPartition] = {}  # recent drawn partitions
_DRAWN_KEPT = 4


def drawn_partition(labels: np.ndarray, num_nodes: int, partition: str, seed: int,
                    num_classes: int) -> DrawnPartition:
    """The draw of a drawn ``partition`` (iid, dirichlet, pathological, shard)
    for these labels (n,), N, partition and seed, made once per process: a
    node, the checks and the counts share it. Raises DataError (see
    :class:`hl_flower.flower_partitions.DrawnPartition`)."""
    digest = hashlib.blake2b(np.ascontiguousarray(labels).view(np.uint8),
                             digest_size=16).hexdigest()
    key = (digest, labels.dtype.str, num_nodes, partition, seed, num_classes)
    if key not in _DRAWN:
        from .flower_partitions import DrawnPartition  # seconds to import: only here

        drawn = DrawnPartition(labels, num_nodes, partition, seed, num_classes)
        if len(_DRAWN) >= _DRAWN_KEPT:
            del _DRAWN[next(iter(_DRAWN))]
        _DRAWN[key] = drawn
    return _DRAWN[key]


def all_node_indices(labels: np.ndarray, num_nodes: int, main: int, other: int,
                     partition: str, num_classes: int,
                     partition_seed: int = 0) -> Sequence[np.ndarray]:
    """:func:`node_indices` of nodes 0..N-1 (a drawn partition drawn once)."""
    if parse_partition(partition).drawn:
        return drawn_partition(labels, num_nodes, partition, partition_seed,
                               num_classes).all_nodes()
    return [node_indices(labels, node, num_nodes, main, other, partition, num_classes)
            for node in range(num_nodes)]


def largest_main_samples(labels: np.ndarray, num_nodes: int, num_classes: int) -> int:
    """Largest ``main_samples`` with which every node's main slice fits."""
    counts = np.bincount(labels, minlength=num_classes)
    return int(min(counts[n % num_classes] // (n // num_classes + 1)
                   for n in range(num_nodes)))


def _disjoint_other_counts(node: int, other: int, num_classes: int) -> dict[int, int]:
    """How many ``other`` samples node ``node`` takes from each other class."""
    classes = [c for c in range(num_classes) if c != node % num_classes]
    # Rotate who gets the remainder so every class is used about equally.
    start = node % len(classes)
    classes = classes[start:] + classes[:start]
    share, extra = divmod(other, len(classes))
    return {c: share + (1 if i < extra else 0) for i, c in enumerate(classes)}


def _disjoint_taken_before(node: int, other: int, num_classes: int) -> np.ndarray:
    """Per class, the ``other`` samples nodes 0..node-1 took (vectorised form
    of summing :func:`_disjoint_other_counts` over them: O(node x C), so
    1,000 nodes stay fast)."""
    earlier = np.arange(node)
    own = earlier % num_classes
    others = num_classes - 1
    share, extra = divmod(other, others) if others else (0, 0)
    taken = np.zeros(num_classes, dtype=int)
    for c in range(num_classes):
        uses = own != c
        position = np.where(c < own, c, c - 1)  # index among the other classes
        rotated = (position - earlier % max(others, 1)) % max(others, 1)
        taken[c] = int(np.sum(uses * (share + (rotated < extra))))
    return taken


def _disjoint_other(labels: np.ndarray, node: int, num_nodes: int, other: int,
                    num_classes: int) -> np.ndarray:
    """Node's own ``other`` samples: no two nodes share one.

    Each class's samples are handed out from its end, in node order, so the
    result depends only on the settings, not on which node asks first.
    """
    taken_before = _disjoint_taken_before(node, other, num_classes)
    picked = []
    for c, n in _disjoint_other_counts(node, other, num_classes).items():
        in_class = np.flatnonzero(labels == c)[::-1]
        chunk = in_class[taken_before[c]:taken_before[c] + n]
        if len(chunk) < n:
            raise DataError(f"--partition disjoint: {num_nodes} nodes x "
                            f"{other} other samples need more class-{c} "
                            f"samples than the {len(in_class)} available; use "
                            "fewer --nodes or a smaller --other-samples")
        picked.append(chunk)
    return np.concatenate(picked) if picked else np.zeros(0, dtype=int)


@dataclass(frozen=True)
class Partition:
    """One node's training data: shuffled samples (n, ...) and their integer
    labels (n,)."""

    x: np.ndarray
    y: np.ndarray


def load_partition(dataset: Dataset, node: int, num_nodes: int, main: int,
                   other: int, partition: str, seed: int,
                   partition_seed: int = 0) -> Partition:
    """Node ``node``'s data (:func:`node_indices`), shuffled with a generator
    seeded by (seed, node). Raises DataError."""
    idx = node_indices(dataset.y_train, node, num_nodes, main, other, partition,
                       dataset.num_classes, partition_seed)
    idx = np.random.default_rng([seed, node]).permutation(idx)
    return Partition(dataset.x_train[idx], dataset.y_train[idx])


def _largest(holds: Callable[[int], bool], low: int, high: int) -> int:
    """The largest value in ``low..high`` for which ``holds`` is true, by
    bisection (``holds`` is true up to some value and false after it);
    ``low`` when it holds nowhere above ``low``."""
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if holds(middle) else (low, middle - 1)
    return low


def check_partitions(dataset: Dataset, num_nodes: int, main: int, other: int,
                     partition: str, partition_seed: int = 0) -> None:
    """Raise :class:`DataError` if any node's data cannot be built; for
    ``reference`` and ``disjoint`` the message names the sizes that fit this
    dataset and node count, for the drawn kinds what to change."""
    if parse_partition(partition).drawn:
        drawn_partition(dataset.y_train, num_nodes, partition, partition_seed,
                        dataset.num_classes)
        return

    def fits(main_samples: int, other_samples: int, nodes: int = num_nodes) -> bool:
        try:
            all_node_indices(dataset.y_train, nodes, main_samples, other_samples,
                             partition, dataset.num_classes)
        except DataError:
            return False
        return True

    if fits(main, other):
        return
    classes = dataset.num_classes
    counts = np.bincount(dataset.y_train, minlength=classes)
    main_fit = min(main, largest_main_samples(dataset.y_train, num_nodes, classes))
    other_fit = _largest(lambda value: fits(main_fit, value), 0, other)
    changes = [f"--main-samples {main_fit} or less" if main_fit < main else "",
               f"--other-samples {other_fit} or less" if other_fit < other else ""]
    most_nodes = _largest(lambda nodes: fits(main, other, nodes), 1, num_nodes - 1)
    raise DataError(
        f"{num_nodes} nodes x ({main} + {other}) samples do not fit this training "
        f"set ({counts.min()} to {counts.max()} samples per class, {classes} "
        f"classes, --partition {partition}); use "
        + " and ".join(c for c in changes if c)
        + (f", or at most {most_nodes} --nodes" if most_nodes >= 2 else ""))


def partition_class_counts(dataset: Dataset, num_nodes: int, main: int, other: int,
                           partition: str, partition_seed: int = 0) -> np.ndarray:
    """Samples of each class on each node, shape (N, C), int64: row n is the
    label count of :func:`load_partition` for node n (shuffling keeps it).
    Raises DataError as :func:`node_indices`."""
    nodes = all_node_indices(dataset.y_train, num_nodes, main, other, partition,
                             dataset.num_classes, partition_seed)
    classes = dataset.num_classes
    return np.stack([np.bincount(dataset.y_train[idx], minlength=classes)[:classes]
                     for idx in nodes]).astype(np.int64)
