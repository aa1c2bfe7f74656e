"""Area of a PE and of the array for every method, synthesised with Yosys (`tightcompress area`).

    python benchmarks/bench_area.py --array 32x32            # the README's table (markdown on stdout)
    python benchmarks/bench_area.py --array 8x8 --no-cache   # synthesise again, with wall times

Each row is `hw.area.method_area` on the exported Verilog: dense, tight at G = 2..64, N:M (G = M), column
combining at alpha, and the subword PE; areas are Nangate45 X1 cell areas (`hw.cells`).
"""

from __future__ import annotations

import argparse
import time

from tightcompress.hw.area import method_area

CONFIGS = [
    ("dense", {}),
    *[("tight", {"group": g}) for g in (2, 4, 8, 16, 32, 64)],
    ("nm", {"group": 4}),
    ("nm", {"group": 8}),
    ("column-combining", {"alpha": 4}),
    ("column-combining", {"alpha": 8}),
    ("column-combining", {"alpha": 16}),
    ("tight-subword", {"group": 8}),
    ("tight-subword", {"group": 16}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--array", default="32x32")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    print(
        "| method | lanes | PE cells | PE flip-flops | PE um^2 | PE vs dense | array mm^2 | array vs dense "
        "| skew/deskew mm^2 | synthesis s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    dense = None
    for method, options in CONFIGS:
        start = time.perf_counter()
        r = method_area(method, args.array, use_cache=not args.no_cache, **options)
        seconds = time.perf_counter() - start
        dense = dense or r
        took = "cached" if r["cached"] else f"{seconds:.0f}"
        print(
            f"| {method} | {r['lanes']} | {r['pe_cells']:,} | {r['pe_flip_flops']} | {r['pe_area_um2']:,.1f} "
            f"| {r['pe_area_um2'] / dense['pe_area_um2']:.2f}x | {r['array_area_mm2']:.3f} "
            f"| {r['array_area_um2'] / dense['array_area_um2']:.2f}x "
            f"| {r['array_parts_um2']['skew_deskew'] / 1e6:.3f} | {took} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
