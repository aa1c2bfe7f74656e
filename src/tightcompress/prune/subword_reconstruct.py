"""Calibrated one-shot pruning of one layer at subword granularity: saliency, then a solve under the format.

The float methods keep float weights; a subword layer holds int8 weights `q * scale` whose kept 4-bit
subwords the packer places. Per `K x N` layer (`y = x @ W`), with `prune.reconstruct.GramStats`:

- Quantization: symmetric per output column, `scale_j = max|W[:, j]| / 119` (`quantize_for_subwords`, the
  subword path's rule: every value in `[-119, 119]` splits exactly into two subwords). The rounding error is
  part of the layer's output error (every error here is measured against the float `W`).
- What is kept: `subword_saliency`: the output error removing one subword alone causes, in the Wanda form
  used by every other method (`|delta w_ij| * ||x_i||`): `delta` is the step the weight takes to the value
  the remaining subword holds (`prune.subword.subword_importance`: `|b|` for the low subword, `|q -
  clamp(q, -8, 7)|` for the high one), times the column scale. A `2K x N` matrix laid out like the subword
  matrix (row `2k` high, `2k + 1` low), which the tight search packs in place of the subwords.
- Reconstruction: once the packer has fixed which subwords are kept, weight `ij` can only take the values
  its kept subwords represent (`allowed_round`): both kept, any int8 in `[-128, 119]`; the high one alone,
  `16*a` (a multiple of 16 in `[-128, 112]`); the low one alone, `[-8, 7]`; neither, 0. Three solves compete
  on held-out calibration rows (as `prune.reconstruct.validated_reconstruct` does for whole weights):
  * `none`: the quantized weights as the kept subwords leave them (`kept_value`), no solve;
  * `float-round`: the weights with a kept subword solved in float (`prune.reconstruct.reconstruct`, the
    word path's dampened least squares for `min ||X_p W' - X_d W||^2`), each then rounded to its set;
  * `column-sweep`: the GPTQ / OBS sequential solve (Frantar et al. 2022, GPTQ; SparseGPT 2023) per output
    column over that column's kept weights: from their exact dampened least-squares solution, the kept
    weights are taken one at a time (largest input energy first, GPTQ's "act order"), each rounded to its
    allowed values and the rounding error fed forward to the column's weights not yet taken through the
    Cholesky factor of the inverse of the kept Gram block. The solve that knows the constraint: the later
    weights absorb the earlier ones' rounding. Layers too large for per-column blocks (`EXACT_FLOPS`, as
    the word path's exact solve) use `sweep`, the same over the whole layer from the dense solution
    `W0 = H^-1 B`, `B = X_p^T X_d W` (SparseGPT's form: the pruned weights are swept too, which is less
    accurate).
  Each at the dampings `DAMPING_FACTORS` (times the configured one); the least held-out error wins and is
  solved again on all rows. Measured on a correlated synthetic layer (96 x 64, tight G=32 h=8 on the
  subword saliency, `tests/test_oneshot_subword.py`): output error 0.29 no solve, 0.10 float-round, 0.16
  whole-layer sweep, 0.06 column sweep.
"""

from __future__ import annotations

import numpy as np

from tightcompress.prune.reconstruct import (
    DAMPING,
    DAMPING_FACTORS,
    EXACT_FLOPS,
    HOLDOUT_MIN_ROWS,
    GramStats,
    Stats,
    dense_solution_and_factor,
    reconstruct,
    relative_error,
)
from tightcompress.prune.subword import (
    NIBBLE_MAX,
    NIBBLE_MIN,
    SUBWORD_QMAX,
    SubwordMasks,
    kept_value,
    subword_importance,
)

INT8_LOW = -128  # 16*(-8) + 0: the lowest value two subwords write in int8
HIGH_LOW, HIGH_HIGH = -8, 7  # the high subword alone: 16*a, a in [-8, 7]
_BLOCK = 128
_CHUNK_BYTES = 64 * 2**20
SOLVERS = ("none", "float-round", "column-sweep", "sweep")


