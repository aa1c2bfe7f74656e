"""N:M with an input-channel permutation: the channel-swap search against the annealer it replaced.

On every packed layer of PP-OCRv4 rec (`ch_PP-OCRv4_rec_infer.onnx` from the `rapidocr_onnxruntime` wheel;
33 layers, depthwise convs skipped), with the cost `|w|` (no calibration: the search sees a saliency
matrix either way), at one N:M (`--nm 8:16`) and one budget (`--iterations`, the annealer's currency:
the one-shot pipeline's final search uses 50k, its option planning 1.5k):

- natural: plain N:M, the rows in their order;
- swap: `baselines.structured.search_nm_permutation` (what `pack --method nm --permute` runs now);
- annealer (with `--annealer`): the former search, `permute.search_permutation(shared_rows=True)` at the
  same budget (slow on the 120 x 6625 classifier: minutes at 50k; `--max-columns` skips wider layers).

Per layer and in total: the dropped fraction of the cost and CPU seconds (median of `--repeats`). Also
checked per layer: the swap search drops no more than the natural order.

    python benchmarks/bench_nm_permute.py --iterations 50000 --repeats 3
    python benchmarks/bench_nm_permute.py --iterations 1500 --annealer --max-columns 480
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import numpy as np


def ppocr_matrices() -> dict[str, np.ndarray]:
    """PP-OCRv4 rec's `K x N` matrices by layer name (as `pack` reads them)."""
    sys.path.insert(0, "benchmarks/ocr")
    from ppocr_task import model_path

    from tightcompress.readers.matrices import gemm_matrices
    from tightcompress.readers.onnx import read_onnx_layers

    layers, _ = read_onnx_layers(model_path())
    matrices, _ = gemm_matrices(layers)
    return {name: np.asarray(g.matrix, dtype=np.float64) for name, g in matrices.items()}


def cpu_seconds(fn) -> tuple[float, object]:
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nm", default="8:16", help="height:group (default 8:16, the 2x N:M)")
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--annealer", action="store_true", help="also run the former annealer")
    parser.add_argument("--max-columns", type=int, default=None, help="skip layers wider than this")
    args = parser.parse_args(argv)
    height, group = (int(v) for v in args.nm.split(":"))

    from tightcompress.baselines.structured import nm_dropped, search_nm_permutation
    from tightcompress.format.build import uniform_group_offsets
    from tightcompress.permute import AnnealConfig, search_permutation

    load = os.getloadavg()[0]
    print(f"N:M {height}:{group}, budget {args.iterations} moves, median of {args.repeats}; load {load:.2f}")
    header = f"{'layer':24s} {'K x N':>11s} {'natural':>8s} {'swap':>8s} {'cpu s':>6s}"
    print(header + (f" {'anneal':>8s} {'cpu s':>6s}" if args.annealer else ""))
    totals = {"cost": 0.0, "natural": 0.0, "swap": 0.0, "anneal": 0.0, "swap_s": 0.0, "anneal_s": 0.0}
    for name, matrix in ppocr_matrices().items():
        K, N = matrix.shape
        if args.max_columns is not None and N > args.max_columns:
            continue
        g = min(group, K)
        h = min(height, g)
        cost = np.abs(matrix)
        natural = nm_dropped(cost, np.arange(K), g, h)
        search = functools.partial(
            search_nm_permutation, matrix, group=g, height=h, tile=32, iterations=args.iterations
        )
        runs = [cpu_seconds(search) for _ in range(args.repeats)]
        swap = runs[0][1].final_cost
        assert swap <= natural * (1 + 1e-12), name
        swap_s = statistics.median(r[0] for r in runs)
        total = cost.sum()
        line = f"{name:24s} {f'{K}x{N}':>11s} {natural / total:8.4%} {swap / total:8.4%} {swap_s:6.2f}"
        totals["cost"] += total
        totals["natural"] += natural
        totals["swap"] += swap
        totals["swap_s"] += swap_s
        if args.annealer:
            offsets = uniform_group_offsets(K, g)
            config = AnnealConfig(iterations=args.iterations)
            anneal = functools.partial(
                search_permutation, matrix, group_offsets=offsets, tile=32, height_cap=h, config=config,
                shared_rows=True,
            )  # fmt: skip
            seconds, result = cpu_seconds(anneal)
            line += f" {result.final_cost / total:8.4%} {seconds:6.2f}"
            totals["anneal"] += result.final_cost
            totals["anneal_s"] += seconds
        print(line, flush=True)
    line = (
        f"{'total (summed cost)':24s} {'':>11s} {totals['natural'] / totals['cost']:8.4%}"
        f" {totals['swap'] / totals['cost']:8.4%} {totals['swap_s']:6.2f}"
    )
    if args.annealer:
        line += f" {totals['anneal'] / totals['cost']:8.4%} {totals['anneal_s']:6.2f}"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
