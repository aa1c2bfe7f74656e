"""`compress_model(model, data, CompressConfig(...))`: the whole pipeline on a PyTorch CNN.

1. gradual global magnitude pruning (`torch.nn.utils.prune`) with fine-tuning between rounds;
2. the format-aware step: choose per-layer packing options for the rate, pack (permutation search for
   tight), make the kept positions the masks (prune-to-fit), fine-tune with the masks fixed, repack in the
   same arrangement and check nothing is dropped;
3. fold the masks in; return the model, the packed layers and a report.

Each completed stage is saved atomically in `workdir`, so an interrupted run resumes with `resume=True`.
Every training step distils from the dense model (`CompressConfig.distill`). The stage loops, training
settings and stage files are shared with the subword pipeline (`pipeline.stages`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tightcompress.api import METHODS, PackConfig
from tightcompress.errors import TightCompressError
from tightcompress.format.io import save_packed
from tightcompress.format.packed import PackedMatrix
from tightcompress.pipeline import fit, masks
from tightcompress.pipeline.data import Dataset
from tightcompress.pipeline.hardware import simulate_model, vectors_per_layer
from tightcompress.pipeline.models import gemm_layers
from tightcompress.pipeline.stages import (
    StageResult,
    Trainer,
    fit_finetune_repack,
    gradual_prune,
    load_finished,
    rising_rates,
    save_finished,
)
from tightcompress.pipeline.stages import load_stage as load_stage  # re-exported: callers import it here
from tightcompress.pipeline.stages import save_stage as save_stage  # re-exported: callers import it here
from tightcompress.pipeline.train import evaluate, frozen_copy, seed_everything
from tightcompress.readers.matrices import matrix_to_weight, weight_to_matrix
from tightcompress.report import build_report
from tightcompress.utils.atomic import output_group, write_json_atomic

log = logging.getLogger("tightcompress.pipeline")

PIPELINE_METHODS = (*(m for m in METHODS if m != "dense"), fit.PERMUTED_NM)
HW_ARRAY = (32, 32)  # the project's reference array for the reports' cycles and energy


@dataclass(frozen=True)
class CompressConfig:
    """Everything the pipeline does, validated on construction.

    Give `rate` (per-layer options chosen to reach it) or explicit `group`/`height` (one option for every
    layer; `alpha`/`gamma` for column combining). `sparsity` is the unstructured target; by default
    `1 - 1/rate` (or `1 - height/group`), the densest the format can hold.
    """

    method: str = "tight"
    rate: float | None = 16.0
    group: int | None = None
    height: int | None = None
    tile: int = 32
    alpha: int = 8
    gamma: float = 0.5
    sparsity: float | None = None
    prune_rounds: int = 4
    prune_epochs: float = 2.0
    finetune_epochs: float = 6.0
    lr: float = 3e-3
    batch_size: int = 128
    seed: int = 0
    plan_iterations: int | None = 30_000
    final_iterations: int | None = 300_000
    max_fit_rounds: int = 3
    format_rounds: int = 2
    prune_normalized: bool = False
    format_start_rate: float = 4.0
    distill: float = 0.5  # weight of distillation from the dense model in every training step (0: off)
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        if self.method not in PIPELINE_METHODS:
            raise TightCompressError(
                f"unknown method {self.method!r}; choose one of {', '.join(PIPELINE_METHODS)}"
            )
        explicit = self.group is not None or self.height is not None
        if self.rate is not None and explicit:
            raise TightCompressError("give either a rate or explicit --group/--height, not both")
        if self.rate is None:
            if self.method != "column-combining" and (self.group is None or self.height is None):
                raise TightCompressError("without a rate, give both --group and --height")
        elif not self.rate >= 1.0:
            raise TightCompressError(f"rate must be >= 1, got {self.rate}")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise TightCompressError(f"sparsity must be in [0, 1), got {self.sparsity}")
        for name in ("prune_epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise TightCompressError(f"{name} must be >= 0")
        if not 0.0 <= self.distill <= 1.0 or self.distill_temperature <= 0:
            raise TightCompressError("distill must be in [0, 1] and its temperature > 0")
        if min(self.prune_rounds, self.max_fit_rounds, self.format_rounds, self.batch_size) < 1:
            raise TightCompressError("prune, format and fit rounds and batch_size must be >= 1")
        if self.rate is None:
            self.explicit_pack_config()  # validates group/height/tile/alpha/gamma

    def explicit_pack_config(self) -> PackConfig:
        """The one PackConfig used for every layer when no rate is given."""
        permute = self.method == fit.PERMUTED_NM
        return PackConfig(
            method="nm" if permute else self.method,  # type: ignore[arg-type]
            permute=permute,
            group=self.group or 8,
            height=self.height if self.height is not None else "auto",
            tile=self.tile,
            alpha=self.alpha,
            gamma=self.gamma,
            seed=self.seed,
        )

    def target_sparsity(self) -> float:
        """Unstructured sparsity of step 1."""
        if self.sparsity is not None:
            return self.sparsity
        if self.rate is not None:
            return 1.0 - 1.0 / self.rate
        if self.method == "column-combining":
            return 1.0 - 1.0 / self.alpha
        return 1.0 - float(self.height) / float(self.group)

    def prune_key(self) -> str:
        """Hash of the settings step 1 depends on (stage files of other settings are never resumed)."""
        fields = (
            self.target_sparsity(),
            self.prune_rounds,
            self.prune_epochs,
            self.lr,
            self.batch_size,
            self.seed,
            self.prune_normalized,
            self.distill,
            self.distill_temperature,
        )
        return hashlib.sha1(json.dumps(fields).encode()).hexdigest()[:10]

    def fit_key(self) -> str:
        """Hash of everything the format-aware step depends on."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class CompressResult:
    """What the pipeline returns: the compressed model (masks folded), its packed layers, and the report."""

    model: nn.Module
    packed: dict[str, PackedMatrix]
    report: dict[str, Any]


