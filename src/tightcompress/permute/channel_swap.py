"""N:M with one input-channel permutation: a best-swap local search with escapes (compiled with numba).

The problem: one permutation of the K rows (input channels) of a `K x N` cost matrix (|w|, w^2 or a
calibrated saliency), cut into groups of M consecutive positions; every (group, column) keeps its `k`
largest costs. Maximise what is kept (equivalently, minimise what is dropped). Only which rows share a
group matters, not their order inside it.

The search, in the spirit of NVIDIA apex's channel swaps (`permutation_search_kernels/channel_swap.py`:
a table of the improvement of every swap, the best taken first, only the touched stripes re-scored, a
random "escape" swap once converged), but exact and incremental on the CPU:

- **Delta of a swap in O(N).** Per (group g, column c) keep `a[g, c]`, the k-th largest cost, and
  `b[g, c]`, the (k+1)-th (both 0 when the group has at most k rows: everything is kept). Taking the row
  at position p out of its group changes the kept sum by `b - v` when `v >= a` (the next one moves up),
  else by 0, and leaves `thr = b` or `a` as the smallest kept value; putting a value u in adds
  `max(0, u - thr)`. Ties are harmless (a tied value that was not kept gives `b = a = v`, so 0). So a
  swap of positions p, q in different groups gains
  `R[p] + R[q] + sum_c max(0, V[q, c] - thr[p, c]) + max(0, V[p, c] - thr[q, c])`,
  with `R[p] = sum_c (b - v if v >= a else 0)` kept per position.
- **Best swap per pair of groups, re-scored only when a group changes.** A table holds, for every pair
  of groups, its best swap and gain; a swap changes two groups, so only the pairs touching them are
  re-scored (apex's "used stripes"). A pair is skipped without scanning its `M^2` swaps when a bound
  says no swap in it can gain: `thr >= b` gives `gain(p, q) <= (R[p] + P[p, h]) + (R[q] + P[q, g])`
  with `P[p, h] = sum_c max(0, V[p, c] - b[h, c])`, and the per-pair maxima of both brackets are kept.
- **Steepest descent:** the best swap of the whole table is applied while it gains more than a
  rounding tolerance, so every applied swap raises the kept sum and the descent ends at a local optimum.
- **Escapes (iterated local search):** at a local optimum, a few random swaps between random groups
  ("kick"), then descent again; if the new optimum keeps more, it is the new best, else the search goes
  back to the best grouping (by swaps). It stops after `patience` escapes in a row found nothing better,
  or when the move budget is spent. The RNG is numba's, seeded: results are deterministic for a seed.

The search starts from a given permutation (the caller passes the better of the natural order and the
greedy start of `kernels.greedy_rows`), and returns the best grouping seen, so it never keeps less than
its start.

The run is a `*_start` / `*_chunk` / `*_finish` sequence like the annealer's (`permute/kernels.py`): a
chunk runs at most a given number of swaps and returns to Python, where Ctrl-C is acted on; any chunking
gives the same result. All chunks of a run on one thread; every kernel releases the GIL.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

# Scalars of one run: its budget and stop rules (set by `new_swap_run`) and the progress so far.
SWAP_RUN = np.dtype(
    [
        ("k", np.int64),  # kept per (group, column)
        ("max_moves", np.int64),  # swaps applied at most (descent, kicks and returns to the best)
        ("budget", np.int64),  # candidate swaps scored at most (each costs O(N)); checked per pair
        ("scored", np.int64),
        ("patience", np.int64),  # stop after this many escapes in a row found nothing better
        ("kick", np.int64),  # random swaps per escape
        ("tol", np.float64),  # a swap must gain more than this (rounding guard)
        ("moves", np.int64),  # swaps applied
        ("improving", np.int64),  # of which improving descent swaps
        ("escapes", np.int64),
        ("failed", np.int64),  # escapes in a row without a better optimum
        ("current", np.float64),  # tracked kept sum of the current grouping
        ("best", np.float64),  # kept sum of the best grouping (`best_group`)
        ("initial", np.float64),  # kept sum of the start
        ("total", np.float64),  # summed cost of the matrix
        ("sweep_g", np.int64),  # the next pair of groups the sweep visits: g and g + d (mod G)
        ("sweep_d", np.int64),
        ("clean", np.int64),  # pairs visited in a row without a swap
        ("random_phase", np.bool_),  # still in the first phase (random swaps)
        ("misses", np.int64),  # random swaps in a row that did not gain
        ("have_best", np.bool_),
        ("done", np.bool_),
    ]
)

SwapState = namedtuple(
    "SwapState",
    "perm pos V gop offsets a b thr R P amax changed checked clock best_group buf gains mask",
)


def new_swap_run(k: int, budget: int, patience: int, kick: int, max_moves: int = 2**62) -> np.ndarray:
    """A one-row `SWAP_RUN` record with the budget set; `swap_start` fills the rest."""
    run = np.zeros(1, dtype=SWAP_RUN)
    run["k"] = k
    run["budget"] = budget
    run["max_moves"] = max_moves
    run["patience"] = patience
    run["kick"] = kick
    return run


# ------------------------------------------------------------------------------------- small pieces
@nb.njit(cache=True, nogil=True)
def _group_stats(s, g, k):
    """`a[g]`, `b[g]`: per column, the k-th and (k+1)-th largest cost of group g (0, 0 if it has <= k
    rows). Returns the group's kept sum."""
    lo = s.offsets[g]
    hi = s.offsets[g + 1]
    m = hi - lo
    N = s.V.shape[1]
    buf = s.buf
    kept = 0.0
    for c in range(N):
        if m <= k:
            s.a[g, c] = 0.0
            s.b[g, c] = 0.0
            for p in range(lo, hi):
                kept += s.V[p, c]
            continue
        part = buf[:m]
        for i in range(m):  # insertion sort, ascending: cheaper than a library sort call on <= 64 values
            v = s.V[lo + i, c]
            j = i
            while j > 0 and part[j - 1] > v:
                part[j] = part[j - 1]
                j -= 1
            part[j] = v
        s.a[g, c] = part[m - k]
        s.b[g, c] = part[m - k - 1]
        for i in range(m - k, m):
            kept += part[i]
    return kept


