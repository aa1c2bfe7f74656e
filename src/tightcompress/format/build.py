"""Fill the slots of the tight format from a matrix and a chosen arrangement (permutations, groups, heights).

Every method ends here: it decides the arrangement, this module places the weights and counts what did not
fit. The slot-filling loop is compiled with numba because it runs over every (tile, group, column).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix


@nb.njit(cache=True)
def _group_column_max_counts(
    nonzero: np.ndarray, row_perm: np.ndarray, col_perm: np.ndarray, offsets: np.ndarray, tile: int
) -> np.ndarray:
    """Largest nonzero count of any column of tile t in group g: the lossless height `h[g, t]`."""
    n_tiles = row_perm.shape[0]
    n_groups = offsets.shape[0] - 1
    out = np.zeros((n_groups, n_tiles), dtype=np.int64)
    for t in range(n_tiles):
        for c in range(tile):
            j = col_perm[t * tile + c]
            if j < 0:
                continue
            for g in range(n_groups):
                count = 0
                for p in range(offsets[g], offsets[g + 1]):
                    if nonzero[row_perm[t, p], j]:
                        count += 1
                if count > out[g, t]:
                    out[g, t] = count
    return out


@nb.njit(cache=True)
def _fill_slots(
    weights: np.ndarray,
    row_perm: np.ndarray,
    col_perm: np.ndarray,
    offsets: np.ndarray,
    heights: np.ndarray,
    tile: int,
    values: np.ndarray,
    lanes: np.ndarray,
    kept: np.ndarray,
) -> None:
    """Place each group-column's nonzeros top-down in lane order; keep the `h` largest when there are more.

    Ties in magnitude keep the lower lane, so the result is deterministic.
    """
    n_tiles = row_perm.shape[0]
    n_groups = offsets.shape[0] - 1
    max_size = 0
    for g in range(n_groups):
        max_size = max(max_size, offsets[g + 1] - offsets[g])
    cand_lane = np.empty(max_size, dtype=np.int64)
    cand_mag = np.empty(max_size, dtype=np.float64)
    chosen = np.empty(max_size, dtype=np.bool_)
    slot_row = 0
    for t in range(n_tiles):
        for g in range(n_groups):
            h = heights[g, t]
            start = offsets[g]
            size = offsets[g + 1] - start
            for c in range(tile):
                j = col_perm[t * tile + c]
                if j < 0:
                    continue
                n_cand = 0
                for lane in range(size):
                    w = weights[row_perm[t, start + lane], j]
                    if w != 0:
                        cand_lane[n_cand] = lane
                        cand_mag[n_cand] = abs(w)
                        n_cand += 1
                for i in range(n_cand):
                    chosen[i] = n_cand <= h
                if n_cand > h:
                    for _ in range(h):
                        best = -1
                        for i in range(n_cand):
                            if not chosen[i] and (best < 0 or cand_mag[i] > cand_mag[best]):
                                best = i
                        chosen[best] = True
                slot = slot_row
                for i in range(n_cand):
                    if chosen[i]:
                        row = row_perm[t, start + cand_lane[i]]
                        values[slot, c] = weights[row, j]
                        lanes[slot, c] = cand_lane[i]
                        kept[row, j] = True
                        slot += 1
            slot_row += h


def lossless_heights(
    weights: np.ndarray, row_perm: np.ndarray, col_perm: np.ndarray, offsets: np.ndarray, tile: int
) -> np.ndarray:
    """`h[g, t]` for `height=auto`: the densest column of tile t in group g."""
    return _group_column_max_counts(weights != 0, row_perm, col_perm, offsets, tile)


def lossless_lower_bound_slots(weights: np.ndarray, col_perm: np.ndarray, tile: int) -> int:
    """Fewest slots any lossless packing with this column-to-tile assignment can use.

    Per tile the packed rows are at least the densest column's nnz (its nonzeros sit in distinct slots
    of one array column) and at least the tile's nnz spread evenly over C columns.
    """
    col_nnz = np.count_nonzero(weights, axis=0)
    cols = col_perm.reshape(-1, tile)
    rows = 0
    for tile_cols in cols:
        live = tile_cols[tile_cols >= 0]
        if live.size == 0:
            continue
        nnz = col_nnz[live]
        rows += max(int(nnz.max()), -(-int(nnz.sum()) // tile))
    return rows * tile


def column_capacity_floor(cost: np.ndarray, capacity: int) -> float:
    """Least cost any capped arrangement drops: a column holds at most `capacity` weights in all, so its
    smallest-cost excess is lost whatever the permutation (`capacity = sum_g min(size_g, h)`)."""
    columns = np.ascontiguousarray(cost.T)  # free when `cost` is a transposed view, as the search passes it
    nnz = np.count_nonzero(columns, axis=1)
    floor = 0.0
    for j in np.flatnonzero(nnz > capacity).tolist():
        col = columns[j]
        col = col[col != 0]  # a copy, so the in-place partition below is safe (as np.partition would copy)
        excess = col.size - capacity
        col.partition(excess - 1)
        floor += float(np.add.reduce(col[:excess]))
    return floor


def build_packed(
    weights: np.ndarray,
    *,
    method: str,
    group: int,
    tile: int,
    height_cap: int | None,
    row_perm: np.ndarray,
    col_perm: np.ndarray,
    group_offsets: np.ndarray,
    info: dict | None = None,
    magnitude_floor: float | None = None,
    heights: np.ndarray | None = None,
) -> PackedMatrix:
    """Place `weights` into the format under the given arrangement and record what was dropped.

    `height_cap=None` packs losslessly (heights from the densest column of each group); an integer gives
    every group that height and drops the smallest-magnitude overflow. `magnitude_floor` is
    `column_capacity_floor(|weights|, capacity)` if the caller already has it (the search computes it).
    `heights` (n_groups, n_tiles), each at most `height_cap`, overrides the uniform capped heights (column
    combining gives its groups of empty rows height 0).
    """
    weights = np.ascontiguousarray(weights)
    stored_dtype = weights.dtype  # fp16 / integer weights are placed in float32, stored back as given
    weights = weights if weights.dtype in (np.float32, np.float64) else weights.astype(np.float32)
    K, N = weights.shape
    row_perm = np.ascontiguousarray(row_perm, dtype=np.int64)
    col_perm = np.ascontiguousarray(col_perm, dtype=np.int64)
    group_offsets = np.ascontiguousarray(group_offsets, dtype=np.int64)
    n_groups = group_offsets.size - 1
    n_tiles = row_perm.shape[0]
    if height_cap is None:
        heights = lossless_heights(weights, row_perm, col_perm, group_offsets, tile)
    elif heights is None:
        heights = np.full((n_groups, n_tiles), height_cap, dtype=np.int64)
    else:
        heights = np.ascontiguousarray(heights, dtype=np.int64)
        low, high = heights.min(initial=0), heights.max(initial=0)
        if heights.shape != (n_groups, n_tiles) or low < 0 or high > height_cap:
            raise TightCompressError(f"heights must be ({n_groups}, {n_tiles}) in [0, {height_cap}]")
    total_rows = int(heights.sum())
    values = np.zeros((total_rows, tile), dtype=weights.dtype)
    lanes = np.zeros((total_rows, tile), dtype=np.int16)
    kept = np.zeros((K, N), dtype=np.bool_)
    _fill_slots(weights, row_perm, col_perm, group_offsets, heights, tile, values, lanes, kept)
    values = values.astype(stored_dtype, copy=False)

    magnitudes = np.abs(weights.astype(np.float64))
    total_magnitude = float(magnitudes.sum())
    dropped_mask = (weights != 0) & ~kept
    dropped_magnitude = float(magnitudes[dropped_mask].sum())
    info = dict(info or {})
    info.update(
        input_nnz=int(np.count_nonzero(weights)),
        dropped_nnz=int(dropped_mask.sum()),
        input_magnitude=total_magnitude,
        dropped_magnitude_fraction=dropped_magnitude / total_magnitude if total_magnitude else 0.0,
        lower_bound_slots=lossless_lower_bound_slots(weights, col_perm, tile),
    )
    if height_cap is not None:
        # Per tile, a column holds at most sum_g min(size_g, h[g, t]) weights; the largest tile's bounds all.
        capacity = int(np.minimum(np.diff(group_offsets)[:, None], heights).sum(axis=0).max(initial=0))
        bound = column_capacity_floor(magnitudes, capacity) if magnitude_floor is None else magnitude_floor
        info["lower_bound_dropped_magnitude_fraction"] = bound / total_magnitude if total_magnitude else 0.0
    return PackedMatrix(
        K=K,
        N=N,
        group=group,
        tile=tile,
        method=method,
        height_cap=height_cap,
        group_offsets=group_offsets,
        row_perm=row_perm,
        col_perm=col_perm,
        heights=heights.astype(np.int64),
        values=values,
        lanes=lanes,
        info=info,
    )


def uniform_group_offsets(K: int, group: int) -> np.ndarray:
    """Cut K permuted rows into groups of `group` consecutive rows; the last may be short."""
    return np.append(np.arange(0, K, group), K).astype(np.int64)


def tile_count(N: int, tile: int) -> int:
    return -(-N // tile)


def identity_col_perm(N: int, tile: int) -> np.ndarray:
    """Columns in order, tile by tile; the unused tail of the last tile is -1."""
    perm = np.full(tile_count(N, tile) * tile, -1, dtype=np.int64)
    perm[:N] = np.arange(N)
    return perm