# ------------------------------------------------------------------------------------------ stage files
def snapshot(model: nn.Module, accuracy: float, meta: dict[str, Any] | None = None) -> StageResult:
    """The model's current weights with masks folded (the model itself is left as it is) and its masks."""
    clone = copy.deepcopy(model)
    layers = gemm_layers(clone)
    current = masks.current_masks(layers)
    masks.fold_masks(layers)
    state = {k: v.detach().clone() for k, v in clone.state_dict().items()}
    return StageResult(state, current, accuracy, dict(meta or {}))


def restore(model: nn.Module, stage: StageResult) -> None:
    """Load a stage into `model` and re-apply its masks with `torch.nn.utils.prune`."""
    layers = gemm_layers(model)
    masks.fold_masks(layers)
    model.load_state_dict(stage.state)
    masks.apply_masks(layers, {n: m for n, m in stage.masks.items() if not bool(m.all())})


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """Short hash of a state_dict's tensors, so stage files of another starting model are never resumed."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:10]


def layer_matrices(model: nn.Module) -> dict[str, np.ndarray]:
    """The `K x N` GEMM matrix of every conv/linear layer, masks applied."""
    return {
        name: weight_to_matrix(masks.effective_weight(module).cpu().numpy().astype(np.float32))
        for name, module in gemm_layers(model).items()
    }


# --------------------------------------------------------------------------------------------- stages
def unstructured_stage(
    model: nn.Module,
    data: Dataset,
    config: CompressConfig,
    *,
    workdir: Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    teacher: nn.Module | None = None,
) -> StageResult:
    """Step 1: gradual global magnitude pruning to the target sparsity, fine-tuning after each round.

    `model` comes in dense; unless a `teacher` is given, a frozen copy of it teaches (`config.distill`).
    Round files are `unstructured-{prune_key}-{fingerprint of the dense model}-r{round}.pt` in `workdir`.
    """
    if teacher is None and config.distill > 0:
        teacher = frozen_copy(model)
    layers = gemm_layers(model)
    return gradual_prune(
        model,
        Trainer.from_config(config, data, teacher=teacher, quiet=quiet),
        masks.cubic_schedule(config.target_sparsity(), config.prune_rounds),
        prune=lambda sparsity: masks.global_magnitude_prune(
            layers, sparsity, normalized=config.prune_normalized
        ),
        snapshot=lambda accuracy: snapshot(model, accuracy, {"sparsity": masks.sparsity_of(layers)}),
        restore=lambda stage: restore(model, stage),
        epochs=config.prune_epochs,
        seed=config.seed,
        name="prune",
        stage_prefix=f"unstructured-{config.prune_key()}-{fingerprint(model.state_dict())}",
        workdir=workdir,
        resume=resume,
    )


def format_stage(
    model: nn.Module,
    data: Dataset,
    config: CompressConfig,
    *,
    quiet: bool = False,
    teacher: nn.Module | None = None,
) -> tuple[dict[str, PackedMatrix], dict[str, Any]]:
    """Step 2 on a model holding step 1's masks: choose options, prune to fit, fine-tune, check the fit.

    With `format_rounds > 1` the rate rises geometrically over the rounds (each plans, fits and fine-tunes
    with its share of the fine-tuning budget); the last round reaches the target rate.
    """
    rounds = config.format_rounds if config.rate is not None else 1
    epochs = config.finetune_epochs / rounds
    if rounds > 1:
        rates = rising_rates(config.format_start_rate, config.rate, rounds)
        for index, rate in enumerate(rates[:-1], start=1):
            step = replace(config, rate=rate, format_rounds=1, finetune_epochs=epochs, max_fit_rounds=1)
            format_stage(model, data, step, quiet=quiet, teacher=teacher)
            log.info("%s: format round %d/%d at rate %.2fx done", config.method, index, rounds, rate)
        config = replace(config, format_rounds=1, finetune_epochs=epochs)
    layers = gemm_layers(model)
    matrices = layer_matrices(model)
    if config.rate is not None:
        chosen = fit.plan_rate(
            matrices,
            config.method,
            config.rate,
            tile=config.tile,
            seed=config.seed,
            plan_iterations=config.plan_iterations,
            quiet=quiet,
        )
        configs = {name: option.config for name, option in chosen.items()}
        choices = {name: option.describe() for name, option in chosen.items()}
    else:
        one = config.explicit_pack_config()
        configs = dict.fromkeys(matrices, one)
        choices = dict.fromkeys(matrices, fit.Option(one, 0, 0.0).describe())
    for name, text in choices.items():
        log.info("%s: %s", name, text)
    packed = fit.fit_layers(matrices, configs, final_iterations=config.final_iterations, quiet=quiet)

    def apply_kept(packed: dict[str, PackedMatrix]) -> None:
        kept = {
            name: torch.from_numpy(matrix_to_weight(p.to_dense() != 0, tuple(layers[name].weight.shape)))
            for name, p in packed.items()
        }
        masks.apply_masks(layers, kept)

    def repack(packed: dict[str, PackedMatrix]) -> dict[str, PackedMatrix]:
        now = layer_matrices(model)
        return {name: fit.repack(now[name], arrangement) for name, arrangement in packed.items()}

    outcome = fit_finetune_repack(
        model,
        Trainer.from_config(config, data, teacher=teacher, quiet=quiet),
        packed,
        apply_kept=apply_kept,
        repack=repack,
        count_dropped=lambda p: int(p.info.get("dropped_nnz", 0)),
        epochs=config.finetune_epochs,
        seed=config.seed + 100,
        rounds=config.max_fit_rounds,
        name=config.method,
    )
    meta = {
        "choices": choices,
        "prune_to_fit_accuracy": outcome.prune_to_fit_accuracy,
        "finetuned_accuracy": outcome.finetuned_accuracy,
    }
    return outcome.packed, meta


def compress_model(
    model: nn.Module,
    data: Dataset,
    config: CompressConfig,
    *,
    workdir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    quiet: bool = False,
    unstructured: StageResult | None = None,
    dense_accuracy: float | None = None,
    teacher: nn.Module | None = None,
) -> CompressResult:
    """Run the pipeline on `model` (changed in place and returned with masks folded).

    Pass `unstructured` (a step-1 result) to share step 1 between several methods; then also pass the
    dense `teacher` for distillation (without `unstructured`, the incoming dense model is the teacher).
    """
    seed_everything(config.seed)
    if teacher is None and unstructured is None and config.distill > 0:
        teacher = frozen_copy(model)
    if config.rate is not None:
        shapes = {
            n: tuple(weight_to_matrix(m.weight.detach().numpy()).shape) for n, m in gemm_layers(model).items()
        }
        fit.check_rate(shapes, config.method, config.rate, config.tile)
    workdir = Path(workdir) if workdir is not None else None
    if dense_accuracy is None:
        dense_accuracy = evaluate(model, data.x_test, data.y_test)
        log.info("dense accuracy %.2f%%", dense_accuracy)
    source = fingerprint(unstructured.state if unstructured is not None else model.state_dict())
    fit_name = f"fit-{config.method}-{config.fit_key()}-{source}.pt"
    fit_path = workdir / fit_name if workdir is not None else None
    finished = load_finished(fit_path) if resume else None
    if finished is not None:
        stage, packed = finished
        restore(model, stage)
        masks.fold_masks(gemm_layers(model))
        log.info("%s: resumed the finished format-aware stage from %s", config.method, fit_path)
        return CompressResult(model, packed, stage.meta["report"])
    if unstructured is None:
        unstructured = unstructured_stage(
            model, data, config, workdir=workdir, resume=resume, quiet=quiet, teacher=teacher
        )
    else:
        restore(model, unstructured)
    seed_everything(config.seed)
    packed, meta = format_stage(model, data, config, quiet=quiet, teacher=teacher)
    masks.fold_masks(gemm_layers(model))
    layer_reports = [p.report() for p in packed.values()]
    report = build_report(layer_reports, config={**asdict(config), "workflow": "compress"})
    report["accuracy"] = {
        "dense": dense_accuracy,
        "unstructured": unstructured.accuracy,
        "prune_to_fit": meta["prune_to_fit_accuracy"],
        "packed_finetuned": meta["finetuned_accuracy"],
    }
    hardware, hardware_total = simulate_model(packed, vectors_per_layer(model, data.x_test[:1]), HW_ARRAY)
    for layer in report["layers"]:
        layer.update({k: v for k, v in hardware[layer["name"]].items() if k != "energy_breakdown_pj"})
    report["hardware"] = {"array": f"{HW_ARRAY[0]}x{HW_ARRAY[1]}", "per": "image", **hardware_total}
    report["unstructured_sparsity"] = unstructured.meta.get("sparsity")
    report["choices"] = meta["choices"]
    report["compression_rate"] = report["total"]["compression_rate"]
    if fit_path is not None:
        save_finished(fit_path, snapshot(model, meta["finetuned_accuracy"], {"report": report}), packed)
    return CompressResult(model, packed, report)


def write_outputs(result: CompressResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write `model.pt` (state_dict, masks folded), `packed.safetensors`, `report.json`, atomically."""
    out = Path(out_dir)
    paths = {"model": out / "model.pt", "packed": out / "packed.safetensors", "report": out / "report.json"}
    with output_group() as stage:  # the three files are written all or none
        torch.save(result.model.state_dict(), str(stage(paths["model"])))
        save_packed(stage(paths["packed"]), result.packed)
        write_json_atomic(stage(paths["report"]), result.report)
    return paths
