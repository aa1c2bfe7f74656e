"""What the one-shot kinds share (an outside model pruned without training, `pipeline.oneshot`): the
methods, the stages (only the dense score: the model itself is read again by every point) and the driver
of one point: prune one-shot at the rate, score with the user's metric, simulate the packed layers.

`allocation` (`pipeline.oneshot.ALLOCATIONS`) is how each point's rate is shared out between the layers: it
is part of a point's settings (a `planned` point keeps the settings, and so the file, it had before the
option existed), not of the dense score's.

A seed changes only the pruning's own randomness (the permutation search); the dense score is the same
for every seed and is kept once per work folder (`dense-HASH.json`).
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.config import ONESHOT_METHODS
from tightcompress.pipeline.frontier.kinds.base import ModelKind
from tightcompress.pipeline.frontier.kinds.metric import Metric
from tightcompress.utils.atomic import write_json_atomic

FORMAT = "frontier-oneshot-1"  # bump when a one-shot point's meaning changes


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (hashed into the point files' names: a changed model is measured again)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_allocation(allocation: str) -> None:
    """One line unless `allocation` is one of `pipeline.oneshot.ALLOCATIONS`."""
    from tightcompress.pipeline.oneshot import ALLOCATIONS

    if allocation not in ALLOCATIONS:
        raise TightCompressError(f"unknown allocation {allocation!r}; choose one of {', '.join(ALLOCATIONS)}")


def existing_file(path: str | Path, what: str) -> Path:
    """`path` made absolute, or one line when it is not a file."""
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise TightCompressError(f"{what} not found: {path}")
    return resolved


@dataclass
class DenseScore:
    """A one-shot seed's stages: the dense model's score with the user's metric."""

    seed: int
    dense: float
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def dense_accuracy(self) -> float:
        return self.dense

    def for_point(self, method: str, rate: float) -> DenseScore:
        return DenseScore(self.seed, self.dense)

    def payload(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "dense": self.dense,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        }


class OneShotKind(ModelKind):
    """An outside model pruned one-shot (optionally calibrated) and scored by the user's metric."""

    methods: ClassVar[tuple[str, ...]] = ONESHOT_METHODS
    metric: Metric
    calibration: Path | None
    allocation: str

    @abstractmethod
    def model_settings(self) -> dict[str, Any]:
        """What identifies the model (its files' SHA-256, its class and arguments)."""

    @abstractmethod
    def score_dense(self) -> float:
        """The user's metric on the dense model."""

    @abstractmethod
    def prune_and_score(self, method: str, rate: float, seed: int) -> tuple[Any, float, Any]:
        """Prune a fresh copy one-shot: `(pipeline.oneshot.OneShotResult, score, vectors per packed
        layer or None)`."""

    def _common(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.name,
            **self.model_settings(),
            "metric": self.metric.fingerprint(),
            "calibration": None if self.calibration is None else file_sha256(self.calibration),
        }

    def seed_settings(self, seed: int, methods: Sequence[str], rates: Sequence[float]) -> dict[str, Any]:
        return {**self._common(), "seed": seed}

    def point_settings(
        self, seed: int, method: str, rate: float, methods: Sequence[str], rates: Sequence[float]
    ) -> dict[str, Any]:
        settings = {**self._common(), "seed": seed, "method": method, "rate": rate}
        if self.allocation != "planned":  # planned points keep the files they had before the option
            settings["allocation"] = self.allocation
        return settings

    def check(self, methods: Sequence[str], rates: Sequence[float]) -> None:
        """Load the metric once here, so that a missing module or function fails before any work."""
        self.metric.load()

    def prepare(
        self, seed: int, methods: Sequence[str], rates: Sequence[float], stage_dir: Path, resume: bool
    ) -> DenseScore:
        key = hashlib.sha1(json.dumps(self._common(), sort_keys=True).encode()).hexdigest()[:12]
        cache = stage_dir / f"dense-{key}.json"
        if cache.is_file():
            try:
                return DenseScore(seed, float(json.loads(cache.read_text())["dense"]))
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                pass  # unreadable: scored again
        dense = self.score_dense()
        write_json_atomic(cache, {"dense": dense})
        return DenseScore(seed, dense)

    def measure(self, stages: DenseScore, method: str, rate: float) -> dict[str, float | None]:
        from tightcompress.pipeline.frontier.hardware import packed_gains

        result, score, vectors = self.prune_and_score(method, rate, stages.seed)
        return {
            "compression_rate": float(result.report["compression_rate"]),
            "accuracy": score,
            **packed_gains(method, result.packed, vectors),
        }

    def stages_from(self, payload: dict[str, Any]) -> DenseScore:
        return DenseScore(int(payload["seed"]), float(payload["dense"]))

    def describe(self) -> dict[str, Any]:
        return {
            "model": {"kind": self.name, **self.model_settings()},
            "mode": "one-shot",
            "metric": self.metric.spec,
            "calibration": None if self.calibration is None else str(self.calibration),
            "allocation": self.allocation,
            "array": "32x32",
        }
