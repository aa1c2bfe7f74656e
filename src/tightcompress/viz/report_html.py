"""A static HTML page that compares runs, with embedded PNG plots (matplotlib): one file, offline, no server.

Inputs (`tightcompress report FILE.json ... --html OUT.html`), any mix, each labelled distinctly by its file
name, method and options, array and granularity (see `viz.runs`):
- `pack` / `simulate` / `compress` reports: one runs table (human column names, units, percentages),
  per-layer compression rate of every distinct packing, per-layer cycles and energy against dense for
  every array given (one panel per array), speed-up and energy gain per run;
- accuracy wherever a report holds it (`compress` reports, `demo` rows, `frontier` points: one line per
  method with the spread over seeds): accuracy against compression rate;
- a sweep CSV: dropped magnitude against rate per method; a packed file: the before/after heat map.
A figure whose data is absent is left out with a note saying what would produce it.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tightcompress.format.packed import PackedMatrix
from tightcompress.report import min_folds_note
from tightcompress.utils.atomic import atomic_path
from tightcompress.viz.frontier_plot import frontier_figure
from tightcompress.viz.runs import (
    Run,
    accuracy_percent,
    check_sweep_rows,
    layer_name,
    load_report_json,
    runs_from_files,
)

__all__ = ["build_html", "check_sweep_rows", "load_report_json", "runs_from_files", "write_html"]

_MAX_BAR_LAYERS = 60
_PAGE_INCHES = 10.0  # figure width: 900 px at the PNG's 90 dpi, the width of the page's text column
_DPI = 90


# ------------------------------------------------------------------------------------------------ plots
def _figure_png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def run_colors(runs: Sequence[Run]) -> dict[str, str]:
    """One colour per report run (demo rows excluded), the same in every figure, in run order."""
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {run.label: cycle[i % len(cycle)] for i, run in enumerate(r for r in runs if r.layers)}


def _layer_order(runs: Sequence[Run]) -> list[str]:
    """Every layer name of the runs in first-seen order (names already normalised to module paths)."""
    return list(dict.fromkeys(layer["name"] for run in runs for layer in run.layers))[:_MAX_BAR_LAYERS]


def _bar_height(n_layers: int, n_series: int) -> float:
    """Figure height (inches) for horizontal bars: readable names, never more than a screen or so."""
    return float(min(11.0, max(2.2, 0.22 * n_layers * max(1.0, 0.6 * n_series) + 1.0)))


def _hbars(ax, names: list[str], series: list[tuple[str, list[float]]], *, colors=None) -> None:
    """Grouped horizontal bars, one group per layer (top to bottom in model order), names horizontal."""
    y = np.arange(len(names))
    height = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series):
        color = None if colors is None else colors[i]
        ax.barh(y - 0.4 + (i + 0.5) * height, values, height, label=label, color=color)
    ax.set_yticks(y, names, fontsize=8 if len(names) < 30 else 6)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def plot_rates(runs: Sequence[Run]) -> str | None:
    """Per-layer compression rate of every distinct packing (runs with equal per-layer rates share a bar)."""
    runs = [run for run in runs if run.layers]
    if not runs:
        return None
    import matplotlib.pyplot as plt

    names = _layer_order(runs)
    series: dict[tuple, list[str]] = {}
    for run in runs:
        by_name = {layer["name"]: layer for layer in run.layers}
        key = tuple(round(float(by_name[n]["compression_rate"]), 6) if n in by_name else 0.0 for n in names)
        series.setdefault(key, []).append(run.label)
    bars = [(_join_labels(labels), list(key)) for key, labels in series.items()]
    colors = run_colors(runs)
    fig, ax = plt.subplots(figsize=(_PAGE_INCHES, _bar_height(len(names), len(bars))))
    _hbars(ax, names, bars, colors=[colors[labels[0]] for labels in series.values()])
    ax.set_xlabel("compression rate (×): dense slots / packed slots")
    fig.tight_layout()
    fig.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0))
    return _figure_png(fig)


def _join_labels(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{labels[0]} (same packing: {', '.join(labels[1:])})"


def hardware_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs with per-layer cycles, by array (`32x32`, ...), arrays in first-seen order."""
    arrays: dict[str, list[Run]] = {}
    for run in runs:
        if any("cycles" in layer and "dense_cycles" in layer for layer in run.layers):
            arrays.setdefault(str(run.array), []).append(run)
    return arrays


