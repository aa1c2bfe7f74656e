"""Packed model -> hardware figures: how many input vectors each layer streams, then the cycle/energy model.

A conv layer's GEMM streams one input vector per output pixel (M = H_out * W_out per image); a linear
layer one per sample. Counted with forward hooks on one sample, so any model works.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tightcompress.format.packed import PackedMatrix
from tightcompress.hw import simulate_packed, total_simulation
from tightcompress.pipeline.models import gemm_layers

HW_ARRAY = (32, 32)  # the project's reference array for the reports' cycles and energy


def vectors_per_layer(model: nn.Module, sample: torch.Tensor) -> dict[str, int]:
    """M of every conv/linear layer for one input `sample` (a batch of one, shaped like the data)."""
    counts: dict[str, int] = {}
    hooks = []
    for name, layer in gemm_layers(model).items():

        def record(module, _inputs, output, name=name):
            if isinstance(module, nn.Linear):
                counts[name] = int(output[0].numel() // output.shape[-1])
            else:
                counts[name] = int(output[0, 0].numel())  # output positions of one image

        hooks.append(layer.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample[:1])
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return counts


def simulate_model(
    packed: dict[str, PackedMatrix], vectors: dict[str, int], array: tuple[int, int] = (32, 32)
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-layer and total cycles/energy of the packed layers on an `R x C` array (one image)."""
    layers = {
        name: {k: v for k, v in simulate_packed(p, array=array, m=vectors[name]).items()}
        for name, p in packed.items()
    }
    return layers, total_simulation(layers.values())
