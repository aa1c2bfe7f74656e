"""Subword split/merge, subword matrix, importance pruning and the torch STE helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tightcompress.errors import TightCompressError
from tightcompress.prune.subword import (
    SUBWORD_QMAX,
    SubwordMasks,
    channel_scales_torch,
    fake_quant_ste,
    full_masks,
    gradual_schedule,
    merge_subwords,
    prune_layer_subwords,
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


def test_merge_masks_and_overflow() -> None:
    a, b = split_int8(np.array([[37, -100, 5]], dtype=np.int8))
    assert merge_subwords(
        a, b, np.array([[True, False, True]]), np.array([[False, True, True]])
    ).tolist() == [[32, -4, 5]]
    with pytest.raises(TightCompressError):
        merge_subwords(np.array([-8]), np.array([-1]))


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
    schedule = gradual_schedule(0.9, 4, initial=0.3)
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
    with pytest.raises(TightCompressError):
        gradual_schedule(0.5, 0)


# ------------------------------------------------------------------------------------------------ torch
def test_torch_scales_match_numpy() -> None:
    rng = np.random.default_rng(4)
    W = rng.standard_normal((12, 5))
    expected = column_scales(W, SUBWORD_QMAX)
    cols = channel_scales_torch(torch.tensor(W))
    assert cols.shape == (1, 5) and np.allclose(cols.numpy().ravel(), expected)
    rows = channel_scales_torch(torch.tensor(W.T.copy()), channel_dim=0)  # nn.Linear layout (out, in)
    assert rows.shape == (5, 1) and np.allclose(rows.numpy().ravel(), expected)


def test_fake_quant_ste_forward_and_gradient() -> None:
    rng = np.random.default_rng(5)
    W = rng.standard_normal((16, 6))
    weight = torch.tensor(W, requires_grad=True)
    scale = channel_scales_torch(weight)
    out = fake_quant_ste(weight, scale)
    q, scales = quantize_for_subwords(W)
    assert np.allclose(out.detach().numpy(), dequantize_columns(q, scales))
    out.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))


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


def test_prune_layer_subwords_conv_layout() -> None:
    from tightcompress.readers.matrices import matrix_to_weight, weight_to_matrix

    torch.manual_seed(1)
    weight = torch.randn(6, 3, 3, 3, dtype=torch.float64, requires_grad=True)  # conv (out, in, kh, kw)
    high, low = prune_layer_subwords(weight, 0.8)
    assert high.shape == weight.shape and high.dtype == torch.bool
    q, scales = quantize_for_subwords(weight_to_matrix(weight.detach().numpy()))
    masks = prune_subwords(q, 0.8, scales=scales)
    assert np.array_equal(weight_to_matrix(high.numpy()), masks.high)
    assert np.array_equal(weight_to_matrix(low.numpy()), masks.low)
    eff = subword_masked_weight(weight, channel_scales_torch(weight, 0), high, low)
    expected = matrix_to_weight(subword_effective_int8(q, masks) * scales, tuple(weight.shape))
    assert np.allclose(eff.detach().numpy(), expected, atol=1e-12)
    high2, low2 = prune_layer_subwords(weight, 0.9, (high, low))
    assert not torch.any(high2 & ~high) and not torch.any(low2 & ~low)
    assert (
        subword_sparsity(q, SubwordMasks(weight_to_matrix(high2.numpy()), weight_to_matrix(low2.numpy())))
        > 0.89
    )
