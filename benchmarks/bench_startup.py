"""Start-up time of the command line: median wall time of `tightcompress ARGS` in fresh processes.

    python benchmarks/bench_startup.py --repeats 5 [--src OTHER/src]

Each run is a new interpreter (`python -m tightcompress.cli.main ARGS`), so the figure is what a user
waits for; `python -c pass` is timed alongside as the floor of any Python command on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--version"], ["pack", "--help"], ["report", "--help"], ["--help"]]


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": args.src}
    runs = [[sys.executable, "-c", "pass"]] + [
        [sys.executable, "-m", "tightcompress.cli.main", *command] for command in COMMANDS
    ]
    times: dict[str, list[float]] = {" ".join(r[3:]) or "python -c pass": [] for r in runs}
    for _ in range(args.repeats):  # interleaved, so load changes hit every command alike
        for run in runs:
            times[" ".join(run[3:]) or "python -c pass"].append(wall(run, env))
    print(f"src {args.src}, load {os.getloadavg()[0]:.1f}, median of {args.repeats}")
    for name, values in times.items():
        print(f"  {name:<20} {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main()
