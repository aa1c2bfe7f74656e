"""Subword granularity: each int8 weight is two signed 4-bit subwords, pruned and packed one by one.

Every conv/linear weight is quantized to symmetric per-output-channel int8 in `[-119, 119]` (one scale per
column of the layer's `K x N` matrix `W`, fixed when quantization starts) and split into two signed 4-bit
subwords `w = 16*a + b` (`tightcompress.prune.subword`); a grouped conv is packed per group (`name[g]`),
its masks cover the whole weight. `SubwordLevel` implements `stages.Granularity`,
so the one pipeline (`pipeline.compress.compress_model` with `granularity="subword"`) runs it:

1. `prepare` quantizes (a parametrization with a straight-through estimator); step 1 prunes subwords
   globally by removal error in the layer's units (`prune.subword.subword_importance`) to a rising subword
   sparsity, fine-tuning after each round; masks are per subword and monotone;
2. the format-aware step plans, per layer, the option `(G, h)` for the `2K x N` subword matrix reaching the
   target bit rate over the whole model (`sum 8*K*N / sum 4*slots`) with the least summed dropped fraction
   of subword contribution, packs with `pack_subwords`, makes the kept subwords the masks, fine-tunes and
   repacks until nothing is dropped;
3. `finish` checks that the packed slots recompose exactly the model's int8 weights and leaves each weight
   exactly `scale * int8`, so evaluation is what the subword array computes (up to activation quantization).

A weight whose subwords are partly pruned takes `prune.subword.kept_value` (the one subword arithmetic,
also used by packing and the bit-exact simulator): high only -> `16*a`, low only -> `clamp(q, -8, 7)`.

Rates: `bit_rate = 8*K*N / (4*slots)` (value bits only), `bit_rate_with_index = 8*K*N / ((4 + 1 +
ceil(log2 G))*slots)`. `compression_rate` is the word-equivalent rate `sum K*N / sum (slots / 2)` (two 4-bit
slots hold one int8 weight's bits), which equals `bit_rate`, so it sits in the same column as the
word-level `compression_rate = sum K*N / sum slots` (= the word-level bit rate).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from tightcompress.api import PackConfig
from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.hw import total_simulation
from tightcompress.hw.subword_sim import simulate_subword
from tightcompress.pipeline import fit
from tightcompress.pipeline.config import CompressConfig
from tightcompress.pipeline.hardware import HW_ARRAY
from tightcompress.pipeline.models import gemm_layers, join_gemms, record_sources, split_gemms
from tightcompress.pipeline.stages import StageResult, Trainer
from tightcompress.prune.subword import (
    SUBWORD_QMAX,
    channel_scales_torch,
    kept_value,
    low_subword,
    quantized_int,
    subword_contributions,
    subword_importance,
    subword_masked_weight,
    subword_matrix,
)
from tightcompress.prune.subword_pack import SubwordPacked, slot_shifts, store_kept_values
from tightcompress.readers.matrices import matrix_to_weight, weight_to_matrix
from tightcompress.subword_packer import pack_subwords

Masks = dict[str, tuple[torch.Tensor, torch.Tensor]]


# ------------------------------------------------------------------------------ quantization (QAT, STE)
class SubwordQuant(nn.Module):
    """Parametrization `w -> scale * kept_value(q)` with a straight-through gradient (zero when pruned)."""

    def __init__(self, scale: torch.Tensor, mask_high: torch.Tensor, mask_low: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("mask_high", mask_high.detach().clone().bool())
        self.register_buffer("mask_low", mask_low.detach().clone().bool())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """`prune.subword.subword_masked_weight` with this layer's scale and masks."""
        return subword_masked_weight(weight, self.scale, self.mask_high, self.mask_low)


def _quant(module: nn.Module) -> SubwordQuant:
    return module.parametrizations.weight[0]  # type: ignore[union-attr,index]


def _raw(module: nn.Module) -> torch.Tensor:
    return module.parametrizations.weight.original  # type: ignore[union-attr]


