"""`save_model` and `load_model_`: a packed PyTorch model in the one packed file format.

`save_model` writes the file `pack --out` writes (format `tightcompress.packed`, signed: SHA-256 of every
tensor and of the metadata): one packed layer per packed matrix, named as `sparsify_` reports it (`FQN`, or
`FQN[g]` for group g of a grouped conv), and the model's other tensors (biases, normalisation, layers left
dense) as its state. Each layer's info records its PyTorch weight (`source`: state_dict key, shape, groups,
group), as `pack`'s layers do, and its packed module (`module`: path, class, geometry), so every command
reads the file whole: `unpack` gives a state_dict that loads into the dense model, `simulate`, `export` and
`report --packed` see every packed layer, and `load_model_` rebuilds the packed modules.

`load_model_` reads that format (and, from a `pack --out` file, builds each packed module with the geometry
of the model's own layer), and release 0.1.0's `save_model` files (format `tightcompress.model`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.format.io import load_packed, load_packed_state, save_packed
from tightcompress.format.packed import PackedMatrix
from tightcompress.nn.modules import PackedConv2d, PackedLinear, PackedWeight, conv_geometry
from tightcompress.prune.subword_pack import is_subword
from tightcompress.readers.checkpoint import tensor_to_numpy
from tightcompress.readers.matrices import gemm_name, weight_source


def save_model(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write the model's packed layers and whole state to one packed `.safetensors` file, atomically (the
    format `pack --out` writes, read by every command and by `load_model_`)."""
    packed_modules = {
        fqn: m for fqn, m in model.named_modules() if isinstance(m, PackedLinear | PackedConv2d)
    }
    if not packed_modules:
        raise TightCompressError(
            f"{type(model).__name__} has no packed module: run tightcompress.sparsify_ first"
        )
    layers: dict[str, PackedMatrix] = {}
    for fqn, module in packed_modules.items():
        groups = len(module.blocks)
        shape = _dense_weight_shape(module)
        for index, block in enumerate(module.blocks):
            group_index = None if groups == 1 else index
            name = gemm_name(fqn, group_index)
            packed = block.packed
            packed.info = {
                **packed.info,
                "name": name,
                "source": weight_source(f"{fqn}.weight", shape, groups, group_index),
                "module": {"path": fqn, "class": type(module).__name__, "geometry": module.geometry()},
            }
            layers[name] = packed
    blocks = tuple(f"{fqn}.blocks." for fqn in packed_modules)
    state, dtypes = {}, {}
    for key, value in model.state_dict().items():
        if key.startswith(blocks):
            continue
        if not isinstance(value, torch.Tensor):
            raise TightCompressError(f"{key} of the model's state is a {type(value).__name__}, not a tensor")
        state[key], dtypes[key] = tensor_to_numpy(value)
    save_packed(path, layers, state=state, state_dtypes=dtypes)


