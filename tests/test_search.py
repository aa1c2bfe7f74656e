"""The annealing search: its incremental bookkeeping matches a recount, it is seeded, and it helps."""

from __future__ import annotations

import numpy as np
import pytest

import tightcompress as tc
from tightcompress.format.build import uniform_group_offsets
from tightcompress.permute import AnnealConfig, search_permutation
from tightcompress.prune import magnitude_prune


def _sparse(K, N, sparsity, seed=0):
    return magnitude_prune(np.random.default_rng(seed).standard_normal((K, N)), sparsity)


@pytest.mark.parametrize("objective", ["magnitude", "squared"])
@pytest.mark.parametrize("tile", [16, 40])  # one tile (row moves only) and several (column moves too)
def test_capped_cost_tracked_incrementally_equals_recount(objective, tile):
    W = _sparse(96, 40, 0.85, seed=3)
    packed = tc.pack(W, method="tight", group=8, height=1, tile=tile, iterations=20_000, objective=objective)
    extra = packed.report()
    dropped = (W != 0) & (packed.to_dense() == 0)
    cost = np.abs(W) if objective == "magnitude" else W**2
    assert extra["search_final_cost"] == pytest.approx(cost[dropped].sum(), rel=1e-9)
    assert extra["search_final_cost"] <= extra["search_initial_cost"]


def test_lossless_rows_tracked_incrementally_equal_recount():
    W = _sparse(120, 70, 0.9, seed=5)
    packed = tc.pack(W, method="tight", group=8, height="auto", tile=16, iterations=30_000)
    report = packed.report()
    assert report["search_final_cost"] == report["packed_rows"]
    assert report["search_final_cost"] <= report["search_initial_cost"]
    assert report["packed_slots"] >= report["lower_bound_slots"]


def test_search_is_deterministic_per_seed():
    W = _sparse(64, 48, 0.9, seed=1)
    offsets = uniform_group_offsets(64, 8)
    runs = [
        search_permutation(W, group_offsets=offsets, tile=16, height_cap=1, config=AnnealConfig(5000, seed=s))
        for s in (7, 7, 8)
    ]
    assert np.array_equal(runs[0].row_perm, runs[1].row_perm)
    assert np.array_equal(runs[0].col_perm, runs[1].col_perm)
    assert not (np.array_equal(runs[0].row_perm, runs[2].row_perm) and runs[0].accepted == runs[2].accepted)


def test_annealing_beats_identity_and_greedy_start():
    W = _sparse(576, 64, 0.95, seed=0)
    nm = tc.pack(W, method="nm", group=32, height=2, tile=64)
    greedy_only = tc.pack(W, method="tight", group=32, height=2, tile=64, iterations=0)
    annealed = tc.pack(W, method="tight", group=32, height=2, tile=64, iterations=400_000)
    fraction = {
        name: p.report()["dropped_magnitude_fraction"]
        for name, p in [("nm", nm), ("greedy", greedy_only), ("annealed", annealed)]
    }
    assert fraction["annealed"] < fraction["greedy"] < fraction["nm"]
    bound = annealed.report()["lower_bound_dropped_magnitude_fraction"]
    assert bound <= annealed.report()["dropped_magnitude_fraction"]


def test_lossless_reaches_bound_on_an_easy_matrix():
    # A permuted block-diagonal pattern: one row per group per column is achievable, and the bound says so.
    rng = np.random.default_rng(2)
    W = np.zeros((64, 8))
    for r in range(64):
        W[r, r % 8] = rng.uniform(1, 2)
    W = W[rng.permutation(64)]
    packed = tc.pack(W, method="tight", group=8, height="auto", tile=8, iterations=50_000)
    assert packed.packed_slots == packed.report()["lower_bound_slots"] == 8 * 8
