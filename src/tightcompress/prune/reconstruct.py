"""Calibrated one-shot pruning of one `K x N` matrix (layer `y = x @ W`): saliency, then reconstruction.

- `GramStats` accumulates, over calibration rows, `H = X_p^T X_p`, `C = X_p^T X_d` and `D = X_d^T X_d`, where
  `X_p` is the layer's input in the model pruned so far and `X_d` its input in the dense model (same rows).
- `saliency(W, stats)`: `|w_ij| * ||x_i||` (Wanda, Sun et al. 2023) with `||x_i||` over `X_p`'s column `i`;
  every method chooses what it keeps by packing this matrix instead of `|W|`, so the comparison is fair.
- `reconstruct(W, mask, stats)`: the kept weights solved again for
  `min ||X_p W' - X_d W||^2` with `W'` zero outside `mask`: the target is the dense model's output and the
  inputs the pruned model's, so the update also corrects the error that comes from upstream (measured in
  `/work/shared/one_shot_notes.md`: 74.5 % exact lines against 14.5 % with the target `X_p W`).
  With `B = C W`, the objective is `(W' - W0)^T H (W' - W0) + const`, `W0 = H^-1 B` (the dense least-squares
  solution), which is the problem SparseGPT (Frantar & Alistarh 2023) solves column by column: an OBS sweep
  over the input rows with the upper Cholesky factor of `H^-1`, all output columns at once, in blocks
  (`O(K^2 N)` with BLAS-3 updates). `H` is dampened by `damping * mean(diag H)` (1 % by default), which
  also keeps the solve defined when there are fewer rows than inputs.
- `relative_error(W', W, stats)`: `||X_p W' - X_d W|| / ||X_d W||` from the Gram matrices.
- Held out: every `HOLDOUT_EVERY`-th calibration row is also summed into `GramStats.heldout`. With fewer
  rows than inputs a solve can fit the calibration rows and not the layer (64 rows for a 1024-input linear
  layer: 0.17 % error on the calibration inputs, 64.5 % on new ones, worse than no solve at 51.8 %), so
  `validated_reconstruct` chooses between no solve and the solve at a few dampings by the error on the
  held-out rows of a fit on the others, then solves on all rows with the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DAMPING = 0.01
HOLDOUT_EVERY = 5  # one calibration row in five is held out to validate the solve
HOLDOUT_MIN_ROWS = 8  # fewer held-out rows than this: no validation (the solve is kept if it helps in-sample)
# Dampings tried by validation (multiples of the configured one): the stronger ones pull an underdetermined
# solve towards the weights as they are.
DAMPING_FACTORS = (1.0, 10.0, 100.0)
_BLOCK = 128
EXACT_FLOPS = 2e10  # above this a layer is solved by the OBS sweep
_CHUNK_BYTES = 128 * 2**20


@dataclass
class GramStats:
    """Second moments of a layer's calibration inputs (float64), pruned-model `X_p` and dense-model `X_d`."""

    K: int
    H: np.ndarray = field(init=False)
    C: np.ndarray = field(init=False)
    D: np.ndarray = field(init=False)
    rows: int = 0
    # the same sums over every HOLDOUT_EVERY-th row only (None for the held-out stats themselves)
    heldout: GramStats | None = field(init=False, default=None)
    keep_heldout: bool = True

    def __post_init__(self) -> None:
        # the held-out sums only score candidate solves: float32 halves their memory
        dtype = np.float64 if self.keep_heldout else np.float32
        self.H = np.zeros((self.K, self.K), dtype=dtype)
        self.C = np.zeros((self.K, self.K), dtype=dtype)
        self.D = np.zeros((self.K, self.K), dtype=dtype)
        if self.keep_heldout:
            self.heldout = GramStats(self.K, keep_heldout=False)

    def add(self, pruned: np.ndarray, dense: np.ndarray) -> None:
        """Add rows (`(M, K)` each, the same M positions in both models)."""
        pruned = np.asarray(pruned, dtype=np.float32)
        dense = np.asarray(dense, dtype=np.float32)
        if self.heldout is not None:
            first = (-self.rows - 1) % HOLDOUT_EVERY  # rows whose running index is 4, 9, 14, ...
            if first < pruned.shape[0]:
                self.heldout.add(pruned[first::HOLDOUT_EVERY], dense[first::HOLDOUT_EVERY])
        # float32 products through torch (about 3x NumPy's BLAS here), summed into the float64 totals
        import torch

        p, d = torch.from_numpy(pruned), torch.from_numpy(dense)
        self.H += (p.T @ p).numpy()
        self.C += (p.T @ d).numpy()
        self.D += (d.T @ d).numpy()
        self.rows += int(pruned.shape[0])

    def without_heldout(self) -> GramStats:
        """The sums over the rows that were not held out."""
        rest = GramStats(self.K, keep_heldout=False)
        held = self.heldout
        rest.H, rest.C, rest.D = self.H - held.H, self.C - held.C, self.D - held.D  # float64
        rest.rows = self.rows - held.rows
        return rest

    @property
    def input_norms(self) -> np.ndarray:
        """`||x_i||` of every input over the pruned model's rows."""
        return np.sqrt(np.maximum(np.diag(self.H), 0.0))


