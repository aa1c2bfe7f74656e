"""Column combining's two merge rules side by side: which drops less |w| at a given rate, and where.

`merge="authors"` (the authors' first-group, densest-union rule, the default) and `merge="least-overlap"`
(the project's earlier rule) are each run over an alpha x gamma grid on a few matrices: the 576 x 64
Gaussian at 90 % and 95 % (bench_pack's matrix) and two ResNet-50 convs of the zoo's seeded init at 90 %
(larger layers are left out: the least-overlap merge takes about a minute per setting at K = 2304).
For every target rate it prints each rule's least dropped |w| among its settings with a rate >= the
target, and how many points of the joint rate / dropped |w| frontier each rule holds. The pipeline's
format-aware allocation tries both rules, so the column-combining baseline is the stronger at each rate.

    python benchmarks/bench_cc_merges.py
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import numpy as np

from tightcompress import pack
from tightcompress.prune import magnitude_prune
from tightcompress.zoo import zoo_matrices

try:
    from bench_zoo import machine
except ImportError:  # run from elsewhere
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_zoo import machine

ALPHAS = (4, 8, 12, 16, 20, 24, 32, 48, 64)
GAMMAS = (0.0, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
MERGES = ("authors", "least-overlap")
TARGETS = (4, 6, 8, 10, 12, 16, 20, 24, 32)
ZOO_LAYERS = ("layer1.0.conv2.weight", "layer2.0.conv1.weight")


def matrices() -> dict[str, np.ndarray]:
    """The pruned matrices compared, by a short name."""
    out = {}
    for sparsity in (0.9, 0.95):
        gauss = np.random.default_rng(0).standard_normal((576, 64)).astype(np.float32)
        out[f"gaussian 576x64 @ {sparsity:.0%}"] = magnitude_prune(gauss, sparsity)
    zoo, _, _ = zoo_matrices("resnet50", kinds="conv", seed=0)
    for name in ZOO_LAYERS:
        K, N = zoo[name].shape
        out[f"resnet50 {name.removesuffix('.weight')} {K}x{N} @ 90%"] = magnitude_prune(zoo[name], 0.9)
    return out


def main() -> int:
    """One table per matrix: best dropped |w| at rate >= target for each merge rule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    print("machine:", machine())
    wins = dict.fromkeys(MERGES, 0)
    for name, W in matrices().items():
        points = []  # (rate, dropped, merge, alpha, gamma)
        for merge, alpha, gamma in itertools.product(MERGES, ALPHAS, GAMMAS):
            options = {"alpha": alpha, "gamma": gamma, "merge": merge, "tile": W.shape[1]}
            report = pack(W, method="column-combining", **options).report()
            points.append(
                (report["compression_rate"], report["dropped_magnitude_fraction"], merge, alpha, gamma)
            )
        frontier, best_rate = [], -1.0
        for point in sorted(points, key=lambda p: (p[1], -p[0])):
            if point[0] > best_rate + 1e-9:
                frontier.append(point)
                best_rate = point[0]
        held = {merge: sum(p[2] == merge for p in frontier) for merge in MERGES}
        print(f"\n{name}: joint frontier points held: " + ", ".join(f"{m} {n}" for m, n in held.items()))
        print("| rate >= | authors: rate, dropped (alpha, gamma) | least-overlap: same | less dropped |")
        print("|---:|---|---|---|")
        for target in TARGETS:
            cells, best = [], {}
            for merge in MERGES:
                fits = [p for p in points if p[2] == merge and p[0] >= target]
                if not fits:
                    cells.append("none")
                    continue
                rate, dropped, _, alpha, gamma = min(fits, key=lambda p: (p[1], -p[0]))
                best[merge] = dropped
                cells.append(f"{rate:.2f}x, {dropped:.2%} ({alpha}, {gamma:g})")
            if len(best) == 2 and abs(best["authors"] - best["least-overlap"]) < 1e-12:
                winner = "tie"
            else:
                winner = min(best, key=best.get) if best else "-"
            wins[winner] = wins.get(winner, 0) + 1
            print(f"| {target}x | {cells[0]} | {cells[1]} | {winner} |")
    print(f"\ntargets won: {wins}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
