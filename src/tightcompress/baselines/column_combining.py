"""Column combining (Kung, McDanel and Zhang, ASPLOS 2019), the previous best packing for systolic arrays.

Rows of `W` (the reduction axis; "columns" of the filter matrix in the paper) are combined into groups of
at most `alpha` rows. In each group every output column keeps only its largest-magnitude weight, so a
group is one physical array row whose PEs pick their input with an alpha:1 multiplexer. Groups are formed
by greedy agglomeration: repeatedly merge the pair of groups with the least overlap (columns where both
already hold a weight), smaller pairs first on ties, while the merged group stays within `alpha` rows and
its conflicts (weights pruned by combining) stay within `gamma` per output column on average, the paper's
"average number of conflicts per row allowed for each group".

The merge loop is compiled; pair overlaps are updated incrementally from the conflict columns of a merge,
and each group remembers its best partner, so a merge costs O(K * conflicts) rather than O(K * N).
"""

from __future__ import annotations

import time

import numba as nb
import numpy as np

from tightcompress.format.build import build_packed, identity_col_perm, tile_count
from tightcompress.format.packed import PackedMatrix

_NO_PAIR = np.iinfo(np.int64).max


@nb.njit(cache=True)
def _pair_key(ov, size, conflicts, a, b, alpha, max_conflicts, n_rows):
    if size[a] + size[b] > alpha or conflicts[a] + conflicts[b] + ov[a, b] > max_conflicts:
        return _NO_PAIR
    return ov[a, b] * (2 * n_rows + 1) + size[a] + size[b]


@nb.njit(cache=True)
def _best_partner(ov, size, conflicts, active, a, alpha, max_conflicts, n_rows):
    best_key = _NO_PAIR
    best_b = -1
    for b in range(n_rows):
        if b == a or not active[b]:
            continue
        key = _pair_key(ov, size, conflicts, a, b, alpha, max_conflicts, n_rows)
        if key < best_key:
            best_key = key
            best_b = b
    return best_b, best_key


@nb.njit(cache=True)
def _combine(occupied, overlap, alpha, max_conflicts):
    """Agglomerate rows; returns the group label (leader row) of every row."""
    n_rows, n_cols = occupied.shape
    ov = overlap
    size = np.ones(n_rows, dtype=np.int64)
    conflicts = np.zeros(n_rows, dtype=np.int64)
    active = np.ones(n_rows, dtype=np.bool_)
    leader = np.arange(n_rows)
    partner = np.empty(n_rows, dtype=np.int64)
    partner_key = np.empty(n_rows, dtype=np.int64)
    for a in range(n_rows):
        partner[a], partner_key[a] = _best_partner(
            ov, size, conflicts, active, a, alpha, max_conflicts, n_rows
        )
    shared = np.empty(n_cols, dtype=np.int64)
    while True:
        a = -1
        key = _NO_PAIR
        for x in range(n_rows):
            if active[x] and partner_key[x] < key:
                key = partner_key[x]
                a = x
        if a < 0:
            break
        b = partner[a]
        # Columns where both groups hold a weight: the merge prunes one of each.
        n_shared = 0
        for j in range(n_cols):
            if occupied[a, j] and occupied[b, j]:
                shared[n_shared] = j
                n_shared += 1
        for x in range(n_rows):
            if not active[x] or x == a or x == b:
                continue
            triple = 0
            for s in range(n_shared):
                if occupied[x, shared[s]]:
                    triple += 1
            merged = ov[a, x] + ov[b, x] - triple
            ov[a, x] = merged
            ov[x, a] = merged
        for j in range(n_cols):
            occupied[a, j] = occupied[a, j] or occupied[b, j]
        conflicts[a] += conflicts[b] + n_shared
        size[a] += size[b]
        active[b] = False
        for r in range(n_rows):
            if leader[r] == b:
                leader[r] = a
        partner[a], partner_key[a] = _best_partner(
            ov, size, conflicts, active, a, alpha, max_conflicts, n_rows
        )
        for x in range(n_rows):
            if active[x] and x != a and (partner[x] == a or partner[x] == b):
                partner[x], partner_key[x] = _best_partner(
                    ov, size, conflicts, active, x, alpha, max_conflicts, n_rows
                )
    return leader


def column_combining_groups(weights: np.ndarray, alpha: int, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy groups of rows; returns `(row order, group offsets)` with each group's rows consecutive.

    Groups are ordered by their first row, and rows keep their order inside a group.
    """
    occupied = np.ascontiguousarray(weights != 0)
    as_float = occupied.astype(np.float32)
    overlap = np.rint(as_float @ as_float.T).astype(np.int64)
    max_conflicts = int(np.floor(gamma * weights.shape[1] + 1e-9))
    leader = _combine(occupied.copy(), overlap, int(alpha), max_conflicts)
    # Number groups by their first row, then list rows group by group (stable keeps row order inside).
    _, first_idx, inverse = np.unique(leader, return_index=True, return_inverse=True)
    group_of_row = np.argsort(np.argsort(first_idx))[inverse]
    order = np.argsort(group_of_row, kind="stable").astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(group_of_row))]).astype(np.int64)
    return order, offsets


def pack_column_combining(weights: np.ndarray, *, alpha: int, gamma: float, tile: int) -> PackedMatrix:
    """Column combining in the tight format: variable groups of at most alpha rows, one slot row each."""
    start = time.perf_counter()
    order, offsets = column_combining_groups(weights, alpha, gamma)
    n_tiles = tile_count(weights.shape[1], tile)
    packed = build_packed(
        weights,
        method="column-combining",
        group=int(alpha),
        tile=tile,
        height_cap=1,
        row_perm=np.tile(order, (n_tiles, 1)),
        col_perm=identity_col_perm(weights.shape[1], tile),
        group_offsets=offsets,
        info={"extra": {"alpha": int(alpha), "gamma": float(gamma), "n_groups": int(offsets.size - 1)}},
    )
    packed.info["seconds"] = time.perf_counter() - start
    return packed
