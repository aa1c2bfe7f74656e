"""Subword pruning: each int8 weight is split into two signed 4-bit subwords that are pruned one by one.

Split (balanced): `w = 16*a + b` with `b = ((w + 8) mod 16) - 8` and `a = (w - b) / 16`, both in `[-8, 7]`.
The low subword `b` is the nearest-to-zero residue of `w` modulo 16, so every small weight `|w| <= 7`
(and `w = -8`) has `a = 0` and costs a single subword.

Range edge case. With `a, b` in `[-8, 7]` the representable set is `16*a + b` in `[-136, 119]`: every int8
in `[-128, 119]` splits exactly (`-128 = 16*(-8) + 0`), but `120..127` cannot be written by *any* split
(`16*7 + 7 = 119` is the largest), e.g. `w = 127` gives `b = -1, a = 8`. We therefore quantize for subwords
with the symmetric range `[-119, 119]` (`SUBWORD_QMAX`, `scale = max|W[:, j]| / 119`): the largest weight
of each column stays exact and the grid is only 127/119 = 1.067x coarser, whereas clipping the int8 range
to 119 would cut up to 8 steps off exactly the largest, most important weights, and an asymmetric range would
break the shared symmetric quantizer. `split_int8` raises on `120..127` (they cannot come from the subword
quantizer); with `saturate=True` it maps them to 119 (`a = 7, b = 7`), for int8 weights made elsewhere.

Subword matrix. A `K x N` int8 matrix becomes a `2K x N` matrix of 4-bit values, rows interleaved: row
`2k` is the high subword `a` of input `k` (shift 4), row `2k + 1` the low subword `b` (shift 0). Both rows
read input `x[k]`; the shift belongs to the row, so a permuted row carries it (`row_shifts`).

Kept value (the one subword arithmetic). When some subwords of a weight are pruned, the weight becomes
`kept_value(q, keep_high, keep_low)`, the value *nearest to `q`* that the kept subwords can hold:
both kept -> `q`; high only -> `16*a` (`q` minus its low subword); low only -> `clamp(q, -8, 7)`; none -> 0.
For `q = 50` (`a = 3, b = 2`) with only the low subword kept this is 7, not the residue 2. Why: (1) it is
the least error the kept subword allows (`|q| - 7 <= 16*|a|` always; 43 vs 48 here); (2) it is monotone in
`q`, so quantization-aware training with a straight-through gradient can move a low-only weight smoothly
up to the edge of its range, whereas the residue wraps from 7 to -8 as `q` crosses a multiple of 16 and the
gradient then points the wrong way; (3) the packed slots then hold exactly the split of the kept value
(`a = 0, b = 7`), so the packer, the bit-exact simulator (which only recomposes `16*a + b` of the slots) and
training agree by construction. The high-only case `16*a` is likewise the nearest multiple of 16.
Packing (`subword_contributions`), pruning (`subword_importance`) and training (`subword_masked_weight`)
all call `kept_value`, on NumPy arrays or torch tensors alike.

Importance. Removing a subword moves the weight from its current value to `kept_value` without that
subword: the low subword costs `|b|` steps, the high one `|q - clamp(q, -8, 7)|` while the low subword is
nonzero and `16*|a|` once it is zero; times the column's scale this is the error in the layer's units.
Subwords are pruned smallest first to a target subword sparsity (zeros over `2*K*N` subwords),
monotonically: once pruned, a subword stays pruned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.quant import quantize_columns

if TYPE_CHECKING:
    import torch

SUBWORD_QMAX = 119  # largest |w| every split can represent symmetrically (16*7 + 7)
SHIFT_HIGH = 4
SHIFT_LOW = 0
NIBBLE_MIN, NIBBLE_MAX = -8, 7


class SubwordMasks(NamedTuple):
    """Keep-masks of the two subwords of each weight, both `K x N` bool (True = kept)."""

    high: np.ndarray
    low: np.ndarray


# --------------------------------------------------------------------------- the subword arithmetic
def _xp(q: Any) -> Any:
    """The array library of `q`: NumPy for arrays, torch for tensors (the arithmetic is written once)."""
    if isinstance(q, np.ndarray | np.generic):
        return np
    import torch

    return torch


def low_subword(q: Any) -> Any:
    """The low subword `b = ((q + 8) mod 16) - 8` of integer-valued `q` (array or tensor, its dtype)."""
    return _xp(q).remainder(q + 8, 16) - 8


def kept_value(q: Any, keep_high: Any, keep_low: Any) -> Any:
    """The value of integer-valued `q` when only the kept subwords remain: the nearest they can hold.

    both -> `q`; high only -> `16*a`; low only -> `clamp(q, -8, 7)`; none -> 0 (see the module doc for why
    low only is the clamp, not the residue `b`). Works on NumPy arrays and torch tensors alike.
    """
    xp = _xp(q)
    keep_high = keep_high.astype(bool) if xp is np else keep_high.bool()
    keep_low = keep_low.astype(bool) if xp is np else keep_low.bool()
    zero = xp.zeros_like(q)
    low_only = xp.where(keep_low, xp.clip(q, NIBBLE_MIN, NIBBLE_MAX), zero)
    return xp.where(keep_high, xp.where(keep_low, q, q - low_subword(q)), low_only)


# ------------------------------------------------------------------------------------------ split / merge
def quantize_for_subwords(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(q, scales)`: symmetric per-column int8 in `[-119, 119]` (every value splits exactly)."""
    return quantize_columns(weights, qmax=SUBWORD_QMAX)


