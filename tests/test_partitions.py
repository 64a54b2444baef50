"""Partitions drawn by Flower Datasets' partitioners (``--partition iid``,
``dirichlet:<alpha>``, ``pathological:<k>``, ``shard:<s>``) and the
``partitions.csv`` / ``partitions.png`` of a run folder.

Everything runs on scikit-learn's digits (1,438 training samples, 10
classes), offline; only the last test starts a simulation.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sim_runner import refused

from hl_flower.config import ConfigError, HLConfig, parse_partition
from hl_flower.data import (
    DataError,
    Dataset,
    check_partitions,
    drawn_partition,
    load_partition,
    partition_class_counts,
)
from hl_flower.image_sets import load_training_set

ROOT = Path(__file__).resolve().parents[1]
NODES = 4
DRAWN = ("iid", "dirichlet:0.5", "pathological:2", "shard:2")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_training_set("digits")


def draw(dataset: Dataset, partition: str, nodes: int = NODES, seed: int = 0
         ) -> list[np.ndarray]:
    return drawn_partition(dataset.y_train, nodes, partition, seed,
                           dataset.num_classes).all_nodes()


def fresh_draw(dataset: Dataset, partition: str, seed: int) -> list[np.ndarray]:
    """A new draw, not the process's cached one."""
    from hl_flower.flower_partitions import DrawnPartition

    return DrawnPartition(dataset.y_train, NODES, partition, seed,
                          dataset.num_classes).all_nodes()


def class_counts(dataset: Dataset, nodes: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.bincount(dataset.y_train[idx], minlength=dataset.num_classes)
                     for idx in nodes])


# --- sizes and classes -------------------------------------------------------------


@pytest.mark.parametrize("partition", ["iid", "dirichlet:0.5", "dirichlet:0.1"])
def test_every_sample_is_on_exactly_one_node(digits: Dataset, partition: str) -> None:
    nodes = draw(digits, partition)
    assert len(nodes) == NODES and all(len(idx) > 0 for idx in nodes)
    everything = np.sort(np.concatenate(nodes))
    np.testing.assert_array_equal(everything, np.arange(len(digits.y_train)))


def test_iid_nodes_are_equal_in_size_and_balanced_in_class(digits: Dataset) -> None:
    nodes = draw(digits, "iid")
    sizes = [len(idx) for idx in nodes]
    assert max(sizes) - min(sizes) <= 1  # n // N, the first n % N one more
    shares = class_counts(digits, nodes) / np.array(sizes)[:, None]
    overall = np.bincount(digits.y_train) / len(digits.y_train)
    assert np.abs(shares - overall).max() < 0.06


def test_dirichlet_nodes_keep_the_minimum_size(digits: Dataset) -> None:
    from hl_flower.flower_partitions import dirichlet_min_size

    assert dirichlet_min_size(1438, 4) == 10  # flwr-datasets' default
    assert dirichlet_min_size(4000, 1000) == 2  # half the even share of 4
    assert dirichlet_min_size(10, 10) == 1
    nodes = draw(digits, "dirichlet:0.1")
    assert min(len(idx) for idx in nodes) >= 10


def test_small_alpha_skews_classes_more_than_large_alpha(digits: Dataset) -> None:
    def mean_classes_holding_most(partition: str) -> float:
        counts = class_counts(digits, draw(digits, partition))
        share = np.sort(counts / counts.sum(axis=1, keepdims=True), axis=1)[:, ::-1]
        return float(np.mean(np.argmax(np.cumsum(share, axis=1) >= 0.9, axis=1) + 1))

    assert mean_classes_holding_most("dirichlet:0.05") < mean_classes_holding_most(
        "dirichlet:100")


def test_shard_gives_every_node_s_shards_of_equal_size(digits: Dataset) -> None:
    nodes = draw(digits, "shard:3")
    shard = len(digits.y_train) // (NODES * 3)  # 119
    assert [len(idx) for idx in nodes] == [3 * shard] * NODES
    used = np.concatenate(nodes)
    assert len(np.unique(used)) == len(used)  # no sample twice
    assert len(digits.y_train) - len(used) < NODES * 3  # only the remainder unused


def test_shard_nodes_hold_few_classes(digits: Dataset) -> None:
    classes = (class_counts(digits, draw(digits, "shard:1")) > 0).sum(axis=1)
    assert classes.max() <= 4  # one shard of 359 label-sorted samples: ~2.5 classes


@pytest.mark.parametrize("classes", [1, 2, 5])
def test_pathological_nodes_hold_k_classes_node_n_class_n_mod_c(digits: Dataset,
                                                                 classes: int) -> None:
    counts = class_counts(digits, draw(digits, f"pathological:{classes}", nodes=12))
    assert ((counts > 0).sum(axis=1) == classes).all()
    assert all(counts[node, node % 10] > 0 for node in range(12))


