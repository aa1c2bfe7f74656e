"""User-like models for the PyTorch tests: a CNN with BatchNorm and biases, grouped and depthwise convs, and a
ResNet-18 with torchvision's module names (built here: torchvision is not a dependency)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from tightcompress.nn import PackedConv2d, PackedLinear
from tightcompress.readers.matrices import matrix_to_weight


def cnn_bn() -> nn.Sequential:
    """Two convs with biases and BatchNorm, a linear head."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


CNN_BN_LAYERS = {"0", "3", "8"}


def grouped_depthwise() -> nn.Sequential:
    """A dense conv, a grouped conv (groups=4), a depthwise conv, a pointwise conv and a linear head."""
    return nn.Sequential(
        nn.Conv2d(4, 16, 3, padding=1),
        nn.Conv2d(16, 32, 3, padding=1, groups=4),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.Conv2d(32, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


class GroupedNet(nn.Sequential):
    """`grouped_depthwise()` as a class, for `--model torch_models.py:GroupedNet`."""

    def __init__(self) -> None:
        super().__init__(*grouped_depthwise())


GROUPED_PACKED = {"0", "1[0]", "1[1]", "1[2]", "1[3]", "3", "6"}
GROUPED_SKIPPED = {"2"}


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or c_in != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout and names (conv1, bn1, layer1..4.{0,1}.conv1/2, downsample.0, fc)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for index, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            setattr(
                self,
                f"layer{index}",
                nn.Sequential(BasicBlock(c_in, planes, stride), BasicBlock(planes, planes, 1)),
            )
            c_in = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so eval-mode outputs exercise them."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def masked_dense(original: nn.Module, packed_model: nn.Module) -> nn.Module:
    """The original dense model with each packed layer's weight replaced by its kept weights, rebuilt by the
    NumPy format (`PackedMatrix.to_dense`), independently of the torch forward under test."""
    reference = copy.deepcopy(original)
    for fqn, module in packed_model.named_modules():
        if not isinstance(module, PackedLinear | PackedConv2d):
            continue
        layer = reference.get_submodule(fqn)
        views = module.packed if isinstance(module.packed, list) else [module.packed]
        groups = len(views)
        shape = (layer.weight.shape[0] // groups, *layer.weight.shape[1:])
        parts = [matrix_to_weight(v.to_dense().astype(np.float32), shape) for v in views]
        kept = torch.from_numpy(np.concatenate(parts)).to(layer.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(kept)
    return reference


def assert_outputs_match(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Max absolute difference at most `rel` of the output's scale (max |expected|)."""
    scale = float(expected.abs().max())
    diff = float((actual.float() - expected.float()).abs().max())
    assert diff <= rel * max(scale, 1e-12), (diff, scale)


class MixedLayers(nn.Module):
    """Every layer kind `sparsify_` meets, with odd geometry: a conv with stride, padding, dilation and a
    reflect padding mode, a grouped conv without bias, a depthwise conv (left dense), a pointwise conv, a
    Linear with and one without bias. Its packed files of release 0.1.0 are kept in `tests/data/`."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, stride=2, padding=2, dilation=2, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(12)
        self.grouped = nn.Conv2d(12, 24, 3, padding=1, groups=3, bias=False)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.pw = nn.Conv2d(24, 16, 1)
        self.hidden = nn.Linear(16, 20, bias=False)
        self.head = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.pw(torch.relu(self.dw(self.grouped(x)))))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.head(torch.relu(self.hidden(x)))


MIXED_PACKED = {"stem", "grouped", "pw", "hidden", "head"}
