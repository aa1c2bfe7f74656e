"""Format-aware step: candidate options, rate-targeted choice, prune-to-fit and repacking."""

from __future__ import annotations

import numpy as np
import pytest

from tightcompress.api import PackConfig, pack
from tightcompress.errors import TightCompressError
from tightcompress.pipeline import fit


def _sparse(K: int, N: int, density: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(K, N)).astype(np.float32)
    w[rng.random((K, N)) > density] = 0
    return w


def test_candidates_cover_lossless_and_respect_small_k() -> None:
    configs = fit.candidate_configs("tight", K=9, tile=32)
    # The lossless option is the dense layout (no multiplexer); the packed ones never exceed the layer.
    assert [c.method for c in configs].count("dense") == 1
    assert all(c.group == 9 and c.height <= 4 for c in configs if c.method == "tight")
    cc = fit.candidate_configs("column-combining", K=64, tile=32)
    assert any(c.alpha == 1 for c in cc)


def test_frontier_keeps_only_undominated() -> None:
    cfg = PackConfig()
    opts = [
        fit.Option(cfg, 100, 0.5),
        fit.Option(cfg, 200, 0.1),
        fit.Option(cfg, 300, 0.2),
        fit.Option(cfg, 400, 0.0),
    ]
    front = fit.frontier(opts)
    assert [(o.slots, o.dropped_fraction) for o in front] == [(100, 0.5), (200, 0.1), (400, 0.0)]


def test_choose_meets_rate_and_prefers_cheap_layers() -> None:
    cfg = PackConfig()
    # Layer a: compressing costs a lot of magnitude; layer b: cheap.
    options = {
        "a": [fit.Option(cfg, 100, 0.0), fit.Option(cfg, 10, 0.9)],
        "b": [fit.Option(cfg, 1000, 0.0), fit.Option(cfg, 100, 0.05), fit.Option(cfg, 50, 0.3)],
    }
    sizes = {"a": 100, "b": 1000}
    chosen = fit.choose_options(options, sizes, rate=5.0)
    slots = sum(o.slots for o in chosen.values())
    assert 1100 / slots >= 5.0
    assert chosen["a"].slots == 100 and chosen["b"].slots == 100


def test_unreachable_rate_names_best() -> None:
    cfg = PackConfig()
    options = {"a": [fit.Option(cfg, 100, 0.0), fit.Option(cfg, 50, 0.5)]}
    with pytest.raises(TightCompressError, match=r"best reachable is 2\.00x"):
        fit.choose_options(options, {"a": 100}, rate=3.0)


def test_plan_rate_reaches_rate_on_real_packing() -> None:
    matrices = {"l1": _sparse(64, 32, 0.2, 1), "l2": _sparse(128, 64, 0.1, 2)}
    chosen = fit.plan_rate(matrices, "tight", 8.0, plan_iterations=2000, quiet=True)
    dense = sum(m.size for m in matrices.values())
    assert dense / sum(o.slots for o in chosen.values()) >= 8.0
    assert all(o.config.method == "tight" for o in chosen.values())


@pytest.mark.parametrize("method", ["tight", "nm", "column-combining"])
def test_prune_to_fit_then_repack_drops_nothing(method: str) -> None:
    w = _sparse(64, 40, 0.3, 3)
    config = PackConfig(method=method, group=16, height=2, alpha=8, gamma=1.0, iterations=2000)
    packed = pack(w, config)
    kept = packed.to_dense()
    assert packed.report()["dropped_nnz"] > 0  # the format really cuts something here
    # "fine-tuning": change kept weights but not where they are
    tuned = np.where(kept != 0, kept * 1.5 + 0.1 * np.sign(kept), 0).astype(np.float32)
    again = fit.repack(tuned, packed)
    assert again.report()["dropped_nnz"] == 0
    assert again.packed_slots == packed.packed_slots
    np.testing.assert_allclose(again.to_dense(), tuned)


def test_narrow_layer_gets_its_own_tile_width() -> None:
    # A 10-output head on 32-wide tiles would count 22 padding columns as slots.
    configs = fit.candidate_configs("tight", K=128, tile=32, N=10)
    assert {c.tile for c in configs} == {10}
    head = _sparse(128, 10, 0.5)
    dense = next(c for c in configs if c.method == "dense")
    assert pack(head, dense).packed_slots == 128 * 10
    assert fit.candidate_configs("nm", K=128, tile=32, N=64)[0].tile == 32  # wide layers keep the tile
    # The reachable-rate check counts the narrow tile too: one slot row per 64-row group of 128 rows.
    assert fit.best_reachable_rate({"head": (128, 10)}, "tight", 32) == pytest.approx(128 * 10 / (2 * 10))


def test_repack_keeps_column_combinings_empty_rows_out_of_the_array() -> None:
    w = _sparse(64, 16, 0.1, seed=3)
    w[[2, 9, 40]] = 0
    packed = pack(w, method="column-combining", alpha=8, gamma=0.5, tile=16)
    again = fit.repack(packed.to_dense(), packed)
    assert again.packed_slots == packed.packed_slots
    assert np.array_equal(again.heights, packed.heights)
