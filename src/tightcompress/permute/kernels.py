"""Compiled (numba) kernels of the permutation search: greedy start and simulated annealing.

State shared by the kernels (grouped in the named tuples `CappedState` / `LosslessState`):
    cost: `(N, K)` float64, the price of dropping each weight (|w| or w^2), 0 where the weight is pruned;
        stored column by column (the transpose of `W`) because every kernel scans the rows of a group
        within one column: contiguous reads instead of a cache miss per row (about 3x on large layers).
    nonzero: `(N, K)` bool, likewise.
    perm: `(T, K)` int64, the per-tile row permutation; group g is positions `offsets[g]:offsets[g+1]`.
    tile_cols: `(T, C)` int64, the original column at each array column of each tile, -1 where unused.
    vals (capped annealer only): `(T, C, K)` float64, `cost` gathered into each tile's permuted row order,
        so one group of one array column is a contiguous run; updated with every accepted move.
    best_perm / best_cols: a copy of the best arrangement seen, taken only when the walk leaves it uphill.

Two objectives:
    capped: every group has height k; minimise the summed cost of the weights beyond the k largest in
        each (tile, group, column). Kept per (tile, group, column) in `drop`.
    lossless (auto): every group is as tall as its densest column; minimise the total packed rows
        `sum_{t,g} max_c count[t,g,c]`. Kept as counts, a histogram of counts per group and its maximum,
        so a move updates the maximum in O(1) amortised. A small secondary term (columns at the
        maximum) gives the search a slope on the plateaus of the max.

A move is either a swap of two rows between groups of one tile or a swap of two columns between tiles;
its delta is computed from the touched (tile, group, column) cells only.

Chunks: an annealing run is `*_start` (seeds numba's per-thread RNG, builds the tables, picks the starting
temperature), then `*_chunk` calls that each run the next moves of the same schedule, then `*_finish`
(restores the best state). Everything a move depends on (arrangement, tables, move counter, temperature
schedule, best-state bookkeeping) lives in the state tuple and the one-row `RUN` record, and the RNG is
never reseeded between chunks, so any chunking gives bit-identical results; the caller returns to Python
between chunks (Ctrl-C is acted on there). All chunks of a run must be called from the same thread, with
no other numba RNG use in between.

Threads: every kernel releases the GIL (`nogil`), and numba's RNG state is per thread, so several searches
may run at once on threads (`pipeline.fit.evaluate_options` evaluates a layer's options so); each run,
from `*_start` to `*_finish`, on one thread gives the same result as alone.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numba as nb
import numpy as np

# Weight of "columns at the group maximum" in the lossless energy, per column, relative to one row.
_AT_MAX_WEIGHT = 0.5

# Scalars of one annealing run: the schedule and stop rules (set by `*_start`) and the progress so far.
RUN = np.dtype(
    [
        ("iterations", np.int64),  # the schedule's length: the temperature falls over this many moves
        ("patience", np.int64),  # stop after this many moves without a new best (0: never)
        ("k", np.int64),  # capped height (capped only)
        ("bound_rows", np.int64),  # lossless: stop at this many rows (a floor), 0 if none is known
        ("col_move_prob", np.float64),
        ("t0", np.float64),
        ("log_ratio", np.float64),  # log(final temperature / t0)
        ("lower_bound", np.float64),  # capped: stop when the best cost reaches this floor
        ("it", np.int64),  # next move index
        ("ran", np.int64),  # moves run (index of the last one + 1)
        ("accepted", np.int64),
        ("last_best", np.int64),  # `ran` when the best last improved
        ("rows", np.int64),  # lossless: current and best packed rows, and the start's
        ("best_rows", np.int64),
        ("initial_rows", np.int64),
        ("at_best", np.bool_),  # the current state is the best seen (best_perm may hold an older one)
        ("done", np.bool_),
        ("current", np.float64),  # capped: tracked cost; lossless: tracked energy
        ("best", np.float64),
        ("initial", np.float64),
    ]
)

CappedState = namedtuple(
    "CappedState",
    "cost col_total perm tile_cols offsets group_of_pos vals drop kth nxt best_perm best_cols",
)
CappedScratch = namedtuple(
    "CappedScratch", "top new1 new2 touched col1 col2 buf1 buf2 kth1 nxt1 kth2 nxt2 cola1 colb1 cola2 colb2"
)
LosslessState = namedtuple(
    "LosslessState",
    "nonzero perm tile_cols offsets group_of_pos counts hist gmax best_perm best_cols",
)
LosslessScratch = namedtuple(
    "LosslessScratch",
    ["changed_c", "old_n", "new_col1", "new_col2", "old_col1", "old_col2", "old_max1", "old_max2"],
)


def new_run(iterations: int, patience: int, col_move_prob: float, t_ratio: float) -> np.ndarray:
    """A one-row `RUN` record with the schedule's knobs set; the `*_start` kernels fill the rest."""
    run = np.zeros(1, dtype=RUN)
    run["iterations"] = iterations
    run["patience"] = patience
    run["col_move_prob"] = col_move_prob
    run["log_ratio"] = math.log(t_ratio)
    return run


# ------------------------------------------------------------------------------------ shared pieces
@nb.njit(cache=True, inline="always")
def _temperature(t0, log_ratio, it, iterations):
    """Geometric cooling from t0 to t0 * t_ratio over the whole schedule."""
    return t0 * math.exp(log_ratio * it / iterations)


@nb.njit(cache=True, inline="always")
def _metropolis(delta, temperature):
    """Accept a move: always downhill, uphill with probability exp(-delta / T) (draws only when uphill)."""
    return delta <= 0.0 or np.random.random() < math.exp(-delta / temperature)


