"""The reference observation: PCA of every node's flattened weights.

After a step, selected nodes hold their trained weights and every other node
still holds the previous global model. The reference stacks these N rows of
P weights, projects them on their first 10 principal components (refitting
the PCA every step) and flattens the result.

Only the k trained rows differ from the global model, so the stack is never
built: with updates D (k x P) and each centred row a combination C (N x k) of
them, the stack's PCA is the SVD of the small matrix C L, where L L^T = D D^T.
The coordinates equal scikit-learn's ``PCA(svd_solver="full")``, with its
sign convention (each component's largest weight-space entry positive);
components without variance, which are rounding noise in the reference, are
exactly 0. ``stacked_observation`` is the literal reference computation.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import PCA

ZERO_VARIANCE = 1e-9  # singular values below this share of the largest are noise


def flatten_weights(weights: list[np.ndarray]) -> np.ndarray:
    """Concatenate a model's arrays into one float32 vector."""
    return np.concatenate([np.ravel(w) for w in weights]).astype(np.float32)


def reference_observation(global_flat: np.ndarray, trained: dict[int, np.ndarray],
                          num_nodes: int, components: int) -> np.ndarray:
    """PCA observation of length ``num_nodes * components``.

    ``trained`` maps the nodes that trained this step to their flattened
    weights; every other node holds ``global_flat``.
    """
    observation = np.zeros((num_nodes, components), np.float64)
    if not trained:
        return observation.astype(np.float32).ravel()
    nodes = list(trained)
    updates = np.stack([trained[n].astype(np.float64) - global_flat for n in nodes])
    mixing = np.full((num_nodes, len(nodes)), -1.0 / num_nodes)  # centred rows = C @ D
    mixing[nodes, range(len(nodes))] += 1.0
    eigenvalues, eigenvectors = np.linalg.eigh(updates @ updates.T)
    root = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))  # L with L L^T = D D^T
    left, singular, _ = np.linalg.svd(mixing @ root, full_matrices=False)
    keep = min(components, int(np.sum(singular > ZERO_VARIANCE * max(singular[0], 1e-300))))
    for i in range(keep):
        direction = (left[:, i] @ mixing) @ updates  # sign of the weight-space axis
        sign = np.sign(direction[np.argmax(np.abs(direction))]) or 1.0
        observation[:, i] = sign * left[:, i] * singular[i]
    return observation.astype(np.float32).ravel()


def stacked_observation(global_flat: np.ndarray, trained: dict[int, np.ndarray],
                        num_nodes: int, components: int) -> np.ndarray:
    """The reference's literal computation: stack N x P, refit a PCA.

    Kept to check :func:`reference_observation` against; components without
    variance come out as rounding noise here.
    """
    stack = np.repeat(global_flat[None, :], num_nodes, axis=0)
    for node, flat in trained.items():
        stack[node] = flat
    fitted = min(components, *stack.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero-variance stacks
        coords = PCA(n_components=fitted, svd_solver="full").fit_transform(stack)
    padded = np.zeros((num_nodes, components), np.float32)
    padded[:, :fitted] = np.nan_to_num(coords, nan=0.0)
    return padded.ravel()