@nb.njit(cache=True, nogil=True)
def _row_terms(s, p):
    """`thr[p]` (the smallest kept value of p's group once p is out, less `b`, per column: 0 where p is
    kept, `a - b` elsewhere) and `R[p]` (the kept sum lost by taking p out)."""
    g = s.gop[p]
    r = 0.0
    for c in range(s.V.shape[1]):
        v = s.V[p, c]
        if v >= s.a[g, c]:
            s.thr[p, c] = 0.0
            r += s.b[g, c] - v
        else:
            s.thr[p, c] = s.a[g, c] - s.b[g, c]
    s.R[p] = r


@nb.njit(cache=True, inline="always")
def _entry_gain(V, b, p, h):
    """`P[p, h]`: what row p could at most add to group h, `sum_c max(0, V[p, c] - b[h, c])`."""
    Vp = V[p]
    bh = b[h]
    total = 0.0
    for c in range(Vp.shape[0]):
        total += max(Vp[c] - bh[c], 0.0)
    return total


@nb.njit(cache=True, nogil=True)
def _amax(s, g, h):
    """`max_{p in g} R[p] + P[p, h]`: a bound on what moving any row of g into h gains (-inf if h == g)."""
    if g == h:
        return -np.inf
    best = -np.inf
    for p in range(s.offsets[g], s.offsets[g + 1]):
        v = s.R[p] + s.P[p, h]
        if v > best:
            best = v
    return best


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
def _swap_gain(s, p, q):
    """Exact change of the kept sum if positions p and q (different groups) swap rows."""
    total = s.R[p] + s.R[q]
    Vp = s.V[p]
    Vq = s.V[q]
    tp = s.thr[p]
    tq = s.thr[q]
    bp = s.b[s.gop[p]]
    bq = s.b[s.gop[q]]
    for c in range(Vp.shape[0]):
        total += max(Vq[c] - bp[c] - tp[c], 0.0) + max(Vp[c] - bq[c] - tq[c], 0.0)
    return total


