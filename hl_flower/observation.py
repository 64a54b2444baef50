"""The reference observation: PCA of every node's flattened weights.

After a step, selected nodes hold their trained weights and every other node
still holds the previous global model. The N x P stack is projected on its
first 10 principal components, refitting the PCA every step, and flattened.
With k = 1 the stack has two distinct rows (the global model and the holder's
update), so the holder can build it from what it has.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.decomposition import PCA


def flatten_weights(weights: list[np.ndarray]) -> np.ndarray:
    """Concatenate a model's arrays into one float32 vector."""
    return np.concatenate([np.ravel(w) for w in weights]).astype(np.float32)


def reference_observation(global_flat: np.ndarray, trained: dict[int, np.ndarray],
                          num_nodes: int, components: int) -> np.ndarray:
    """PCA observation (length ``num_nodes * components``) as the reference.

    ``trained`` maps the nodes that trained this step to their flattened
    weights. When N or P is smaller than ``components`` the missing
    components are zero columns.
    """
    stack = np.repeat(global_flat[None, :], num_nodes, axis=0)
    for node, flat in trained.items():
        stack[node] = flat
    fitted = min(components, *stack.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero-variance stacks
        coords = PCA(n_components=fitted, svd_solver="full").fit_transform(stack)
    coords = np.nan_to_num(coords, nan=0.0)
    padded = np.zeros((num_nodes, components), np.float32)
    padded[:, :fitted] = coords
    return padded.ravel()
