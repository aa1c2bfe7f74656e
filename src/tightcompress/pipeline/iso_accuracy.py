"""Equal-accuracy comparison of a frontier's points (pure NumPy, no torch: the report and plots read it).

Points are `{"method", "target_rate", "seed", "compression_rate", "accuracy", "speedup", "energy_gain"}`;
`accuracy` is the model's quality figure, higher is better (the demo's top-1, or the user's `--eval`
metric), and a hardware figure the model kind cannot simulate is None (so are its means and ratios).
Per (method, target rate) `summarize` takes the means over seeds; a method's iso-accuracy rate at `tol` is
the highest mean measured rate among its target rates whose mean accuracy is at least `dense_mean - tol`;
tight and column combining are then compared each at its own iso-accuracy point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

POINT_FIELDS = ("method", "target_rate", "seed", "compression_rate", "accuracy", "speedup", "energy_gain")
TOLERANCES: tuple[float, ...] = (0.5, 1.0)  # accuracy points below the dense mean for `iso_accuracy`
RATIO_FIELDS = ("rate_tight_over_cc", "throughput_tight_over_cc", "energy_tight_over_cc")
_EPS = 1e-9  # accuracies are means of multiples of 0.1: compare with a margin against float error


def tolerance_label(tolerance: float) -> str:
    """The JSON key of a tolerance: `0.5`, `1.0`, `0.25`."""
    return f"{tolerance:.1f}" if round(tolerance, 1) == tolerance else f"{tolerance:g}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean, or None when any value is unknown (a hardware figure a model kind cannot simulate)."""
    return None if any(v is None for v in values) else float(np.mean(values))


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else numerator / denominator


def summarize(
    points: Sequence[Mapping[str, Any]],
    dense_mean: float,
    tolerances: Sequence[float] = TOLERANCES,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float | None]], dict[str, dict[str, float | None]]]:
    """Per (method, target rate) means over seeds; the iso-accuracy rate of every method; tight / CC ratios.

    A method's iso-accuracy rate at `tol` is the highest mean measured rate among its target rates whose
    mean accuracy is at least `dense_mean - tol` (None when none is). The ratios take tight and column
    combining each at that point: rate, mean speedup and mean energy gain over dense (None if either lacks).
    """
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for point in points:
        groups.setdefault((point["method"], float(point["target_rate"])), []).append(point)
    summary = []
    for (method, rate), group in groups.items():
        accuracy_mean, accuracy_std = mean_std([p["accuracy"] for p in group])
        summary.append(
            {
                "method": method,
                "target_rate": rate,
                "seeds": sorted(int(p["seed"]) for p in group),
                "compression_rate_mean": float(np.mean([p["compression_rate"] for p in group])),
                "accuracy_mean": accuracy_mean,
                "accuracy_std": accuracy_std,
                "accuracy_min": float(min(p["accuracy"] for p in group)),
                "accuracy_max": float(max(p["accuracy"] for p in group)),
                "speedup_mean": _mean_or_none([p["speedup"] for p in group]),
                "energy_gain_mean": _mean_or_none([p["energy_gain"] for p in group]),
            }
        )
    methods = list(dict.fromkeys(row["method"] for row in summary))
    iso_accuracy: dict[str, dict[str, float | None]] = {}
    ratios: dict[str, dict[str, float | None]] = {}
    for tolerance in tolerances:
        best: dict[str, dict[str, Any] | None] = {}
        for method in methods:
            within = [
                row
                for row in summary
                if row["method"] == method and row["accuracy_mean"] >= dense_mean - tolerance - _EPS
            ]
            best[method] = max(within, key=lambda row: row["compression_rate_mean"], default=None)
        label = tolerance_label(tolerance)
        iso_accuracy[label] = {
            m: (None if b is None else b["compression_rate_mean"]) for m, b in best.items()
        }
        tight, cc = best.get("tight"), best.get("column-combining")
        if tight is None or cc is None:
            ratios[label] = dict.fromkeys(RATIO_FIELDS)
        else:
            ratios[label] = {
                "rate_tight_over_cc": tight["compression_rate_mean"] / cc["compression_rate_mean"],
                "throughput_tight_over_cc": _ratio(tight["speedup_mean"], cc["speedup_mean"]),
                "energy_tight_over_cc": _ratio(tight["energy_gain_mean"], cc["energy_gain_mean"]),
            }
    return summary, iso_accuracy, ratios
