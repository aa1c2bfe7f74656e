"""Compression inside the user's own training loop, in the style of NVIDIA ASP's calls around a loop:

    tightcompress.prepare_(model, rate=16, granularity="word", total_steps=N)  # masks + pruning schedule
    ... the user's loop trains; every training-mode forward counts one step, and the gradual pruning
        rounds happen on schedule (cubic sparsity ramp, the last round at (rounds-1)/rounds of N) ...
    packed = tightcompress.fit_(model)  # format-aware fit at the rate + prune to fit: {GEMM: PackedMatrix}
    ... the user's loop fine-tunes; the masks stay enforced (forward pre-hooks of torch.nn.utils.prune for
        words, the quantization parametrization for subwords), whatever the optimizer ...
    tightcompress.sparsify_(model)  # word level: packed modules in fit_'s arrangement, masks folded

The steps are the pipeline's (`pipeline.compress`): the same `stages.Granularity` objects prune, plan,
pack and apply the kept positions, so results follow the same rules as `tightcompress compress`.
Under DistributedDataParallel (`torch.distributed` initialised before `prepare_`) the rules of
`pipeline.distributed` hold: each pruning round's masks and `fit_`'s search (on rank 0) reach every rank.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.nn.api import FITTED_SESSION
from tightcompress.pipeline import distributed, masks
from tightcompress.pipeline.compress import granularity_for
from tightcompress.pipeline.config import CompressConfig
from tightcompress.pipeline.stages import Granularity


@dataclass
class Session:
    """What `prepare_` puts on a model: its granularity, config, pruning schedule and step count."""

    level: Granularity
    config: CompressConfig
    schedule: list[float]
    boundaries: list[int]
    steps: int = 0
    next_round: int = 0
    hook: Any = None
    packed: dict[str, Any] = field(default_factory=dict)

    def on_forward(self, module: nn.Module, _inputs: Any) -> None:
        """Count a training step; run the pruning round that is due (before this step's forward)."""
        if not module.training or not torch.is_grad_enabled():
            return
        while self.next_round < len(self.schedule) and self.steps >= self.boundaries[self.next_round]:
            self.level.prune(self.schedule[self.next_round])
            self.next_round += 1
        self.steps += 1

    def final_packed(self) -> tuple[dict[str, PackedMatrix], dict[str, Any]]:
        """Repack the fine-tuned weights in `fit_`'s arrangement, fold the masks, end the session.

        What `tightcompress.sparsify_` packs a fitted model with: `{layer: PackedMatrix}` and the report's
        config. Word granularity only (the packed modules hold one weight per slot).
        """
        if not self.packed:
            raise TightCompressError("call tightcompress.fit_(model) before sparsify_")
        if self.level.name != "word":
            raise TightCompressError(
                f"sparsify_ builds word-level packed modules; a {self.level.name} fit's packed layers are "
                "the ones fit_ returned"
            )
        distributed.broadcast_module(self.level.model)  # rank 0's batch-norm statistics everywhere
        packed = self.level.repack(self.packed)
        dropped = sum(self.level.count_dropped(p) for p in packed.values())
        if dropped:
            raise TightCompressError(f"{dropped} weight(s) moved outside fit_'s arrangement")
        packed, _ = self.level.finish(packed)
        self.hook.remove()
        delattr(self.level.model, FITTED_SESSION)
        return packed, {**asdict(self.config), "workflow": "prepare_/fit_/sparsify_"}


def prepare_(
    model: nn.Module,
    *,
    rate: float = 16.0,
    granularity: str = "word",
    method: str = "tight",
    total_steps: int,
    rounds: int = 4,
    sparsity: float | None = None,
    tile: int = 32,
    seed: int = 0,
) -> nn.Module:
    """Put masks and a gradual pruning schedule over `total_steps` training steps on `model` (in place).

    Step-1 target: `sparsity` (default `1 - 1/rate`) of weights (`word`) or subwords (`subword`), reached
    in `rounds` rounds. Returns the model.
    """
    if not isinstance(total_steps, int) or total_steps < 1:
        raise TightCompressError(f"total_steps must be a positive integer, got {total_steps!r}")
    if hasattr(model, FITTED_SESSION):
        raise TightCompressError("prepare_ was already called on this model")
    config = CompressConfig(
        method=method,
        rate=rate,
        granularity=granularity,
        tile=tile,
        sparsity=sparsity,
        prune_rounds=rounds,
        seed=seed,
    )
    level = granularity_for(model, config, quiet=True)
    level.check_rate()
    level.prepare(None)
    if granularity == "word":  # masks from the start, so the optimizer sees the parameters it will keep
        layers = level.layers  # type: ignore[attr-defined]
        masks.apply_masks(
            layers, masks.current_masks({n: m for n, m in layers.items() if not hasattr(m, "weight_mask")})
        )
    initial = level.sparsity()
    target = max(config.target_sparsity(), initial)
    session = Session(
        level,
        config,
        masks.cubic_schedule(target, rounds, initial),
        [index * total_steps // rounds for index in range(rounds)],
    )
    session.hook = model.register_forward_pre_hook(session.on_forward)
    setattr(model, FITTED_SESSION, session)
    return model


def fit_(model: nn.Module) -> dict[str, PackedMatrix]:
    """The format-aware fit of a prepared model at its rate: plan, pack, make the kept positions the masks.

    Runs the pruning rounds the schedule has not reached yet. Returns each GEMM's packed matrix (the
    `2K x N` subword matrix at subword granularity; `name[g]` per group of a grouped conv, as `pack` names
    them); fine-tune afterwards with the masks fixed.
    """
    session: Session | None = getattr(model, FITTED_SESSION, None)
    if session is None:
        raise TightCompressError("call tightcompress.prepare_(model, ...) before fit_")
    distributed.broadcast_module(model)  # rank 0's batch-norm statistics everywhere, as DDP's forward does
    while session.next_round < len(session.schedule):
        session.level.prune(session.schedule[session.next_round])
        session.next_round += 1
    configs, _ = session.level.plan(session.config.rate)
    packed = session.level.pack(configs)
    session.level.apply_kept(packed)
    session.packed = packed
    distributed.check_in_step(model, "fit_")
    return {name: getattr(p, "packed", p) for name, p in packed.items()}
