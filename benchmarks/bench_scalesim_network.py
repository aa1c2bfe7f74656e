"""A whole network against SCALE-Sim v3: every layer's cycles and SRAM/DRAM accesses, dense, per array.

Needs the SCALE-Sim environment (`bash scripts/setup_scalesim_env.sh`). Run:

    python benchmarks/bench_scalesim_network.py [--topology NET.csv | --zoo resnet18] [--arrays 32,128]
        [--jobs 2] [--memory-model] [--json OUT.json]

For each layer of the topology (default: the zoo's ResNet-18 at 224 x 224, the same as
`examples/resnet18_topology.csv`) and each square array it prints SCALE-Sim's `Total Cycles`, the model's
cycles, and SCALE-Sim's SRAM IFMAP reads, Filter reads and OFMAP writes next to the energy model's access
counts (`packed_energy(...)["accesses"]` of the layer packed dense), and the model's partial-sum reads,
which SCALE-Sim does not count. `--memory-model` runs SCALE-Sim whole (its cycle-by-cycle memory model
too, so the stall and DRAM columns are filled; 10-40x slower); without it SCALE-Sim runs up to its compute
model (`run_scalesim_topology(memory_model=False)`). Layers are spread over `--jobs` SCALE-Sim processes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from tightcompress.baselines import pack_dense
from tightcompress.hw.cycles import dense_gemm_cycles
from tightcompress.hw.energy import packed_energy
from tightcompress.hw.scalesim_ref import run_scalesim_topology, scalesim_available
from tightcompress.readers.topology import read_topology, zoo_topology


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", help="SCALE-Sim topology CSV (default: --zoo)")
    parser.add_argument("--zoo", default="resnet18", help="zoo model whose topology to run")
    parser.add_argument("--arrays", default="32,128", help="square array sizes, comma-separated")
    parser.add_argument("--jobs", type=int, default=2, help="SCALE-Sim processes at once")
    parser.add_argument("--memory-model", action="store_true", help="run SCALE-Sim's memory model too")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    if not scalesim_available():
        print("SCALE-Sim environment missing: run bash scripts/setup_scalesim_env.sh", file=sys.stderr)
        return 1
    layers = read_topology(args.topology) if args.topology else zoo_topology(args.zoo)
    rows = []
    for size in (int(s) for s in args.arrays.split(",")):
        array = (size, size)
        start = time.perf_counter()
        refs = run_scalesim_topology(
            layers, rows=size, cols=size, jobs=args.jobs, memory_model=args.memory_model
        )
        wall = time.perf_counter() - start
        print(f"\n{size}x{size}: SCALE-Sim {wall:.0f} s wall ({args.jobs} processes)")
        print(
            "| layer | M | K | N | SCALE-Sim Total Cycles | model cycles | IFMAP reads SS / model "
            "| Filter reads SS / model | OFMAP writes SS / model | model psum reads | stalls "
            "| DRAM IFMAP / Filter / OFMAP (SS) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        same = 0
        for layer, ref in zip(layers, refs, strict=True):
            model = dense_gemm_cycles(layer.k, layer.n, layer.m, array)
            acc = packed_energy(
                pack_dense(np.ones((layer.k, layer.n), dtype=np.float32), tile=size), array, layer.m
            )["accesses"]
            ok = (
                model == ref.total_cycles + 1
                and acc["sram_activation_reads"] == ref.sram_ifmap_reads
                and acc["sram_weight_reads"] == ref.sram_filter_reads
                and acc["sram_output_writes"] == ref.sram_ofmap_writes
            )
            same += ok
            dram = (
                f"{ref.dram_ifmap_reads} / {ref.dram_filter_reads} / {ref.dram_ofmap_writes}"
                if ref.memory_model
                else "-"
            )
            print(
                f"| {layer.name} | {layer.m} | {layer.k} | {layer.n} | {ref.total_cycles} | {model} "
                f"| {ref.sram_ifmap_reads} / {acc['sram_activation_reads']} "
                f"| {ref.sram_filter_reads} / {acc['sram_weight_reads']} "
                f"| {ref.sram_ofmap_writes} / {acc['sram_output_writes']} | {acc['sram_output_reads']} "
                f"| {ref.stall_cycles if ref.memory_model else '-'} | {dram} |"
            )
            rows.append({"array": size, "layer": layer.name, "model_cycles": model, **vars(ref), **acc})
        total_ss = sum(ref.total_cycles + 1 for ref in refs)
        psum = sum(r["sram_output_reads"] for r in rows if r["array"] == size)
        writes = sum(ref.sram_ofmap_writes for ref in refs)
        print(
            f"{same}/{len(layers)} layers: cycles = SCALE-Sim + 1 and SRAM counts equal; network "
            f"{total_ss} cycles; model partial-sum reads {psum} = {psum / writes:.1%} of SCALE-Sim's "
            "OFMAP writes, which SCALE-Sim does not count"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
