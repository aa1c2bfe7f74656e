"""Packed layers that run: `PackedLinear` and `PackedConv2d` hold the tight format itself and compute from it.

In the spirit of `torch.nn.utils.prune` (state lives where PyTorch users look for it), each packed matrix is a
`PackedWeight` submodule whose state is the format: the slot `values` (a parameter, so optimizers and
gradients reach the kept weights) and the integer buffers `lanes`, `heights`, `row_perm`, `col_perm`,
`group_offsets`. `state_dict()`, `.to(device)`, `.half()` and `load_state_dict` therefore just work.

Forward: one `scatter` of every slot value into a flat buffer, through the precomputed `slot_index` (a
non-persistent buffer derived from the format: where each slot's weight sits in the `(N, K)` PyTorch-layout
weight). Only slots holding a weight when the index is built (the format's rule: a nonzero value) point
into the weight, each at its own position; every other slot points at a spare position of its own past the
end, which is cut off. The indices are therefore distinct, so the scatter is exact under every backend
(ONNX's ScatterElements included), an unused slot never receives a gradient, and the forward is a fixed
graph of tensor ops: `torch.onnx.export` (dynamo or not), `torch.jit.script` and `torch.compile` (one
graph, no recompiles) all take it. The layer then runs `F.linear` / `F.conv2d` with the rebuilt weight.
`slot_index` is rebuilt by `load_state_dict`; after writing the format buffers in place, call `reindex()`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix

# Buffer name -> dtype stored (the format's integer arrays).
_INDEX_BUFFERS = {
    "group_offsets": torch.int64,
    "row_perm": torch.int32,
    "col_perm": torch.int32,
    "heights": torch.int32,
    "lanes": torch.int16,
}
_META_FIELDS = ("K", "N", "group", "tile", "method", "height_cap")


class PackedWeight(nn.Module):
    """One packed `K x N` matrix as module state; `matrix()` rebuilds the kept weights from it."""

    def __init__(self, packed: PackedMatrix, dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.K, self.N, self.group, self.tile = packed.K, packed.N, packed.group, packed.tile
        self.method, self.height_cap = packed.method, packed.height_cap
        self.info: dict[str, Any] = dict(packed.info)
        for name, index_dtype in _INDEX_BUFFERS.items():
            array = np.ascontiguousarray(getattr(packed, name))
            self.register_buffer(name, torch.as_tensor(array).to(device=device, dtype=index_dtype))
        values = torch.as_tensor(np.ascontiguousarray(packed.values))
        values = values.to(device=device, dtype=dtype or _torch_dtype(packed))
        self.values = nn.Parameter(values, requires_grad=values.is_floating_point())
        self.register_buffer("slot_index", self._slot_index(), persistent=False)

    @classmethod
    def empty(
        cls, meta: dict[str, Any], shapes: dict[str, tuple[int, ...]], dtype: torch.dtype
    ) -> PackedWeight:
        """A shell with the given field values and array shapes, to be filled by `load_state_dict`."""
        arrays = {name: np.zeros(shapes[name], dtype=np.int64) for name in (*_INDEX_BUFFERS, "values")}
        packed = PackedMatrix(**{f: meta[f] for f in _META_FIELDS}, **arrays, info=dict(meta.get("info", {})))
        return cls(packed, dtype=dtype)

    def meta(self) -> dict[str, Any]:
        """The non-array fields (what `save_model` writes beside the tensors to rebuild this module)."""
        return {**{f: getattr(self, f) for f in _META_FIELDS}, "info": self.info}

    def reindex(self) -> None:
        """Rebuild `slot_index` from the format buffers and which slots hold a weight (after writing them
        in place; `load_state_dict` calls it)."""
        self.slot_index = self._slot_index()

    def _slot_index(self) -> torch.Tensor:
        """`(rows * C,)` int64: the flat index `column * K + row` of each used slot's weight in the `(N, K)`
        weight; unused slots (no weight, or a padding column) get distinct spare indices `N*K + slot`."""
        n_tiles, tile, K = self.row_perm.shape[0], self.tile, self.K
        heights = self.heights.long()
        n_groups = heights.shape[0]
        rows = self.values.shape[0]
        device = self.lanes.device
        spare = K * self.N + torch.arange(rows * tile, device=device).view(rows, tile)
        if int(heights.sum()) != rows:  # an `empty` shell (zero heights) until `load_state_dict` fills it
            return spare.reshape(-1)
        slot_tile = torch.repeat_interleave(
            torch.arange(n_tiles, device=device), heights.sum(0), output_size=rows
        )
        slot_group = torch.repeat_interleave(
            torch.arange(n_groups, device=device).repeat(n_tiles), heights.T.reshape(-1), output_size=rows
        )
        position = self.group_offsets.long()[slot_group][:, None] + self.lanes.long()
        position = position.clamp(max=K - 1)  # an unused slot's lane 0 may sit past a short group
        src_row = self.row_perm.long()[slot_tile[:, None], position]
        src_col = self.col_perm.long().view(n_tiles, tile)[slot_tile]
        used = (self.values.detach() != 0) & (src_col >= 0)
        return torch.where(used, src_col.clamp(min=0) * K + src_row, spare).reshape(-1)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        errors = len(error_msgs)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if len(error_msgs) == errors:  # a refused tensor (wrong shape) is reported by load_state_dict
            self.reindex()

    def weight_matrix(self) -> torch.Tensor:
        """The kept weights as `(N, K)` (PyTorch layout), differentiable in `values` (used slots only)."""
        size = self.K * self.N
        values = self.values
        flat = torch.zeros(size + self.slot_index.shape[0], dtype=values.dtype, device=values.device)
        flat = flat.scatter(0, self.slot_index, values.reshape(-1))
        return flat[:size].view(self.N, self.K)

    def matrix(self) -> torch.Tensor:
        """The `K x N` matrix of kept weights (a view of `weight_matrix()`)."""
        return self.weight_matrix().T

    @property
    @torch.jit.unused  # NumPy: not part of a scripted model
    def packed(self) -> PackedMatrix:
        """A NumPy `PackedMatrix` view of the current state (copied to the CPU; bf16 values as float32)."""
        arrays = {name: getattr(self, name).detach().cpu().numpy() for name in _INDEX_BUFFERS}
        for name in ("group_offsets", "row_perm", "col_perm", "heights"):
            arrays[name] = arrays[name].astype(np.int64)
        values = self.values.detach().cpu()
        dtype = str(values.dtype).removeprefix("torch.")
        info = {**self.info, "dtype": dtype}
        values_np = values.float().numpy() if values.dtype == torch.bfloat16 else values.numpy()
        return PackedMatrix(
            **{f: getattr(self, f) for f in _META_FIELDS}, **arrays, values=values_np, info=info
        )

    def extra_repr(self) -> str:
        cap = "auto" if self.height_cap is None else self.height_cap
        return f"K={self.K}, N={self.N}, method={self.method}, G={self.group}, h={cap}, C={self.tile}"


class PackedLinear(nn.Module):
    """`nn.Linear` whose weight is a packed matrix (`K = in_features`, `N = out_features`)."""

    def __init__(self, in_features: int, out_features: int, block: PackedWeight, bias: torch.Tensor | None):
        super().__init__()
        if (block.K, block.N) != (in_features, out_features):
            raise TightCompressError(
                f"packed matrix {block.K} x {block.N} does not fit Linear({in_features}, {out_features})"
            )
        self.in_features, self.out_features = in_features, out_features
        self.blocks = nn.ModuleList([block])
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The kept weights in PyTorch layout `(out, in)`, computed from the packed state."""
        return self.blocks[0].weight_matrix()

    @property
    @torch.jit.unused  # NumPy: not part of a scripted model
    def packed(self) -> PackedMatrix:
        return self.blocks[0].packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def geometry(self) -> dict[str, Any]:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class PackedConv2d(nn.Module):
    """`nn.Conv2d` whose weight is packed: one packed matrix, or one per group of a grouped conv
    (`K = in_channels/groups * kh * kw`, `N = out_channels/groups`). Depthwise convs are never packed."""

    def __init__(self, geometry: dict[str, Any], blocks: list[PackedWeight], bias: torch.Tensor | None):
        super().__init__()
        self.in_channels = int(geometry["in_channels"])
        self.out_channels = int(geometry["out_channels"])
        self.kernel_size = tuple(geometry["kernel_size"])
        self.stride = tuple(geometry["stride"])
        self.padding = (
            geometry["padding"] if isinstance(geometry["padding"], str) else tuple(geometry["padding"])
        )
        self.dilation = tuple(geometry["dilation"])
        self.groups = int(geometry["groups"])
        self.padding_mode = geometry.get("padding_mode", "zeros")
        if self.groups > 1 and self.in_channels == self.groups:
            raise TightCompressError("a depthwise convolution is left dense, not packed")
        expected = (
            self.in_channels // self.groups * int(np.prod(self.kernel_size)),
            self.out_channels // self.groups,
        )
        n_blocks = self.groups
        if len(blocks) != n_blocks or any((b.K, b.N) != expected for b in blocks):
            raise TightCompressError(
                f"a conv with groups={self.groups} needs {n_blocks} packed matrices of {expected[0]} x "
                f"{expected[1]}, got {[(b.K, b.N) for b in blocks]}"
            )
        self.blocks = nn.ModuleList(blocks)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self._block_shape = [expected[1], self.in_channels // self.groups, *self.kernel_size]
        self._reversed_padding_repeated_twice = _reversed_padding(
            self.padding, self.kernel_size, self.dilation
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, blocks: list[PackedWeight]) -> PackedConv2d:
        return cls(conv_geometry(conv), blocks, conv.bias)

    @property
    def weight(self) -> torch.Tensor:
        """The kept weights in PyTorch layout `(out, in/groups, kh, kw)`, computed from the packed state."""
        parts: list[torch.Tensor] = []
        for block in self.blocks:  # a loop, not a comprehension: TorchScript unrolls it over the ModuleList
            parts.append(block.weight_matrix().view(self._block_shape))
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts, dim=0)

    @property
    @torch.jit.unused  # NumPy: not part of a scripted model
    def packed(self) -> PackedMatrix | list[PackedMatrix]:
        """The `PackedMatrix` (a list of one per group for a grouped conv)."""
        views = [block.packed for block in self.blocks]
        return views[0] if len(views) == 1 else views

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def geometry(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "padding_mode": self.padding_mode,
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}"
        )


