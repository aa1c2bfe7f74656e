"""Model readers: every way a model comes in (a `.npy` matrix, state_dicts and checkpoints, ONNX, a live
`nn.Module`, the zoo; SCALE-Sim topology CSVs in `readers.topology`) ends here as named layer weights and
their `K x N` GEMM matrices, under one rule for grouped and depthwise convolutions (`readers.matrices`).
First stage of model -> matrices -> packed -> report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError, missing_file
from tightcompress.readers.matrices import (
    GemmMatrix,
    LayerWeight,
    gemm_matrices,
    layer_weight,
    matrix_to_weight,
    state_dict_layers,
    unpackable_reason,
    weight_to_matrix,
)

__all__ = [
    "GemmMatrix",
    "LayerWeight",
    "ModelWeights",
    "gemm_matrices",
    "matrix_to_weight",
    "model_weights",
    "read_model",
    "weight_to_matrix",
]

INPUT_HELP = ".npy K x N matrix, a .pt/.pth/.safetensors checkpoint, or an .onnx model"


@dataclass
class ModelWeights:
    """What a reader found: the packable matrices, the layers skipped (with reasons), and for checkpoints
    the whole flat state_dict (so `unpack` can give back a state_dict that loads into the model)."""

    source: str
    layers: list[LayerWeight]
    matrices: dict[str, GemmMatrix]
    skipped: list[dict]
    state: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The `K x N` matrices by name, as `pack` takes them."""
        return {name: m.matrix for name, m in self.matrices.items()}

    @property
    def dtypes(self) -> dict[str, str]:
        return {name: m.dtype for name, m in self.matrices.items()}


def read_model(path: str | os.PathLike[str], key: str | None = None) -> ModelWeights:
    """Read any supported input file (see `INPUT_HELP`); `key` picks a nested state_dict (`--key`)."""
    path = Path(path)
    if not path.is_file():
        raise missing_file("input file", path)
    suffix = path.suffix.lower()
    if key is not None and suffix not in (".pt", ".pth", ".safetensors"):
        raise TightCompressError("--key selects a state_dict inside a .pt/.pth/.safetensors checkpoint")
    if suffix == ".npy":
        from tightcompress.utils.memory import PACK_BYTES_PER_WEIGHT
        from tightcompress.utils.npy import read_npy

        # checks the header against the file, and the memory of reading and packing it, before allocating
        matrix = read_npy(path, PACK_BYTES_PER_WEIGHT, doing="reading and packing")
        if matrix.ndim != 2:
            raise TightCompressError(f"{path}: expected a 2-D K x N matrix, got shape {matrix.shape}")
        layer = layer_weight(path.stem, matrix.T, str(matrix.dtype), source=str(path))
        gemm = GemmMatrix(path.stem, layer, None, matrix)
        return ModelWeights(str(path), [layer], {path.stem: gemm}, [])
    if suffix == ".onnx":
        from tightcompress.readers.onnx import read_onnx_layers

        layers, skipped = read_onnx_layers(path)
        matrices, depthwise = gemm_matrices(layers, source=str(path))
        return ModelWeights(str(path), layers, matrices, skipped + depthwise, notes={"groups_from": "onnx"})
    from tightcompress.readers.checkpoint import read_state_dict, tensor_to_numpy

    state = read_state_dict(path, key=key)
    arrays, dtypes, unusable = {}, {}, []
    for name, tensor in state.items():
        try:
            arrays[name], dtypes[name] = tensor_to_numpy(tensor)
        except TightCompressError as exc:  # a quantized tensor: listed, not packed, not carried through
            unusable.append({"name": name, "reason": f"{exc}; not carried into the packed file"})
    for entry in unusable:
        del state[entry["name"]]
    odd = [
        {"name": name, "reason": reason}
        for name, array in arrays.items()
        if (reason := unpackable_reason(name, array, dtypes[name])) is not None
    ]
    layers = state_dict_layers(
        {k: v for k, v in arrays.items() if k not in {e["name"] for e in odd}}, dtypes, source=str(path)
    )
    matrices, skipped = gemm_matrices(layers, source=str(path))
    skipped = unusable + odd + skipped
    notes = {
        "groups_from": "weight shapes (a state_dict does not record conv groups: a grouped conv is read as "
        "one dense conv unless --model or an .onnx file is given; depthwise convs are recognised by shape)"
    }
    return ModelWeights(str(path), layers, matrices, skipped, state=state, notes=notes)


def model_weights(model: Any, source: str = "model") -> ModelWeights:
    """What a live `nn.Module` holds: its conv/linear weights named like its state_dict (`fqn.weight`), with
    the groups of each conv, and its whole state_dict (so `unpack` can give it back)."""
    layers = [
        LayerWeight(f"{fqn}.weight" if fqn else "weight", lw.weight, lw.dtype, lw.groups)
        for fqn, _, lw in module_layers(model)
    ]
    if not layers:
        raise TightCompressError(f"{source}: no conv or linear weights found")
    matrices, skipped = gemm_matrices(layers, source=source)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    notes = {"groups_from": f"the model class ({type(model).__name__})"}
    return ModelWeights(source, layers, matrices, skipped, state=state, notes=notes)


def module_layers(model: Any, filter_fn: Any = None) -> list[tuple[str, Any, LayerWeight]]:
    """`(module path, module, LayerWeight)` of every `nn.Conv1d/Conv2d/Linear` of a live model, with its
    groups and the weight it computes with (a `torch.nn.utils.prune` mask applied); `filter_fn(module,
    fqn) -> bool` keeps a subset."""
    from torch import nn

    from tightcompress.readers.checkpoint import tensor_to_numpy

    found = []
    for fqn, module in model.named_modules():
        if not isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            continue
        if filter_fn is not None and not filter_fn(module, fqn):
            continue
        weight = module.weight
        if hasattr(module, "weight_orig") and hasattr(module, "weight_mask"):
            weight = module.weight_orig * module.weight_mask
        array, dtype = tensor_to_numpy(weight)
        groups = int(getattr(module, "groups", 1))
        found.append((fqn, module, layer_weight(fqn, array, dtype, groups=groups, source=fqn or "model")))
    return found