def plot_hardware(runs: Sequence[Run]) -> str | None:
    """Cycles (and energy) per layer against dense: one panel per array, every run on that array."""
    arrays = hardware_runs(runs)
    if not arrays:
        return None
    import matplotlib.pyplot as plt

    names = _layer_order([run for group in arrays.values() for run in group])
    has_energy = all(
        "energy_pj" in layer and "dense_energy_pj" in layer
        for group in arrays.values()
        for run in group
        for layer in run.layers
    )
    metrics = [("cycles", "dense_cycles", "cycles per layer (log scale)", 1.0)]
    if has_energy:
        metrics.append(("energy_pj", "dense_energy_pj", "energy per layer, µJ (log scale)", 1e-6))
    n_series = 1 + max(len(group) for group in arrays.values())
    height = _bar_height(len(names), n_series)
    fig, axes = plt.subplots(
        len(metrics),
        len(arrays),
        figsize=(_PAGE_INCHES, height * len(metrics)),
        squeeze=False,
        sharey=True,
    )
    colors = run_colors(runs)
    run_color: dict[str, str] = {}
    dense_color: dict[str, str] = {}
    for row, (key, dense_key, unit, scale) in enumerate(metrics):
        for col, (array, group) in enumerate(arrays.items()):
            ax = axes[row, col]
            # one dense series per distinct workload (a compress run counts cycles per image, simulate per M)
            dense_series: dict[tuple, str] = {}
            for run in group:
                by_name = {layer["name"]: layer for layer in run.layers}
                values = tuple(by_name[n].get(dense_key, 0) * scale if n in by_name else 0 for n in names)
                dense_series.setdefault(values, run.label)
            series, series_colors = [], []
            for i, (values, first) in enumerate(dense_series.items()):
                label = f"dense, {workload_label(next(r for r in group if r.label == first))}"
                series.append((label, list(values)))
                series_colors.append(dense_color.setdefault(label, f"{0.55 + 0.15 * (i % 3):.2f}"))
            for run in group:
                by_name = {layer["name"]: layer for layer in run.layers}
                series.append(
                    (run.label, [by_name[n].get(key, 0) * scale if n in by_name else 0 for n in names])
                )
                color = run_color.setdefault(run.label, colors[run.label])
                series_colors.append(color)
            _hbars(ax, names, series, colors=series_colors)
            _log_axis(ax, len(arrays))
            ax.set_xlabel(unit, fontsize=8)
            if row == 0:
                ax.set_title(f"{array} array", fontsize=10)
    handles, labels = [], []
    for label, color in [*dense_color.items(), *run_color.items()]:
        handles.append(plt.Rectangle((0, 0), 1, 1, color=color))
        labels.append(label)
    fig.legend(
        handles, labels, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, -0.02 - 0.025 * len(labels))
    )
    fig.tight_layout()
    return _figure_png(fig)