def subword_saliency(q: np.ndarray, scales: np.ndarray, stats: GramStats | None) -> np.ndarray:
    """`2K x N` float32: the output error of removing each subword alone, `|delta w| * scale * ||x_i||`
    (rows interleaved high, low as in `subword_matrix`); without `stats`, `|delta w| * scale`. Zero exactly
    where the subword is zero. Input norms are divided by the largest (a dead input ranks by `|delta w|`,
    far below every live one), as `prune.reconstruct.saliency` does."""
    high, low = subword_importance(q, scales)
    K, N = high.shape
    out = np.empty((2 * K, N), dtype=np.float64)
    out[0::2], out[1::2] = high, low
    if stats is not None:
        norms = stats.input_norms
        top = float(norms.max()) if norms.size else 0.0
        if top > 0.0:
            out *= np.repeat(np.maximum(norms / top, 1e-6), 2)[:, None]
    return out.astype(np.float32)


def masks_of(placed: np.ndarray) -> SubwordMasks:
    """The kept-subword masks of a `2K x N` bool matrix of placed subwords."""
    placed = np.asarray(placed, dtype=bool)
    return SubwordMasks(placed[0::2].copy(), placed[1::2].copy())


def allowed_round(steps: np.ndarray, keep_high: np.ndarray, keep_low: np.ndarray) -> np.ndarray:
    """The nearest value to `steps` (real, in quantization steps) that the kept subwords can hold, int16:
    both kept `[-128, 119]`, high only `16*a` with `a` in `[-8, 7]`, low only `[-8, 7]`, neither 0."""
    v = np.rint(np.asarray(steps, dtype=np.float64))
    both = np.clip(v, INT8_LOW, SUBWORD_QMAX)
    high = 16.0 * np.clip(np.rint(np.asarray(steps, dtype=np.float64) / 16.0), HIGH_LOW, HIGH_HIGH)
    low = np.clip(v, NIBBLE_MIN, NIBBLE_MAX)
    out = np.where(keep_high, np.where(keep_low, both, high), np.where(keep_low, low, 0.0))
    return out.astype(np.int16)


def representable(q: np.ndarray, masks: SubwordMasks) -> bool:
    """Whether every value of int `q` is one its kept subwords can hold (`allowed_round(q) == q`)."""
    q = np.asarray(q)
    return bool(np.array_equal(allowed_round(q, masks.high, masks.low), q.astype(np.int16)))


def unreconstructed(q: np.ndarray, masks: SubwordMasks) -> np.ndarray:
    """int16 `kept_value(q)`: the quantized weights as the kept subwords leave them (no solve)."""
    return kept_value(np.asarray(q).astype(np.int16), masks.high, masks.low).astype(np.int16)