# Columns scored at a time when a pair of groups is scored: the rows of both groups over this many
# columns stay in the L2 cache while every swap of the pair is scored (a 120 x 6625 classifier ran 2x
# slower scoring swap by swap over all columns).
COLUMN_BLOCK = 256


# Reassociation lets the column sums vectorise (SIMD); the sums stay deterministic for a given build.
@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
def _pair_best(s, g, h, tol):
    """The best swap between groups g and h gaining more than `tol`: (gain, p, q, swaps scored), p = q =
    -1 if none. Swaps whose bound cannot gain are not scored; the others are scored over column blocks."""
    lo_g = s.offsets[g]
    lo_h = s.offsets[h]
    mg = s.offsets[g + 1] - lo_g
    mh = s.offsets[h + 1] - lo_h
    bound_h = s.amax[h, g]
    if s.amax[g, h] + bound_h <= tol:
        return tol, -1, -1, 0
    gains = s.gains
    mask = s.mask
    scored = 0
    for i in range(mg):
        bp = s.R[lo_g + i] + s.P[lo_g + i, h]
        for j in range(mh):
            ok = bp + s.R[lo_h + j] + s.P[lo_h + j, g] > tol
            mask[i, j] = ok
            gains[i, j] = s.R[lo_g + i] + s.R[lo_h + j]
            scored += ok
    if scored == 0:
        return tol, -1, -1, 0
    N = s.V.shape[1]
    for c0 in range(0, N, COLUMN_BLOCK):
        c1 = min(c0 + COLUMN_BLOCK, N)
        # slices from 0, not `range(c0, c1)`: numba vectorises only the former (8x measured)
        bg = s.b[g, c0:c1]
        bh = s.b[h, c0:c1]
        for i in range(mg):
            Vp = s.V[lo_g + i, c0:c1]
            Dp = s.thr[lo_g + i, c0:c1]
            for j in range(mh):
                if not mask[i, j]:
                    continue
                Vq = s.V[lo_h + j, c0:c1]
                Dq = s.thr[lo_h + j, c0:c1]
                acc = 0.0
                for c in range(c1 - c0):
                    acc += max(Vq[c] - bg[c] - Dp[c], 0.0) + max(Vp[c] - bh[c] - Dq[c], 0.0)
                gains[i, j] += acc
    best = tol
    best_p = -1
    best_q = -1
    for i in range(mg):
        for j in range(mh):
            if mask[i, j] and gains[i, j] > best:
                best = gains[i, j]
                best_p = lo_g + i
                best_q = lo_h + j
    return best, best_p, best_q, scored


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
def _apply_swap(s, p, q, k, bounds=True):
    """Swap the rows at positions p and q (different groups), update the tables, and stamp both groups
    as changed (their pairs are scored again when the sweep reaches them)."""
    g1 = s.gop[p]
    g2 = s.gop[q]
    rp = s.perm[p]
    rq = s.perm[q]
    s.perm[p] = rq
    s.perm[q] = rp
    s.pos[rq] = p
    s.pos[rp] = q
    N = s.V.shape[1]
    for c in range(N):
        v = s.V[p, c]
        s.V[p, c] = s.V[q, c]
        s.V[q, c] = v
    _group_stats(s, g1, k)
    _group_stats(s, g2, k)
    for g in (g1, g2):
        for i in range(s.offsets[g], s.offsets[g + 1]):
            _row_terms(s, i)
    s.clock[0] += 1
    s.changed[g1] = s.clock[0]
    s.changed[g2] = s.clock[0]
    if not bounds:  # the random phase scores no pairs: the bounds are rebuilt when the sweeps start
        return
    K = s.V.shape[0]
    G = s.offsets.shape[0] - 1
    b1 = s.b[g1]
    b2 = s.b[g2]
    for i in range(K):  # b of g1 and g2 changed: every row's bound into them, in one pass over V
        Vi = s.V[i]
        t1 = 0.0
        t2 = 0.0
        for c in range(N):
            t1 += max(Vi[c] - b1[c], 0.0)
            t2 += max(Vi[c] - b2[c], 0.0)
        s.P[i, g1] = t1
        s.P[i, g2] = t2
    for h in range(G):  # rows p and q changed: their bounds into every group
        s.P[p, h] = _entry_gain(s.V, s.b, p, h)
        s.P[q, h] = _entry_gain(s.V, s.b, q, h)
    for g in range(G):
        s.amax[g, g1] = _amax(s, g, g1)
        s.amax[g, g2] = _amax(s, g, g2)
        s.amax[g1, g] = _amax(s, g1, g)
        s.amax[g2, g] = _amax(s, g2, g)


