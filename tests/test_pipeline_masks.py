"""torch.nn.utils.prune glue: gradual global pruning, fixed masks, folding."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from tightcompress.pipeline import masks
from tightcompress.pipeline.models import gemm_layers


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))


def test_cubic_schedule_ends_at_target_and_grows() -> None:
    s = masks.cubic_schedule(0.9, 4)
    assert s[-1] == pytest.approx(0.9)
    assert all(a < b for a, b in itertools.pairwise(s))


def test_global_prune_is_gradual_and_uses_prune_masks() -> None:
    layers = gemm_layers(_net())
    for target in masks.cubic_schedule(0.8, 3):
        masks.global_magnitude_prune(layers, target)
        assert masks.sparsity_of(layers) == pytest.approx(target, abs=2e-3)
    assert all(hasattr(m, "weight_mask") for m in layers.values())


def test_set_mask_and_fold() -> None:
    net = _net()
    layers = gemm_layers(net)
    masks.global_magnitude_prune(layers, 0.5)
    conv = layers["0"]
    new = torch.zeros_like(conv.weight, dtype=torch.bool)
    new[0] = True
    masks.set_mask(conv, new)
    assert torch.equal(masks.current_masks(layers)["0"], new)
    masks.fold_masks(layers)
    assert not hasattr(conv, "weight_mask")
    assert int((conv.weight[1:] != 0).sum()) == 0
    assert "0.weight_orig" not in net.state_dict()


@pytest.mark.parametrize("normalized", [False, True])
def test_global_prune_never_empties_an_output_unit(normalized: bool) -> None:
    net = _net()
    layers = gemm_layers(net)
    with torch.no_grad():
        layers["0"].weight.mul_(1e-4)  # a global threshold alone would empty this whole layer
    masks.global_magnitude_prune(layers, 0.97, normalized=normalized)
    kept = masks.current_masks(layers)
    for name, mask in kept.items():
        per_unit = mask.reshape(mask.shape[0], -1).sum(dim=1)
        assert bool((per_unit >= 1).all()), name
    assert masks.sparsity_of(layers) == pytest.approx(0.97, abs=2e-3)
    if not normalized:
        # Only the guarded weight of each conv channel survives in the scaled-down layer.
        assert int(kept["0"].sum()) == layers["0"].weight.shape[0]
