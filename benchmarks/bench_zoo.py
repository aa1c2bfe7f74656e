"""Wall time and gap to the floor of packing a zoo model with `tightcompress pack --zoo` (not a timed test).

Default: ResNet-50 (every conv and the fc layer, as `pack --zoo` does; `--zoo-layers conv` for convs only),
90 % sparsity, tight G=32, h=3, C=32, the default annealing budget per layer (no `--iterations`:
`AnnealConfig.budget`; a layer stops early once it reaches its floor), all cores. The gap is the dropped
|w| fraction less the floor (`lower_bound_dropped_magnitude_fraction`, summed over layers by magnitude).
`--iterations 20000` gives the fixed 20k-move budget of earlier measurements, for comparison.
Runs the real command line in a subprocess (so process start, imports, JIT cache load, pool start and
writing the report are all counted) several times and prints the median, with the machine it ran on.

    python benchmarks/bench_zoo.py --repeats 3
    python benchmarks/bench_zoo.py --repeats 3 --iterations 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def machine() -> str:
    """One line naming the CPU, cores and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, load avg {os.getloadavg()[0]:.1f}"


def main() -> int:
    """Run the benchmark and print one line per run plus the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--iterations", type=int, default=None, help="annealing moves per layer (default: the default budget)"
    )
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--height", default="3")
    parser.add_argument("--tile", type=int, default=32)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--zoo-layers", choices=("all", "conv"), default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, "report.json")
        command = [
            sys.executable, "-m", "tightcompress.cli.main", "pack", "--zoo", args.zoo,
            "--zoo-layers", args.zoo_layers, "--sparsity", str(args.sparsity), "--method", "tight",
            "--group", str(args.group),
            "--height", args.height, "--tile", str(args.tile), "--json", report_path, "--quiet",
        ]  # fmt: skip
        if args.iterations is not None:
            command += ["--iterations", str(args.iterations)]
        if args.jobs:
            command += ["--jobs", str(args.jobs)]
        print("machine:", machine())
        print("command:", " ".join(["tightcompress", *command[3:]]).replace(report_path, "REPORT.json"))
        walls, gaps = [], []
        for run in range(args.repeats):
            load = os.getloadavg()[0]
            start = time.perf_counter()
            subprocess.run(command, check=True)
            walls.append(time.perf_counter() - start)
            with open(report_path) as handle:
                report = json.load(handle)
            total = report["total"]
            moves = sum(int(layer.get("search_iterations", 0)) for layer in report["layers"])
            magnitude = sum(layer["input_magnitude"] for layer in report["layers"])
            floor = sum(
                layer["lower_bound_dropped_magnitude_fraction"] * layer["input_magnitude"]
                for layer in report["layers"]
            ) / max(magnitude, 1e-300)
            gaps.append(total["dropped_magnitude_fraction"] - floor)
            print(
                f"run {run + 1}: {walls[-1]:.1f} s wall, {total['layers']} layers, "
                f"rate {total['compression_rate']:.2f}x, "
                f"dropped |w| {total['dropped_magnitude_fraction']:.2%} (floor {floor:.2%}, "
                f"gap {100 * gaps[-1]:.3f} points), "
                f"sum of per-layer seconds {total['seconds']:.1f}, annealing moves run {moves:,}, "
                f"load avg before {load:.1f}"
            )
        print(
            f"median wall: {statistics.median(walls):.1f} s over {len(walls)} runs (min {min(walls):.1f}); "
            f"median gap to the floor {100 * statistics.median(gaps):.3f} points"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
