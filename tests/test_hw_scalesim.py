"""The cycle model against SCALE-Sim v3 (weight-stationary), when its environment is set up.

Set up with `bash scripts/setup_scalesim_env.sh` (or point TIGHTCOMPRESS_SCALESIM_PYTHON at an interpreter
that has `scalesim==3.0.0` and `numpy<2`); otherwise these tests are skipped.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tightcompress.api import pack
from tightcompress.baselines import pack_dense
from tightcompress.cli.main import main
from tightcompress.hw.cycles import dense_gemm_cycles, packed_cycles, scalesim_total_cycles
from tightcompress.hw.energy import packed_energy
from tightcompress.hw.scalesim_ref import (
    parse_compute_report,
    run_scalesim_gemm,
    run_scalesim_topology,
    scalesim_available,
)
from tightcompress.readers.topology import write_topology, zoo_topology

needs_scalesim = [
    pytest.mark.scalesim,
    pytest.mark.skipif(
        not scalesim_available(), reason="SCALE-Sim env missing (scripts/setup_scalesim_env.sh)"
    ),
]

# (M, K, N, R, C): M > R, K > R and N > C all occur, and a non-square array.
CASES = [(64, 64, 64, 16, 16), (200, 100, 50, 32, 32), (100, 300, 70, 32, 16), (49, 576, 128, 32, 32)]


@needs_scalesim[0]
@needs_scalesim[1]
@pytest.mark.parametrize("m,k,n,r,c", CASES)
def test_dense_cycles_agree_with_scalesim(m: int, k: int, n: int, r: int, c: int) -> None:
    ref = run_scalesim_gemm(m, k, n, rows=r, cols=c)
    model = dense_gemm_cycles(k, n, m, (r, c))
    assert ref.stall_cycles == 0
    assert abs(model - ref.total_cycles) / ref.total_cycles <= 0.02
    # SCALE-Sim reports the 0-based index of the last busy cycle; with that, the match is exact.
    assert scalesim_total_cycles(k, n, m, (r, c)) == ref.total_cycles
    start = time.perf_counter()
    for _ in range(100):
        dense_gemm_cycles(k, n, m, (r, c))
    model_seconds = (time.perf_counter() - start) / 100
    assert ref.seconds >= 100 * model_seconds


@needs_scalesim[0]
@needs_scalesim[1]
def test_tight_layer_agrees_with_scalesim_on_dense_tiles_of_its_height() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(192, 64)) * (rng.random((192, 64)) < 0.15)
    packed = pack(w, method="tight", group=8, tile=16)
    m, array = 40, (16, 16)
    model = packed_cycles(packed, array, m).cycles
    ref = sum(run_scalesim_gemm(m, int(h), 16, rows=16, cols=16).total_cycles + 1 for h in packed.tile_rows)
    assert abs(model - ref) / ref <= 0.02
    assert model == ref
    assert model < dense_gemm_cycles(192, 64, m, array)


def test_parse_compute_report(tmp_path) -> None:
    report = tmp_path / "COMPUTE_REPORT.csv"
    report.write_text(
        "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, "
        "Mapping Efficiency %, Compute Util %,\n0, 900, 371, 0, 40.4, 62.5, 36.2,\n"
    )
    parsed = parse_compute_report(report)
    assert parsed.total_cycles == 371 and parsed.total_cycles_with_prefetch == 900


RESNET18 = zoo_topology("resnet18")


@needs_scalesim[0]
@needs_scalesim[1]
@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 128])
def test_every_resnet18_layer_agrees_with_scalesim(size: int, tmp_path, capsys) -> None:
    """All 21 layers of ResNet-18 at 224 x 224, dense, on 32x32 and 128x128: cycles and SRAM counts.

    SCALE-Sim runs its own layer simulation (topology, operand and demand matrices of its WS compute
    model) without the memory model's cycle-by-cycle walk, which takes 90 % of its time and adds no
    stall here (`test_full_scalesim_runs_agree_on_the_resnet18_downsample_layers` runs it).
    """
    array = (size, size)
    refs = run_scalesim_topology(RESNET18, rows=size, cols=size, jobs=2, memory_model=False)
    topology, out = tmp_path / "net.csv", tmp_path / "s.json"
    write_topology(topology, RESNET18)
    argv = ["simulate", str(topology), "--method", "dense", "--array", f"{size}x{size}", "--json", str(out)]
    assert main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    simulated = json.loads(out.read_text())["layers"]
    assert [row["name"] for row in simulated] == [layer.name for layer in RESNET18]
    for layer, ref, row in zip(RESNET18, refs, simulated, strict=True):
        # Cycles: SCALE-Sim prints the index of the last busy cycle, one less than the count.
        assert row["m"] == layer.m and row["cycles"] == ref.total_cycles + 1, layer.name
        assert scalesim_total_cycles(layer.k, layer.n, layer.m, array) == ref.total_cycles
        # SRAM accesses in elements: equal, except the partial-sum reads SCALE-Sim does not count.
        dense = pack_dense(np.ones((layer.k, layer.n), dtype=np.float32), tile=size)
        accesses = packed_energy(dense, array, layer.m)["accesses"]
        assert accesses["sram_activation_reads"] == ref.sram_ifmap_reads, layer.name
        assert accesses["sram_weight_reads"] == ref.sram_filter_reads == layer.k * layer.n
        assert accesses["sram_output_writes"] == ref.sram_ofmap_writes, layer.name
        row_folds = -(-layer.k // size)
        assert accesses["sram_output_reads"] == (row_folds - 1) * layer.n * layer.m
        assert row["accesses"] == accesses


@needs_scalesim[0]
@needs_scalesim[1]
@pytest.mark.slow
def test_full_scalesim_runs_agree_on_the_resnet18_downsample_layers() -> None:
    """SCALE-Sim with its memory model (COMPUTE and DETAILED_ACCESS reports) on the three cheapest layers."""
    layers = [layer for layer in RESNET18 if "downsample" in layer.name]
    for size in (32, 128):
        full = run_scalesim_topology(layers, rows=size, cols=size, jobs=2)
        fast = run_scalesim_topology(layers, rows=size, cols=size, memory_model=False)
        for layer, ref, quick in zip(layers, full, fast, strict=True):
            assert ref.stall_cycles == 0
            assert (
                ref.total_cycles
                == quick.total_cycles
                == scalesim_total_cycles(layer.k, layer.n, layer.m, (size, size))
            )
            reads = (ref.sram_ifmap_reads, ref.sram_filter_reads, ref.sram_ofmap_writes)
            assert reads == (quick.sram_ifmap_reads, quick.sram_filter_reads, quick.sram_ofmap_writes)
            # DRAM, which the energy model leaves out for activations and outputs: every weight once, every
            # input pixel the windows read once, and every fold's partial sums written out.
            assert ref.dram_filter_reads == layer.k * layer.n
            read_h = {
                i * layer.stride + j for i in range(layer.ofmap_height) for j in range(layer.filter_height)
            }
            read_w = {
                i * layer.stride + j for i in range(layer.ofmap_width) for j in range(layer.filter_width)
            }
            assert ref.dram_ifmap_reads == len(read_h) * len(read_w) * layer.channels
            assert ref.dram_ofmap_writes == ref.sram_ofmap_writes
