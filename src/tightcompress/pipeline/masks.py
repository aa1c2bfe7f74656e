"""Pruning masks through `torch.nn.utils.prune`: gradual global magnitude pruning, fixed masks, folding.

Model glue only; what a mask should be for a packing format is decided in `fit.py`.
"""

from __future__ import annotations

import torch
import torch.nn.utils.prune as prune
from torch import nn


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight the layer computes with (mask applied when the layer is pruned)."""
    if prune.is_pruned(module) and hasattr(module, "weight_mask"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def current_masks(layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Boolean keep-mask of every layer (all ones for an unpruned layer)."""
    masks = {}
    for name, module in layers.items():
        if hasattr(module, "weight_mask"):
            masks[name] = module.weight_mask.detach().bool().clone()
        else:
            masks[name] = torch.ones_like(module.weight, dtype=torch.bool)
    return masks


def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Make `mask` the layer's only pruning mask (any earlier mask is folded in first)."""
    if prune.is_pruned(module) and hasattr(module, "weight_mask"):
        prune.remove(module, "weight")
    prune.custom_from_mask(module, "weight", mask.to(device=module.weight.device, dtype=module.weight.dtype))


def apply_masks(layers: dict[str, nn.Module], masks: dict[str, torch.Tensor]) -> None:
    """`set_mask` on every named layer."""
    for name, mask in masks.items():
        set_mask(layers[name], mask)


def fold_masks(layers: dict[str, nn.Module]) -> None:
    """Make pruning permanent: `prune.remove`, so the state_dict holds plain (zeroed) weights."""
    for module in layers.values():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")


def cubic_schedule(final_sparsity: float, rounds: int, initial: float = 0.0) -> list[float]:
    """Sparsity after each round, `s_i = s_f + (s_0 - s_f)(1 - i/R)^3` (Zhu and Gupta, 2017)."""
    rounds = max(1, int(rounds))
    return [final_sparsity + (initial - final_sparsity) * (1 - i / rounds) ** 3 for i in range(1, rounds + 1)]


def global_magnitude_prune(layers: dict[str, nn.Module], sparsity: float, normalized: bool = False) -> None:
    """Prune the smallest-|w| weights over all layers together until `sparsity` of them are zero.

    Uses `prune.global_unstructured` with `L1Unstructured`; an existing mask is kept (pruning only adds).
    `normalized` ranks `|w|` divided by the layer's mean kept `|w|` (scale-free, as under batch norm).
    The largest kept weight of every output unit is never pruned: a global threshold can otherwise empty a
    whole channel or layer (layer collapse), leaving a dead output and an all-zero matrix to pack.
    """
    modules = list(layers.values())
    total = sum(m.weight.numel() for m in modules)
    already = sum(int((effective_weight(m) == 0).sum()) for m in modules)
    # prune's amount counts among the still-unpruned entries of the combined masks.
    masked = sum(int((~current_masks({"m": m})["m"]).sum()) for m in modules)
    amount = round(sparsity * total) - max(already, masked)
    if amount <= 0:
        return
    scores = {}
    for m in modules:
        w = effective_weight(m).abs()
        score = w / w[w != 0].mean().clamp_min(1e-12) if normalized else w.clone()
        per_unit = score.reshape(score.shape[0], -1)
        per_unit.scatter_(1, per_unit.argmax(dim=1, keepdim=True), float("inf"))
        scores[(m, "weight")] = per_unit.reshape(score.shape)
    prune.global_unstructured(
        [(m, "weight") for m in modules],
        pruning_method=prune.L1Unstructured,
        amount=int(amount),
        importance_scores=scores,
    )


def sparsity_of(layers: dict[str, nn.Module]) -> float:
    """Fraction of zero weights over all layers."""
    total = sum(m.weight.numel() for m in layers.values())
    zeros = sum(int((effective_weight(m) == 0).sum()) for m in layers.values())
    return zeros / max(total, 1)
