"""A static HTML report with embedded PNG plots (matplotlib), readable offline with no server.

Inputs, each optional except at least one JSON:
- `pack` / `simulate` report JSONs (`{"report_version", "config", "layers", "total"}`), one per method:
  per-layer bars of compression rate by method; with the `simulate` fields (`cycles`, `dense_cycles`,
  `energy_pj`, `dense_energy_pj`) also cycles and energy per layer against dense;
- a demo/pipeline JSON (`{"rows": [{"method", "compression_rate", "accuracy", "accuracy_drop"}]}`): the
  accuracy-versus-rate curve;
- a frontier JSON (`tightcompress frontier`): accuracy against rate over seeds (`viz.frontier_plot`);
- a sweep CSV (`tightcompress sweep`): dropped magnitude versus rate per method (the operating-point curve);
- a packed file and a layer: a heat map of the layer's nonzeros before and after permutation, groups drawn.
A plot whose data is absent is left out with a note saying what would produce it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix
from tightcompress.report import REPORT_VERSION
from tightcompress.utils.atomic import atomic_path
from tightcompress.viz.frontier_plot import check_frontier, frontier_figure, is_frontier

_MAX_BAR_LAYERS = 60


def load_report_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A report or demo JSON, checked: readable, the expected shape, this tightcompress's report version."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TightCompressError(f"report not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise TightCompressError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise TightCompressError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if "layers" in data:
        version = data.get("report_version")
        if version != REPORT_VERSION:
            raise TightCompressError(
                f"{path}: report_version {version!r}, this tightcompress reads report_version "
                f"{REPORT_VERSION}; rerun the command that wrote it with this version"
            )
        if not isinstance(data["layers"], list):
            raise TightCompressError(f"{path}: 'layers' must be a list")
        return data
    if is_frontier(data):  # `tightcompress frontier --json`
        check_frontier(data, str(path))
        return data
    if "rows" in data and isinstance(data["rows"], list):
        version = data.get("report_version", REPORT_VERSION)
        if version != REPORT_VERSION:
            raise TightCompressError(f"{path}: report_version {version!r}, this reads {REPORT_VERSION}")
        return data
    raise TightCompressError(
        f"{path}: neither a tightcompress report ('layers'), a demo ('rows') nor a frontier ('points')"
    )


# ------------------------------------------------------------------------------------------------ plots
def _figure_png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _label(report: dict[str, Any], index: int) -> str:
    config = report.get("config", {})
    method = config.get("method") or (report["layers"][0].get("method") if report["layers"] else "?")
    extra = ""
    if method in ("tight", "nm"):
        extra = f" G={config.get('group', '?')} h={config.get('height', '?')}"
    return f"{method}{extra}" if method else f"report {index + 1}"


def plot_rates(reports: Sequence[dict[str, Any]]) -> str | None:
    """Per-layer bars of compression rate, one bar per report (method)."""
    reports = [r for r in reports if r.get("layers")]
    if not reports:
        return None
    import matplotlib.pyplot as plt

    names = [layer["name"] for layer in reports[0]["layers"]][:_MAX_BAR_LAYERS]
    width = 0.8 / len(reports)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names) * max(1, len(reports) / 2)), 4))
    x = np.arange(len(names))
    for i, report in enumerate(reports):
        by_name = {layer["name"]: layer for layer in report["layers"]}
        rates = [by_name[n]["compression_rate"] if n in by_name else 0.0 for n in names]
        ax.bar(x + i * width - 0.4 + width / 2, rates, width, label=_label(report, i))
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylabel("compression rate (dense slots / packed slots)")
    ax.set_title("Compression rate per layer")
    ax.legend(fontsize=8)
    return _figure_png(fig)


def plot_accuracy(demo_rows: Sequence[dict[str, Any]]) -> str | None:
    """Accuracy versus compression rate, one series per method."""
    rows = [r for r in demo_rows if "compression_rate" in r and "accuracy" in r]
    if not rows:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r.get("method", "?") for r in rows):
        series = sorted(
            (float(r["compression_rate"]), float(r["accuracy"])) for r in rows if r.get("method") == method
        )
        ax.plot(*zip(*series, strict=True), marker="o", label=str(method))
    ax.set_xlabel("compression rate")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy vs compression rate")
    ax.legend(fontsize=8)
    return _figure_png(fig)


def plot_sweep(sweep_rows: Sequence[dict[str, Any]]) -> str | None:
    """Dropped magnitude versus rate over a sweep's operating points, one series per method."""
    rows = [r for r in sweep_rows if r.get("layer", "TOTAL") == "TOTAL"]
    if not rows:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted(
            (float(r["compression_rate"]), float(r["dropped_magnitude_fraction"]))
            for r in rows
            if r["method"] == method
        )
        ax.plot(*zip(*pts, strict=True), marker="o", linestyle="", label=method)
    ax.set_xlabel("compression rate")
    ax.set_ylabel("dropped |w| fraction")
    ax.set_title("Operating points of the sweep (lower right is better)")
    ax.legend(fontsize=8)
    return _figure_png(fig)