@nb.njit(cache=True, inline="always")
def _pick_col_swap(n_tiles, C):
    """Array column c1 of tile t1 and c2 of another tile t2 (uniform)."""
    t1 = np.random.randint(n_tiles)
    t2 = np.random.randint(n_tiles - 1)
    t2 = t2 + 1 if t2 >= t1 else t2
    c1 = np.random.randint(C)
    c2 = np.random.randint(C)
    return t1, c1, t2, c2


@nb.njit(cache=True, nogil=True)
def _pick_row_swap(n_pos, group_of_pos):
    """Two positions in different groups (uniform); (-1, -1) if there is one group only."""
    for _ in range(64):
        i1 = np.random.randint(n_pos)
        i2 = np.random.randint(n_pos)
        if group_of_pos[i1] != group_of_pos[i2]:
            return i1, i2
    return -1, -1


@nb.njit(cache=True, inline="always")
def _leave_best(state, at_best):
    """Before the walk leaves the best state seen uphill, copy it (lazily: never while still improving)."""
    if at_best:
        state.best_perm[:, :] = state.perm
        state.best_cols[:, :] = state.tile_cols
    return False


@nb.njit(cache=True, inline="always")
def _restore_best(state, at_best):
    """Leave the arrangement at the best state seen."""
    if not at_best:
        state.perm[:, :] = state.best_perm
        state.tile_cols[:, :] = state.best_cols


@nb.njit(cache=True, nogil=True)
def _group_of_pos(offsets, K):
    group_of_pos = np.empty(K, dtype=np.int64)
    for g in range(offsets.shape[0] - 1):
        for p in range(offsets[g], offsets[g + 1]):
            group_of_pos[p] = g
    return group_of_pos


# ------------------------------------------------------------------------------------------ capped
@nb.njit(cache=True, inline="always")
def _drop_of(vals, start, end, k, top):
    """`(drop, kth, nxt)` of one group of one array column, `vals[start:end]`: the cost dropped by keeping
    its k largest, and its k-th and (k+1)-th largest values (0 where the group has fewer nonzeros).

    `top` is scratch of length k + 1. The sums run in position order and the kept top-k in descending
    order, so every caller gets bit-identical drops. `kth` and `nxt` are what a row swap's delta needs
    (`_swap_delta`): a swap changes one value of the group, and the new drop follows from these two.
    """
    total = 0.0
    n_top = 0
    for p in range(start, end):
        v = vals[p]
        if v == 0.0:
            continue
        total += v
        if n_top <= k:
            i = n_top
            n_top += 1
        elif v > top[k]:
            i = k
        else:
            continue
        while i > 0 and top[i - 1] < v:
            top[i] = top[i - 1]
            i -= 1
        top[i] = v
    kept = 0.0
    for i in range(min(n_top, k)):
        kept += top[i]
    if k == 0:  # nothing kept: any value swapped in is dropped (`_swap_delta` then gives v_in - v_out)
        kth = math.inf
    else:
        kth = top[k - 1] if n_top >= k else 0.0
    nxt = top[k] if n_top > k else 0.0
    return total - kept, kth, nxt


@nb.njit(cache=True, inline="always")
def _swap_delta(v_out, v_in, kth, nxt):
    """The change of a group's drop when its value `v_out` is replaced by `v_in` (a row swap), from the
    group's k-th (`kth`) and (k+1)-th (`nxt`) largest values, in O(1) (costs are >= 0, zeros included):
    - `v_out >= kth` (kept): the (k+1)-th moves up unless `v_in` beats it, so the drop changes by
      `min(v_in - nxt, 0)`;
    - `v_out < kth` (dropped): `v_out` leaves the drop and `min(v_in, kth)` joins it.
    Equal to the difference of two `_drop_of` sums up to rounding (`tests/test_search.py` checks it)."""
    if v_out >= kth:
        return min(v_in - nxt, 0.0)
    return min(v_in, kth) - v_out


@nb.njit(cache=True, nogil=True)
def _permuted_costs(cost, perm, tile_cols):
    """`vals[t, c, p]`: cost of the weight at array column c, permuted position p of tile t (0 if unused).

    The annealer reads groups of one array column as contiguous runs of this, not as scattered rows of
    `cost` (one cache line per weight on large layers).
    """
    n_tiles, K = perm.shape
    C = tile_cols.shape[1]
    vals = np.zeros((n_tiles, C, K), dtype=np.float64)
    for t in range(n_tiles):
        for c in range(C):
            j = tile_cols[t, c]
            if j >= 0:
                for p in range(K):
                    vals[t, c, p] = cost[j, perm[t, p]]
    return vals


@nb.njit(cache=True, nogil=True)
def capped_drop_table(cost, perm, tile_cols, offsets, k):
    """`(drop, kth, nxt)[t, g, c]` for the current arrangement (`_drop_of` of every cell)."""
    n_tiles, C = tile_cols.shape
    n_groups = offsets.shape[0] - 1
    top = np.empty(k + 1, dtype=np.float64)
    drop = np.zeros((n_tiles, n_groups, C), dtype=np.float64)
    kth = np.zeros((n_tiles, n_groups, C), dtype=np.float64)
    nxt = np.zeros((n_tiles, n_groups, C), dtype=np.float64)
    vals = _permuted_costs(cost, perm, tile_cols)
    for t in range(n_tiles):
        for c in range(C):
            if tile_cols[t, c] < 0:
                continue
            for g in range(n_groups):
                drop[t, g, c], kth[t, g, c], nxt[t, g, c] = _drop_of(
                    vals[t, c], offsets[g], offsets[g + 1], k, top
                )
    return drop, kth, nxt


