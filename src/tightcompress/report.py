"""Per-layer figures -> the JSON report (`{"layers": [...], "total": {...}}`) every command writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tightcompress import __version__
from tightcompress.format.packed import PackedMatrix

REPORT_VERSION = 1


def layer_report(packed: PackedMatrix) -> dict[str, Any]:
    """The report fields of one packed layer."""
    return packed.report()


def total_report(layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum slots and nonzeros over layers; rates are taken over the sums (weighted by layer size)."""
    layers = list(layers)
    dense_slots = sum(layer["K"] * layer["N"] for layer in layers)
    slots = sum(layer["packed_slots"] for layer in layers)
    nnz = sum(layer["nnz"] for layer in layers)
    kept = sum(layer["kept_nnz"] for layer in layers)
    magnitude = sum(layer.get("input_magnitude", 0.0) for layer in layers)
    dropped_magnitude = sum(
        layer.get("input_magnitude", 0.0) * layer["dropped_magnitude_fraction"] for layer in layers
    )
    bound = sum(layer["lower_bound_slots"] for layer in layers)
    index_bits = sum(layer["packed_slots"] * layer["index_bits"] for layer in layers)
    return {
        "layers": len(layers),
        "dense_slots": dense_slots,
        "packed_slots": slots,
        "nnz": nnz,
        "kept_nnz": kept,
        "dropped_nnz": nnz - kept,
        "compression_rate": dense_slots / slots if slots else 0.0,
        "utilization": kept / slots if slots else 0.0,
        "storage_rate_bits": 8 * dense_slots / (8 * slots + index_bits) if slots else 0.0,
        "dropped_magnitude_fraction": dropped_magnitude / magnitude if magnitude else 0.0,
        "lower_bound_slots": bound,
        "seconds": sum(layer["seconds"] for layer in layers),
    }


def build_report(layers: list[dict[str, Any]], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report, stamped with the report version so readers can refuse other versions."""
    return {
        "tightcompress_version": __version__,
        "report_version": REPORT_VERSION,
        "config": dict(config or {}),
        "layers": layers,
        "total": total_report(layers),
    }


def unimproved_search_note(layers: Iterable[dict[str, Any]]) -> str | None:
    """One line naming the layers where the annealer ran but did not improve on its greedy start (their
    packing is the greedy arrangement), or None."""
    names = [
        layer["name"]
        for layer in layers
        if layer.get("search_iterations", 0) > 0 and layer.get("search_improved") is False
    ]
    if not names:
        return None
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return (
        f"the annealer did not improve on its greedy start on {len(names)} layer(s): {shown} "
        "(at its floor already, or give more --iterations)"
    )
