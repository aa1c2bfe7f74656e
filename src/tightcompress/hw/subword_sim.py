"""Bit-exact simulation of the subword array: 4-bit x 8-bit multipliers, a shift bit, int32 accumulation.

Each slot is a `4 + 1 + ceil(log2 G)`-bit word (`encode_slots`): bits 0-3 the signed 4-bit subword (two's
complement), bit 4 the shift bit (1 = shift left by 4, a high subword), the bits above the lane index. The
simulator sees only these words and the arrangement arrays of the tight format. Tile by tile, each group
of a tile puts its `G` inputs on a bus in the tile's row order (subword row `s` carries activation
`x[s // 2]`: both subwords of an input read the same wire); each slot's G:1 multiplexer picks the bus
entry its lane names, multiplies it by the 4-bit value (a 12-bit signed product), shifts the product left by
4 when the shift bit is set, and adds it to the int32 partial sum running down the array column. The
result must equal the int8 reference GEMM `x @ W` (int32) of the recomposed weights exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.hw.bitexact import run_array
from tightcompress.hw.energy import EnergyTable

if TYPE_CHECKING:
    from tightcompress.hw.arch import Architecture
from tightcompress.prune.subword_pack import SHIFT_BITS, VALUE_BITS, SubwordPacked

INT32_MAX = np.iinfo(np.int32).max


def encode_slots(sp: SubwordPacked) -> np.ndarray:
    """`(total_rows, tile)` uint16 slot words: `value & 0xF | shift_bit << 4 | lane << 5` (0 if unused)."""
    values = sp.packed.values.astype(np.int16)
    if np.any(values < -8) or np.any(values > 7):
        raise TightCompressError("a slot value does not fit a signed 4-bit field")
    if not np.all(np.isin(sp.shifts, (0, 4))):
        raise TightCompressError("a slot shift is neither 0 nor 4")
    lanes = sp.packed.lanes.astype(np.uint16)
    if np.any(lanes >= 1 << sp.packed.index_bits):
        raise TightCompressError("a lane index does not fit its ceil(log2 G)-bit field")
    shift_bit = (sp.shifts == 4).astype(np.uint16)
    words = (values.astype(np.uint16) & 0xF) | (shift_bit << 4) | (lanes << 5)
    return np.where(values != 0, words, 0).astype(np.uint16)


def decode_slots(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(value int32 in [-8, 7], shift 0 or 4, lane)` from slot words (sign-extends the 4-bit field)."""
    words = words.astype(np.int32)
    nibble = words & 0xF
    value = np.where(nibble >= 8, nibble - 16, nibble)
    shift = ((words >> 4) & 1) * 4
    lane = words >> 5
    return value.astype(np.int32), shift.astype(np.int32), lane.astype(np.int64)


def reference_gemm(x: np.ndarray, w_int8: np.ndarray) -> np.ndarray:
    """The int8 reference `x @ W` accumulated in int32 (computed in int64, checked to fit)."""
    out = _check_int8(x, "activations").astype(np.int64) @ _check_int8(w_int8, "weights").astype(np.int64)
    if out.size and np.abs(out).max() > INT32_MAX:
        raise TightCompressError("the reference GEMM overflows int32")
    return out.astype(np.int32)


def simulate_subword_gemm(sp: SubwordPacked, x: np.ndarray) -> np.ndarray:
    """`x @ W` (int32 `(M, N)`) as the subword array computes it from the slots; `x` is int8 `(M, K)`."""
    x = _check_int8(x, "activations")
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    if x.shape[1] != sp.K:
        raise TightCompressError(f"activations have {x.shape[1]} features, the layer has K={sp.K}")
    # Worst case |partial sum| = 2K * 8 * 128 * 16; the int32 accumulator must hold it.
    if 2 * sp.K * 8 * 128 * 16 > INT32_MAX:
        raise TightCompressError(f"K={sp.K} can overflow the int32 accumulator")
    value, shift, lane = decode_slots(encode_slots(sp))
    # Subword row s of the 2K x N matrix carries activation x[s // 2]: both subwords read the same wire.
    out = run_array(sp.packed, x, value, lane, shift, input_of_row=np.arange(2 * sp.K) // 2)
    return out[0] if squeeze else out


def _check_int8(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise TightCompressError(f"{what} must be integers (int8), got dtype {a.dtype}")
    if a.size and (a.min() < -128 or a.max() > 127):
        raise TightCompressError(f"{what} leave the int8 range")
    return a


def simulate_subword(
    sp: SubwordPacked,
    *,
    array: tuple[int, int] | str = (32, 32),
    m: int = 1,
    energy: EnergyTable | None = None,
    cc_baseline: PackedMatrix | None = None,
    arch: Architecture | None = None,
) -> dict:
    """Cycles and energy of a packed subword layer with 4-bit x 8-bit multipliers, against dense int8 (and
    against `cc_baseline`, column combining of the int8 weights, with 8-bit weights: `*_vs_cc` fields).

    The subword array runs `sp.packed` (`2K x N`, one 4-bit subword per slot, one shift bit besides the
    lane index); the dense baseline is the recomposed `K x N` int8 matrix packed dense (method dense, tile =
    the array's columns) on the same array with 8-bit weights. Fields: cycles, dense_cycles, speedup,
    utilization_pe, dense_utilization_pe, energy_pj, dense_energy_pj, energy_gain, energy_breakdown_pj,
    dense_energy_breakdown_pj, weight_bits, slot_extra_bits, useful_macs (kept subwords x M). `arch`
    (`hw.arch`): buffers and bandwidths for the layer and both baselines (its `bits.weight` is the
    baselines' weight width; the subword slots keep 4 bits).
    """
    from tightcompress.baselines import pack_dense
    from tightcompress.hw.cycles import parse_array
    from tightcompress.hw.simulate import layer_cycles, layer_energy, simulate_packed, versus_cc

    shape = parse_array(array)
    dense = pack_dense(sp.to_int8_dense().astype(np.float32), tile=shape[1])
    result = simulate_packed(
        sp.packed,
        array=shape,
        m=m,
        energy=energy,
        weight_bits=VALUE_BITS,
        slot_extra_bits=SHIFT_BITS,
        dense=dense,
        arch=arch,
        input_features=sp.K,
    )
    # simulate_packed charges its dense baseline with the same weight width; the baseline here is int8.
    base_bits = arch.weight_bits if arch is not None else 8
    table = energy or (arch.energy if arch is not None else None)
    dense_cyc = layer_cycles(dense, shape, m, arch=arch, weight_bits=base_bits)
    dense_en = layer_energy(dense, shape, m, table=table, arch=arch, weight_bits=base_bits)
    result.update(
        {
            "dense_cycles": dense_cyc.cycles,
            "speedup": dense_cyc.cycles / result["cycles"] if result["cycles"] else 0.0,
            "dense_utilization_pe": dense_cyc.utilization_pe,
            "dense_energy_pj": dense_en["energy_pj"],
            "energy_gain": dense_en["energy_pj"] / result["energy_pj"] if result["energy_pj"] else 0.0,
            "dense_energy_breakdown_pj": dense_en["breakdown_pj"],
            "dense_stall_cycles": dense_cyc.stall_cycles,
            "weight_bits": VALUE_BITS,
            "slot_extra_bits": SHIFT_BITS,
        }
    )
    if cc_baseline is not None:
        result.update(versus_cc(result, cc_baseline, shape, m, table=table, weight_bits=base_bits, arch=arch))
    return result
