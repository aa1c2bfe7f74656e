"""SCALE-Sim v3 as the reference for the cycle model: run it in its own environment, read its report.

SCALE-Sim 3.0.0 (`pip install scalesim==3.0.0`) fails under NumPy 2 (a TypeError from `int(max(...))` in its
scratchpad memory model), so it lives in a separate virtualenv with `numpy<2`, made by
`scripts/setup_scalesim_env.sh` (default `<repo>/.venv-scalesim`). This module finds that interpreter
(`$TIGHTCOMPRESS_SCALESIM_PYTHON`, else `<repo>/.venv-scalesim/bin/python`) and runs, in a temporary
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
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tightcompress.errors import TightCompressError

ENV_PYTHON = "TIGHTCOMPRESS_SCALESIM_PYTHON"

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
sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
               input_type_gemm=True)
sim.run_scale(top_path=out)
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


def repo_root() -> Path:
    """The repository root (this file is `src/tightcompress/hw/scalesim_ref.py`)."""
    return Path(__file__).resolve().parents[3]


def scalesim_python() -> Path | None:
    """The SCALE-Sim environment's interpreter, or None when it has not been set up."""
    explicit = os.environ.get(ENV_PYTHON)
    candidate = Path(explicit) if explicit else repo_root() / ".venv-scalesim" / "bin" / "python"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def scalesim_available() -> bool:
    """True when the SCALE-Sim interpreter exists and imports `scalesim`."""
    python = scalesim_python()
    if python is None:
        return False
    probe = subprocess.run([str(python), "-c", "import scalesim.scale_sim"], capture_output=True, timeout=120)
    return probe.returncode == 0


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