def attach(
    layers: dict[str, nn.Module], scales: dict[str, torch.Tensor], masks: Masks, *, reset: bool = True
) -> None:
    """Quantize every layer with fixed scales and subword masks (an earlier quantization is updated).

    A layer already quantized keeps its parametrization and trainable tensor; only its scale and masks
    change, in place. Re-registering would give the weight a new gradient accumulator, which an optimizer
    tolerates but DistributedDataParallel does not (its reduction hooks sit on the old one). `reset` sets
    the trainable weight to its effective value, so the next fine-tuning starts on the grid.
    """
    for name, module in layers.items():
        high, low = masks[name]
        if parametrize.is_parametrized(module, "weight"):
            quant = _quant(module)
            with torch.no_grad():
                quant.scale.copy_(scales[name])
                quant.mask_high.copy_(high)
                quant.mask_low.copy_(low)
        else:
            device = module.weight.device
            quant = SubwordQuant(scales[name].to(device), high.to(device), low.to(device))
            parametrize.register_parametrization(module, "weight", quant)
        if reset:
            with torch.no_grad():
                _raw(module).copy_(effective_weight(module).to(_raw(module).dtype))


def effective_int(module: nn.Module) -> torch.Tensor:
    """Integer steps of a quantized layer's weight (shaped like the weight): `kept_value` of its int8."""
    quant = _quant(module)
    return kept_value(quantized_int(_raw(module), quant.scale), quant.mask_high, quant.mask_low)


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


def gemm_int_matrices(layers: dict[str, nn.Module]) -> dict[str, np.ndarray]:
    """The `K x N` int8 matrix of every GEMM of the quantized layers (`name[g]` per group of a grouped
    conv)."""
    return split_gemms(layers, {n: effective_int(m).cpu().numpy().astype(np.int8) for n, m in layers.items()})


def gemm_column_scales(layers: dict[str, nn.Module]) -> dict[str, np.ndarray]:
    """The per-column scales, float64 `(N,)`, of every GEMM of the quantized layers (split as the weights)."""
    scales = {
        n: np.broadcast_to(_quant(m).scale.detach().cpu().double().numpy(), tuple(m.weight.shape))
        for n, m in layers.items()
    }
    return {name: matrix[0].copy() for name, matrix in split_gemms(layers, scales).items()}


def live_masks(layers: dict[str, nn.Module]) -> Masks:
    """Masks of the currently nonzero subwords of every layer (a subword that became 0 is pruned for good)."""
    out = {}
    for name, module in layers.items():
        q = effective_int(module)
        b = low_subword(q)
        out[name] = ((q - b) != 0, b != 0)
    return out


def global_subword_prune(layers: dict[str, nn.Module], sparsity: float) -> Masks:
    """Masks pruning the least important subwords over all layers until `sparsity` of all are zero.

    Importance is the removal error in the layer's units (`prune.subword.subword_importance` times the
    column scale); zero subwords count towards the target and stay pruned. Ties keep the earlier subword.
    The most important live subword of every output column is never pruned, so no layer or channel
    collapses to all zeros (as in `masks.global_magnitude_prune`).
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


# ------------------------------------------------------------------------------------- the format step
def candidate_configs(rows: int, config: CompressConfig, N: int | None = None) -> list[PackConfig]:
    """Tight configs tried for a subword matrix of `rows` rows (a lossless one per group included).

    With `N` given, a layer narrower than the tile gets a tile of its own width (`fit.layer_tile`).
    """
    tile = config.tile if N is None else fit.layer_tile(N, config.tile)
    out = []
    for group in fit.TIGHT_GROUPS:
        g = min(group, rows)
        for height in sorted({h for h in fit.HEIGHTS if h <= g // 2} | {g}):
            out.append(PackConfig(method="tight", group=g, height=height, tile=tile, seed=config.seed))
    return list(dict.fromkeys(out))


def repack_subwords(q: np.ndarray, arrangement: SubwordPacked) -> SubwordPacked:
    """Pack int8 `q` into `arrangement`'s permutations, groups and height cap (drops are recorded)."""
    packed = fit.repack(subword_contributions(q).astype(np.float32), arrangement.packed)
    shifts = slot_shifts(packed)
    return SubwordPacked(packed=store_kept_values(packed, q), shifts=shifts)


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