def dequantize(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 `q * scale` per column, computed as `prune.subword_pack.weight_matrix` does (float32 product),
    so the weights written back equal the packed layer's bit for bit."""
    return np.asarray(q).astype(np.float32) * np.asarray(scales, dtype=np.float32)[None, :]


def _dampened(stats: Stats, damping: float) -> np.ndarray | None:
    H = stats.gram_copy()
    scale = float(np.mean(np.diag(H))) if H.size else 0.0
    if not np.isfinite(scale) or scale <= 0.0:
        return None
    H[np.diag_indices(H.shape[0])] += damping * scale
    return H


def sweep_solve(
    weights: np.ndarray,
    masks: SubwordMasks,
    scales: np.ndarray,
    stats: Stats,
    damping: float = DAMPING,
    *,
    act_order: bool = True,
) -> np.ndarray:
    """int16 `q` (`K x N`, each value allowed by `masks`) from the GPTQ / OBS sweep of the module docstring:
    minimises `||X_p (q * scale) - X_d W||^2` greedily, input by input, the rounding error of each input's
    weights compensated by the inputs after it (largest `H_ii` first with `act_order`)."""
    stats.check_weights(weights)
    W = np.asarray(weights, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    H = _dampened(stats, damping)
    if H is None:
        return allowed_round(W / scales, masks.high, masks.low)
    K = W.shape[0]
    order = np.argsort(-stats.diagonal(), kind="stable") if act_order else np.arange(K)
    H = H[np.ix_(order, order)]  # a new C-order working copy (the dampened one is freed)
    B = np.asarray(stats.B, dtype=np.float64)[order]
    keep_high, keep_low = masks.high[order], masks.low[order]
    # the dense least-squares solution (rows in `order`) and U, upper: H^-1 = U^T U (in place over H)
    work, U = dense_solution_and_factor(H, B)
    q = np.zeros(W.shape, dtype=np.int16)
    for start in range(0, K, _BLOCK):
        end = min(start + _BLOCK, K)
        block = work[start:end].copy()
        errors = np.zeros_like(block)
        U_block = U[start:end, start:end]
        for i in range(end - start):
            row = start + i
            q_row = allowed_round(block[i] / scales, keep_high[row], keep_low[row])
            err = (block[i] - q_row * scales) / U_block[i, i]
            block[i:] -= np.outer(U_block[i, i:], err)
            q[row] = q_row
            errors[i] = err
        if end < K:
            work[end:] -= U[start:end, end:].T @ errors
    out = np.empty_like(q)
    out[order] = q
    return out


def column_sweep_solve(
    weights: np.ndarray, masks: SubwordMasks, scales: np.ndarray, stats: Stats, damping: float = DAMPING
) -> np.ndarray:
    """int16 `q`: the GPTQ sweep per output column over that column's kept weights only, from their exact
    dampened least-squares solution (`prune.reconstruct.reconstruct`'s exact solve): the pruned weights are
    solved exactly, not swept, and only the rounding error is fed forward, to the column's kept weights not
    yet taken (largest input energy first). Columns with equal kept counts are batched (NumPy, float64);
    the cost is that of the exact solve plus `sum(count^2)`."""
    return _column_solves(weights, masks, scales, stats, damping)[1]


def _column_solves(
    weights: np.ndarray, masks: SubwordMasks, scales: np.ndarray, stats: Stats, damping: float
) -> tuple[np.ndarray, np.ndarray]:
    """`(float-round q, column-sweep q)` from one factorization per column (both start from the exact
    solution of the column's kept weights: the first rounds it, the second sweeps it)."""
    stats.check_weights(weights)
    W = np.asarray(weights, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    H = _dampened(stats, damping)
    if H is None:
        plain = allowed_round(W / scales, masks.high, masks.low)
        return plain, plain.copy()
    B = np.asarray(stats.B, dtype=np.float64)
    keep = masks.high | masks.low
    counts = keep.sum(axis=0)
    energy = stats.diagonal()
    rounded = np.zeros(W.shape, dtype=np.int16)
    swept = np.zeros(W.shape, dtype=np.int16)
    for count in np.unique(counts):
        if count == 0:
            continue
        columns = np.flatnonzero(counts == count)
        chunk = max(1, int(_CHUNK_BYTES // (8 * count * count)))
        for start in range(0, len(columns), chunk):
            cols = columns[start : start + chunk]
            rows = np.nonzero(keep[:, cols].T)[1].reshape(len(cols), count)  # kept rows, ascending
            order = np.argsort(-energy[rows], axis=1, kind="stable")  # act order within each column
            rows = np.take_along_axis(rows, order, axis=1)
            # NumPy's stacked inverse and Cholesky (torch's batched cholesky_inverse took ~1 s per call on
            # small blocks on a loaded 2-core machine)
            A_inv = np.linalg.inv(H[rows[:, :, None], rows[:, None, :]])
            A_inv = (A_inv + np.swapaxes(A_inv, 1, 2)) / 2
            w = np.einsum("bij,bj->bi", A_inv, B[rows, cols[:, None]])
            U = np.swapaxes(np.linalg.cholesky(A_inv), 1, 2)  # upper: A^-1 = U^T U
            col_scales = scales[cols][:, None]
            high, low = masks.high[rows, cols[:, None]], masks.low[rows, cols[:, None]]
            rounded[rows, cols[:, None]] = allowed_round(w / col_scales, high, low)
            col_scales = col_scales[:, 0]
            for i in range(count):
                q_i = allowed_round(w[:, i] / col_scales, high[:, i], low[:, i])
                err = (w[:, i] - q_i * col_scales) / U[:, i, i]
                w[:, i:] -= U[:, i, i:] * err[:, None]
                swept[rows[:, i], cols] = q_i
    return rounded, swept


def float_round_solve(
    weights: np.ndarray, masks: SubwordMasks, scales: np.ndarray, stats: Stats, damping: float = DAMPING
) -> np.ndarray:
    """int16 `q`: the weights with at least one kept subword solved in float
    (`prune.reconstruct.reconstruct`), then each rounded to the values its kept subwords hold."""
    solved, _ = reconstruct(weights, masks.high | masks.low, stats, damping=damping)
    return allowed_round(solved / np.asarray(scales, dtype=np.float64), masks.high, masks.low)


def _solve(
    solver: str,
    weights: np.ndarray,
    q: np.ndarray,
    masks: SubwordMasks,
    scales: np.ndarray,
    stats: Stats,
    damping: float,
) -> np.ndarray:
    if solver == "none":
        return unreconstructed(q, masks)
    if solver == "float-round":
        return float_round_solve(weights, masks, scales, stats, damping)
    if solver == "column-sweep":
        return column_sweep_solve(weights, masks, scales, stats, damping)
    return sweep_solve(weights, masks, scales, stats, damping)


def sweep_kind(masks: SubwordMasks, exact_flops: float = EXACT_FLOPS) -> str:
    """`column-sweep` when the per-column solve costs at most `exact_flops` (as the word path's exact
    solve), else the whole-layer `sweep`."""
    counts = (masks.high | masks.low).sum(axis=0).astype(np.float64)
    return "column-sweep" if float(np.sum(counts**3)) / 3 <= exact_flops else "sweep"


def validated_subword_reconstruct(
    weights: np.ndarray,
    q: np.ndarray,
    masks: SubwordMasks,
    scales: np.ndarray,
    stats: GramStats,
    damping: float = DAMPING,
) -> tuple[np.ndarray, str, float | None, dict[str, float]]:
    """`(q', solver, held-out error, held-out error per candidate)`: the candidate (`none`, `float-round`,
    `column-sweep` or `sweep` as `sweep_kind` says, each solve at `damping` x `DAMPING_FACTORS`) with the
    least relative output error on the held-out calibration rows of a fit on the others, solved again on
    all rows. `q` is the layer's quantized int weights, `weights` its float weights (the target `X_d W` and
    every error use them). Without enough held-out rows (`HOLDOUT_MIN_ROWS`), the candidates compete on all
    rows and the held-out error is None."""
    W = np.asarray(weights, dtype=np.float64)
    held = stats.heldout
    validated = not (
        held is None or held.rows < HOLDOUT_MIN_ROWS or stats.rows - held.rows < HOLDOUT_MIN_ROWS
    )
    fit_on, score_on = (stats.without_heldout(), held) if validated else (stats, stats)
    sweep = sweep_kind(masks)
    candidates = [("none", 0.0)] + [
        (solver, damping * factor) for solver in ("float-round", sweep) for factor in DAMPING_FACTORS
    ]
    scores: dict[str, float] = {}
    best: tuple[float, str, float] | None = None
    shared: dict[tuple[str, float], np.ndarray] = {}
    for solver, damp in candidates:
        if sweep == "column-sweep" and solver != "none" and (solver, damp) not in shared:
            # float-round and the column sweep start from the same exact solve: one factorization for both
            pair = _column_solves(W, masks, scales, fit_on, damp)
            shared[("float-round", damp)], shared[("column-sweep", damp)] = pair
        trial = shared.pop((solver, damp), None)
        if trial is None:
            trial = _solve(solver, W, q, masks, scales, fit_on, damp)
        error = relative_error(dequantize(trial, scales), W, score_on)
        label = solver if solver == "none" else f"{solver}, damping {damp:g}"
        scores[label] = error
        if best is None or error < best[0] - 1e-12:
            best = (error, solver, damp)
    assert best is not None
    error, solver, damp = best
    final = _solve(solver, W, q, masks, scales, stats, damp)
    label = f"{solver}, damping {damp:g}"
    if solver == "none":
        lowered = "held-out error" if validated else "error"
        label = f"none (no solve lowered the {lowered})"
    return final, label, (error if validated else None), scores


__all__ = [
    "SOLVERS",
    "allowed_round",
    "column_sweep_solve",
    "dequantize",
    "float_round_solve",
    "masks_of",
    "representable",
    "subword_saliency",
    "sweep_kind",
    "sweep_solve",
    "unreconstructed",
    "validated_subword_reconstruct",
]
