"""`torch.compile` of a packed model: first-call time, later calls and graph count (1: no recompile), with
inductor (or another backend), against the same dense model.

The model is `tests/torch_models.py:MixedLayers` (strided, dilated, reflect-padded, grouped and depthwise
convs, Linear with and without bias) packed by `sparsify_` (tight, G=8, h=2, C=8, 60 % sparsity); input
2 x 3 x 17 x 17. Run each case in a fresh process with an empty inductor cache, e.g.

    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) python benchmarks/bench_packed_compile.py --model packed
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import tightcompress as tc
from torch_models import MixedLayers, randomize_bn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("packed", "dense"), default="packed")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--calls", type=int, default=9, help="calls after the first (median timed)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    from torch._dynamo.utils import counters

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = randomize_bn(MixedLayers()).eval()
    if args.model == "packed":
        tc.sparsify_(model, method="tight", group=8, height=2, tile=8, sparsity=0.6, iterations=2000)
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        expected = model(x)
    compiled = torch.compile(model, backend=args.backend)
    start = time.perf_counter()
    with torch.no_grad():
        out = compiled(x)
    first = time.perf_counter() - start
    times = []
    with torch.no_grad():
        for _ in range(args.calls):
            start = time.perf_counter()
            compiled(x)
            times.append(time.perf_counter() - start)
    later = statistics.median(times)
    result = {
        "model": args.model,
        "backend": args.backend,
        "first_call_s": round(first, 2),
        "later_call_ms": round(later * 1e3, 2),
        "unique_graphs": counters["stats"]["unique_graphs"],
        "max_abs_diff_vs_eager": float((out - expected).abs().max()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
