"""Hardware model of a weight-stationary systolic array: cycles, energy, bit-exact int8 execution."""

from tightcompress.hw import bitexact
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

__all__ = [
    "DEFAULT_ENERGY",
    "CycleReport",
    "EnergyTable",
    "array_passes",
    "bitexact",
    "dense_baseline",
    "dense_gemm_cycles",
    "fold_cycles",
    "load_energy_table",
    "packed_cycles",
    "packed_energy",
    "parse_array",
    "pass_cycles",
    "scalesim_total_cycles",
    "simulate_packed",
    "total_simulation",
]
