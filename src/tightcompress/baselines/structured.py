"""The two baselines that need no search: dense (no compression) and N:M structured sparsity."""

from __future__ import annotations

import time

import numpy as np

from tightcompress.format.build import build_packed, identity_col_perm, tile_count, uniform_group_offsets
from tightcompress.format.packed import PackedMatrix


def _identity_rows(K: int, N: int, tile: int) -> np.ndarray:
    return np.tile(np.arange(K, dtype=np.int64), (tile_count(N, tile), 1))


def pack_dense(weights: np.ndarray, *, tile: int) -> PackedMatrix:
    """Every weight in its own slot: groups of one row, height one (rate 1 when C divides N)."""
    start = time.perf_counter()
    K, N = weights.shape
    packed = build_packed(
        weights,
        method="dense",
        group=1,
        tile=tile,
        height_cap=1,
        row_perm=_identity_rows(K, N, tile),
        col_perm=identity_col_perm(N, tile),
        group_offsets=uniform_group_offsets(K, 1),
    )
    packed.info["seconds"] = time.perf_counter() - start
    return packed


def pack_nm(weights: np.ndarray, *, group: int, height: int, tile: int) -> PackedMatrix:
    """`height:group` structured sparsity on the natural row order; weights beyond it are dropped.

    This is what sparse tensor cores (2:4) and SCALE-Sim v3's sparse mode execute: no permutation.
    """
    start = time.perf_counter()
    K, N = weights.shape
    packed = build_packed(
        weights,
        method="nm",
        group=group,
        tile=tile,
        height_cap=height,
        row_perm=_identity_rows(K, N, tile),
        col_perm=identity_col_perm(N, tile),
        group_offsets=uniform_group_offsets(K, group),
    )
    packed.info["seconds"] = time.perf_counter() - start
    return packed
