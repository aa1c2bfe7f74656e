"""The user's data checked against the user's model before any pruning: a wrong answer with exit 0 is the
worst outcome of a compression run, and a data/model mismatch produces exactly that (a `train/val` folder
read as two classes, a checkpoint of another model, transforms that differ from training).

- `check_outputs_match_classes`: one forward pass of a batch; the logits must be `(batch, n_classes)`.
- `check_above_chance`: the dense model's accuracy on the held-out split must be clearly above what
  guessing gives. "Clearly" is a one-sided binomial test: with `C` classes and `n` held-out examples,
  guessing scores `p0 = 1/C` with standard error `sqrt(p0 (1 - p0) / n)`; an accuracy at or below
  `p0 + CHANCE_SIGMAS` standard errors is "at chance". A held-out split too small for the test to tell a
  working model from guessing (that bound above halfway between chance and 100 %) is not judged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tightcompress.errors import TightCompressError

CHANCE_SIGMAS = 3.0  # standard errors above chance an accuracy must reach (one-sided, ~0.1 % false alarms)


def check_outputs_match_classes(model: nn.Module, data: Any) -> None:
    """A one-line error unless `model` runs on a batch of `data` and gives one logit per class.

    `data` is a `pipeline.data.TrainingData` (its `sample`, `n_classes` and `classes`). The batch is the
    first test images; the model is left in eval mode (the pipeline evaluates next).
    """
    from tightcompress.pipeline.models import user_failure

    try:
        sample = data.sample(2)  # --transforms failures are one line already (`data.CheckedTransform`)
    except TightCompressError:
        raise
    except (Exception, SystemExit) as exc:
        raise TightCompressError(f"cannot read the first test images: {user_failure(exc)}") from None
    try:
        with torch.no_grad():
            logits = model.eval()(sample.to(next(model.parameters()).device))
    except (Exception, SystemExit) as exc:  # the user's forward(), which may even call sys.exit()
        first = user_failure(exc)
        raise TightCompressError(
            f"the model cannot run on the data {tuple(sample.shape[1:])}: {first}"
        ) from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TightCompressError(
            f"the model gives outputs of shape {shape}; expected (batch, classes) logits for the data's "
            f"{data.n_classes} classes"
        )
    outputs = int(logits.shape[1])
    if outputs != data.n_classes:
        source = getattr(data, "source", "the data")
        raise TightCompressError(
            f"the model has {outputs} outputs but {source} has {data.n_classes} classes "
            f"({_class_list(data.classes)}); give the data the model was trained on (a train/val folder "
            "is read as ROOT/train/CLASS + ROOT/val/CLASS)"
        )


def chance_bound(n_classes: int, n_test: int, sigmas: float = CHANCE_SIGMAS) -> float:
    """The accuracy in percent that guessing among `n_classes` stays below with `sigmas` standard errors
    to spare on `n_test` examples: `100 (p0 + sigmas sqrt(p0 (1 - p0) / n_test))`, `p0 = 1 / n_classes`."""
    p0 = 1.0 / n_classes
    return 100.0 * (p0 + sigmas * math.sqrt(p0 * (1.0 - p0) / max(n_test, 1)))


def check_above_chance(accuracy: float, *, n_classes: int, n_test: int, source: str) -> bool:
    """A one-line error when the dense `accuracy` (percent) on `n_test` held-out examples is at chance.

    Returns False (not judged) when the split is too small to tell a working model from guessing, True
    when the accuracy is clearly above chance. See the module docstring for the test.
    """
    if n_classes < 2:
        return False
    bound = chance_bound(n_classes, n_test)
    chance = 100.0 / n_classes
    if bound > (chance + 100.0) / 2:
        return False
    if accuracy <= bound:
        raise TightCompressError(
            f"dense accuracy {accuracy:.2f}% on {n_test} held-out images of {source} is at chance level "
            f"({chance:.1f}% for {n_classes} classes; a working model scores above {bound:.1f}%): suspect "
            "the transforms (--transforms: size, normalisation, channels), the split (train/ and val/ "
            "folders) or the checkpoint (--checkpoint, --key); --allow-chance-accuracy runs anyway"
        )
    return True


def _class_list(classes: list[str], limit: int = 4) -> str:
    more = ", ..." if len(classes) > limit else ""
    return ", ".join(classes[:limit]) + more
