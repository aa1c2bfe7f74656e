"""Packed model -> hardware figures: how many input vectors each layer streams, then the cycle/energy model.

A conv layer's GEMM streams one input vector per output pixel (M = H_out * W_out per image); a linear
layer one per sample. Counted with forward hooks on one sample, so any model works. The layers left dense
(depthwise convs) are run dense on the same array (`simulate_dense_layers`), so a model's totals count
every conv and linear layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from tightcompress.baselines import pack_dense
from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.hw import simulate_packed, total_simulation
from tightcompress.pipeline.models import gemm_layers
from tightcompress.readers.matrices import DEPTHWISE_REASON, gemm_name, weight_to_matrix
from tightcompress.readers.topology import TopologyLayer, conv_layer

HW_ARRAY = (32, 32)  # the project's reference array for the reports' cycles and energy
# the figures of one group of a layer left dense that add up over its groups
_PER_GROUP_SUMS = (
    "cycles", "dense_cycles", "pe_cycles", "dense_pe_cycles", "energy_pj", "dense_energy_pj", "passes",
    "folds", "dense_folds", "min_folds",
)  # fmt: skip


def vectors_per_layer(model: nn.Module, sample: torch.Tensor) -> dict[str, int]:
    """M of every GEMM of the conv/linear layers for one input `sample` (a batch of one, shaped like the
    data); each group `name[g]` of a grouped conv streams the layer's M."""
    layers = gemm_layers(model)
    counts: dict[str, int] = {}
    for name, m in _input_vectors(model, layers, sample).items():
        groups = int(getattr(layers[name], "groups", 1))
        for g in range(groups):
            counts[gemm_name(name, None if groups == 1 else g)] = m
    return counts


def _input_vectors(model: nn.Module, layers: dict[str, nn.Module], sample: torch.Tensor) -> dict[str, int]:
    """Input vectors (M) each of `layers` streams for one sample, from one hooked forward pass in eval
    mode: a conv's output positions of one image, a linear layer's rows per sample."""
    vectors: dict[str, int] = {}
    hooks = []
    for name, layer in layers.items():

        def record(module, _inputs, output, name=name):
            if isinstance(module, nn.Linear):
                vectors[name] = int(output[0].numel() // output.shape[-1])
            else:
                vectors[name] = int(output[0, 0].numel())

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
    return vectors


def model_topology(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, TopologyLayer]:
    """The SCALE-Sim row of every conv/linear layer, by module name, from one forward pass with hooks.

    `input_shape` is the whole input, batch first (`(1, 3, 224, 224)`); the pass runs one sample of it and
    a batch of `B` multiplies every layer's M by `B`. A layer SCALE-Sim's convolution form cannot describe
    (dilation, unequal strides, a linear layer applied to several positions, B > 1) gets the equivalent
    GEMM row `TopologyLayer.from_gemm` of its M, K and N.
    """
    if len(input_shape) < 2 or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise TightCompressError(f"input shape must be positive integers, batch first, got {input_shape}")
    batch = input_shape[0]
    rows: dict[str, TopologyLayer] = {}
    hooks = []

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor, name: str) -> None:
        groups = int(getattr(module, "groups", 1))
        if groups > 1:  # a grouped conv is packed as one GEMM per group, named `name[g]`
            for g in range(groups):
                record_one(module, output, gemm_name(name, g), groups)
        else:
            record_one(module, output, name, 1)

    def record_one(module: nn.Module, output: torch.Tensor, name: str, groups: int) -> None:
        weight = module.weight
        k, n = int(weight[0].numel()), int(weight.shape[0]) // groups
        if isinstance(module, nn.Linear):
            m = int(output[0].numel() // output.shape[-1])
            row = TopologyLayer(name, 1, 1, 1, 1, k, n, 1) if m == 1 and batch == 1 else None
        else:
            spatial = tuple(int(d) for d in output.shape[2:])
            m = int(math.prod(spatial))
            kernel = tuple(int(d) for d in module.kernel_size)
            strides = set(module.stride)
            row = None
            if batch == 1 and len(strides) == 1 and all(d == 1 for d in module.dilation):
                if len(spatial) == 1:
                    spatial, kernel = (1, *spatial), (1, *kernel)
                row = conv_layer(name, spatial, kernel, int(weight.shape[1]), n, strides.pop())
        if row is None or (row.m, row.k, row.n) != (m, k, n):
            row = TopologyLayer.from_gemm(name, m * batch, k, n)
        rows[name] = row

    for name, layer in model.named_modules():
        if not isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Linear):
            continue
        groups = int(getattr(layer, "groups", 1))
        if groups > 1 and groups == layer.in_channels:  # depthwise: left dense, not packed
            continue
        hooks.append(layer.register_forward_hook(lambda mod, i, o, name=name: record(mod, i, o, name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape[1:])))
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shape = "x".join(map(str, input_shape))
        raise TightCompressError(f"{type(model).__name__} does not run on input {shape}: {first}") from None
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return rows


