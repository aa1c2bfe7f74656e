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


# Escapes in a row that found no better grouping before the channel-swap search stops, and random swaps
# per escape (`permute.channel_swap`). Measured in BENCHMARKS.md ("N:M channel permutation").
NM_PERMUTE_PATIENCE = 16
NM_PERMUTE_KICK = 2


def nm_dropped(cost: np.ndarray, row_order: np.ndarray, group: int, height: int) -> float:
    """Summed cost N:M drops when the rows of `cost` (K x N, >= 0) are taken in `row_order` and every
    (group of `group` consecutive rows, column) keeps its `height` largest."""
    ordered = np.asarray(cost, dtype=np.float64)[np.asarray(row_order)]
    K, N = ordered.shape
    dropped = 0.0
    full = K - K % group
    for block in (ordered[:full].reshape(-1, group, N), ordered[full:].reshape(1, K - full, N)):
        size = block.shape[1]
        if size <= height:
            continue
        part = np.sort(block, axis=1)
        dropped += float(part[:, : size - height].sum())
    return dropped


def search_nm_permutation(
    weights: np.ndarray,
    *,
    group: int,
    height: int,
    tile: int,
    seed: int = 0,
    iterations: int | None = None,
    objective: str = "magnitude",
    chunk_moves: int | None = None,
):
    """One row (input-channel) permutation for `height:group` N:M that drops the least cost (|w|, or w^2
    for `objective="squared"`): the best-swap local search with escapes of `permute.channel_swap`,
    started from the better of the natural order and the greedy start (`permute.kernels.greedy_rows`),
    so it never drops more than either. `iterations` caps the swaps (None: run until `NM_PERMUTE_PATIENCE`
    escapes in a row find nothing better). Returns a `permute.SearchResult` (the permutation in every
    tile of width `tile`, columns in order)."""
    from tightcompress.format.build import column_capacity_floor, uniform_group_offsets
    from tightcompress.permute import channel_swap, kernels
    from tightcompress.permute.search import SearchResult, _run_chunks

    start = time.perf_counter()
    K, N = weights.shape
    magnitude = np.abs(np.asarray(weights, dtype=np.float64))
    cost = np.ascontiguousarray(magnitude**2 if objective == "squared" else magnitude)
    offsets = uniform_group_offsets(K, group)
    natural = np.arange(K, dtype=np.int64)
    greedy = kernels.greedy_rows(
        np.ascontiguousarray(cost.T), np.arange(N, dtype=np.int64).reshape(1, N), offsets, int(height)
    )[0]
    starts = [
        (channel_swap.order_dropped(cost, order, offsets, int(height)), i, order)
        for i, order in enumerate((natural, greedy))
    ]
    initial, _, perm = min(starts, key=lambda s: (s[0], s[1]))  # the natural order on a tie
    chosen_start = np.ascontiguousarray(perm, dtype=np.int64)
    perm = chosen_start.copy()
    # The budget in the annealer's currency (`AnnealConfig`, `iterations`): one annealing move re-scored
    # the 2M rows of two groups in all N columns, one candidate swap here scores 2 values per column, so
    # a move is worth M candidate swaps. The default is the annealer's default for a shared permutation.
    if iterations is None:
        from tightcompress.permute.search import SHARED_ROWS_MIN_MOVES, AnnealConfig

        annealer = AnnealConfig().budget(K, tile_count(N, tile))
        iterations = max(annealer * min(tile, N) // N, SHARED_ROWS_MIN_MOVES)
    budget = max(int(iterations), 0) * int(group)
    run = channel_swap.new_swap_run(int(height), budget, NM_PERMUTE_PATIENCE, NM_PERMUTE_KICK)
    state = channel_swap.swap_state(cost, perm, offsets)
    channel_swap.swap_start(state, run, int(seed))
    _run_chunks(lambda moves: channel_swap.swap_chunk(state, run, moves), run, chunk_moves)
    channel_swap.swap_finish(state, run)
    final = channel_swap.order_dropped(cost, perm, offsets, int(height))
    if final > initial:  # the search returns its start when it finds nothing better; rounding aside
        perm, final = chosen_start, initial
    capacity = int(np.minimum(np.diff(offsets), height).sum())
    return SearchResult(
        row_perm=np.ascontiguousarray(np.tile(perm, (tile_count(N, tile), 1))),
        col_perm=identity_col_perm(N, tile),
        initial_cost=float(initial),
        final_cost=float(final),
        iterations=-(-int(run["scored"][0]) // int(group)),
        accepted=int(run["moves"][0]),
        seconds=time.perf_counter() - start,
        lower_bound=column_capacity_floor(cost, capacity),
    )
