"""The server loads only the global test set, a node only training data.

In deployment every Flower process is a separate program: the ServerApp keeps
the test set for evaluation, each ClientApp the training set it partitions.
"""

from __future__ import annotations

import numpy as np
import pytest

from hl_flower.data import load_partition
from hl_flower.image_sets import load_dataset, load_test_set, load_training_set


@pytest.mark.parametrize("name", ["digits", "mnist-5k"])
def test_server_part_has_no_training_data(name: str) -> None:
    full, server = load_dataset(name), load_test_set(name)
    assert len(server.x_train) == len(server.y_train) == 0
    np.testing.assert_array_equal(server.x_test, full.x_test)
    np.testing.assert_array_equal(server.y_test, full.y_test)
    assert server.input_shape == full.input_shape
    assert server.num_classes == full.num_classes


@pytest.mark.parametrize("name", ["digits", "mnist-5k"])
def test_node_part_has_no_test_data_and_the_same_partitions(name: str) -> None:
    full, nodes = load_dataset(name), load_training_set(name)
    assert len(nodes.x_test) == len(nodes.y_test) == 0
    assert nodes.input_shape == full.input_shape
    assert nodes.num_classes == full.num_classes
    for node in (0, 3):
        expected = load_partition(full, node, 4, 100, 60, "reference", 0)
        got = load_partition(nodes, node, 4, 100, 60, "reference", 0)
        np.testing.assert_array_equal(got.x, expected.x)
        np.testing.assert_array_equal(got.y, expected.y)
