"""Layer weights -> the GEMM matrices that are packed (`K x N`, layer `y = x @ W`), one rule for every reader.

Conventions: conv weight `(C_out, C_in / groups, kh, kw)` -> `W = weight.reshape(C_out, -1).T`
(K = C_in/groups * kh * kw in that order); linear `(out, in)` -> `W = weight.T`; conv1d likewise.

Grouped convolutions (rule 4 of issue 11): a conv with `1 < groups < C_in` is `groups` independent GEMMs,
group `g` mapping input channels `g*C_in/groups ...` to output channels `g*C_out/groups ...`; each is packed
on its own and named `name[g]`. A depthwise conv (`groups == C_in > 1`, one input channel per output) is
not a GEMM worth packing (each column would hold kh*kw weights): it is left dense and listed as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tightcompress.errors import TightCompressError

# Weight ranks that are GEMMs under the reshape convention, and what they are called in messages.
LAYER_KIND = {2: "linear", 3: "conv1d", 4: "conv2d"}
DEPTHWISE_REASON = "depthwise convolution (groups == in_channels): left dense, not a GEMM"


def weight_to_matrix(weight: np.ndarray) -> np.ndarray:
    """Layer weight (out first) -> `K x N` matrix."""
    return np.ascontiguousarray(weight.reshape(weight.shape[0], -1).T)


def matrix_to_weight(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`K x N` matrix -> layer weight of `shape` (inverse of `weight_to_matrix`)."""
    return np.ascontiguousarray(matrix.T.reshape(shape))


def gemm_name(layer_name: str, group_index: int | None) -> str:
    """The report name of one GEMM: the layer's name, or `name[g]` for group `g` of a grouped conv."""
    return layer_name if group_index is None else f"{layer_name}[{group_index}]"


def group_rows(out_channels: int, groups: int, group_index: int) -> slice:
    """The output channels (first weight axis) of group `group_index`: `g*C_out/groups ...` (the one rule)."""
    per_group = out_channels // groups
    return slice(group_index * per_group, (group_index + 1) * per_group)


