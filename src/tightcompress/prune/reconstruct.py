"""Calibrated one-shot pruning of one `K x N` matrix (layer `y = x @ W`): saliency, then reconstruction.

- `GramStats(W)` accumulates, over calibration rows, `H = X_p^T X_p`, `B = X_p^T X_d W` and
  `target = ||X_d W||^2`, where `X_p` is the layer's input in the model pruned so far, `X_d` its input in
  the dense model (same rows) and `W` the layer's dense weights: the target output `X_d W` is fixed, so
  nothing here needs `X_p^T X_d` or `X_d^T X_d` themselves (two `K x K` matrices fewer).
- `saliency(W, stats)`: `|w_ij| * ||x_i||` (Wanda, Sun et al. 2023) with `||x_i||` over `X_p`'s column `i`;
  every method chooses what it keeps by packing this matrix instead of `|W|`, so the comparison is fair.
- `reconstruct(W, mask, stats)`: the kept weights solved again for
  `min ||X_p W' - X_d W||^2` with `W'` zero outside `mask`: the target is the dense model's output and the
  inputs the pruned model's, so the update also corrects the error that comes from upstream (measured in
  `/work/shared/one_shot_notes.md`: 74.5 % exact lines against 14.5 % with the target `X_p W`).
  With `B = X_p^T X_d W`, the objective is `(W' - W0)^T H (W' - W0) + const`, `W0 = H^-1 B` (the dense
  least-squares solution), which is the problem SparseGPT (Frantar & Alistarh 2023) solves column by
  column: an OBS sweep over the input rows with the upper Cholesky factor of `H^-1`, all output columns at
  once, in blocks (`O(K^2 N)` with BLAS-3 updates). `H` is dampened by `damping * mean(diag H)` (1 % by
  default), which also keeps the solve defined when there are fewer rows than inputs.
- `relative_error(W', W, stats)`: `||X_p W' - X_d W|| / ||X_d W||` from `H`, `B` and `target`.
- Memory: a solve holds one `K x K` working matrix besides the statistics (the OBS sweep factorises,
  inverts and factorises again in place), the validation's fits on the rows not held out write `H - H_held`
  straight into it; a ResNet-50's largest layer (K = 4608) costs 170 MB per `K x K` float64 matrix.
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
    """A layer's calibration statistics against its dense weights `W` (`K x N`, kept as float32): `H =
    X_p^T X_p` (`K x K`, float64), `B = X_p^T X_d W` (`K x N`, float64) and `target = ||X_d W||_F^2`, each
    a float64 sum of float32 products per batch. Every solve and error here needs `X_d` only through
    `X_d W`: keeping `B` and `target` instead of `C = X_p^T X_d` and `D = X_d^T X_d` (two more `K x K`
    matrices, 170 MB each in float64 for a 3x3 conv of 512 channels) is what fits a ResNet-50 in 2 GiB."""

    weights: np.ndarray
    H: np.ndarray = field(init=False)
    B: np.ndarray = field(init=False)
    target: float = 0.0
    rows: int = 0
    # the same sums over every HOLDOUT_EVERY-th row only (None for the held-out stats themselves)
    heldout: GramStats | None = field(init=False, default=None)
    keep_heldout: bool = True

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float32)
        if self.weights.ndim != 2:
            raise ValueError(f"GramStats takes the layer's K x N weights, got shape {self.weights.shape}")
        K, N = self.weights.shape
        # the held-out sums only score candidate solves: float32 halves their memory
        dtype = np.float64 if self.keep_heldout else np.float32
        self.H = np.zeros((K, K), dtype=dtype)
        self.B = np.zeros((K, N), dtype=dtype)
        if self.keep_heldout:
            self.heldout = GramStats(self.weights, keep_heldout=False)

    @property
    def K(self) -> int:
        return int(self.weights.shape[0])

    def add(self, pruned: np.ndarray, dense: np.ndarray) -> None:
        """Add rows (`(M, K)` each, the same M positions in both models)."""
        # float32 products through torch (about 3x NumPy's BLAS here), summed into the float64 totals
        import torch

        p = torch.from_numpy(np.asarray(pruned, dtype=np.float32))
        y = torch.from_numpy(np.asarray(dense, dtype=np.float32)) @ torch.from_numpy(self.weights)
        if self.heldout is not None:
            first = (-self.rows - 1) % HOLDOUT_EVERY  # rows whose running index is 4, 9, 14, ...
            if first < p.shape[0]:
                self.heldout._add_products(p[first::HOLDOUT_EVERY], y[first::HOLDOUT_EVERY])
        self._add_products(p, y)

    def _add_products(self, p: object, y: object) -> None:
        """`p`: the pruned model's rows, `y = X_d W` on the same rows (float32 torch tensors)."""
        import torch

        self.H += (p.T @ p).numpy()
        self.B += (p.T @ y).numpy()
        self.target += float(torch.sum(torch.square(y), dtype=torch.float64))
        self.rows += int(p.shape[0])

    def without_heldout(self) -> HeldOutComplement:
        """The sums over the rows that were not held out (`H` built only when a solve asks for it)."""
        return HeldOutComplement(self)

    def gram_copy(self) -> np.ndarray:
        """A new float64 `H` the caller may overwrite (dampen, factorise in place)."""
        return self.H.astype(np.float64, copy=True)

    def diagonal(self) -> np.ndarray:
        return np.diag(self.H)

    def gram_times(self, M: np.ndarray) -> np.ndarray:
        """`H @ M`."""
        return self.H @ M

    def check_weights(self, weights: np.ndarray) -> None:
        """ValueError unless `weights` are the dense weights these sums were taken against."""
        check_target(self.weights, weights)

    @property
    def input_norms(self) -> np.ndarray:
        """`||x_i||` of every input over the pruned model's rows."""
        return np.sqrt(np.maximum(np.diag(self.H), 0.0))


class HeldOutComplement:
    """`GramStats` over the rows that were not held out: `B` and `target` as differences (small); `H`
    never stored, its difference written straight into the solve's working matrix (`gram_copy`), so the
    validation's fits cost one `K x K` matrix, not two."""

    def __init__(self, full: GramStats) -> None:
        held = full.heldout
        if held is None:
            raise ValueError("these statistics hold no held-out rows")
        self.full, self.held = full, held
        self.weights = full.weights
        self.B = full.B - held.B  # float64
        self.target = full.target - held.target
        self.rows = full.rows - held.rows

    @property
    def K(self) -> int:
        return self.full.K

    def gram_copy(self) -> np.ndarray:
        return self.full.H - self.held.H  # float64, the caller's to overwrite

    def diagonal(self) -> np.ndarray:
        return np.diag(self.full.H) - np.diag(self.held.H)

    def gram_times(self, M: np.ndarray) -> np.ndarray:
        return self.gram_copy() @ M

    def check_weights(self, weights: np.ndarray) -> None:
        check_target(self.weights, weights)

    @property
    def input_norms(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.diagonal(), 0.0))


Stats = GramStats | HeldOutComplement


def check_target(expected: np.ndarray, weights: np.ndarray) -> None:
    """ValueError unless `weights` (as float32) are `expected`: the statistics hold `X_d W` for one `W`."""
    given = np.asarray(weights)
    if given.shape != expected.shape or not np.array_equal(given.astype(np.float32, copy=False), expected):
        raise ValueError(
            f"the calibration statistics were taken against other weights (shape {expected.shape}, "
            f"given {given.shape}): the target X_d W is fixed when the sums are added"
        )


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
    stats: Stats,
    damping: float = DAMPING,
    exact_flops: float | None = None,
) -> tuple[np.ndarray, str]:
    """`(kept weights, solver)`: the weights zero outside `mask` minimising `||X_p W' - X_d W||^2` plus the
    damping term (see the module docstring), float64. `weights` must be those `stats` were taken against.
    `solver` is `exact` (each output column's kept weights solved on their own Gram block, batched by kept
    count) when that costs at most `exact_flops`, else `obs-sweep` (SparseGPT's sweep, `O(K^2 N)`, a little
    less accurate; `exact_flops` None: `EXACT_FLOPS`). Memory: one `K x K` working matrix besides `stats`
    (factorised in place)."""
    stats.check_weights(weights)
    W = np.asarray(weights, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    K = W.shape[0]
    H = stats.gram_copy()
    scale = float(np.mean(np.diag(H)))
    if not np.isfinite(scale) or scale <= 0.0:
        return W * mask, "none"
    H[np.diag_indices(K)] += damping * scale
    B = np.asarray(stats.B, dtype=np.float64)
    counts = mask.sum(axis=0)
    limit = EXACT_FLOPS if exact_flops is None else exact_flops
    if float(np.sum(counts.astype(np.float64) ** 3)) / 3 <= limit:
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
        del factor
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


def dense_solution_and_factor(H: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(H^-1 B, U)` with `U` the upper Cholesky factor of `H^-1` (`H^-1 = U^T U`), overwriting the
    symmetric positive definite float64 `H` (C order, the caller's working copy) with `U`: Cholesky, the
    inverse from the factor (exactly symmetric), Cholesky again, every LAPACK call in place on the same
    buffer (torch factorises in place into a column-major view; a C-order symmetric matrix's transpose is
    itself). Before, `np.linalg.inv`, its symmetrised copy and the factor took three more `K x K` matrices."""
    import torch

    if not (H.flags.c_contiguous and H.dtype == np.float64):
        raise ValueError("the working matrix must be C-ordered float64")
    work = torch.from_numpy(H).T  # column-major view: LAPACK works in place on it
    torch.linalg.cholesky(work, out=work)  # lower factor L of H
    torch.cholesky_inverse(work, out=work)  # H^-1, both triangles
    solution = (work @ torch.from_numpy(B)).numpy()
    torch.linalg.cholesky(work, upper=True, out=work)  # U, upper: H^-1 = U^T U
    return solution, work.numpy()


