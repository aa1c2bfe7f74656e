"""Tight permutation search vs column combining on the same 576 x 64 matrix (speed and quality).

The matrix is ResNet-50's `layer1.0.conv2` (a 64 -> 64 3x3 conv: K = 64*9 = 576, N = 64) from the zoo's
seeded Kaiming init, magnitude-pruned to 90 %. Each method is timed on the whole `pack()` call (search plus
building the packed format), after one warm-up call so numba's compile/cache load is not counted; the
median of `--repeats` runs is printed with the compression rate and the dropped |w| fraction. Pairs are
compared at equal or higher rate for tight. Not a timed test: run it by hand.

    python benchmarks/bench_search_vs_cc.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from tightcompress import pack
from tightcompress.zoo import zoo_matrices

try:
    from bench_zoo import machine
except ImportError:  # run from elsewhere
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from bench_zoo import machine


def timed(weights, repeats: int, **options) -> tuple[float, object]:
    """Median seconds of `pack(weights, **options)` over `repeats` runs after a warm-up, and the result."""
    packed = pack(weights, **options)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        packed = pack(weights, **options)
        times.append(time.perf_counter() - start)
    return statistics.median(times), packed


def main() -> int:
    """Print one line per method and the speed / quality ratio of each pair."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--tile", type=int, default=32)
    args = parser.parse_args()
    matrices, _, _ = zoo_matrices("resnet50", kinds="conv", seed=0)
    W = matrices["layer1.0.conv2.weight"]
    print("machine:", machine())
    print(
        f"matrix: resnet50 layer1.0.conv2.weight, K x N = {W.shape[0]} x {W.shape[1]}, "
        f"sparsity {args.sparsity}"
    )
    common = {"sparsity": args.sparsity, "tile": args.tile}
    # (column-combining options, tight options at an equal or higher rate)
    pairs = [
        ({"alpha": 8, "gamma": 0.5}, {"group": 16, "height": 2}),
        ({"alpha": 16, "gamma": 0.5}, {"group": 32, "height": 3}),
    ]
    for cc_opts, tight_opts in pairs:
        cc_time, cc = timed(W, args.repeats, method="column-combining", **cc_opts, **common)
        cc_drop = cc.report()["dropped_magnitude_fraction"]
        print(
            f"column-combining {cc_opts}: {cc_time * 1e3:.1f} ms, rate {cc.compression_rate:.2f}, "
            f"dropped |w| {cc_drop:.4f}"
        )
        for iterations in (20000, None):
            t_time, tight = timed(
                W, args.repeats, method="tight", iterations=iterations, **tight_opts, **common
            )
            drop = tight.report()["dropped_magnitude_fraction"]
            budget = tight.report()["search_iterations"]
            print(
                f"  tight {tight_opts} iterations={iterations or 'default'} ({budget} moves): "
                f"{t_time * 1e3:.1f} ms, rate {tight.compression_rate:.2f}, dropped |w| {drop:.4f} -> "
                f"speed ratio cc/tight {cc_time / t_time:.2f}x, dropped-|w| ratio cc/tight "
                f"{cc_drop / max(drop, 1e-12):.1f}x, "
                f"rate tight/cc {tight.compression_rate / cc.compression_rate:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