@nb.njit(cache=True, nogil=True)
def _kept_sum(s, k):
    """Exact kept sum of the current grouping (recomputes `a`, `b`; the other tables stay valid)."""
    total = 0.0
    for g in range(s.offsets.shape[0] - 1):
        total += _group_stats(s, g, k)
    return total


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
def _build_bounds(s):
    """`P` and `amax` for every row and group (`a`, `b`, `thr`, `R` must be current)."""
    K = s.V.shape[0]
    G = s.offsets.shape[0] - 1
    for p in range(K):
        for h in range(G):
            s.P[p, h] = _entry_gain(s.V, s.b, p, h)
    for g in range(G):
        for h in range(G):
            s.amax[g, h] = _amax(s, g, h)


@nb.njit(cache=True, nogil=True)
def _return_to_best(s, run):
    """Swap rows until every row is in its group of the best grouping seen (at most one swap per
    misplaced row); the swaps count as moves."""
    r = run[0]
    K = s.V.shape[0]
    for p in range(K):
        while True:
            target = s.best_group[s.perm[p]]
            if target == s.gop[p]:
                break
            # a row in the target group that does not belong there; prefer one that belongs at p
            here = s.gop[p]
            pick = -1
            for q in range(s.offsets[target], s.offsets[target + 1]):
                home = s.best_group[s.perm[q]]
                if home != target:
                    if home == here:
                        pick = q
                        break
                    if pick < 0:
                        pick = q
            _apply_swap(s, p, pick, r.k)
            r.moves += 1
    r.current = r.best


@nb.njit(cache=True, nogil=True)
def order_dropped(cost, order, offsets, k):
    """Summed cost N:M drops with the rows of `cost` (K x N, >= 0) in `order`: per group and column, all
    but the k largest (summed directly, not as total - kept, so small drops stay exact)."""
    N = cost.shape[1]
    max_size = 1
    for g in range(offsets.shape[0] - 1):
        max_size = max(max_size, offsets[g + 1] - offsets[g])
    part = np.empty(max_size, dtype=np.float64)
    dropped = 0.0
    for g in range(offsets.shape[0] - 1):
        lo = offsets[g]
        m = offsets[g + 1] - lo
        if m <= k:
            continue
        for c in range(N):
            for i in range(m):
                v = cost[order[lo + i], c]
                j = i
                while j > 0 and part[j - 1] > v:
                    part[j] = part[j - 1]
                    j -= 1
                part[j] = v
            for i in range(m - k):
                dropped += part[i]
    return dropped


