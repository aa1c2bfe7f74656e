"""How the annealing defaults were chosen: dropped |w| by starting temperature and move budget.

    python benchmarks/bench_anneal_schedule.py [--seeds 3]

576 x 64 Gaussian matrices at 95 % sparsity (seeds 0..n-1), tight G=32, h=2, C=64, capped objective.
Prints the dropped magnitude (percent of kept-before-packing |w|) next to the capacity floor.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tightcompress.format.build import column_capacity_floor, uniform_group_offsets
from tightcompress.permute import AnnealConfig, search_permutation
from tightcompress.prune import magnitude_prune

T0_SCALES = (1.0, 0.3, 0.1, 0.03)
BUDGETS = (0, 100_000, 400_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    offsets = uniform_group_offsets(576, 32)
    matrices = [
        magnitude_prune(np.random.default_rng(s).standard_normal((576, 64)), 0.95) for s in range(args.seeds)
    ]
    totals = [np.abs(W).sum() for W in matrices]
    floors = [
        100 * column_capacity_floor(np.abs(W), 18 * 2) / total
        for W, total in zip(matrices, totals, strict=True)
    ]
    print("floor:", ", ".join(f"{f:.4f}" for f in floors))
    print("| t0 scale | " + " | ".join(f"{b:,} moves" for b in BUDGETS) + " |")
    print("|---|" + "---|" * len(BUDGETS))
    for t0 in T0_SCALES:
        cells = []
        for budget in BUDGETS:
            dropped = [
                100
                * search_permutation(
                    W,
                    group_offsets=offsets,
                    tile=64,
                    height_cap=2,
                    config=AnnealConfig(budget, seed=0, t0_scale=t0),
                ).final_cost
                / total
                for W, total in zip(matrices, totals, strict=True)
            ]
            cells.append(", ".join(f"{d:.4f}" for d in dropped))
        print(f"| {t0} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
