"""`sweep`: pack the same layers over a grid of methods, G, h and sparsity, one CSV row per operating point.

Methods that ignore some knobs are run once per distinct configuration (dense and column combining do not
use G or h; N:M needs an integer h), and impossible points (h > G) are left out, so no row is a duplicate.
All (point, layer) pairs go to one process pool, largest matrix first.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tightcompress.api import METHODS, PackConfig
from tightcompress.errors import TightCompressError
from tightcompress.parallel import Progress, Task, run_tasks
from tightcompress.report import total_report
from tightcompress.results.sweep import SweepRow
from tightcompress.utils.atomic import atomic_path

CSV_FIELDS = tuple(SweepRow.model_fields)  # the columns, in order: one per field of the typed row


def grid_configs(
    methods: Sequence[str],
    groups: Sequence[int],
    heights: Sequence[int | str],
    sparsities: Sequence[float | None],
    *,
    tile: int = 32,
    seed: int = 0,
    iterations: int | None = None,
    alpha: int = 8,
    gamma: float = 0.5,
    merge: str = "authors",
    section: int | None = None,
) -> list[PackConfig]:
    """The distinct valid `PackConfig`s of the grid, in grid order (methods outermost)."""
    for method in methods:
        if method not in METHODS:
            raise TightCompressError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if not (methods and groups and heights and sparsities):
        raise TightCompressError("every grid axis needs at least one value")
    configs: list[PackConfig] = []
    seen: set[tuple] = set()
    for method, sparsity, group, height in itertools.product(methods, sparsities, groups, heights):
        if method in ("dense", "column-combining"):
            group, height = 1, "auto"
        if method == "nm" and height == "auto":
            continue
        if method in ("tight", "nm") and height != "auto" and int(height) > group:
            continue
        key = (method, sparsity, group, height)
        if key in seen:
            continue
        seen.add(key)
        configs.append(
            PackConfig(
                method=method,
                group=group,
                height=height,
                tile=tile,
                alpha=alpha,
                gamma=gamma,
                merge=merge,
                section=section,
                sparsity=sparsity,
                seed=seed,
                iterations=iterations,
            )
        )
    if not configs:
        raise TightCompressError("the grid has no valid point (N:M needs an integer height h <= G)")
    return configs


def run_sweep(
    matrices: Mapping[str, np.ndarray],
    configs: Sequence[PackConfig],
    *,
    jobs: int | None = None,
    ray_address: str | None = None,
    per_layer: bool = False,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Pack every layer at every config; one total row per config (plus one per layer if `per_layer`)."""
    tasks = [
        Task((index, name), name, matrix, config)
        for index, config in enumerate(configs)
        for name, matrix in matrices.items()
    ]
    results = run_tasks(tasks, jobs=jobs, ray_address=ray_address, progress=progress)
    rows: list[dict[str, Any]] = []
    for index, config in enumerate(configs):
        reports = [results[(index, name)].report() for name in matrices]
        point = {
            "method": config.method,
            "group": config.group if config.method in ("tight", "nm") else "",
            "height": config.height if config.method in ("tight", "nm") else "",
            "tile": config.tile,
            "sparsity": "" if config.sparsity is None else config.sparsity,
            **_cc_variant(config),
        }
        total = total_report(reports)
        rows.append(
            {
                **point,
                "layer": "TOTAL",
                "K": "",
                "N": "",
                **{field: total[field] for field in CSV_FIELDS if field in total},
            }
        )
        if per_layer:
            for report in reports:
                rows.append(
                    {
                        **point,
                        "layer": report["name"],
                        "dense_slots": report["K"] * report["N"],
                        **{
                            field: report[field]
                            for field in CSV_FIELDS
                            if field in report and field not in point
                        },
                    }
                )
    return rows


def _cc_variant(config: PackConfig) -> dict[str, Any]:
    """Column combining's variant columns (`alpha`, `gamma`, `merge`, `section`); blank for other methods."""
    if config.method != "column-combining":
        return {"alpha": "", "gamma": "", "merge": "", "section": ""}
    section = "" if config.section is None else config.section
    return {"alpha": config.alpha, "gamma": config.gamma, "merge": config.merge, "section": section}


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV text with the fixed header `CSV_FIELDS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {k: (None if v == "" else v) for k, v in row.items() if k in CSV_FIELDS}
        typed = SweepRow.dump(cells)  # a wrong type is our bug; an empty cell is none
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in typed.items()})
    return buffer.getvalue()


def write_csv_atomic(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the sweep CSV to `path` atomically (all or nothing)."""
    text = rows_to_csv(rows)
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text(text)


def read_sweep_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a sweep CSV (checked for the sweep header)."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"method", "compression_rate"} <= set(reader.fieldnames):
            raise TightCompressError(f"{path} is not a tightcompress sweep CSV (header {reader.fieldnames})")
        return list(reader)
