"""Column combining: the authors' algorithm reproduced (their own results on seeded matrices, and a direct
transcription of the rule), the feasibility invariants, and the packed format of its groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tightcompress as tc
from tightcompress.baselines import column_combining_groups
from tightcompress.errors import TightCompressError
from tightcompress.prune import magnitude_prune

REFERENCE = json.loads((Path(__file__).parent / "data" / "column_combining_reference.json").read_text())


def _reference_matrix(row: dict) -> np.ndarray:
    """The file's recipe: seeded standard normal, then the smallest |w| fraction zeroed."""
    W = np.random.default_rng(row["seed"]).standard_normal((row["K"], row["N"])).astype(np.float32)
    return magnitude_prune(W, row["sparsity"])


def _row_id(row: dict) -> str:
    return f"{row['matrix']}-s{row['seed']}-{row['sparsity']}-a{row['alpha']}-g{row['gamma']}"


@pytest.mark.parametrize("row", REFERENCE["rows"], ids=_row_id)
def test_matches_the_authors_code(row):
    W = _reference_matrix(row)
    report = tc.pack(
        W, method="column-combining", alpha=row["alpha"], gamma=row["gamma"], tile=row["N"]
    ).report()
    assert report["merge"] == "authors"
    assert report["nonempty_rows"] == row["nonempty_rows"]
    assert abs(report["n_groups"] - row["groups"]) <= 1  # one group of slack where ties break differently
    assert report["dropped_magnitude_fraction"] == pytest.approx(row["dropped_magnitude_fraction"], abs=0.005)
    assert report["compression_rate"] == pytest.approx(row["K"] / report["n_groups"])


def _spec_groups(W: np.ndarray, alpha: int, gamma: float) -> list[list[int]]:
    """The rule as issue 10 states it, recomputing every pair each step (slow, obviously right)."""
    occupied = W != 0
    limit = int(np.floor(gamma * W.shape[1] + 1e-9))
    groups = [[r] for r in range(W.shape[0]) if occupied[r].any()]
    counts = [occupied[r].astype(int) for r in range(W.shape[0]) if occupied[r].any()]
    while True:
        for i in range(len(groups)):
            partners = []
            for j in range(len(groups)):
                merged = counts[i] + counts[j]
                conflicts = np.maximum(merged - 1, 0).sum()
                if j != i and len(groups[i]) + len(groups[j]) <= alpha and conflicts <= limit:
                    partners.append((int((merged == 0).sum()), j))  # score, then the earliest
            if partners:
                _, j = min(partners)
                groups[i] += groups[j]
                counts[i] = counts[i] + counts[j]
                del groups[j], counts[j]
                break
        else:
            return [sorted(g) for g in groups]


def _sparse(seed: int, K: int, N: int, density: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((K, N)) * (rng.random((K, N)) < density)).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    K=st.integers(1, 40),
    N=st.integers(1, 12),
    density=st.sampled_from([0.05, 0.15, 0.3]),
    alpha=st.integers(1, 10),
    gamma=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),
)
def test_authors_merge_equals_the_rule_recomputed_every_step(seed, K, N, density, alpha, gamma):
    W = _sparse(seed, K, N, density)
    fast = column_combining_groups(W, alpha, gamma).groups()
    n_combined = column_combining_groups(W, alpha, gamma).n_combined
    assert [g.tolist() for g in fast[:n_combined]] == _spec_groups(W, alpha, gamma)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    K=st.integers(1, 60),
    N=st.integers(1, 30),
    density=st.sampled_from([0.05, 0.2]),
    alpha=st.integers(1, 12),
    gamma=st.sampled_from([0.0, 0.1, 0.5, 2.0]),
    merge=st.sampled_from(["authors", "least-overlap"]),
    section=st.sampled_from([None, 7, 16]),
)
def test_groups_are_feasible_and_no_feasible_pair_remains(seed, K, N, density, alpha, gamma, merge, section):
    W = _sparse(seed, K, N, density)
    grouping = column_combining_groups(W, alpha, gamma, merge=merge, section=section)
    assert np.array_equal(np.sort(grouping.order), np.arange(K))
    limit = int(np.floor(gamma * N + 1e-9))
    groups = grouping.groups()
    combined, empty = groups[: grouping.n_combined], groups[grouping.n_combined :]
    counts = [np.count_nonzero(W[g], axis=0) for g in combined]
    for rows, count in zip(combined, counts, strict=True):
        assert 1 <= len(rows) <= alpha
        assert np.maximum(count - 1, 0).sum() <= limit
        assert count.sum() > 0
        if section is not None:
            assert len(set((rows // section).tolist())) == 1  # never across a section
    assert all(len(rows) <= alpha and not W[rows].any() for rows in empty)  # empty rows set aside
    for a in range(len(combined)):
        for b in range(a + 1, len(combined)):
            if section is not None and combined[a][0] // section != combined[b][0] // section:
                continue
            fits = len(combined[a]) + len(combined[b]) <= alpha
            assert not (fits and np.maximum(counts[a] + counts[b] - 1, 0).sum() <= limit)


def test_packed_column_combining_is_one_row_per_group_and_empty_rows_take_none():
    W = _sparse(4, 128, 32, 0.1)
    W[[3, 50, 51]] = 0
    packed = tc.pack(W, method="column-combining", alpha=8, gamma=0.5, tile=32)
    packed.validate()
    report = packed.report()
    assert report["nonempty_rows"] == np.count_nonzero(W.any(axis=1))
    assert packed.packed_slots == report["n_groups"] * 32
    assert packed.compression_rate == pytest.approx(128 / report["n_groups"])
    assert np.allclose(packed.matmul(np.eye(128, dtype=np.float32)), packed.to_dense())
    kept = packed.to_dense()
    # Each combined row keeps exactly the largest-magnitude weight of each column.
    for g in range(report["n_groups"]):
        rows = packed.row_perm[0, packed.group_offsets[g] : packed.group_offsets[g + 1]]
        for j in range(32):
            column = np.abs(W[rows, j])
            if column.max() > 0:
                assert np.count_nonzero(kept[rows, j]) == 1
                assert np.abs(kept[rows, j]).max() == column.max()
    assert not packed.heights[report["n_groups"] :].any()


def test_variant_is_named_in_the_report_and_validated():
    W = _sparse(1, 300, 16, 0.1)
    options = {"alpha": 16, "gamma": 0.5, "merge": "least-overlap", "section": 128}
    report = tc.pack(W, method="column-combining", **options).report()
    assert {key: report[key] for key in options} == options
    assert report["max_conflicts"] == 8
    with pytest.raises(TightCompressError, match="merge"):
        tc.PackConfig(method="column-combining", merge="densest")
    with pytest.raises(TightCompressError, match="section"):
        tc.PackConfig(method="column-combining", section=0)


def test_a_section_as_long_as_the_axis_changes_nothing_and_a_short_one_does():
    W = magnitude_prune(np.random.default_rng(0).standard_normal((576, 64)).astype(np.float32), 0.95)
    whole = column_combining_groups(W, 16, 0.2)
    same = column_combining_groups(W, 16, 0.2, section=576)
    cut = column_combining_groups(W, 16, 0.2, section=64)
    assert np.array_equal(whole.order, same.order) and np.array_equal(whole.offsets, same.offsets)
    assert cut.n_combined != whole.n_combined
