"""Bit-exact int8 execution of a packed layer on the array, and the int8 reference GEMM it must equal.

Weights are quantized with the project's shared per-column int8 scheme (`tightcompress.quant`), so the
packed slots and the reference matrix hold the very same integers. The array simulation walks the format
exactly as the hardware does: for each tile, the activations enter in that tile's row permutation; each
group's lanes form a bus of `size_g` int8 activations; each physical row of the group drives every PE of the
row with its G:1 multiplexer set to the slot's lane index; the PE multiplies the selected int8 activation
by its int8 weight (exact in int32) and adds it to the int32 partial sum coming down its column. The
partial sums leaving the bottom of the tile are the outputs of the tile's columns (`col_perm`).
int32 additions wrap like the hardware's (two's complement), and so does the reference.
"""

from __future__ import annotations

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.quant import INT8_MAX, column_scales, quantize_columns


def quantize_packed(
    packed: PackedMatrix, scales: np.ndarray | None = None, qmax: int = INT8_MAX
) -> tuple[np.ndarray, np.ndarray]:
    """`(q_values, scales)`: the slots' int8 weights `(total_rows, C)` and the per-column scales `(N,)`.

    The scales default to those of the kept matrix `packed.to_dense()`, i.e. what
    `quantize_columns(packed.to_dense())` uses, so both sides quantize every weight identically.
    """
    if scales is None:
        scales = column_scales(packed.to_dense(), qmax)
    scales = np.asarray(scales, dtype=np.float64)
    if scales.shape != (packed.N,):
        raise TightCompressError(f"scales must have shape ({packed.N},), got {scales.shape}")
    cols = packed.col_perm.reshape(packed.n_tiles, packed.tile)[packed.slot_tiles()]  # (rows, C)
    slot_scale = np.where(cols >= 0, scales[np.maximum(cols, 0)], 1.0)
    values = np.asarray(packed.values, dtype=np.float64)
    q = np.clip(np.rint(values / slot_scale), -qmax, qmax).astype(np.int8)
    return q, scales


def reference_weights_int8(packed: PackedMatrix, qmax: int = INT8_MAX) -> tuple[np.ndarray, np.ndarray]:
    """`(W_q, scales)`: the kept `K x N` matrix quantized per column to int8 (the reference's weights)."""
    return quantize_columns(packed.to_dense(), qmax=qmax)


def reference_gemm_int8(x_q: np.ndarray, w_q: np.ndarray) -> np.ndarray:
    """`x_q @ w_q` for int8 `(M, K)` and `(K, N)`, accumulated exactly and returned as int32 (wrapping)."""
    x_q, w_q = _as_int8(x_q, "activations"), _as_int8(w_q, "weights")
    if x_q.shape[1] != w_q.shape[0]:
        raise TightCompressError(f"x has K={x_q.shape[1]} features, W has K={w_q.shape[0]} rows")
    return (x_q.astype(np.int64) @ w_q.astype(np.int64)).astype(np.int32)


def run_packed_int8(packed: PackedMatrix, x_q: np.ndarray, q_values: np.ndarray | None = None) -> np.ndarray:
    """The array's int32 outputs `(M, N)` for int8 activations `(M, K)`, fed through the packed format.

    `q_values` are the int8 slot weights (default: `quantize_packed(packed)[0]`).
    """
    x_q = _as_int8(np.atleast_2d(x_q), "activations")
    if x_q.shape[1] != packed.K:
        raise TightCompressError(f"activations have {x_q.shape[1]} features, the matrix has K={packed.K}")
    if q_values is None:
        q_values = quantize_packed(packed)[0]
    q_values = _as_int8(q_values, "slot weights")
    if q_values.shape != packed.values.shape:
        raise TightCompressError(f"slot weights must have shape {packed.values.shape}, got {q_values.shape}")
    return run_array(packed, x_q, q_values, packed.lanes)


def run_array(
    packed: PackedMatrix,
    x_q: np.ndarray,
    slot_values: np.ndarray,
    slot_lanes: np.ndarray,
    slot_shifts: np.ndarray | None = None,
    input_of_row: np.ndarray | None = None,
) -> np.ndarray:
    """The array walk shared by the word and subword simulators; int32 `(M, N)` outputs.

    Per tile, the activations enter in the tile's row order (row `r` of the packed matrix reads input
    `input_of_row[r]`, default `r`); each group's inputs form a bus; each slot's multiplexer picks the lane
    `slot_lanes` names, the PE multiplies it by `slot_values` (int32-exact), shifts the product left by
    `slot_shifts` (default 0) and adds it to the int32 partial sum running down its column.
    """
    m = x_q.shape[0]
    out = np.zeros((m, packed.N), dtype=np.int32)
    offsets = packed.tile_row_offsets
    starts = packed.group_offsets
    values32 = slot_values.astype(np.int32)
    lanes64 = slot_lanes.astype(np.int64)
    with np.errstate(over="ignore"):
        for t in range(packed.n_tiles):
            rows = packed.row_perm[t] if input_of_row is None else input_of_row[packed.row_perm[t]]
            x_perm = x_q[:, rows].astype(np.int32)  # activations in this tile's row order
            psum = np.zeros((m, packed.tile), dtype=np.int32)  # partial sums entering the top of the tile
            row = int(offsets[t])
            for g in range(packed.n_groups):
                bus = x_perm[:, starts[g] : starts[g + 1]]  # (M, size_g): the group's lanes
                for _ in range(int(packed.heights[g, t])):
                    if np.any(lanes64[row] >= bus.shape[1]):
                        raise TightCompressError(f"slot row {row} selects a lane outside its group")
                    product = bus[:, lanes64[row]] * values32[row]  # each PE's G:1 mux, then multiply
                    if slot_shifts is not None:
                        product = np.left_shift(product, slot_shifts[row].astype(np.int32))
                    psum += product
                    row += 1
            cols = packed.col_perm[t * packed.tile : (t + 1) * packed.tile]
            live = cols >= 0
            out[:, cols[live]] = psum[:, live]
    return out


def check_bitexact(packed: PackedMatrix, x_q: np.ndarray, w_q: np.ndarray | None = None) -> bool:
    """True when the packed array's int32 outputs equal the int8 reference GEMM bit for bit.

    `w_q` is the reference's int8 `K x N` matrix (default: `reference_weights_int8(packed)[0]`).
    """
    if w_q is None:
        w_q = reference_weights_int8(packed)[0]
    return bool(np.array_equal(run_packed_int8(packed, x_q), reference_gemm_int8(x_q, w_q)))


def random_activations(m: int, k: int, seed: int = 0) -> np.ndarray:
    """Uniform int8 activations in `[-128, 127]`, `(M, K)`, for tests and demos."""
    return np.random.default_rng(seed).integers(-128, 128, size=(m, k), dtype=np.int8)


def _as_int8(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.int8:
        raise TightCompressError(f"{what} must be int8, got dtype {array.dtype}")
    return array