@nb.njit(cache=True, nogil=True)
def _capped_row_delta(s, w, k, t, i1, i2):
    """Delta of swapping positions i1, i2 of tile t, in O(C) from the k-th and (k+1)-th largest of each
    touched cell (`_swap_delta`); lists the touched columns (values that differ) in `w.touched`."""
    g1 = s.group_of_pos[i1]
    g2 = s.group_of_pos[i2]
    n_touched = 0
    delta = 0.0
    for c in range(s.tile_cols.shape[1]):
        v1 = s.vals[t, c, i1]
        v2 = s.vals[t, c, i2]
        if s.tile_cols[t, c] < 0 or v1 == v2:
            continue
        w.touched[n_touched] = c
        n_touched += 1
        delta += _swap_delta(v1, v2, s.kth[t, g1, c], s.nxt[t, g1, c])
        delta += _swap_delta(v2, v1, s.kth[t, g2, c], s.nxt[t, g2, c])
    return delta, n_touched


@nb.njit(cache=True, nogil=True)
def _capped_col_move(s, w, k, t1, c1, t2, c2, temperature):
    """Decide a swap of array column c1 of tile t1 with c2 of tile t2, drawing the Metropolis number the
    moment the delta is known to be positive, exactly as `delta <= 0 or random() < exp(-delta / T)` would.

    Fills `w.buf1`/`w.buf2` (the columns' costs in their new tiles' row order) and `w.col1`/`w.col2` (new
    drops per group; `w.cola*`/`w.colb*` their k-th and (k+1)-th largest). Most column moves are rejected
    by a wide margin: once the drops computed so far already exceed the old ones by more than the drawn
    number allows, the remaining groups are skipped.
    `col_total[j]` is column j's summed cost: it bounds the rounding noise (+-ulps) of the drops not yet
    computed. Returns (accepted, delta); delta is exact only when accepted.
    """
    cost = s.cost
    perm = s.perm
    offsets = s.offsets
    drop = s.drop
    n_groups = offsets.shape[0] - 1
    j1 = s.tile_cols[t1, c1]
    j2 = s.tile_cols[t2, c2]
    old = 0.0
    for g in range(n_groups):
        old += drop[t1, g, c1] + drop[t2, g, c2]
    scale = old + (s.col_total[j1] if j1 >= 0 else 0.0) + (s.col_total[j2] if j2 >= 0 else 0.0)
    new = 0.0
    drawn = False
    u = 0.0
    need = 0.0  # the delta above which the drawn number rejects
    for g in range(n_groups):
        start = offsets[g]
        end = offsets[g + 1]
        if j2 >= 0:
            for p in range(start, end):
                w.buf1[p] = cost[j2, perm[t1, p]]
            w.col1[g], w.cola1[g], w.colb1[g] = _drop_of(w.buf1, start, end, k, w.top)
        else:
            w.col1[g] = w.cola1[g] = w.colb1[g] = 0.0
        if j1 >= 0:
            for p in range(start, end):
                w.buf2[p] = cost[j1, perm[t2, p]]
            w.col2[g], w.cola2[g], w.colb2[g] = _drop_of(w.buf2, start, end, k, w.top)
        else:
            w.col2[g] = w.cola2[g] = w.colb2[g] = 0.0
        new += w.col1[g] + w.col2[g]
        # A lower bound on the delta (the drops left are >= 0 up to rounding), less a margin far above any
        # rounding of these sums, so `bound > 0` means the delta as the full sum computes it is > 0 too.
        bound = (new - old) - 1e-9 * (new + scale)
        if bound > 0.0 and g + 1 < n_groups:
            if not drawn:
                drawn = True
                u = np.random.random()
                need = -temperature * math.log(u) if u > 0.0 else math.inf
            if bound > need and math.exp(-bound / temperature) <= u:
                return False, 0.0
    delta = 0.0
    for g in range(n_groups):
        delta += w.col1[g] + w.col2[g] - drop[t1, g, c1] - drop[t2, g, c2]
    if delta <= 0.0:
        return True, delta
    if not drawn:
        u = np.random.random()
    return u < math.exp(-delta / temperature), delta


@nb.njit(cache=True, nogil=True)
def capped_state(cost, perm, tile_cols, offsets, k):
    """The annealer's state for the capped objective (arrays of the arrangement and its tables) and its
    scratch buffers. `perm`/`tile_cols` are shared, not copied: the search works on them in place."""
    n_tiles, K = perm.shape
    C = tile_cols.shape[1]
    n_groups = offsets.shape[0] - 1
    col_total = np.empty(cost.shape[0], dtype=np.float64)
    for j in range(cost.shape[0]):
        col_total[j] = cost[j].sum()
    drop, kth, nxt = capped_drop_table(cost, perm, tile_cols, offsets, k)
    state = CappedState(
        cost,
        col_total,
        perm,
        tile_cols,
        offsets,
        _group_of_pos(offsets, K),
        np.zeros((n_tiles, C, K), dtype=np.float64),
        drop,
        kth,
        nxt,
        perm.copy(),
        tile_cols.copy(),
    )
    scratch = CappedScratch(
        np.empty(k + 1, dtype=np.float64),
        np.empty(C, dtype=np.float64),
        np.empty(C, dtype=np.float64),
        np.empty(C, dtype=np.int64),
        np.empty(n_groups, dtype=np.float64),
        np.empty(n_groups, dtype=np.float64),
        np.empty(K, dtype=np.float64),
        np.empty(K, dtype=np.float64),
        np.empty(C, dtype=np.float64),
        np.empty(C, dtype=np.float64),
        np.empty(C, dtype=np.float64),
        np.empty(C, dtype=np.float64),
        np.empty(n_groups, dtype=np.float64),
        np.empty(n_groups, dtype=np.float64),
        np.empty(n_groups, dtype=np.float64),
        np.empty(n_groups, dtype=np.float64),
    )
    return state, scratch


