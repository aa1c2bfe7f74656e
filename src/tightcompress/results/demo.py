"""`tightcompress demo --json`: one row per method, tight against column combining."""

from __future__ import annotations

from tightcompress.results.base import Result, field, optional


class DemoRow(Result):
    """One method."""

    method: str = field("-", "dense (the reference row), tight, column-combining, nm or tight-subword")
    compression_rate: float = field("x", "measured compression rate over all conv+linear layers")
    accuracy: float = field("%", "top-1 test accuracy after packing and fine-tuning")
    accuracy_drop: float = field("percentage points", "dense accuracy - accuracy")
    bit_rate: float = optional("x", "weight bits saved: 8-bit dense bits / packed value bits")
    bit_rate_with_index: float = optional("x", "tight-subword row: dense bits / packed bits with index bits")
    speedup: float = optional("x", "dense cycles / packed cycles on the reference array, per image")
    energy_gain: float = optional("x", "dense energy / packed energy on the reference array, per image")


class TightVsCcLayer(Result):
    """One layer."""

    name: str = optional("-", "module path")
    K: int = optional("rows", "reduction size")
    N: int = optional("columns", "output channels")
    m: int = optional("vectors", "input vectors per image (output pixels)")
    tight_rate: float = optional("x", "tight's compression rate")
    cc_rate: float = optional("x", "column combining's compression rate")
    throughput_gain: float = optional("x", "column-combining cycles / tight cycles")
    energy_gain: float = optional("x", "column-combining energy / tight energy")


class TightVsCcTotal(Result):
    """Whole model."""

    throughput_gain: float = optional("x", "column-combining cycles / tight cycles")
    energy_gain: float = optional("x", "column-combining energy / tight energy")


class TightVsColumnCombining(Result):
    """Tight over column combining on the reference array."""

    array: str = optional("PEs", "array rows x columns")
    layers: list[TightVsCcLayer] = optional("-", "per layer")
    total: TightVsCcTotal = optional("-", "whole model")


class UnstructuredStage(Result):
    """The shared unstructured-pruning stage."""

    accuracy: float = optional("%", "top-1 accuracy after unstructured pruning")
    sparsity: float | None = optional("fraction 0-1", "its sparsity")


class DemoReport(Result):
    """`tightcompress demo --json`: one row per method, tight against column combining."""

    schema_name = "demo"

    rows: list[DemoRow] = field("-", "one row per method, in the order run")
    tight_vs_column_combining: TightVsColumnCombining | None = optional(
        "-", "tight over column combining on the reference array (null unless both ran)"
    )
    unstructured: UnstructuredStage = optional("-", "the shared unstructured-pruning stage")
    seconds: float = optional("s", "wall time of the demo")
