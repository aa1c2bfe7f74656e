"""Report inputs -> labelled runs: what kind of JSON each file is, a distinct label per run, one layer naming.

Every JSON the tool writes is one of these kinds (told apart by its fields, not its file name):
- `pack`: `{"layers", "total", "config"}`, no hardware fields;
- `simulate`: the same with per-layer `cycles` and `config.array`;
- `compress`: a pack report plus `accuracy` and `hardware` blocks (word or subword granularity);
- `demo`: `{"rows": [{"method", "compression_rate", "accuracy", ...}]}`, one row per method;
- `frontier`: `{"dense", "points": [{"method", "target_rate", "seed", "compression_rate", "accuracy", ...}]}`.
Layer names follow the module path (`features.0`, `conv1`); a state-dict key `conv1.weight` is shown as
`conv1`, so `pack` and `compress` reports line up layer by layer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tightcompress.errors import TightCompressError
from tightcompress.readers.topology import topology_name
from tightcompress.report import REPORT_VERSION
from tightcompress.results import (
    CompressReport,
    DemoReport,
    FrontierReport,
    PackReport,
    Result,
    SimulateReport,
    SweepRow,
    read_json,
)  # fmt: skip

KINDS = ("pack", "simulate", "compress", "demo", "frontier")


def layer_name(name: str) -> str:
    """The module path of a layer, `[g]` for group g of a grouped conv: `conv1.weight` -> `conv1`,
    `conv1.weight[2]` -> `conv1[2]` (a bare `weight` stays as it is); the topology rows' names too."""
    return topology_name(name)


def accuracy_percent(value: float) -> float:
    """Top-1 accuracy in percent; a fraction in [0, 1] (as some callers write it) is scaled to percent."""
    value = float(value)
    return value * 100.0 if 0.0 <= value <= 1.0 else value


@dataclass
class Run:
    """One labelled input: a report JSON (or one row of a demo table), its kind and its source file."""

    label: str
    kind: str
    source: str
    data: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.data.get("config", {})

    @property
    def method(self) -> str:
        config = self.config
        method = config.get("method") or self.data.get("method")
        if method is None and self.layers:
            method = self.layers[0].get("method")
        return str(method or "?")

    @property
    def granularity(self) -> str:
        """`word` (one int8 weight per slot) or `subword` (4-bit subwords)."""
        if (
            self.data.get("granularity") == "subword"
            or "bit_rate" in self.data
            or self.method.endswith("subword")
        ):
            return "subword"
        return "word"

    @property
    def hardware(self) -> dict[str, Any]:
        """Totals of the array model: `simulate`'s total, or `compress`'s `hardware` block; else `{}`."""
        if isinstance(self.data.get("hardware"), dict):
            return self.data["hardware"]
        total = self.data.get("total", {})
        if "cycles" in total:
            return {**total, "array": self.config.get("array", "?")}
        return {}

    @property
    def array(self) -> str | None:
        return self.hardware.get("array") or self.config.get("array")

    @property
    def accuracy(self) -> float | None:
        """Final top-1 accuracy in percent (after packing and fine-tuning), if the run measured it."""
        acc = self.data.get("accuracy")
        if isinstance(acc, dict):
            for key in ("packed_finetuned", "final"):
                if key in acc:
                    return accuracy_percent(acc[key])
            return None
        return None if acc is None else accuracy_percent(acc)

    @property
    def dense_accuracy(self) -> float | None:
        acc = self.data.get("accuracy")
        if isinstance(acc, dict) and "dense" in acc:
            return accuracy_percent(acc["dense"])
        if "accuracy_drop" in self.data and self.accuracy is not None:
            return self.accuracy + accuracy_percent(self.data["accuracy_drop"])
        return None

    @property
    def compression_rate(self) -> float | None:
        for source in (self.data, self.data.get("total", {})):
            if "compression_rate" in source:
                return float(source["compression_rate"])
        return None


def method_options(run_config: dict[str, Any], method: str) -> str:
    """The options that tell two runs of one method apart: `G=8 h=auto`, `alpha=8 gamma=0.5`, `rate 16x`."""
    parts = []
    if run_config.get("rate") is not None:
        parts.append(f"rate {run_config['rate']:g}x")
    if run_config.get("bit_rate") is not None:
        parts.append(f"bit rate {run_config['bit_rate']:g}x")
    if method in ("tight", "nm", "tight-subword") and run_config.get("group") is not None:
        parts.append(f"G={run_config['group']} h={run_config.get('height', 'auto')}")
    if method == "column-combining" and run_config.get("alpha") is not None:
        parts.append(f"alpha={run_config['alpha']} gamma={run_config.get('gamma')}")
    if run_config.get("sparsity") is not None:
        parts.append(f"sparsity {run_config['sparsity']:g}")
    return " ".join(parts)


def _base_label(run: Run) -> str:
    options = method_options(run.config, run.method)
    bits = [run.kind, run.method + (f" {options}" if options else "")]
    if run.array:
        bits.append(f"{run.array} array")
    if run.kind in ("compress", "demo") or run.granularity == "subword":
        bits.append(run.granularity)
    return f"{run.source}: " + ", ".join(bits)


