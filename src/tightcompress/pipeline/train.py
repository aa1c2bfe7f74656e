"""Training, fine-tuning and evaluation loops (Adam, cosine learning rate, tqdm progress on stderr)."""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


def frozen_copy(model: nn.Module) -> nn.Module:
    """A detached, eval-mode copy of `model` (the distillation teacher), unaffected by later pruning."""
    import copy

    teacher = copy.deepcopy(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def seed_everything(seed: int) -> None:
    """Seed torch and NumPy's legacy generator."""
    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (third-party code may use the legacy generator)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return 100.0 * correct / max(len(x), 1)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: float,
    lr: float = 3e-3,
    batch_size: int = 128,
    seed: int = 0,
    weight_decay: float = 0.0,
    desc: str = "train",
    quiet: bool = False,
    teacher: nn.Module | None = None,
    distill: float = 0.0,
    temperature: float = 4.0,
) -> float:
    """Train with Adam and a cosine learning rate for `epochs` (may be fractional); returns the last loss.

    Pruning masks from `torch.nn.utils.prune` stay applied (their forward hooks mask every step). With a
    `teacher`, the loss mixes in knowledge distillation (Hinton et al., 2015): `(1 - distill) * CE +
    distill * T^2 * KL(teacher || student)` on logits softened by temperature `T`.
    """
    if teacher is not None:
        teacher.eval()
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, math.ceil(len(x) / batch_size))
    total = max(1, round(epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    model.train()
    loss_value = float("nan")
    order = torch.randperm(len(x), generator=generator)
    cursor = 0
    with tqdm(total=total, desc=desc, unit="step", disable=quiet, file=sys.stderr, leave=False) as bar:
        for _ in range(total):
            if cursor >= len(x):
                order = torch.randperm(len(x), generator=generator)
                cursor = 0
            index = order[cursor : cursor + batch_size]
            cursor += batch_size
            optimizer.zero_grad(set_to_none=True)
            logits = model(x[index])
            loss = F.cross_entropy(logits, y[index])
            if teacher is not None and distill > 0:
                with torch.no_grad():
                    target = F.softmax(teacher(x[index]) / temperature, dim=1)
                soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), target, reduction="batchmean")
                loss = (1 - distill) * loss + distill * temperature**2 * soft
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
            bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
            bar.update()
    model.eval()
    return loss_value