@nb.njit(cache=True, nogil=True)
def capped_start(s, w, run, seed, t0_scale):
    """Seed the RNG, take the start's cost, and pick the starting temperature (the mean uphill delta of 200
    random row swaps, scaled). Marks the run done when there is nothing to search."""
    np.random.seed(seed)
    r = run[0]
    n_tiles, K = s.perm.shape
    n_groups = s.offsets.shape[0] - 1
    current = s.drop.sum()
    r.current = current
    r.initial = current
    r.best = current
    r.at_best = True
    can_swap_rows = n_groups > 1
    if not (can_swap_rows or n_tiles > 1) or r.iterations <= 0 or current <= r.lower_bound:
        r.done = True
        return
    s.vals[:, :, :] = _permuted_costs(s.cost, s.perm, s.tile_cols)  # kept in step with perm / tile_cols
    uphill = 0.0
    n_uphill = 0
    for _ in range(200):
        if can_swap_rows:
            i1, i2 = _pick_row_swap(K, s.group_of_pos)
            t = np.random.randint(n_tiles)
            d, _n = _capped_row_delta(s, w, r.k, t, i1, i2)
            if d > 0:
                uphill += d
                n_uphill += 1
    r.t0 = t0_scale * (uphill / n_uphill if n_uphill else max(current / max(1, K), 1e-12))


@nb.njit(cache=True, nogil=True)
def _capped_accept_col(s, w, t1, c1, t2, c2):
    """Apply an accepted column swap to the arrangement and its tables."""
    j1 = s.tile_cols[t1, c1]
    j2 = s.tile_cols[t2, c2]
    s.tile_cols[t1, c1] = j2
    s.tile_cols[t2, c2] = j1
    for p in range(s.perm.shape[1]):
        s.vals[t1, c1, p] = w.buf1[p] if j2 >= 0 else 0.0
        s.vals[t2, c2, p] = w.buf2[p] if j1 >= 0 else 0.0
    for g in range(s.offsets.shape[0] - 1):
        s.drop[t1, g, c1] = w.col1[g]
        s.drop[t2, g, c2] = w.col2[g]
        s.kth[t1, g, c1] = w.cola1[g]
        s.kth[t2, g, c2] = w.cola2[g]
        s.nxt[t1, g, c1] = w.colb1[g]
        s.nxt[t2, g, c2] = w.colb2[g]


@nb.njit(cache=True, nogil=True)
def _capped_recount_row(s, w, k, t, i1, i2, n_touched):
    """Swap positions i1, i2 of tile t in `vals` and recount the touched cells exactly (`_drop_of`) into
    `w.new*`/`w.kth*`/`w.nxt*`; returns the exact change of the summed drop. `_capped_accept_row` then
    applies the swap to the arrangement and the tables."""
    g1 = s.group_of_pos[i1]
    g2 = s.group_of_pos[i2]
    for c in range(s.tile_cols.shape[1]):
        v = s.vals[t, c, i1]
        s.vals[t, c, i1] = s.vals[t, c, i2]
        s.vals[t, c, i2] = v
    start1, end1 = s.offsets[g1], s.offsets[g1 + 1]
    start2, end2 = s.offsets[g2], s.offsets[g2 + 1]
    change = 0.0
    for n in range(n_touched):
        c = w.touched[n]
        w.new1[n], w.kth1[n], w.nxt1[n] = _drop_of(s.vals[t, c], start1, end1, k, w.top)
        w.new2[n], w.kth2[n], w.nxt2[n] = _drop_of(s.vals[t, c], start2, end2, k, w.top)
        change += w.new1[n] + w.new2[n] - s.drop[t, g1, c] - s.drop[t, g2, c]
    return change


@nb.njit(cache=True, nogil=True)
def _capped_accept_row(s, w, t, i1, i2, n_touched):
    """Apply a recounted row swap (`_capped_recount_row`) to the arrangement and its tables."""
    g1 = s.group_of_pos[i1]
    g2 = s.group_of_pos[i2]
    r = s.perm[t, i1]
    s.perm[t, i1] = s.perm[t, i2]
    s.perm[t, i2] = r
    for n in range(n_touched):
        c = w.touched[n]
        s.drop[t, g1, c] = w.new1[n]
        s.drop[t, g2, c] = w.new2[n]
        s.kth[t, g1, c] = w.kth1[n]
        s.kth[t, g2, c] = w.kth2[n]
        s.nxt[t, g1, c] = w.nxt1[n]
        s.nxt[t, g2, c] = w.nxt2[n]


@nb.njit(cache=True, nogil=True)
def capped_chunk(s, w, run, moves):
    """Run the next `moves` moves (at most) of a capped annealing run; True once the run is over.

    Stops early at `run.lower_bound` or after `run.patience` moves without a new best.
    """
    r = run[0]
    if r.done:
        return True
    n_tiles, K = s.perm.shape
    C = s.tile_cols.shape[1]
    can_swap_rows = s.offsets.shape[0] > 2
    can_swap_cols = n_tiles > 1
    iterations = r.iterations
    patience = r.patience
    k = r.k
    t0 = r.t0
    log_ratio = r.log_ratio
    col_move_prob = r.col_move_prob
    lower_bound = r.lower_bound
    current = r.current
    best = r.best
    accepted = r.accepted
    ran = r.ran
    last_best = r.last_best
    at_best = r.at_best
    done = False
    end = min(iterations, r.it + moves)
    it = r.it
    while it < end:
        if patience > 0 and it - last_best >= patience:
            done = True
            break
        ran = it + 1
        it += 1
        temperature = _temperature(t0, log_ratio, ran - 1, iterations)
        if can_swap_cols and (not can_swap_rows or np.random.random() < col_move_prob):
            t1, c1, t2, c2 = _pick_col_swap(n_tiles, C)
            if s.tile_cols[t1, c1] < 0 and s.tile_cols[t2, c2] < 0:
                continue
            ok, delta = _capped_col_move(s, w, k, t1, c1, t2, c2, temperature)
            if not ok:
                continue
            if delta > 0.0:
                at_best = _leave_best(s, at_best)
            _capped_accept_col(s, w, t1, c1, t2, c2)
        else:
            t = np.random.randint(n_tiles)
            i1, i2 = _pick_row_swap(K, s.group_of_pos)
            delta, n_touched = _capped_row_delta(s, w, k, t, i1, i2)
            if n_touched == 0 or not _metropolis(delta, temperature):
                continue
            # accepted on the O(1) delta; the touched cells are recounted exactly and the exact change is
            # tracked, so the running cost never drifts from the tables
            delta = _capped_recount_row(s, w, k, t, i1, i2, n_touched)
            if delta > 0.0:
                at_best = _leave_best(s, at_best)
            _capped_accept_row(s, w, t, i1, i2, n_touched)
        current += delta
        accepted += 1
        if current < best - 1e-12 * (1.0 + abs(best)):
            best = current  # the current state is the new best; it is copied only when left uphill
            at_best = True
            last_best = ran
            if best <= lower_bound + 1e-12 * (1.0 + abs(lower_bound)):
                done = True
                break
    r.it = it
    r.current = current
    r.best = best
    r.accepted = accepted
    r.ran = ran
    r.last_best = last_best
    r.at_best = at_best
    r.done = done or it >= iterations
    return r.done


