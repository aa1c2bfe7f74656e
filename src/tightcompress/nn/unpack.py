"""`unpack_(model)`: packed modules back to plain `nn.Linear` / `nn.Conv2d` holding the kept weights, in place
(the inverse of `sparsify_`, for any tool that wants the plain modules: quantizers, exporters, profilers)."""

from __future__ import annotations

import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.nn.modules import PackedConv2d, PackedLinear


def unpack_(model: nn.Module) -> nn.Module:
    """Replace every `PackedLinear` / `PackedConv2d` of `model` by the plain layer of the same geometry whose
    weight is the kept weights (dropped ones zero) and whose bias is the packed module's, on the same device
    and in the same dtype, with `requires_grad` and the train/eval mode kept. Returns the model (changed in
    place); its `state_dict()` then loads into a fresh instance of the original class."""
    if not isinstance(model, nn.Module):
        raise TightCompressError(f"unpack_ takes an nn.Module, got {type(model).__name__}")
    if isinstance(model, PackedLinear | PackedConv2d):
        raise TightCompressError("unpack_ replaces layers inside a model; wrap a bare layer in nn.Sequential")
    found = [(fqn, m) for fqn, m in model.named_modules() if isinstance(m, PackedLinear | PackedConv2d)]
    if not found:
        raise TightCompressError(f"{type(model).__name__} has no packed module to unpack")
    for fqn, module in found:
        model.set_submodule(fqn, dense_module(module))
    return model


def dense_module(module: PackedLinear | PackedConv2d) -> nn.Linear | nn.Conv2d:
    """The plain layer computing what `module` computes (its kept weights, its bias)."""
    values = module.blocks[0].values
    factory = {"device": values.device, "dtype": values.dtype}
    with torch.no_grad():
        weight = module.weight.detach().clone()
    bias = module.bias
    if isinstance(module, PackedLinear):
        dense: nn.Linear | nn.Conv2d = nn.Linear(
            module.in_features, module.out_features, bias=bias is not None, **factory
        )
    else:
        dense = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=bias is not None,
            padding_mode=module.padding_mode,
            **factory,
        )
    dense.weight = nn.Parameter(weight, requires_grad=values.requires_grad)
    if bias is not None:
        dense.bias = nn.Parameter(bias.detach().clone(), requires_grad=bias.requires_grad)
    dense.train(module.training)
    return dense
