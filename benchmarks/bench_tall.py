"""Scale of the permutation search on tall and wide layers (issue 25, cause 10).

Times `tightcompress pack` end to end (process start, compiled kernels from the cache) on:
- tall K x 1 layers, 90 % sparse, tight lossless G=8 (the CLI's defaults): the greedy start was
  O(K^2 / G) and took 99 % of the time (366 s at K = 1e6); it scores a row against a few candidate groups
  above 512 groups now;
- a wide 120 x 6625 dense classifier at G=8, h=4, tight against N:M with one searched channel
  permutation (`--method nm --permute`), whose default budget now does tight's work, not 700 K moves of
  all N columns each.
Median wall of `--repeats` runs; the load average is printed with each line.

    python benchmarks/bench_tall.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def timed_pack(matrix: Path, args: list[str], repeats: int) -> tuple[float, dict]:
    """Median wall seconds of `tightcompress pack matrix args` and the layer's report of the last run."""
    walls = []
    report_path = matrix.with_suffix(".json")
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tightcompress.cli.main",
                "pack",
                str(matrix),
                *args,
                "--json",
                str(report_path),
                "--quiet",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - began)
    return statistics.median(walls), json.loads(report_path.read_text())["layers"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        for K in (10**5, 10**6):
            W = rng.standard_normal((K, 1)).astype(np.float32)
            W[rng.random(W.shape) < 0.9] = 0.0
            path = Path(folder) / f"tall{K}.npy"
            np.save(path, W)
            wall, layer = timed_pack(path, [], options.repeats)
            print(
                f"K={K:>9,} x 1, tight G=8 lossless: {wall:6.2f} s wall "
                f"(search {layer['search_seconds']:.2f} s), {layer['packed_slots']} slots "
                f"(bound {layer['lower_bound_slots']}), load {os.getloadavg()[0]:.1f}"
            )
        W = rng.standard_normal((120, 6625)).astype(np.float32)
        path = Path(folder) / "classifier.npy"
        np.save(path, W)
        for label, args in [
            ("tight", ["--method", "tight"]),
            ("nm --permute", ["--method", "nm", "--permute"]),
        ]:
            wall, layer = timed_pack(path, [*args, "--group", "8", "--height", "4"], options.repeats)
            print(
                f"120 x 6625, {label:>12}, G=8 h=4: {wall:6.2f} s wall "
                f"(search {layer['search_seconds']:.2f} s, {layer['search_iterations']} moves), "
                f"dropped |w| {100 * layer['dropped_magnitude_fraction']:.2f} %, "
                f"load {os.getloadavg()[0]:.1f}"
            )


if __name__ == "__main__":
    main()