def _log_axis(ax, n_panels: int) -> None:
    """A log x axis whose labels never collide in a narrow panel: at most 1, 2 and 5 per decade and a few
    in all, no minor-tick labels (matplotlib labels minor ticks when the data span less than a decade, and
    those ran into each other on a 64x64 panel beside others)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.autoscale_view()
    low, high = ax.get_xlim()
    decades = np.log10(high / low) if low > 0 and high > low else 0.0
    subs = (1.0, 2.0, 5.0) if decades < 1.5 else (1.0,)  # within a decade or so: 1, 2, 5; else powers of 10
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=max(3, 9 - 2 * n_panels)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7)


def workload_label(run: Run) -> str:
    """What one cycle count covers: one image (compress) or M input vectors per layer (simulate; M is the
    number of input vectors a layer streams: output pixels x batch). An M the report does not hold is
    left out rather than shown as a question mark."""
    if run.hardware.get("per") == "image":
        return "one image"
    ms = [layer.get("m") for layer in run.layers]
    if ms and all(isinstance(m, int) for m in ms):
        low, high = min(ms), max(ms)
        vectors = f"M={low}" if low == high else f"M={low:,}–{high:,}"
        return f"{vectors} input vectors per layer"
    return "the same input vectors per layer"


def plot_gains(runs: Sequence[Run]) -> str | None:
    """Whole-model speed-up and energy gain over dense on the same array, one bar pair per run."""
    runs = [run for run in runs if run.hardware.get("speedup") is not None]
    if not runs:
        return None
    import matplotlib.pyplot as plt

    labels = [run.label for run in runs]
    series = [
        ("speed-up over dense (×)", [float(run.hardware["speedup"]) for run in runs]),
        ("energy gain over dense (×)", [float(run.hardware.get("energy_gain") or 0.0) for run in runs]),
    ]
    fig, ax = plt.subplots(figsize=(_PAGE_INCHES, _bar_height(len(runs), 2)))
    _hbars(ax, labels, series)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f×", fontsize=7, padding=2)
    ax.axvline(1.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("gain over the dense layer on the same array (×); 1 = no gain")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(runs) > 3 else -0.25), ncol=2)
    return _figure_png(fig)


def accuracy_series(runs: Sequence[Run], frontiers: Sequence[tuple[str, dict]]) -> list[dict[str, Any]]:
    """Points of the accuracy-vs-rate figure: `{"label", "rates", "accuracy", "low", "high", "dense"}`.

    A compress run is one point (its rate, accuracy after fine-tuning) joined to its dense accuracy at 1x;
    a demo table is one series of its rows; a frontier is one line per method through the mean accuracy
    at each target rate over the seeds, with the lowest and highest seed as the spread.
    """
    out = []
    for run in runs:
        if run.kind == "compress" and run.accuracy is not None and run.compression_rate:
            rates, accs = [float(run.compression_rate)], [run.accuracy]
            if run.dense_accuracy is not None:
                rates, accs = [1.0, *rates], [run.dense_accuracy, *accs]
            out.append({"label": run.label, "rates": rates, "accuracy": accs, "low": accs, "high": accs})
    demo: dict[str, list[Run]] = {}
    for run in runs:
        if run.kind == "demo" and run.accuracy is not None and run.compression_rate:
            demo.setdefault(run.source, []).append(run)
    for source, rows in demo.items():
        for run in rows:
            acc = [run.accuracy]
            out.append({"label": f"{source}: demo, {run.method}", "rates": [run.compression_rate],
                        "accuracy": acc, "low": acc, "high": acc})  # fmt: skip
    for source, data in frontiers:
        points = [p for p in data["points"] if p.get("accuracy") is not None]
        for method in dict.fromkeys(p["method"] for p in points):
            by_target: dict[float, list[dict]] = {}
            for p in points:
                if p["method"] == method:
                    by_target.setdefault(float(p.get("target_rate", p["compression_rate"])), []).append(p)
            rates, mean, low, high = [], [], [], []
            for target in sorted(by_target):
                group = by_target[target]
                accs = [accuracy_percent(p["accuracy"]) for p in group]
                rates.append(float(np.mean([p["compression_rate"] for p in group])))
                mean.append(float(np.mean(accs)))
                low.append(min(accs))
                high.append(max(accs))
            seeds = len({p.get("seed") for p in points if p["method"] == method})
            out.append({"label": f"{source}: frontier, {method} ({seeds} seed{'s' if seeds != 1 else ''})",
                        "rates": rates, "accuracy": mean, "low": low, "high": high})  # fmt: skip
    return out


def _frontier_dense(frontiers: Sequence[tuple[str, dict]]) -> list[tuple[str, float]]:
    dense = []
    for source, data in frontiers:
        value = data.get("dense")
        if isinstance(value, dict):  # {"accuracy_mean", "accuracy_std", "per_seed"}
            value = value.get("accuracy_mean", value.get("accuracy"))
        if isinstance(value, int | float):
            dense.append((source, accuracy_percent(value)))
    return dense


def plot_accuracy(runs: Sequence[Run], frontiers: Sequence[tuple[str, dict]] = ()) -> str | None:
    """Top-1 accuracy against compression rate for every run and frontier that measured accuracy."""
    series = accuracy_series(runs, frontiers)
    if not series:
        return None
    import matplotlib.pyplot as plt

    colors = run_colors(runs)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for s in series:  # demo and frontier lines: the colours after the runs', so no two lines share one
        if s["label"] not in colors:
            colors[s["label"]] = cycle[len(colors) % len(cycle)]
    fig, ax = plt.subplots(figsize=(_PAGE_INCHES, 4.2))
    for s in series:
        rates, acc = np.array(s["rates"]), np.array(s["accuracy"])
        spread = np.array([acc - np.array(s["low"]), np.array(s["high"]) - acc])
        style = "-o" if len(rates) > 1 else "o"
        ax.errorbar(rates, acc, yerr=spread if spread.any() else None, fmt=style, capsize=3, label=s["label"],
                    markersize=5, color=colors[s["label"]])  # fmt: skip
    for source, value in _frontier_dense(frontiers):
        ax.axhline(value, color="0.4", linestyle=":", linewidth=1)
        ax.annotate(f"dense ({source}) {value:.2f}%", (1.0, value), fontsize=7, color="0.3",
                    xytext=(2, 2), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: f"{v:g}×"))
    ax.set_xlabel("compression rate (×, log scale)")
    ax.set_ylabel("top-1 test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1)
    return _figure_png(fig)


def plot_sweep(sweep_rows: Sequence[dict[str, Any]]) -> str | None:
    """Dropped magnitude versus rate over a sweep's operating points, one series per method."""
    rows = [r for r in sweep_rows if r.get("layer", "TOTAL") == "TOTAL"]
    if not rows:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(_PAGE_INCHES, 4.0))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted(
            (float(r["compression_rate"]), 100.0 * float(r["dropped_magnitude_fraction"]))
            for r in rows
            if r["method"] == method
        )
        ax.plot(*zip(*pts, strict=True), marker="o", linestyle="", label=method)
    ax.set_xlabel("compression rate (×)")
    ax.set_ylabel("dropped |w| (% of the layer's total)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _figure_png(fig)


def packed_grid(packed: PackedMatrix) -> np.ndarray:
    """The packed slots as the array holds them: `(K', C)` lane indices, tiles stacked top to bottom
    (`K'` = the packed rows of all tiles), -1 where a slot holds no weight."""
    return np.where(packed.values != 0, packed.lanes, -1).astype(np.int64)


def plot_heatmap(packed: PackedMatrix) -> str:
    """One layer three ways: its kept nonzeros in the original order, after the per-tile permutation (groups
    drawn), and the packed grid itself (`K' x C` slots, each coloured by its lane: the input within its
    group that the slot's multiplexer selects)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    dense = packed.to_dense() != 0
    C, T = packed.tile, packed.n_tiles
    after = np.zeros((packed.K, T * C), dtype=bool)
    for t in range(T):
        cols = packed.col_perm[t * C : (t + 1) * C]
        live = cols >= 0
        block = dense[packed.row_perm[t]][:, cols[live]]
        after[:, t * C : t * C + int(live.sum())] = block
    grid = packed_grid(packed)
    fig, axes = plt.subplots(1, 3, figsize=(12, 5.5), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    name = layer_name(str(packed.info.get("name", "layer")))
    axes[0].imshow(dense, aspect="auto", cmap="Greys", interpolation="nearest")
    axes[0].set_title(f"{name}: kept nonzeros ({packed.K} x {packed.N})", fontsize=9)
    axes[1].imshow(after, aspect="auto", cmap="Greys", interpolation="nearest")
    axes[1].set_title(f"after permutation: {T} tile(s) of {C} columns, G={packed.group}", fontsize=9)
    for offset in packed.group_offsets[1:-1]:
        axes[1].axhline(offset - 0.5, color="tab:red", linewidth=0.7)
    for t in range(1, T):
        axes[1].axvline(t * C - 0.5, color="tab:blue", linewidth=0.8)
    lanes = max(1, packed.group)
    base = plt.get_cmap("tab10" if lanes <= 10 else "tab20" if lanes <= 20 else "hsv", lanes)
    colors = ListedColormap(["white", *[base(i) for i in range(lanes)]])
    image = axes[2].imshow(grid + 1, aspect="auto", cmap=colors, vmin=-0.5, vmax=lanes + 0.5,
                           interpolation="nearest")  # fmt: skip
    for offset in packed.tile_row_offsets[1:-1]:
        axes[2].axhline(offset - 0.5, color="black", linewidth=1.0)
    axes[2].set_title(
        f"packed grid: {grid.shape[0]} rows x {C} slots, {packed.utilization:.0%} used", fontsize=9
    )
    axes[2].set_xlabel("slot column (array column)")
    axes[2].set_ylabel("packed row (tiles top to bottom)")
    bar = fig.colorbar(image, ax=axes[2], fraction=0.08, pad=0.02)
    ticks = sorted({0, *np.linspace(1, lanes, min(lanes, 5)).round().astype(int).tolist()})
    bar.set_ticks(ticks, labels=["empty" if t == 0 else str(t - 1) for t in ticks])
    bar.set_label("lane (input within the group)", fontsize=8)
    for ax in axes[:2]:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    for ax in axes:
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
    fig.tight_layout()
    return _figure_png(fig)


# ------------------------------------------------------------------------------------------------- html
def _img(title: str, png: str | None, missing: str, caption: str = "") -> str:
    head = f"<section><h2>{html.escape(title)}</h2>"
    if png is None:
        return f'{head}<p class="note">Not shown: {html.escape(missing)}</p></section>'
    note = f'<p class="caption">{html.escape(caption)}</p>' if caption else ""
    return f'{head}{note}<img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></section>'


# (heading, unit hint shown on hover, function of a run -> value, format)
_COLUMNS: list[tuple[str, str, Any, str]] = [
    ("Layers", "packed conv/linear layers", lambda r: len(r.layers) or None, "{:d}"),
    ("Compression rate (×)", "dense slots / packed slots over all layers", lambda r: r.compression_rate,
     "{:.2f}×"),
    ("Slot utilization (%)", "kept nonzeros / packed slots", lambda r: _pct(r.data.get("total", {}),
     "utilization"), "{:.1f}%"),
    ("Dropped |w| (%)", "magnitude dropped by the capped height, % of the layer's |w|",
     lambda r: _pct(r.data.get("total", {}), "dropped_magnitude_fraction"), "{:.2f}%"),
    ("Array", "PE rows x columns of the modelled array", lambda r: r.array, "{}"),
    ("Cycles", "total cycles over all layers (compress: per image)", lambda r: r.hardware.get("cycles"),
     "{:,d}"),
    ("Speed-up (×)", "dense cycles / packed cycles on the same array", lambda r: r.hardware.get("speedup"),
     "{:.2f}×"),
    ("Speed-up vs CC (×)", "column combining's cycles / packed cycles (simulate)",
     lambda r: r.hardware.get("speedup_vs_cc"), "{:.2f}×"),
    ("CC dropped |w| (%)", "magnitude column combining prunes to reach its cycles, % of its input |w|",
     lambda r: _pct(r.data.get("total", {}), "cc_dropped_magnitude_fraction"), "{:.2f}%"),
    ("Energy (µJ)", "modelled energy over all layers", lambda r: _scaled(r.hardware.get("energy_pj"), 1e-6),
     "{:.3f}"),
    ("Energy gain (×)", "dense energy / packed energy", lambda r: r.hardware.get("energy_gain"), "{:.2f}×"),
    ("Accuracy (%)", "top-1 test accuracy after packing and fine-tuning", lambda r: r.accuracy, "{:.2f}%"),
    ("Accuracy drop (pp)", "dense accuracy minus final accuracy, percentage points",
     lambda r: None if r.accuracy is None or r.dense_accuracy is None else r.dense_accuracy - r.accuracy,
     "{:.2f}"),
]  # fmt: skip


def _pct(block: dict[str, Any], key: str) -> float | None:
    return None if block.get(key) is None else 100.0 * float(block[key])


def _scaled(value: Any, scale: float) -> float | None:
    return None if value is None else float(value) * scale


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return '<td class="na">–</td>'
    try:
        text = fmt.format(int(value) if "d}" in fmt else value)
    except (TypeError, ValueError):
        text = str(value)
    return f'<td class="num">{html.escape(text)}</td>'


def runs_table(runs: Sequence[Run]) -> str:
    """One row per run, one column per figure that at least one run has; blank cells shown as a dash."""
    columns = [c for c in _COLUMNS if any(c[2](run) is not None for run in runs)]
    head = "<th>Run<br>(file: kind, method, options, array, granularity)</th>" + "".join(
        f'<th title="{html.escape(hint)}">{html.escape(name)}</th>' for name, hint, _f, _fmt in columns
    )
    body = []
    for run in runs:
        cells = "".join(_cell(get(run), fmt) for _n, _h, get, fmt in columns)
        source, _, detail = run.label.partition(": ")
        label = f"<b>{html.escape(source)}</b><br>{html.escape(detail)}"
        body.append(f'<tr><td class="run">{label}</td>{cells}</tr>')
    return f"<section><h2>Runs</h2><table><tr>{head}</tr>{''.join(body)}</table></section>"


# The accuracy stages of a compress report, in pipeline order, with the names the page shows.
_STAGES = [
    ("dense", "dense (the incoming model)"),
    ("start", "subword start"),
    ("quantized", "int8 quantized"),
    ("unstructured", "unstructured pruning"),
    ("subword_pruned", "subword pruning"),
    ("prune_to_fit", "pruned to fit the format, before fine-tuning"),
    ("packed_finetuned", "packed and fine-tuned (final)"),
]


def _table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A small HTML table of already formatted (escaped here) cells; cells from `numeric_from` on align
    right."""
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="num">{html.escape(c)}</td>' if i >= numeric_from else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{tds}</tr>")
    return f'<div class="wrap"><table><tr>{cells}</tr>{"".join(body)}</table></div>'


def _stage_accuracy(run: Run) -> str:
    acc = run.data.get("accuracy") or {}
    if not isinstance(acc, dict) or "dense" not in acc:
        return ""
    dense = accuracy_percent(acc["dense"])
    rows = []
    for key, label in _STAGES:
        if isinstance(acc.get(key), int | float):
            value = accuracy_percent(acc[key])
            rows.append([label, f"{value:.2f}%", "" if key == "dense" else f"{value - dense:+.2f}"])
    return "<h3>Accuracy after each stage</h3>" + _table(["stage", "top-1 accuracy", "vs dense (pp)"], rows)


def _format_of(layer: dict[str, Any]) -> str:
    if layer.get("method") == "dense":
        return "dense (chosen: kept whole)"
    if layer.get("method") in ("tight", "nm", "tight-subword", "nm-permuted") or "group" in layer:
        return f"{layer.get('method', '?')} G={layer.get('group', '?')} h={layer.get('height', '?')}"
    return str(layer.get("choice") or layer.get("method") or "?")


def _layer_formats(run: Run) -> str:
    rows = []
    for layer in run.layers:
        folds = layer.get("folds")
        floor = layer.get("min_folds")
        fold_text = "" if folds is None else f"{folds}" + ("" if floor is None else f" (min {floor})")
        rows.append(
            [
                layer["name"],
                f"{layer.get('K', '?')} x {layer.get('N', '?')}",
                _format_of(layer),
                f"{float(layer['compression_rate']):.2f}×",
                "" if layer.get("cycles") is None else f"{int(layer['cycles']):,}",
                fold_text,
                "yes" if layer.get("at_min_folds") else "",
            ]
        )
    for layer in run.data.get("dense_layers") or []:
        shape = "x".join(str(d) for d in layer.get("shape", []))
        rows.append(
            [
                str(layer.get("name", "?")),
                shape,
                f"left dense ({', '.join(str(x) for x in (layer.get('kind'), layer.get('mapping')) if x)})",
                "1.00×",
                "" if layer.get("cycles") is None else f"{int(layer['cycles']):,}",
                "" if layer.get("folds") is None else str(layer["folds"]),
                "",
            ]
        )
    head = ["layer", "K x N (dense: weight shape)", "format (G, h)", "rate", "cycles", "folds",
            "at minimum folds"]  # fmt: skip
    return "<h3>Layers: the format chosen, and the layers left dense</h3>" + _table(head, rows, 3)


def _rates_and_notes(run: Run) -> str:
    data = run.data
    lines = []
    weights = data.get("model_weights")
    if isinstance(weights, dict) and data.get("packed_compression_rate") is not None:
        lines.append(
            f"Compression rate {float(data['compression_rate']):.2f}× over all {weights['total']:,}"
            f" conv/linear weights; {float(data['packed_compression_rate']):.2f}× over the packed layers"
            f" alone ({weights['packed']:,} weights), {weights['left_dense']:,} weights left dense."
        )
    skipped = (data.get("notes") or {}).get("skipped_layers") or []
    for entry in skipped:
        lines.append(f"Not packed: {entry.get('name')}: {entry.get('reason')}.")
    floor = min_folds_note(run.layers, str(run.array or "reference"))
    if floor:
        lines.append(
            f"Why cycles stop falling: {floor}. Every pass already loads the array once, so its cycles are"
            " the fold's fixed cost (2R + C + M - 2 on R x C PEs with M input vectors)."
        )
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines)