def split_int8(q: np.ndarray, *, saturate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`(a, b)` int8 subwords with `q = 16*a + b`, both in `[-8, 7]` (balanced split, see module doc).

    Values 120..127 have no split; they raise unless `saturate=True`, which maps them to 119 (a=7, b=7).
    """
    q = np.asarray(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise TightCompressError(f"split_int8 expects integer weights, got dtype {q.dtype}")
    w = q.astype(np.int16)
    if np.any(w < -128) or np.any(w > 127):
        raise TightCompressError("split_int8 expects int8 values in [-128, 127]")
    over = w > SUBWORD_QMAX
    if np.any(over):
        if not saturate:
            raise TightCompressError(
                f"{int(over.sum())} weight(s) in 120..127 have no 4-bit split (16*7 + 7 = 119); quantize "
                "with qmax=119 (quantize_for_subwords) or pass saturate=True"
            )
        w = np.minimum(w, SUBWORD_QMAX)
    b = low_subword(w)
    a = (w - b) // 16
    return a.astype(np.int8), b.astype(np.int8)


def merge_subwords(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int8 `16*a + b`; raises if a value leaves int8."""
    w = 16 * np.asarray(a).astype(np.int16) + np.asarray(b).astype(np.int16)
    if np.any(w < -128) or np.any(w > 127):
        raise TightCompressError("merged subwords leave the int8 range (a = -8 with b < 0 is not a split)")
    return w.astype(np.int8)


def row_shifts(K: int) -> np.ndarray:
    """Shift of each of the `2K` subword rows: 4 for the high rows `2k`, 0 for the low rows `2k + 1`."""
    shifts = np.zeros(2 * K, dtype=np.uint8)
    shifts[0::2] = SHIFT_HIGH
    return shifts


def subword_effective_int8(q: np.ndarray, masks: SubwordMasks) -> np.ndarray:
    """int8 `kept_value` of `q` under `masks`: the weights the kept subwords make."""
    split_int8(q)  # validates dtype and range
    return kept_value(np.asarray(q).astype(np.int16), masks.high, masks.low).astype(np.int8)


def subword_matrix(q: np.ndarray, masks: SubwordMasks | None = None) -> np.ndarray:
    """The `2K x N` int8 matrix of 4-bit subwords of `q` (row `2k` = high of input k, `2k + 1` = low).

    With `masks`, the subwords of the kept values (`subword_effective_int8`): zero where pruned.
    """
    a, b = split_int8(q if masks is None else subword_effective_int8(q, masks))
    K, N = a.shape
    out = np.empty((2 * K, N), dtype=np.int8)
    out[0::2] = a
    out[1::2] = b
    return out


def subword_contributions(q: np.ndarray, masks: SubwordMasks | None = None) -> np.ndarray:
    """The `2K x N` int16 matrix of what each subword adds to its weight: `16*a` (high rows), `b` (low)."""
    sub = subword_matrix(q, masks).astype(np.int16)
    return sub << row_shifts(q.shape[0]).astype(np.int16)[:, None]


def recompose(subwords: np.ndarray) -> np.ndarray:
    """Inverse of `subword_matrix`: the `K x N` int8 matrix `16*sub[0::2] + sub[1::2]`."""
    return merge_subwords(subwords[0::2], subwords[1::2])


# ------------------------------------------------------------------------------------------- pruning
def subword_importance(q: np.ndarray, scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(high, low)` float64 error of removing each subword of `q` alone: `|q - kept_value(...)|`.

    The other subword counts as kept when it is nonzero; times the column scale when `scales` is given.
    """
    a, b = split_int8(q)
    w = np.asarray(q).astype(np.int16)
    high = np.abs(w - kept_value(w, np.zeros_like(w, bool), b != 0)).astype(np.float64)
    low = np.abs(w - kept_value(w, a != 0, np.zeros_like(w, bool))).astype(np.float64)
    if scales is not None:
        scales = np.asarray(scales, dtype=np.float64)
        high, low = high * scales, low * scales
    return high, low


def full_masks(q: np.ndarray) -> SubwordMasks:
    """Masks keeping every nonzero subword of `q`."""
    a, b = split_int8(q)
    return SubwordMasks(a != 0, b != 0)


def subword_sparsity(q: np.ndarray, masks: SubwordMasks | None = None) -> float:
    """Fraction of the `2*K*N` subwords that are zero (pruned or zero-valued)."""
    sub = subword_matrix(q, masks)
    return 1.0 - np.count_nonzero(sub) / sub.size


def prune_subwords(
    q: np.ndarray,
    sparsity: float,
    *,
    scales: np.ndarray | None = None,
    masks: SubwordMasks | None = None,
) -> SubwordMasks:
    """Masks pruning the least important subwords of one layer until `sparsity` of all `2*K*N` are zero.

    Zero-valued and already-pruned subwords (`masks`) count towards the target and stay pruned, so calling
    this with a rising target between fine-tuning steps prunes gradually. Ties keep the earlier subword.
    Importance is that of the kept values (`subword_importance`). Returned masks are True only where a
    nonzero subword is kept.
    """
    if not 0.0 <= sparsity < 1.0:
        raise TightCompressError(f"subword sparsity must be in [0, 1), got {sparsity}")
    if masks is not None:
        if masks.high.shape != q.shape or masks.low.shape != q.shape:
            raise TightCompressError(f"subword masks must have the weight shape {q.shape}")
        q = subword_effective_int8(q, masks)
    high, low = subword_importance(q, scales)
    kept = full_masks(q)
    K, N = q.shape
    imp = np.empty((2 * K, N), dtype=np.float64)
    imp[0::2] = high
    imp[1::2] = low
    alive = np.empty((2 * K, N), dtype=bool)
    alive[0::2] = kept.high
    alive[1::2] = kept.low
    n_prune = round(sparsity * alive.size) - (alive.size - int(alive.sum()))
    if n_prune > 0:
        flat_alive = np.flatnonzero(alive.ravel())
        order = np.argsort(imp.ravel()[flat_alive], kind="stable")
        alive.flat[flat_alive[order[:n_prune]]] = False
    return SubwordMasks(alive[0::2].copy(), alive[1::2].copy())


# ------------------------------------------------------------------------------------- torch (QAT + STE)
def channel_scales_torch(
    weight: torch.Tensor, channel_dim: int = -1, qmax: int = SUBWORD_QMAX
) -> torch.Tensor:
    """Per-output-channel scale `max|w| / qmax` (1 for an all-zero channel), shaped to broadcast on weight.

    For the project's `K x N` matrices the channel is the column (`channel_dim=-1`); for an `nn.Linear`
    weight `(out, in)` or a conv weight `(out, ...)` pass `channel_dim=0`.
    """
    import torch

    dim = channel_dim % weight.dim()
    others = [d for d in range(weight.dim()) if d != dim]
    peak = weight.detach().abs().amax(dim=others, keepdim=True) if others else weight.detach().abs()
    return torch.where(peak > 0, peak / qmax, torch.ones_like(peak))


def quantized_int(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`clamp(round(w / scale), -119, 119)` as a float tensor of integers (no gradient)."""
    import torch

    return torch.clamp(torch.round(weight.detach() / scale.detach()), -SUBWORD_QMAX, SUBWORD_QMAX)


def subword_masked_weight(
    weight: torch.Tensor,
    scale: torch.Tensor,
    mask_high: torch.Tensor | np.ndarray,
    mask_low: torch.Tensor | np.ndarray,
) -> torch.Tensor:
    """Effective weight `scale * kept_value(q, mask_high, mask_low)` of `w`, with STE gradients.

    `q` is `quantized_int(w, scale)`; `scale` broadcasts on `weight` (see `channel_scales_torch`) and is a
    constant; the masks have the weight's shape. The gradient reaches a weight unchanged while at least one
    of its subwords is kept and is zero once both are pruned (as in ordinary masked pruning).
    """
    import torch

    mh = torch.as_tensor(mask_high, device=weight.device).to(torch.bool)
    ml = torch.as_tensor(mask_low, device=weight.device).to(torch.bool)
    if mh.shape != weight.shape or ml.shape != weight.shape:
        raise TightCompressError(f"subword masks must have the weight shape {tuple(weight.shape)}")
    effective = kept_value(quantized_int(weight, scale), mh, ml) * scale.detach()
    gated = weight * (mh | ml).to(weight.dtype)
    return gated + (effective.to(weight.dtype) - gated).detach()


__all__ = [
    "NIBBLE_MAX",
    "NIBBLE_MIN",
    "SHIFT_HIGH",
    "SHIFT_LOW",
    "SUBWORD_QMAX",
    "SubwordMasks",
    "channel_scales_torch",
    "full_masks",
    "kept_value",
    "low_subword",
    "merge_subwords",
    "prune_subwords",
    "quantize_for_subwords",
    "quantized_int",
    "recompose",
    "row_shifts",
    "split_int8",
    "subword_contributions",
    "subword_effective_int8",
    "subword_importance",
    "subword_masked_weight",
    "subword_matrix",
    "subword_sparsity",
]
