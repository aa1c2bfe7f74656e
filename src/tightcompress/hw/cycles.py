"""Cycle model of a weight-stationary systolic array of `R x C` PEs running one GEMM layer.

The layer is `Y = X @ W` with `X` of `M x K` (M input vectors: output pixels x batch) and `W` of `K x N`.
A *pass* maps `h <= R` weight rows by `w <= C` weight columns onto the array; its cost, counted the way
SCALE-Sim v3 counts a weight-stationary fold, is

    2R + C + M - 2  =  R (load the weights, one array row per cycle)
                     + M (stream the input vectors)
                     + (R - 1) + (C - 1) (skew: fill the pipeline and drain the last partial sums)

SCALE-Sim pads every fold to the full array, so a partly used fold costs the same as a full one (the default
here too). `trim=True` instead charges `2h + w + M - 2` for an `h x w` fold (an array that loads and skews
only the rows and columns in use); it is an option, not what the reference simulator counts.

A dense layer has `ceil(K/R) * ceil(N/C)` folds. A packed layer in the tight format runs tile by tile: tile
`t` has `H_t` physical rows (its packed height), and costs exactly what a dense tile of `H_t` rows costs:
`ceil(H_t / R)` row folds of its columns. Tiles narrower than the array share a pass when they read
their inputs in the same order (same row permutation: dense, N:M, column combining); the shared pass then
has, per group, the tallest of their group heights. Tiles wider than the array take several column folds.

SCALE-Sim's own `Total Cycles` figure is this sum minus one (it reports the index of the last busy cycle);
`scalesim_total_cycles` gives that number for an exact comparison.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix

MAX_ARRAY_SIDE = 65_536  # PE array rows or columns
MAX_VECTORS = (
    2**40
)  # input vectors M per layer: cycle and MAC counts stay exact in int64, energies in float64


def check_vectors(m: int) -> int:
    """M (input vectors per layer) as an int in `[1, MAX_VECTORS]`, or a one-line error."""
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or not 1 <= m <= MAX_VECTORS:
        raise TightCompressError(f"M (input vectors) must be an integer in [1, 2**40], got {m!r}")
    return int(m)


def parse_array(text: str | tuple[int, int]) -> tuple[int, int]:
    """`"32x32"` (rows x columns) or a pair -> `(R, C)`, both positive, or a one-line error."""
    if isinstance(text, tuple | list):
        parts = [str(v) for v in text]
    else:
        parts = str(text).lower().replace("*", "x").split("x")
    try:
        rows, cols = (int(p) for p in parts)
    except ValueError:
        raise TightCompressError(f"array must be ROWSxCOLS such as 32x32, got {text!r}") from None
    if not (1 <= rows <= MAX_ARRAY_SIDE and 1 <= cols <= MAX_ARRAY_SIDE):
        raise TightCompressError(
            f"array rows and columns must be in [1, {MAX_ARRAY_SIDE}], got {rows}x{cols}"
        )
    return rows, cols


def fold_cycles(
    rows: int,
    cols: int,
    m: int,
    *,
    used_rows: int | None = None,
    used_cols: int | None = None,
    trim: bool = False,
) -> int:
    """Cycles of one weight-stationary fold: `2R + C + M - 2` (or `2h + w + M - 2` when `trim`)."""
    r = used_rows if (trim and used_rows is not None) else rows
    c = used_cols if (trim and used_cols is not None) else cols
    return 2 * r + c + m - 2


def pass_cycles(height: int, width: int, m: int, array: tuple[int, int], *, trim: bool = False) -> int:
    """Cycles of an `height x width` weight block (`width <= C`) run in `ceil(height / R)` row folds."""
    rows, cols = array
    if width > cols:
        raise TightCompressError(f"a pass of width {width} does not fit {cols} array columns")
    if not trim:
        return math.ceil(height / rows) * fold_cycles(rows, cols, m)
    total = 0
    for start in range(0, height, rows):
        used = min(rows, height - start)
        total += fold_cycles(rows, cols, m, used_rows=used, used_cols=width, trim=True)
    return total


def dense_gemm_cycles(k: int, n: int, m: int, array: tuple[int, int], *, trim: bool = False) -> int:
    """Cycles of a dense `K x N` layer with M input vectors: `ceil(K/R) * ceil(N/C)` folds."""
    rows, cols = array
    if not trim:
        return math.ceil(k / rows) * math.ceil(n / cols) * fold_cycles(rows, cols, m)
    return sum(pass_cycles(k, min(cols, n - start), m, array, trim=True) for start in range(0, n, cols))


def scalesim_total_cycles(k: int, n: int, m: int, array: tuple[int, int]) -> int:
    """The number SCALE-Sim v3 prints as weight-stationary `Total Cycles` (no stalls): folds' sum - 1."""
    return dense_gemm_cycles(k, n, m, array) - 1


