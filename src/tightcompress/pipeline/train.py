"""Training, fine-tuning and evaluation loops (Adam, cosine learning rate, tqdm progress on stderr).

Inside a process group (`torchrun`, `pipeline.distributed`) training runs DistributedDataParallel over
the ranks' shards of each batch, and evaluation sums the ranks' shares of the test split.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tightcompress.pipeline import distributed
from tightcompress.pipeline.data import TrainingData


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


def pick_device(name: str = "auto") -> torch.device:
    """`auto` (CUDA when present, else CPU), `cpu` or `cuda` (a one-line error when CUDA is absent)."""
    from tightcompress.errors import TightCompressError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TightCompressError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise TightCompressError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, data: TrainingData, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent on the test split, on the model's device (the same on every rank)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    correct = total = 0
    for x, y in data.test_batches(batch_size, distributed.rank(), distributed.world_size()):
        logits = model(x.to(device))
        correct += int((logits.argmax(dim=1) == y.to(device)).sum())
        total += len(y)
    model.train(was_training)
    correct, total = distributed.all_sum(correct, total)
    return 100.0 * correct / max(total, 1)


def train(
    model: nn.Module,
    data: TrainingData,
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

    Batches come from `data.train_batches(batch_size, seed)` and go to the model's device; inside a
    process group each rank trains on its shard of `batch_size` examples under DistributedDataParallel, so
    an optimizer step sees `batch_size * world_size` examples and an epoch has fewer steps. Pruning masks
    from `torch.nn.utils.prune` stay applied (their forward hooks mask every step). With a `teacher`, the
    loss mixes in knowledge distillation (Hinton et al., 2015): `(1 - distill) * CE + distill * T^2 *
    KL(teacher || student)` on logits softened by temperature `T`.
    """
    if teacher is not None:
        teacher.eval()
    device = model_device(model)
    world_size = distributed.world_size()
    total = max(1, round(epochs * data.steps_per_epoch(batch_size * world_size)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    model.train()
    loss_value = float("nan")
    batches = data.train_batches(batch_size, seed, distributed.rank(), world_size)
    quiet = quiet or not distributed.is_main()
    with (
        distributed.data_parallel(model) as trained,
        tqdm(total=total, desc=desc, unit="step", disable=quiet, file=sys.stderr, leave=False) as bar,
    ):
        for _ in range(total):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            logits = trained(x)
            loss = F.cross_entropy(logits, y)
            if teacher is not None and distill > 0:
                with torch.no_grad():
                    target = F.softmax(teacher(x) / temperature, dim=1)
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
