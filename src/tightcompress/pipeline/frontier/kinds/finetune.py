"""A PyTorch model in `--mode fine-tune` as a frontier model kind (`tightcompress frontier --model
file.py:Class --checkpoint C --mode fine-tune [--data DIR] --eval module:function`): the compress
pipeline (`kinds.trained`: gradual pruning, format-aware fit, fine-tuning with distillation from the
dense model) on the user's data, the finished model scored by the user's metric.

The data is `--data` (an ImageFolder tree, sized for the model's `input_size`) or, without it, the
bundled digits, as `tightcompress compress` reads them; each seed gets its own split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from tightcompress.pipeline.compress import CompressConfig, StageResult, snapshot
from tightcompress.pipeline.config import FRONTIER_METHODS
from tightcompress.pipeline.frontier.kinds.metric import Metric
from tightcompress.pipeline.frontier.kinds.oneshot import existing_file, file_sha256
from tightcompress.pipeline.frontier.kinds.pytorch import model_spec
from tightcompress.pipeline.frontier.kinds.trained import TrainedKind, check_model_rates
from tightcompress.pipeline.models import load_model

FORMAT = "frontier-finetune-1"  # bump when a fine-tuned point's meaning changes


@dataclass(frozen=True)
class FineTuneKind(TrainedKind):
    """`model` loaded from `checkpoint`, compressed with `compress`'s budget on `data`, scored by `metric`."""

    model: str
    checkpoint: Path
    metric: Metric
    data: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    compress: CompressConfig = field(default_factory=CompressConfig)

    name: ClassVar[str] = "pytorch"
    methods: ClassVar[tuple[str, ...]] = FRONTIER_METHODS

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", model_spec(self.model))
        object.__setattr__(self, "checkpoint", existing_file(self.checkpoint, "--checkpoint"))
        if self.data is not None:
            data = Path(self.data).resolve()
            if not data.is_dir():
                from tightcompress.errors import TightCompressError

                raise TightCompressError(f"--data folder not found: {self.data}")
            object.__setattr__(self, "data", str(data))

    def __hash__(self) -> int:  # model_args is a dict
        return hash((self.model, self.checkpoint, self.metric, self.data))

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.checkpoint)

    def _model(self) -> dict[str, Any]:
        return {
            "class": self.model,
            "model_args": json.loads(json.dumps(self.model_args, sort_keys=True)),
            "checkpoint": str(self.checkpoint),
            "sha256": self.sha256,
        }

    def _budget(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self.compress).items() if k not in ("method", "rate", "seed")}

    def settings(self, seed: int) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "seed": seed,
            **self._model(),
            "metric": self.metric.fingerprint(),
            "data": self.data,
            "compress": self._budget(),
        }

    def build(self) -> nn.Module:
        """The dense model, loaded from the checkpoint."""
        return load_model(self.model, self.checkpoint, **self.model_args)

    def load_data(self, seed: int) -> Any:
        from tightcompress.pipeline.data import ImageFolderData, load_mnist

        if self.data is None:
            return load_mnist(seed=seed)
        size = getattr(self.build(), "input_size", None)
        if isinstance(size, int):
            size = (size, size)
        return ImageFolderData(
            self.data, image_size=tuple(size[-2:]) if size is not None else None, seed=seed
        )

    def new_model(self, data: Any) -> nn.Module:
        return self.build()

    def dense_stage(self, data: Any, seed: int, stage_dir: Path) -> StageResult:
        model = self.build()
        return snapshot(model, self.score(model, 0.0, "the dense model"))

    def compress_config(self, seed: int) -> CompressConfig:
        return self.compress

    def score(self, model: nn.Module, accuracy: float, what: str) -> float:
        return self.metric(model.eval(), what)

    def check(self, methods: Sequence[str], rates: Sequence[float]) -> None:
        """The metric loads and every (method, rate) is within the packing options of the model's layers."""
        self.metric.load()
        check_model_rates(self.build(), methods, rates, self.compress.tile)

    def describe(self) -> dict[str, Any]:
        return {
            "model": {"kind": self.name, **self._model()},
            "mode": "fine-tune",
            "metric": self.metric.spec,
            "data": self.data,
            "compress": self._budget(),
            "array": "32x32",
        }
