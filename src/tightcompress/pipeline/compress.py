"""`compress_model(model, data, CompressConfig(...))`: the whole pipeline on a PyTorch CNN, at either
granularity (`CompressConfig.granularity`: `word`, `pipeline.word`; `subword`, `pipeline.subword`).

1. the granularity prepares the model (subwords: int8 quantization-aware training), then gradual global
   pruning of its units (weights or subwords) with fine-tuning between rounds;
2. the format-aware step: choose per-layer packing options for the rate, pack (permutation search for
   tight), make the kept positions the masks (prune-to-fit), fine-tune with the masks fixed, repack in the
   same arrangement and check nothing is dropped (with `format_rounds > 1` the rate rises over rounds);
3. fold the masks in; return the model, the packed layers and a report with cycles and energy.

A grouped conv is packed as one GEMM per group, named `name[g]` as `pack` names it (`readers.matrices`);
its mask covers the whole weight. Depthwise convs are left dense.

Each completed stage is saved atomically in `workdir`, so an interrupted run resumes with `resume=True`.
Every training step distils from the dense model (`CompressConfig.distill`). The stage loops are
`pipeline.stages`; each granularity supplies only its own steps (`stages.Granularity`). Launched by
`torchrun`, the same code fine-tunes under DistributedDataParallel with every choice (masks, the search)
made on rank 0 (`pipeline.distributed`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.format.io import save_packed
from tightcompress.format.packed import PackedMatrix
from tightcompress.hw import total_simulation
from tightcompress.pipeline import distributed, masks
from tightcompress.pipeline.config import PIPELINE_METHODS as PIPELINE_METHODS  # re-exported
from tightcompress.pipeline.config import CompressConfig
from tightcompress.pipeline.data import TrainingData
from tightcompress.pipeline.hardware import (
    HW_ARRAY,
    dense_layers,
    simulate_dense_layers,
    skipped_layer_notes,
    vectors_per_layer,
)
from tightcompress.pipeline.models import gemm_layers
from tightcompress.pipeline.stages import (
    Granularity,
    StageResult,
    Trainer,
    fingerprint,
    fit_finetune_repack,
    gradual_prune,
    load_finished,
    rising_rates,
    save_finished,
)
from tightcompress.pipeline.stages import load_stage as load_stage  # re-exported: callers import it here
from tightcompress.pipeline.stages import save_stage as save_stage  # re-exported: callers import it here
from tightcompress.pipeline.subword import SubwordLevel
from tightcompress.pipeline.train import frozen_copy, model_device, seed_everything
from tightcompress.pipeline.word import WordLevel, layer_matrices, restore, snapshot
from tightcompress.report import build_report
from tightcompress.results import CompressReport
from tightcompress.utils.atomic import output_group, write_json_atomic

__all__ = [
    "HW_ARRAY",
    "PIPELINE_METHODS",
    "CompressConfig",
    "CompressResult",
    "StageResult",
    "compress_model",
    "fingerprint",
    "format_stage",
    "granularity_for",
    "layer_matrices",
    "load_stage",
    "restore",
    "save_stage",
    "snapshot",
    "unstructured_stage",
    "write_outputs",
]

log = logging.getLogger("tightcompress.pipeline")

GRANULARITY_CLASSES: dict[str, type] = {"word": WordLevel, "subword": SubwordLevel}


def granularity_for(model: nn.Module, config: CompressConfig, *, quiet: bool = False) -> Granularity:
    """The `stages.Granularity` of `config.granularity` on `model`, its choices made on rank 0 in a process
    group (`distributed.RankZeroLevel`; the granularity itself otherwise)."""
    level = GRANULARITY_CLASSES[config.granularity](model, config, quiet=quiet or not distributed.is_main())
    return distributed.RankZeroLevel(level)  # type: ignore[return-value]


@dataclass
class CompressResult:
    """What the pipeline returns: the compressed model (masks folded), its packed layers, and the report."""

    model: nn.Module
    packed: dict[str, PackedMatrix]
    report: dict[str, Any]


# --------------------------------------------------------------------------------------------- stages
def prune_stage(
    level: Granularity,
    trainer: Trainer,
    config: CompressConfig,
    *,
    source: str,
    workdir: Path | None = None,
    resume: bool = False,
) -> StageResult:
    """Step 1 on a prepared model: gradual global pruning of the granularity's units, training between.

    The cubic schedule runs from the current sparsity to the target. Round files are
    `{prefix}-{prune_key}-{source}-r{round}.pt` in `workdir` (`unstructured` / `subword-prune`).
    """
    initial = level.sparsity()
    target = max(config.target_sparsity(), initial)
    prefix = "unstructured" if level.name == "word" else f"{level.name}-prune"
    return gradual_prune(
        level.model,  # type: ignore[attr-defined]
        trainer,
        masks.cubic_schedule(target, config.prune_rounds, initial),
        prune=level.prune,
        snapshot=lambda accuracy: level.snapshot(accuracy, {level.sparsity_name: level.sparsity()}),
        restore=level.restore,
        epochs=config.prune_epochs,
        seed=config.seed,
        name="prune" if level.name == "word" else f"{level.name} prune",
        stage_prefix=f"{prefix}-{config.prune_key()}-{source}",
        workdir=workdir,
        resume=resume,
    )


def unstructured_stage(
    model: nn.Module,
    data: TrainingData,
    config: CompressConfig,
    *,
    workdir: Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    teacher: nn.Module | None = None,
) -> StageResult:
    """Step 1 alone (prepare, then gradual pruning) on a dense `model`, e.g. to share it among methods.

    Unless a `teacher` is given, a frozen copy of the dense model teaches (`config.distill`). Round files
    are `unstructured-{prune_key}-{fingerprint of the dense model}-r{round}.pt` in `workdir` (word level).
    """
    if teacher is None and config.distill > 0:
        teacher = frozen_copy(model)
    source = fingerprint(model.state_dict())
    level = granularity_for(model, config, quiet=quiet)
    trainer = Trainer.from_config(config, data, teacher=teacher, quiet=quiet)
    level.prepare(trainer)
    workdir = Path(workdir) if workdir is not None else None
    return prune_stage(level, trainer, config, source=source, workdir=workdir, resume=resume)


def format_stage(
    level: Granularity, trainer: Trainer, config: CompressConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Step 2 on a model holding step 1's masks: plan, pack, prune to fit, fine-tune, repack, check.

    With a rate and `format_rounds > 1` the rate rises geometrically from `format_start_rate`; each round
    plans, packs and fine-tunes with its share of `finetune_epochs`. Earlier rounds fine-tune once; the last
    repeats (at most `max_fit_rounds`) until nothing falls outside the format.
    """
    rounds = config.format_rounds if config.rate is not None else 1
    rates: list[float | None] = (
        list(rising_rates(config.format_start_rate, config.rate, rounds))
        if config.rate is not None
        else [None]
    )
    packed: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    seconds = 0.0
    for index, rate in enumerate(rates, start=1):
        last = index == rounds
        start = time.perf_counter()
        configs, choices = level.plan(rate)
        for name, text in choices.items():
            log.info("%s: %s", name, text)
        packed = level.pack(configs)
        seconds += time.perf_counter() - start
        outcome = fit_finetune_repack(
            level.model,  # type: ignore[attr-defined]
            trainer,
            packed,
            apply_kept=level.apply_kept,
            repack=level.repack,
            count_dropped=level.count_dropped,
            epochs=config.finetune_epochs / rounds,
            seed=config.seed + 100,
            rounds=config.max_fit_rounds if last else 1,
            name=level.label,
            require_fit=last,
        )
        packed = outcome.packed
        seconds += outcome.repack_seconds
        meta = {
            "choices": choices,
            "prune_to_fit_accuracy": outcome.prune_to_fit_accuracy,
            "finetuned_accuracy": outcome.finetuned_accuracy,
            "seconds_plan_and_pack": seconds,
        }
        if not last:
            log.info("%s: format round %d/%d at rate %.2fx done", level.label, index, rounds, rate)
    return packed, meta


