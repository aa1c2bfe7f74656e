"""The user's own metric (`--eval module:function` or `--eval path/file.py:function`): called with what
was measured (the pruned ONNX file's path, or the PyTorch model), it returns one number, higher is better.

It is resolved from the current directory like `--model` (`pipeline.models.load_object`), made absolute so
that worker processes started elsewhere find the same file. Every problem is one line naming the metric: a
module or function that is missing, a function that raises, a return value that is not a finite number.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.models import load_object


def metric_spec(spec: str) -> str:
    """`spec` checked for its form, a file path made absolute (`file.py:function`)."""
    module, sep, function = spec.partition(":")
    if not sep or not module or not function:
        raise TightCompressError(f"--eval must be module:function or file.py:function, got {spec!r}")
    if module.endswith(".py"):
        return f"{Path(module).resolve()}:{function}"
    return spec


@dataclass(frozen=True)
class Metric:
    """`--eval`: the function that scores a model, by its spec (picklable; loaded where it is called)."""

    spec: str

    def load(self) -> Callable[[Any], Any]:
        """The function itself (one line when its module or name is missing or it is not callable)."""
        function = load_object(self.spec, "--eval")
        if not callable(function):
            raise TightCompressError(f"--eval {self.spec}: {type(function).__name__} is not callable")
        return function

    def fingerprint(self) -> str:
        """The spec, and the SHA-256 of its file when given as `file.py:function` (hashed into the
        frontier's file names: a changed metric is measured again)."""
        module = self.spec.partition(":")[0]
        if module.endswith(".py") and Path(module).is_file():
            return f"{self.spec}#{hashlib.sha256(Path(module).read_bytes()).hexdigest()}"
        return self.spec

    def __call__(self, target: Any, what: str) -> float:
        """Score `target` (`what` names it in errors): a finite number, or one line saying why not."""
        function = self.load()
        try:
            value = function(target)
        except TightCompressError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise TightCompressError(
                f"--eval {self.spec} failed on {what}: {type(exc).__name__}: {first}".rstrip(": ")
            ) from None
        return as_score(value, f"--eval {self.spec} on {what}")


def as_score(value: Any, where: str) -> float:
    """`value` as a float when it is one finite real number (a Python or NumPy number, a one-element
    array or tensor); a one-line error else."""
    if isinstance(value, np.ndarray | np.generic) and np.size(value) == 1:
        value = value.item()
    elif isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TightCompressError(f"{where} returned {type(value).__name__}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise TightCompressError(f"{where} returned {number}, not a finite number")
    return number