def conv_geometry(conv: nn.Conv2d) -> dict[str, Any]:
    """The geometry of an `nn.Conv2d` as plain JSON-able values."""
    return {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": list(conv.kernel_size),
        "stride": list(conv.stride),
        "padding": conv.padding if isinstance(conv.padding, str) else list(conv.padding),
        "dilation": list(conv.dilation),
        "groups": conv.groups,
        "padding_mode": conv.padding_mode,
        "bias": conv.bias is not None,
    }


def _reversed_padding(
    padding: str | tuple[int, ...], kernel_size: tuple[int, ...], dilation: tuple[int, ...]
) -> list[int]:
    """`F.pad`'s padding (last dimension first, both sides) for a non-zeros padding mode, as `nn.Conv2d`
    computes it ("same": the extra pixel on the right/bottom; "valid": none)."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0] * len(kernel_size)
        sides: list[int] = []
        for d, k in zip(reversed(dilation), reversed(kernel_size), strict=True):
            total = d * (k - 1)
            sides += [total // 2, total - total // 2]
        return sides
    return [p for p in reversed(padding) for _ in range(2)]


def _torch_dtype(packed: PackedMatrix) -> torch.dtype:
    name = packed.info.get("dtype", str(packed.values.dtype))
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise TightCompressError(f"unsupported weight dtype {name!r}")
    return dtype
