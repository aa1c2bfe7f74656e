"""Hardware model of a weight-stationary systolic array: cycles, energy, bit-exact int8 execution.

The names are imported on first use (PEP 562): `hw.simulate` needs the baselines, which load numba, and a
command's `--help` or a cycle count must not pay for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tightcompress.hw import bitexact  # numpy only
from tightcompress.utils.lazy import lazy_getattr

_LAZY = {
    **dict.fromkeys(
        (
            "CycleReport",
            "array_passes",
            "dense_gemm_cycles",
            "fold_cycles",
            "packed_cycles",
            "parse_array",
            "pass_cycles",
            "scalesim_total_cycles",
        ),
        "tightcompress.hw.cycles",
    ),
    **dict.fromkeys(
        ("DEFAULT_ENERGY", "EnergyTable", "load_energy_table", "packed_energy"), "tightcompress.hw.energy"
    ),
    **dict.fromkeys(("dense_baseline", "simulate_packed", "total_simulation"), "tightcompress.hw.simulate"),
    **dict.fromkeys(("Architecture", "DEFAULT_ARCH", "load_architecture"), "tightcompress.hw.arch"),
    "method_area": "tightcompress.hw.area",
}

__all__ = [
    "DEFAULT_ARCH",
    "DEFAULT_ENERGY",
    "Architecture",
    "CycleReport",
    "EnergyTable",
    "array_passes",
    "bitexact",
    "dense_baseline",
    "dense_gemm_cycles",
    "fold_cycles",
    "load_architecture",
    "load_energy_table",
    "method_area",
    "packed_cycles",
    "packed_energy",
    "parse_array",
    "pass_cycles",
    "scalesim_total_cycles",
    "simulate_packed",
    "total_simulation",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())

if TYPE_CHECKING:
    from tightcompress.hw.arch import DEFAULT_ARCH, Architecture, load_architecture
    from tightcompress.hw.area import method_area
    from tightcompress.hw.cycles import (
        CycleReport,
        array_passes,
        dense_gemm_cycles,
        fold_cycles,
        packed_cycles,
        parse_array,
        pass_cycles,
        scalesim_total_cycles,
    )
    from tightcompress.hw.energy import DEFAULT_ENERGY, EnergyTable, load_energy_table, packed_energy
    from tightcompress.hw.simulate import dense_baseline, simulate_packed, total_simulation
