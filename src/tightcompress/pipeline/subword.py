"""`compress_subword(model, data, SubwordConfig(...))`: subword-level tight compression of a PyTorch CNN.

Every conv/linear weight is quantized to symmetric per-output-channel int8 in `[-119, 119]` (one scale per
column of the layer's `K x N` matrix `W`, fixed when quantization starts) and split into two signed 4-bit
subwords `w = 16*a + b` (`tightcompress.prune.subword`). Then:

1. quantization-aware training (straight-through estimator) with gradual *global* subword pruning: the
   subwords with the smallest removal error (`16*|a|*scale` high, `|b|*scale` low, in the layer's units) are
   pruned over all layers to a rising subword sparsity, fine-tuning after each step; masks are per subword
   and monotone (a pruned subword stays pruned);
2. the format-aware step, as in the word-level pipeline (`pipeline.compress.format_stage`): per layer, the
   option `(G, h)` for the `2K x N` subword matrix reaching the target bit rate over the whole model
   (`sum 8*K*N / sum 4*slots`) with the least summed dropped fraction of subword contribution; pack with
   `pack_subwords`; the kept subwords become the masks (prune-to-fit); fine-tune with the masks fixed;
   repack in the same arrangement and check nothing is dropped;
3. the returned model's weights are exactly `scale * int8`, the int8 being what the kept subwords
   recompose, so its evaluation is what the subword array computes (up to activation quantization).

Every training step distils from the frozen dense model (`SubwordConfig.distill`, as the word level does);
the stage loops and stage files are the word level's (`pipeline.stages`).

Rates: `bit_rate = 8*K*N / (4*slots)` (value bits only), `bit_rate_with_index = 8*K*N / ((4 + 1 +
ceil(log2 G))*slots)`. `compression_rate` is the word-equivalent rate `sum K*N / sum (slots / 2)` (two 4-bit
slots hold one int8 weight's bits), which equals `bit_rate`, so it sits in the same column as the
word-level `compression_rate = sum K*N / sum slots` (= the word-level bit rate).

Within a weight, the projection used in training keeps the forward value on the kept subwords' grid: both
kept -> `q` in `[-119, 119]`; high only -> `16*a`; low only (a weight whose high subword is zero) -> `q`
clamped to `[-8, 7]` (no wrap-around of the residue); none -> 0 (no gradient, as with ordinary masks).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from tightcompress.api import PackConfig
from tightcompress.errors import TightCompressError
from tightcompress.pipeline import fit
from tightcompress.pipeline.compress import CompressResult, fingerprint
from tightcompress.pipeline.data import Dataset
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
from tightcompress.pipeline.train import evaluate, frozen_copy, seed_everything
from tightcompress.prune.subword import (
    SUBWORD_QMAX,
    SubwordMasks,
    channel_scales_torch,
    gradual_schedule,
    subword_contributions,
    subword_importance,
    subword_matrix,
)
from tightcompress.prune.subword_pack import SubwordPacked, pack_subwords, slot_shifts
from tightcompress.readers.matrices import matrix_to_weight, weight_to_matrix
from tightcompress.report import build_report

log = logging.getLogger("tightcompress.pipeline")

Masks = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class SubwordConfig:
    """Settings of the subword pipeline, validated on construction.

    The defaults spend the word-level pipeline's default fine-tuning budget (4 pruning steps x 2 epochs,
    then 6 epochs over 2 format rounds) and distil from the dense model as it does (`distill`,
    `distill_temperature`, as in `CompressConfig`). `sparsity` is the subword sparsity of step 1 (default
    `1 - 1/bit_rate`: the subwords the target bit rate can hold).
    """

    bit_rate: float = 24.0
    tile: int = 32
    groups: tuple[int, ...] = fit.TIGHT_GROUPS
    sparsity: float | None = None
    steps: int = 4
    prune_epochs: float = 2.0
    finetune_epochs: float = 6.0
    format_rounds: int = 2
    format_start_rate: float = 4.0
    lr: float = 3e-3
    batch_size: int = 128
    seed: int = 0
    plan_iterations: int | None = 30_000
    final_iterations: int | None = 300_000
    max_fit_rounds: int = 3
    distill: float = 0.5  # weight of distillation from the dense model in every training step (0: off)
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        if not self.bit_rate >= 1.0:
            raise TightCompressError(f"bit rate must be >= 1, got {self.bit_rate}")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise TightCompressError(f"subword sparsity must be in [0, 1), got {self.sparsity}")
        if not self.groups or min(self.groups) < 2:
            raise TightCompressError(f"group choices must be >= 2, got {self.groups}")
        if self.tile < 1:
            raise TightCompressError(f"tile must be >= 1, got {self.tile}")
        for name in ("prune_epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise TightCompressError(f"{name} must be >= 0")
        if min(self.steps, self.format_rounds, self.max_fit_rounds, self.batch_size) < 1:
            raise TightCompressError("steps, format and fit rounds and batch_size must be >= 1")
        if not self.format_start_rate >= 1.0:
            raise TightCompressError("format_start_rate must be >= 1")
        if not 0.0 <= self.distill <= 1.0 or self.distill_temperature <= 0:
            raise TightCompressError("distill must be in [0, 1] and its temperature > 0")

    def target_sparsity(self) -> float:
        """Subword sparsity (zeros over all `2*K*N` subwords) reached by step 1."""
        return self.sparsity if self.sparsity is not None else 1.0 - 1.0 / self.bit_rate

    def key(self) -> str:
        """Hash of every setting (stage files of other settings are never resumed)."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    def prune_key(self) -> str:
        """Hash of the settings step 1 depends on."""
        fields = (
            self.target_sparsity(),
            self.steps,
            self.prune_epochs,
            self.lr,
            self.batch_size,
            self.seed,
            self.distill,
            self.distill_temperature,
        )
        return hashlib.sha1(json.dumps(fields).encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------ quantization (QAT, STE)
def int_effective(
    weight: torch.Tensor, scale: torch.Tensor, mask_high: torch.Tensor, mask_low: torch.Tensor
) -> torch.Tensor:
    """Integer steps the kept subwords of `weight` give (float tensor of integers; see module doc)."""
    q = torch.clamp(torch.round(weight.detach() / scale), -SUBWORD_QMAX, SUBWORD_QMAX)
    b = torch.remainder(q + 8, 16) - 8
    a = (q - b) / 16
    both = 16 * a * mask_high + b * mask_low
    low_only = mask_low & ~mask_high
    return torch.where(low_only, torch.clamp(q, -8, 7), both)


class SubwordQuant(nn.Module):
    """Parametrization `w -> scale * int_effective(w)` with a straight-through gradient (zero when pruned)."""

    def __init__(self, scale: torch.Tensor, mask_high: torch.Tensor, mask_low: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("mask_high", mask_high.detach().clone().bool())
        self.register_buffer("mask_low", mask_low.detach().clone().bool())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The effective weight (forward) with STE gradient gated by the weight's liveness."""
        effective = int_effective(weight, self.scale, self.mask_high, self.mask_low) * self.scale
        gated = weight * (self.mask_high | self.mask_low).to(weight.dtype)
        return gated + (effective.to(weight.dtype) - gated).detach()


def _quant(module: nn.Module) -> SubwordQuant:
    return module.parametrizations.weight[0]  # type: ignore[union-attr,index]


def _raw(module: nn.Module) -> torch.Tensor:
    return module.parametrizations.weight.original  # type: ignore[union-attr]


def attach(
    layers: dict[str, nn.Module], scales: dict[str, torch.Tensor], masks: Masks, *, reset: bool = True
) -> None:
    """Quantize every layer with fixed scales and subword masks (replacing an earlier parametrization).

    `reset` sets the trainable weight to its effective value, so the next fine-tuning starts on the grid.
    """
    for name, module in layers.items():
        if parametrize.is_parametrized(module, "weight"):
            raw = _raw(module).detach().clone()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            module.weight.data.copy_(raw)
        high, low = masks[name]
        parametrize.register_parametrization(module, "weight", SubwordQuant(scales[name], high, low))
        if reset:
            with torch.no_grad():
                _raw(module).copy_(effective_weight(module).to(_raw(module).dtype))


def effective_int(module: nn.Module) -> torch.Tensor:
    """Integer steps of a quantized layer's weight (shaped like the weight)."""
    quant = _quant(module)
    return int_effective(_raw(module), quant.scale, quant.mask_high, quant.mask_low)


def effective_weight(module: nn.Module) -> torch.Tensor:
    """`scale * int` of a quantized layer, computed exactly (not through the STE expression)."""
    return (effective_int(module) * _quant(module).scale).detach()


def detach_all(layers: dict[str, nn.Module]) -> None:
    """Remove the parametrizations, leaving each weight exactly `scale * int`."""
    for module in layers.values():
        if parametrize.is_parametrized(module, "weight"):
            value = effective_weight(module).clone()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            module.weight.data.copy_(value)


def int_matrix(module: nn.Module) -> np.ndarray:
    """The layer's `K x N` int8 matrix (kept subwords recomposed)."""
    return weight_to_matrix(effective_int(module).cpu().numpy()).astype(np.int8)


def column_scales(module: nn.Module) -> np.ndarray:
    """The layer's per-column (output channel) scales, float64 `(N,)`."""
    return _quant(module).scale.detach().cpu().double().numpy().reshape(-1)


def live_masks(layers: dict[str, nn.Module]) -> Masks:
    """Masks of the currently nonzero subwords of every layer (a subword that became 0 is pruned for good)."""
    out = {}
    for name, module in layers.items():
        q = effective_int(module)
        b = torch.remainder(q + 8, 16) - 8
        a = (q - b) / 16
        out[name] = ((a != 0).clone(), (b != 0).clone())
    return out


def global_subword_prune(layers: dict[str, nn.Module], sparsity: float) -> Masks:
    """Masks pruning the least important subwords over all layers until `sparsity` of all are zero.

    Importance is the removal error in the layer's units (`16|a|*scale`, `|b|*scale`); zero subwords count
    towards the target and stay pruned. Ties keep the earlier subword. The most important live subword of
    every output column is never pruned, so no layer or channel collapses to all zeros (as in
    `masks.global_magnitude_prune`).
    """
    mats, imps, alives = {}, [], []
    for name, module in layers.items():
        q = int_matrix(module)
        high, low = subword_importance(q, column_scales(module))
        K, N = q.shape
        imp = np.empty((2 * K, N))
        imp[0::2], imp[1::2] = high, low
        alive = subword_matrix(q) != 0
        keep = np.flatnonzero(alive.any(axis=0))
        imp[np.argmax(np.where(alive, imp, -np.inf)[:, keep], axis=0), keep] = np.inf
        mats[name] = (q.shape, alive)
        imps.append(imp.ravel())
        alives.append(alive.ravel().copy())
    imp_all = np.concatenate(imps)
    alive_all = np.concatenate(alives)
    n_prune = round(sparsity * alive_all.size) - int((~alive_all).sum())
    if n_prune > 0:
        live = np.flatnonzero(alive_all)
        order = np.argsort(imp_all[live], kind="stable")
        alive_all[live[order[:n_prune]]] = False
    out: Masks = {}
    offset = 0
    for name, module in layers.items():
        (K, N), _ = mats[name]
        alive = alive_all[offset : offset + 2 * K * N].reshape(2 * K, N)
        offset += 2 * K * N
        shape = tuple(module.weight.shape)
        out[name] = (
            torch.from_numpy(matrix_to_weight(alive[0::2].copy(), shape)),
            torch.from_numpy(matrix_to_weight(alive[1::2].copy(), shape)),
        )
    return out


def subword_sparsity_of(layers: dict[str, nn.Module]) -> float:
    """Fraction of zero subwords over all layers."""
    zeros = total = 0
    for module in layers.values():
        sub = subword_matrix(int_matrix(module))
        zeros += int(sub.size - np.count_nonzero(sub))
        total += sub.size
    return zeros / max(total, 1)


# ----------------------------------------------------------------------------------------- stage files
def _stage(layers: dict[str, nn.Module], model: nn.Module, accuracy: float, meta: dict) -> StageResult:
    """The model with weights `scale * int` (parametrizations folded on a copy) plus masks and scales."""
    state = plain_state(model)
    extra: dict[str, torch.Tensor] = {}
    for name, module in layers.items():
        quant = _quant(module)
        extra[f"{name}.high"] = quant.mask_high.clone()
        extra[f"{name}.low"] = quant.mask_low.clone()
        extra[f"{name}.scale"] = quant.scale.clone()
    return StageResult(state, extra, accuracy, dict(meta))


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict as an unquantized model has it, each weight exactly `scale * int`."""
    layers = gemm_layers(model)
    state = {}
    for key, value in model.state_dict().items():
        if ".parametrizations.weight." in key:
            continue
        state[key] = value.detach().clone()
    for name, module in layers.items():
        if parametrize.is_parametrized(module, "weight"):
            state[f"{name}.weight"] = effective_weight(module).clone()
    return {key: state[key] for key in sorted(state)}


def _restore(model: nn.Module, stage: StageResult) -> None:
    """Load a subword stage into `model` (unparametrized) and quantize it with the stage's masks/scales."""
    layers = gemm_layers(model)
    detach_all(layers)
    model.load_state_dict(stage.state)
    scales = {n: stage.masks[f"{n}.scale"] for n in layers}
    masks = {n: (stage.masks[f"{n}.high"], stage.masks[f"{n}.low"]) for n in layers}
    attach(layers, scales, masks, reset=True)


# ---------------------------------------------------------------------------------------------- stages
def prune_stage(
    model: nn.Module,
    data: Dataset,
    config: SubwordConfig,
    *,
    key: str,
    workdir: Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    teacher: nn.Module | None = None,
) -> StageResult:
    """Step 1 on a quantized model: gradual global subword pruning with QAT fine-tuning after each step.

    The `teacher` (the dense model) is distilled from in every step (`config.distill`). Step files are
    `subword-prune-{key}-r{step}.pt` in `workdir`.
    """
    layers = gemm_layers(model)
    initial = subword_sparsity_of(layers)
    target = max(config.target_sparsity(), initial)

    def prune(sparsity: float) -> None:
        scales = {n: _quant(m).scale for n, m in layers.items()}
        attach(layers, scales, global_subword_prune(layers, sparsity))

    return gradual_prune(
        model,
        Trainer.from_config(config, data, teacher=teacher, quiet=quiet),
        gradual_schedule(target, config.steps, initial=initial),
        prune=prune,
        snapshot=lambda accuracy: _stage(
            layers, model, accuracy, {"subword_sparsity": subword_sparsity_of(layers)}
        ),
        restore=lambda stage: _restore(model, stage),
        epochs=config.prune_epochs,
        seed=config.seed,
        name="subword prune",
        stage_prefix=f"subword-prune-{key}",
        workdir=workdir,
        resume=resume,
    )


def _contribution_matrices(layers: dict[str, nn.Module]) -> dict[str, np.ndarray]:
    return {name: subword_contributions(int_matrix(m)).astype(np.float32) for name, m in layers.items()}


def plan_subword_rate(
    layers: dict[str, nn.Module], config: SubwordConfig, bit_rate: float, *, quiet: bool = False
) -> dict[str, fit.Option]:
    """Per-layer `(G, h)` of the `2K x N` subword matrices reaching `bit_rate`, least dropped contribution."""
    matrices = _contribution_matrices(layers)
    options = {}
    for name, matrix in matrices.items():
        configs = candidate_configs(matrix.shape[0], config, N=matrix.shape[1])
        options[name] = fit.evaluate_options(matrix, configs, plan_iterations=config.plan_iterations)
    # bit_rate = sum 8KN / sum 4 slots = sum 2KN / sum slots: the sizes are the subword matrices' sizes.
    sizes = {name: int(m.shape[0] * m.shape[1]) for name, m in matrices.items()}
    return fit.choose_options(options, sizes, bit_rate)


def candidate_configs(rows: int, config: SubwordConfig, N: int | None = None) -> list[PackConfig]:
    """Tight configs tried for a subword matrix of `rows` rows (a lossless one per group included).

    With `N` given, a layer narrower than the tile gets a tile of its own width (`fit.layer_tile`).
    """
    tile = config.tile if N is None else fit.layer_tile(N, config.tile)
    out = []
    for group in config.groups:
        g = min(group, rows)
        for height in sorted({h for h in fit.HEIGHTS if h <= g // 2} | {g}):
            out.append(PackConfig(method="tight", group=g, height=height, tile=tile, seed=config.seed))
    return list(dict.fromkeys(out))


def repack_subwords(q: np.ndarray, arrangement: SubwordPacked) -> SubwordPacked:
    """Pack int8 `q` into `arrangement`'s permutations, groups and height cap (drops are recorded)."""
    packed = fit.repack(subword_contributions(q).astype(np.float32), arrangement.packed)
    shifts = slot_shifts(packed)
    packed.values = (np.rint(packed.values).astype(np.int16) >> shifts.astype(np.int16)).astype(np.int8)
    packed.method = "tight-subword"
    return SubwordPacked(packed=packed, shifts=shifts)


def _kept_masks(sp: SubwordPacked, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    kept: SubwordMasks = sp.kept_masks()
    return (
        torch.from_numpy(matrix_to_weight(kept.high, shape)),
        torch.from_numpy(matrix_to_weight(kept.low, shape)),
    )


def format_stage_subword(
    model: nn.Module,
    data: Dataset,
    config: SubwordConfig,
    *,
    quiet: bool = False,
    teacher: nn.Module | None = None,
) -> tuple[dict[str, SubwordPacked], dict[str, Any]]:
    """Step 2: choose options, pack, prune to fit, fine-tune with masks fixed, repack and check the fit.

    With `format_rounds > 1` the bit rate rises geometrically from `format_start_rate` to the target; each
    round plans, fits and fine-tunes with its share of `finetune_epochs` (distilling from `teacher`). Only
    the last round must fit exactly (up to `max_fit_rounds` fine-tunes); an earlier one fine-tunes once.
    """
    layers = gemm_layers(model)
    rounds = config.format_rounds
    epochs = config.finetune_epochs / rounds
    scales = {n: _quant(m).scale for n, m in layers.items()}
    trainer = Trainer.from_config(config, data, teacher=teacher, quiet=quiet)

    def apply_kept(packed: dict[str, SubwordPacked]) -> None:
        kept = {n: _kept_masks(sp, tuple(layers[n].weight.shape)) for n, sp in packed.items()}
        attach(layers, scales, kept, reset=True)

    def repack(packed: dict[str, SubwordPacked]) -> dict[str, SubwordPacked]:
        return {n: repack_subwords(int_matrix(layers[n]), sp) for n, sp in packed.items()}

    meta: dict[str, Any] = {}
    packed: dict[str, SubwordPacked] = {}
    search_seconds = 0.0
    for index, rate in enumerate(rising_rates(config.format_start_rate, config.bit_rate, rounds), start=1):
        t0 = time.perf_counter()
        last = index == rounds
        chosen = plan_subword_rate(layers, config, rate, quiet=quiet)
        choices = {
            name: option.describe().replace("tight", "tight-subword") for name, option in chosen.items()
        }
        packed = {}
        for name, module in layers.items():
            c = chosen[name].config
            packed[name] = pack_subwords(
                int_matrix(module),
                group=c.group,
                height=c.height,
                tile=c.tile,
                seed=config.seed,
                iterations=config.final_iterations,
                name=name,
            )
        search_seconds += time.perf_counter() - t0
        outcome = fit_finetune_repack(
            model,
            trainer,
            packed,
            apply_kept=apply_kept,
            repack=repack,
            count_dropped=lambda sp: int(sp.packed.info.get("dropped_nnz", 0)),
            epochs=epochs,
            seed=config.seed + 100 * index,
            rounds=config.max_fit_rounds if last else 1,
            name=f"subword {rate:.2f}x",
            require_fit=last,
        )
        packed = outcome.packed
        search_seconds += outcome.repack_seconds
        meta = {
            "choices": choices,
            "prune_to_fit_accuracy": outcome.prune_to_fit_accuracy,
            "finetuned_accuracy": outcome.finetuned_accuracy,
            "search_seconds": search_seconds,
        }
    return packed, meta


def total_rates(packed: dict[str, SubwordPacked]) -> dict[str, float]:
    """Whole-model `bit_rate`, `bit_rate_with_index` and word-equivalent `compression_rate` (= bit_rate)."""
    dense_bits = sum(sp.dense_bits for sp in packed.values())
    value_bits = sum(4 * sp.packed_slots for sp in packed.values())
    all_bits = sum(sp.slot_bits * sp.packed_slots for sp in packed.values())
    bit_rate = dense_bits / max(value_bits, 1)
    return {
        "bit_rate": bit_rate,
        "bit_rate_with_index": dense_bits / max(all_bits, 1),
        "compression_rate": bit_rate,
        "dense_bits": dense_bits,
        "packed_bits": all_bits,
        "packed_slots": sum(sp.packed_slots for sp in packed.values()),
    }


def compress_subword(
    model: nn.Module,
    data: Dataset,
    config: SubwordConfig,
    *,
    workdir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    quiet: bool = False,
    start: StageResult | None = None,
    dense_accuracy: float | None = None,
    teacher: nn.Module | None = None,
) -> CompressResult:
    """Run the subword pipeline on `model` (changed in place; returned with weights `scale * int8`).

    `start` is the stage to begin from (a dense snapshot or the word-level unstructured stage); without it
    the model's current weights are used. `packed` holds each layer's `2K x N` subword `PackedMatrix`.
    Every training step distils from `teacher` (`config.distill`); without one, a frozen copy of the
    starting model teaches, so pass the dense model when starting from a pruned stage.
    """
    t0 = time.perf_counter()
    seed_everything(config.seed)
    layers = gemm_layers(model)
    if start is not None:
        detach_all(layers)
        model.load_state_dict(start.state)
    shapes = {
        n: (2 * weight_to_matrix(m.weight.detach().numpy()).shape[0], m.weight.shape[0])
        for n, m in layers.items()
    }
    fit.check_rate(shapes, "tight", config.bit_rate, config.tile)
    workdir = Path(workdir) if workdir is not None else None
    if dense_accuracy is None:
        dense_accuracy = evaluate(model, data.x_test, data.y_test)
    start_accuracy = start.accuracy if start is not None else dense_accuracy
    source = fingerprint(model.state_dict())
    fit_path = workdir / f"subword-fit-{config.key()}-{source}.pt" if workdir is not None else None
    finished = load_finished(fit_path) if resume else None
    if finished is not None:
        stage, packed_layers = finished
        model.load_state_dict(stage.state)
        log.info("subword: resumed the finished stage from %s", fit_path)
        return CompressResult(model, packed_layers, stage.meta["report"])
    if teacher is None and config.distill > 0:
        teacher = frozen_copy(model)  # the starting model, before quantization
    scales = {n: channel_scales_torch(m.weight.detach(), 0, SUBWORD_QMAX) for n, m in layers.items()}
    ones = {n: (torch.ones_like(m.weight, dtype=torch.bool),) * 2 for n, m in layers.items()}
    attach(layers, scales, ones, reset=True)
    attach(layers, scales, live_masks(layers), reset=True)
    quantized_accuracy = evaluate(model, data.x_test, data.y_test)
    log.info("subword: int8 (per-channel, qmax 119) accuracy before training %.2f%%", quantized_accuracy)
    pruned = prune_stage(
        model,
        data,
        config,
        key=f"{config.prune_key()}-{source}",
        workdir=workdir,
        resume=resume,
        quiet=quiet,
        teacher=teacher,
    )
    prune_seconds = time.perf_counter() - t0
    seed_everything(config.seed)
    packed, meta = format_stage_subword(model, data, config, quiet=quiet, teacher=teacher)
    # Final consistency: the packed layers recompose exactly the model's int8 weights.
    for name, module in layers.items():
        if not np.array_equal(packed[name].to_int8_dense(), int_matrix(module)):
            raise TightCompressError(f"{name}: packed subwords differ from the model's int8 weights")
        packed[name].packed.info["scales"] = [float(s) for s in column_scales(module)]
    detach_all(layers)
    final_accuracy = evaluate(model, data.x_test, data.y_test)
    layer_reports = []
    for name, sp in packed.items():
        rep = sp.report()
        rep.pop("scales", None)
        rep["name"] = name
        rep["choice"] = meta["choices"][name]
        layer_reports.append(rep)
    report = build_report(
        layer_reports, config={**asdict(config), "workflow": "compress", "granularity": "subword"}
    )
    rates = total_rates(packed)
    report["total"].update(rates)
    report["total"]["storage_rate_bits"] = rates["bit_rate_with_index"]
    report.update(
        {
            "method": "tight-subword",
            "granularity": "subword",
            "bit_rate": rates["bit_rate"],
            "bit_rate_with_index": rates["bit_rate_with_index"],
            "compression_rate": rates["compression_rate"],
            "accuracy": {
                "dense": dense_accuracy,
                "start": start_accuracy,
                "quantized": quantized_accuracy,
                "subword_pruned": pruned.accuracy,
                "prune_to_fit": meta["prune_to_fit_accuracy"],
                "packed_finetuned": final_accuracy,
            },
            "subword_sparsity": pruned.meta.get("subword_sparsity"),
            "choices": meta["choices"],
            "seconds": time.perf_counter() - t0,
            "seconds_prune_stage": prune_seconds,
            "seconds_plan_and_pack": meta["search_seconds"],
        }
    )
    out = {name: sp.packed for name, sp in packed.items()}
    if fit_path is not None:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save_finished(fit_path, StageResult(state, {}, final_accuracy, {"report": report}), out)
    return CompressResult(model, out, report)


def run_subword_row(
    model: nn.Module,
    data: Dataset,
    dense_stage: StageResult,
    unstructured_stage: StageResult | None = None,
    *,
    bit_rate: float = 24.0,
    seed: int = 0,
    workdir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    quiet: bool = False,
    from_unstructured: bool = False,
    config: SubwordConfig | None = None,
    teacher: nn.Module | None = None,
) -> tuple[dict[str, Any], CompressResult]:
    """The demo's `tight-subword` row and the full result (model, packed, report).

    Starts from `dense_stage` (default; measured better) or, with `from_unstructured=True`, from the
    shared word-level unstructured stage. Training distils from `teacher` (`config.distill`), by default
    the dense model of `dense_stage`, whichever the start. The row has method, compression_rate
    (= bit_rate), bit_rate, bit_rate_with_index, accuracy and accuracy_drop (vs `dense_stage.accuracy`).
    """
    config = replace(config or SubwordConfig(), bit_rate=bit_rate, seed=seed)
    if from_unstructured and unstructured_stage is None:
        raise TightCompressError("from_unstructured=True needs the unstructured stage")
    start = unstructured_stage if from_unstructured else dense_stage
    if teacher is None and config.distill > 0:
        teacher = teacher_from_stage(model, dense_stage)
    result = compress_subword(
        model,
        data,
        config,
        workdir=workdir,
        resume=resume,
        quiet=quiet,
        start=start,
        dense_accuracy=dense_stage.accuracy,
        teacher=teacher,
    )
    rep = result.report
    accuracy = float(rep["accuracy"]["packed_finetuned"])
    row = {
        "method": "tight-subword",
        "compression_rate": float(rep["compression_rate"]),
        "bit_rate": float(rep["bit_rate"]),
        "bit_rate_with_index": float(rep["bit_rate_with_index"]),
        "accuracy": accuracy,
        "accuracy_drop": float(dense_stage.accuracy - accuracy),
    }
    return row, result


def teacher_from_stage(model: nn.Module, stage: StageResult) -> nn.Module:
    """A frozen copy of `model` holding `stage`'s (unquantized) weights: the distillation teacher."""
    teacher = copy.deepcopy(model)
    detach_all(gemm_layers(teacher))
    teacher.load_state_dict(stage.state)
    return frozen_copy(teacher)
