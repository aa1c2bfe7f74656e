"""Compiled (numba) kernels of the permutation search: greedy start and simulated annealing.

State shared by the kernels:
    cost: `(N, K)` float64, the price of dropping each weight (|w| or w^2), 0 where the weight is pruned;
        stored column by column (the transpose of `W`) because every kernel scans the rows of a group
        within one column: contiguous reads instead of a cache miss per row (about 3x on large layers).
    nonzero: `(N, K)` bool, likewise.
    perm: `(T, K)` int64, the per-tile row permutation; group g is positions `offsets[g]:offsets[g+1]`.
    tile_cols: `(T, C)` int64, the original column at each array column of each tile, -1 where unused.
    vals (capped annealer only): `(T, C, K)` float64, `cost` gathered into each tile's permuted row order,
        so one group of one array column is a contiguous run; updated with every accepted move.

Two objectives:
    capped: every group has height k; minimise the summed cost of the weights beyond the k largest in
        each (tile, group, column). Kept per (tile, group, column) in `drop`.
    lossless (auto): every group is as tall as its densest column; minimise the total packed rows
        `sum_{t,g} max_c count[t,g,c]`. Kept as counts, a histogram of counts per group and its maximum,
        so a move updates the maximum in O(1) amortised. A small secondary term (columns at the
        maximum) gives the search a slope on the plateaus of the max.

A move is either a swap of two rows between groups of one tile or a swap of two columns between tiles;
its delta is computed from the touched (tile, group, column) cells only.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

# Weight of "columns at the group maximum" in the lossless energy, per column, relative to one row.
_AT_MAX_WEIGHT = 0.5


# ------------------------------------------------------------------------------------------ capped
@nb.njit(cache=True, inline="always")
def _drop_of(vals, start, end, k, swap_pos, swap_val, top):
    """Cost dropped by keeping the k largest of `vals[start:end]` (one group of one array column).

    Position `swap_pos` is read as `swap_val` (a tentative row swap); pass -1 for none. The sums run in
    position order and the kept top-k in descending order, so every caller gets bit-identical drops.
    """
    total = 0.0
    n_top = 0
    for p in range(start, end):
        v = swap_val if p == swap_pos else vals[p]
        if v == 0.0:
            continue
        total += v
        if n_top < k:
            i = n_top
            n_top += 1
        elif v > top[k - 1]:
            i = k - 1
        else:
            continue
        while i > 0 and top[i - 1] < v:
            top[i] = top[i - 1]
            i -= 1
        top[i] = v
    kept = 0.0
    for i in range(n_top):
        kept += top[i]
    return total - kept


@nb.njit(cache=True)
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


@nb.njit(cache=True)
def capped_drop_table(cost, perm, tile_cols, offsets, k):
    """`drop[t, g, c]` for the current arrangement."""
    n_tiles, C = tile_cols.shape
    n_groups = offsets.shape[0] - 1
    top = np.empty(max(k, 1), dtype=np.float64)
    drop = np.zeros((n_tiles, n_groups, C), dtype=np.float64)
    vals = _permuted_costs(cost, perm, tile_cols)
    for t in range(n_tiles):
        for c in range(C):
            if tile_cols[t, c] < 0:
                continue
            for g in range(n_groups):
                drop[t, g, c] = _drop_of(vals[t, c], offsets[g], offsets[g + 1], k, -1, 0.0, top)
    return drop


@nb.njit(cache=True)
def _capped_row_delta(vals, tile_cols, offsets, group_of_pos, k, drop, t, i1, i2, top, new1, new2, touched):
    """Delta of swapping positions i1, i2 of tile t; fills the new drops of touched columns."""
    g1 = group_of_pos[i1]
    g2 = group_of_pos[i2]
    n_touched = 0
    delta = 0.0
    for c in range(tile_cols.shape[1]):
        v1 = vals[t, c, i1]
        v2 = vals[t, c, i2]
        if tile_cols[t, c] < 0 or (v1 == 0.0 and v2 == 0.0):
            continue
        d1 = _drop_of(vals[t, c], offsets[g1], offsets[g1 + 1], k, i1, v2, top)
        d2 = _drop_of(vals[t, c], offsets[g2], offsets[g2 + 1], k, i2, v1, top)
        new1[n_touched] = d1
        new2[n_touched] = d2
        touched[n_touched] = c
        n_touched += 1
        delta += d1 + d2 - drop[t, g1, c] - drop[t, g2, c]
    return delta, n_touched


@nb.njit(cache=True)
def _capped_col_move(
    cost,
    col_total,
    perm,
    tile_cols,
    offsets,
    k,
    drop,
    t1,
    c1,
    t2,
    c2,
    temperature,
    top,
    buf1,
    buf2,
    col1,
    col2,
):
    """Decide a swap of array column c1 of tile t1 with c2 of tile t2, drawing the Metropolis number the
    moment the delta is known to be positive, exactly as `delta <= 0 or random() < exp(-delta / T)` would.

    Fills `buf1`/`buf2` (the columns' costs in their new tiles' row order) and `col1`/`col2` (new drops per
    group). Most column moves are rejected by a wide margin: once the drops computed so far already exceed
    the old ones by more than the drawn number allows, the remaining groups are skipped. `col_total[j]` is
    column j's summed cost: it bounds the rounding noise (+-ulps) of the drops not yet computed. Returns
    (accepted, delta); delta is exact only when accepted.
    """
    n_groups = offsets.shape[0] - 1
    j1 = tile_cols[t1, c1]
    j2 = tile_cols[t2, c2]
    old = 0.0
    for g in range(n_groups):
        old += drop[t1, g, c1] + drop[t2, g, c2]
    scale = old + (col_total[j1] if j1 >= 0 else 0.0) + (col_total[j2] if j2 >= 0 else 0.0)
    new = 0.0
    drawn = False
    u = 0.0
    need = 0.0  # the delta above which the drawn number rejects
    for g in range(n_groups):
        start = offsets[g]
        end = offsets[g + 1]
        if j2 >= 0:
            for p in range(start, end):
                buf1[p] = cost[j2, perm[t1, p]]
            col1[g] = _drop_of(buf1, start, end, k, -1, 0.0, top)
        else:
            col1[g] = 0.0
        if j1 >= 0:
            for p in range(start, end):
                buf2[p] = cost[j1, perm[t2, p]]
            col2[g] = _drop_of(buf2, start, end, k, -1, 0.0, top)
        else:
            col2[g] = 0.0
        new += col1[g] + col2[g]
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
        delta += col1[g] + col2[g] - drop[t1, g, c1] - drop[t2, g, c2]
    if delta <= 0.0:
        return True, delta
    if not drawn:
        u = np.random.random()
    return u < math.exp(-delta / temperature), delta


@nb.njit(cache=True)
def _pick_row_swap(n_pos, group_of_pos):
    """Two positions in different groups (uniform); (-1, -1) if there is one group only."""
    for _ in range(64):
        i1 = np.random.randint(n_pos)
        i2 = np.random.randint(n_pos)
        if group_of_pos[i1] != group_of_pos[i2]:
            return i1, i2
    return -1, -1


@nb.njit(cache=True)
def anneal_capped(
    cost,
    perm,
    tile_cols,
    offsets,
    k,
    iterations,
    seed,
    col_move_prob,
    t0_scale,
    t_ratio,
    lower_bound,
    patience,
):
    """Simulated annealing for the capped objective, in place on `perm`/`tile_cols` (left at the best).

    Stops early at `lower_bound` or after `patience` moves without a new best (`patience <= 0`: never).
    Returns (initial cost, best cost, iterations run, moves accepted).
    """
    np.random.seed(seed)
    n_tiles, K = perm.shape
    C = tile_cols.shape[1]
    n_groups = offsets.shape[0] - 1
    group_of_pos = np.empty(K, dtype=np.int64)
    for g in range(n_groups):
        for p in range(offsets[g], offsets[g + 1]):
            group_of_pos[p] = g
    top = np.empty(max(k, 1), dtype=np.float64)
    new1 = np.empty(C, dtype=np.float64)
    new2 = np.empty(C, dtype=np.float64)
    touched = np.empty(C, dtype=np.int64)
    col1 = np.empty(n_groups, dtype=np.float64)
    col2 = np.empty(n_groups, dtype=np.float64)
    buf1 = np.empty(K, dtype=np.float64)
    buf2 = np.empty(K, dtype=np.float64)
    col_total = np.empty(cost.shape[0], dtype=np.float64)
    for j in range(cost.shape[0]):
        col_total[j] = cost[j].sum()

    drop = capped_drop_table(cost, perm, tile_cols, offsets, k)
    current = drop.sum()
    initial = current
    best = current
    can_swap_rows = n_groups > 1
    can_swap_cols = n_tiles > 1
    if not (can_swap_rows or can_swap_cols) or iterations <= 0 or current <= lower_bound:
        return initial, best, 0, 0
    vals = _permuted_costs(cost, perm, tile_cols)  # kept in step with perm / tile_cols
    best_perm = perm.copy()
    best_cols = tile_cols.copy()
    at_best = True  # the current state is the best seen (best_perm/best_cols may hold an older one)

    # Starting temperature: the mean uphill delta of random moves, scaled.
    uphill = 0.0
    n_uphill = 0
    for _ in range(200):
        if can_swap_rows:
            i1, i2 = _pick_row_swap(K, group_of_pos)
            t = np.random.randint(n_tiles)
            d, _n = _capped_row_delta(
                vals, tile_cols, offsets, group_of_pos, k, drop, t, i1, i2, top, new1, new2, touched
            )
            if d > 0:
                uphill += d
                n_uphill += 1
    t0 = t0_scale * (uphill / n_uphill if n_uphill else max(current / max(1, K), 1e-12))

    accepted = 0
    ran = 0
    last_best = 0  # moves run when the best was last improved
    log_ratio = math.log(t_ratio)
    for it in range(iterations):
        if patience > 0 and it - last_best >= patience:
            break
        ran = it + 1
        temperature = t0 * math.exp(log_ratio * it / iterations)
        if can_swap_cols and (not can_swap_rows or np.random.random() < col_move_prob):
            t1 = np.random.randint(n_tiles)
            t2 = np.random.randint(n_tiles - 1)
            t2 = t2 + 1 if t2 >= t1 else t2
            c1 = np.random.randint(C)
            c2 = np.random.randint(C)
            j1 = tile_cols[t1, c1]
            j2 = tile_cols[t2, c2]
            if j1 < 0 and j2 < 0:
                continue
            ok, delta = _capped_col_move(
                cost,
                col_total,
                perm,
                tile_cols,
                offsets,
                k,
                drop,
                t1,
                c1,
                t2,
                c2,
                temperature,
                top,
                buf1,
                buf2,
                col1,
                col2,
            )
            if not ok:
                continue
            if delta > 0.0 and at_best:  # leaving the best state seen: keep a copy of it
                best_perm[:, :] = perm
                best_cols[:, :] = tile_cols
                at_best = False
            tile_cols[t1, c1] = j2
            tile_cols[t2, c2] = j1
            for p in range(K):
                vals[t1, c1, p] = buf1[p] if j2 >= 0 else 0.0
                vals[t2, c2, p] = buf2[p] if j1 >= 0 else 0.0
            for g in range(n_groups):
                drop[t1, g, c1] = col1[g]
                drop[t2, g, c2] = col2[g]
            current += delta
            accepted += 1
        else:
            t = np.random.randint(n_tiles)
            i1, i2 = _pick_row_swap(K, group_of_pos)
            delta, n_touched = _capped_row_delta(
                vals, tile_cols, offsets, group_of_pos, k, drop, t, i1, i2, top, new1, new2, touched
            )
            if n_touched == 0:
                continue
            if delta <= 0.0 or np.random.random() < math.exp(-delta / temperature):
                if delta > 0.0 and at_best:
                    best_perm[:, :] = perm
                    best_cols[:, :] = tile_cols
                    at_best = False
                g1 = group_of_pos[i1]
                g2 = group_of_pos[i2]
                r = perm[t, i1]
                perm[t, i1] = perm[t, i2]
                perm[t, i2] = r
                for c in range(C):
                    v = vals[t, c, i1]
                    vals[t, c, i1] = vals[t, c, i2]
                    vals[t, c, i2] = v
                for n in range(n_touched):
                    drop[t, g1, touched[n]] = new1[n]
                    drop[t, g2, touched[n]] = new2[n]
                current += delta
                accepted += 1
            else:
                continue
        if current < best - 1e-12 * (1.0 + abs(best)):
            best = current  # the current state is the new best; it is copied only when left uphill
            at_best = True
            last_best = ran
            if best <= lower_bound + 1e-12 * (1.0 + abs(lower_bound)):
                break
    if not at_best:
        perm[:, :] = best_perm
        tile_cols[:, :] = best_cols
    # The running sum of deltas drifts by rounding; report the best state's exact cost.
    best = capped_drop_table(cost, perm, tile_cols, offsets, k).sum()
    return initial, best, ran, accepted


# ---------------------------------------------------------------------------------------- lossless
@nb.njit(cache=True)
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


@nb.njit(cache=True)
def anneal_lossless(
    nonzero,
    perm,
    tile_cols,
    offsets,
    iterations,
    seed,
    col_move_prob,
    t0_scale,
    t_ratio,
    lower_bound_rows,
    patience,
):
    """Simulated annealing for the total packed rows, in place on `perm`/`tile_cols` (left at the best).

    Stops early at `lower_bound_rows` or after `patience` moves without a new best (`patience <= 0`: never).
    Returns (initial rows, best rows, iterations run, moves accepted).
    """
    np.random.seed(seed)
    n_tiles, K = perm.shape
    C = tile_cols.shape[1]
    n_groups = offsets.shape[0] - 1
    max_size = 0
    group_of_pos = np.empty(K, dtype=np.int64)
    for g in range(n_groups):
        max_size = max(max_size, offsets[g + 1] - offsets[g])
        for p in range(offsets[g], offsets[g + 1]):
            group_of_pos[p] = g
    counts, hist, gmax = _lossless_tables(nonzero, perm, tile_cols, offsets, max_size)
    energy = 0.0
    for t in range(n_tiles):
        for g in range(n_groups):
            energy += _group_energy(hist, gmax, t, g, C)
    rows = gmax.sum()
    initial = rows
    best_rows = rows
    best_energy = energy
    best_perm = perm.copy()
    best_cols = tile_cols.copy()
    at_best = True
    changed_c = np.empty(C, dtype=np.int64)
    old_n = np.empty(C, dtype=np.int64)
    new_col1 = np.empty(n_groups, dtype=np.int64)
    new_col2 = np.empty(n_groups, dtype=np.int64)
    old_col1 = np.empty(n_groups, dtype=np.int64)
    old_col2 = np.empty(n_groups, dtype=np.int64)
    old_max1 = np.empty(n_groups, dtype=np.int64)
    old_max2 = np.empty(n_groups, dtype=np.int64)
    can_swap_rows = n_groups > 1
    can_swap_cols = n_tiles > 1
    if not (can_swap_rows or can_swap_cols) or iterations <= 0 or rows <= lower_bound_rows:
        return initial, best_rows, 0, 0
    t0 = t0_scale * 1.0  # deltas are in rows: one row is the natural scale
    log_ratio = math.log(t_ratio)
    accepted = 0
    ran = 0
    last_best = 0  # moves run when the best was last improved
    for it in range(iterations):
        if patience > 0 and it - last_best >= patience:
            break
        ran = it + 1
        temperature = t0 * math.exp(log_ratio * it / iterations)
        if can_swap_cols and (not can_swap_rows or np.random.random() < col_move_prob):
            t1 = np.random.randint(n_tiles)
            t2 = np.random.randint(n_tiles - 1)
            t2 = t2 + 1 if t2 >= t1 else t2
            c1 = np.random.randint(C)
            c2 = np.random.randint(C)
            j1 = tile_cols[t1, c1]
            j2 = tile_cols[t2, c2]
            if j1 < 0 and j2 < 0:
                continue
            before = 0.0
            for g in range(n_groups):
                before += _group_energy(hist, gmax, t1, g, C) + _group_energy(hist, gmax, t2, g, C)
                n1 = 0
                n2 = 0
                for p in range(offsets[g], offsets[g + 1]):
                    if j2 >= 0 and nonzero[j2, perm[t1, p]]:
                        n1 += 1
                    if j1 >= 0 and nonzero[j1, perm[t2, p]]:
                        n2 += 1
                new_col1[g] = n1
                new_col2[g] = n2
            after = 0.0
            rows_delta = 0
            for g in range(n_groups):
                old_col1[g] = counts[t1, g, c1]
                old_col2[g] = counts[t2, g, c2]
                old_max1[g] = gmax[t1, g]
                old_max2[g] = gmax[t2, g]
                _set_count(counts, hist, gmax, t1, g, c1, new_col1[g])
                _set_count(counts, hist, gmax, t2, g, c2, new_col2[g])
                after += _group_energy(hist, gmax, t1, g, C) + _group_energy(hist, gmax, t2, g, C)
                rows_delta += gmax[t1, g] + gmax[t2, g] - old_max1[g] - old_max2[g]
            delta = after - before
            if delta <= 0.0 or np.random.random() < math.exp(-delta / temperature):
                if at_best and (rows_delta > 0 or (rows_delta == 0 and delta > 1e-9)):
                    best_perm[:, :] = perm
                    best_cols[:, :] = tile_cols
                    at_best = False
                tile_cols[t1, c1] = j2
                tile_cols[t2, c2] = j1
                energy += delta
                rows += rows_delta
                accepted += 1
            else:
                for g in range(n_groups):
                    _set_count(counts, hist, gmax, t1, g, c1, old_col1[g])
                    _set_count(counts, hist, gmax, t2, g, c2, old_col2[g])
                continue
        else:
            t = np.random.randint(n_tiles)
            i1, i2 = _pick_row_swap(K, group_of_pos)
            g1 = group_of_pos[i1]
            g2 = group_of_pos[i2]
            r1 = perm[t, i1]
            r2 = perm[t, i2]
            before = _group_energy(hist, gmax, t, g1, C) + _group_energy(hist, gmax, t, g2, C)
            m1 = gmax[t, g1]
            m2 = gmax[t, g2]
            n_changed = 0
            for c in range(C):
                j = tile_cols[t, c]
                if j < 0 or nonzero[j, r1] == nonzero[j, r2]:
                    continue
                step = 1 if nonzero[j, r2] else -1
                changed_c[n_changed] = c
                old_n[n_changed] = step
                n_changed += 1
                _set_count(counts, hist, gmax, t, g1, c, counts[t, g1, c] + step)
                _set_count(counts, hist, gmax, t, g2, c, counts[t, g2, c] - step)
            if n_changed == 0:
                continue
            after = _group_energy(hist, gmax, t, g1, C) + _group_energy(hist, gmax, t, g2, C)
            delta = after - before
            rows_delta = gmax[t, g1] + gmax[t, g2] - m1 - m2
            if delta <= 0.0 or np.random.random() < math.exp(-delta / temperature):
                if at_best and (rows_delta > 0 or (rows_delta == 0 and delta > 1e-9)):
                    best_perm[:, :] = perm
                    best_cols[:, :] = tile_cols
                    at_best = False
                perm[t, i1] = r2
                perm[t, i2] = r1
                energy += delta
                rows += rows_delta
                accepted += 1
            else:
                for n in range(n_changed):
                    c = changed_c[n]
                    _set_count(counts, hist, gmax, t, g1, c, counts[t, g1, c] - old_n[n])
                    _set_count(counts, hist, gmax, t, g2, c, counts[t, g2, c] + old_n[n])
                continue
        if rows < best_rows or (rows == best_rows and energy < best_energy - 1e-9):
            best_rows = rows
            best_energy = energy
            at_best = True
            last_best = ran
            if best_rows <= lower_bound_rows:
                break
    if not at_best:
        perm[:, :] = best_perm
        tile_cols[:, :] = best_cols
    return initial, best_rows, ran, accepted


# ------------------------------------------------------------------------------------------ greedy
@nb.njit(cache=True)
def greedy_rows(cost, tile_cols, offsets, k):
    """Greedy start, per tile: rows by descending nnz, each into the open group where it adds the least.

    "Least" is lexicographic: first the cost it would push over the height k (k <= 0: the rise of the
    group's tallest column), then its overlap with the group's nonzeros, then the group's fill.
    Each row's nonzero columns are listed once per tile (read column by column, contiguous in `cost`),
    and the counts are stored `(C, groups)` so that one row's keys for all groups are a few sweeps of
    contiguous memory; the keys are summed in the same order as a row-by-row scan, so ties break alike.
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
    row_cols = np.empty(K * C, dtype=np.int64)  # the nonzero columns of row r: row_start[r]:row_start[r+1]
    row_cost = np.empty(K * C, dtype=np.float64)
    counts = np.empty((C, n_groups), dtype=np.int64)
    heads = np.empty(n_groups, dtype=np.int64)
    tallest = np.empty(n_groups, dtype=np.int64)
    key0 = np.empty(n_groups, dtype=np.float64)
    key1 = np.empty(n_groups, dtype=np.int64)
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
        for c in range(C):  # ascending c, so each row's list is in column order
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
        for r in order:
            lo = row_start[r]
            hi = row_start[r + 1]
            key0[:] = 0.0
            key1[:] = 0
            for n in range(lo, hi):
                c = row_cols[n]
                v = row_cost[n]
                if k > 0:
                    for g in range(n_groups):
                        count = counts[c, g]
                        key1[g] += count
                        if count >= k:
                            key0[g] += v
                else:
                    for g in range(n_groups):
                        count = counts[c, g]
                        key1[g] += count
                        if count + 1 > tallest[g]:
                            key0[g] = 1.0
            best_g = -1
            for g in range(n_groups):
                if heads[g] >= sizes[g]:
                    continue
                if (
                    best_g < 0
                    or key0[g] < key0[best_g]
                    or (key0[g] == key0[best_g] and key1[g] < key1[best_g])
                    or (key0[g] == key0[best_g] and key1[g] == key1[best_g] and heads[g] < heads[best_g])
                ):
                    best_g = g
            perm[t, offsets[best_g] + heads[best_g]] = r
            heads[best_g] += 1
            for n in range(lo, hi):
                c = row_cols[n]
                counts[c, best_g] += 1
                if counts[c, best_g] > tallest[best_g]:
                    tallest[best_g] = counts[c, best_g]
    return perm
