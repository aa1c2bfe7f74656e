"""SCALE-Sim v3 as the reference for the cycle model: run it in its own environment, read its report.

SCALE-Sim 3.0.0 (`pip install scalesim==3.0.0`) fails under NumPy 2 (a TypeError from `int(max(...))` in its
scratchpad memory model), so it lives in a separate virtualenv with `numpy<2`, made by
`scripts/setup_scalesim_env.sh` (default `<repo>/.venv-scalesim`). This module finds that interpreter
(`$TIGHTCOMPRESS_SCALESIM_PYTHON`, else `$TIGHTCOMPRESS_SCALESIM_VENV/bin/python`, else
`<repo>/.venv-scalesim/bin/python`) and runs, in a temporary
folder, the equivalent of

    python -m scalesim.scale -c scale.cfg -t layer.csv -l layout.csv -i gemm -p OUT

except that it calls the `scalesim` class directly with `save_disk_space=True` (the `scale.py` script
hard-codes `save_disk_space=False` and writes full cycle traces, which only slows the run). The topology is
SCALE-Sim's GEMM form `M, N, K` (ifmap `M x K`, filter `K x N`), so its weight-stationary mapping puts K
on the array rows and N on the columns, like ours. The config has large SRAMs and CALC interface bandwidth
so no memory stall is counted: its `Total Cycles` is then the compute schedule alone, per fold
`2R + C + M - 2` (R cycles of weight loading, M input rows, R-1 + C-1 of skew fill and drain), summed
over `ceil(K/R) * ceil(N/C)` folds.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tightcompress.errors import TightCompressError
from tightcompress.readers.topology import TopologyLayer, format_topology

ENV_PYTHON = "TIGHTCOMPRESS_SCALESIM_PYTHON"
ENV_VENV = "TIGHTCOMPRESS_SCALESIM_VENV"  # where scripts/setup_scalesim_env.sh made the environment

_CONFIG = """[general]
run_name = tightcompress_ref

[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : {sram_kb}
FilterSramSzkB : {sram_kb}
OfmapSramSzkB : {sram_kb}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : 10
Dataflow : ws
MemoryBanks : 1
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : CALC
UseRamulatorTrace : False
"""

_LAYOUT_HEADER = (
    "Layer name, IFMAP Height Intraline Factor, IFMAP Width Intraline Factor, Filter Height Intraline "
    "Factor, Filter Width Intraline Factor, Channel Intraline Factor, Num Filter Intraline Factor, IFMAP "
    "Height Intraline Order, IFMAP Width Intraline Order, Channel Intraline Order, IFMAP Height Interline "
    "Order, IFMAP Width Interline Order, Channel Interline Order, Num Filter Intraline Order, Channel "
    "Intraline Order, Filter Height Intraline Order, Filter Width Intraline Order, Num Filter Interline "
    "Order, Channel Interline Order, Filter Height Interline Order, Filter Width Interline Order,\n"
)

_DRIVER = """
import sys
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
gemm = len(sys.argv) < 6 or sys.argv[5] != "conv"
sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
               input_type_gemm=gemm)
sim.run_scale(top_path=out)
"""


# SCALE-Sim's own per-layer run (`single_layer_sim.run`: operand matrices, then the weight-stationary compute
# model's demand matrices) with its memory model replaced by a stub that keeps the demand matrices' length.
# SCALE-Sim's memory model then walks those matrices one cycle per row in Python (about 0.15 ms a row):
# 90 % of its run time, and with this config it adds no stall (the full runs confirm it), so its
# `Total Cycles` is the demand rows - 1 (the index of the last row).
_COMPUTE_DRIVER = """
import json, sys
from scalesim.layout_utils import layouts
from scalesim.scale_config import scale_config
from scalesim.single_layer_sim import single_layer_sim
from scalesim.topology_utils import topologies
cfg, topo_path, layout_path, out = sys.argv[1:5]
config = scale_config()
config.read_conf_file(cfg)
topo = topologies()
topo.load_arrays(topofile=topo_path, mnk_inputs=False)
layout = layouts()
layout.load_arrays(layoutfile=layout_path, mnk_inputs=False)