# ------------------------------------------------------------------------------------------ the run
@nb.njit(cache=True, nogil=True)
def swap_state(cost, perm, offsets):
    """The search state for the `K x N` cost (original row order) and a starting permutation (used in
    place: it holds the result after `swap_finish`)."""
    K, N = cost.shape
    G = offsets.shape[0] - 1
    max_size = 1
    for g in range(G):
        max_size = max(max_size, offsets[g + 1] - offsets[g])
    V = np.empty((K, N), dtype=np.float64)
    pos = np.empty(K, dtype=np.int64)
    gop = np.empty(K, dtype=np.int64)
    for g in range(G):
        for p in range(offsets[g], offsets[g + 1]):
            gop[p] = g
    for p in range(K):
        pos[perm[p]] = p
        for c in range(N):
            V[p, c] = cost[perm[p], c]
    return SwapState(
        perm,
        pos,
        V,
        gop,
        offsets,
        np.zeros((G, N), dtype=np.float64),
        np.zeros((G, N), dtype=np.float64),
        np.zeros((K, N), dtype=np.float64),
        np.zeros(K, dtype=np.float64),
        np.zeros((K, G), dtype=np.float64),
        np.full((G, G), -np.inf, dtype=np.float64),
        np.zeros(G, dtype=np.int64),
        np.full((G, G), -1, dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.empty(K, dtype=np.int64),
        np.empty(max_size, dtype=np.float64),
        np.empty((max_size, max_size), dtype=np.float64),
        np.empty((max_size, max_size), dtype=np.bool_),
    )


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
def swap_start(s, run, seed):
    """Seed the RNG and build every table for the start; the run is done at once when there is nothing
    to search (one group, or no move allowed)."""
    np.random.seed(seed)
    r = run[0]
    K, N = s.V.shape
    G = s.offsets.shape[0] - 1
    total = 0.0
    for p in range(K):
        for c in range(N):
            total += s.V[p, c]
    r.total = total
    r.tol = 1e-12 * (total + 1e-300)
    kept = _kept_sum(s, r.k)
    r.current = kept
    r.initial = kept
    r.best = kept
    for p in range(K):
        s.best_group[s.perm[p]] = s.gop[p]
    r.have_best = True
    r.sweep_g = 0
    r.sweep_d = 1
    r.random_phase = True
    if G < 2 or r.max_moves <= 0 or r.budget <= 0 or kept >= total - r.tol:
        r.done = True
        return
    for p in range(K):
        _row_terms(s, p)


@nb.njit(cache=True, nogil=True)
def _escape(s, run):
    """At a local optimum: keep it if it is the best so far, else go back to the best grouping; then
    kick (random swaps between groups). Marks the run done when escapes are spent."""
    r = run[0]
    K = s.V.shape[0]
    if r.current > r.best + r.tol:
        r.best = r.current
        for i in range(K):
            s.best_group[s.perm[i]] = s.gop[i]
        r.failed = 0
    elif r.escapes > 0:
        r.failed += 1
        _return_to_best(s, run)
    if r.failed >= r.patience or r.moves >= r.max_moves:
        r.done = True
        return
    for _ in range(r.kick):
        p = np.random.randint(K)
        q = np.random.randint(K)
        for _try in range(64):
            if s.gop[p] != s.gop[q]:
                break
            q = np.random.randint(K)
        if s.gop[p] == s.gop[q]:
            continue
        gain = _swap_gain(s, p, q)
        _apply_swap(s, p, q, r.k)
        r.current += gain
        r.moves += 1
    r.escapes += 1


@nb.njit(cache=True, nogil=True)
def _more_swaps(s, run, g, h, p, q):
    """After the pair's best swap (p, q): its next-best swaps as the last scoring ranked them (`gains`,
    `mask`), on rows not moved yet, each scored again exactly (the groups changed) and applied if it
    still gains. One full scoring of a pair thus yields several swaps, not one."""
    r = run[0]
    lo_g = s.offsets[g]
    lo_h = s.offsets[h]
    mg = s.offsets[g + 1] - lo_g
    mh = s.offsets[h + 1] - lo_h
    n = 0
    for i in range(mg):
        for j in range(mh):
            if s.mask[i, j] and s.gains[i, j] > r.tol:
                n += 1
    if n <= 1:
        return
    keys = np.empty(n, dtype=np.float64)
    index = np.empty(n, dtype=np.int64)
    n = 0
    for i in range(mg):
        for j in range(mh):
            if s.mask[i, j] and s.gains[i, j] > r.tol:
                keys[n] = -s.gains[i, j]
                index[n] = i * mh + j
                n += 1
    order = np.argsort(keys, kind="mergesort")
    used_g = np.zeros(mg, dtype=np.bool_)
    used_h = np.zeros(mh, dtype=np.bool_)
    used_g[p - lo_g] = True
    used_h[q - lo_h] = True
    for t in range(n):
        i = index[order[t]] // mh
        j = index[order[t]] % mh
        if used_g[i] or used_h[j] or r.scored >= r.budget or r.moves >= r.max_moves:
            continue
        gain = _swap_gain(s, lo_g + i, lo_h + j)
        r.scored += 1
        if gain > r.tol:
            _apply_swap(s, lo_g + i, lo_h + j, r.k)
            r.current += gain
            r.moves += 1
            r.improving += 1
            used_g[i] = True
            used_h[j] = True


@nb.njit(cache=True, nogil=True)
def _next_pair(run, G):
    """Advance the sweep: pairs (g, g + d mod G) for every g, then the next distance d (1 .. G // 2; at
    d = G / 2 only g < d, the others are the same pairs). Every pair once per sweep, and every group in
    the first G pairs, so a small budget still reaches all of them (in index order it would stay on the
    first group's pairs)."""
    r = run[0]
    r.sweep_g += 1
    limit = G // 2 if 2 * r.sweep_d == G else G
    if r.sweep_g >= limit:
        r.sweep_g = 0
        r.sweep_d += 1
        if r.sweep_d > G // 2:
            r.sweep_d = 1


@nb.njit(cache=True, nogil=True)
def swap_chunk(s, run, work):
    """Visit at most `work` more pairs of groups (sweeping them in order, scoring a pair only when one of
    its groups changed since it was last scored, applying its best swap while it gains); True once the
    run is over. A local optimum is a full sweep that applies nothing."""
    r = run[0]
    if r.done:
        return True
    k = r.k
    G = s.offsets.shape[0] - 1
    n_pairs = G * (G - 1) // 2
    K = s.V.shape[0]
    visited = 0
    while r.random_phase and visited < work and not r.done:
        # the cheap first phase: random swaps, each scored exactly, applied when they gain
        visited += 1
        if r.scored >= r.budget or r.moves >= r.max_moves:
            r.done = True
            break
        p = np.random.randint(K)
        q = np.random.randint(K)
        if s.gop[p] == s.gop[q]:
            continue
        gain = _swap_gain(s, p, q)
        r.scored += 1
        if gain > r.tol:
            _apply_swap(s, p, q, k, False)
            r.current += gain
            r.moves += 1
            r.improving += 1
            r.misses = 0
        else:
            r.misses += 1
        if r.misses >= K or r.scored >= r.budget:  # random swaps stopped paying: sweep pairs of groups
            r.random_phase = False
            _build_bounds(s)
    while visited < work and not r.done:
        g = r.sweep_g
        h = (g + r.sweep_d) % G
        if h < g:
            g, h = h, g
        visited += 1
        stamp = s.checked[g, h]
        if s.changed[g] > stamp or s.changed[h] > stamp or stamp < 0:
            while r.moves < r.max_moves:
                size = (s.offsets[g + 1] - s.offsets[g]) * (s.offsets[h + 1] - s.offsets[h])
                if r.scored + size > r.budget:  # the pair might not fit in the budget: stop
                    r.done = True
                    break
                gain, p, q, scored = _pair_best(s, g, h, r.tol)
                r.scored += scored
                s.checked[g, h] = s.clock[0]
                if p < 0:
                    break
                _apply_swap(s, p, q, k)
                r.current += gain
                r.moves += 1
                r.improving += 1
                r.clean = 0
                _more_swaps(s, run, g, h, p, q)
                s.checked[g, h] = -1  # score it again: its groups just changed
            if r.done or r.moves >= r.max_moves:
                r.done = True
                break
        r.clean += 1
        _next_pair(run, G)
        if r.clean >= n_pairs:  # a full sweep without a swap: a local optimum
            r.clean = 0
            _escape(s, run)
    return r.done


@nb.njit(cache=True, nogil=True)
def swap_finish(s, run):
    """Leave `perm` at the best grouping seen and return its tracked kept sum (`order_dropped` recounts
    the drop exactly)."""
    r = run[0]
    if r.current > r.best + r.tol:
        r.best = r.current
        for i in range(s.V.shape[0]):
            s.best_group[s.perm[i]] = s.gop[i]
    elif r.current < r.best - r.tol:  # write the best grouping into perm (the tables are not needed now)
        fill = s.offsets[:-1].copy()
        for row in range(s.V.shape[0]):
            g = s.best_group[row]
            s.perm[fill[g]] = row
            fill[g] += 1
    return r.best
