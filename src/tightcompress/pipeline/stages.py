"""Stage plumbing of the pipeline (`pipeline.compress`) and the interface of a granularity.

- `Granularity`: what a slot holds (a word, `pipeline.word`; a 4-bit subword, `pipeline.subword`) as one
  interface: prepare, prune, snapshot/restore, plan the options for a rate, pack, apply the kept positions
  to the model, repack, count what was dropped, finish. The one pipeline runs either through it;

- `StageResult`, `save_stage`, `load_stage`: a model state after a stage and its atomic checkpoint file;
  `save_finished`, `load_finished`: a finished run's last stage with its packed layers;
- `Trainer`: the data, optimiser settings and distillation teacher of every training step of a run;
- `gradual_prune`: prune to a rising sparsity, train, evaluate and save each round, resuming after the
  last saved round (the prune step itself is a function, so both granularities share the loop);
- `fit_finetune_repack`: make a packing's kept positions the masks, fine-tune, repack in the same
  arrangement, until nothing falls outside the format (packing-specific steps are functions);
- `rising_rates`: the geometric rate schedule of the format rounds.
- `fingerprint`: a short hash of a state_dict (stage files of another starting model are never resumed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.format.io import load_packed, save_packed
from tightcompress.format.packed import PackedMatrix
from tightcompress.pipeline import distributed
from tightcompress.pipeline.data import TrainingData
from tightcompress.pipeline.train import evaluate, seed_everything, train
from tightcompress.utils.atomic import atomic_path

log = logging.getLogger("tightcompress.pipeline")

Packed = TypeVar("Packed")


@dataclass
class StageResult:
    """A model state after a stage: folded weights, boolean masks, accuracy, and extra facts."""

    state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    accuracy: float
    meta: dict[str, Any] = field(default_factory=dict)


def save_stage(path: Path, stage: StageResult) -> None:
    """Write a stage checkpoint atomically (rank 0 only)."""
    if not distributed.is_main():
        return
    payload = {
        "state": stage.state,
        "masks": stage.masks,
        "accuracy": stage.accuracy,
        "meta": json.dumps(stage.meta),
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, str(tmp))


def load_stage(path: Path) -> StageResult | None:
    """A stage checkpoint, or None when it is missing or unreadable (then the stage is rerun).

    In a process group rank 0 reads it and every rank gets the same answer.
    """
    return distributed.from_main(lambda: _read_stage(path))


def _read_stage(path: Path) -> StageResult | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
        return StageResult(
            payload["state"], payload["masks"], float(payload["accuracy"]), json.loads(payload["meta"])
        )
    except Exception as exc:  # a damaged stage file is redone, not trusted
        log.warning("ignoring unreadable stage file %s (%s)", path, type(exc).__name__)
        return None


def save_finished(path: Path, stage: StageResult, packed: dict[str, PackedMatrix]) -> None:
    """Save a finished run: the packed layers (`.safetensors` next to `path`), then the stage file.

    The stage file is written last, so its presence means the run finished. Rank 0 only.
    """
    if not distributed.is_main():
        return
    save_packed(path.with_suffix(".safetensors"), packed)
    save_stage(path, stage)


def load_finished(path: Path | None) -> tuple[StageResult, dict[str, PackedMatrix]] | None:
    """The stage and packed layers `save_finished` wrote at `path`, or None when either is missing.

    In a process group rank 0 reads them and every rank gets the same answer.
    """
    return distributed.from_main(lambda: _read_finished(path))


def _read_finished(path: Path | None) -> tuple[StageResult, dict[str, PackedMatrix]] | None:
    if path is None or not path.is_file() or not path.with_suffix(".safetensors").is_file():
        return None
    stage = _read_stage(path)
    if stage is None:
        return None
    return stage, load_packed(path.with_suffix(".safetensors"))


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """Short hash of a state_dict's tensors, so stage files of another starting model are never resumed."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:10]


