"""The embedded demo as a frontier model kind: the demo CNN on the bundled digits, trained and fine-tuned.

One point `(method, rate r, seed)` is the demo's pipeline (`pipeline.demo`): same data split, model, dense
training, distillation teacher and fine-tuning budget. Per seed, the dense model and one gradual pruning
are made once: the demo's cubic rounds up to the sparsity `1 - 1/r` of the lowest rate, then one more round
(`prune_epochs`) per higher rate; the snapshot at `1 - 1/r` is where every word-level method starts at rate
r, and runs the demo's format-aware step (`compress_model`). A `tight-subword` point is the demo's subword
row at bit rate r (`run_subword_row`, from the dense model, as in the demo). The lowest rate's points are
therefore exactly `tightcompress demo --rate r` (in one thread).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from tightcompress.errors import TightCompressError
from tightcompress.pipeline import fit
from tightcompress.pipeline.compress import StageResult, compress_model, restore, unstructured_stage
from tightcompress.pipeline.config import FRONTIER_METHODS, SUBWORD_METHOD, DemoConfig
from tightcompress.pipeline.data import load_mnist
from tightcompress.pipeline.demo import dense_model, run_subword_row
from tightcompress.pipeline.frontier.kinds.base import ModelKind
from tightcompress.pipeline.models import gemm_layers
from tightcompress.pipeline.train import frozen_copy
from tightcompress.readers.matrices import weight_to_matrix

log = logging.getLogger("tightcompress.frontier")

FORMAT = "frontier-1"  # bump when a point's meaning changes, so older point files are not resumed


def word_rates(methods: Sequence[str], rates: Sequence[float]) -> tuple[float, ...]:
    """The rates of the shared pruning chain, rising (none when only subwords are asked for)."""
    if not any(m != SUBWORD_METHOD for m in methods):
        return ()
    return tuple(sorted(rates))


@dataclass
class SeedStages:
    """What every point of one seed starts from: the dense model and the pruning snapshot of each rate."""

    seed: int
    dense: StageResult
    pruned: dict[float, StageResult]
    seconds: float = 0.0  # wall and CPU time it took to make them (0 when loaded)
    cpu_seconds: float = 0.0

    @property
    def dense_accuracy(self) -> float:
        return self.dense.accuracy

    def for_point(self, method: str, rate: float) -> SeedStages:
        """Only what one point reads (the dense model, and its rate's snapshot for word-level methods)."""
        pruned = {} if method == SUBWORD_METHOD else {rate: self.pruned[rate]}
        return SeedStages(self.seed, self.dense, pruned)

    def payload(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "dense": stage_payload(self.dense),
            "pruned": {repr(rate): stage_payload(stage) for rate, stage in self.pruned.items()},
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        }


def stage_payload(stage: StageResult) -> dict[str, Any]:
    """One pipeline stage as tensors and plain values."""
    return {
        "state": stage.state,
        "masks": stage.masks,
        "accuracy": stage.accuracy,
        "meta": json.dumps(stage.meta),
    }


def stage_from(payload: dict[str, Any]) -> StageResult:
    """The stage `stage_payload` saved."""
    return StageResult(
        payload["state"], payload["masks"], float(payload["accuracy"]), json.loads(payload["meta"])
    )


@dataclass(frozen=True)
class DemoKind(ModelKind):
    """The demo CNN with `demo`'s settings (its `rate`, `seed`, `methods` and `subword_bit_rate` are set
    per point and ignored here)."""

    demo: DemoConfig = field(default_factory=DemoConfig)

    name: ClassVar[str] = "demo"
    methods: ClassVar[tuple[str, ...]] = FRONTIER_METHODS

    def demo_for(self, seed: int) -> DemoConfig:
        """The demo settings of one seed."""
        return replace(self.demo, seed=seed)

    def _settings(self, seed: int) -> dict[str, Any]:
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

    def seed_settings(self, seed: int, methods: Sequence[str], rates: Sequence[float]) -> dict[str, Any]:
        return {**self._settings(seed), "chain": list(word_rates(methods, rates))}

    def point_settings(
        self, seed: int, method: str, rate: float, methods: Sequence[str], rates: Sequence[float]
    ) -> dict[str, Any]:
        chain = None if method == SUBWORD_METHOD else [r for r in word_rates(methods, rates) if r <= rate]
        return {**self._settings(seed), "method": method, "rate": rate, "chain": chain}

    def check(self, methods: Sequence[str], rates: Sequence[float]) -> None:
        """Fail before any training when a (method, rate) is beyond every packing option of the demo CNN."""
        model = self.demo.model(load_mnist(self.demo.test_fraction, 0))
        shapes = {
            n: tuple(weight_to_matrix(m.weight.detach().numpy()).shape) for n, m in gemm_layers(model).items()
        }
        subword_shapes = {n: (2 * K, N) for n, (K, N) in shapes.items()}
        for method in methods:
            for rate in rates:
                if method == SUBWORD_METHOD:
                    fit.check_rate(subword_shapes, "tight", rate, self.demo.compress.tile)
                else:
                    fit.check_rate(shapes, method, rate, self.demo.compress.tile)

    def prepare(
        self, seed: int, methods: Sequence[str], rates: Sequence[float], stage_dir: Path, resume: bool
    ) -> SeedStages:
        """Train (or load) the dense model of `seed` and run the shared gradual pruning through every rate.

        `stage_dir` holds the demo's stage files of this work (dense model, pruning rounds); with `resume`
        an interrupted chain continues after its last saved round.
        """
        demo = self.demo_for(seed)
        data = load_mnist(demo.test_fraction, seed)
        dense = dense_model(data, demo, stage_dir, quiet=True)
        pruned: dict[float, StageResult] = {}
        chain = word_rates(methods, rates)
        if chain:
            model = demo.model(data)
            restore(model, dense)
            teacher = frozen_copy(model)
            base = replace(demo.compress, rate=chain[0], seed=seed)  # the demo's own pruning, lowest rate
            stage = unstructured_stage(
                model, data, base, workdir=stage_dir, resume=resume, quiet=True, teacher=teacher
            )
            pruned[chain[0]] = stage
            for index, rate in enumerate(chain[1:]):
                model = demo.model(data)
                restore(model, stage)
                step = replace(base, rate=rate, prune_rounds=1, seed=seed + base.prune_rounds + index)
                stage = unstructured_stage(
                    model, data, step, workdir=stage_dir, resume=resume, quiet=True, teacher=teacher
                )
                pruned[rate] = stage
        return SeedStages(seed, dense, pruned)

    def measure(self, stages: SeedStages, method: str, rate: float) -> dict[str, float | None]:
        """Fit and fine-tune one method at one rate from a seed's stages, as the demo does."""
        seed = stages.seed
        demo = self.demo_for(seed)
        data = load_mnist(demo.test_fraction, seed)
        model = demo.model(data)
        restore(model, stages.dense)
        teacher = frozen_copy(model)
        if method == SUBWORD_METHOD:
            row, result = run_subword_row(
                demo.model(data),
                data,
                stages.dense,
                bit_rate=rate,
                seed=seed,
                config=demo.compress,  # the word-level budget and teacher, as in the demo
                workdir=None,
                resume=False,
                quiet=True,
                teacher=teacher,
            )
            compression_rate, accuracy = row["compression_rate"], row["accuracy"]
        else:
            if rate not in stages.pruned:
                raise TightCompressError(f"seed {seed} has no pruning stage for {rate:g}x")
            result = compress_model(
                demo.model(data),
                data,
                replace(demo.compress, method=method, rate=rate, seed=seed),
                workdir=None,
                resume=False,
                quiet=True,
                unstructured=stages.pruned[rate],
                dense_accuracy=stages.dense.accuracy,
                teacher=teacher,
            )
            compression_rate = result.report["compression_rate"]
            accuracy = result.report["accuracy"]["packed_finetuned"]
        hardware = result.report["hardware"]
        return {
            "compression_rate": float(compression_rate),
            "accuracy": float(accuracy),
            "speedup": float(hardware["speedup"]),
            "energy_gain": float(hardware["energy_gain"]),
        }

    def stages_from(self, payload: dict[str, Any]) -> SeedStages:
        pruned = {float(rate): stage_from(stage) for rate, stage in payload["pruned"].items()}
        return SeedStages(int(payload["seed"]), stage_from(payload["dense"]), pruned)

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