_CONFIG_BUDGET = [
    ("prune_rounds", "pruning rounds"),
    ("prune_epochs", "epochs per pruning round"),
    ("format_rounds", "format rounds"),
    ("finetune_epochs", "fine-tuning epochs"),
    ("batch_size", "batch size"),
]


def _budget_and_time(run: Run) -> str:
    data, config = run.data, run.config
    budget = data.get("budget")
    parts = []
    if isinstance(budget, dict):
        parts.append(
            f"Budget: {budget['train_images']:,} training images in batches of {budget['batch_size']}"
            f" ({budget['steps_per_epoch']} steps an epoch); pruning {budget['prune_rounds']} round(s) of"
            f" {budget['prune_steps_per_round']} steps; fine-tuning {budget['format_rounds']} format round(s)"
            f" of {budget['finetune_steps_per_round']} steps (the last repeated at most"
            f" {budget['max_fit_rounds']} times until everything fits); accuracy on"
            f" {budget['test_images']:,} held-out images."
        )
    else:  # a report without the budget block: what its config says, in epochs
        said = [
            f"{label} {config[key]:g}"
            for key, label in _CONFIG_BUDGET
            if isinstance(config.get(key), int | float)
        ]
        if said:
            parts.append(f"Budget: {', '.join(said)}.")
    if isinstance(data.get("seconds"), int | float):
        total = float(data["seconds"])
        prune = data.get("seconds_prune_stage")
        pack = data.get("seconds_plan_and_pack")
        detail = ""
        if isinstance(prune, int | float) and isinstance(pack, int | float):
            rest = max(0.0, total - prune - pack)
            detail = (f" (pruning {prune:.1f} s, planning and packing {pack:.1f} s, fine-tuning and"
                      f" evaluation {rest:.1f} s)")  # fmt: skip
        where = f" on {config['device']}" if config.get("device") else ""
        world = config.get("world_size")
        procs = f", {world} processes" if isinstance(world, int) and world > 1 else ""
        parts.append(f"Wall time {total:.1f} s{where}{procs}{detail}.")
    return "".join(f"<p>{html.escape(part)}</p>" for part in parts)


