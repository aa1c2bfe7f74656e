"""Annealing knobs on a whole zoo model: gap to the floor against the budget cap, column-move share and t0.

Packs every layer of ResNet-50 (90 %, tight G=32, h=3, C=32, as `pack --zoo resnet50`) with `pack_layers`
(2 workers) for each setting given, with `AnnealConfig`'s budget cap, `col_move_prob` and `t0_scale`
replaced, and prints one line per setting: wall time of the packing (no process start), dropped |w|, the
floor, the gap, and the moves run. How the defaults of `AnnealConfig` were chosen (RESULTS_floor.md).

    python benchmarks/bench_zoo_budget.py cap=150000,cmp=0.05,t0=0.03 cap=450000,cmp=0.2,t0=0.1
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from tightcompress.api import PackConfig
from tightcompress.parallel import pack_layers
from tightcompress.permute import search
from tightcompress.zoo import zoo_matrices


def run(cap: int, column_share: float, start_scale: float) -> str:
    """Pack ResNet-50 with these knobs; one line of results."""
    default = search.AnnealConfig

    @dataclasses.dataclass(frozen=True)
    class Knobs(default):
        col_move_prob: float = column_share
        t0_scale: float = start_scale

        def budget(self, K: int, n_tiles: int) -> int:
            if self.iterations is not None:
                return int(self.iterations)
            return int(min(max(700 * K * n_tiles, 20_000), cap))

    search.AnnealConfig = Knobs  # read by `api._pack_searched` through the module
    try:
        import tightcompress.api as api

        api.AnnealConfig = Knobs
        matrices, _, _ = zoo_matrices("resnet50", seed=0, kinds="all", checkpoint=None)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        config = PackConfig(method="tight", group=32, height=3, tile=32, sparsity=0.9)
        packed = pack_layers(matrices, config, jobs=2)
        wall = time.perf_counter() - start
    finally:
        search.AnnealConfig = default
        api.AnnealConfig = default
    reports = [p.report() for p in packed.values()]
    magnitude = sum(r["input_magnitude"] for r in reports)
    dropped = sum(r["dropped_magnitude_fraction"] * r["input_magnitude"] for r in reports) / magnitude
    floor = sum(r["lower_bound_dropped_magnitude_fraction"] * r["input_magnitude"] for r in reports)
    floor /= magnitude
    moves = sum(r["search_iterations"] for r in reports)
    return (
        f"cap={cap} cmp={column_share} t0={start_scale}: pack wall {wall:.1f} s (load {load:.1f}), "
        f"dropped {100 * dropped:.3f} % floor {100 * floor:.3f} % gap {100 * (dropped - floor):.3f} points, "
        f"moves {moves:,}"
    )


def main() -> int:
    for setting in sys.argv[1:] or ["cap=150000,cmp=0.05,t0=0.03"]:
        knobs = dict(item.split("=") for item in setting.split(","))
        print(run(int(knobs["cap"]), float(knobs["cmp"]), float(knobs["t0"])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