@nb.njit(cache=True, nogil=True)
def capped_finish(s, run):
    """Leave the arrangement at the best state and return its exact cost (the running sum drifts)."""
    r = run[0]
    _restore_best(s, r.at_best)
    r.at_best = True
    if r.ran == 0:
        return r.best
    return capped_drop_table(s.cost, s.perm, s.tile_cols, s.offsets, r.k)[0].sum()


# ---------------------------------------------------------------------------------------- lossless
@nb.njit(cache=True, nogil=True)
def _lossless_tables(nonzero, perm, tile_cols, offsets, max_size):
    n_tiles, C = tile_cols.shape
    n_groups = offsets.shape[0] - 1
    counts = np.zeros((n_tiles, n_groups, C), dtype=np.int64)
    hist = np.zeros((n_tiles, n_groups, max_size + 2), dtype=np.int64)
    gmax = np.zeros((n_tiles, n_groups), dtype=np.int64)
    for t in range(n_tiles):
        for g in range(n_groups):
            for c in range(C):
                j = tile_cols[t, c]
                n = 0
                if j >= 0:
                    for p in range(offsets[g], offsets[g + 1]):
                        if nonzero[j, perm[t, p]]:
                            n += 1
                counts[t, g, c] = n
                hist[t, g, n] += 1
                if n > gmax[t, g]:
                    gmax[t, g] = n
    return counts, hist, gmax


@nb.njit(cache=True, inline="always")
def _group_energy(hist, gmax, t, g, C):
    m = gmax[t, g]
    if m == 0:
        return 0.0
    return m + _AT_MAX_WEIGHT * hist[t, g, m] / C


@nb.njit(cache=True, inline="always")
def _set_count(counts, hist, gmax, t, g, c, n):
    """Set count[t, g, c] to n, keeping the histogram and the group maximum exact for any change."""
    old = counts[t, g, c]
    hist[t, g, old] -= 1
    counts[t, g, c] = n
    hist[t, g, n] += 1
    if n > gmax[t, g]:
        gmax[t, g] = n
    elif old == gmax[t, g] and hist[t, g, old] == 0:
        m = old
        while m > 0 and hist[t, g, m] == 0:
            m -= 1
        gmax[t, g] = m


@nb.njit(cache=True, nogil=True)
def lossless_state(nonzero, perm, tile_cols, offsets):
    """The annealer's state for the lossless objective (counts, their histogram and maxima per group) and
    its scratch buffers. `perm`/`tile_cols` are shared, not copied."""
    K = perm.shape[1]
    C = tile_cols.shape[1]
    n_groups = offsets.shape[0] - 1
    max_size = 0
    for g in range(n_groups):
        max_size = max(max_size, offsets[g + 1] - offsets[g])
    counts, hist, gmax = _lossless_tables(nonzero, perm, tile_cols, offsets, max_size)
    state = LosslessState(
        nonzero,
        perm,
        tile_cols,
        offsets,
        _group_of_pos(offsets, K),
        counts,
        hist,
        gmax,
        perm.copy(),
        tile_cols.copy(),
    )
    scratch = LosslessScratch(
        np.empty(C, dtype=np.int64),
        np.empty(C, dtype=np.int64),
        np.empty(n_groups, dtype=np.int64),
        np.empty(n_groups, dtype=np.int64),
        np.empty(n_groups, dtype=np.int64),
        np.empty(n_groups, dtype=np.int64),
        np.empty(n_groups, dtype=np.int64),
        np.empty(n_groups, dtype=np.int64),
    )
    return state, scratch


@nb.njit(cache=True, nogil=True)
def lossless_start(s, run, seed, t0_scale):
    """Seed the RNG and take the start's rows and energy; marks the run done when there is nothing to do."""
    np.random.seed(seed)
    r = run[0]
    n_tiles, C = s.tile_cols.shape
    n_groups = s.offsets.shape[0] - 1
    energy = 0.0
    for t in range(n_tiles):
        for g in range(n_groups):
            energy += _group_energy(s.hist, s.gmax, t, g, C)
    rows = s.gmax.sum()
    r.rows = rows
    r.best_rows = rows
    r.initial_rows = rows
    r.current = energy
    r.best = energy
    r.at_best = True
    r.t0 = t0_scale * 1.0  # deltas are in rows: one row is the natural scale
    if not (n_groups > 1 or n_tiles > 1) or r.iterations <= 0 or rows <= r.bound_rows:
        r.done = True


