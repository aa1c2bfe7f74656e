"""Subword split/merge, the kept-value arithmetic, subword matrix, importance pruning and the torch STE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.masks import cubic_schedule
from tightcompress.prune.subword import (
    SUBWORD_QMAX,
    SubwordMasks,
    channel_scales_torch,
    full_masks,
    kept_value,
    merge_subwords,
    prune_subwords,
    quantize_for_subwords,
    recompose,
    row_shifts,
    split_int8,
    subword_contributions,
    subword_effective_int8,
    subword_importance,
    subword_masked_weight,
    subword_matrix,
    subword_sparsity,
)
from tightcompress.quant import column_scales, dequantize_columns

ALL_INT8 = np.arange(-128, 128, dtype=np.int16).astype(np.int8)


# ------------------------------------------------------------------------------------------------ split
def test_split_exhaustive_over_representable_int8() -> None:
    w = ALL_INT8[ALL_INT8.astype(np.int16) <= SUBWORD_QMAX]
    assert w.size == 248  # -128 .. 119
    a, b = split_int8(w)
    assert a.dtype == np.int8 and b.dtype == np.int8
    assert a.min() >= -8 and a.max() <= 7 and b.min() >= -8 and b.max() <= 7
    assert np.array_equal(16 * a.astype(np.int16) + b, w.astype(np.int16))
    for value, hi, lo in zip(w.tolist(), a.tolist(), b.tolist(), strict=True):
        assert lo == (value + 8) % 16 - 8  # the balanced rule, written independently in Python ints
        assert 16 * hi + lo == value
        if -8 <= value <= 7:
            assert hi == 0  # small weights use one subword
    assert np.array_equal(merge_subwords(a, b), w)


def test_split_range_edge_cases() -> None:
    assert [x.item() for x in split_int8(np.array([-128], dtype=np.int8))] == [-8, 0]
    assert [x.item() for x in split_int8(np.array([119], dtype=np.int8))] == [7, 7]
    assert [x.item() for x in split_int8(np.array([-119], dtype=np.int8))] == [-7, -7]
    assert [x.item() for x in split_int8(np.array([8], dtype=np.int8))] == [1, -8]
    assert [x.item() for x in split_int8(np.array([-9], dtype=np.int8))] == [-1, 7]
    # 120..127 have no split at all: 16*7 + 7 = 119 is the largest representable value.
    for value in range(120, 128):
        reachable = {16 * a + b for a in range(-8, 8) for b in range(-8, 8)}
        assert value not in reachable
        with pytest.raises(TightCompressError, match=r"120\.\.127"):
            split_int8(np.array([value], dtype=np.int8))
        a, b = split_int8(np.array([value], dtype=np.int8), saturate=True)
        assert (a.item(), b.item()) == (7, 7)
    a, b = split_int8(ALL_INT8, saturate=True)
    assert np.array_equal(merge_subwords(a, b), np.minimum(ALL_INT8, SUBWORD_QMAX))


def test_split_rejects_floats_and_out_of_range() -> None:
    with pytest.raises(TightCompressError):
        split_int8(np.array([1.0]))
    with pytest.raises(TightCompressError):
        split_int8(np.array([200]))


def test_merge_and_overflow() -> None:
    a, b = split_int8(np.array([[37, -100, 5]], dtype=np.int8))
    assert merge_subwords(a, b).tolist() == [[37, -100, 5]]
    with pytest.raises(TightCompressError):
        merge_subwords(np.array([-8]), np.array([-1]))


# ------------------------------------------------------------------------------ the one arithmetic
PATTERNS = ((True, True), (True, False), (False, True), (False, False))  # (keep high, keep low)


def test_kept_value_is_the_nearest_value_the_kept_subwords_hold() -> None:
    """All 256 int8 values x the four keep patterns: the kept value is representable by the kept
    subwords alone and no such value is nearer; NumPy (int) and torch (float, int) give the same."""
    q = ALL_INT8.astype(np.int16)
    nibbles = np.arange(-8, 8)
    for keep_high, keep_low in PATTERNS:
        mh, ml = np.full(q.shape, keep_high), np.full(q.shape, keep_low)
        got = kept_value(q, mh, ml)
        for dtype in (torch.float64, torch.int32):
            t = kept_value(torch.from_numpy(q).to(dtype), torch.from_numpy(mh), torch.from_numpy(ml))
            np.testing.assert_array_equal(t.numpy().astype(np.int64), got)
        highs = 16 * nibbles if keep_high else np.zeros(1, int)
        lows = nibbles if keep_low else np.zeros(1, int)
        reachable = np.unique((highs[:, None] + lows[None, :]).ravel())
        splittable = q <= SUBWORD_QMAX
        nearest = np.abs(q[:, None] - reachable[None, :]).min(axis=1)
        np.testing.assert_array_equal(np.abs(q - got)[splittable], nearest[splittable])
        a, b = split_int8(got[splittable].astype(np.int8))
        assert keep_high or not a.any()
        assert keep_low or not b.any()
    # the case: q = 50 = 16*3 + 2 with only the low subword kept is 7 (clamp), not the residue 2
    assert kept_value(np.array([50]), np.array([False]), np.array([True])).tolist() == [7]
    assert kept_value(np.array([50]), np.array([True]), np.array([False])).tolist() == [48]
    with pytest.raises(TightCompressError):  # 120..127 have no split, so no kept value of theirs is packed
        subword_effective_int8(
            np.array([[120]], np.int8), SubwordMasks(np.ones((1, 1), bool), np.ones((1, 1), bool))
        )


def test_packing_simulation_and_training_use_the_kept_value() -> None:
    """Every value the subword quantizer makes ([-119, 119]) under every keep pattern, packed and run on the
    bit-exact subword array, computes `x @ kept_value`; the training projection's forward value is the
    same kept value."""
    from tightcompress.hw.subword_sim import reference_gemm, simulate_subword_gemm
    from tightcompress.subword_packer import pack_subwords

    values = np.arange(-SUBWORD_QMAX, SUBWORD_QMAX + 1, dtype=np.int16)
    q = np.repeat(values[:, None], len(PATTERNS), axis=1).astype(np.int8)  # K = 239 values x N = 4
    mh = np.array([[h for h, _ in PATTERNS]] * len(values))
    ml = np.array([[lo for _, lo in PATTERNS]] * len(values))
    masks = SubwordMasks(mh, ml)
    want = kept_value(q.astype(np.int16), mh, ml)
    sp = pack_subwords(q, masks, group=8, tile=4, iterations=2000)
    sp.validate()
    np.testing.assert_array_equal(sp.to_int8_dense(), want)
    x = np.random.default_rng(0).integers(-128, 128, size=(3, len(values))).astype(np.int8)
    np.testing.assert_array_equal(simulate_subword_gemm(sp, x), reference_gemm(x, want.astype(np.int8)))
    scale = torch.full((1, len(PATTERNS)), 0.02, dtype=torch.float64)
    weight = torch.from_numpy(q.astype(np.float64)) * scale
    trained = subword_masked_weight(weight, scale, mh, ml).detach() / scale
    np.testing.assert_allclose(trained.numpy(), want, atol=1e-9)


def test_importance_is_the_kept_value_error() -> None:
    q = np.array([[50, 9, 16, -3, -24]], dtype=np.int8)  # (a, b): (3,2) (1,-7) (1,0) (0,-3) (-1,-8)
    high, low = subword_importance(q)
    assert high.tolist() == [[43, 2, 16, 0, 16]]  # low kept: |q - clamp(q)|; low zero: 16|a|
    assert low.tolist() == [[2, 7, 0, 3, 8]]


def test_quantize_for_subwords_always_splits() -> None:
    rng = np.random.default_rng(1)
    W = rng.laplace(size=(50, 7)) * rng.uniform(0.1, 3, size=7)
    q, scales = quantize_for_subwords(W)
    assert np.array_equal(np.abs(q).max(axis=0), np.full(7, SUBWORD_QMAX))
    assert np.allclose(scales, column_scales(W, SUBWORD_QMAX))
    err = np.abs(dequantize_columns(q, scales) - W)
    assert np.all(err <= scales / 2 + 1e-12)
    a, b = split_int8(q)
    assert np.array_equal(merge_subwords(a, b), q)


def test_subword_matrix_layout_and_shifts() -> None:
    q = np.array([[37, -3], [-100, 119]], dtype=np.int8)
    sub = subword_matrix(q)
    assert sub.shape == (4, 2)
    assert sub.tolist() == [[2, 0], [5, -3], [-6, 7], [-4, 7]]  # rows: hi0, lo0, hi1, lo1
    assert row_shifts(2).tolist() == [4, 0, 4, 0]
    assert np.array_equal(recompose(sub), q)
    contrib = subword_contributions(q)
    assert np.array_equal(contrib[0::2] + contrib[1::2], q.astype(np.int16))
    assert contrib.tolist() == [[32, 0], [5, -3], [-96, 112], [-4, 7]]


# ---------------------------------------------------------------------------------------------- pruning
def _random_q(rng: np.random.Generator, shape: tuple[int, int], zero: float = 0.5) -> np.ndarray:
    q, _ = quantize_for_subwords(rng.standard_normal(shape))
    q[rng.random(shape) < zero] = 0
    return q


def test_prune_hits_target_and_keeps_the_most_important() -> None:
    rng = np.random.default_rng(2)
    q = _random_q(rng, (40, 30))
    scales = rng.uniform(0.5, 2.0, size=30)
    for target in (0.6, 0.75, 0.9, 0.99):
        masks = prune_subwords(q, target, scales=scales)
        assert subword_sparsity(q, masks) == pytest.approx(round(target * q.size * 2) / (q.size * 2))
        high, low = subword_importance(q, scales)
        kept = np.concatenate([high[masks.high], low[masks.low]])
        start = full_masks(q)
        gone = np.concatenate([high[start.high & ~masks.high], low[start.low & ~masks.low]])
        assert gone.size and kept.size
        assert gone.max() <= kept.min()  # nothing pruned matters more than anything kept
        # masks only ever mark nonzero subwords as kept
        a, b = split_int8(q)
        assert not np.any(masks.high & (a == 0)) and not np.any(masks.low & (b == 0))


def test_prune_unscaled_prefers_low_subwords() -> None:
    q = np.array([[17, 3, 100, -50]], dtype=np.int8)  # subwords (1,1) (0,3) (6,4) (-3,-2)
    masks = prune_subwords(q, 5 / 8)  # 1 zero already; prune the 4 least important: low 1, -2, 3, 4
    assert masks.low.tolist() == [[False, False, False, False]]
    assert masks.high.tolist() == [[True, False, True, True]]
    assert subword_effective_int8(q, masks).tolist() == [[16, 0, 96, -48]]


def test_gradual_pruning_is_monotone() -> None:
    rng = np.random.default_rng(3)
    q = _random_q(rng, (30, 20), zero=0.0)
    schedule = cubic_schedule(0.9, 4, initial=0.3)
    assert schedule[-1] == pytest.approx(0.9) and schedule == sorted(schedule)
    masks = full_masks(q)
    for step, target in enumerate(schedule):
        # the weights move between steps (fine-tuning); pruned subwords must stay pruned
        q_step = q if step == 0 else np.clip(q + rng.integers(-2, 3, q.shape), -119, 119).astype(np.int8)
        new = prune_subwords(q_step, target, masks=masks)
        assert not np.any(new.high & ~masks.high) and not np.any(new.low & ~masks.low)
        assert subword_sparsity(q_step, new) >= round(target * 2 * q.size) / (2 * q.size)
        masks = new
    # a lower target than what is already pruned changes nothing
    again = prune_subwords(q, 0.1, masks=masks)
    assert np.array_equal(again.high, masks.high & full_masks(q).high)


def test_prune_rejects_bad_input() -> None:
    q = np.zeros((3, 3), dtype=np.int8)
    with pytest.raises(TightCompressError):
        prune_subwords(q, 1.0)
    with pytest.raises(TightCompressError):
        prune_subwords(q, 0.5, masks=SubwordMasks(np.ones((2, 2), bool), np.ones((2, 2), bool)))


# ------------------------------------------------------------------------------------------------ torch
def test_torch_scales_match_numpy() -> None:
    rng = np.random.default_rng(4)
    W = rng.standard_normal((12, 5))
    expected = column_scales(W, SUBWORD_QMAX)
    cols = channel_scales_torch(torch.tensor(W))
    assert cols.shape == (1, 5) and np.allclose(cols.numpy().ravel(), expected)
    rows = channel_scales_torch(torch.tensor(W.T.copy()), channel_dim=0)  # nn.Linear layout (out, in)
    assert rows.shape == (5, 1) and np.allclose(rows.numpy().ravel(), expected)


def test_subword_masked_weight_matches_numpy_and_gates_gradient() -> None:
    rng = np.random.default_rng(6)
    W = rng.standard_normal((20, 8))
    q, scales = quantize_for_subwords(W)
    masks = prune_subwords(q, 0.7, scales=scales)
    weight = torch.tensor(W, requires_grad=True)
    eff = subword_masked_weight(weight, torch.tensor(scales), masks.high, masks.low)
    expected = subword_effective_int8(q, masks) * scales
    assert np.allclose(eff.detach().numpy(), expected, atol=1e-12)
    upstream = torch.tensor(rng.standard_normal(W.shape))
    (eff * upstream).sum().backward()
    live = torch.tensor(masks.high | masks.low, dtype=weight.dtype)
    assert torch.allclose(weight.grad, upstream * live)
    with pytest.raises(TightCompressError):
        subword_masked_weight(weight, torch.tensor(scales), masks.high[:1], masks.low)


def test_subword_qat_step_reduces_loss() -> None:
    """The STE weight trains: a few SGD steps on a regression lower the loss of the masked layer."""
    torch.manual_seed(0)
    x = torch.randn(256, 24, dtype=torch.float64)
    target_w = torch.randn(24, 6, dtype=torch.float64)
    y = x @ target_w
    weight = (target_w + 0.3 * torch.randn_like(target_w)).requires_grad_(True)
    scale = channel_scales_torch(weight)
    q, _ = quantize_for_subwords(weight.detach().numpy())
    masks = prune_subwords(q, 0.4)
    opt = torch.optim.SGD([weight], lr=0.05)

    def loss() -> torch.Tensor:
        return ((x @ subword_masked_weight(weight, scale, masks.high, masks.low) - y) ** 2).mean()

    before = loss().item()
    for _ in range(30):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < 0.8 * before
