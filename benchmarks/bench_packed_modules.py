"""`sparsify_` on a ResNet-18 with torchvision's module names at 90 % sparsity (tight, G=32, h=3, C=32):
time to pack, compression, and the forward pass of the packed model against the masked dense model
(CPU, median of several runs). The packed modules rebuild their kept weights from the packed buffers on
every forward (gather + index_add), then run the ordinary conv/linear kernel: this measures that cost.

    python benchmarks/bench_packed_modules.py [--iterations N] [--batch 8] [--size 112] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tightcompress as tc
from torch_models import ResNet18, masked_dense, randomize_bn


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=None, help="annealing moves per layer (default)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = randomize_bn(ResNet18()).eval()
    original = copy.deepcopy(model)
    start = time.perf_counter()
    report = tc.sparsify_(
        model, method="tight", group=32, height=3, tile=32, sparsity=0.9, iterations=args.iterations,
        jobs=args.jobs,
    )  # fmt: skip
    pack_seconds = time.perf_counter() - start
    reference = masked_dense(original, model)
    x = torch.randn(args.batch, 3, args.size, args.size)
    with torch.no_grad():
        out, expected = model(x), reference(x)
        packed_ms = median_ms(lambda: model(x), args.repeats)
        dense_ms = median_ms(lambda: reference(x), args.repeats)
        rebuild_ms = median_ms(
            lambda: [
                m.weight for m in model.modules() if isinstance(m, tc.nn.PackedConv2d | tc.nn.PackedLinear)
            ],
            args.repeats,
        )
    result = {
        "layers": len(report["layers"]),
        "compression_rate": report["total"]["compression_rate"],
        "dropped_magnitude_fraction": report["total"]["dropped_magnitude_fraction"],
        "sparsify_seconds": pack_seconds,
        "max_abs_diff_over_scale": float((out - expected).abs().max() / expected.abs().max()),
        "forward_ms_packed": packed_ms,
        "forward_ms_masked_dense": dense_ms,
        "rebuild_all_weights_ms": rebuild_ms,
        "batch": args.batch,
        "size": args.size,
        "threads": args.threads,
        "iterations": args.iterations,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