class DemandRows:
    def service_memory_requests(self, ifmap, filt, ofmap):
        self.rows = (ifmap.shape[0], filt.shape[0], ofmap.shape[0])

results = []
for layer_id in range(topo.get_num_layers()):
    layer = single_layer_sim()
    layer.set_params(layer_id=layer_id, config_obj=config, topology_obj=topo, layout_obj=layout,
                     verbose=False)
    memory = DemandRows()
    layer.set_memory_system(memory)
    layer.run()
    compute = layer.compute_system
    results.append({"demand_rows": list(memory.rows), "ifmap_reads": int(compute.get_ifmap_requests()),
                    "filter_reads": int(compute.get_filter_requests()),
                    "ofmap_writes": int(compute.get_ofmap_requests())})
with open(out + "/compute.json", "w") as handle:
    json.dump(results, handle)
"""


@dataclass(frozen=True)
class ScaleSimResult:
    """One layer's row of SCALE-Sim's COMPUTE_REPORT.csv, plus the wall time of the whole run."""

    total_cycles: int
    total_cycles_with_prefetch: int
    stall_cycles: int
    overall_util: float
    mapping_efficiency: float
    compute_util: float
    seconds: float


@dataclass(frozen=True)
class ScaleSimLayer:
    """One layer of a SCALE-Sim topology run: its compute and detailed-access report rows.

    Access counts are SCALE-Sim's, in operand elements (words), not bits. `seconds` is the wall time of
    the SCALE-Sim process that ran this layer (shared by the layers run in the same process). Without
    the memory model (`memory_model=False`), `total_cycles` is the compute model's demand rows - 1 (what
    the memory model reports when it adds no stall) and the stall and DRAM figures are None.
    """

    name: str
    total_cycles: int
    stall_cycles: int | None
    sram_ifmap_reads: int
    sram_filter_reads: int
    sram_ofmap_writes: int
    dram_ifmap_reads: int | None
    dram_filter_reads: int | None
    dram_ofmap_writes: int | None
    seconds: float
    memory_model: bool = True


def repo_root() -> Path:
    """The repository root (this file is `src/tightcompress/hw/scalesim_ref.py`)."""
    return Path(__file__).resolve().parents[3]


def scalesim_python() -> Path | None:
    """The SCALE-Sim environment's interpreter, or None when it has not been set up."""
    explicit = os.environ.get(ENV_PYTHON)
    venv = Path(os.environ.get(ENV_VENV) or repo_root() / ".venv-scalesim")
    candidate = Path(explicit) if explicit else venv / "bin" / "python"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def scalesim_available() -> bool:
    """True when the SCALE-Sim interpreter exists and imports `scalesim`."""
    python = scalesim_python()
    if python is None:
        return False
    probe = subprocess.run([str(python), "-c", "import scalesim.scale_sim"], capture_output=True, timeout=120)
    return probe.returncode == 0