def simulate_model(
    packed: dict[str, PackedMatrix], vectors: dict[str, int], array: tuple[int, int] = (32, 32)
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-layer and total cycles/energy of the packed layers on an `R x C` array (one image)."""
    layers = {
        name: {k: v for k, v in simulate_packed(p, array=array, m=vectors[name]).items()}
        for name, p in packed.items()
    }
    return layers, total_simulation(layers.values())


def dense_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers the pipeline leaves dense (depthwise convs, `pipeline.models.gemm_layers`
    leaves them out), by module name, in model order."""
    packed = gemm_layers(model)
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear) and name not in packed
    }


def skipped_layer_notes(model: nn.Module) -> list[dict[str, Any]]:
    """`notes.skipped_layers` of a compress report: the layers left dense, as `pack` lists them."""
    return [
        {"name": name, "kind": "depthwise", "shape": list(module.weight.shape), "reason": DEPTHWISE_REASON}
        for name, module in dense_layers(model).items()
    ]


def simulate_dense_layers(
    model: nn.Module, sample: torch.Tensor, array: tuple[int, int] = HW_ARRAY
) -> list[dict[str, Any]]:
    """Cycles and energy of every layer left dense (`dense_layers`), run dense on the array, one image.

    Its cost is its dense cost (`cycles == dense_cycles`, speed-up and energy gain 1), in the cheaper of
    two mappings of a depthwise conv (`M` = its output pixels):
    - `per group`: `groups` GEMMs, one per channel group (`K = kh*kw*in/groups`, `N = out/groups`), as a
      grouped conv's groups are run (`name[g]`): one pass each. The groups have one shape and the array
      model charges dense slots whatever their values (no zero gating), so one group is simulated and its
      cycles, energies and PE-cycles multiplied by `groups`;
    - `block-diagonal`: one dense GEMM of `K = groups*kh*kw*in/groups` by `N = out` holding each group's
      weights on the diagonal (zeros elsewhere), every slot loaded: fewer passes when the groups are few.
    Useful MACs count the layer's real nonzeros either way.
    """
    layers = dense_layers(model)
    if not layers:
        return []
    vectors = _input_vectors(model, layers, sample)
    out = []
    for name, layer in layers.items():
        weight = layer.weight.detach().cpu().float().numpy()
        groups = int(getattr(layer, "groups", 1))
        m = vectors.get(name, 1)
        options = [("per group", *_per_group_cost(weight, groups, m, array))]
        if groups > 1:
            options.append(("block-diagonal", *_block_diagonal_cost(weight, groups, m, array)))
        mapping, figures, at_floor = min(options, key=lambda option: option[1]["cycles"])
        useful = int(np.count_nonzero(weight)) * m
        out.append(
            {
                "name": name,
                "kind": "depthwise",
                "shape": list(weight.shape),
                "groups": groups,
                "weights": int(weight.size),
                "mapping": mapping,
                "array": f"{array[0]}x{array[1]}",
                "m": m,
                **figures,
                "at_min_folds": at_floor,
                "speedup": 1.0,
                "energy_gain": 1.0,
                "useful_macs": useful,
                "utilization_pe": useful / figures["pe_cycles"] if figures["pe_cycles"] else 0.0,
                "dense_utilization_pe": useful / figures["pe_cycles"] if figures["pe_cycles"] else 0.0,
            }
        )
    return out


def _per_group_cost(
    weight: np.ndarray, groups: int, m: int, array: tuple[int, int]
) -> tuple[dict[str, Any], bool]:
    """The summed figures of `groups` equal dense GEMMs (one simulated, scaled), and whether each pass is
    one fold."""
    one = pack_dense(weight_to_matrix(weight[: weight.shape[0] // groups]), tile=array[1])
    sim = simulate_packed(one, array=array, m=m, dense=one)
    figures: dict[str, Any] = {key: sim[key] * groups for key in _PER_GROUP_SUMS}
    for key in ("energy_breakdown_pj", "dense_energy_breakdown_pj", "accesses"):
        figures[key] = {part: value * groups for part, value in sim[key].items()}
    return figures, bool(sim["at_min_folds"])


def _block_diagonal_cost(
    weight: np.ndarray, groups: int, m: int, array: tuple[int, int]
) -> tuple[dict[str, Any], bool]:
    """The figures of the grouped conv as one dense block-diagonal GEMM (zeros off the diagonal)."""
    per_out = weight.shape[0] // groups
    blocks = [weight_to_matrix(weight[g * per_out : (g + 1) * per_out]) for g in range(groups)]
    k = blocks[0].shape[0]
    matrix = np.zeros((k * groups, per_out * groups), dtype=np.float32)
    for g, block in enumerate(blocks):
        matrix[g * k : (g + 1) * k, g * per_out : (g + 1) * per_out] = block
    packed = pack_dense(matrix, tile=array[1])
    sim = simulate_packed(packed, array=array, m=m, dense=packed)
    keys = (*_PER_GROUP_SUMS, "energy_breakdown_pj", "dense_energy_breakdown_pj", "accesses")
    return {key: sim[key] for key in keys}, bool(sim["at_min_folds"])
