"""`tightcompress frontier --json`: accuracy against compression rate, and the iso-accuracy rates."""

from __future__ import annotations

from typing import Any

from tightcompress.results.base import Result, field, optional


class DenseModels(Result):
    """The dense models (one per seed)."""

    accuracy_mean: float = field("% or metric", "mean top-1 accuracy (or --eval metric) over seeds")
    accuracy_std: float = optional("points or metric", "standard deviation over seeds")
    per_seed: dict[str, float] | list[float] = optional(
        "% or metric", "accuracy of each seed's dense model (by seed; a list in older files)"
    )


class FrontierPoint(Result):
    """One fitted and fine-tuned (or one-shot pruned) model."""

    method: str = field(
        "-", "tight, nm, column-combining, nm-permuted, tight-subword; one-shot also unstructured (the "
        "per-layer reference)"
    )
    target_rate: float = field("x", "--rates value asked for")
    seed: int = field("-", "seed")
    compression_rate: float = field("x", "measured compression rate")
    accuracy: float = field("% or metric", "top-1 test accuracy after fine-tuning, or the --eval metric")
    speedup: float | None = optional(
        "x", "dense cycles / packed cycles, 32x32 array, per input (null: not simulated, e.g. one-shot "
        "unstructured or subwords)"
    )
    energy_gain: float | None = optional("x", "dense energy / packed energy, same array")


class SummaryRow(Result):
    """One method at one target rate, over seeds."""

    method: str = field("-", "the method")
    target_rate: float = field("x", "--rates value asked for")
    seeds: list[int] = field("-", "the seeds measured")
    compression_rate_mean: float = field("x", "mean measured compression rate")
    accuracy_mean: float = field("% or metric", "mean accuracy")
    accuracy_std: float = field("points or metric", "standard deviation of the accuracy over seeds")
    accuracy_min: float = optional("% or metric", "lowest accuracy over seeds")
    accuracy_max: float = optional("% or metric", "highest accuracy over seeds")
    speedup_mean: float | None = optional("x", "mean speed-up over dense (null: not simulated)")
    energy_gain_mean: float | None = optional("x", "mean energy gain over dense (null: not simulated)")


class UnreachablePoint(Result):
    """A point whose method cannot reach the rate on this model."""

    method: str = field("-", "the method")
    target_rate: float = field("x", "--rates value asked for")
    seed: int = field("-", "seed")
    unreachable: str = field("-", "why the rate is out of the method's reach")


class IsoRatio(Result):
    """Tight over column combining, each at its own max_rate."""

    rate_tight_over_cc: float | None = optional(
        "x", "max_rate of tight / max_rate of column combining (null: either has none)"
    )
    throughput_tight_over_cc: float | None = optional(
        "x", "speed-up of tight / speed-up of column combining (null: not simulated)"
    )
    energy_tight_over_cc: float | None = optional(
        "x", "energy gain of tight / energy gain of column combining (null: not simulated)"
    )


class FrontierModel(Result):
    """Your model (absent for the demo)."""

    kind: str = field("-", "onnx or pytorch")
    path: str = optional("file", "the ONNX file (onnx)")
    class_: str = optional("-", "file.py:Class or module:Class (pytorch)", alias="class")
    model_args: dict[str, Any] = optional("-", "keyword arguments of the class (pytorch)")
    checkpoint: str = optional("file", "its state_dict (pytorch)")
    sha256: str = field("-", "SHA-256 of the ONNX file or the checkpoint")


class FrontierConfig(Result):
    """The grid and the model measured."""

    methods: list[str] = field("-", "methods measured")
    rates: list[float] = field("x", "target rates")
    seeds: list[int] = field("-", "seeds")
    mode: str = optional("-", "one-shot (pruned without training) or fine-tune (your model only)")
    metric: str = optional("-", "--eval module:function (or file.py:function), higher is better")
    calibration: str | None = optional("file", "one-shot calibration inputs, or null")
    allocation: str = optional(
        "-", "one-shot: how each point's rate was shared out between the layers (--allocation: planned, "
        "uniform)"
    )
    data: str | None = optional("folder", "fine-tune: --data ImageFolder root (null: digits)")
    widths: list[int] = optional("channels", "demo CNN conv widths (demo)")
    dense_epochs: float = optional("epochs", "demo dense training (demo)")
    compress: dict[str, Any] = optional("-", "the pipeline budget (demo, fine-tune)")
    array: str = optional("-", "array of the hardware figures (32x32)")
    model: FrontierModel = optional("-", "your model (absent for the demo)")


class FrontierReport(Result):
    """`tightcompress frontier --json`: accuracy against compression rate per method and seed, on the demo
    or on your model (`--onnx`, `--model` with `--eval`: then every accuracy is your metric, in its units),
    and the highest rate each method reaches at equal accuracy."""

    schema_name = "frontier"

    dense: DenseModels = field("-", "the dense models (one per seed)")
    points: list[FrontierPoint] = field("-", "one point per method, target rate and seed")
    iso_accuracy: dict[str, dict[str, float | None]] = optional(
        "x", "per allowed drop (`0.5`, `1.0` points): method -> highest rate whose mean accuracy is within"
        " that drop of the dense mean"
    )
    ratios: dict[str, IsoRatio | None] = optional(
        "x", "per allowed drop: tight over column combining at their iso-accuracy rates"
    )
    summary: list[SummaryRow] = optional("-", "per method and target rate: the means over seeds")
    unreachable: list[UnreachablePoint] = optional(
        "-", "the points whose method could not reach the rate on this model (no fine-tuning ran)"
    )
    config: FrontierConfig = optional("-", "the grid and the model measured")
    seconds: float = optional("s", "wall time of the frontier run")


class PointRecord(Result):
    """One finished point in the frontier's work folder (`--resume` reads it back; not a shipped output)."""

    point: FrontierPoint | UnreachablePoint = field("-", "the point, or why its rate is out of reach")
    dense_accuracy: float = field("% or metric", "the dense accuracy of the point's seed")
    key: str = field("-", "hash of everything the point depends on")
    seconds: float = optional("s", "wall time of the point")
    cpu_seconds: float = optional("s", "CPU time of the point")
