"""Pack the `2K x N` subword matrix of an int8 layer into the tight format, one 4-bit subword per slot.

The subword matrix (see `tightcompress.prune.subword`) goes through the ordinary tight search and packing
(`tightcompress.api.pack`, called by `tightcompress.subword_packer.pack_subwords`, which lives above `api`
so that `prune` never imports it). What is searched and placed is each subword's contribution to its
weight, `16*a` on high rows and `b` on low rows, so a capped height drops the subwords whose loss is
smallest; the slots then store the 4-bit value itself. A slot holds a signed 4-bit value, its lane index
(`ceil(log2 G)` bits) and one shift bit (4 for a high subword, 0 for a low one). The shift is the parity of
the slot's source row (`row_perm` + lane), so the plain `PackedMatrix` (and its safetensors file) carries
it: `from_packed` rebuilds it.

Rates in bits (dense is `8*K*N` bits): `bit_rate = 8*K*N / (4 * slots)` without index bits and
`bit_rate_with_index = 8*K*N / ((4 + 1 + ceil(log2 G)) * slots)`; the word-level tight rates are
`8*K*N / (8 * slots)` and `8*K*N / ((8 + ceil(log2 G)) * slots)` (`word_bit_rates`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.prune.subword import (
    NIBBLE_MAX,
    NIBBLE_MIN,
    SHIFT_HIGH,
    SubwordMasks,
    recompose,
    subword_matrix,
)

VALUE_BITS = 4
SHIFT_BITS = 1
WORD_BITS = 8


SUBWORD_METHOD = "tight-subword"  # `PackedMatrix.method` of a packed 2K x N subword matrix


def is_subword(packed: PackedMatrix) -> bool:
    """True for a layer packed as 4-bit subwords (`store_kept_values` marked it)."""
    return packed.method == SUBWORD_METHOD


def weight_shape(packed: PackedMatrix) -> tuple[int, int]:
    """`(K, N)` of the weights a packed layer holds (a subword layer's matrix has 2K rows)."""
    return (packed.K // 2, packed.N) if is_subword(packed) else (packed.K, packed.N)


def weight_matrix(packed: PackedMatrix) -> np.ndarray:
    """The `K x N` weights a packed layer holds: its kept values, or for a subword layer the int8 weights its
    kept subwords recompose times the column scales (`info["scales"]`; 1 without), as float32."""
    if not is_subword(packed):
        return packed.to_dense()
    q = recompose(packed.to_dense().astype(np.int8)).astype(np.float32)
    scales = np.asarray(packed.info.get("scales", np.ones(q.shape[1])), dtype=np.float32)
    return q * scales[None, :]


def word_bit_rates(packed: PackedMatrix, weight_bits: int = WORD_BITS) -> tuple[float, float]:
    """Word-level `(bit_rate, bit_rate_with_index)`: `8KN / (8 slots)` and `8KN / ((8 + index) slots)`."""
    dense_bits = WORD_BITS * packed.K * packed.N
    slots = max(packed.packed_slots, 1)
    return dense_bits / (weight_bits * slots), dense_bits / ((weight_bits + packed.index_bits) * slots)


def store_kept_values(packed: PackedMatrix, q: np.ndarray) -> PackedMatrix:
    """Turn placed contributions of int8 `q`'s subwords into slot values: the subwords of the kept values.

    Each slot holds the 4-bit subword of `kept_value(q, kept high, kept low)` at its source, the kept masks
    being the slots the search filled. Without drops that is `q`'s own subword; a weight whose high subword
    a capped height dropped holds `clamp(q, -8, 7)` in its low slot (not the residue), so the packed layer
    always recomposes the one subword arithmetic. Sets `packed.values` (int8) and `method`.
    """
    src_row, src_col = packed.slot_sources()
    used = src_row >= 0
    placed = np.zeros((packed.K, packed.N), dtype=bool)
    placed[src_row[used], src_col[used]] = True
    target = subword_matrix(q, SubwordMasks(placed[0::2], placed[1::2]))
    values = np.zeros(packed.values.shape, dtype=np.int8)
    values[used] = target[src_row[used], src_col[used]]
    packed.values = values
    packed.method = SUBWORD_METHOD
    return packed


def slot_shifts(packed: PackedMatrix) -> np.ndarray:
    """Shift of each slot of a packed subword matrix: 4 if its source row is a high row (even), else 0."""
    src_row, _ = packed.slot_sources()
    return np.where((src_row >= 0) & (src_row % 2 == 0), SHIFT_HIGH, 0).astype(np.uint8)


@dataclass(eq=False)
class SubwordPacked:
    """A `K x N` int8 layer packed as subwords: the `2K x N` packed subword matrix plus each slot's shift.

    `packed.values` are the signed 4-bit subwords (int8 dtype); `shifts` is `(total_rows, tile)` uint8.
    """

    packed: PackedMatrix
    shifts: np.ndarray
    word_packed: PackedMatrix | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_packed(cls, packed: PackedMatrix, word_packed: PackedMatrix | None = None) -> SubwordPacked:
        """Wrap a packed `2K x N` subword matrix (e.g. read back by `load_packed`), deriving the shifts."""
        if packed.K % 2:
            raise TightCompressError(f"a subword matrix has an even number of rows, got K={packed.K}")
        return cls(packed=packed, shifts=slot_shifts(packed), word_packed=word_packed)

    # ---------------------------------------------------------------------------------------- shape
    @property
    def K(self) -> int:
        """Inputs of the int8 layer (half the subword rows)."""
        return self.packed.K // 2

    @property
    def N(self) -> int:
        """Outputs of the layer (columns)."""
        return self.packed.N

    @property
    def group(self) -> int:
        """G: subword rows per group (the multiplexer's inputs)."""
        return self.packed.group

    @property
    def packed_slots(self) -> int:
        """Slots of the packed subword matrix, `sum_t H_t * C`."""
        return self.packed.packed_slots

    @property
    def slot_bits(self) -> int:
        """Bits per slot: 4-bit value, 1 shift bit, `ceil(log2 G)` lane bits."""
        return VALUE_BITS + SHIFT_BITS + self.packed.index_bits

    # ---------------------------------------------------------------------------------------- rates
    @property
    def dense_bits(self) -> int:
        """Bits of the dense int8 layer, `8*K*N`."""
        return WORD_BITS * self.K * self.N

    @property
    def bit_rate(self) -> float:
        """`8*K*N / (4 * slots)`: dense bits over the slots' value bits."""
        return self.dense_bits / max(VALUE_BITS * self.packed_slots, 1)

    @property
    def bit_rate_with_index(self) -> float:
        """`8*K*N / ((4 + 1 + ceil(log2 G)) * slots)`: dense bits over all the slots' bits."""
        return self.dense_bits / max(self.slot_bits * self.packed_slots, 1)

    # ------------------------------------------------------------------------------------ semantics
    def to_subword_dense(self) -> np.ndarray:
        """The `2K x N` int8 matrix of kept 4-bit subwords."""
        return self.packed.to_dense().astype(np.int8)

    def to_int8_dense(self) -> np.ndarray:
        """The `K x N` int8 matrix the kept subwords recompose: `16*a + b` per weight."""
        return recompose(self.to_subword_dense())

    def kept_masks(self) -> SubwordMasks:
        """Masks of the subwords that made it into the slots (a capped height may drop some)."""
        sub = self.to_subword_dense() != 0
        return SubwordMasks(sub[0::2].copy(), sub[1::2].copy())

    def validate(self) -> None:
        """Check the tight-format invariants, the 4-bit value range and the shift of every slot."""
        self.packed.validate()
        values = self.packed.values
        if np.any(values < NIBBLE_MIN) or np.any(values > NIBBLE_MAX):
            raise TightCompressError("a slot value is outside the signed 4-bit range [-8, 7]")
        if self.shifts.shape != values.shape or not np.array_equal(self.shifts, slot_shifts(self.packed)):
            raise TightCompressError("slot shifts disagree with the source rows of the slots")

    def report(self) -> dict[str, Any]:
        """Per-layer report: the tight-format fields over the subword matrix plus the bit rates."""
        rep = self.packed.report()
        kept = int(np.count_nonzero(self.packed.values))
        rep.update(
            K=self.K,
            N=self.N,
            method="tight-subword",
            granularity="subword",
            subword_rows=2 * self.K,
            kept_subwords=kept,
            subword_sparsity=1.0 - kept / (2 * self.K * self.N),
            value_bits=VALUE_BITS,
            slot_bits=self.slot_bits,
            dense_bits=self.dense_bits,
            packed_bits=self.slot_bits * self.packed_slots,
            bit_rate=self.bit_rate,
            bit_rate_with_index=self.bit_rate_with_index,
            storage_rate_bits=self.bit_rate_with_index,
        )
        if self.word_packed is not None:
            rate, rate_index = word_bit_rates(self.word_packed)
            rep.update(
                word_packed_slots=self.word_packed.packed_slots,
                word_bit_rate=rate,
                word_bit_rate_with_index=rate_index,
            )
        rep.update(self.info)
        return rep