@nb.njit(cache=True, nogil=True)
def _lossless_col_delta(s, w, t1, c1, t2, c2):
    """Set the counts of a tentative column swap; returns (energy delta, rows delta). Undo: `_undo_col`."""
    hist = s.hist
    gmax = s.gmax
    perm = s.perm
    C = s.tile_cols.shape[1]
    n_groups = s.offsets.shape[0] - 1
    j1 = s.tile_cols[t1, c1]
    j2 = s.tile_cols[t2, c2]
    before = 0.0
    for g in range(n_groups):
        before += _group_energy(hist, gmax, t1, g, C) + _group_energy(hist, gmax, t2, g, C)
        n1 = 0
        n2 = 0
        for p in range(s.offsets[g], s.offsets[g + 1]):
            if j2 >= 0 and s.nonzero[j2, perm[t1, p]]:
                n1 += 1
            if j1 >= 0 and s.nonzero[j1, perm[t2, p]]:
                n2 += 1
        w.new_col1[g] = n1
        w.new_col2[g] = n2
    after = 0.0
    rows_delta = 0
    for g in range(n_groups):
        w.old_col1[g] = s.counts[t1, g, c1]
        w.old_col2[g] = s.counts[t2, g, c2]
        w.old_max1[g] = gmax[t1, g]
        w.old_max2[g] = gmax[t2, g]
        _set_count(s.counts, hist, gmax, t1, g, c1, w.new_col1[g])
        _set_count(s.counts, hist, gmax, t2, g, c2, w.new_col2[g])
        after += _group_energy(hist, gmax, t1, g, C) + _group_energy(hist, gmax, t2, g, C)
        rows_delta += gmax[t1, g] + gmax[t2, g] - w.old_max1[g] - w.old_max2[g]
    return after - before, rows_delta


@nb.njit(cache=True, nogil=True)
def _lossless_undo_col(s, w, t1, c1, t2, c2):
    for g in range(s.offsets.shape[0] - 1):
        _set_count(s.counts, s.hist, s.gmax, t1, g, c1, w.old_col1[g])
        _set_count(s.counts, s.hist, s.gmax, t2, g, c2, w.old_col2[g])


@nb.njit(cache=True, nogil=True)
def _lossless_row_delta(s, w, t, i1, i2):
    """Set the counts of a tentative row swap; returns (energy delta, rows delta, columns changed)."""
    hist = s.hist
    gmax = s.gmax
    C = s.tile_cols.shape[1]
    g1 = s.group_of_pos[i1]
    g2 = s.group_of_pos[i2]
    r1 = s.perm[t, i1]
    r2 = s.perm[t, i2]
    before = _group_energy(hist, gmax, t, g1, C) + _group_energy(hist, gmax, t, g2, C)
    m1 = gmax[t, g1]
    m2 = gmax[t, g2]
    n_changed = 0
    for c in range(C):
        j = s.tile_cols[t, c]
        if j < 0 or s.nonzero[j, r1] == s.nonzero[j, r2]:
            continue
        step = 1 if s.nonzero[j, r2] else -1
        w.changed_c[n_changed] = c
        w.old_n[n_changed] = step
        n_changed += 1
        _set_count(s.counts, hist, gmax, t, g1, c, s.counts[t, g1, c] + step)
        _set_count(s.counts, hist, gmax, t, g2, c, s.counts[t, g2, c] - step)
    if n_changed == 0:
        return 0.0, 0, 0
    after = _group_energy(hist, gmax, t, g1, C) + _group_energy(hist, gmax, t, g2, C)
    return after - before, gmax[t, g1] + gmax[t, g2] - m1 - m2, n_changed


@nb.njit(cache=True, nogil=True)
def _lossless_undo_row(s, w, t, i1, i2, n_changed):
    g1 = s.group_of_pos[i1]
    g2 = s.group_of_pos[i2]
    for n in range(n_changed):
        c = w.changed_c[n]
        _set_count(s.counts, s.hist, s.gmax, t, g1, c, s.counts[t, g1, c] - w.old_n[n])
        _set_count(s.counts, s.hist, s.gmax, t, g2, c, s.counts[t, g2, c] + w.old_n[n])


@nb.njit(cache=True, nogil=True)
def lossless_chunk(s, w, run, moves):
    """Run the next `moves` moves (at most) of a lossless annealing run; True once the run is over.

    Stops early at `run.bound_rows` or after `run.patience` moves without a new best.
    """
    r = run[0]
    if r.done:
        return True
    n_tiles, K = s.perm.shape
    C = s.tile_cols.shape[1]
    can_swap_rows = s.offsets.shape[0] > 2
    can_swap_cols = n_tiles > 1
    iterations = r.iterations
    patience = r.patience
    t0 = r.t0
    log_ratio = r.log_ratio
    col_move_prob = r.col_move_prob
    energy = r.current
    best_energy = r.best
    rows = r.rows
    best_rows = r.best_rows
    accepted = r.accepted
    ran = r.ran
    last_best = r.last_best
    at_best = r.at_best
    done = False
    end = min(iterations, r.it + moves)
    it = r.it
    while it < end:
        if patience > 0 and it - last_best >= patience:
            done = True
            break
        ran = it + 1
        it += 1
        temperature = _temperature(t0, log_ratio, ran - 1, iterations)
        if can_swap_cols and (not can_swap_rows or np.random.random() < col_move_prob):
            t1, c1, t2, c2 = _pick_col_swap(n_tiles, C)
            j1 = s.tile_cols[t1, c1]
            j2 = s.tile_cols[t2, c2]
            if j1 < 0 and j2 < 0:
                continue
            delta, rows_delta = _lossless_col_delta(s, w, t1, c1, t2, c2)
            if not _metropolis(delta, temperature):
                _lossless_undo_col(s, w, t1, c1, t2, c2)
                continue
            if rows_delta > 0 or (rows_delta == 0 and delta > 1e-9):
                at_best = _leave_best(s, at_best)
            s.tile_cols[t1, c1] = j2
            s.tile_cols[t2, c2] = j1
        else:
            t = np.random.randint(n_tiles)
            i1, i2 = _pick_row_swap(K, s.group_of_pos)
            delta, rows_delta, n_changed = _lossless_row_delta(s, w, t, i1, i2)
            if n_changed == 0:
                continue
            if not _metropolis(delta, temperature):
                _lossless_undo_row(s, w, t, i1, i2, n_changed)
                continue
            if rows_delta > 0 or (rows_delta == 0 and delta > 1e-9):
                at_best = _leave_best(s, at_best)
            r1 = s.perm[t, i1]
            s.perm[t, i1] = s.perm[t, i2]
            s.perm[t, i2] = r1
        energy += delta
        rows += rows_delta
        accepted += 1
        if rows < best_rows or (rows == best_rows and energy < best_energy - 1e-9):
            best_rows = rows
            best_energy = energy
            at_best = True
            last_best = ran
            if best_rows <= r.bound_rows:
                done = True
                break
    r.it = it
    r.current = energy
    r.best = best_energy
    r.rows = rows
    r.best_rows = best_rows
    r.accepted = accepted
    r.ran = ran
    r.last_best = last_best
    r.at_best = at_best
    r.done = done or it >= iterations
    return r.done