def test_pathological_shares_no_sample(digits: Dataset) -> None:
    used = np.concatenate(draw(digits, "pathological:3", nodes=12))
    assert len(np.unique(used)) == len(used)


def test_a_thousand_nodes_are_drawn(digits: Dataset) -> None:
    nodes = draw(digits, "iid", nodes=1000)
    assert len(nodes) == 1000 and min(len(idx) for idx in nodes) == 1


# --- reproducibility ----------------------------------------------------------------


@pytest.mark.parametrize("partition", DRAWN)
def test_same_partition_seed_same_nodes_another_seed_others(digits: Dataset,
                                                            partition: str) -> None:
    first, again, other = (fresh_draw(digits, partition, seed) for seed in (3, 3, 4))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(np.sort(a), np.sort(b))
               for a, b in zip(first, other, strict=True))


def test_run_seed_changes_only_the_order_of_a_node(digits: Dataset) -> None:
    one = load_partition(digits, 1, NODES, 0, 0, "dirichlet:0.5", seed=0, partition_seed=7)
    two = load_partition(digits, 1, NODES, 0, 0, "dirichlet:0.5", seed=1, partition_seed=7)
    node = draw(digits, "dirichlet:0.5", seed=7)[1]
    assert not np.array_equal(one.y, two.y)  # shuffled with (seed, node)
    for part in (one, two):
        np.testing.assert_array_equal(np.sort(part.y), np.sort(digits.y_train[node]))
        assert sorted(map(bytes, part.x)) == sorted(map(bytes, digits.x_train[node]))


def test_drawn_indices_cannot_be_changed_by_a_caller(digits: Dataset) -> None:
    with pytest.raises(ValueError, match="read-only"):
        draw(digits, "iid")[0][0] = 5


# --- bad parameters -----------------------------------------------------------------


@pytest.mark.parametrize(("partition", "message"), [
    ("dirichlet:0", "--partition dirichlet:0: alpha must be a positive number; use for "
                    "example dirichlet:0.5"),
    ("dirichlet:-1", "--partition dirichlet:-1: alpha must be a positive number"),
    ("dirichlet:abc", "--partition dirichlet:abc: alpha must be a positive number"),
    ("dirichlet:inf", "alpha must be a positive number"),
    ("dirichlet:nan", "alpha must be a positive number"),
    ("dirichlet", "alpha must be a positive number"),
    ("pathological:0", "--partition pathological:0: classes per node must be a whole "
                       "number, 1 or more; use for example pathological:2"),
    ("pathological:1.5", "classes per node must be a whole number"),
    ("shard:0", "--partition shard:0: shards per node must be a whole number, 1 or more"),
    ("shard:", "shards per node must be a whole number"),
    ("iid:3", "--partition iid takes no parameter, got 'iid:3'; use --partition iid"),
    ("disjoint:2", "--partition disjoint takes no parameter"),
    ("dirichlet0.5", "unknown --partition 'dirichlet0.5'; use reference, disjoint, iid, "
                     "dirichlet:<alpha>, pathological:<classes per node> or "
                     "shard:<shards per node>"),
])
def test_bad_partition_is_a_one_line_config_error(partition: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HLConfig(partition=partition).validate()
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("partition", "kind", "parameter"), [
    ("reference", "reference", 0), ("iid", "iid", 0), ("dirichlet:0.5", "dirichlet", 0.5),
    ("pathological:3", "pathological", 3), ("shard:2", "shard", 2)])
def test_good_partitions_parse(partition: str, kind: str, parameter: float) -> None:
    spec = parse_partition(partition)
    assert (spec.kind, spec.parameter) == (kind, parameter)
    assert spec.drawn == (kind not in ("reference", "disjoint"))


def test_partition_seed_must_be_a_seed() -> None:
    with pytest.raises(ConfigError, match="--partition-seed must be in 0..4294967295"):
        HLConfig(partition_seed=-1).validate()