def run_scalesim_topology(
    layers: Sequence[TopologyLayer],
    *,
    rows: int,
    cols: int,
    jobs: int = 1,
    memory_model: bool = True,
    sram_kb: int = 8192,
    timeout: float = 3600.0,
) -> list[ScaleSimLayer]:
    """Run SCALE-Sim (weight stationary, convolution topology) on every layer; results in layer order.

    `jobs` SCALE-Sim processes run at once, each on a share of the layers balanced by their cycle count
    (SCALE-Sim's run time grows with the cycles it simulates); every layer is simulated on its own, so the
    split does not change any figure. `memory_model=False` runs SCALE-Sim's layer simulation up to its
    compute model only (`_COMPUTE_DRIVER`), about 20-40x faster: cycles and SRAM counts, no DRAM figures.
    """
    from tightcompress.hw.cycles import dense_gemm_cycles

    python = scalesim_python()
    if python is None:
        raise TightCompressError(
            f"SCALE-Sim environment not found: run scripts/setup_scalesim_env.sh or set {ENV_PYTHON}"
        )
    layers = list(layers)
    if not layers:
        raise TightCompressError("no layers to run in SCALE-Sim")
    if jobs < 1:
        raise TightCompressError(f"jobs must be >= 1, got {jobs}")
    cost = [dense_gemm_cycles(layer.k, layer.n, layer.m, (rows, cols)) * cols for layer in layers]
    shares: list[list[int]] = [[] for _ in range(min(jobs, len(layers)))]
    load = [0] * len(shares)
    for index in sorted(range(len(layers)), key=lambda i: -cost[i]):
        lightest = load.index(min(load))
        shares[lightest].append(index)
        load[lightest] += cost[index]
    results: dict[int, ScaleSimLayer] = {}
    with tempfile.TemporaryDirectory(prefix="tc-scalesim-") as tmp:
        procs = []
        for number, share in enumerate(shares):
            share.sort()
            folder = Path(tmp) / f"run{number}"
            (folder / "out").mkdir(parents=True)
            (folder / "scale.cfg").write_text(_CONFIG.format(rows=rows, cols=cols, sram_kb=sram_kb))
            (folder / "topology.csv").write_text(format_topology(layers[i] for i in share))
            (folder / "layout.csv").write_text(
                _LAYOUT_HEADER + "".join(f"{layers[i].name}," + ",".join(["1"] * 20) + ",\n" for i in share)
            )
            files = [str(folder / f) for f in ("scale.cfg", "topology.csv", "layout.csv", "out")]
            driver = _DRIVER if memory_model else _COMPUTE_DRIVER
            proc = subprocess.Popen(
                [str(python), "-c", driver, *files, "conv"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=folder,
            )
            procs.append((proc, folder, share, time.perf_counter()))
        try:
            for proc, folder, share, start in procs:
                try:
                    stdout, stderr = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    raise TightCompressError(f"SCALE-Sim took more than {timeout:.0f} s") from None
                seconds = time.perf_counter() - start
                if proc.returncode != 0:
                    tail = (stderr or stdout).strip().splitlines()[-5:]
                    raise TightCompressError(f"SCALE-Sim failed (exit {proc.returncode}): {' | '.join(tail)}")
                found = _read_results(folder / "out", [layers[i].name for i in share], seconds, memory_model)
                results.update(zip(share, found, strict=True))
        finally:
            for proc, *_ in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return [results[i] for i in range(len(layers))]


def _read_results(out: Path, names: list[str], seconds: float, memory_model: bool) -> list[ScaleSimLayer]:
    """The layers' results from a run's output folder (SCALE-Sim's reports, or the compute driver's JSON)."""
    if not memory_model:
        rows = json.loads((out / "compute.json").read_text())
        if len(rows) != len(names):
            raise TightCompressError(f"SCALE-Sim ran {len(rows)} layers for a topology of {len(names)}")
        found = []
        for name, row in zip(names, rows, strict=True):
            if len(set(row["demand_rows"])) != 1:
                raise TightCompressError(f"SCALE-Sim demand matrices of {name} differ in length")
            found.append(
                ScaleSimLayer(
                    name=name,
                    total_cycles=row["demand_rows"][0] - 1,
                    stall_cycles=None,
                    sram_ifmap_reads=row["ifmap_reads"],
                    sram_filter_reads=row["filter_reads"],
                    sram_ofmap_writes=row["ofmap_writes"],
                    dram_ifmap_reads=None,
                    dram_filter_reads=None,
                    dram_ofmap_writes=None,
                    seconds=seconds,
                    memory_model=False,
                )
            )
        return found
    compute = list(out.rglob("COMPUTE_REPORT.csv"))
    access = list(out.rglob("DETAILED_ACCESS_REPORT.csv"))
    if not compute or not access:
        raise TightCompressError(f"SCALE-Sim wrote no report in {out}")
    compute_rows, access_rows = _report_rows(compute[0]), _report_rows(access[0])
    if len(compute_rows) != len(names) or len(access_rows) != len(names):
        raise TightCompressError(
            f"SCALE-Sim reported {len(compute_rows)} layers for a topology of {len(names)}"
        )
    return [
        _layer_result(name, comp, acc, seconds)
        for name, comp, acc in zip(names, compute_rows, access_rows, strict=True)
    ]


def _report_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a SCALE-Sim report CSV as `{header: value}` (cells stripped)."""
    with open(path, newline="") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle) if row]
    if not rows:
        raise TightCompressError(f"{path}: empty SCALE-Sim report")
    return [dict(zip(rows[0], row, strict=False)) for row in rows[1:]]


def _layer_result(name: str, comp: dict[str, str], acc: dict[str, str], seconds: float) -> ScaleSimLayer:
    try:
        return ScaleSimLayer(
            name=name,
            total_cycles=int(float(comp["Total Cycles"])),
            stall_cycles=int(float(comp["Stall Cycles"])),
            sram_ifmap_reads=int(float(acc["SRAM IFMAP Reads"])),
            sram_filter_reads=int(float(acc["SRAM Filter Reads"])),
            sram_ofmap_writes=int(float(acc["SRAM OFMAP Writes"])),
            dram_ifmap_reads=int(float(acc["DRAM IFMAP Reads"])),
            dram_filter_reads=int(float(acc["DRAM Filter Reads"])),
            dram_ofmap_writes=int(float(acc["DRAM OFMAP Writes"])),
            seconds=seconds,
        )
    except (KeyError, ValueError) as exc:
        raise TightCompressError(f"unexpected SCALE-Sim report for layer {name} ({exc})") from None


def run_scalesim_gemm(
    m: int, k: int, n: int, *, rows: int, cols: int, sram_kb: int = 8192, timeout: float = 1800.0
) -> ScaleSimResult:
    """Run SCALE-Sim's weight-stationary simulation of `(M x K) @ (K x N)` on an `rows x cols` array."""
    python = scalesim_python()
    if python is None:
        raise TightCompressError(
            f"SCALE-Sim environment not found: run scripts/setup_scalesim_env.sh or set {ENV_PYTHON}"
        )
    with tempfile.TemporaryDirectory(prefix="tc-scalesim-") as tmp:
        folder = Path(tmp)
        (folder / "scale.cfg").write_text(_CONFIG.format(rows=rows, cols=cols, sram_kb=sram_kb))
        (folder / "layer.csv").write_text(f"Layer, M, N, K,\nlayer0, {m}, {n}, {k},\n")
        (folder / "layout.csv").write_text(_LAYOUT_HEADER + "layer0," + ",".join(["1"] * 20) + ",\n")
        out = folder / "out"
        out.mkdir()
        start = time.perf_counter()
        proc = subprocess.run(
            [
                str(python),
                "-c",
                _DRIVER,
                *(str(folder / f) for f in ("scale.cfg", "layer.csv", "layout.csv")),
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=folder,
        )
        seconds = time.perf_counter() - start
        reports = list(out.rglob("COMPUTE_REPORT.csv"))
        if proc.returncode != 0 or not reports:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise TightCompressError(f"SCALE-Sim failed (exit {proc.returncode}): {' | '.join(tail)}")
        return parse_compute_report(reports[0], seconds)


def parse_compute_report(path: str | os.PathLike[str], seconds: float = 0.0) -> ScaleSimResult:
    """The first layer's figures from a SCALE-Sim COMPUTE_REPORT.csv."""
    with open(path, newline="") as handle:
        rows = [[cell.strip() for cell in row] for row in csv.reader(handle) if row]
    if len(rows) < 2:
        raise TightCompressError(f"{path}: no layer row in the SCALE-Sim compute report")
    header, values = rows[0], rows[1]
    field = dict(zip(header, values, strict=False))
    try:
        return ScaleSimResult(
            total_cycles=int(float(field["Total Cycles"])),
            total_cycles_with_prefetch=int(float(field["Total Cycles (incl. prefetch)"])),
            stall_cycles=int(float(field["Stall Cycles"])),
            overall_util=float(field["Overall Util %"]),
            mapping_efficiency=float(field["Mapping Efficiency %"]),
            compute_util=float(field["Compute Util %"]),
            seconds=seconds,
        )
    except (KeyError, ValueError) as exc:
        raise TightCompressError(f"{path}: unexpected SCALE-Sim compute report ({exc})") from None