@nb.njit(cache=True, nogil=True)
def lossless_finish(s, run):
    """Leave the arrangement at the best state; returns its packed rows."""
    r = run[0]
    _restore_best(s, r.at_best)
    r.at_best = True
    return r.best_rows


# ------------------------------------------------------------------------------------------ greedy
# Up to this many groups a row is scored against every open group (exact greedy). Above it (tall layers:
# K / G groups, e.g. 125,000 for K = 1e6 at G = 8) a full scan per row is O(K^2 / G): rows are scored
# against a few candidate groups drawn from two priority trees instead (`_place_by_candidates`).
GREEDY_EXACT_GROUPS = 512
# Candidates per row above GREEDY_EXACT_GROUPS: the least-filled groups by nonzeros, and by rows.
GREEDY_CANDIDATES = 64
_NO_KEY = np.iinfo(np.int64).max


@nb.njit(cache=True, inline="always")
def _tree_set(tree, size, i, value):
    """Set leaf i of a min segment tree (`tree[1]` is the minimum of all leaves) and update its ancestors."""
    p = i + size
    tree[p] = value
    p //= 2
    while p >= 1:
        tree[p] = min(tree[2 * p], tree[2 * p + 1])
        p //= 2


@nb.njit(cache=True, inline="always")
def _row_keys(g, lo, hi, row_cols, row_cost, counts, tallest, k):
    """The greedy's score of putting a row (its nonzeros `row_cols[lo:hi]`) into group g: (cost pushed
    over the height k, or 1.0 if it raises the group's tallest column when k <= 0; overlap)."""
    key0 = 0.0
    key1 = 0
    for n in range(lo, hi):
        count = counts[row_cols[n], g]
        key1 += count
        if k > 0:
            if count >= k:
                key0 += row_cost[n]
        elif count + 1 > tallest[g]:
            key0 = 1.0
    return key0, key1


@nb.njit(cache=True, inline="always")
def _better(key0, key1, heads_g, g, best0, best1, best_heads, best_g):
    """Lexicographic (key0, key1, fill, group index) comparison of the greedy's scores."""
    if best_g < 0:
        return True
    if key0 != best0:
        return key0 < best0
    if key1 != best1:
        return key1 < best1
    if heads_g != best_heads:
        return heads_g < best_heads
    return g < best_g


@nb.njit(cache=True, inline="always")
def _place(t, r, g, lo, hi, row_cols, perm, offsets, heads, counts, tallest):
    """Put row r into group g of tile t and update the group's tables."""
    perm[t, offsets[g] + heads[g]] = r
    heads[g] += 1
    for n in range(lo, hi):
        c = row_cols[n]
        counts[c, g] += 1
        if counts[c, g] > tallest[g]:
            tallest[g] = counts[c, g]


@nb.njit(cache=True, nogil=True)
def _place_exact(t, order, row_start, row_cols, row_cost, sizes, offsets, k, perm, heads, counts, tallest):
    """Each row into the open group with the least score, every open group scored (O(rows x groups))."""
    n_groups = sizes.shape[0]
    for r in order:
        lo = row_start[r]
        hi = row_start[r + 1]
        best_g = -1
        best0 = 0.0
        best1 = 0
        for g in range(n_groups):
            if heads[g] >= sizes[g]:
                continue
            key0, key1 = _row_keys(g, lo, hi, row_cols, row_cost, counts, tallest, k)
            if _better(key0, key1, heads[g], g, best0, best1, heads[best_g] if best_g >= 0 else 0, best_g):
                best_g, best0, best1 = g, key0, key1
        _place(t, r, best_g, lo, hi, row_cols, perm, offsets, heads, counts, tallest)