def saliency(weights: np.ndarray, stats: GramStats | None) -> np.ndarray:
    """`|W| * ||x||` per input row (float32, strictly positive where `W` is nonzero); `|W|` without stats
    or when every input is zero."""
    magnitude = np.abs(np.asarray(weights, dtype=np.float32))
    if stats is None:
        return magnitude
    norms = stats.input_norms
    top = float(norms.max()) if norms.size else 0.0
    if top <= 0.0:
        return magnitude
    # a dead input (always zero) still ranks its weights by |w|, far below every live one
    norms = np.maximum(norms / top, 1e-6)
    return (magnitude * norms[:, None].astype(np.float32)).astype(np.float32)


def reconstruct(
    weights: np.ndarray,
    mask: np.ndarray,
    stats: GramStats,
    damping: float = DAMPING,
    exact_flops: float = EXACT_FLOPS,
) -> tuple[np.ndarray, str]:
    """`(kept weights, solver)`: the weights zero outside `mask` minimising `||X_p W' - X_d W||^2` plus the
    damping term (see the module docstring), float64. `solver` is `exact` (each output column's kept
    weights solved on their own Gram block, batched by kept count) when that costs at most `exact_flops`,
    else `obs-sweep` (SparseGPT's sweep, `O(K^2 N)`, a little less accurate)."""
    W = np.asarray(weights, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    K = W.shape[0]
    H = stats.H.copy()
    scale = float(np.mean(np.diag(H)))
    if not np.isfinite(scale) or scale <= 0.0:
        return W * mask, "none"
    H[np.diag_indices(K)] += damping * scale
    B = stats.C @ W
    counts = mask.sum(axis=0)
    if float(np.sum(counts.astype(np.float64) ** 3)) / 3 <= exact_flops:
        return _exact(H, B, mask, counts), "exact"
    return _obs_sweep(H, B, mask), "obs-sweep"


def _exact(H: np.ndarray, B: np.ndarray, mask: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per output column `j`: `H[k, k] w = B[k, j]` over its kept rows `k` (Cholesky, float64), columns of
    equal count batched; columns keeping every row share one factorization."""
    import torch

    # one thread: the many small factorizations gain nothing from LAPACK's threads and lose a lot to their
    # waiting on a busy machine (a 480 x 480 layer: 0.33 s of CPU on one thread, 4.9 s on two, load 14)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _exact_solves(H, B, mask, counts)
    finally:
        torch.set_num_threads(threads)


def _exact_solves(H: np.ndarray, B: np.ndarray, mask: np.ndarray, counts: np.ndarray) -> np.ndarray:
    import torch

    out = np.zeros_like(B)
    K = H.shape[0]
    full = np.flatnonzero(counts == K)
    if full.size:
        factor = torch.linalg.cholesky(torch.from_numpy(H))
        out[:, full] = torch.cholesky_solve(torch.from_numpy(B[:, full]), factor).numpy()
    for count in np.unique(counts):
        if count == 0 or count == K:
            continue
        columns = np.flatnonzero(counts == count)
        chunk = max(1, int(_CHUNK_BYTES // (8 * count * count)))
        for start in range(0, len(columns), chunk):
            cols = columns[start : start + chunk]
            rows = np.nonzero(mask[:, cols].T)[1].reshape(len(cols), count)  # kept rows, ascending
            A = torch.from_numpy(H[rows[:, :, None], rows[:, None, :]])
            b = torch.from_numpy(B[rows, cols[:, None]][:, :, None])
            out[rows, cols[:, None]] = torch.cholesky_solve(b, torch.linalg.cholesky(A))[:, :, 0].numpy()
    return out


def _obs_sweep(H: np.ndarray, B: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SparseGPT's blocked sweep from the dense solution `W0 = H^-1 B` with the mask fixed."""
    K = H.shape[0]
    H_inv = np.linalg.inv(H)
    H_inv = (H_inv + H_inv.T) / 2
    work = H_inv @ B
    U = np.linalg.cholesky(H_inv).T  # upper: H^-1 = U^T U
    drop = ~mask
    for start in range(0, K, _BLOCK):
        end = min(start + _BLOCK, K)
        block = work[start:end].copy()
        errors = np.zeros_like(block)
        U_block = U[start:end, start:end]
        for i in range(end - start):
            err = np.where(drop[start + i], block[i], 0.0) / U_block[i, i]
            block[i:] -= np.outer(U_block[i, i:], err)
            block[i, drop[start + i]] = 0.0
            errors[i] = err
        work[start:end] = block
        if end < K:
            work[end:] -= U[start:end, end:].T @ errors
    return work * mask


def validated_reconstruct(
    weights: np.ndarray, mask: np.ndarray, stats: GramStats, damping: float = DAMPING
) -> tuple[np.ndarray, str, float | None]:
    """`(kept weights, solver, held-out error)`: the solve (at the damping that validates best) or the
    masked weights unchanged, whichever reproduces the dense output better on the held-out rows of a fit on
    the other rows; then solved again on all rows. The held-out error is None without enough held-out rows,
    and then the solve is kept when it lowers the error on the calibration rows."""
    W = np.asarray(weights, dtype=np.float64)
    masked = W * mask
    held = stats.heldout
    if held is None or held.rows < HOLDOUT_MIN_ROWS or stats.rows - held.rows < HOLDOUT_MIN_ROWS:
        solved, solver = reconstruct(W, mask, stats, damping=damping)
        if relative_error(solved, W, stats) <= relative_error(masked, W, stats):
            return solved, solver, None
        return masked, "none (the solve did not lower the error)", None
    rest = stats.without_heldout()
    best_error, best_damping = relative_error(masked, W, held), None
    for factor in DAMPING_FACTORS:
        trial, _ = reconstruct(W, mask, rest, damping=damping * factor)
        error = relative_error(trial, W, held)
        if error < best_error:
            best_error, best_damping = error, damping * factor
    if best_damping is None:
        return masked, "none (no solve lowered the held-out error)", best_error
    solved, solver = reconstruct(W, mask, stats, damping=best_damping)
    return solved, f"{solver}, damping {best_damping:g}", best_error


def relative_error(kept: np.ndarray, weights: np.ndarray, stats: GramStats) -> float:
    """`||X_p W' - X_d W||_F / ||X_d W||_F` over the calibration rows (0 when the dense output is zero)."""
    Wk = np.asarray(kept, dtype=np.float64)
    W = np.asarray(weights, dtype=np.float64)
    target = float(np.sum(W * (stats.D @ W)))
    if target <= 0.0:
        return 0.0
    cross = float(np.sum(Wk * (stats.C @ W)))
    own = float(np.sum(Wk * (stats.H @ Wk)))
    return float(np.sqrt(max(own - 2 * cross + target, 0.0) / target))