def load_report_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A report JSON of any kind, checked: readable, a known shape, this tightcompress's report version,
    and every field of the right type (loaded through its class in `tightcompress.results`: a wrong field
    is one line naming it, `r.json: layers[3].cycles: expected an integer, got 'x'`)."""
    if not Path(path).is_file():
        raise TightCompressError(f"report not found: {path}")
    data = read_json(path)
    if not isinstance(data, dict):
        raise TightCompressError(f"{path}: expected a JSON object, got {type(data).__name__}")
    kind = json_kind(data)
    if kind is None:
        raise TightCompressError(
            f"{path}: not a tightcompress output: expected 'layers' (pack/simulate/compress), "
            "'rows' (demo) or 'points' (frontier)"
        )
    version = data.get("report_version", REPORT_VERSION if kind in ("demo", "frontier") else None)
    if version != REPORT_VERSION:
        raise TightCompressError(
            f"{path}: report_version {version!r}, this tightcompress reads report_version "
            f"{REPORT_VERSION}; rerun the command that wrote it with this version"
        )
    REPORT_CLASSES[kind].from_data(data, path)
    entries = {"demo": "rows", "frontier": "points"}.get(kind, "layers")
    _check_finite(data[entries], path, entries, _PLOTTED[entries])
    if kind == "frontier":
        from tightcompress.viz.frontier_plot import check_frontier

        check_frontier(data, str(path))
    return data


REPORT_CLASSES: dict[str, type[Result]] = {
    "pack": PackReport, "simulate": SimulateReport, "compress": CompressReport, "demo": DemoReport,
    "frontier": FrontierReport,
}  # fmt: skip

# The numbers the page plots, by entry list: the class checks their type, this their finiteness (a NaN or
# an infinity would fail inside matplotlib).
_PLOTTED = {
    "layers": ("compression_rate", "utilization", "dropped_magnitude_fraction", "cycles", "dense_cycles",
               "energy_pj", "dense_energy_pj"),
    "rows": ("compression_rate", "accuracy", "accuracy_drop"),
    "points": ("compression_rate", "accuracy"),
    "row": ("compression_rate", "dropped_magnitude_fraction"),
}  # fmt: skip


def _check_finite(entries: list, path: str | os.PathLike[str], key: str, names: tuple[str, ...]) -> None:
    for i, entry in enumerate(entries):
        for name in names:
            value = entry.get(name)
            if isinstance(value, float) and not math.isfinite(value):
                where = f"{path}: {key}[{i}].{name}"
                raise TightCompressError(f"{where}: expected a finite number, got {value!r}")


def check_sweep_rows(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a sweep CSV, each checked through `results.SweepRow` (cells parsed from text; an empty
    cell is none), the plotted numbers finite."""
    typed = [SweepRow.from_csv(row, path, i) for i, row in enumerate(rows)]
    _check_finite([row.to_json() for row in typed], path, "row", _PLOTTED["row"])
    return rows


def json_kind(data: dict[str, Any]) -> str | None:
    """Which command wrote `data` (one of `KINDS`), from its fields; None when it is none of them."""
    if isinstance(data.get("points"), list) and "dense" in data:
        return "frontier"
    if isinstance(data.get("rows"), list):
        return "demo"
    if "layers" in data:
        config, total, layers = data.get("config"), data.get("total"), data["layers"]
        if "accuracy" in data or (isinstance(config, dict) and config.get("workflow") == "compress"):
            return "compress"
        layers = layers if isinstance(layers, list) else []
        if (isinstance(total, dict) and "cycles" in total) or any(
            isinstance(layer, dict) and "cycles" in layer for layer in layers
        ):
            return "simulate"
        return "pack"
    return None


def _short_sources(paths: list[str]) -> list[str]:
    """Each file's name, with as many parent folders as it takes to tell it from the other files."""
    parts = [Path(p).resolve().parts for p in paths]
    out = []
    for i, mine in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != i and p != mine]
        depth = 1
        while depth < len(mine) and any(p[-depth:] == mine[-depth:] for p in others):
            depth += 1
        out.append("/".join(mine[-depth:]))
    return out


def runs_from_files(paths: list[str | os.PathLike[str]]) -> tuple[list[Run], list[tuple[str, dict]]]:
    """`(runs, frontiers)`: every report and demo row as a labelled run; frontier JSONs kept whole."""
    loaded = [(str(p), load_report_json(p)) for p in paths]
    sources = _short_sources([p for p, _ in loaded]) if loaded else []
    runs: list[Run] = []
    frontiers: list[tuple[str, dict]] = []
    for source, (_path, data) in zip(sources, loaded, strict=True):
        kind = json_kind(data)
        if kind == "frontier":
            frontiers.append((source, data))
        elif kind == "demo":
            for row in data["rows"]:
                hw_array = (data.get("tight_vs_column_combining") or {}).get("array")
                row_data = {**row, "config": {"method": row.get("method")}}
                if "speedup" in row and hw_array:
                    row_data["hardware"] = {
                        "array": hw_array,
                        "speedup": row["speedup"],
                        "energy_gain": row.get("energy_gain"),
                    }
                runs.append(Run("", "demo", source, row_data))
        else:
            layers = [{**layer, "name": layer_name(str(layer.get("name", "?")))} for layer in data["layers"]]
            runs.append(Run("", kind, source, data, layers))
    for run in runs:
        run.label = _base_label(run)
    seen: dict[str, int] = {}
    for run in runs:  # two identical runs (the same file given twice) still get distinct labels
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label += f" (#{seen[run.label]})"
    return runs, frontiers
