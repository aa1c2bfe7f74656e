"""Reproduce the demo table over several seeds: run `tightcompress demo` per seed, time it, summarise.

    python benchmarks/bench_demo.py --seeds 0,1,2 --json benchmarks/demo.json [--workdir DIR] [-- OPTIONS]

Each seed is a whole demo run (its own data split, dense model, pruning and fine-tuning) from an empty
cache unless `--workdir` is given (then `DIR/seed-S`), so the wall times include training. Printed: each
seed's table, then per method the mean and sample standard deviation of accuracy, and the paired
per-seed differences between tight and each baseline (the same split and dense model, so the pairing
removes most of the split-to-split variance). Options after `--` go to `tightcompress demo`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tightcompress.cli.main import main as cli_main
from tightcompress.utils.atomic import write_json_atomic


def run_seed(seed: int, workdir: Path, extra: list[str]) -> dict:
    """One demo run through the CLI: its rows and wall seconds."""
    table = workdir / "table.json"
    command = ["demo", "--seed", str(seed), "--workdir", str(workdir), "--json", str(table), "--quiet"]
    start = time.perf_counter()
    code = cli_main([*command, *extra])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"demo failed for seed {seed} (exit {code})")
    result = json.loads(table.read_text())
    return {
        "seed": seed,
        "seconds": seconds,
        "rows": result["rows"],
        "versus": result.get("tight_vs_column_combining"),
    }


def summarise(runs: list[dict]) -> dict:
    """Mean/std accuracy per method and paired tight-minus-baseline differences over the runs."""
    methods = [row["method"] for row in runs[0]["rows"]]
    by_method = {m: [next(r for r in run["rows"] if r["method"] == m) for run in runs] for m in methods}

    def spread(values: list[float]) -> dict:
        return {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values,
        }

    summary = {
        m: {
            "accuracy": spread([r["accuracy"] for r in rows]),
            "accuracy_drop": spread([r["accuracy_drop"] for r in rows]),
            "compression_rate": spread([r["compression_rate"] for r in rows]),
        }
        for m, rows in by_method.items()
    }
    paired = {}
    if "tight" in by_method:
        for m in methods:
            if m not in ("dense", "tight"):
                diffs = [
                    t["accuracy"] - b["accuracy"]
                    for t, b in zip(by_method["tight"], by_method[m], strict=True)
                ]
                paired[f"tight - {m}"] = {**spread(diffs), "tight_above": sum(d > 0 for d in diffs)}
    return {"methods": summary, "paired": paired}


def main(argv: list[str] | None = None) -> int:
    """Run the seeds, print the tables and the summary, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--json", required=True, help="where to write {runs, summary, command}")
    parser.add_argument("--workdir", help="cache root (default: a fresh temporary one per seed)")
    parser.add_argument("extra", nargs="*", help="further `tightcompress demo` options (after --)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="tc-demo-") as tmp:
        root = Path(args.workdir or tmp)
        for seed in seeds:
            run = run_seed(seed, root / f"seed-{seed}", args.extra)
            runs.append(run)
            print(f"seed {seed} ({run['seconds']:.0f} s wall):")
            for row in run["rows"]:
                print(
                    f"  {row['method']:<18} {row['compression_rate']:6.2f}x {row['accuracy']:6.2f} % "
                    f"({-row['accuracy_drop']:+.2f} pp)"
                )
    summary = summarise(runs)
    print(f"over seeds {args.seeds}: mean accuracy (sample std)")
    for method, stats in summary["methods"].items():
        acc, rate = stats["accuracy"], stats["compression_rate"]
        print(f"  {method:<18} {rate['mean']:6.2f}x {acc['mean']:6.2f} % (std {acc['std']:.2f})")
    for pair, stats in summary["paired"].items():
        print(
            f"  {pair}: mean {stats['mean']:+.2f} pp (std {stats['std']:.2f}), "
            f"tight above on {stats['tight_above']}/{len(seeds)} seeds"
        )
    command = "python benchmarks/bench_demo.py --seeds " + args.seeds + "".join(f" {e}" for e in args.extra)
    write_json_atomic(args.json, {"runs": runs, "summary": summary, "command": command})
    return 0


if __name__ == "__main__":
    sys.exit(main())
