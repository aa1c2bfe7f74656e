"""How the annealing defaults were chosen: dropped |w| by starting temperature and move budget.

    python benchmarks/bench_anneal_schedule.py [--seeds 3]

576 x 64 Gaussian matrices at 95 % sparsity (seeds 0..n-1), tight G=32, h=2, C=64, capped objective.
Prints the dropped magnitude (percent of kept-before-packing |w|) next to the capacity floor, then what
an early stop on stall (`AnnealConfig.patience`, moves without a new best) costs at the default schedule.

    python benchmarks/bench_anneal_schedule.py --resnet50 layer2.0.conv2,layer3.0.conv2

instead runs the patience table on ResNet-50 conv layers (zoo seeded init, 90 % sparsity, G=32, h=3, C=32,
the `tightcompress pack --zoo` setting) at their default budgets.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from tightcompress.format.build import column_capacity_floor, uniform_group_offsets
from tightcompress.permute import AnnealConfig, search_permutation
from tightcompress.prune import magnitude_prune

T0_SCALES = (1.0, 0.3, 0.1, 0.03)
BUDGETS = (0, 100_000, 400_000)
PATIENCES = (None, 400_000, 200_000, 100_000, 50_000, 20_000)


def main() -> int:
    """Print the schedule table (t0 scale x budget) and the early-stop table (patience)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--resnet50", metavar="LAYERS", help="comma-separated conv layers: patience table only"
    )
    args = parser.parse_args()
    if args.resnet50:
        return resnet50_patience(args.resnet50.split(","))
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

    budget = AnnealConfig().budget(576, 1)
    print(f"\nEarly stop on stall at the default schedule ({budget:,} moves, t0 scale 0.1):")
    print("| patience | dropped \\|w\\| (%) | moves run | seconds (sum over seeds) |")
    print("|---|---|---|---|")
    for patience in PATIENCES:
        results = []
        start = time.perf_counter()
        for W in matrices:
            config = AnnealConfig(seed=0, patience=patience)
            results.append(search_permutation(W, group_offsets=offsets, tile=64, height_cap=2, config=config))
        seconds = time.perf_counter() - start
        dropped = ", ".join(f"{100 * r.final_cost / t:.4f}" for r, t in zip(results, totals, strict=True))
        moves = ", ".join(f"{r.iterations:,}" for r in results)
        print(f"| {patience or 'off'} | {dropped} | {moves} | {seconds:.1f} |")
    return 0


def resnet50_patience(layers: list[str]) -> int:
    """Dropped |w| and moves run per patience on ResNet-50 layers, each at its default budget."""
    from tightcompress.zoo import zoo_matrices

    matrices, _, _ = zoo_matrices("resnet50", kinds="conv", seed=0)
    print("| layer | K x N | patience | dropped \\|w\\| (%) | greedy start (%) | moves run | seconds |")
    print("|---|---|---|---|---|---|---|")
    for layer in layers:
        W = magnitude_prune(matrices[f"{layer}.weight"], 0.9)
        offsets = uniform_group_offsets(W.shape[0], 32)
        total = float(np.abs(W.astype(np.float64)).sum())
        for patience in PATIENCES:
            start = time.perf_counter()
            result = search_permutation(
                W, group_offsets=offsets, tile=32, height_cap=3, config=AnnealConfig(patience=patience)
            )
            print(
                f"| {layer} | {W.shape[0]} x {W.shape[1]} | {patience or 'off'} | "
                f"{100 * result.final_cost / total:.4f} | {100 * result.initial_cost / total:.4f} | "
                f"{result.iterations:,} | {time.perf_counter() - start:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
