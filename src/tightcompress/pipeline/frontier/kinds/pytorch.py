"""A PyTorch model as a frontier model kind (`tightcompress frontier --model file.py:Class --checkpoint C
--eval module:function`): each point builds the model, loads the checkpoint, prunes it one-shot in place
(`pipeline.oneshot.prune_module`, calibrated with `--calibration`, a `.pt` or `.npy` tensor of inputs,
first axis = samples; the rate shared out between the layers by `--allocation`) and scores it with the
user's metric, which is given the model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.frontier.kinds.metric import Metric
from tightcompress.pipeline.frontier.kinds.oneshot import (
    OneShotKind,
    check_allocation,
    existing_file,
    file_sha256,
)
from tightcompress.pipeline.hardware import vectors_per_layer
from tightcompress.pipeline.models import load_model


def load_tensor_calibration(path: Path) -> torch.Tensor:
    """The calibration inputs of a PyTorch model: one tensor (`.pt`, `torch.save`d) or array (`.npy`)."""
    try:
        if path.suffix == ".npy":
            value: Any = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            value = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TightCompressError(f"--calibration {path} is not readable: {type(exc).__name__}") from None
    if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[0] < 1:
        raise TightCompressError(f"--calibration {path} must hold one tensor, samples first")
    if not value.is_floating_point():
        value = value.float()
    return value


def model_spec(spec: str) -> str:
    """`file.py:Class` with the file made absolute (worker processes may start elsewhere), or as given."""
    module, _, name = spec.partition(":")
    if module.endswith(".py"):
        return f"{existing_file(module, '--model file')}:{name}"
    return spec


@dataclass(frozen=True)
class TorchKind(OneShotKind):
    """`model` (`file.py:Class` or `module:Class`) built with `model_args` and loaded from `checkpoint`;
    `allocation` is `prune_module`'s (`pipeline.oneshot.ALLOCATIONS`)."""

    model: str
    checkpoint: Path
    metric: Metric
    calibration: Path | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    allocation: str = "planned"

    name: ClassVar[str] = "pytorch"

    def __post_init__(self) -> None:
        check_allocation(self.allocation)
        object.__setattr__(self, "model", model_spec(self.model))
        object.__setattr__(self, "checkpoint", existing_file(self.checkpoint, "--checkpoint"))
        if self.calibration is not None:
            object.__setattr__(self, "calibration", existing_file(self.calibration, "--calibration"))

    def __hash__(self) -> int:  # model_args is a dict
        return hash((self.model, self.checkpoint, self.metric, self.calibration, self.allocation))

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.checkpoint)

    def model_settings(self) -> dict[str, Any]:
        return {
            "class": self.model,
            "model_args": json.loads(json.dumps(self.model_args, sort_keys=True)),
            "checkpoint": str(self.checkpoint),
            "sha256": self.sha256,
        }

    def build(self) -> nn.Module:
        """A fresh dense copy of the model, in evaluation mode."""
        return load_model(self.model, self.checkpoint, **self.model_args).eval()

    def score_dense(self) -> float:
        return self.metric(self.build(), "the dense model")

    def prune_and_score(self, method: str, rate: float, seed: int) -> tuple[Any, float, Any]:
        from tightcompress.pipeline.oneshot import prune_module_packed

        model = self.build()
        calibration = None if self.calibration is None else load_tensor_calibration(self.calibration)
        result = prune_module_packed(
            model, method=method, rate=rate, calibration=calibration, seed=seed, allocation=self.allocation
        )
        vectors = None
        if calibration is not None and result.packed:
            vectors = vectors_per_layer(model, calibration[:1])
        score = self.metric(model.eval(), f"{method} at {rate:g}x")
        return result, score, vectors