def load_model_(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Put the packed modules of a packed file into a freshly built dense model of the same class and load
    the whole state; returns the model (changed in place, on its device, in its dtype).

    Reads `save_model` files (of this and the previous release) and `pack --out` files of the model's
    checkpoint (each layer's module is the one owning the weight it records). Every layer of the file goes
    into the model and every tensor of the model comes from the file, or it is a one-line error."""
    path = os.fspath(path)
    layers = load_packed(path)
    state, dtypes = load_packed_state(path)
    modules: dict[str, list[tuple[int, PackedMatrix]]] = {}
    for name, packed in layers.items():
        if is_subword(packed):
            raise TightCompressError(
                f"{path}: layer {name!r} is subword-packed (4-bit halves of int8 weights), which the packed "
                "modules do not run; `tightcompress unpack` gives its weights as a state_dict"
            )
        fqn, index = _owner(path, name, packed)
        modules.setdefault(fqn, []).append((index, packed))
    for fqn, parts in modules.items():
        model.set_submodule(fqn, _packed_module(model, fqn, [p for _, p in sorted(parts)], state, path))
    tensors = {
        key: torch.from_numpy(np.array(array, order="C")).to(getattr(torch, dtypes[key]))
        for key, array in state.items()
    }
    for fqn in modules:
        for key, value in model.get_submodule(fqn).state_dict().items():
            if key.startswith("blocks."):
                tensors[f"{fqn}.{key}"] = value
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        raise TightCompressError(f"{path} does not fit {type(model).__name__}: {text[:300]}") from None
    return model


# ------------------------------------------------------------------------------------------------ helpers
def _dense_weight_shape(module: PackedLinear | PackedConv2d) -> tuple[int, ...]:
    if isinstance(module, PackedLinear):
        return (module.out_features, module.in_features)
    return (module.out_channels, module.in_channels // module.groups, *module.kernel_size)


def _owner(path: str, name: str, packed: PackedMatrix) -> tuple[str, int]:
    """`(module path, group index)` of a packed layer: from its `source` (the weight it came from)."""
    source = packed.info.get("source")
    weight = source.get("weight") if isinstance(source, dict) else None
    if not isinstance(weight, str) or not weight.endswith(".weight"):
        raise TightCompressError(
            f"{path}: layer {name!r} does not record the module weight it came from, so it cannot go into a "
            "model (files of `save_model` and of `pack --out` on a checkpoint do)"
        )
    index = source.get("group_index")
    return weight.removesuffix(".weight"), int(index or 0)


def _packed_module(
    model: nn.Module, fqn: str, parts: list[PackedMatrix], state: dict[str, np.ndarray], path: str
) -> nn.Module:
    """The packed module for the model's layer `fqn` from its packed matrices, in the layer's dtype and on
    its device; the layer must have the geometry the file recorded."""
    try:
        original = model.get_submodule(fqn)
    except AttributeError:
        raise TightCompressError(f"{path}: the model has no layer {fqn!r}") from None
    if isinstance(original, PackedLinear | PackedConv2d):
        reference, here = original.blocks[0].values, original.geometry()
    elif isinstance(original, nn.Linear | nn.Conv2d):
        reference = original.weight
        here = (
            conv_geometry(original)
            if isinstance(original, nn.Conv2d)
            else {
                "in_features": original.in_features,
                "out_features": original.out_features,
                "bias": original.bias is not None,
            }
        )
    else:
        kind = type(original).__name__
        raise TightCompressError(f"{path}: {fqn!r} is a {kind}, not a conv or linear layer")
    is_linear = isinstance(original, nn.Linear | PackedLinear)
    saved: dict[str, Any] = parts[0].info.get("module") or {}
    kind = saved.get("class", "PackedLinear" if is_linear else "PackedConv2d")
    geometry = saved.get("geometry", here)  # a `pack --out` layer: the model's own geometry
    source = parts[0].info["source"]
    if kind != ("PackedLinear" if is_linear else "PackedConv2d") or geometry != here:
        raise TightCompressError(
            f"{path}: layer {fqn!r} of the model does not match the saved {kind} {geometry}"
        )
    if tuple(source.get("shape", ())) != tuple(reference.shape) and not isinstance(
        original, PackedLinear | PackedConv2d
    ):
        raise TightCompressError(
            f"{path}: layer {fqn!r} has weight shape {tuple(reference.shape)}, the file {source.get('shape')}"
        )
    dtype = reference.dtype if reference.is_floating_point() else None
    blocks = [PackedWeight(p, dtype=dtype, device=reference.device) for p in parts]
    for block in blocks:
        block.info.pop("module", None)  # written afresh by `save_model`
    bias = state.get(f"{fqn}.bias")
    bias_tensor = None if bias is None or not geometry.get("bias") else torch.zeros(bias.shape)
    try:
        if kind == "PackedLinear":
            if len(blocks) != 1:
                raise TightCompressError(f"{path}: {fqn!r} must hold one packed matrix, got {len(blocks)}")
            module: nn.Module = PackedLinear(
                geometry["in_features"], geometry["out_features"], blocks[0], bias_tensor
            )
        else:
            module = PackedConv2d(geometry, blocks, bias_tensor)
    except (KeyError, TypeError, ValueError) as exc:
        raise TightCompressError(f"{path}: the saved geometry of {fqn!r} is incomplete ({exc})") from None
    module.train(original.training)
    return module.to(device=reference.device, dtype=dtype) if dtype is not None else module
