"""`AnnealConfig.patience`: the early stop on stall in both annealing kernels."""

from __future__ import annotations

import numpy as np
import pytest

from tightcompress.format.build import uniform_group_offsets
from tightcompress.permute import AnnealConfig, search_permutation
from tightcompress.prune import magnitude_prune


def _search(W: np.ndarray, height: int | None, **config: object):
    """Search a 96 x 40 matrix with G=8, C=16 (three tiles: row and column moves)."""
    return search_permutation(
        W,
        group_offsets=uniform_group_offsets(W.shape[0], 8),
        tile=16,
        height_cap=height,
        config=AnnealConfig(**config),
    )


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return magnitude_prune(np.random.default_rng(4).standard_normal((96, 40)), 0.85)


@pytest.mark.parametrize("height", [1, None])
def test_patience_beyond_budget_changes_nothing(matrix: np.ndarray, height: int | None) -> None:
    off = _search(matrix, height, iterations=6000, seed=1)
    long = _search(matrix, height, iterations=6000, seed=1, patience=6000)
    assert np.array_equal(off.row_perm, long.row_perm) and np.array_equal(off.col_perm, long.col_perm)
    assert (off.final_cost, off.iterations, off.accepted) == (long.final_cost, long.iterations, long.accepted)


@pytest.mark.parametrize("height", [1, None])
def test_patience_stops_after_that_many_moves_without_a_new_best(
    matrix: np.ndarray, height: int | None
) -> None:
    budget = 50_000
    full = _search(matrix, height, iterations=budget, seed=1)
    stopped = _search(matrix, height, iterations=budget, seed=1, patience=50)
    assert stopped.iterations < budget
    assert stopped.final_cost >= full.final_cost  # a prefix of the same run: never better
    assert stopped.final_cost <= stopped.initial_cost
    # A prefix of the same seeded run: a longer patience runs at least as long and ends at least as well.
    longer = _search(matrix, height, iterations=budget, seed=1, patience=500)
    assert longer.iterations >= stopped.iterations
    assert longer.final_cost <= stopped.final_cost


def test_patience_on_a_stuck_start_runs_exactly_patience_moves() -> None:
    # Measured: on this matrix the greedy start of G=16, h=2 is not improved in 300k moves (above its floor).
    W = magnitude_prune(np.random.default_rng(0).standard_normal((576, 128)), 0.9)
    result = search_permutation(
        W,
        group_offsets=uniform_group_offsets(576, 16),
        tile=32,
        height_cap=2,
        config=AnnealConfig(iterations=300_000, patience=300),
    )
    assert result.lower_bound is not None and result.initial_cost > result.lower_bound
    assert result.final_cost == pytest.approx(result.initial_cost)
    assert result.iterations == 300