@dataclass(frozen=True)
class ArrayPass:
    """One pass over the array: `height` physical rows, `width` columns used, `inputs` activations streamed
    per input vector (the rows of `X` its non-empty groups read), `tiles` the packed tiles it runs."""

    height: int
    width: int
    inputs: int
    tiles: tuple[int, ...]
    fold_inputs: tuple[int, ...] = ()  # activations per input vector each row fold streams (see below)


def fold_inputs(heights: np.ndarray, sizes: np.ndarray, rows: int) -> tuple[int, ...]:
    """Activations per input vector each row fold of a pass streams: the lanes (group size) of every
    non-empty group with a physical row in the fold. Groups are stacked in order; a group cut by a fold
    boundary feeds its G lanes to both folds."""
    heights = np.asarray(heights, dtype=np.int64)
    ends = np.cumsum(heights)
    starts = ends - heights
    total = int(ends[-1]) if len(ends) else 0
    lows = np.arange(0, total, rows)
    live = heights > 0
    hits = live[None, :] & (starts[None, :] < lows[:, None] + rows) & (ends[None, :] > lows[:, None])
    return tuple(int(v) for v in (hits * np.asarray(sizes, dtype=np.int64)[None, :]).sum(axis=1))


def array_passes(packed: PackedMatrix, array: tuple[int, int]) -> list[ArrayPass]:
    """How the packed tiles map onto passes of an `R x C` array (see the module docstring)."""
    rows, cols = array
    tile = packed.tile
    live_cols = (packed.col_perm.reshape(packed.n_tiles, tile) >= 0).sum(axis=1)
    sizes = packed.group_sizes
    passes: list[ArrayPass] = []
    if tile > cols:
        for t in range(packed.n_tiles):
            h = int(packed.tile_rows[t])
            for start in range(0, int(live_cols[t]), cols):
                inputs = int(sizes[packed.heights[:, t] > 0].sum())
                per_fold = fold_inputs(packed.heights[:, t], sizes, rows)
                passes.append(ArrayPass(h, min(cols, int(live_cols[t]) - start), inputs, (t,), per_fold))
        return passes
    per_pass = cols // tile
    t = 0
    while t < packed.n_tiles:
        members = [t]
        while (
            len(members) < per_pass
            and members[-1] + 1 < packed.n_tiles
            and np.array_equal(packed.row_perm[members[-1] + 1], packed.row_perm[t])
        ):
            members.append(members[-1] + 1)
        heights = packed.heights[:, members].max(axis=1)
        width = int(sum(tile if i < len(members) - 1 else live_cols[j] for i, j in enumerate(members)))
        inputs = int(sizes[heights > 0].sum())
        per_fold = fold_inputs(heights, sizes, rows)
        passes.append(ArrayPass(int(heights.sum()), width, inputs, tuple(members), per_fold))
        t = members[-1] + 1
    return passes


def column_occupancy(packed: PackedMatrix, array: tuple[int, int]) -> float:
    """Fraction of the array's columns the layer's folds use (1.0 when every fold is full width).

    A tight tile narrower than the array runs alone (its rows are in its own order), so with a tile of
    `C / 4` the folds use a quarter of the columns: the cost of a tile that does not match the array.
    """
    rows, cols = parse_array(array)
    folds = width = 0
    for p in array_passes(packed, (rows, cols)):
        f = math.ceil(p.height / rows)
        folds += f
        width += f * p.width
    return width / (folds * cols) if folds else 1.0


