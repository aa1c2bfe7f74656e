"""Packing the subword matrix in the tight format and the bit-exact 4-bit x 8-bit array simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tightcompress.errors import TightCompressError
from tightcompress.format import load_packed, save_packed
from tightcompress.hw.subword_sim import decode_slots, encode_slots, reference_gemm, simulate_subword_gemm
from tightcompress.prune.subword import (
    full_masks,
    prune_subwords,
    quantize_for_subwords,
    subword_contributions,
    subword_effective_int8,
)
from tightcompress.prune.subword_pack import SubwordPacked, slot_shifts, word_bit_rates
from tightcompress.subword_packer import pack_subwords


def _layer(seed: int, K: int, N: int, word_sparsity: float, subword_sparsity: float):
    rng = np.random.default_rng(seed)
    q, scales = quantize_for_subwords(rng.standard_normal((K, N)))
    q[rng.random((K, N)) < word_sparsity] = 0
    q[0, 0] = 100  # never all zero
    masks = prune_subwords(q, subword_sparsity, scales=scales)
    return rng, q, masks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    K=st.integers(1, 24),
    N=st.integers(1, 20),
    group=st.integers(1, 8),
    tile=st.integers(1, 8),
    capped=st.booleans(),
    height_frac=st.floats(0.0, 1.0),
    word_sparsity=st.floats(0.0, 0.95),
    subword_sparsity=st.floats(0.0, 0.95),
    M=st.integers(1, 4),
)
def test_simulation_equals_int8_reference(
    seed: int,
    K: int,
    N: int,
    group: int,
    tile: int,
    capped: bool,
    height_frac: float,
    word_sparsity: float,
    subword_sparsity: float,
    M: int,
) -> None:
    rng, q, masks = _layer(seed, K, N, word_sparsity, subword_sparsity)
    height = max(1, round(height_frac * group)) if capped else "auto"
    if not (masks.high.any() or masks.low.any()):
        with pytest.raises(TightCompressError, match="every subword is pruned"):
            pack_subwords(q, masks, group=group, tile=tile)
        return
    sp = pack_subwords(q, masks, group=group, height=height, tile=tile, seed=seed, iterations=60)
    sp.validate()
    x = rng.integers(-128, 128, size=(M, K)).astype(np.int8)
    kept = sp.to_int8_dense()
    assert np.array_equal(simulate_subword_gemm(sp, x), reference_gemm(x, kept))
    effective = subword_effective_int8(q, masks)
    if not capped:
        assert np.array_equal(kept, effective)  # lossless: every kept subword is in a slot
        assert np.array_equal(simulate_subword_gemm(sp, x), reference_gemm(x, effective))
    else:
        # a capped height only drops subwords, never invents one; the kept ones hold the kept value
        got = sp.kept_masks()
        assert not np.any(got.high & ~masks.high) and not np.any(got.low & ~masks.low)
        assert np.array_equal(kept, subword_effective_int8(effective, got))
    # every slot's shift is the parity of its source subword row
    src_row, _ = sp.packed.slot_sources()
    used = src_row >= 0
    assert np.array_equal(sp.shifts[used], np.where(src_row[used] % 2 == 0, 4, 0))
    assert not np.any(sp.shifts[~used])


def test_capped_height_drops_least_important_subwords() -> None:
    _, q, masks = _layer(7, 48, 16, 0.5, 0.3)
    sp = pack_subwords(q, masks, group=8, height=1, tile=8, iterations=500)
    sp.validate()
    assert sp.report()["dropped_nnz"] > 0
    got = sp.kept_masks()
    contrib = np.abs(subword_contributions(q, masks))
    kept_rows = np.zeros_like(contrib, dtype=bool)
    kept_rows[0::2], kept_rows[1::2] = got.high, got.low
    # the dropped loss is reported in quantization steps of the contributions
    dropped = contrib[(contrib != 0) & ~kept_rows].sum()
    assert sp.report()["dropped_magnitude_fraction"] == pytest.approx(dropped / contrib.sum())


def test_rates_in_bits() -> None:
    _, q, masks = _layer(8, 40, 24, 0.6, 0.85)
    sp = pack_subwords(q, masks, group=8, tile=8, iterations=300, word_level=True)
    K, N = q.shape
    slots = int(sp.packed.heights.sum()) * sp.packed.tile
    assert sp.packed_slots == slots
    assert sp.bit_rate == pytest.approx(8 * K * N / (4 * slots))
    assert sp.bit_rate_with_index == pytest.approx(8 * K * N / ((4 + 1 + math.ceil(math.log2(8))) * slots))
    rep = sp.report()
    assert rep["method"] == "tight-subword" and rep["K"] == K and rep["subword_rows"] == 2 * K
    assert rep["bit_rate"] == sp.bit_rate and rep["bit_rate_with_index"] == sp.bit_rate_with_index
    assert rep["packed_bits"] * rep["bit_rate_with_index"] == pytest.approx(8 * K * N)
    word_slots = sp.word_packed.packed_slots
    assert rep["word_bit_rate"] == pytest.approx(8 * K * N / (8 * word_slots))
    assert rep["word_bit_rate_with_index"] == pytest.approx(8 * K * N / (11 * word_slots))
    assert word_bit_rates(sp.word_packed) == (rep["word_bit_rate"], rep["word_bit_rate_with_index"])
    assert np.array_equal(sp.word_packed.to_dense().astype(np.int8), subword_effective_int8(q, masks))
    # the slot word really fits in slot_bits bits
    assert int(encode_slots(sp).max()) < 2**sp.slot_bits


def test_slot_words_roundtrip() -> None:
    _, q, masks = _layer(9, 30, 12, 0.3, 0.5)
    sp = pack_subwords(q, masks, group=16, tile=4, iterations=200)
    value, shift, lane = decode_slots(encode_slots(sp))
    assert np.array_equal(value, sp.packed.values)
    assert np.array_equal(shift, sp.shifts)
    assert np.array_equal(lane, sp.packed.lanes)


def test_tampered_shift_or_value_breaks_exactness() -> None:
    rng, q, masks = _layer(10, 32, 16, 0.4, 0.5)
    sp = pack_subwords(q, masks, group=4, tile=8, iterations=200)
    x = rng.integers(-128, 128, size=(3, 32)).astype(np.int8)
    ref = reference_gemm(x, subword_effective_int8(q, masks))
    assert np.array_equal(simulate_subword_gemm(sp, x), ref)
    r, c = np.argwhere(sp.packed.values != 0)[0]
    flipped = SubwordPacked(sp.packed, sp.shifts.copy())
    flipped.shifts[r, c] ^= 4
    with pytest.raises(TightCompressError, match="shift"):
        flipped.validate()
    assert not np.array_equal(simulate_subword_gemm(flipped, x), ref)


def test_save_load_roundtrip_rebuilds_shifts(tmp_path) -> None:
    rng, q, masks = _layer(11, 20, 10, 0.5, 0.6)
    sp = pack_subwords(q, masks, group=4, tile=4, iterations=100, name="conv1")
    save_packed(tmp_path / "sub.safetensors", {"conv1": sp.packed})
    loaded = SubwordPacked.from_packed(load_packed(tmp_path / "sub.safetensors")["conv1"])
    loaded.validate()
    assert np.array_equal(loaded.shifts, sp.shifts)
    assert np.array_equal(slot_shifts(loaded.packed), sp.shifts)
    x = rng.integers(-128, 128, size=(2, 20)).astype(np.int8)
    assert np.array_equal(simulate_subword_gemm(loaded, x), simulate_subword_gemm(sp, x))


def test_pack_without_masks_and_errors() -> None:
    rng = np.random.default_rng(12)
    q, _ = quantize_for_subwords(rng.standard_normal((12, 6)))
    sp = pack_subwords(q, group=4, tile=3, iterations=50)
    assert np.array_equal(sp.to_int8_dense(), q)
    assert np.array_equal(sp.kept_masks().high, full_masks(q).high)
    x = rng.integers(-128, 128, size=12).astype(np.int8)
    assert np.array_equal(simulate_subword_gemm(sp, x), reference_gemm(x[None], q)[0])
    with pytest.raises(TightCompressError):
        pack_subwords(np.zeros((4, 4), dtype=np.int8))
    with pytest.raises(TightCompressError):
        pack_subwords(q.astype(np.float32))
    with pytest.raises(TightCompressError):
        simulate_subword_gemm(sp, x[None].astype(np.float32))
    with pytest.raises(TightCompressError):
        simulate_subword_gemm(sp, np.zeros((1, 5), dtype=np.int8))
