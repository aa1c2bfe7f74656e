"""Word granularity: one int8 weight per slot, masks through `torch.nn.utils.prune`, every packing method.

`WordLevel` implements `stages.Granularity`: global magnitude pruning (`masks`), per-layer options for a
rate and packing (`fit`), prune-to-fit by setting each layer's mask to the packed kept positions. Masks
cover a layer's whole weight; plans and packs are per GEMM (`name[g]` for group `g` of a grouped conv).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from tightcompress.api import PackConfig
from tightcompress.format.packed import PackedMatrix
from tightcompress.pipeline import fit, masks
from tightcompress.pipeline.config import CompressConfig
from tightcompress.pipeline.hardware import HW_ARRAY, simulate_model
from tightcompress.pipeline.models import gemm_layers, join_gemms, record_sources, split_gemms
from tightcompress.pipeline.stages import StageResult, Trainer


def snapshot(model: nn.Module, accuracy: float, meta: dict[str, Any] | None = None) -> StageResult:
    """The model's current weights with masks folded (the model itself is left as it is) and its masks."""
    clone = copy.deepcopy(model)
    layers = gemm_layers(clone)
    current = masks.current_masks(layers)
    masks.fold_masks(layers)
    state = {k: v.detach().clone() for k, v in clone.state_dict().items()}
    return StageResult(state, current, accuracy, dict(meta or {}))


def restore(model: nn.Module, stage: StageResult) -> None:
    """Load a word-level stage into `model` and re-apply its masks with `torch.nn.utils.prune`."""
    layers = gemm_layers(model)
    masks.fold_masks(layers)
    model.load_state_dict(stage.state)
    masks.apply_masks(layers, {n: m for n, m in stage.masks.items() if not bool(m.all())})


def layer_matrices(model: nn.Module) -> dict[str, np.ndarray]:
    """The `K x N` matrix of every GEMM of the conv/linear layers (`name[g]` per group), masks applied."""
    layers = gemm_layers(model)
    return split_gemms(
        layers,
        {name: masks.effective_weight(m).cpu().numpy().astype(np.float32) for name, m in layers.items()},
    )


class WordLevel:
    """`stages.Granularity` for words: one weight per slot, any `CompressConfig.method`."""

    name = "word"
    pruned_name = "unstructured"
    sparsity_name = "sparsity"

    def __init__(self, model: nn.Module, config: CompressConfig, *, quiet: bool = False) -> None:
        self.model, self.config, self.quiet = model, config, quiet
        self.layers = gemm_layers(model)
        self.label = config.method

    def check_rate(self) -> None:
        """`fit.check_rate` over the `K x N` shapes of the layers' GEMMs."""
        if self.config.rate is None:
            return
        weights = {n: m.weight.detach().cpu().numpy() for n, m in self.layers.items()}
        shapes = {n: tuple(w.shape) for n, w in split_gemms(self.layers, weights).items()}
        fit.check_rate(shapes, self.config.method, self.config.rate, self.config.tile)

    def prepare(self, trainer: Trainer | None) -> dict[str, float]:
        """Nothing to prepare: words are pruned as they are."""
        return {}

    def sparsity(self) -> float:
        """Fraction of zero weights."""
        return masks.sparsity_of(self.layers)

    def prune(self, sparsity: float) -> None:
        """Global magnitude pruning (`masks.global_magnitude_prune`)."""
        masks.global_magnitude_prune(self.layers, sparsity, normalized=self.config.prune_normalized)

    def snapshot(self, accuracy: float, meta: dict[str, Any]) -> StageResult:
        """`snapshot` of the model."""
        return snapshot(self.model, accuracy, meta)

    def restore(self, stage: StageResult) -> None:
        """`restore` into the model."""
        restore(self.model, stage)

    def plan(self, rate: float | None) -> tuple[dict[str, PackConfig], dict[str, str]]:
        """`fit.plan_rate` over the masked matrices, or the config's explicit option for every layer."""
        config = self.config
        matrices = layer_matrices(self.model)
        if rate is None:
            one = config.explicit_pack_config()
            return dict.fromkeys(matrices, one), dict.fromkeys(matrices, fit.Option(one, 0, 0.0).describe())
        chosen = fit.plan_rate(
            matrices,
            config.method,
            rate,
            tile=config.tile,
            seed=config.seed,
            plan_iterations=config.plan_iterations,
            quiet=self.quiet,
        )
        return (
            {name: option.config for name, option in chosen.items()},
            {name: option.describe() for name, option in chosen.items()},
        )

    def pack(self, configs: dict[str, PackConfig]) -> dict[str, PackedMatrix]:
        """`fit.fit_layers` over the masked matrices."""
        return fit.fit_layers(
            layer_matrices(self.model),
            configs,
            final_iterations=self.config.final_iterations,
            quiet=self.quiet,
        )

    def apply_kept(self, packed: dict[str, PackedMatrix]) -> None:
        """Each layer's mask becomes the nonzero positions of its packed GEMMs (all its groups together)."""
        kept = join_gemms(self.layers, {name: p.to_dense() != 0 for name, p in packed.items()})
        masks.apply_masks(
            self.layers,
            {name: torch.from_numpy(k).to(self.layers[name].weight.device) for name, k in kept.items()},
        )

    def repack(self, packed: dict[str, PackedMatrix]) -> dict[str, PackedMatrix]:
        """`fit.repack` of the current masked matrices."""
        now = layer_matrices(self.model)
        return {name: fit.repack(now[name], arrangement) for name, arrangement in packed.items()}

    def count_dropped(self, packed: PackedMatrix) -> int:
        """Nonzeros the repack dropped."""
        return int(packed.info.get("dropped_nnz", 0))

    def finish(self, packed: dict[str, PackedMatrix]) -> tuple[dict[str, PackedMatrix], list[dict[str, Any]]]:
        """Fold the masks (`prune.remove`); the packed layers are final, with their weights' sources."""
        masks.fold_masks(self.layers)
        record_sources(self.layers, packed)
        return packed, [p.report() for p in packed.values()]

    def simulate(
        self, packed: dict[str, PackedMatrix], vectors: dict[str, int]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """`hardware.simulate_model` on the reference array, 8-bit weights."""
        return simulate_model(packed, vectors, HW_ARRAY)

    def report_fields(self, packed: dict[str, PackedMatrix]) -> dict[str, Any]:
        """No fields beyond the common ones (the rate is the report's `total.compression_rate`)."""
        return {}

    def release(self) -> None:
        """Fold the masks."""
        masks.fold_masks(self.layers)