def weight_from_groups(parts: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The `K x N` matrices of a layer's groups, in group order -> its weight of `shape` (inverse of
    `gemm_matrices` on one layer; one part for an ungrouped layer)."""
    first = np.asarray(parts[0])
    weight = np.zeros(shape, dtype=first.dtype)
    part_shape = (shape[0] // len(parts), *shape[1:])
    for index, part in enumerate(parts):
        weight[group_rows(shape[0], len(parts), index)] = matrix_to_weight(np.asarray(part), part_shape)
    return weight


@dataclass(frozen=True)
class LayerWeight:
    """One conv or linear weight as a reader found it, in PyTorch layout, with its geometry.

    `dtype` is the stored type (`float16`, `bfloat16`, `int8`, ...); `weight` holds the same values as a
    NumPy array (float32 for bfloat16, which NumPy lacks). `groups` is 1 unless the source records it.
    `inferred_depthwise` marks a weight taken as depthwise from its shape alone (a state_dict has no groups).
    """

    name: str
    weight: np.ndarray
    dtype: str
    groups: int = 1
    inferred_depthwise: bool = False

    @property
    def depthwise(self) -> bool:
        """One input channel per group, more than one group (or inferred so from a bare state_dict)."""
        return self.inferred_depthwise or (self.groups > 1 and self.weight.shape[1] == 1)


@dataclass(frozen=True)
class GemmMatrix:
    """One packable `K x N` matrix: all of a layer, or group `group_index` of a grouped conv."""

    name: str  # report name: the layer's name, or `name[g]`
    layer: LayerWeight
    group_index: int | None
    matrix: np.ndarray

    @property
    def dtype(self) -> str:
        return self.layer.dtype


def unpackable_reason(name: str, array: np.ndarray, dtype: str) -> str | None:
    """Why a state_dict tensor named like a layer weight (`...weight`, two or more dimensions) cannot be
    packed, or None (also for every tensor that is not such a weight: those are carried through as they
    are). Such a weight is listed as skipped and carried through unchanged, never fatal."""
    if not name.split(".")[-1].endswith("weight") or array.ndim <= 1:
        return None
    if array.size == 0:
        return f"empty weight (shape {tuple(array.shape)}): nothing to pack; carried through as it is"
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        return f"{dtype} weight: only real numbers are packed; carried through as it is"
    return None


def layer_weight(
    name: str, weight: np.ndarray, dtype: str, groups: int = 1, source: str = "model"
) -> LayerWeight:
    """A checked `LayerWeight`: a 2-D to 4-D numeric weight whose channels split into `groups`."""
    weight = np.asarray(weight)
    if weight.ndim not in LAYER_KIND:
        raise TightCompressError(
            f"{source}: unknown layer type for {name!r}: a {weight.ndim}-D weight {tuple(weight.shape)} "
            "(supported: linear 2-D, conv1d 3-D, conv2d 4-D)"
        )
    if not (np.issubdtype(weight.dtype, np.floating) or np.issubdtype(weight.dtype, np.integer)):
        raise TightCompressError(f"{source}: weight {name!r} has non-numeric dtype {weight.dtype}")
    if weight.dtype.itemsize > 8:  # float128: no packed storage (safetensors has no long double)
        raise TightCompressError(
            f"{source}: weight {name!r} has dtype {weight.dtype}, which cannot be stored packed; "
            "convert it to float64 or float32"
        )
    if weight.size == 0:
        raise TightCompressError(f"{source}: weight {name!r} is empty (shape {tuple(weight.shape)})")
    if groups < 1 or weight.shape[0] % groups:
        raise TightCompressError(
            f"{source}: {name!r} has {weight.shape[0]} output channels, not divisible by groups={groups}"
        )
    return LayerWeight(name, weight, dtype, int(groups))


def gemm_matrices(
    layers: list[LayerWeight], source: str = "model"
) -> tuple[dict[str, GemmMatrix], list[dict]]:
    """`(matrices by name, skipped layers)`: every layer's `K x N` matrix (one per group of a grouped conv);
    depthwise convs are skipped with their reason (the report's `notes.skipped_layers`)."""
    matrices: dict[str, GemmMatrix] = {}
    skipped: list[dict] = []
    for layer in layers:
        if layer.depthwise:
            reason = DEPTHWISE_REASON
            if layer.inferred_depthwise:
                reason += (
                    " (inferred from the shape: a state_dict does not record groups; "
                    "give --model or an ONNX file to read them)"
                )
            skipped.append(
                {"name": layer.name, "kind": "depthwise", "shape": list(layer.weight.shape), "reason": reason}
            )
            continue
        if layer.groups == 1:
            matrices[layer.name] = GemmMatrix(layer.name, layer, None, weight_to_matrix(layer.weight))
            continue
        for g in range(layer.groups):
            name = gemm_name(layer.name, g)
            part = layer.weight[group_rows(layer.weight.shape[0], layer.groups, g)]
            matrices[name] = GemmMatrix(name, layer, g, weight_to_matrix(part))
    if not matrices:
        raise TightCompressError(f"{source}: no conv or linear weights to pack")
    return matrices, skipped


def state_dict_layers(
    state: dict[str, np.ndarray], dtypes: dict[str, str] | None = None, source: str = "checkpoint"
) -> list[LayerWeight]:
    """The conv and linear weights of a state dict, in its order (groups are not recorded: 1).

    A tensor counts as a layer weight when its name ends in `weight` and it has more than one dimension;
    1-D weights (normalisation scales) are skipped. A conv weight with one input channel per output and a
    kernel larger than 1x1 that is not the model's first conv is taken as depthwise (a stem on a one-channel
    image has that shape too, but a later layer reading a one-channel feature map is very rare).
    """
    layers: list[LayerWeight] = []
    seen_conv = False
    for name, tensor in state.items():
        if not name.split(".")[-1].endswith("weight"):
            continue
        array = np.asarray(tensor)
        if array.ndim <= 1:
            continue
        dtype = (dtypes or {}).get(name, str(array.dtype))
        layer = layer_weight(name, array, dtype, source=source)
        if array.ndim > 2:
            if seen_conv and array.shape[1] == 1 and int(np.prod(array.shape[2:])) > 1 and array.shape[0] > 1:
                layer = LayerWeight(name, array, dtype, inferred_depthwise=True)
            seen_conv = True
        layers.append(layer)
    if not layers:
        raise TightCompressError(f"{source}: no conv or linear weights found")
    return layers


def weight_source(weight_name: str, shape: tuple[int, ...], groups: int, group_index: int | None) -> dict:
    """Where a packed GEMM came from, as `PackedMatrix.info["source"]` records it: the state_dict key of its
    weight, the weight's shape, and its group, so `tightcompress unpack` can put the weight back."""
    return {"weight": weight_name, "shape": list(shape), "groups": int(groups), "group_index": group_index}