def compress_sections(runs: Sequence[Run]) -> str:
    """One section per compress run: the rates (every weight, packed layers), why cycles stop falling, the
    accuracy after each stage, each layer's format (G, h) and the layers left dense, the budget and time."""
    out = []
    for run in runs:
        if run.kind != "compress":
            continue
        body = _rates_and_notes(run) + _stage_accuracy(run) + _layer_formats(run) + _budget_and_time(run)
        out.append(f"<section><h2>Compress run {html.escape(run.label)}</h2>{body}</section>")
    return "".join(out)


def build_html(
    runs: Sequence[Run],
    *,
    frontiers: Sequence[tuple[str, dict]] = (),
    sweep_rows: Sequence[dict[str, Any]] = (),
    packed: PackedMatrix | None = None,
    title: str = "tightcompress report",
) -> str:
    """The whole self-contained HTML page; names are drawn as plain text (`viz.text.plain_text`: a `$` in a
    layer or file name is a dollar sign, not mathtext)."""
    from tightcompress.viz.text import plain_text

    with plain_text():
        return _page(runs, frontiers=frontiers, sweep_rows=sweep_rows, packed=packed, title=title)


def _page(
    runs: Sequence[Run],
    *,
    frontiers: Sequence[tuple[str, dict]],
    sweep_rows: Sequence[dict[str, Any]],
    packed: PackedMatrix | None,
    title: str,
) -> str:
    """The whole self-contained HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    arrays = list(hardware_runs(runs))
    sections = [
        runs_table(runs) if runs else "",
        compress_sections(runs),
        _img(
            "Accuracy vs compression rate",
            plot_accuracy(runs, frontiers),
            "no report with accuracy given (compress report, demo JSON or frontier JSON)",
            "Top-1 test accuracy after packing and fine-tuning. A compress run is joined to its dense"
            " model at 1×; frontier lines go through the mean over seeds, bars span the lowest to the"
            " highest seed.",
        ),
        _img(
            "Speed-up and energy gain over dense",
            plot_gains(runs),
            "no report with hardware figures (run `tightcompress simulate`, or `compress`)",
            "Whole model, each run against the dense layers on its own array.",
        ),
        _img(
            "Cycles and energy per layer vs dense",
            plot_hardware(runs),
            "no report with per-layer cycles (run `tightcompress simulate`)",
            f"One panel per array ({', '.join(arrays)}); grey bars are the dense layers on the same array"
            " and workload (simulate: M input vectors per layer; compress: one image).",
        ),
        _img(
            "Compression rate per layer",
            plot_rates(runs),
            "no pack/simulate/compress report given",
            "Layers by module path (`conv1`), in model order. Runs with the same per-layer rates share"
            " a bar.",
        ),
        _img(
            "Sweep: dropped magnitude vs rate",
            plot_sweep(sweep_rows),
            "no sweep CSV given (--sweep)",
            "Whole-model operating points of the sweep; lower right is better.",
        ),
        *(
            _img(
                f"Frontier {source}: accuracy vs rate, iso-accuracy lines",
                _figure_png(frontier_figure(data)),
                "",
                "Mean over seeds with the lowest-to-highest band; dotted and dash-dotted lines: 0.5 and"
                " 1.0 points below dense, the tolerances of the iso-accuracy rates.",
            )
            for source, data in frontiers
        ),
        _img(
            "Nonzeros before and after permutation, and the packed grid",
            None if packed is None else plot_heatmap(packed),
            "no packed file given (--packed PACKED.safetensors; compress writes OUT/packed.safetensors)",
            "Left: the kept nonzeros; middle: after the per-tile permutation (red lines: groups of G rows;"
            " blue lines: tiles of C columns); right: the slots the array holds, K' packed rows by C"
            " columns, each coloured by its lane (white: an empty slot; black lines: tiles).",
        ),
    ]
    style = (
        "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1000px;padding:0 1em;color:#222}"
        "img{max-width:100%;height:auto}h2{font-size:1.15em;margin-top:1.6em}"
        ".wrap{overflow-x:auto}table{border-collapse:collapse;font-size:0.8em}"
        "td,th{border:1px solid #ccc;padding:3px 5px}"
        "th{background:#f3f3f3;text-align:left;vertical-align:bottom}td.num{text-align:right;"
        "font-variant-numeric:tabular-nums;white-space:nowrap}td.na{text-align:center;color:#aaa}"
        "td.run{min-width:16em}h3{font-size:1em;margin:1em 0 0.3em}"
        ".note{color:#777}.caption{color:#555;font-size:0.9em;margin:0.2em 0 0.6em}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title><style>{style}</style></head>'
        f"<body><h1>{html.escape(title)}</h1>" + "".join(sections) + "</body></html>\n"
    )


def write_html(path: str | os.PathLike[str], runs: Sequence[Run], **kwargs: Any) -> None:
    """Render and write the HTML atomically (nothing is written if any plot fails); names are drawn as
    plain text (`viz.text.plain_text`)."""
    page = build_html(runs, **kwargs)
    with atomic_path(path, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
