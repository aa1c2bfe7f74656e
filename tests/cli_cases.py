"""Inputs shared by the table-driven command-line tests (`test_bad_inputs`, `test_robust`)."""

from __future__ import annotations

import numpy as np


def sparse_matrix(K: int = 48, N: int = 40, seed: int = 0) -> np.ndarray:
    """A seeded K x N float32 matrix with the entries of magnitude below 1 zeroed (about 68 % zeros)."""
    W = np.random.default_rng(seed).standard_normal((K, N)).astype(np.float32)
    W[np.abs(W) < 1.0] = 0
    return W