class SubwordLevel:
    """`stages.Granularity` for 4-bit subwords of int8 weights (tight only; rates are bit rates)."""

    name = "subword"
    label = "tight-subword"
    pruned_name = "subword_pruned"
    sparsity_name = "subword_sparsity"

    def __init__(self, model: nn.Module, config: CompressConfig, *, quiet: bool = False) -> None:
        self.model, self.config, self.quiet = model, config, quiet
        self.layers = gemm_layers(model)

    def check_rate(self) -> None:
        """`fit.check_rate` over the `2K x N` subword matrices of the layers' GEMMs."""
        weights = {n: m.weight.detach().cpu().numpy() for n, m in self.layers.items()}
        shapes = {n: (2 * w.shape[0], w.shape[1]) for n, w in split_gemms(self.layers, weights).items()}
        fit.check_rate(shapes, "tight", float(self.config.rate), self.config.tile)

    def prepare(self, trainer: Trainer | None) -> dict[str, float]:
        """Quantize every layer (per-channel int8, qmax 119, scales fixed from now on); its accuracy."""
        scales = {n: channel_scales_torch(m.weight.detach(), 0, SUBWORD_QMAX) for n, m in self.layers.items()}
        ones = {n: (torch.ones_like(m.weight, dtype=torch.bool),) * 2 for n, m in self.layers.items()}
        attach(self.layers, scales, ones, reset=True)
        attach(self.layers, scales, live_masks(self.layers), reset=True)
        return {"quantized": trainer.accuracy(self.model)} if trainer is not None else {}

    def sparsity(self) -> float:
        """Fraction of zero subwords."""
        return subword_sparsity_of(self.layers)

    def prune(self, sparsity: float) -> None:
        """`global_subword_prune`, the scales kept."""
        scales = {n: _quant(m).scale for n, m in self.layers.items()}
        attach(self.layers, scales, global_subword_prune(self.layers, sparsity))

    def snapshot(self, accuracy: float, meta: dict[str, Any]) -> StageResult:
        """Weights `scale * int` (`plain_state`) plus each layer's masks and scales."""
        extra: dict[str, torch.Tensor] = {}
        for name, module in self.layers.items():
            quant = _quant(module)
            extra[f"{name}.high"] = quant.mask_high.clone()
            extra[f"{name}.low"] = quant.mask_low.clone()
            extra[f"{name}.scale"] = quant.scale.clone()
        return StageResult(plain_state(self.model), extra, accuracy, dict(meta))

    def restore(self, stage: StageResult) -> None:
        """Load a subword stage and quantize with its masks and scales."""
        detach_all(self.layers)
        self.model.load_state_dict(stage.state)
        scales = {n: stage.masks[f"{n}.scale"] for n in self.layers}
        masks = {n: (stage.masks[f"{n}.high"], stage.masks[f"{n}.low"]) for n in self.layers}
        attach(self.layers, scales, masks, reset=True)

    def plan(self, rate: float | None) -> tuple[dict[str, PackConfig], dict[str, str]]:
        """Per-layer `(G, h)` of the `2K x N` subword matrices reaching bit rate `rate`."""
        if rate is None:
            raise TightCompressError("granularity subword needs a rate")
        matrices = {
            n: subword_contributions(q).astype(np.float32) for n, q in gemm_int_matrices(self.layers).items()
        }
        options = {}
        for name, matrix in matrices.items():
            configs = candidate_configs(matrix.shape[0], self.config, N=matrix.shape[1])
            options[name] = fit.evaluate_options(matrix, configs, plan_iterations=self.config.plan_iterations)
        # bit_rate = sum 8KN / sum 4 slots = sum 2KN / sum slots: the sizes are the subword matrices' sizes.
        sizes = {name: int(m.shape[0] * m.shape[1]) for name, m in matrices.items()}
        chosen = fit.choose_options(options, sizes, rate)
        return (
            {name: option.config for name, option in chosen.items()},
            {name: option.describe().replace("tight", "tight-subword") for name, option in chosen.items()},
        )

    def pack(self, configs: dict[str, PackConfig]) -> dict[str, SubwordPacked]:
        """`pack_subwords` of every GEMM's int8 matrix with its config (the full search)."""
        return {
            name: pack_subwords(
                q,
                group=configs[name].group,
                height=configs[name].height,
                tile=configs[name].tile,
                seed=self.config.seed,
                iterations=self.config.final_iterations,
                name=name,
            )
            for name, q in gemm_int_matrices(self.layers).items()
        }

    def apply_kept(self, packed: dict[str, SubwordPacked]) -> None:
        """The subwords in the slots become the masks (a layer's from all its GEMMs); weights reset onto the
        kept values."""
        scales = {n: _quant(m).scale for n, m in self.layers.items()}
        kept_masks = {name: sp.kept_masks() for name, sp in packed.items()}
        high = join_gemms(self.layers, {name: m.high for name, m in kept_masks.items()})
        low = join_gemms(self.layers, {name: m.low for name, m in kept_masks.items()})
        kept = {name: (torch.from_numpy(high[name]), torch.from_numpy(low[name])) for name in self.layers}
        attach(self.layers, scales, kept, reset=True)

    def repack(self, packed: dict[str, SubwordPacked]) -> dict[str, SubwordPacked]:
        """`repack_subwords` of the current int8 matrices."""
        now = gemm_int_matrices(self.layers)
        return {n: repack_subwords(now[n], sp) for n, sp in packed.items()}

    def count_dropped(self, packed: SubwordPacked) -> int:
        """Nonzero subwords the repack dropped."""
        return int(packed.packed.info.get("dropped_nnz", 0))

    def finish(
        self, packed: dict[str, SubwordPacked]
    ) -> tuple[dict[str, PackedMatrix], list[dict[str, Any]]]:
        """Check the slots recompose the model's int8 weights, then leave the weights `scale * int8`."""
        reports = []
        scales = gemm_column_scales(self.layers)
        for name, q in gemm_int_matrices(self.layers).items():
            if not np.array_equal(packed[name].to_int8_dense(), q):
                raise TightCompressError(f"{name}: packed subwords differ from the model's int8 weights")
            packed[name].packed.info["scales"] = [float(s) for s in scales[name]]
            rep = packed[name].report()
            rep.pop("scales", None)
            rep["name"] = name
            reports.append(rep)
        detach_all(self.layers)
        final = {name: sp.packed for name, sp in packed.items()}
        record_sources(self.layers, final)
        return final, reports

    def simulate(
        self, packed: dict[str, PackedMatrix], vectors: dict[str, int]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """`hw.subword_sim.simulate_subword` per layer: 4-bit x 8-bit multipliers against dense int8."""
        layers = {
            name: simulate_subword(SubwordPacked.from_packed(p), array=HW_ARRAY, m=vectors[name])
            for name, p in packed.items()
        }
        return layers, total_simulation(layers.values())

    def report_fields(self, packed: dict[str, PackedMatrix]) -> dict[str, Any]:
        """Whole-model bit rates (`total_rates`); `compression_rate` is the word-equivalent bit rate."""
        rates = total_rates({n: SubwordPacked.from_packed(p) for n, p in packed.items()})
        return {
            "total": {**rates, "storage_rate_bits": rates["bit_rate_with_index"]},
            "bit_rate": rates["bit_rate"],
            "bit_rate_with_index": rates["bit_rate_with_index"],
            "compression_rate": rates["compression_rate"],
        }

    def release(self) -> None:
        """Remove the quantization, leaving weights `scale * int`."""
        detach_all(self.layers)
