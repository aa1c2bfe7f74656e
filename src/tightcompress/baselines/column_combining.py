"""Column combining (Kung, McDanel and Zhang, ASPLOS 2019), the previous best packing for systolic arrays.

Rows of `W` (the reduction axis; "columns" of the filter matrix in the paper) are combined into groups of
at most `alpha` rows. In each group every output column keeps only its largest-magnitude weight, so a
group is one physical array row whose PEs pick their input with an alpha:1 multiplexer. Groups are formed
by greedy agglomeration: repeatedly merge the pair of groups with the least overlap (columns where both
already hold a weight), smaller pairs first on ties, while the merged group stays within `alpha` rows and
its conflicts (weights pruned by combining) stay within `gamma` per output column on average, the paper's
"average number of conflicts per row allowed for each group".

The merge loop is compiled; pair overlaps are updated incrementally from the conflict columns of a merge
(O(K * conflicts) rather than O(K * N)), and candidate pairs wait in a heap with lazy invalidation, so the
whole agglomeration is O(K^2 log K).
"""

from __future__ import annotations

import heapq
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
def _combine(occupied, overlap, alpha, max_conflicts):
    """Agglomerate rows; returns the group label (leader row) of every row.

    Candidate pairs sit in a heap keyed by (overlap, merged size, a, b); a merge bumps the version of
    the surviving group, which invalidates its old entries lazily, and pushes its new pairs.
    """
    n_rows, n_cols = occupied.shape
    ov = overlap
    size = np.ones(n_rows, dtype=np.int64)
    conflicts = np.zeros(n_rows, dtype=np.int64)
    active = np.ones(n_rows, dtype=np.bool_)
    version = np.zeros(n_rows, dtype=np.int64)
    leader = np.arange(n_rows)
    zero = np.int64(0)
    heap = [(zero, zero, zero, zero, zero)]
    heap.pop()
    for a in range(n_rows):
        for b in range(a + 1, n_rows):
            key = _pair_key(ov, size, conflicts, a, b, alpha, max_conflicts, n_rows)
            if key != _NO_PAIR:
                heap.append((key, np.int64(a), np.int64(b), zero, zero))
    heapq.heapify(heap)
    shared = np.empty(n_cols, dtype=np.int64)
    while len(heap) > 0:
        _key, a, b, version_a, version_b = heapq.heappop(heap)
        if not (active[a] and active[b]) or version[a] != version_a or version[b] != version_b:
            continue
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
        version[a] += 1
        for r in range(n_rows):
            if leader[r] == b:
                leader[r] = a
        for x in range(n_rows):
            if not active[x] or x == a:
                continue
            key = _pair_key(ov, size, conflicts, a, x, alpha, max_conflicts, n_rows)
            if key != _NO_PAIR:
                lo, hi = min(a, x), max(a, x)
                heapq.heappush(heap, (key, np.int64(lo), np.int64(hi), version[lo], version[hi]))
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
