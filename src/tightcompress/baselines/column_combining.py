"""Column combining (Kung, McDanel and Zhang, ASPLOS 2019), the previous best packing for systolic arrays.

Rows of `W` (the reduction axis; "columns" of the filter matrix in the paper) are combined into groups of
at most `alpha` rows. In each group every output column keeps only its largest-magnitude weight, so a
group is one physical array row whose PEs pick their input with an alpha:1 multiplexer. A merged group may
hold at most `floor(gamma * N)` conflicts (`sum_n max(c[n] - 1, 0)` over its per-column counts `c`), the
paper's "conflicts per row allowed for each group" with gamma per output column.

Rows with no nonzero are set aside first: they take no lane and no array row (they sit in groups of height
0 at the end of the order). Two merge rules:

- `merge="authors"` (default) is the authors' `pack_matrix` (public repository `column-combine`, file
  `packing.py`): groups start as the non-empty rows in row order; each step takes the FIRST group in the
  list that has a feasible partner and merges into it its feasible partner with the fewest output columns
  where both are empty (the densest union), ties to the earliest; the merged group keeps the first one's
  place. Their code recomputes all pair scores per step (O(K^2 N) per merge). Here the same groups come
  from the rule's structure: a group that has no feasible partner never gets one again (groups only grow,
  and size and conflicts only grow with them), so the first group with a partner only moves forward, and
  every group after it is still a single row. The algorithm is therefore "for each open row in order,
  absorb the best following single row while one fits", with the overlap of the open group with every
  later row updated from the columns each absorbed row adds (O(nnz) per group, O(K) per merge scan).
- `merge="least-overlap"`: the project's earlier rule, kept as an option because it drops less |w| at
  some rates: repeatedly merge the pair of groups (anywhere) with the fewest columns where both hold a
  weight, smaller merged pairs first on ties; candidate pairs wait in a heap with lazy invalidation and
  overlaps are updated from each merge's conflict columns (O(K^2 log K) in all).

`section` cuts the reduction axis into consecutive sections of that many rows, each combined separately
(the authors' model-level code uses 256); None combines the whole axis at once.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numba as nb
import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.build import build_packed, identity_col_perm, tile_count
from tightcompress.format.packed import PackedMatrix

MERGES = ("authors", "least-overlap")

_NO_PAIR = np.iinfo(np.int64).max


@dataclass(frozen=True)
class RowGroups:
    """Rows of `W` in group order: group `g` is `order[offsets[g]:offsets[g + 1]]`, rows ascending inside.

    The first `n_combined` groups are the combined (non-empty) groups, one array row each, ordered by
    their first row; the remaining groups hold only empty rows (at most alpha each) and take height 0.
    """

    order: np.ndarray
    offsets: np.ndarray
    n_combined: int

    @property
    def n_groups(self) -> int:
        return int(self.offsets.size - 1)

    def groups(self) -> list[np.ndarray]:
        """The rows of every group, combined groups first."""
        return [self.order[self.offsets[g] : self.offsets[g + 1]] for g in range(self.n_groups)]


@nb.njit(cache=True, inline="always")
def _absorb_row(row, opened, row_ptr, row_cols, col_ptr, col_rows, col_next, in_group, overlap):
    """Add `row`'s columns to the open group; each newly covered column raises the overlap of every later
    row that has a weight there."""
    for p in range(row_ptr[row], row_ptr[row + 1]):
        j = row_cols[p]
        if in_group[j]:
            continue
        in_group[j] = True
        q = col_next[j]
        end = col_ptr[j + 1]
        while q < end and col_rows[q] <= opened:
            q += 1
        col_next[j] = q
        for r in range(q, end):
            overlap[col_rows[r]] += 1


@nb.njit(cache=True)
def _combine_authors(row_ptr, row_cols, col_ptr, col_rows, n_cols, alpha, max_conflicts):
    """The authors' first-group, densest-union merge on non-empty rows `0..n-1`; returns each row's leader.

    `row_ptr/row_cols` list each row's columns, `col_ptr/col_rows` each column's rows (ascending).
    """
    n = row_ptr.shape[0] - 1
    leader = np.full(n, -1, dtype=np.int64)
    overlap = np.zeros(n, dtype=np.int64)  # columns shared by the open group and each later row
    in_group = np.zeros(n_cols, dtype=np.bool_)
    col_next = col_ptr[:-1].copy()  # per column: its first row after the open group's leader
    for a in range(n):
        if leader[a] >= 0:
            continue
        leader[a] = a
        overlap[a + 1 :] = 0
        in_group[:] = False
        _absorb_row(a, a, row_ptr, row_cols, col_ptr, col_rows, col_next, in_group, overlap)
        size = 1
        conflicts = 0
        while size < alpha:
            # Score of (group, x) = columns empty in both = N - |cols(group)| - nnz(x) + overlap[x]; the
            # group's part is the same for every x, so compare overlap[x] - nnz(x). Ties: earliest x.
            best = -1
            best_key = 0
            for x in range(a + 1, n):
                if leader[x] >= 0 or conflicts + overlap[x] > max_conflicts:
                    continue
                key = overlap[x] - (row_ptr[x + 1] - row_ptr[x])
                if best < 0 or key < best_key:
                    best = x
                    best_key = key
            if best < 0:
                break
            leader[best] = a
            size += 1
            conflicts += overlap[best]
            _absorb_row(best, a, row_ptr, row_cols, col_ptr, col_rows, col_next, in_group, overlap)
    return leader


@nb.njit(cache=True)
def _pair_key(ov, size, conflicts, a, b, alpha, max_conflicts, n_rows):
    if size[a] + size[b] > alpha or conflicts[a] + conflicts[b] + ov[a, b] > max_conflicts:
        return _NO_PAIR
    return ov[a, b] * (2 * n_rows + 1) + size[a] + size[b]


@nb.njit(cache=True)
def _combine_least_overlap(occupied, overlap, alpha, max_conflicts):
    """Agglomerate rows by least overlap anywhere; returns the group label (leader row) of every row.

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


