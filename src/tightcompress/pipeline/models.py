"""The demo CNN, loading a user's model class (`module:Class`) with its checkpoint, and the layers the
pipeline packs (one GEMM per group of a grouped conv, by the rule of `readers.matrices`)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.readers.checkpoint import read_state_dict
from tightcompress.readers.matrices import (
    LayerWeight,
    gemm_matrices,
    gemm_name,
    weight_from_groups,
    weight_source,
)
from tightcompress.zoo import DEMO_CNN_WIDTHS


class DemoCNN(nn.Module):
    """Four 3x3 conv layers (24-48-96-96 channels by default, the first three with stride 2) with batch norm,
    global average pooling and a linear head: about 4.5 M multiply-adds per 28x28 image (CPU-friendly)."""

    def __init__(
        self, in_channels: int = 1, n_classes: int = 10, widths: tuple[int, ...] = DEMO_CNN_WIDTHS
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for index, width in enumerate(widths):
            stride = 2 if index < 3 else 1
            layers += [
                nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch `(n, in_channels, H, W)`."""
        return self.head(self.features(x).mean(dim=(2, 3)))


def gemm_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers of a model that the pipeline packs, by module name.

    Depthwise convs (`groups == in_channels > 1`) are left dense, as everywhere (`readers.matrices`). A
    grouped conv (`1 < groups < in_channels`) is one layer here (its mask or quantization covers the whole
    weight) and `groups` GEMMs when packed (`split_gemms`, `join_gemms`).
    """
    layers = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            continue
        groups = getattr(module, "groups", 1)
        if groups > 1 and groups == module.in_channels:
            continue
        layers[name] = module
    if not layers:
        raise TightCompressError(f"{type(model).__name__} has no conv or linear layer to compress")
    return layers


def layer_gemm_names(layers: dict[str, nn.Module]) -> dict[str, list[str]]:
    """The GEMM names of every layer: `[name]`, or `name[0] ... name[groups-1]` for a grouped conv."""
    out = {}
    for name, module in layers.items():
        groups = int(getattr(module, "groups", 1))
        out[name] = [gemm_name(name, None if groups == 1 else g) for g in range(groups)]
    return out


def record_sources(layers: dict[str, nn.Module], packed: dict[str, Any]) -> None:
    """Record in each packed GEMM's `info["source"]` the state_dict key, shape and group of its weight
    (`readers.matrices.weight_source`), so `tightcompress unpack` rebuilds a loadable state_dict."""
    for name, gemm_names in layer_gemm_names(layers).items():
        module = layers[name]
        for index, gemm in enumerate(gemm_names):
            packed[gemm].info["source"] = weight_source(
                f"{name}.weight",
                tuple(module.weight.shape),
                len(gemm_names),
                index if len(gemm_names) > 1 else None,
            )


def split_gemms(layers: dict[str, nn.Module], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weight-shaped arrays of the layers (weights, masks, int8 steps, by layer name) -> the `K x N` matrix of
    every GEMM the layers are packed as, by GEMM name (`readers.matrices.gemm_matrices`: one per group)."""
    found, _ = gemm_matrices(
        [
            LayerWeight(name, arrays[name], str(arrays[name].dtype), int(getattr(module, "groups", 1)))
            for name, module in layers.items()
        ]
    )
    return {name: gemm.matrix for name, gemm in found.items()}


def join_gemms(layers: dict[str, nn.Module], matrices: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of `split_gemms`: every layer's weight-shaped array from its GEMMs' `K x N` matrices."""
    return {
        name: weight_from_groups([matrices[g] for g in names], tuple(layers[name].weight.shape))
        for name, names in layer_gemm_names(layers).items()
    }


def load_object(spec: str, what: str) -> Any:
    """`file.py:name` or `module:name`, both resolved from the current directory; a one-line error else."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TightCompressError(f"{what} must be given as module:name or file.py:name, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise TightCompressError(f"{what} file not found: {path}")
            spec_obj = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec_obj)  # type: ignore[arg-type]
            sys.modules.setdefault(path.stem, module)
            spec_obj.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            cwd = os.getcwd()
            added = cwd not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(cwd)
    except TightCompressError:
        raise
    except (Exception, SystemExit) as exc:  # the user's module may call sys.exit() at import
        raise TightCompressError(f"cannot import {module_name!r}: {user_failure(exc)}") from None
    if not hasattr(module, attr):
        raise TightCompressError(f"{module_name!r} has no {attr!r}")
    return getattr(module, attr)


def user_failure(exc: BaseException) -> str:
    """One line saying how the user's code failed: `ValueError: message`, or `it called sys.exit(0)`."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:300] + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def call_user_code(what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` where `function` is the user's (a model class, a transforms factory):
    any exception, or a `sys.exit()`, becomes a one-line `TightCompressError` naming `what`."""
    try:
        return function(*args, **kwargs)
    except TightCompressError:
        raise
    except (Exception, SystemExit) as exc:
        raise TightCompressError(f"{what} failed: {user_failure(exc)}") from None


def load_model_class(spec: str) -> type[nn.Module]:
    """`module:Class` or `path/to/file.py:Class` (both from the current directory) -> the class."""
    cls = load_object(spec, "model")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TightCompressError(f"{spec!r} is not a torch.nn.Module class")
    return cls


def load_model(spec: str, checkpoint: str | os.PathLike[str], key: str | None = None, **kwargs) -> nn.Module:
    """Build `module:Class(**kwargs)` and load the checkpoint's weights into it (strict).

    The checkpoint is read as people save them (`readers.checkpoint`): nested under any key (`key` picks
    one), `module.` prefixes stripped, `torch.nn.utils.prune` pairs folded, any dtype (cast to the model's).
    """
    cls = load_model_class(spec)
    model = call_user_code(f"building {spec}", cls, **kwargs)
    state = read_state_dict(checkpoint, key=key)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        text = " ".join(str(exc).split())  # torch's message spans lines; keep it whole, on one line
        text = text if len(text) <= 400 else text[:400] + " ..."
        raise TightCompressError(f"{checkpoint} does not fit {spec}: {text}") from None
    return model
