"""Unstructured magnitude pruning of a NumPy matrix (the `--sparsity` option of `pack`)."""

from __future__ import annotations

import numpy as np

from tightcompress.errors import TightCompressError


def magnitude_prune(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the smallest-magnitude `sparsity` fraction of `weights` (ties broken by position).

    Weights that are already zero count towards the fraction; the input is not modified.
    """
    if not 0.0 <= sparsity < 1.0:
        raise TightCompressError(f"sparsity must be in [0, 1), got {sparsity}")
    pruned = np.array(weights, copy=True)
    n_zero = round(sparsity * pruned.size)
    if n_zero == 0:
        return pruned
    order = np.argsort(np.abs(pruned), axis=None, kind="stable")
    pruned.flat[order[:n_zero]] = 0
    return pruned