@nb.njit(cache=True, nogil=True)
def _place_by_candidates(
    t, order, row_start, row_cols, row_cost, sizes, offsets, k, n_candidates, perm, heads, counts, tallest
):
    """Each row into the best of a few candidate groups: O(rows x candidates x log groups).

    Three min segment trees over the open groups give the candidates, `n_candidates` from each:
    - by fill (rows held, index): a group holding no nonzero in the row's columns has overlap 0, the least
      there is, and the least-filled such group is the exact greedy's choice; a row with no nonzeros
      takes this tree's minimum, as the exact greedy does;
    - by load (nonzeros held, rows held, index): with one column per tile its minimum is the exact
      greedy's choice (the score is monotone in the nonzeros held);
    - by room (most free slots below the group's height: the capped k, or the tallest column when
      lossless): the groups a row fits into without pushing anything over.
    """
    n_groups = sizes.shape[0]
    C = counts.shape[0]
    size = 1
    while size < n_groups:
        size *= 2
    span = np.int64(sizes.max() + 1)
    room_span = np.int64(span * C + 1)
    by_fill = np.full(2 * size, _NO_KEY, dtype=np.int64)
    by_load = np.full(2 * size, _NO_KEY, dtype=np.int64)
    by_room = np.full(2 * size, _NO_KEY, dtype=np.int64)
    held = np.zeros(n_groups, dtype=np.int64)  # nonzeros held per group
    room = np.zeros(n_groups, dtype=np.int64)  # free (column, slot) pairs below the group's height
    for g in range(n_groups):
        if sizes[g] > 0:
            if k > 0:
                room[g] = k * C
            _tree_set(by_fill, size, g, np.int64(g))
            _tree_set(by_load, size, g, np.int64(g))
            _tree_set(by_room, size, g, ((room_span - room[g]) * span) * n_groups + g)
    popped = np.empty(n_candidates, dtype=np.int64)
    popped_key = np.empty(n_candidates, dtype=np.int64)
    for r in order:
        lo = row_start[r]
        hi = row_start[r + 1]
        best_g = -1
        best0 = 0.0
        best1 = 0
        for which in range(3):
            # One column per tile: the first group by load is the exact choice; no nonzeros: by fill.
            if which == 0 and C == 1 and hi > lo:
                continue
            tree = by_fill if which == 0 else (by_load if which == 1 else by_room)
            n_popped = 0
            for _ in range(n_candidates if hi > lo and C > 1 else 1):
                key = tree[1]
                if key == _NO_KEY:
                    break
                g = key % n_groups
                popped[n_popped] = g
                popped_key[n_popped] = key
                n_popped += 1
                _tree_set(tree, size, g, _NO_KEY)
                key0, key1 = _row_keys(g, lo, hi, row_cols, row_cost, counts, tallest, k)
                if _better(
                    key0, key1, heads[g], g, best0, best1, heads[best_g] if best_g >= 0 else 0, best_g
                ):
                    best_g, best0, best1 = g, key0, key1
                if which == 0 and key0 == 0.0 and key1 == 0:
                    break  # no overlap and nothing pushed over, at the least fill: nothing can beat it
            for i in range(n_popped):  # put this tree's candidates back
                _tree_set(tree, size, popped[i], popped_key[i])
            if hi == lo or C == 1 or (best0 == 0.0 and best1 == 0):
                break
        g = best_g
        if k > 0:
            for n in range(lo, hi):
                if counts[row_cols[n], g] < k:
                    room[g] -= 1
        _place(t, r, g, lo, hi, row_cols, perm, offsets, heads, counts, tallest)
        held[g] += hi - lo
        if k <= 0:
            room[g] = tallest[g] * C - held[g]
        if heads[g] >= sizes[g]:
            _tree_set(by_fill, size, g, _NO_KEY)
            _tree_set(by_load, size, g, _NO_KEY)
            _tree_set(by_room, size, g, _NO_KEY)
        else:
            _tree_set(by_fill, size, g, heads[g] * n_groups + g)
            _tree_set(by_load, size, g, (held[g] * span + heads[g]) * n_groups + g)
            _tree_set(by_room, size, g, ((room_span - room[g]) * span + heads[g]) * n_groups + g)


@nb.njit(cache=True, nogil=True)
def greedy_rows(
    cost, tile_cols, offsets, k, exact_groups=GREEDY_EXACT_GROUPS, n_candidates=GREEDY_CANDIDATES
):
    """Greedy start, per tile: rows by descending nnz, each into the open group where it adds the least.

    "Least" is lexicographic: first the cost it would push over the height k (k <= 0: whether it raises
    the group's tallest column), then its overlap with the group's nonzeros, then the group's fill, then
    the group's index. Up to `exact_groups` groups every open group is scored; above, a few candidates
    per row (`_place_by_candidates`), so a tall layer costs O(K log K), not O(K^2 / G).
    Each row's nonzero columns are listed once per tile (read column by column, contiguous in `cost`).
    """
    n_tiles, C = tile_cols.shape
    K = cost.shape[1]
    n_groups = offsets.shape[0] - 1
    perm = np.empty((n_tiles, K), dtype=np.int64)
    sizes = np.empty(n_groups, dtype=np.int64)
    for g in range(n_groups):
        sizes[g] = offsets[g + 1] - offsets[g]
    row_nnz = np.empty(K, dtype=np.int64)
    row_start = np.empty(K + 1, dtype=np.int64)
    fill = np.empty(K, dtype=np.int64)
    counts = np.empty((C, n_groups), dtype=np.int64)
    heads = np.empty(n_groups, dtype=np.int64)
    tallest = np.empty(n_groups, dtype=np.int64)
    for t in range(n_tiles):
        counts[:, :] = 0
        heads[:] = 0
        tallest[:] = 0
        row_nnz[:] = 0
        for c in range(C):
            j = tile_cols[t, c]
            if j < 0:
                continue
            for r in range(K):
                if cost[j, r] != 0.0:
                    row_nnz[r] += 1
        row_start[0] = 0
        for r in range(K):
            row_start[r + 1] = row_start[r] + row_nnz[r]
            fill[r] = row_start[r]
        # the nonzero columns of row r and their costs: row_start[r]:row_start[r+1], in column order
        row_cols = np.empty(row_start[K], dtype=np.int64)
        row_cost = np.empty(row_start[K], dtype=np.float64)
        for c in range(C):
            j = tile_cols[t, c]
            if j < 0:
                continue
            for r in range(K):
                v = cost[j, r]
                if v != 0.0:
                    row_cols[fill[r]] = c
                    row_cost[fill[r]] = v
                    fill[r] += 1
        order = np.argsort(-row_nnz, kind="mergesort")
        if n_groups <= exact_groups:
            _place_exact(
                t, order, row_start, row_cols, row_cost, sizes, offsets, k, perm, heads, counts, tallest
            )
        else:
            _place_by_candidates(
                t,
                order,
                row_start,
                row_cols,
                row_cost,
                sizes,
                offsets,
                k,
                n_candidates,
                perm,
                heads,
                counts,
                tallest,
            )
    return perm
