"""Subword-level vs word-level tight compression on the embedded demo CNN (issue 5).

    python benchmarks/bench_subword_demo.py --workdir /tmp/sw-demo --seeds 0 --json /tmp/sw-demo.json

Per seed: the cached dense demo model (`pipeline.demo.dense_model`), then `run_subword_row`
(`compress_model` at subword granularity) at the bit rate (from the dense model, and with
`--starts dense,unstructured` also from the word-level unstructured stage),
then word-level tight (`compress_model`, `CompressConfig(method="tight", rate=...)`) at the same rate.
Every training step of both distils from the frozen dense model with weight `--distill` (default 0.5, the
pipelines' default; 0 turns it off in both), as the demo does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from tightcompress.pipeline.compress import CompressConfig, compress_model, restore, unstructured_stage
from tightcompress.pipeline.data import load_mnist
from tightcompress.pipeline.demo import DemoConfig, dense_model, run_subword_row
from tightcompress.pipeline.models import DemoCNN
from tightcompress.pipeline.train import frozen_copy


def main() -> int:
    """Run the comparison and print/write the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/sw-demo")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rate", type=float, default=24.0)
    parser.add_argument(
        "--starts",
        default="dense",
        help="comma list of dense, unstructured, unstructured-lean (from the unstructured stage with one "
        "pruning step and no pruning-phase epochs: the word-level fine-tuning budget)",
    )
    parser.add_argument("--no-word", action="store_true", help="skip the word-level tight run")
    parser.add_argument(
        "--distill",
        type=float,
        default=CompressConfig.distill,
        help="weight of distillation from the dense model, both granularities (0: off; default 0.5)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--json", help="write all rows here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        demo = DemoConfig(rate=args.rate, seed=seed)
        data = load_mnist(demo.test_fraction, seed)
        dense = dense_model(data, demo, workdir, quiet=True)
        base = replace(CompressConfig(), method="tight", rate=args.rate, seed=seed, distill=args.distill)
        model = DemoCNN(in_channels=1, n_classes=data.n_classes)
        restore(model, dense)
        teacher = frozen_copy(model)  # the dense model teaches every run of this seed, as in the demo
        unstructured = None
        if "unstructured" in args.starts or not args.no_word:
            t0 = time.perf_counter()
            unstructured = unstructured_stage(
                model, data, base, workdir=workdir, resume=True, quiet=True, teacher=teacher
            )
            unstructured_seconds = time.perf_counter() - t0
        rows.append({"seed": seed, "method": "dense", "accuracy": dense.accuracy})
        for start in args.starts.split(","):
            model = DemoCNN(in_channels=1, n_classes=data.n_classes)
            t0 = time.perf_counter()
            row, result = run_subword_row(
                model,
                data,
                dense,
                unstructured,
                bit_rate=args.rate,
                seed=seed,
                workdir=workdir,
                resume=False,
                quiet=True,
                from_unstructured=start.startswith("unstructured"),
                config=replace(base, prune_rounds=1, prune_epochs=0.0)
                if start == "unstructured-lean"
                else base,
                teacher=teacher,
            )
            seconds = time.perf_counter() - t0
            rows.append(
                {
                    "seed": seed,
                    "start": start,
                    **row,
                    "seconds": seconds,
                    "accuracies": result.report["accuracy"],
                    "choices": result.report["choices"],
                    "seconds_prune_stage": result.report.get("seconds_prune_stage"),
                    "seconds_plan_and_pack": result.report.get("seconds_plan_and_pack"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        if not args.no_word:
            model = DemoCNN(in_channels=1, n_classes=data.n_classes)
            t0 = time.perf_counter()
            result = compress_model(
                model,
                data,
                base,
                workdir=workdir,
                resume=False,
                quiet=True,
                unstructured=unstructured,
                dense_accuracy=dense.accuracy,
                teacher=teacher,
            )
            rep = result.report
            rows.append(
                {
                    "seed": seed,
                    "method": "tight",
                    "compression_rate": rep["compression_rate"],
                    "bit_rate": rep["compression_rate"],
                    "bit_rate_with_index": rep["total"]["storage_rate_bits"],
                    "accuracy": rep["accuracy"]["packed_finetuned"],
                    "accuracy_drop": dense.accuracy - rep["accuracy"]["packed_finetuned"],
                    "seconds": time.perf_counter() - t0,
                    "unstructured_seconds": unstructured_seconds,
                    "accuracies": rep["accuracy"],
                    "choices": rep["choices"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