def compress_model(
    model: nn.Module,
    data: TrainingData,
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

    Pass `unstructured` (a word-level step-1 result) to share step 1 between several methods; then also
    pass the dense `teacher` for distillation (without `unstructured`, the incoming dense model is the
    teacher). At subword level step 1 always runs, from the model's current weights.
    """
    start = time.perf_counter()
    seed_everything(config.seed)
    if unstructured is not None and config.granularity != "word":
        raise TightCompressError("a shared unstructured stage is word-level; subword runs its own step 1")
    if teacher is None and unstructured is None and config.distill > 0:
        teacher = frozen_copy(model)
    level = granularity_for(model, config, quiet=quiet)
    level.check_rate()
    workdir = Path(workdir) if workdir is not None else None
    trainer = Trainer.from_config(config, data, teacher=teacher, quiet=quiet)
    if dense_accuracy is None:
        dense_accuracy = trainer.accuracy(model)
        log.info("dense accuracy %.2f%%", dense_accuracy)
    source = fingerprint(unstructured.state if unstructured is not None else model.state_dict())
    fit_path = workdir / f"fit-{level.label}-{config.fit_key()}-{source}.pt" if workdir is not None else None
    finished = load_finished(fit_path) if resume else None
    if finished is not None:
        stage, packed = finished
        level.release()
        model.load_state_dict(stage.state)
        log.info("%s: resumed the finished format-aware stage from %s", level.label, fit_path)
        return CompressResult(model, packed, stage.meta["report"])
    accuracy = {"dense": dense_accuracy}
    if unstructured is None:
        accuracy.update(level.prepare(trainer))
        unstructured = prune_stage(level, trainer, config, source=source, workdir=workdir, resume=resume)
    else:
        level.restore(unstructured)
    prune_seconds = time.perf_counter() - start
    seed_everything(config.seed)
    fitted, meta = format_stage(level, trainer, config)
    packed, layer_reports = level.finish(fitted)
    distributed.check_in_step(model, "compress")
    for layer in layer_reports:
        layer["choice"] = meta["choices"][layer["name"]]
    run = {"workflow": "compress", "granularity": level.name, "world_size": distributed.world_size()}
    report = build_report(layer_reports, config={**asdict(config), **run, "device": model_device(model).type})
    report["method"] = level.label
    report["granularity"] = level.name
    report["accuracy"] = {
        **accuracy,
        level.pruned_name: unstructured.accuracy,
        "prune_to_fit": meta["prune_to_fit_accuracy"],
        "packed_finetuned": trainer.accuracy(model),
    }
    sample = data.sample(1).to(model_device(model))
    hardware, hardware_total = level.simulate(packed, vectors_per_layer(model, sample))
    for layer in report["layers"]:
        layer.update({k: v for k, v in hardware[layer["name"]].items() if "breakdown" not in k})
    dense_entries = simulate_dense_layers(model, sample, HW_ARRAY)
    if dense_entries:  # the totals count the layers left dense at their dense cost
        hardware_total = total_simulation([*hardware.values(), *dense_entries])
    report["hardware"] = {"array": f"{HW_ARRAY[0]}x{HW_ARRAY[1]}", "per": "image", **hardware_total}
    report["hardware"]["layers_at_min_folds"] = sum(
        bool(layer.get("at_min_folds")) for layer in report["layers"]
    )
    report["dense_layers"] = [{k: v for k, v in e.items() if "breakdown" not in k} for e in dense_entries]
    report["notes"] = {"skipped_layers": skipped_layer_notes(model)}
    report[f"{level.pruned_name}_sparsity"] = unstructured.meta.get(level.sparsity_name)
    report["choices"] = meta["choices"]
    fields = level.report_fields(packed)
    report["total"].update(fields.pop("total", {}))
    report.update(fields)
    report["packed_compression_rate"] = report.get("compression_rate", report["total"]["compression_rate"])
    report["model_weights"] = model_weights(model, report["packed_compression_rate"])
    report["compression_rate"] = report["model_weights"]["compression_rate"]
    report["budget"] = training_budget(config, data)
    report["seconds"] = time.perf_counter() - start
    report["seconds_prune_stage"] = prune_seconds
    report["seconds_plan_and_pack"] = meta["seconds_plan_and_pack"]
    if fit_path is not None:
        save_finished(
            fit_path, snapshot(model, report["accuracy"]["packed_finetuned"], {"report": report}), packed
        )
    return CompressResult(model, packed, report)


def model_weights(model: nn.Module, packed_rate: float) -> dict[str, Any]:
    """The report's `model_weights`: every conv and linear weight of the model, packed or left dense, and the
    compression rate over all of them.

    Packed layers store `packed / packed_rate` word slots (`packed_rate`: the rate over the packed layers,
    `total.compression_rate`; subword runs: the word-equivalent bit rate); a layer left dense stores every
    weight. Biases and normalisation parameters are neither counted nor compressed.
    """
    packed = sum(int(m.weight.numel()) for m in gemm_layers(model).values())
    left_dense = sum(int(m.weight.numel()) for m in dense_layers(model).values())
    stored = packed / packed_rate + left_dense if packed_rate else float(packed + left_dense)
    return {
        "total": packed + left_dense,
        "packed": packed,
        "left_dense": left_dense,
        "stored_slots": stored,
        "compression_rate": (packed + left_dense) / stored if stored else 0.0,
    }


def training_budget(config: CompressConfig, data: TrainingData) -> dict[str, Any]:
    """The report's `budget`: the training the run was given, in optimizer steps of its data.

    Steps follow `pipeline.train.train` (`max(1, round(epochs * steps_per_epoch))` a call): every pruning
    round trains `prune_epochs`, every format round `finetune_epochs / format_rounds` (the last format
    round may repeat its fine-tuning, at most `max_fit_rounds` times, until nothing overflows the format).
    """
    world = distributed.world_size()
    per_epoch = data.steps_per_epoch(config.batch_size * world)
    rounds = config.format_rounds if config.rate is not None else 1
    return {
        "train_images": int(data.n_train),
        "test_images": int(getattr(data, "n_test", 0)),
        "batch_size": config.batch_size * world,
        "steps_per_epoch": per_epoch,
        "prune_rounds": config.prune_rounds,
        "prune_steps_per_round": max(1, round(config.prune_epochs * per_epoch)),
        "format_rounds": rounds,
        "finetune_steps_per_round": max(1, round(config.finetune_epochs / rounds * per_epoch)),
        "max_fit_rounds": config.max_fit_rounds,
    }


def write_outputs(result: CompressResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write `model.pt` (state_dict, masks folded), `packed.safetensors`, `report.json`, atomically.

    The packed file also carries the model's other tensors (biases, normalisation, layers left dense), so
    `tightcompress unpack OUT/packed.safetensors` gives back the whole state_dict, as for `pack`'s files.
    """
    from tightcompress.readers.checkpoint import tensor_to_numpy

    out = Path(out_dir)
    paths = {"model": out / "model.pt", "packed": out / "packed.safetensors", "report": out / "report.json"}
    state = result.model.state_dict()
    packed_weights = {p.info["source"]["weight"] for p in result.packed.values() if "source" in p.info}
    others = {name: tensor_to_numpy(tensor) for name, tensor in state.items() if name not in packed_weights}
    with output_group() as stage:  # the three files are written all or none
        torch.save(state, str(stage(paths["model"])))
        save_packed(
            stage(paths["packed"]),
            result.packed,
            state={name: array for name, (array, _) in others.items()},
            state_dtypes={name: dtype for name, (_, dtype) in others.items()},
        )
        write_json_atomic(stage(paths["report"]), CompressReport.dump(result.report))
    return paths