@pytest.mark.parametrize(("partition", "nodes", "message"), [
    ("pathological:11", 4, "--partition pathological:11: the training set has 10 classes; "
                           "use pathological:10 or less"),
    ("iid", 2000, "--partition iid: 2000 nodes need at least one sample each, and the "
                  "training set has 1438; use fewer --nodes"),
    ("dirichlet:0.5", 2000, "2000 nodes need at least one sample each"),
    ("shard:400", 4, "--partition shard:400: 4 nodes x 400 shards need at least 1600 "
                     "samples, and the training set has 1438; use fewer --nodes or fewer "
                     "shards per node"),
    ("pathological:5", 400, "--partition pathological:5 cannot split this training set "
                            "(1438 samples, 10 classes) over 400 nodes: label: "),
    ("dirichlet:0.01", 100, "--partition dirichlet:0.01 cannot split this training set "
                            "(1438 samples, 10 classes) over 100 nodes: 11 draws each left "
                            "a node with fewer than 7 samples; use a larger alpha, fewer "
                            "--nodes or another --partition-seed"),
])
def test_data_that_cannot_be_split_is_a_one_line_data_error(
        digits: Dataset, partition: str, nodes: int, message: str) -> None:
    with pytest.raises(DataError) as caught:
        check_partitions(digits, nodes, 1, 1, partition)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("args", "message"), [
    (["--partition", "dirichlet:0"], "error: --partition dirichlet:0: alpha must be"),
    (["--partition", "shard:0"], "error: --partition shard:0: shards per node"),
    (["--dataset", "digits", "--nodes", "4", "--partition", "pathological:12"],
     "error: --partition pathological:12: the training set has 10 classes"),
    (["--dataset", "digits", "--nodes", "1500", "--partition", "iid"],
     "error: --partition iid: 1500 nodes need at least one sample each"),
])
def test_sim_refuses_with_exit_code_2_and_writes_nothing(tmp_path: Path, args: list[str],
                                                         message: str) -> None:
    done = refused(*args, "--out", str(tmp_path), "--name", "r")
    assert done.returncode == 2
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_the_reference_path_never_imports_flower_datasets() -> None:
    script = textwrap.dedent("""
        import sys
        from hl_flower.data import check_partitions, partition_class_counts
        from hl_flower.image_sets import load_training_set
        digits = load_training_set("digits")
        for partition in ("reference", "disjoint"):
            check_partitions(digits, 4, 100, 50, partition)
            partition_class_counts(digits, 4, 100, 50, partition)
        assert "datasets" not in sys.modules and "flwr_datasets" not in sys.modules
        check_partitions(digits, 4, 100, 50, "iid")
        assert "flwr_datasets" in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# --- partitions.csv and partitions.png ----------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("partition", ["reference", "disjoint", *DRAWN])
def test_partitions_csv_counts_each_nodes_actual_data(tmp_path: Path, digits: Dataset,
                                                      partition: str) -> None:
    from hl_flower.server_app import start_run_folder

    config = HLConfig(dataset="digits", partition=partition, num_nodes=NODES,
                      main_samples=100, other_samples=50, seed=2, partition_seed=5)
    start_run_folder(tmp_path, config)
    rows = read_rows(tmp_path / "partitions.csv")
    assert list(rows[0]) == ["node", "samples", *(f"class_{c}" for c in range(10))]
    assert [int(row["node"]) for row in rows] == list(range(NODES))
    for node, row in enumerate(rows):
        part = load_partition(digits, node, NODES, 100, 50, partition, seed=2,
                              partition_seed=5)
        expected = np.bincount(part.y, minlength=10)
        assert [int(row[f"class_{c}"]) for c in range(10)] == expected.tolist()
        assert int(row["samples"]) == len(part.y)
    assert (tmp_path / "partitions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "config.json").is_file()


def test_counts_of_a_thousand_reference_nodes(digits: Dataset) -> None:
    counts = partition_class_counts(digits, 1000, 1, 0, "reference")
    assert counts.shape == (1000, 10) and (counts.sum(axis=1) == 1).all()
    assert (counts.argmax(axis=1) == np.arange(1000) % 10).all()


def test_a_task_with_its_own_partitions_gets_no_partitions_csv(tmp_path: Path) -> None:
    from hl_flower.server_app import start_run_folder

    path = tmp_path / "own_task.py"
    path.write_text(textwrap.dedent("""
        def load_model(): raise AssertionError("not needed")
        def load_training_set(): raise AssertionError("not loaded on the server")
        def load_test_set(): raise AssertionError("not needed")
        def load_partition(partition_id, num_partitions): raise AssertionError("nor this")
    """))
    folder = tmp_path / "run"
    folder.mkdir()
    start_run_folder(folder, HLConfig(task=str(path), num_nodes=NODES))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]


@pytest.mark.slow
def test_sim_trains_on_a_dirichlet_partition_and_writes_partitions_csv(
        tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "sim.py", "--dataset", "digits", "--nodes", "4",
         "--partition", "dirichlet:0.5", "--episodes", "1", "--max-steps", "3",
         "--goal", "0.99", "--learning-rate", "0.005", "--out", str(tmp_path),
         "--name", "d"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "d"
    rows = read_rows(folder / "partitions.csv")
    assert len(rows) == 4 and sum(int(row["samples"]) for row in rows) == 1438
    assert (folder / "partitions.png").stat().st_size > 0
    assert len(read_rows(folder / "steps.csv")) == 3
