"""The model a frontier measures, behind one small interface (`ModelKind`), and what one seed starts from.

The frontier's driver (`pipeline.frontier`) knows nothing of the model: it asks its kind to check the grid,
to make each seed's starting point (`prepare`), and to measure one point (`measure`). The kinds are the
embedded demo (`kinds.demo`), an ONNX file (`kinds.onnx`) and a PyTorch model pruned one-shot
(`kinds.pytorch`) or fine-tuned (`kinds.finetune`); adding one is one more subclass (and the command-line
flags that build it), nothing else.

A point's measure is `{"compression_rate", "accuracy", "speedup", "energy_gain"}`; `accuracy` is the kind's
quality figure (higher is better: the demo's top-1, or the user's metric), `speedup` and `energy_gain` the
packed model's gains over dense on the reference array (None when the kind cannot simulate the model).
A point whose rate no option of its method reaches raises `TightCompressError` with "cannot be reached"
(as `fit.check_rate` says it): the driver records it as unreachable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol


class Stages(Protocol):
    """What every point of one seed starts from, made once per seed by `ModelKind.prepare` and kept in the
    work folder (`payload`, read back by `ModelKind.stages_from`) so that `--resume` reuses it."""

    seed: int
    seconds: float  # wall and CPU time it took to make them (0 when loaded)
    cpu_seconds: float

    @property
    def dense_accuracy(self) -> float:
        """The dense model's quality figure on this seed."""
        ...

    def for_point(self, method: str, rate: float) -> Stages:
        """Only what one point reads (sent to the worker that runs it)."""
        ...

    def payload(self) -> dict[str, Any]:
        """Everything to save, as tensors and plain values (`torch.save` with `weights_only` loading)."""
        ...


class ModelKind(ABC):
    """One kind of model the frontier can measure. Instances are frozen dataclasses: they are pickled to
    worker processes and Ray tasks, and their settings are hashed into the names of the point files."""

    name: ClassVar[str]  # `demo`, `onnx`, `pytorch`: the JSON's `config.model.kind`
    methods: ClassVar[tuple[str, ...]]  # the methods it can measure, in the default order

    @abstractmethod
    def check(self, methods: Sequence[str], rates: Sequence[float]) -> None:
        """Fail (one line) before any work when a (method, rate) cannot be reached on this model."""

    @abstractmethod
    def seed_settings(self, seed: int, methods: Sequence[str], rates: Sequence[float]) -> dict[str, Any]:
        """Everything a seed's stages depend on (hashed into their file name)."""

    @abstractmethod
    def point_settings(
        self, seed: int, method: str, rate: float, methods: Sequence[str], rates: Sequence[float]
    ) -> dict[str, Any]:
        """Everything one point depends on (hashed into its file name)."""

    @abstractmethod
    def prepare(
        self, seed: int, methods: Sequence[str], rates: Sequence[float], stage_dir: Path, resume: bool
    ) -> Stages:
        """Make what every point of `seed` starts from. `stage_dir` holds intermediate files of this work
        (a temporary folder on a Ray worker), continued with `resume`."""

    @abstractmethod
    def measure(self, stages: Stages, method: str, rate: float) -> dict[str, float | None]:
        """Compress with `method` at `rate` from `stages` and measure: the point's four figures."""

    @abstractmethod
    def stages_from(self, payload: dict[str, Any]) -> Stages:
        """The stages `Stages.payload` saved."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The kind's part of the JSON's `config` (after `methods`, `rates`, `seeds`)."""
