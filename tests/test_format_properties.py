"""Property tests of the packed format over random shapes, sparsities, G, h and C, for every method."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tightcompress as tc

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def sparse_matrices(draw, max_k: int = 70, max_n: int = 40):
    K = draw(st.integers(1, max_k))
    N = draw(st.integers(1, max_n))
    density = draw(st.sampled_from([0.03, 0.1, 0.3, 0.7, 1.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((K, N)).astype(np.float32)
    W[rng.random((K, N)) > density] = 0
    if not W.any():
        W[rng.integers(K), rng.integers(N)] = 1.5
    return W


@st.composite
def pack_options(draw):
    method = draw(st.sampled_from(tc.METHODS))
    group = draw(st.integers(1, 12))
    tile = draw(st.integers(1, 16))
    if method == "nm":
        height = draw(st.integers(1, group))
    elif method == "tight":
        height = draw(st.one_of(st.just("auto"), st.integers(1, group)))
    else:
        height = "auto"
    return dict(
        method=method,
        group=group,
        height=height,
        tile=tile,
        alpha=draw(st.integers(1, 10)),
        gamma=draw(st.sampled_from([0.0, 0.25, 1.0, 3.0])),
        seed=draw(st.integers(0, 1000)),
        iterations=draw(st.sampled_from([0, 50, 2000])),
    )


@SETTINGS
@given(W=sparse_matrices(), options=pack_options())
def test_packing_invariants(W, options):
    packed = tc.pack(W, **options)
    packed.validate()
    kept = packed.to_dense()

    # Kept weights are original weights at their own positions; nothing appears that was not there.
    assert np.all((kept == 0) | (kept == W))
    dropped = (W != 0) & (kept == 0)
    report = packed.report()
    assert report["dropped_nnz"] == int(dropped.sum())
    assert report["kept_nnz"] + report["dropped_nnz"] == report["nnz"] == np.count_nonzero(W)
    expected_fraction = np.abs(W[dropped]).sum(dtype=np.float64) / np.abs(W).sum(dtype=np.float64)
    assert report["dropped_magnitude_fraction"] == pytest.approx(expected_fraction, abs=1e-9)

    # Lossless modes drop nothing and round-trip exactly.
    if options["method"] == "dense" or (options["method"] == "tight" and options["height"] == "auto"):
        assert np.array_equal(kept, W)

    # The array computes x @ W_kept.
    x = np.random.default_rng(1).standard_normal((3, W.shape[0])).astype(np.float64)
    np.testing.assert_allclose(packed.matmul(x), x @ kept.astype(np.float64), rtol=1e-10, atol=1e-10)

    # Slots and rate are consistent, and never below the lossless bound when nothing is dropped.
    assert packed.packed_slots == int(packed.tile_rows.sum()) * packed.tile
    assert packed.compression_rate == pytest.approx(W.size / packed.packed_slots)
    if report["dropped_nnz"] == 0:
        assert packed.packed_slots >= report["lower_bound_slots"]


@SETTINGS
@given(W=sparse_matrices(), group=st.integers(1, 10), height=st.integers(1, 4), tile=st.integers(1, 12))
def test_capped_keeps_the_largest_in_every_group_column(W, group, height, tile):
    height = min(height, group)
    packed = tc.pack(W, method="tight", group=group, height=height, tile=tile, iterations=300)
    kept = packed.to_dense()
    offsets = packed.group_offsets
    for t in range(packed.n_tiles):
        for col in packed.col_perm[t * tile : (t + 1) * tile]:
            if col < 0:
                continue
            for g in range(packed.n_groups):
                rows = packed.row_perm[t, offsets[g] : offsets[g + 1]]
                mags = np.abs(W[rows, col])
                is_kept = kept[rows, col] != 0
                assert is_kept.sum() == min(height, np.count_nonzero(mags))
                if is_kept.any() and (~is_kept & (mags > 0)).any():
                    assert mags[is_kept].min() >= mags[~is_kept & (mags > 0)].max()


def test_lane_index_range_and_bits():
    W = np.random.default_rng(0).standard_normal((100, 20))
    packed = tc.pack(W, method="tight", group=16, height="auto", tile=8, sparsity=0.9)
    assert packed.lanes.min() >= 0 and packed.lanes.max() < 16
    assert packed.index_bits == 4
    assert tc.pack(W, method="dense", tile=8).index_bits == 0
