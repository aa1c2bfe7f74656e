"""Our column combining (merge="authors") against the authors' own code: same groups, and how much faster.

For every row of `tests/data/column_combining_reference.json` (the authors' `pack_matrix` run on seeded
matrices, with its wall time on this project's 2-core machine), the matrix is rebuilt by the file's
recipe, then `pack(W, method="column-combining", alpha, gamma, tile=N)` is timed (median of `--repeats`
runs after a warm-up, so numba's compile/cache load is not counted; the pruning is not timed). Prints
groups and dropped |w| next to the authors' and the speed ratio `reference_seconds / ours`. Then times
`pack()` of all 54 layers of ResNet-50 (zoo seeded init, pruned to 90 % once, alpha 16, gamma 0.5, C=32,
one process), median of `--model-repeats` runs.

    python benchmarks/bench_cc_reference.py [--repeats 7] [--model-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from tightcompress import pack
from tightcompress.prune import magnitude_prune
from tightcompress.zoo import zoo_matrices

try:
    from bench_zoo import machine
except ImportError:  # run from elsewhere
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_zoo import machine

REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data" / "column_combining_reference.json"


def median_seconds(func, repeats: int) -> float:
    """Median wall time of `func()` over `repeats` calls after one warm-up call."""
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    """One line per reference row, then the slowest speed ratio per matrix size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model-repeats", type=int, default=3)
    args = parser.parse_args()
    rows = json.loads(REFERENCE.read_text())["rows"]
    print("machine:", machine())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(
        "| matrix | seed | S | alpha | gamma | groups (theirs) | dropped |w| (theirs) | ours | theirs | x |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {}
    equal = 0
    for row in rows:
        W = np.random.default_rng(row["seed"]).standard_normal((row["K"], row["N"])).astype(np.float32)
        W = magnitude_prune(W, row["sparsity"])
        options = {
            "method": "column-combining",
            "alpha": row["alpha"],
            "gamma": row["gamma"],
            "tile": row["N"],
        }
        seconds = median_seconds(lambda W=W, options=options: pack(W, **options), args.repeats)
        report = pack(W, **options).report()
        equal += report["n_groups"] == row["groups"]
        ratio = row["reference_seconds"] / seconds
        ratios.setdefault(row["matrix"], []).append(ratio)
        print(
            f"| {row['matrix']} | {row['seed']} | {row['sparsity']} | {row['alpha']} | {row['gamma']} | "
            f"{report['n_groups']} ({row['groups']}) | {report['dropped_magnitude_fraction']:.4f} "
            f"({row['dropped_magnitude_fraction']:.4f}) | {seconds * 1e3:.2f} ms | "
            f"{row['reference_seconds']:.2f} s | {ratio:,.0f}x |"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"same number of groups as the authors' code on {equal} of {len(rows)} rows")
    for matrix, values in ratios.items():
        print(
            f"{matrix}: speed ratio min {min(values):,.0f}x, median {statistics.median(values):,.0f}x "
            f"over {len(values)} rows"
        )
    matrices, _, _ = zoo_matrices("resnet50", seed=0)
    pruned = [magnitude_prune(matrix, 0.9) for matrix in matrices.values()]
    options = {"method": "column-combining", "alpha": 16, "gamma": 0.5, "tile": 32}
    seconds = median_seconds(lambda: [pack(W, **options) for W in pruned], args.model_repeats)
    print(
        f"resnet50, all {len(pruned)} layers at 90 %, alpha 16, gamma 0.5, C=32: pack() of every layer "
        f"{seconds:.2f} s (median of {args.model_repeats}, one process; load {os.getloadavg()[0]:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
