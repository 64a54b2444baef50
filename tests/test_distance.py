"""Communication distances (hl_flower.distance) as the paper defines them."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from hl_flower.config import HLConfig
from hl_flower.distance import (
    DistanceError,
    distance_matrix,
    load_distance,
    reference_distance,
)

SPEC_TOUR = [0, 3, 4, 6, 1, 5, 9, 7, 8, 2]


def _path_length(distance: np.ndarray, path: list[int]) -> float:
    return float(sum(distance[a, b] for a, b in itertools.pairwise(path)))


def _shortest_open_tour_from(distance: np.ndarray, start: int) -> float:
    """Held-Karp: shortest path from ``start`` visiting every node once."""
    n = len(distance)
    best: dict[tuple[int, int], float] = {(1 << start, start): 0.0}
    for size in range(2, n + 1):
        for subset in itertools.combinations(range(n), size):
            if start not in subset:
                continue
            mask = sum(1 << v for v in subset)
            for last in subset:
                if last == start:
                    continue
                prev_mask = mask & ~(1 << last)
                candidates = [best[prev_mask, p] + distance[p, last]
                              for p in subset if p != last and (prev_mask, p) in best]
                if candidates:
                    best[mask, last] = min(candidates)
    full = (1 << n) - 1
    return min(best[full, last] for last in range(n) if (full, last) in best)


def test_reference_matrix_equals_symmetrised_seeded_uniform() -> None:
    b = np.random.RandomState(0).random_sample((10, 10)) / 10
    expected = (b + b.T) / 2
    np.fill_diagonal(expected, 0.0)
    assert np.array_equal(reference_distance(10, 0), expected)


def test_reference_matrix_is_symmetric_with_zero_diagonal() -> None:
    d = reference_distance(10, 0)
    assert d.shape == (10, 10)
    assert np.array_equal(d, d.T)
    assert np.all(np.diag(d) == 0.0)


def test_reference_off_diagonal_range_matches_spec() -> None:
    d = reference_distance(10, 0)
    off = d[~np.eye(10, dtype=bool)]
    assert round(off.min(), 3) == 0.004
    assert round(off.max(), 3) == 0.096
    assert np.all((off > 0) & (off < 0.1))


def test_spec_tour_has_length_0_175() -> None:
    assert round(_path_length(reference_distance(10, 0), SPEC_TOUR), 3) == 0.175


def test_spec_tour_is_the_shortest_tour_from_node_0() -> None:
    d = reference_distance(10, 0)
    assert _shortest_open_tour_from(d, 0) == pytest.approx(_path_length(d, SPEC_TOUR))


def test_nearest_unvisited_from_node_0_costs_0_180() -> None:
    d = reference_distance(10, 0)
    path = [0]
    while len(path) < 10:
        here = path[-1]
        path.append(min((n for n in range(10) if n not in path), key=lambda n: d[here, n]))
    assert round(_path_length(d, path), 3) == 0.180


def test_reference_matrix_depends_on_seed_and_size() -> None:
    assert not np.array_equal(reference_distance(10, 0), reference_distance(10, 1))
    assert reference_distance(4, 0).shape == (4, 4)


def test_load_distance_from_csv(tmp_path: Path) -> None:
    file = tmp_path / "d.csv"
    file.write_text("0,1.5,2\n1.5,0,3\n2,3,0\n")
    matrix = load_distance(str(file), 3)
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[0, 1.5, 2], [1.5, 0, 3], [2, 3, 0]]


def test_load_distance_from_npy(tmp_path: Path) -> None:
    expected = reference_distance(5, 3)
    np.save(tmp_path / "d.npy", expected)
    assert np.array_equal(load_distance(str(tmp_path / "d.npy"), 5), expected)


def test_load_distance_accepts_integer_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.array([[0, 2], [2, 0]], dtype=np.int32))
    matrix = load_distance(str(tmp_path / "d.npy"), 2)
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[0.0, 2.0], [2.0, 0.0]]


def test_missing_distance_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DistanceError, match="does not exist"):
        load_distance(str(tmp_path / "none.csv"), 3)


def test_directory_is_not_a_distance_file(tmp_path: Path) -> None:
    with pytest.raises(DistanceError):
        load_distance(str(tmp_path), 3)


def test_non_square_matrix_raises(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("0,1,2\n1,0,3\n")
    with pytest.raises(DistanceError, match="not square"):
        load_distance(str(tmp_path / "d.csv"), 2)


def test_one_dimensional_npy_raises(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.zeros(4))
    with pytest.raises(DistanceError, match="not square"):
        load_distance(str(tmp_path / "d.npy"), 2)


def test_matrix_for_another_node_count_raises(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", reference_distance(4))
    with pytest.raises(DistanceError, match="4 x 4 but there are 10 nodes"):
        load_distance(str(tmp_path / "d.npy"), 10)


@pytest.mark.parametrize(("csv_text", "problem"), [
    ("0,1\n2,0\n", "not symmetric"),
    ("0,-1\n-1,0\n", "negative"),
    ("0,nan\nnan,0\n", "NaN"),
    ("0,far\nfar,0\n", "not a numeric matrix"),
])
def test_bad_csv_matrix_raises(tmp_path: Path, csv_text: str, problem: str) -> None:
    (tmp_path / "d.csv").write_text(csv_text)
    with pytest.raises(DistanceError, match=problem):
        load_distance(str(tmp_path / "d.csv"), 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_distance_raises(tmp_path: Path, bad: float) -> None:
    np.save(tmp_path / "d.npy", np.array([[0.0, bad], [bad, 0.0]]))
    with pytest.raises(DistanceError, match="NaN or infinite"):
        load_distance(str(tmp_path / "d.npy"), 2)


def test_pickled_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    matrix = np.empty((2, 2), dtype=object)
    matrix[:] = [[0.0, 1.0], [1.0, 0.0]]
    np.save(tmp_path / "d.npy", matrix, allow_pickle=True)
    with pytest.raises(DistanceError, match="not a numeric matrix"):
        load_distance(str(tmp_path / "d.npy"), 2)


def test_npy_holding_a_raw_pickle_is_refused(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "d.npy").write_bytes(pickle.dumps([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(DistanceError):
        load_distance(str(tmp_path / "d.npy"), 2)


def test_distance_matrix_defaults_to_the_reference() -> None:
    assert np.array_equal(distance_matrix(HLConfig()), reference_distance(10, 0))
    assert np.array_equal(distance_matrix(HLConfig(num_nodes=4, distance_seed=3)),
                          reference_distance(4, 3))


def test_distance_matrix_reads_the_configured_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("0,7\n7,0\n")
    config = HLConfig(num_nodes=2, distance_file=str(tmp_path / "d.csv"))
    assert distance_matrix(config).tolist() == [[0.0, 7.0], [7.0, 0.0]]
    with pytest.raises(DistanceError):
        distance_matrix(config.replace(num_nodes=3))
