"""Symmetric per-output-channel int8 quantization of `K x N` matrices (one scale per column of `W`).

Shared by the bit-exact hardware simulation, the RTL export and subword pruning, so all of them agree on
what the integer weights are: `q = clip(round(W / scale), -127, 127)` with `scale = max|W[:, j]| / 127`.
Weights that already are integers in [-127, 127] (an int8 checkpoint) keep their values: every scale is 1.
"""

from __future__ import annotations

import numpy as np

INT8_MAX = 127


def column_scales(weights: np.ndarray, qmax: int = INT8_MAX) -> np.ndarray:
    """Per-column scale so the largest |w| of each column maps to `qmax`; 1.0 for an all-zero column, and
    1.0 everywhere for integer weights already within `[-qmax, qmax]` (they are the int8 weights)."""
    weights = np.asarray(weights)
    if np.issubdtype(weights.dtype, np.integer) and (
        weights.size == 0 or np.abs(weights.astype(np.int64)).max() <= qmax
    ):
        return np.ones(weights.shape[1], dtype=np.float64)
    peak = np.abs(np.asarray(weights, dtype=np.float64)).max(axis=0)
    return np.where(peak > 0, peak / qmax, 1.0)


def quantize_columns(weights: np.ndarray, scales: np.ndarray | None = None, qmax: int = INT8_MAX):
    """`(q, scales)`: int8 weights (zeros stay zero) and the float64 scale of each column."""
    if scales is None:
        scales = column_scales(weights, qmax)  # before the cast: integer weights keep scale 1
    weights = np.asarray(weights, dtype=np.float64)
    q = np.clip(np.rint(weights / scales), -qmax, qmax).astype(np.int8)
    return q, np.asarray(scales, dtype=np.float64)


def dequantize_columns(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Float weights `q * scale` (per column)."""
    return q.astype(np.float64) * scales
