"""Column combining baseline: groups respect alpha and gamma and keep the largest weight per column."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tightcompress as tc
from tightcompress.baselines import column_combining_groups


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    K=st.integers(1, 60),
    N=st.integers(1, 30),
    alpha=st.integers(1, 12),
    gamma=st.sampled_from([0.0, 0.1, 0.5, 2.0]),
)
def test_groups_respect_alpha_and_gamma(seed, K, N, alpha, gamma):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((K, N)) * (rng.random((K, N)) < 0.2)
    order, offsets = column_combining_groups(W, alpha, gamma)
    assert np.array_equal(np.sort(order), np.arange(K))
    sizes = np.diff(offsets)
    assert sizes.min() >= 1 and sizes.max() <= alpha
    for g in range(sizes.size):
        rows = order[offsets[g] : offsets[g + 1]]
        per_column = np.count_nonzero(W[rows], axis=0)
        conflicts = np.maximum(per_column - 1, 0).sum()
        assert conflicts <= gamma * N + 1e-9


def test_merging_stops_only_when_no_pair_fits():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((40, 16)) * (rng.random((40, 16)) < 0.1)
    order, offsets = column_combining_groups(W, 4, 0.0)
    groups = [order[offsets[g] : offsets[g + 1]] for g in range(offsets.size - 1)]
    occupied = [np.count_nonzero(W[g], axis=0) > 0 for g in groups]
    # No two remaining groups could still merge without a conflict within alpha.
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            fits = len(groups[a]) + len(groups[b]) <= 4
            assert not (fits and not np.any(occupied[a] & occupied[b]))


def test_packed_column_combining_is_one_row_per_group():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((128, 32)) * (rng.random((128, 32)) < 0.1)
    packed = tc.pack(W, method="column-combining", alpha=8, gamma=0.5, tile=32)
    packed.validate()
    n_groups = packed.report()["n_groups"]
    assert packed.packed_slots == n_groups * 32
    assert packed.compression_rate == pytest.approx(128 / n_groups)
    kept = packed.to_dense()
    # Each combined row keeps exactly the largest-magnitude weight of each column.
    for g in range(packed.n_groups):
        rows = packed.row_perm[0, packed.group_offsets[g] : packed.group_offsets[g + 1]]
        for j in range(32):
            column = np.abs(W[rows, j])
            if column.max() > 0:
                assert np.count_nonzero(kept[rows, j]) == 1
                assert np.abs(kept[rows, j]).max() == column.max()