@dataclass(frozen=True)
class CycleReport:
    """Cycle-model figures of one layer on one array."""

    cycles: int
    passes: int
    folds: int
    pe_cycles: int
    useful_macs: int
    occupied_macs: int
    utilization_pe: float
    stall_cycles: int = 0  # included in `cycles`: buffers that cannot feed the array (`bandwidth_stalls`)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON fields."""
        return asdict(self)


def packed_cycles(
    packed: PackedMatrix, array: tuple[int, int] = (32, 32), m: int = 1, *, trim: bool = False
) -> CycleReport:
    """Cycles, folds and PE utilization (useful MACs / PE-cycles) of a packed layer with M input vectors.

    Useful MACs are `kept nonzeros x M`; occupied MACs count every slot a pass loads (zeros too) x M.
    """
    rows, cols = parse_array(array)
    m = check_vectors(m)
    cycles = folds = occupied = 0
    plan = array_passes(packed, (rows, cols))
    for p in plan:
        cycles += pass_cycles(p.height, p.width, m, (rows, cols), trim=trim)
        folds += math.ceil(p.height / rows)
        occupied += p.height * p.width * m
    pe_cycles = cycles * rows * cols
    useful = packed.nnz * m
    return CycleReport(
        cycles=cycles,
        passes=len(plan),
        folds=folds,
        pe_cycles=pe_cycles,
        useful_macs=useful,
        occupied_macs=occupied,
        utilization_pe=useful / pe_cycles if pe_cycles else 0.0,
    )


def bandwidth_stalls(
    packed: PackedMatrix,
    array: tuple[int, int],
    m: int,
    *,
    act_bits: int,
    slot_bits: int,
    acc_bits: int,
    act_bandwidth: float,
    weight_bandwidth: float,
    out_bandwidth: float,
    trim: bool = False,
) -> dict[str, int]:
    """Stall cycles of a layer whose buffers deliver fewer bits per cycle than the array consumes.

    Bandwidths are bits per cycle (`math.inf`: never a stall, the built-in architecture). Per row fold:
    - loading its weights (`h x w` slots of `slot_bits`) takes `ceil(h * w * slot_bits / weight_bandwidth)`
      cycles where the cycle model charges R (h with `trim`); the excess stalls;
    - streaming M input vectors needs, every cycle, the G lanes of each group in the fold (`fold_inputs`,
      R for a dense fold) of `act_bits` each from the activation buffer, and `w` partial sums of
      `acc_bits` written to the output buffer (and read back, for every fold after a pass's first);
      the stream takes `ceil(M * bits per vector / bandwidth)` cycles when that exceeds M, and the slower
      of the two buffers sets it.
    Returns `{"activations": ..., "weights": ..., "outputs": ..., "total": ...}`; each stream stall goes to
    the buffer that set it.
    """
    rows, cols = parse_array(array)
    out = {"activations": 0, "weights": 0, "outputs": 0}
    if math.isinf(act_bandwidth) and math.isinf(weight_bandwidth) and math.isinf(out_bandwidth):
        return {**out, "total": 0}
    for p in array_passes(packed, (rows, cols)):
        for f, inputs in enumerate(p.fold_inputs):
            used = min(rows, p.height - f * rows)
            load = used if trim else rows
            if not math.isinf(weight_bandwidth):
                out["weights"] += max(0, math.ceil(used * p.width * slot_bits / weight_bandwidth) - load)
            act = _stream_cycles(m, inputs * act_bits, act_bandwidth)
            psums = p.width * acc_bits * (2 if f > 0 else 1)
            outs = _stream_cycles(m, psums, out_bandwidth)
            if max(act, outs) > m:
                out["activations" if act >= outs else "outputs"] += max(act, outs) - m
    return {**out, "total": sum(out.values())}


def _stream_cycles(m: int, bits_per_vector: int, bandwidth: float) -> int:
    """Cycles to move M vectors of `bits_per_vector` at `bandwidth` bits per cycle, at least M."""
    if math.isinf(bandwidth) or bits_per_vector == 0:
        return m
    return max(m, math.ceil(m * bits_per_vector / bandwidth))
