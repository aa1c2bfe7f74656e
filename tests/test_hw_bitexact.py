"""Bit-exact int8 execution of every packed format against the int8 reference GEMM."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tightcompress.api import pack
from tightcompress.errors import TightCompressError
from tightcompress.hw.bitexact import (
    check_bitexact,
    quantize_packed,
    random_activations,
    reference_gemm_int8,
    reference_weights_int8,
    run_packed_int8,
)

METHODS = [
    ("dense", {}),
    ("nm", {"group": 4, "height": 2}),
    ("nm", {"group": 8, "height": 1}),
    ("column-combining", {"alpha": 4}),
    ("column-combining", {"alpha": 8, "gamma": 1.0}),
    ("tight", {"group": 8}),
    ("tight", {"group": 16, "height": 2}),
    ("tight", {"group": 3}),
]


@given(
    st.integers(1, 70),
    st.integers(1, 50),
    st.floats(0.02, 1.0),
    st.sampled_from([4, 8, 13]),
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
    st.sampled_from(range(len(METHODS))),
)
@settings(max_examples=60, deadline=None)
def test_packed_array_equals_reference(k, n, density, tile, m, seed, which) -> None:
    method, options = METHODS[which]
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, n)) * (rng.random((k, n)) < density)
    w[rng.integers(k), rng.integers(n)] = 1.5
    packed = pack(w, method=method, tile=tile, iterations=50, **options)
    x = random_activations(m, k, seed)
    out = run_packed_int8(packed, x)
    w_q, _ = reference_weights_int8(packed)
    ref = reference_gemm_int8(x, w_q)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, ref)


def test_slot_quantization_matches_reference_weights() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=(40, 30)) * (rng.random((40, 30)) < 0.3)
    packed = pack(w, method="tight", group=8, tile=8)
    q_values, scales = quantize_packed(packed)
    w_q, ref_scales = reference_weights_int8(packed)
    np.testing.assert_allclose(scales, ref_scales)
    src_row, src_col = packed.slot_sources()
    used = src_row >= 0
    np.testing.assert_array_equal(q_values[used], w_q[src_row[used], src_col[used]])
    assert np.all(q_values[~used] == 0)


def test_dequantized_output_approximates_float_matmul() -> None:
    rng = np.random.default_rng(4)
    w = rng.normal(size=(64, 32)) * (rng.random((64, 32)) < 0.25)
    packed = pack(w, method="tight", group=8, tile=16)
    x = random_activations(5, 64, 1)
    _, scales = quantize_packed(packed)
    approx = run_packed_int8(packed, x) * scales
    exact = packed.matmul(x.astype(np.float64))
    assert np.max(np.abs(approx - exact)) <= 128 * 64 * np.max(scales) / 2 + 1e-9


def test_corrupted_lane_is_detected() -> None:
    rng = np.random.default_rng(5)
    w = rng.normal(size=(32, 16)) * (rng.random((32, 16)) < 0.4)
    packed = pack(w, method="tight", group=8, tile=16)
    x = random_activations(3, 32, 2)
    w_q, _ = reference_weights_int8(packed)
    assert check_bitexact(packed, x, w_q)
    used_rows, used_cols = np.nonzero((packed.values != 0) & (packed.lanes > 0))
    packed.lanes[used_rows[0], used_cols[0]] -= 1  # the mux now selects the wrong activation
    assert not check_bitexact(packed, x, w_q)


def test_int32_wraps_like_hardware() -> None:
    x = np.full((1, 2), -128, dtype=np.int8)
    w = np.full((2, 1), -128, dtype=np.int8)
    assert reference_gemm_int8(x, w)[0, 0] == 2 * 128 * 128
    with pytest.raises(TightCompressError):
        reference_gemm_int8(x.astype(np.int16), w)
