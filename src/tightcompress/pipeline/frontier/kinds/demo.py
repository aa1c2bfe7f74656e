"""The embedded demo as a frontier model kind: the demo CNN on the bundled digits, trained, pruned and
fine-tuned as `tightcompress demo` does (`kinds.trained`).

One point `(method, rate r, seed)` is the demo's pipeline (`pipeline.demo`): same data split, model, dense
training, distillation teacher and fine-tuning budget, so the lowest rate's points are exactly
`tightcompress demo --rate r` (in one thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from tightcompress.pipeline.compress import CompressConfig, StageResult
from tightcompress.pipeline.config import FRONTIER_METHODS, DemoConfig
from tightcompress.pipeline.data import Dataset, load_mnist
from tightcompress.pipeline.demo import dense_model
from tightcompress.pipeline.frontier.kinds.trained import TrainedKind, check_model_rates

FORMAT = "frontier-1"  # bump when a point's meaning changes, so older point files are not resumed


@dataclass(frozen=True)
class DemoKind(TrainedKind):
    """The demo CNN with `demo`'s settings (its `rate`, `seed`, `methods` and `subword_bit_rate` are set
    per point and ignored here)."""

    demo: DemoConfig = field(default_factory=DemoConfig)

    name: ClassVar[str] = "demo"
    methods: ClassVar[tuple[str, ...]] = FRONTIER_METHODS

    def demo_for(self, seed: int) -> DemoConfig:
        """The demo settings of one seed."""
        return replace(self.demo, seed=seed)

    def settings(self, seed: int) -> dict[str, Any]:
        demo = self.demo_for(seed)
        compress = {k: v for k, v in asdict(demo.compress).items() if k not in ("method", "rate", "seed")}
        return {
            "format": FORMAT,
            "seed": seed,
            "widths": list(demo.widths),
            "dense_epochs": demo.dense_epochs,
            "dense_lr": demo.dense_lr,
            "test_fraction": demo.test_fraction,
            "compress": compress,
        }

    def load_data(self, seed: int) -> Dataset:
        return load_mnist(self.demo.test_fraction, seed)

    def new_model(self, data: Dataset) -> nn.Module:
        return self.demo.model(data)

    def dense_stage(self, data: Dataset, seed: int, stage_dir: Path) -> StageResult:
        return dense_model(data, self.demo_for(seed), stage_dir, quiet=True)

    def compress_config(self, seed: int) -> CompressConfig:
        return self.demo.compress

    def check(self, methods: Sequence[str], rates: Sequence[float]) -> None:
        """Fail before any training when a (method, rate) is beyond every packing option of the demo CNN."""
        model = self.demo.model(load_mnist(self.demo.test_fraction, 0))
        check_model_rates(model, methods, rates, self.demo.compress.tile)

    def describe(self) -> dict[str, Any]:
        demo = self.demo
        return {
            "widths": list(demo.widths),
            "dense_epochs": demo.dense_epochs,
            "compress": {
                k: v for k, v in asdict(demo.compress).items() if k not in ("method", "rate", "seed")
            },
            "array": "32x32",
        }
