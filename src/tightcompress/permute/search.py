"""The permutation search of Tight Compression: greedy balanced start, then simulated annealing.

Searches the per-tile row permutations and the column-to-tile assignment that make a sparse matrix fit
the tight format with the least loss (capped height) or in the fewest rows (lossless, `height=auto`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tightcompress.format.build import (
    column_capacity_floor,
    identity_col_perm,
    lossless_lower_bound_slots,
    tile_count,
)
from tightcompress.permute import kernels


@dataclass(frozen=True)
class AnnealConfig:
    """Knobs of the annealing schedule. `iterations=None` scales the budget with the problem size."""

    iterations: int | None = None
    seed: int = 0
    objective: str = "magnitude"  # capped mode: "magnitude" (|w|) or "squared" (w^2)
    # Column-to-tile moves: 5 % of moves. On ResNet-50 (90 %, G=32, h=3, C=32, budget capped at 150k moves,
    # t0 0.03) every move spent on columns was worth less than a row move (dropped |w| 0.253 / 0.260 / 0.266
    # points above the floor at probabilities 0 / 0.1 / 0.2), and a column move costs O(K) on tall layers;
    # on the 576 x 64 matrix with two tiles they still reach the floor sooner. benchmarks/RESULTS_floor.md.
    col_move_prob: float = 0.05
    # Start cool: the greedy start is already good and a hot start only wrecks it. At the 150k-move cap a
    # t0 of 0.03 of the mean uphill delta beats 0.1 (576 x 64, 95 %, G=32, h=2, C=64: 0.2306 % vs 0.2755 %
    # dropped, floor 0.2267 %; ResNet-50: 0.279 vs 0.313 points above the floor at a 100k cap, and 0.394
    # at 0.3). BENCHMARKS.md "Annealing schedule" has the 400k-move grid where 0.1 was chosen.
    t0_scale: float = 0.03
    t_ratio: float = 1e-3  # final temperature over initial
    # Stop after this many moves without a new best (None or 0: run the whole budget). The schedule still
    # spans the whole budget, so a stop truncates it. Off by default: on ResNet-50 (90 %, G=32, h=3) the
    # first, hot part of the schedule stalls before the gains come, and every patience that saved time lost
    # quality (500k moves: +0.35 % dropped |w| for 12 % fewer moves; benchmarks/RESULTS_scale.md).
    # The search always stops once it reaches the floor (capped) or the slot bound (lossless, one tile).
    patience: int | None = None

    def budget(self, K: int, n_tiles: int) -> int:
        """Default iteration count: enough moves to visit every row of every tile many times."""
        if self.iterations is not None:
            return int(self.iterations)
        # Capped at 150k moves so ResNet-50's 54 layers (90 %, G=32, h=3, C=32) pack in about 10 s on two
        # cores: with t0 0.03 the cap costs less than the former 450k cap at t0 0.1 gained
        # (benchmarks/RESULTS_floor.md). The 576 x 64 benchmark matrix (403k by the rule) is capped too.
        return int(min(max(700 * K * n_tiles, 20_000), 150_000))


# The least default budget of a shared-rows search (N:M with a channel permutation) on a wide layer.
SHARED_ROWS_MIN_MOVES = 500

# Wall time of one compiled annealing chunk between returns to Python (where Ctrl-C is acted on).
CHUNK_SECONDS = 0.1


def _run_chunks(step: Callable[[int], bool], run: np.ndarray, chunk_moves: int | None) -> None:
    """Call `step(moves)` until the run is done. Chunk lengths adapt to keep each near `CHUNK_SECONDS`
    (the first is short); they do not change the result, since the state carries over exactly."""
    moves = chunk_moves or 2_000
    while not run["done"][0]:
        began = time.perf_counter()
        step(moves)
        if chunk_moves is None:
            elapsed = max(time.perf_counter() - began, 1e-6)
            moves = int(min(max(moves * min(CHUNK_SECONDS / elapsed, 4.0), 100), 10_000_000))


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
    shared_rows: bool = False,
    chunk_moves: int | None = None,
) -> SearchResult:
    """Find row and column permutations for `weights` (K x N) under the given groups, tile and height.

    `height_cap=None` minimises the packed rows (lossless); an integer minimises the dropped cost.
    `shared_rows=True` finds ONE row permutation for every tile and keeps the columns in order (N:M with a
    channel permutation): the per-tile permutations tied together and no column-to-tile moves, searched
    as one tile holding all N columns (the cost of a group-column does not depend on its tile), with the
    budget of one tile (each move touches all N columns: the work of `700 K T` moves of C columns).
    The annealing runs in chunks of about `CHUNK_SECONDS` that return to Python, so Ctrl-C is acted on
    within a chunk; `chunk_moves` fixes the chunk length instead (results are identical for any chunking).
    """
    start = time.perf_counter()
    weights = np.asarray(weights)
    K, N = weights.shape
    magnitude = np.abs(weights.astype(np.float64))
    cost = magnitude**2 if config.objective == "squared" else magnitude
    cost = np.ascontiguousarray(cost.T)  # (N, K): the kernels scan rows within a column
    if shared_rows:
        tile_cols = np.arange(N, dtype=np.int64).reshape(1, N)
        n_tiles = 1
    else:
        tile_cols = greedy_col_perm(weights, tile).reshape(-1, tile)
        n_tiles = tile_cols.shape[0]
    offsets = np.ascontiguousarray(group_offsets, dtype=np.int64)
    perm = kernels.greedy_rows(cost, tile_cols, offsets, -1 if height_cap is None else int(height_cap))
    if shared_rows and config.iterations is None:
        # A shared-rows move re-scores all N columns, a tight move one tile's C: give the one permutation
        # the work of tight's budget on the same layer, not `700 K` moves of N columns each (a 120 x 6625
        # classifier took 20 minutes that way; 120 x 1000 at h=4: 84k moves, 52 s, 22.69 % dropped |w|,
        # against 4.8k moves, 2.7 s, 22.75 %).
        iterations = max(config.budget(K, tile_count(N, tile)) * min(tile, N) // N, SHARED_ROWS_MIN_MOVES)
    else:
        iterations = config.budget(K, n_tiles)
    patience = max(int(config.patience or 0), 0)  # the kernels read 0 as "no early stop"
    run = kernels.new_run(iterations, patience, config.col_move_prob, config.t_ratio)
    lower_bound: float | None = None
    if height_cap is None:
        # With one tile the column assignment is fixed, so the per-tile bound is a true floor.
        run["bound_rows"] = (
            lossless_lower_bound_slots(weights, tile_cols.reshape(-1), tile) // tile if n_tiles == 1 else 0
        )
        state, scratch = kernels.lossless_state(cost != 0, perm, tile_cols, offsets)
        kernels.lossless_start(state, run, config.seed, config.t0_scale)
        _run_chunks(lambda moves: kernels.lossless_chunk(state, scratch, run, moves), run, chunk_moves)
        final = kernels.lossless_finish(state, run)
        initial = run["initial_rows"][0]
    else:
        sizes = np.diff(offsets)
        capacity = int(np.minimum(sizes, height_cap).sum())
        lower_bound = column_capacity_floor(cost.T, capacity)
        run["k"] = int(height_cap)
        run["lower_bound"] = lower_bound
        state, scratch = kernels.capped_state(cost, perm, tile_cols, offsets, int(height_cap))
        kernels.capped_start(state, scratch, run, config.seed, config.t0_scale)
        _run_chunks(lambda moves: kernels.capped_chunk(state, scratch, run, moves), run, chunk_moves)
        final = kernels.capped_finish(state, run)
        initial = run["initial"][0]
    ran, accepted = int(run["ran"][0]), int(run["accepted"][0])
    if shared_rows:  # the one permutation, in every tile of width `tile`; columns in their natural order
        perm = np.ascontiguousarray(np.tile(perm[0], (tile_count(N, tile), 1)))
        tile_cols = identity_col_perm(N, tile)
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