def plot_hardware(report: dict[str, Any]) -> str | None:
    """Cycles and energy per layer against dense (needs the `simulate` fields)."""
    layers = [layer for layer in report.get("layers", []) if "cycles" in layer and "dense_cycles" in layer]
    if not layers:
        return None
    import matplotlib.pyplot as plt

    layers = layers[:_MAX_BAR_LAYERS]
    names = [layer["name"] for layer in layers]
    has_energy = all("energy_pj" in layer and "dense_energy_pj" in layer for layer in layers)
    panels = 2 if has_energy else 1
    fig, axes = plt.subplots(panels, 1, figsize=(max(6, 0.35 * len(names)), 3.5 * panels), squeeze=False)
    x = np.arange(len(names))
    series = [("cycles", "dense_cycles", "cycles")]
    if has_energy:
        series.append(("energy_pj", "dense_energy_pj", "energy (pJ)"))
    for ax, (key, dense_key, unit) in zip(axes[:, 0], series, strict=True):
        ax.bar(x - 0.2, [layer[dense_key] for layer in layers], 0.4, label="dense", color="0.6")
        ax.bar(x + 0.2, [layer[key] for layer in layers], 0.4, label=_label(report, 0))
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.set_xticks(x, names, rotation=90, fontsize=7)
        ax.legend(fontsize=8)
    axes[0, 0].set_title("Per layer vs dense")
    return _figure_png(fig)


def plot_heatmap(packed: PackedMatrix) -> str:
    """Nonzeros of one layer before (original order) and after (per-tile permutation), groups drawn."""
    import matplotlib.pyplot as plt

    dense = packed.to_dense() != 0
    C, T = packed.tile, packed.n_tiles
    after = np.zeros((packed.K, T * C), dtype=bool)
    for t in range(T):
        cols = packed.col_perm[t * C : (t + 1) * C]
        live = cols >= 0
        block = dense[packed.row_perm[t]][:, cols[live]]
        after[:, t * C : t * C + int(live.sum())] = block
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    axes[0].imshow(dense, aspect="auto", cmap="Greys", interpolation="nearest")
    axes[0].set_title(f"{packed.info.get('name', 'layer')}: kept nonzeros before ({packed.K} x {packed.N})")
    axes[1].imshow(after, aspect="auto", cmap="Greys", interpolation="nearest")
    axes[1].set_title(f"after permutation: {T} tile(s) of {C} columns, G={packed.group}")
    for offset in packed.group_offsets[1:-1]:
        axes[1].axhline(offset - 0.5, color="tab:red", linewidth=0.7)
    for t in range(1, T):
        axes[1].axvline(t * C - 0.5, color="tab:blue", linewidth=0.8)
    for ax in axes:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    return _figure_png(fig)


# ------------------------------------------------------------------------------------------------- html
def _img(title: str, png: str | None, missing: str) -> str:
    if png is None:
        note = f'<p class="note">Not shown: {html.escape(missing)}</p>'
        return f"<section><h2>{html.escape(title)}</h2>{note}</section>"
    return (
        f"<section><h2>{html.escape(title)}</h2>"
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></section>'
    )


def _totals_table(reports: Sequence[tuple[str, dict[str, Any]]]) -> str:
    keys = ["layers", "compression_rate", "utilization", "dropped_magnitude_fraction", "cycles", "energy_pj"]
    head = "".join(f"<th>{k}</th>" for k in ["report", *keys])
    body = []
    for label, report in reports:
        total = report.get("total", {})
        cells = []
        for k in keys:
            v = total.get(k, "")
            cells.append(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>")
        body.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def build_html(
    reports: Sequence[dict[str, Any]],
    *,
    demo_rows: Sequence[dict[str, Any]] = (),
    sweep_rows: Sequence[dict[str, Any]] = (),
    packed: PackedMatrix | None = None,
    title: str = "tightcompress report",
    frontiers: Sequence[dict[str, Any]] = (),
) -> str:
    """The whole self-contained HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    labelled = [(_label(r, i), r) for i, r in enumerate(reports) if r.get("layers")]
    hardware = next((r for r in reports if any("cycles" in layer for layer in r.get("layers", []))), {})
    sections = [
        _img("Compression rate per layer, by method", plot_rates(reports), "no pack/simulate report given"),
        _img(
            "Accuracy vs compression rate",
            plot_accuracy(demo_rows),
            "no demo/pipeline JSON with accuracy rows given",
        ),
        *(
            _img("Frontier: accuracy vs rate over seeds", _figure_png(frontier_figure(f)), "")
            for f in frontiers
        ),
        _img("Sweep: dropped magnitude vs rate", plot_sweep(sweep_rows), "no sweep CSV given (--sweep)"),
        _img(
            "Nonzeros before and after permutation",
            None if packed is None else plot_heatmap(packed),
            "no packed file given (--packed PACKED.safetensors)",
        ),
        _img(
            "Cycles and energy per layer vs dense",
            plot_hardware(hardware),
            "no report with cycles/energy (run `tightcompress simulate`)",
        ),
    ]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}img{max-width:100%}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}.note{color:#777}"
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + (_totals_table(labelled) if labelled else "")
        + "".join(sections)
        + "</body></html>\n"
    )


def write_html(
    path: str | os.PathLike[str],
    reports: Sequence[dict[str, Any]],
    **kwargs: Any,
) -> None:
    """Render and write the HTML atomically (nothing is written if any plot fails)."""
    page = build_html(reports, **kwargs)
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
