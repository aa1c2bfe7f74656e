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


def lossless_nm_height(weights: np.ndarray, group: int, row_order: np.ndarray | None = None) -> int:
    """The least N of N:M that drops no weight: the most nonzeros any `group` consecutive rows (in
    `row_order`, natural if None) hold in one column; at least 1. N:M's `height="auto"`."""
    nonzero = np.asarray(weights) != 0
    if row_order is not None:
        nonzero = nonzero[row_order]
    K, N = nonzero.shape
    padded = np.zeros((-(-K // group) * group, N), dtype=np.int32)
    padded[:K] = nonzero
    return max(int(padded.reshape(-1, group, N).sum(axis=1).max(initial=0)), 1)


def pack_nm(weights: np.ndarray, *, group: int, height: int | str, tile: int) -> PackedMatrix:
    """`height:group` structured sparsity on the natural row order; weights beyond it are dropped.
    `height="auto"`: the least N that drops nothing (`lossless_nm_height`), so N:M is lossless like tight's
    auto and the comparison is at equal (zero) loss.

    This is what sparse tensor cores (2:4) and SCALE-Sim v3's sparse mode execute: no permutation.
    """
    start = time.perf_counter()
    K, N = weights.shape
    if height == "auto":
        height = lossless_nm_height(weights, group)
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
