"""The permutation search of Tight Compression: greedy balanced start, then simulated annealing.

Searches the per-tile row permutations and the column-to-tile assignment that make a sparse matrix fit
the tight format with the least loss (capped height) or in the fewest rows (lossless, `height=auto`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tightcompress.format.build import column_capacity_floor, lossless_lower_bound_slots, tile_count
from tightcompress.permute import kernels


@dataclass(frozen=True)
class AnnealConfig:
    """Knobs of the annealing schedule. `iterations=None` scales the budget with the problem size."""

    iterations: int | None = None
    seed: int = 0
    objective: str = "magnitude"  # capped mode: "magnitude" (|w|) or "squared" (w^2)
    col_move_prob: float = 0.2
    # Start cool: the greedy start is already good and a hot start only wrecks it. Measured on 576 x 64 at
    # 95 % sparsity, G=32, h=2 (BENCHMARKS.md): t0 = 0.1 of the mean uphill delta reaches within 0.1 % of
    # the capacity floor in 400k moves; t0 = 1.0 needs four times as many.
    t0_scale: float = 0.1
    t_ratio: float = 1e-3  # final temperature over initial
    # Stop after this many moves without a new best (None or 0: run the whole budget). The schedule still
    # spans the whole budget, so a stop truncates it. Off by default: on ResNet-50 (90 %, G=32, h=3) the
    # first, hot part of the schedule stalls before the gains come, and every patience that saved time lost
    # quality (500k moves: +0.35 % dropped |w| for 12 % fewer moves; benchmarks/RESULTS_scale.md).
    patience: int | None = None

    def budget(self, K: int, n_tiles: int) -> int:
        """Default iteration count: enough moves to visit every row of every tile many times."""
        if self.iterations is not None:
            return int(self.iterations)
        # Capped at 450k moves, so all 53 ResNet-50 convs (90 %, G=32, h=3) pack in under a minute on two
        # cores: against a 1M cap the dropped |w| rises from 0.0672 to 0.0676 for half the time
        # (benchmarks/RESULTS_scale.md). The 576 x 64 tuning benchmark (403k moves) is below the cap.
        return int(min(max(700 * K * n_tiles, 20_000), 450_000))


@dataclass(frozen=True)
class SearchResult:
    row_perm: np.ndarray  # (T, K)
    col_perm: np.ndarray  # (T * C,)
    initial_cost: float
    final_cost: float
    iterations: int
    accepted: int
    seconds: float
    # Capped mode: the least cost any arrangement drops (`column_capacity_floor` of the objective); None
    # when lossless. Passed on to `build_packed` so the floor is not computed twice.
    lower_bound: float | None = None


def greedy_col_perm(weights: np.ndarray, tile: int) -> np.ndarray:
    """Columns by descending nnz dealt to tiles in snake order, so every tile gets a similar load."""
    N = weights.shape[1]
    n_tiles = tile_count(N, tile)
    order = np.argsort(-np.count_nonzero(weights, axis=0), kind="stable")
    # Rank r is in sweep r // T; a sweep hands every tile one column, so the slot in the tile is the sweep.
    sweep, pos = np.divmod(np.arange(N), n_tiles)
    target = np.where(sweep % 2 == 0, pos, n_tiles - 1 - pos)
    perm = np.full((n_tiles, tile), -1, dtype=np.int64)
    perm[target, sweep] = order
    return perm.reshape(-1)


def search_permutation(
    weights: np.ndarray,
    *,
    group_offsets: np.ndarray,
    tile: int,
    height_cap: int | None,
    config: AnnealConfig,
) -> SearchResult:
    """Find row and column permutations for `weights` (K x N) under the given groups, tile and height.

    `height_cap=None` minimises the packed rows (lossless); an integer minimises the dropped cost.
    """
    start = time.perf_counter()
    weights = np.asarray(weights)
    K, _N = weights.shape
    magnitude = np.abs(weights.astype(np.float64))
    cost = magnitude**2 if config.objective == "squared" else magnitude
    cost = np.ascontiguousarray(cost.T)  # (N, K): the kernels scan rows within a column
    tile_cols = greedy_col_perm(weights, tile).reshape(-1, tile)
    n_tiles = tile_cols.shape[0]
    offsets = np.ascontiguousarray(group_offsets, dtype=np.int64)
    perm = kernels.greedy_rows(cost, tile_cols, offsets, -1 if height_cap is None else int(height_cap))
    iterations = config.budget(K, n_tiles)
    patience = max(int(config.patience or 0), 0)  # the kernels read 0 as "no early stop"
    lower_bound: float | None = None
    if height_cap is None:
        # With one tile the column assignment is fixed, so the per-tile bound is a true floor.
        bound_rows = (
            lossless_lower_bound_slots(weights, tile_cols.reshape(-1), tile) // tile if n_tiles == 1 else 0
        )
        initial, final, ran, accepted = kernels.anneal_lossless(
            cost != 0,
            perm,
            tile_cols,
            offsets,
            iterations,
            config.seed,
            config.col_move_prob,
            config.t0_scale,
            config.t_ratio,
            bound_rows,
            patience,
        )
    else:
        sizes = np.diff(offsets)
        capacity = int(np.minimum(sizes, height_cap).sum())
        lower_bound = column_capacity_floor(cost.T, capacity)
        initial, final, ran, accepted = kernels.anneal_capped(
            cost,
            perm,
            tile_cols,
            offsets,
            int(height_cap),
            iterations,
            config.seed,
            config.col_move_prob,
            config.t0_scale,
            config.t_ratio,
            lower_bound,
            patience,
        )
    return SearchResult(
        row_perm=perm,
        col_perm=tile_cols.reshape(-1),
        initial_cost=float(initial),
        final_cost=float(final),
        iterations=int(ran),
        accepted=int(accepted),
        seconds=time.perf_counter() - start,
        lower_bound=lower_bound,
    )
