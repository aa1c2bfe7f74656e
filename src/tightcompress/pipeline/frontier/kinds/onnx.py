"""An ONNX file as a frontier model kind (`tightcompress frontier --onnx M.onnx --eval module:function`):
each point prunes the file one-shot (`pipeline.oneshot.prune_onnx`, calibrated with `--calibration`, an
`.npz` of the model's inputs keyed by input name; the rate shared out between the layers by `--allocation`)
into a temporary ONNX file, which the user's metric scores by its path."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from tightcompress.pipeline.frontier.kinds.metric import Metric
from tightcompress.pipeline.frontier.kinds.oneshot import (
    OneShotKind,
    check_allocation,
    existing_file,
    file_sha256,
)


@dataclass(frozen=True)
class OnnxKind(OneShotKind):
    """The ONNX file at `path`, scored by `metric` on each pruned copy's path; `allocation` is
    `prune_onnx`'s (`pipeline.oneshot.ALLOCATIONS`)."""

    path: Path
    metric: Metric
    calibration: Path | None = None
    allocation: str = "planned"

    name: ClassVar[str] = "onnx"

    def __post_init__(self) -> None:
        check_allocation(self.allocation)
        object.__setattr__(self, "path", existing_file(self.path, "ONNX model"))
        if self.calibration is not None:
            object.__setattr__(self, "calibration", existing_file(self.calibration, "--calibration"))

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)

    def model_settings(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256}

    def score_dense(self) -> float:
        return self.metric(str(self.path), f"the dense model {self.path.name}")

    def prune_and_score(self, method: str, rate: float, seed: int) -> tuple[Any, float, Any]:
        from tightcompress.pipeline.calibration import read_calibration_npz
        from tightcompress.pipeline.frontier.hardware import onnx_vectors, onnx_zero_sample
        from tightcompress.pipeline.oneshot import prune_onnx_packed

        calibration = None if self.calibration is None else read_calibration_npz(str(self.calibration))
        with tempfile.TemporaryDirectory(prefix="tightcompress-frontier-") as tmp:
            out = Path(tmp) / f"{self.path.stem}-{method}-{rate:g}x.onnx"
            result = prune_onnx_packed(
                self.path,
                out,
                method=method,
                rate=rate,
                calibration=calibration,
                seed=seed,
                allocation=self.allocation,
            )
            score = self.metric(str(out), f"{method} at {rate:g}x")
        vectors = None
        if result.packed:
            if calibration is not None:
                sample = {name: array[:1] for name, array in calibration.items()}
            else:
                sample = onnx_zero_sample(self.path)
            vectors = None if sample is None else onnx_vectors(self.path, sample)
        return result, score, vectors
