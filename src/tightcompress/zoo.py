"""A model zoo of layer shapes (no downloads, no torchvision): VGG-16, ResNet-18, ResNet-50, MobileNetV2 at
224x224, and the project's demo CNN (`pipeline.models.DemoCNN`, 1x28x28 input).

Each layer is a `ZooLayer`: its state-dict name (torchvision's naming, so a user checkpoint of the same
architecture loads by name), its weight shape `(C_out, C_in / groups, kh, kw)` or `(out, in)`, and the output
pixels `M` of one image (the rows of the GEMM, for the cycle model; 1 for a linear layer).

Depthwise convolutions (MobileNetV2) are not dense GEMMs: output channel `c` reads input channel `c` only,
so the `9 x C` matrix of the reshape convention would wire every column to the wrong inputs. They are listed
(kind `depthwise`, `packable=False`) and **skipped** by packing, which records them in the report's notes;
they hold under 2 % of MobileNetV2's weights (about 6 % of its multiply-adds).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.readers.matrices import LayerWeight, gemm_matrices, weight_to_matrix


@dataclass(frozen=True)
class ZooLayer:
    """One weight layer of a zoo model."""

    name: str  # state-dict key of the weight, e.g. "layer1.0.conv1.weight"
    kind: str  # "conv", "depthwise" or "linear"
    shape: tuple[int, ...]  # weight shape, out first
    out_pixels: int  # output positions per image (GEMM rows M); 1 for linear layers
    stride: int = 1
    groups: int = 1  # a grouped conv (1 < groups < C_in) is packed per group as `name[g]`

    @property
    def packable(self) -> bool:
        """Dense GEMM layers are packed; depthwise convolutions are not (see the module docstring)."""
        return self.kind != "depthwise"

    @property
    def K(self) -> int:
        """Rows of the `K x N` matrix: `C_in * kh * kw` (or `in`)."""
        return int(np.prod(self.shape[1:]))

    @property
    def N(self) -> int:
        """Columns of the `K x N` matrix: the output channels."""
        return int(self.shape[0])

    @property
    def macs(self) -> int:
        """Multiply-adds of one image."""
        return self.K * self.N * self.out_pixels


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Builder:
    """Collects layers while tracking the spatial size."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.layers: list[ZooLayer] = []

    def conv(
        self,
        name: str,
        c_in: int,
        c_out: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        at: int | None = None,
    ) -> int:
        size = self.size if at is None else at
        out = _conv_out(size, k, stride, k // 2)
        kind = "depthwise" if groups > 1 and groups == c_in == c_out else "conv"
        shape = (c_out, c_in // groups, k, k)
        self.layers.append(
            ZooLayer(name, kind, shape, out * out, stride, 1 if kind == "depthwise" else groups)
        )
        return out

    def linear(self, name: str, n_in: int, n_out: int) -> None:
        self.layers.append(ZooLayer(name, "linear", (n_out, n_in), 1))


def vgg16() -> list[ZooLayer]:
    """VGG-16 (configuration D) at 224x224: 13 conv 3x3 layers and 3 linear layers."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    b = _Builder(224)
    index, c_in = 0, 3
    for item in cfg:
        if item == "M":
            b.size //= 2
            index += 1
            continue
        b.conv(f"features.{index}.weight", c_in, int(item), 3)
        c_in = int(item)
        index += 2  # conv, relu
    b.linear("classifier.0.weight", 512 * 7 * 7, 4096)
    b.linear("classifier.3.weight", 4096, 4096)
    b.linear("classifier.6.weight", 4096, 1000)
    return b.layers


def _resnet_stem(b: _Builder) -> None:
    b.size = b.conv("conv1.weight", 3, 64, 7, stride=2)
    b.size = _conv_out(b.size, 3, 2, 1)  # max pool


def resnet18() -> list[ZooLayer]:
    """ResNet-18 at 224x224 (basic blocks [2, 2, 2, 2])."""
    b = _Builder(224)
    _resnet_stem(b)
    c_in = 64
    for stage, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for block in range(2):
            s = stride if block == 0 else 1
            prefix = f"layer{stage}.{block}"
            size_in = b.size
            out = b.conv(f"{prefix}.conv1.weight", c_in, planes, 3, stride=s)
            b.conv(f"{prefix}.conv2.weight", planes, planes, 3, at=out)
            if s != 1 or c_in != planes:
                b.conv(f"{prefix}.downsample.0.weight", c_in, planes, 1, stride=s, at=size_in)
            b.size, c_in = out, planes
    b.linear("fc.weight", 512, 1000)
    return b.layers


def resnet50() -> list[ZooLayer]:
    """ResNet-50 at 224x224 (bottleneck blocks [3, 4, 6, 3], stride on the 3x3 conv as torchvision)."""
    b = _Builder(224)
    _resnet_stem(b)
    c_in = 64
    for stage, (planes, blocks, stride) in enumerate(
        [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1
    ):
        for block in range(blocks):
            s = stride if block == 0 else 1
            prefix = f"layer{stage}.{block}"
            size_in = b.size
            b.conv(f"{prefix}.conv1.weight", c_in, planes, 1)
            out = b.conv(f"{prefix}.conv2.weight", planes, planes, 3, stride=s)
            b.conv(f"{prefix}.conv3.weight", planes, planes * 4, 1, at=out)
            if block == 0:
                b.conv(f"{prefix}.downsample.0.weight", c_in, planes * 4, 1, stride=s, at=size_in)
            b.size, c_in = out, planes * 4
    b.linear("fc.weight", 2048, 1000)
    return b.layers


def mobilenet_v2() -> list[ZooLayer]:
    """MobileNetV2 (width 1.0) at 224x224; its depthwise convolutions are listed but not packable."""
    b = _Builder(224)
    b.size = b.conv("features.0.0.weight", 3, 32, 3, stride=2)
    c_in, index = 32, 1
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]:  # fmt: skip
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c_in * t
            prefix = f"features.{index}.conv"
            sub = 0
            if t != 1:
                b.conv(f"{prefix}.0.0.weight", c_in, hidden, 1)
                sub = 1
            out = b.conv(f"{prefix}.{sub}.0.weight", hidden, hidden, 3, stride=stride, groups=hidden)
            b.conv(f"{prefix}.{sub + 1}.weight", hidden, c, 1, at=out)
            b.size, c_in, index = out, c, index + 1
    b.conv(f"features.{index}.0.weight", c_in, 1280, 1)
    b.linear("classifier.1.weight", 1280, 1000)
    return b.layers


# Conv widths of the demo CNN (`tightcompress.pipeline.models.DemoCNN`); here so the zoo needs no torch.
# Chosen by measurement (README, "The embedded demo"): at 32-64-128-128 every method recovers the dense
# accuracy at 16x after fine-tuning on this small task, so the format's quality does not show.
DEMO_CNN_WIDTHS = (24, 48, 96, 96)


def demo_cnn() -> list[ZooLayer]:
    """The demo CNN of `tightcompress.pipeline.models.DemoCNN` (1x28x28, convs 24-48-96-96, head 10)."""
    b = _Builder(28)
    c_in = 1
    for index, width in enumerate(DEMO_CNN_WIDTHS):
        b.size = b.conv(f"features.{3 * index}.weight", c_in, width, 3, stride=2 if index < 3 else 1)
        c_in = width
    b.linear("head.weight", c_in, 10)
    return b.layers


ZOO: dict[str, Callable[[], list[ZooLayer]]] = {
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenetv2": mobilenet_v2,
    "demo": demo_cnn,
}


def zoo_layers(name: str, kinds: str = "all") -> list[ZooLayer]:
    """The layers of zoo model `name`; `kinds="conv"` keeps conv layers only (depthwise included)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ZOO:
        raise TightCompressError(f"unknown zoo model {name!r}; choose one of {', '.join(ZOO)}")
    if kinds not in ("all", "conv"):
        raise TightCompressError(f"layer selection must be 'all' or 'conv', got {kinds!r}")
    layers = ZOO[key]()
    return [layer for layer in layers if kinds == "all" or layer.kind != "linear"]


def init_weight(layer: ZooLayer, seed: int, index: int) -> np.ndarray:
    """Seeded Kaiming-normal weight (fan-out, ReLU gain, as torchvision) for a conv; N(0, 0.01) for linear.

    Seeded per layer by `(seed, index)`, so a layer's weights do not depend on which others are built.
    """
    rng = np.random.default_rng([seed, index])
    if layer.kind == "linear":
        std = 0.01
    else:
        fan_out = layer.shape[0] * int(np.prod(layer.shape[2:]))
        std = float(np.sqrt(2.0 / fan_out))
    return (rng.standard_normal(layer.shape, dtype=np.float32) * std).astype(np.float32)


def zoo_matrices(
    name: str,
    *,
    seed: int = 0,
    kinds: str = "all",
    checkpoint: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, np.ndarray], list[ZooLayer], list[ZooLayer]]:
    """`(matrices, packed_layers, skipped_layers)`: the `K x N` matrices of a zoo model's packable layers.

    Weights come from the seeded initializer, or from `checkpoint` (a state dict of that architecture,
    checked layer by layer for presence and shape).
    """
    layers = zoo_layers(name, kinds)
    state = None
    if checkpoint is not None:
        from tightcompress.readers.checkpoint import read_state_dict, tensor_to_numpy

        state = {k: tensor_to_numpy(v)[0] for k, v in read_state_dict(checkpoint).items()}
    matrices: dict[str, np.ndarray] = {}
    packed, skipped = [], []
    for index, layer in enumerate(layers):
        if not layer.packable:
            skipped.append(layer)
            continue
        if state is None:
            weight = init_weight(layer, seed, index)
        else:
            if layer.name not in state:
                raise TightCompressError(f"{checkpoint}: no weight {layer.name!r} of zoo model {name!r}")
            weight = np.asarray(state[layer.name], dtype=np.float32)
            if tuple(weight.shape) != layer.shape:
                raise TightCompressError(
                    f"{checkpoint}: {layer.name} has shape {tuple(weight.shape)}, "
                    f"{name} expects {layer.shape}"
                )
        if layer.groups == 1:
            matrices[layer.name] = weight_to_matrix(weight)
            packed.append(layer)
            continue
        found, _ = gemm_matrices([LayerWeight(layer.name, weight, "float32", layer.groups)], source=name)
        for gemm in found.values():  # one matrix per group, `name[g]` (the readers' rule)
            matrices[gemm.name] = gemm.matrix
            packed.append(
                replace(layer, name=gemm.name, shape=(layer.shape[0] // layer.groups, *layer.shape[1:]))
            )
    return matrices, packed, skipped