class Granularity(Protocol[Packed]):
    """One granularity of compression on one model (built by `pipeline.compress.granularity_for`).

    `Packed` is its packed layer during the fit (`PackedMatrix` for words, `SubwordPacked` for subwords);
    `finish` turns the fit's result into plain `PackedMatrix` layers and the report's granularity fields.
    """

    name: str  # "word" or "subword"
    label: str  # the report's method, e.g. "tight" or "tight-subword"
    pruned_name: str  # the accuracy key of step 1's result ("unstructured", "subword_pruned")
    sparsity_name: str  # the stage meta key of step 1's sparsity ("sparsity", "subword_sparsity")

    def check_rate(self) -> None:
        """Fail before any training when the config's rate is beyond every option."""

    def prepare(self, trainer: Trainer | None) -> dict[str, float]:
        """Make the model ready for step 1 (e.g. quantize it); accuracies measured (given a trainer)."""

    def sparsity(self) -> float:
        """Current fraction of zero units (weights or subwords) over all layers."""

    def prune(self, sparsity: float) -> None:
        """Prune the least important units over all layers until `sparsity` of them are zero."""

    def snapshot(self, accuracy: float, meta: dict[str, Any]) -> StageResult:
        """The model's state as a stage (its masks, and whatever `restore` needs)."""

    def restore(self, stage: StageResult) -> None:
        """Load a stage of this granularity into the model, masks included."""

    def plan(self, rate: float | None) -> tuple[dict[str, Any], dict[str, str]]:
        """Per-layer pack configs reaching `rate` (None: the config's explicit one) and their descriptions."""

    def pack(self, configs: dict[str, Any]) -> dict[str, Packed]:
        """Pack every layer with its config (the full search)."""

    def apply_kept(self, packed: dict[str, Packed]) -> None:
        """Make the packed layers' kept positions the model's masks (prune to fit)."""

    def repack(self, packed: dict[str, Packed]) -> dict[str, Packed]:
        """Pack the model's current weights into the same arrangements (what falls outside is dropped)."""

    def count_dropped(self, packed: Packed) -> int:
        """Nonzero units a repack dropped."""

    def finish(self, packed: dict[str, Packed]) -> tuple[dict[str, PackedMatrix], list[dict[str, Any]]]:
        """Fold the masks into plain weights; the final packed layers and their layer reports."""

    def simulate(
        self, packed: dict[str, PackedMatrix], vectors: dict[str, int]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Per-layer and total cycles/energy on the reference array (`vectors`: M per layer)."""

    def report_fields(self, packed: dict[str, PackedMatrix]) -> dict[str, Any]:
        """The granularity's own top-level report fields (rates in its units)."""

    def release(self) -> None:
        """Remove masks/parametrizations, leaving plain weights (before loading a finished stage)."""


class TrainingSettings(Protocol):
    """The training fields of a pipeline config."""

    lr: float
    batch_size: int
    distill: float
    distill_temperature: float


@dataclass(frozen=True)
class Trainer:
    """How a run trains and evaluates: its data, learning rate, batch size and distillation teacher.

    Distillation is on when a `teacher` is given and `distill > 0`; otherwise plain cross-entropy.
    """

    data: TrainingData
    lr: float
    batch_size: int
    teacher: nn.Module | None = None
    distill: float = 0.0
    temperature: float = 4.0
    quiet: bool = False

    @classmethod
    def from_config(
        cls, config: TrainingSettings, data: TrainingData, *, teacher: nn.Module | None, quiet: bool
    ) -> Trainer:
        """The trainer of a pipeline config (its lr, batch size and distillation settings)."""
        return cls(
            data,
            config.lr,
            config.batch_size,
            teacher=teacher,
            distill=config.distill,
            temperature=config.distill_temperature,
            quiet=quiet,
        )

    def distillation(self) -> dict[str, Any]:
        """The distillation keyword arguments of `train` (none without a teacher or with `distill == 0`)."""
        if self.teacher is None or self.distill <= 0:
            return {}
        return {"teacher": self.teacher, "distill": self.distill, "temperature": self.temperature}

    def train(self, model: nn.Module, *, epochs: float, seed: int, desc: str) -> None:
        """Train `model` on the training split for `epochs` with batch order seeded by `seed`."""
        train(
            model,
            self.data,
            epochs=epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=seed,
            desc=desc,
            quiet=self.quiet,
            **self.distillation(),
        )

    def accuracy(self, model: nn.Module) -> float:
        """Top-1 test accuracy of `model` in percent."""
        return evaluate(model, self.data)


def gradual_prune(
    model: nn.Module,
    trainer: Trainer,
    schedule: Sequence[float],
    *,
    prune: Callable[[float], None],
    snapshot: Callable[[float], StageResult],
    restore: Callable[[StageResult], None],
    epochs: float,
    seed: int,
    name: str,
    stage_prefix: str,
    workdir: Path | None = None,
    resume: bool = False,
) -> StageResult:
    """Prune `model` to each sparsity of `schedule` in turn, training `epochs` after each round.

    Round `i` (from 0) seeds everything with `seed + i`, calls `prune(schedule[i])`, trains with batch
    seed `seed + i`, evaluates, and takes `snapshot(accuracy)` (saved to `{stage_prefix}-r{i + 1}.pt` in
    `workdir`). With `resume`, the latest saved round is loaded with `restore` and the rounds after it run.
    Returns the last round's stage. `name` labels the log lines and progress bars.
    """
    start, stage = 0, None
    if resume and workdir is not None:
        for index in reversed(range(len(schedule))):
            found = load_stage(workdir / f"{stage_prefix}-r{index + 1}.pt")
            if found is not None:
                restore(found)
                log.info("%s: resumed after round %d/%d", name, index + 1, len(schedule))
                start, stage = index + 1, found
                break
    for index in range(start, len(schedule)):
        seed_everything(seed + index)
        prune(schedule[index])
        trainer.train(
            model,
            epochs=epochs,
            seed=seed + index,
            desc=f"{name} {index + 1}/{len(schedule)} ({schedule[index]:.1%})",
        )
        accuracy = trainer.accuracy(model)
        stage = snapshot(accuracy)
        facts = ", ".join(f"{key} {100 * value:.2f}%" for key, value in stage.meta.items())
        log.info("%s round %d/%d: %s, accuracy %.2f%%", name, index + 1, len(schedule), facts, accuracy)
        if workdir is not None:
            save_stage(workdir / f"{stage_prefix}-r{index + 1}.pt", stage)
    if stage is None:
        raise TightCompressError(f"{name}: the pruning schedule is empty")
    return stage


@dataclass
class FitOutcome(Generic[Packed]):
    """The end of a fit/fine-tune/repack loop: the repacked layers and the accuracies along the way."""

    packed: dict[str, Packed]
    prune_to_fit_accuracy: float
    finetuned_accuracy: float
    dropped: int
    repack_seconds: float


def fit_finetune_repack(
    model: nn.Module,
    trainer: Trainer,
    packed: dict[str, Packed],
    *,
    apply_kept: Callable[[dict[str, Packed]], None],
    repack: Callable[[dict[str, Packed]], dict[str, Packed]],
    count_dropped: Callable[[Packed], int],
    epochs: float,
    seed: int,
    rounds: int,
    name: str,
    require_fit: bool = True,
) -> FitOutcome[Packed]:
    """Prune to fit `packed`, fine-tune with the masks fixed, repack; repeat until nothing is dropped.

    Each round `r` (from 0, at most `rounds`) calls `apply_kept(packed)` (the kept positions become the
    masks), trains `epochs` with batch seed `seed + r`, then `packed = repack(packed)` in the same
    arrangement. Weights that fine-tuning moved outside the format are dropped by the repack and counted
    by `count_dropped`; the next round prunes them. With `require_fit`, drops left after the last round
    raise `TightCompressError`. `name` labels the log lines and progress bars.
    """
    prune_to_fit_accuracy: float | None = None
    finetuned_accuracy = float("nan")
    dropped = 0
    repack_seconds = 0.0
    for round_index in range(rounds):
        apply_kept(packed)
        if prune_to_fit_accuracy is None:
            prune_to_fit_accuracy = trainer.accuracy(model)
            log.info("%s: prune-to-fit accuracy %.2f%% (before fine-tuning)", name, prune_to_fit_accuracy)
        trainer.train(model, epochs=epochs, seed=seed + round_index, desc=f"fine-tune {name}")
        finetuned_accuracy = trainer.accuracy(model)
        start = time.perf_counter()
        packed = repack(packed)
        dropped = sum(count_dropped(p) for p in packed.values())
        repack_seconds += time.perf_counter() - start
        log.info(
            "%s: fine-tuned accuracy %.2f%%, %d value(s) outside the format",
            name,
            finetuned_accuracy,
            dropped,
        )
        if dropped == 0:
            break
    if prune_to_fit_accuracy is None:
        raise TightCompressError(f"{name}: at least one fit round is needed")
    if dropped and require_fit:
        raise TightCompressError(f"{name}: layers still overflow the format after {rounds} rounds")
    return FitOutcome(packed, prune_to_fit_accuracy, finetuned_accuracy, dropped, repack_seconds)


def rising_rates(start: float, target: float, rounds: int) -> list[float]:
    """The rate of each of `rounds` format rounds: geometric from `start` (exclusive) to `target`."""
    return [start ** (1 - index / rounds) * target ** (index / rounds) for index in range(1, rounds + 1)]
