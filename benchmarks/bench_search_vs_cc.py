"""Tight permutation search vs column combining on the same 576 x 64 matrix (speed and quality).

The matrix is ResNet-50's `layer1.0.conv2` (a 64 -> 64 3x3 conv: K = 64*9 = 576, N = 64) from the zoo's
seeded Kaiming init. It is magnitude-pruned to 90 % ONCE (common preprocessing of both methods, timed and
printed separately); then every method is timed on `pack()` of the pre-pruned matrix (search plus building
the packed format), after one warm-up call so numba's compile/cache load is not counted. A time is the
median of `--repeats` runs (more for calls under 10 ms, so each median covers at least ~0.3 s).

Sweeps column combining (the authors' merge rule, the default) over alpha in {8, 16, 32} x gamma in
{0.1, 0.2, 0.5, 1, 2} and tight over a few (G, h) at annealing budgets 0 (greedy start only), 1000, 5000
moves and the default. For each column-combining
setting it prints the fastest tight setting with a rate >= CC's and a dropped |w| < CC's, the speed ratio,
and whether the issue-6 claim (>= 50x faster at better quality) holds there. Not a timed test: run by hand.

    python benchmarks/bench_search_vs_cc.py --repeats 7
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from tightcompress import pack
from tightcompress.prune.magnitude import magnitude_prune
from tightcompress.zoo import zoo_matrices

try:
    from bench_zoo import machine
except ImportError:  # run from elsewhere
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_zoo import machine

CC_SETTINGS = [(alpha, gamma) for alpha in (8, 16, 32) for gamma in (0.1, 0.2, 0.5, 1.0, 2.0)]
# (G, h) with rates K / (ceil(K / G) * h) from 8x to 24x on K = 576, so every CC setting has tight shapes
# near its rate.
TIGHT_SHAPES = [
    (8, 1), (16, 1), (16, 2), (24, 1), (32, 1), (32, 2), (32, 3), (32, 4), (48, 3), (60, 4), (64, 3), (64, 4),
]  # fmt: skip
BUDGETS: list[int | None] = [0, 1000, 5000, None]  # None: AnnealConfig's default budget
SPEEDUP_TARGET = 50.0


@dataclass(frozen=True)
class Row:
    """One timed setting: its label, median seconds, compression rate and dropped |w| fraction."""

    label: str
    seconds: float
    rate: float
    dropped: float


def timed(func, repeats: int, min_total: float = 0.3) -> float:
    """Median seconds of `func()` after a warm-up; fast calls are repeated until ~`min_total` s is covered."""
    start = time.perf_counter()
    func()
    first = time.perf_counter() - start
    runs = max(repeats, min(200, math.ceil(min_total / max(first, 1e-6))))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(weights: np.ndarray, label: str, repeats: int, **options) -> Row:
    """Time `pack(weights, **options)` and read its rate and dropped |w| fraction."""
    seconds = timed(lambda: pack(weights, **options), repeats)
    packed = pack(weights, **options)
    return Row(label, seconds, packed.compression_rate, packed.report()["dropped_magnitude_fraction"])


def main() -> int:
    """Print the two sweeps, then one verdict line per column-combining setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--tile", type=int, default=32)
    args = parser.parse_args()
    matrices, _, _ = zoo_matrices("resnet50", kinds="conv", seed=0)
    dense = matrices["layer1.0.conv2.weight"]
    print("machine:", machine())
    print(
        f"matrix: resnet50 layer1.0.conv2.weight, K x N = {dense.shape[0]} x {dense.shape[1]}, "
        f"{dense.dtype}, sparsity {args.sparsity}, C = {args.tile}"
    )
    prune_seconds = timed(lambda: magnitude_prune(dense, args.sparsity), args.repeats)
    W = magnitude_prune(dense, args.sparsity)
    print(f"magnitude pruning (once, not counted below): {prune_seconds * 1e3:.2f} ms")

    print("\ncolumn combining (authors' merge), pack() of the pruned matrix (dropped: fraction of |w|):")
    cc_rows = []
    for alpha, gamma in CC_SETTINGS:
        row = measure(
            W, f"alpha={alpha} gamma={gamma}", args.repeats, method="column-combining", alpha=alpha,
            gamma=gamma, tile=args.tile,
        )  # fmt: skip
        cc_rows.append(row)
        print(
            f"  {row.label:22s} {row.seconds * 1e3:8.2f} ms  rate {row.rate:6.2f}  dropped {row.dropped:.4f}"
        )

    print("\ntight, pack() of the pruned matrix (dropped: fraction of |w|):")
    tight_rows = []
    for group, height in TIGHT_SHAPES:
        for budget in BUDGETS:
            label = f"G={group} h={height} iterations={'default' if budget is None else budget}"
            row = measure(
                W, label, args.repeats, method="tight", group=group, height=height, tile=args.tile,
                iterations=budget,
            )  # fmt: skip
            tight_rows.append(row)
            print(
                f"  {label:32s} {row.seconds * 1e3:8.2f} ms  rate {row.rate:6.2f}  dropped {row.dropped:.4f}"
            )

    target = f"{SPEEDUP_TARGET:g}x"
    print(f"\nper column-combining setting: fastest tight with rate >= and dropped |w| < (target {target})")
    met = 0
    for cc in cc_rows:
        better = [t for t in tight_rows if t.rate >= cc.rate and t.dropped < cc.dropped]
        head = f"  cc {cc.label} ({cc.seconds * 1e3:.1f} ms, rate {cc.rate:.2f}, dropped {cc.dropped:.4f})"
        if not better:
            print(f"{head}: NO tight setting here has rate >= {cc.rate:.2f} and less dropped |w| -> NOT met")
            continue
        best = min(better, key=lambda t: t.seconds)
        ratio = cc.seconds / best.seconds
        met += ratio >= SPEEDUP_TARGET
        print(
            f"{head}\n    vs tight {best.label} ({best.seconds * 1e3:.2f} ms, rate {best.rate:.2f}, "
            f"dropped {best.dropped:.4f}): {ratio:.1f}x faster, "
            f"{cc.dropped / max(best.dropped, 1e-12):.2f}x less dropped |w| -> "
            f"{'met' if ratio >= SPEEDUP_TARGET else 'NOT met'}"
        )
    print(
        f"claim ({target} faster at rate >= and less dropped |w|) met for {met} of {len(cc_rows)} cc settings"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
