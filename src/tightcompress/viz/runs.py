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

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tightcompress.errors import TightCompressError
from tightcompress.readers.topology import topology_name
from tightcompress.report import REPORT_VERSION

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
    """A report JSON of any kind, checked: readable, a known shape, this tightcompress's report version."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TightCompressError(f"report not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise TightCompressError(f"{path}: not a readable JSON file ({exc})") from None
    except RecursionError:  # nested deeper than Python's stack (100,000 levels)
        raise TightCompressError(f"{path}: not a readable JSON file (nested too deeply)") from None
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
    if kind in ("pack", "simulate", "compress"):
        if not isinstance(data["layers"], list):
            raise TightCompressError(f"{path}: 'layers' must be a list")
        for key in ("config", "total"):
            if not isinstance(data.get(key, {}), dict):
                raise TightCompressError(f"{path}: {key!r} must be an object")
        _check_entries(data["layers"], path, "layers", _LAYER_FIELDS)
    elif kind == "demo":
        _check_entries(data["rows"], path, "rows", _ROW_FIELDS)
    else:
        from tightcompress.viz.frontier_plot import check_frontier

        _check_entries(data["points"], path, "points", _POINT_FIELDS)
        check_frontier(data, str(path))
    return data


# The fields the page reads, by kind: (required, type). A report that lacks a required one or holds a wrong
# type is refused in one line before any plotting, instead of failing inside matplotlib.
_LAYER_FIELDS = {
    "name": (True, str),
    "method": (False, str),
    "compression_rate": (True, float),
    "utilization": (False, float),
    "dropped_magnitude_fraction": (False, float),
    "cycles": (False, float),
    "dense_cycles": (False, float),
    "energy_pj": (False, float),
    "dense_energy_pj": (False, float),
}
_ROW_FIELDS = {
    "method": (False, str),
    "compression_rate": (False, float),
    "accuracy": (False, float),
    "accuracy_drop": (False, float),
}
_POINT_FIELDS = {
    "method": (True, str),
    "compression_rate": (True, float),
    "accuracy": (True, float),
}
_SWEEP_FIELDS = {
    "method": (True, str),
    "compression_rate": (True, float),
    "dropped_magnitude_fraction": (True, float),
}


def _number(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_entries(entries: list, path: str | os.PathLike[str], key: str, fields: dict) -> None:
    """Every entry of `key` is an object whose known fields have the right type (required ones present)."""
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise TightCompressError(f"{path}: {key}[{i}] must be an object, got {type(entry).__name__}")
        for field_name, (required, kind) in fields.items():
            if field_name not in entry:
                if required:
                    raise TightCompressError(f"{path}: {key}[{i}] has no {field_name!r}")
                continue
            value = entry[field_name]
            ok = _number(value) if kind is float else isinstance(value, kind)
            if not ok:
                expected = "a finite number" if kind is float else "a string"
                raise TightCompressError(f"{path}: {key}[{i}].{field_name} must be {expected}, got {value!r}")


def check_sweep_rows(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a sweep CSV with the fields the plot reads present and numeric."""
    _check_entries([r for r in rows if r.get("layer", "TOTAL") == "TOTAL"], path, "row", _SWEEP_FIELDS)
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
