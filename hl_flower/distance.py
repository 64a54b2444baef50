"""Communication distances between nodes and the cost of a hop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import HLConfig
from .csv_matrix import MatrixTextError, read_matrix_text


class DistanceError(ValueError):
    """A distance file is unusable; the message names the problem."""


def reference_distance(num_nodes: int, seed: int = 0) -> np.ndarray:
    """Reference matrix: B = U[0,1)^(NxN) / 10, D = (B + B^T) / 2, zero diagonal."""
    b = np.random.RandomState(seed).random_sample((num_nodes, num_nodes)) / 10
    distance = (b + b.T) / 2
    np.fill_diagonal(distance, 0.0)
    return distance


def load_distance(path: str, num_nodes: int) -> np.ndarray:
    """Load a user's N x N matrix from a .npy file or a text file (CSV,
    TSV or space-separated, as spreadsheets and numpy or pandas write them:
    :mod:`hl_flower.csv_matrix`) and check it; DistanceError says why not."""
    file = Path(path)
    if not file.is_file():
        raise DistanceError(f"--distance-file {path} does not exist; give a "
                            "CSV or .npy file with an N x N matrix")
    try:
        if file.suffix == ".npy":
            matrix = np.asarray(np.load(file, allow_pickle=False), dtype=np.float64)
        else:
            matrix = read_matrix_text(file)
    except (ValueError, TypeError, OSError) as err:
        raise DistanceError(f"--distance-file {path} is not a numeric matrix: "
                            f"{_in_words(err)}") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise DistanceError(f"--distance-file {path} is not square "
                            f"(shape {matrix.shape}); it needs N x N values")
    if matrix.shape[0] != num_nodes:
        raise DistanceError(f"--distance-file {path} is {matrix.shape[0]} x "
                            f"{matrix.shape[0]} but there are {num_nodes} "
                            "nodes; match --nodes to the file")
    if not np.all(np.isfinite(matrix)):
        raise DistanceError(f"--distance-file {path} holds NaN or infinite "
                            "values; every distance must be a finite number")
    if np.any(matrix < 0):
        raise DistanceError(f"--distance-file {path} holds negative "
                            "distances; every distance must be >= 0")
    if not np.allclose(matrix, matrix.T, rtol=1e-6, atol=1e-9):
        raise DistanceError(f"--distance-file {path} is not symmetric; "
                            "d[i][j] must equal d[j][i]")
    return matrix


def _in_words(err: Exception) -> str:
    """Why a distance file could not be read, as one plain line."""
    if isinstance(err, MatrixTextError):
        return f"it {err}"
    if "allow_pickle" in str(err):
        return "the .npy file holds Python objects; save a float array with np.save"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def distance_matrix(config: HLConfig) -> np.ndarray:
    """The user's distance file, or the reference matrix."""
    if config.distance_file:
        return load_distance(config.distance_file, config.num_nodes)
    return reference_distance(config.num_nodes, config.distance_seed)
