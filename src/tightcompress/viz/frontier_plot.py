"""The frontier figure: mean accuracy against mean measured rate, one line per method, the band spanning
the seeds' lowest to highest accuracy, the dense mean and the iso-accuracy tolerances as horizontal lines.

Input: the `tightcompress frontier` JSON (`{"dense", "points", ...}`); the means are recomputed from the
points (`pipeline.iso_accuracy.summarize`), so a hand-edited summary cannot disagree with the figure. A
frontier of the user's model (`config.metric`) plots that metric, in its own units.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.iso_accuracy import POINT_FIELDS, summarize
from tightcompress.utils.atomic import atomic_path


def is_frontier(data: Mapping[str, Any]) -> bool:
    """Whether a loaded JSON is a frontier result."""
    return isinstance(data.get("points"), list) and isinstance(data.get("dense"), dict)


def check_frontier(data: Mapping[str, Any], source: str = "frontier JSON") -> None:
    """One-line error when a frontier JSON lacks what the figure needs."""
    if not is_frontier(data) or "accuracy_mean" not in data["dense"]:
        raise TightCompressError(f"{source}: not a tightcompress frontier result ('dense', 'points')")
    for index, point in enumerate(data["points"]):
        missing = [name for name in POINT_FIELDS if name not in point]
        if missing:
            raise TightCompressError(f"{source}: point {index} lacks {', '.join(missing)}")


def frontier_figure(data: Mapping[str, Any]):
    """A matplotlib figure of the frontier (log-scaled rate axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_frontier(data)
    dense = float(data["dense"]["accuracy_mean"])
    config = data.get("config")
    metric = config.get("metric") if isinstance(config, Mapping) else None
    unit, drop = ("", "") if metric else ("%", " pp")
    tolerances = _tolerances(data)
    summary, _, _ = summarize(data["points"], dense)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(row["method"] for row in summary):
        rows = sorted((r for r in summary if r["method"] == method), key=lambda r: r["compression_rate_mean"])
        x = [r["compression_rate_mean"] for r in rows]
        (line,) = ax.plot(x, [r["accuracy_mean"] for r in rows], marker="o", label=method)
        if any(len(r["seeds"]) > 1 for r in rows):
            low, high = [r["accuracy_min"] for r in rows], [r["accuracy_max"] for r in rows]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.axhline(dense, color="0.3", linestyle="--", linewidth=1, label=f"dense {dense:.2f}{unit}")
    for tolerance, style in zip(tolerances, (":", "-.", (0, (1, 3)), (0, (5, 5))), strict=False):
        ax.axhline(
            dense - tolerance,
            color="0.55",
            linestyle=style,
            linewidth=0.8,
            label=f"dense - {tolerance:g}{drop}",
        )
    ax.set_xscale("log")
    rates = sorted({float(p["target_rate"]) for p in data["points"]})
    if rates:
        ax.set_xticks(rates, [f"{r:g}x" for r in rates])
        ax.minorticks_off()
    seeds = sorted({int(p["seed"]) for p in data["points"]})
    ax.set_xlabel("compression rate (mean over seeds; subwords: bits)")
    ax.set_ylabel(f"{metric.rpartition(':')[2]} (your metric)" if metric else "test accuracy (%)")
    ax.set_title(f"Accuracy vs rate, {len(seeds)} seed(s), band = lowest to highest seed")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def _tolerances(data: Mapping[str, Any]) -> list[float]:
    """The allowed drops of the run (`iso_accuracy`'s keys), or the default 0.5 and 1 points."""
    try:
        return sorted(float(key) for key in data.get("iso_accuracy", {})) or [0.5, 1.0]
    except (TypeError, ValueError, AttributeError):
        return [0.5, 1.0]


def write_frontier_png(data: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw the frontier to a PNG file atomically."""
    import matplotlib.pyplot as plt

    from tightcompress.viz.text import plain_text

    with plain_text():
        fig = frontier_figure(data)
        try:
            with atomic_path(path, suffix=".png") as tmp:
                fig.savefig(tmp, format="png", dpi=110)
        finally:
            plt.close(fig)