def max_conflicts(gamma: float, n_cols: int) -> int:
    """Conflicts a group may hold: `floor(gamma * N)` (a hair of tolerance so 0.3 * 10 is 3, not 2)."""
    return int(np.floor(gamma * n_cols + 1e-9))


def _leaders(occupied: np.ndarray, alpha: int, limit: int, merge: str) -> np.ndarray:
    """Leader (first row) of each row's group, for `occupied` rows that all hold a nonzero."""
    if merge == "authors":
        rows, cols = np.nonzero(occupied)  # row-major: each row's columns ascending
        row_ptr = np.searchsorted(rows, np.arange(occupied.shape[0] + 1)).astype(np.int64)
        by_col = np.argsort(cols, kind="stable")  # stable keeps each column's rows ascending
        col_ptr = np.searchsorted(cols[by_col], np.arange(occupied.shape[1] + 1)).astype(np.int64)
        col_rows = rows[by_col].astype(np.int64)
        return _combine_authors(
            row_ptr, cols.astype(np.int64), col_ptr, col_rows, occupied.shape[1], alpha, limit
        )
    as_float = occupied.astype(np.float32)
    overlap = np.rint(as_float @ as_float.T).astype(np.int64)
    leader = _combine_least_overlap(occupied.copy(), overlap, alpha, limit)
    return _first_rows(leader)


def _first_rows(leader: np.ndarray) -> np.ndarray:
    """Relabel groups by their smallest member (the heap merge's survivor need not be the first row)."""
    first = np.full(leader.size, leader.size, dtype=np.int64)
    np.minimum.at(first, leader, np.arange(leader.size))
    return first[leader]


def column_combining_groups(
    weights: np.ndarray, alpha: int, gamma: float, *, merge: str = "authors", section: int | None = None
) -> RowGroups:
    """The column-combining groups of the rows of `weights` (see the module docstring)."""
    if merge not in MERGES:
        raise TightCompressError(
            f"unknown column-combining merge {merge!r}; choose one of {', '.join(MERGES)}"
        )
    K, N = weights.shape
    occupied = np.ascontiguousarray(weights != 0)
    nonempty = occupied.any(axis=1)
    limit = max_conflicts(gamma, N)
    step = K if section is None else int(section)
    group_of_row = np.full(K, -1, dtype=np.int64)  # leader (global row) of each non-empty row
    for start in range(0, K, step):
        rows = start + np.flatnonzero(nonempty[start : start + step])
        if rows.size:
            group_of_row[rows] = rows[_leaders(occupied[rows], int(alpha), limit, merge)]
    kept = np.flatnonzero(nonempty)
    leaders = group_of_row[kept]
    order = kept[np.argsort(leaders, kind="stable")]  # groups by first row, rows ascending inside
    sizes = np.bincount(np.unique(leaders, return_inverse=True)[1]) if kept.size else np.zeros(0, np.int64)
    empty = np.flatnonzero(~nonempty)
    empty_sizes = np.diff(np.append(np.arange(0, empty.size, int(alpha)), empty.size))
    offsets = np.concatenate([[0], np.cumsum(np.concatenate([sizes, empty_sizes]))]).astype(np.int64)
    return RowGroups(np.concatenate([order, empty]).astype(np.int64), offsets, int(sizes.size))


def pack_column_combining(
    weights: np.ndarray,
    *,
    alpha: int,
    gamma: float,
    tile: int,
    merge: str = "authors",
    section: int | None = None,
) -> PackedMatrix:
    """Column combining in the tight format: one array row per combined group, empty rows in none."""
    start = time.perf_counter()
    grouping = column_combining_groups(weights, alpha, gamma, merge=merge, section=section)
    n_tiles = tile_count(weights.shape[1], tile)
    heights = np.zeros((grouping.n_groups, n_tiles), dtype=np.int64)
    heights[: grouping.n_combined] = 1
    packed = build_packed(
        weights,
        method="column-combining",
        group=int(alpha),
        tile=tile,
        height_cap=1,
        heights=heights,
        row_perm=np.tile(grouping.order, (n_tiles, 1)),
        col_perm=identity_col_perm(weights.shape[1], tile),
        group_offsets=grouping.offsets,
        info={
            "extra": {
                "merge": merge,
                "alpha": int(alpha),
                "gamma": float(gamma),
                "section": None if section is None else int(section),
                "max_conflicts": max_conflicts(gamma, weights.shape[1]),
                "n_groups": grouping.n_combined,
                "nonempty_rows": int(grouping.offsets[grouping.n_combined]),
            }
        },
    )
    packed.info["seconds"] = time.perf_counter() - start
    return packed
