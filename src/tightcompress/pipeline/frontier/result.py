"""The F.json payload of a finished frontier: the dense figures over seeds, every point, and the
equal-accuracy summary, whose arithmetic lives in `pipeline.iso_accuracy` (torch-free, shared with the
report and the plot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tightcompress.pipeline.frontier.grid import FrontierConfig
from tightcompress.pipeline.iso_accuracy import mean_std, summarize


def build_frontier(
    config: FrontierConfig, points: Sequence[dict[str, Any]], dense_by_seed: Mapping[int, float]
) -> dict[str, Any]:
    """The F.json payload: dense accuracy over seeds, every point, the summary, iso-accuracy rates, ratios."""
    per_seed = {str(seed): float(dense_by_seed[seed]) for seed in config.seeds}
    dense_mean, dense_std = mean_std(list(per_seed.values()))
    summary, iso_accuracy, ratios = summarize(points, dense_mean, config.tolerances)
    return {
        "dense": {"accuracy_mean": dense_mean, "accuracy_std": dense_std, "per_seed": per_seed},
        "points": list(points),
        "iso_accuracy": iso_accuracy,
        "ratios": ratios,
        "summary": summary,
        "config": {
            "methods": list(config.methods),
            "rates": list(config.rates),
            "seeds": list(config.seeds),
            **config.model.describe(),
        },
    }
