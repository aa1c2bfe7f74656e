"""What the trained kinds share (the demo, and a PyTorch model in `--mode fine-tune`): per seed, the dense
model and one gradual pruning are made once (the compress pipeline's cubic rounds up to the sparsity
`1 - 1/r` of the lowest rate, then one more round of `prune_epochs` per higher rate); the snapshot at
`1 - 1/r` is where every word-level method starts at rate r and runs the format-aware step
(`compress_model`). A `tight-subword` point is the pipeline's subword run at bit rate r from the dense
model (`run_subword_row`). Each kind says how its data, models and dense stage are made, and how a
finished model is scored.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.pipeline import fit
from tightcompress.pipeline.compress import (
    CompressConfig,
    StageResult,
    compress_model,
    restore,
    unstructured_stage,
)
from tightcompress.pipeline.config import SUBWORD_METHOD
from tightcompress.pipeline.demo import run_subword_row
from tightcompress.pipeline.frontier.kinds.base import ModelKind
from tightcompress.pipeline.models import gemm_layers
from tightcompress.pipeline.train import frozen_copy
from tightcompress.readers.matrices import weight_to_matrix


def word_rates(methods: Sequence[str], rates: Sequence[float]) -> tuple[float, ...]:
    """The rates of the shared pruning chain, rising (none when only subwords are asked for)."""
    if not any(m != SUBWORD_METHOD for m in methods):
        return ()
    return tuple(sorted(rates))


def check_model_rates(model: nn.Module, methods: Sequence[str], rates: Sequence[float], tile: int) -> None:
    """Fail (one line, `fit.check_rate`) when a (method, rate) is beyond every packing option of the
    model's layers (subwords: of their `2K x N` subword matrices)."""
    shapes = {
        n: tuple(weight_to_matrix(m.weight.detach().numpy()).shape) for n, m in gemm_layers(model).items()
    }
    subword_shapes = {n: (2 * K, N) for n, (K, N) in shapes.items()}
    for method in methods:
        for rate in rates:
            if method == SUBWORD_METHOD:
                fit.check_rate(subword_shapes, "tight", rate, tile)
            else:
                fit.check_rate(shapes, method, rate, tile)


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


class TrainedKind(ModelKind):
    """A model compressed by the pipeline with training (pruning rounds, format-aware fine-tuning)."""

    @abstractmethod
    def settings(self, seed: int) -> dict[str, Any]:
        """Everything every stage of `seed` depends on (model, data, budget)."""

    @abstractmethod
    def load_data(self, seed: int) -> Any:
        """The training data of `seed` (its split)."""

    @abstractmethod
    def new_model(self, data: Any) -> nn.Module:
        """A model of the right architecture for `data` (its weights are replaced by a stage)."""

    @abstractmethod
    def dense_stage(self, data: Any, seed: int, stage_dir: Path) -> StageResult:
        """The dense model of `seed` and its score."""

    @abstractmethod
    def compress_config(self, seed: int) -> CompressConfig:
        """The pipeline's budget for `seed` (its method and rate are set per point)."""

    def score(self, model: nn.Module, accuracy: float, what: str) -> float:
        """The finished model's score: the pipeline's test accuracy unless the kind has its own metric."""
        return accuracy

    def seed_settings(self, seed: int, methods: Sequence[str], rates: Sequence[float]) -> dict[str, Any]:
        return {**self.settings(seed), "chain": list(word_rates(methods, rates))}

    def point_settings(
        self, seed: int, method: str, rate: float, methods: Sequence[str], rates: Sequence[float]
    ) -> dict[str, Any]:
        chain = None if method == SUBWORD_METHOD else [r for r in word_rates(methods, rates) if r <= rate]
        return {**self.settings(seed), "method": method, "rate": rate, "chain": chain}

    def prepare(
        self, seed: int, methods: Sequence[str], rates: Sequence[float], stage_dir: Path, resume: bool
    ) -> SeedStages:
        """Train (or load) the dense model of `seed` and run the shared gradual pruning through every rate.

        `stage_dir` holds the pipeline's stage files of this work (dense model, pruning rounds); with
        `resume` an interrupted chain continues after its last saved round.
        """
        data = self.load_data(seed)
        dense = self.dense_stage(data, seed, stage_dir)
        pruned: dict[float, StageResult] = {}
        chain = word_rates(methods, rates)
        if chain:
            model = self.new_model(data)
            restore(model, dense)
            teacher = frozen_copy(model)
            base = replace(self.compress_config(seed), rate=chain[0], seed=seed)  # the lowest rate's pruning
            stage = unstructured_stage(
                model, data, base, workdir=stage_dir, resume=resume, quiet=True, teacher=teacher
            )
            pruned[chain[0]] = stage
            for index, rate in enumerate(chain[1:]):
                model = self.new_model(data)
                restore(model, stage)
                step = replace(base, rate=rate, prune_rounds=1, seed=seed + base.prune_rounds + index)
                stage = unstructured_stage(
                    model, data, step, workdir=stage_dir, resume=resume, quiet=True, teacher=teacher
                )
                pruned[rate] = stage
        return SeedStages(seed, dense, pruned)

    def measure(self, stages: SeedStages, method: str, rate: float) -> dict[str, float | None]:
        """Fit and fine-tune one method at one rate from a seed's stages."""
        seed = stages.seed
        data = self.load_data(seed)
        model = self.new_model(data)
        restore(model, stages.dense)
        teacher = frozen_copy(model)
        config = self.compress_config(seed)
        if method == SUBWORD_METHOD:
            row, result = run_subword_row(
                self.new_model(data),
                data,
                stages.dense,
                bit_rate=rate,
                seed=seed,
                config=config,  # the word-level budget and teacher
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
                self.new_model(data),
                data,
                replace(config, method=method, rate=rate, seed=seed),
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
            "accuracy": float(self.score(result.model, accuracy, f"{method} at {rate:g}x")),
            "speedup": float(hardware["speedup"]),
            "energy_gain": float(hardware["energy_gain"]),
        }

    def stages_from(self, payload: dict[str, Any]) -> SeedStages:
        pruned = {float(rate): stage_from(stage) for rate, stage in payload["pruned"].items()}
        return SeedStages(int(payload["seed"]), stage_from(payload["dense"]), pruned)