def _obs_sweep(H: np.ndarray, B: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """SparseGPT's blocked sweep from the dense solution `W0 = H^-1 B` with the mask fixed (overwrites `H`,
    the caller's working copy)."""
    K = H.shape[0]
    work, U = dense_solution_and_factor(H, B)
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
    stats.check_weights(weights)
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
        del trial
        if error < best_error:
            best_error, best_damping = error, damping * factor
    del rest
    if best_damping is None:
        return masked, "none (no solve lowered the held-out error)", best_error
    solved, solver = reconstruct(W, mask, stats, damping=best_damping)
    return solved, f"{solver}, damping {best_damping:g}", best_error


def relative_error(kept: np.ndarray, weights: np.ndarray, stats: Stats) -> float:
    """`||X_p W' - X_d W||_F / ||X_d W||_F` over the calibration rows (0 when the dense output is zero):
    `(W'^T H W' - 2 W'^T B + target) / target`, with `weights` those `stats` were taken against."""
    stats.check_weights(weights)
    Wk = np.asarray(kept, dtype=np.float64)
    target = float(stats.target)
    if target <= 0.0:
        return 0.0
    cross = float(np.sum(Wk * stats.B))
    own = float(np.sum(Wk * stats.gram_times(Wk)))
    return float(np.sqrt(max(own - 2 * cross + target, 0.0) / target))
