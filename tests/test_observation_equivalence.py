"""The fast observation equals the reference's stacked PCA for several N and k."""

from __future__ import annotations

import numpy as np
import pytest

from hl_flower.observation import reference_observation, stacked_observation


@pytest.mark.parametrize(("num_nodes", "k"), [(10, 1), (10, 3), (4, 1), (3, 2), (12, 5),
                                              (6, 6), (100, 1), (100, 12), (1000, 3)])
def test_fast_observation_matches_stacked_pca(num_nodes: int, k: int) -> None:
    rng = np.random.default_rng(num_nodes * 100 + k)
    global_flat = rng.normal(size=3000).astype(np.float32)
    chosen = rng.choice(num_nodes, k, replace=False)
    trained = {int(n): (global_flat + rng.normal(scale=0.05, size=3000)).astype(np.float32)
               for n in chosen}
    fast = reference_observation(global_flat, trained, num_nodes, 10).reshape(num_nodes, 10)
    slow = stacked_observation(global_flat, trained, num_nodes, 10).reshape(num_nodes, 10)
    rank = min(k, num_nodes - 1, 10)  # centring removes one dimension when all train
    scale = np.abs(slow[:, :rank]).max()
    # sklearn works in float32, this in float64
    np.testing.assert_allclose(fast[:, :rank], slow[:, :rank], atol=1e-3 * scale)
    assert np.all(fast[:, rank:] == 0.0)  # no variance: exactly zero, not noise
    assert np.all(np.abs(slow[:, rank:]) < 1e-3 * scale)


def test_k1_observation_singles_out_the_trained_node() -> None:
    rng = np.random.default_rng(1)
    global_flat = rng.normal(size=500).astype(np.float32)
    trained = {3: global_flat + 0.1}
    observation = reference_observation(global_flat, trained, 10, 10).reshape(10, 10)
    first = observation[:, 0]
    assert np.argmax(np.abs(first)) == 3
    others = np.delete(first, 3)
    assert np.allclose(others, others[0]) and not np.isclose(first[3], others[0])
