"""The reference observation (hl_flower.observation): PCA of every node's weights.

Expected values are computed independently from the explicitly stacked N x P matrix,
with a numpy SVD of the centred stack and with scikit-learn's default PCA.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from hl_flower.observation import flatten_weights, reference_observation

P = 300


def _stack(global_flat: np.ndarray, trained: dict[int, np.ndarray], n: int) -> np.ndarray:
    rows = [trained.get(i, global_flat) for i in range(n)]
    return np.stack(rows).astype(np.float64)


def _svd_coords(stack: np.ndarray) -> np.ndarray:
    centred = stack - stack.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    return u * s


def _setup(trained_nodes: list[int], seed: int = 0, n: int = 10):
    rng = np.random.default_rng(seed)
    global_flat = rng.normal(size=P).astype(np.float32)
    trained = {node: (global_flat + rng.normal(scale=0.1, size=P)).astype(np.float32)
               for node in trained_nodes}
    return global_flat, trained, n


def test_flatten_weights_concatenates_in_order() -> None:
    flat = flatten_weights([np.array([[1, 2], [3, 4]]), np.array([5.0]), np.zeros((1, 1, 2))])
    assert flat.dtype == np.float32
    assert flat.tolist() == [1, 2, 3, 4, 5, 0, 0]


def test_observation_has_n_times_components_entries() -> None:
    g, trained, n = _setup([3])
    obs = reference_observation(g, trained, n, 10)
    assert obs.shape == (100,)
    assert obs.dtype == np.float32
    assert np.all(np.isfinite(obs))


@pytest.mark.parametrize("holder", [0, 3, 9])
def test_single_trained_node_stands_out(holder: int) -> None:
    g, trained, n = _setup([holder])
    coords = reference_observation(g, trained, n, 10).reshape(n, 10)
    first = np.abs(coords[:, 0])
    assert int(np.argmax(first)) == holder
    others = np.delete(coords, holder, axis=0)
    assert np.allclose(others, others[0], atol=1e-5)
    # centred: the holder sits at (N-1)/N of the update, the rest at -1/N
    assert coords[holder, 0] == pytest.approx(-(n - 1) * others[0, 0], rel=1e-4)


def test_first_component_encodes_the_update_size() -> None:
    g, trained, n = _setup([2])
    small = reference_observation(g, trained, n, 10).reshape(n, 10)
    bigger = {2: g + 2 * (trained[2] - g)}
    large = reference_observation(g, bigger, n, 10).reshape(n, 10)
    assert abs(large[2, 0]) == pytest.approx(2 * abs(small[2, 0]), rel=1e-4)
    expected = (n - 1) / n * np.linalg.norm(trained[2].astype(np.float64) - g)
    assert abs(small[2, 0]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("trained_nodes", [[5], [1, 4, 7]])
def test_matches_independent_svd_of_the_stack(trained_nodes: list[int]) -> None:
    g, trained, n = _setup(trained_nodes, seed=1)
    stack = _stack(g, trained, n)
    expected = _svd_coords(stack)
    rank = len(trained_nodes)  # centred stack of k distinct updates has rank k
    got = reference_observation(g, trained, n, 10).reshape(n, 10).astype(np.float64)
    scale = np.abs(expected[:, 0]).max()
    for c in range(rank):  # each component is defined up to its sign
        sign = np.sign(got[:, c] @ expected[:, c])
        assert np.allclose(got[:, c], sign * expected[:, c], atol=1e-4 * scale)
    assert np.abs(got[:, rank:]).max() < 1e-4 * scale  # nothing beyond the rank


def test_matches_sklearn_pca_on_the_stacked_matrix() -> None:
    g, trained, n = _setup([1, 4, 7], seed=2)
    stack = np.stack([trained.get(i, g) for i in range(n)])  # float32, like Keras weights
    expected = PCA(n_components=10).fit_transform(stack)
    got = reference_observation(g, trained, n, 10).reshape(n, 10)
    scale = np.abs(expected[:, 0]).max()
    assert np.allclose(np.abs(got[:, :3]), np.abs(expected[:, :3]), atol=1e-4 * scale)


def test_no_trained_node_gives_zeros() -> None:
    g, _, n = _setup([])
    obs = reference_observation(g, {}, n, 10)
    assert obs.shape == (100,)
    assert np.all(np.isfinite(obs))
    # float32 rounding of the column means leaves ~1e-6 residue on unit-scale weights
    assert np.abs(obs).max() < 1e-5


def test_trained_node_equal_to_global_gives_zeros() -> None:
    g, _, n = _setup([])
    obs = reference_observation(g, {4: g.copy()}, n, 10)
    assert np.all(np.isfinite(obs))
    assert np.abs(obs).max() < 1e-5


def test_zero_weights_give_exact_zeros() -> None:
    obs = reference_observation(np.zeros(P, np.float32), {}, 10, 10)
    assert np.all(obs == 0.0)


def test_fewer_nodes_than_components_pads_with_zeros() -> None:
    g, trained, n = _setup([2], n=4)
    coords = reference_observation(g, trained, n, 10).reshape(n, 10)
    assert np.all(coords[:, 4:] == 0.0)
    assert int(np.argmax(np.abs(coords[:, 0]))) == 2
    assert np.abs(coords[:, 0]).max() > 0


def test_fewer_weights_than_components_pads_with_zeros() -> None:
    rng = np.random.default_rng(0)
    g = rng.normal(size=5).astype(np.float32)
    coords = reference_observation(g, {6: g + 1.0}, 10, 10).reshape(10, 10)
    assert np.all(coords[:, 5:] == 0.0)
    assert int(np.argmax(np.abs(coords[:, 0]))) == 6


def test_observation_is_deterministic() -> None:
    g, trained, n = _setup([0, 8])
    first = reference_observation(g, trained, n, 10)
    assert np.array_equal(first, reference_observation(g, trained, n, 10))


def test_inputs_are_not_modified() -> None:
    g, trained, n = _setup([3])
    g_copy, t_copy = g.copy(), trained[3].copy()
    reference_observation(g, trained, n, 10)
    assert np.array_equal(g, g_copy)
    assert np.array_equal(trained[3], t_copy)
