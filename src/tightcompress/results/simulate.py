"""`tightcompress simulate --json` and the hardware figures the compress report shares: cycles, PE
utilization and energy of each layer on one array, against the dense layer and column combining."""

from __future__ import annotations

from typing import Annotated

from tightcompress.results.arch import ArchEnergy, ArchitectureReport
from tightcompress.results.base import Result, Versioned, field, optional
from tightcompress.results.pack import Notes, PackLayer, PackOptions, PackTotal

# Fields some results require and others leave optional: defined once here, required where a class
# writes `name: Alias` and optional where it writes `name: Alias = None`.
ArrayShape = Annotated[str, field("PEs", "array rows x columns, e.g. 32x32")]
Vectors = Annotated[int, field("vectors", "input vectors M run through the layer")]
Cycles = Annotated[
    int, field("cycles", "cycles of the packed layer on the array (weight-stationary), stall_cycles included")
]
DenseCycles = Annotated[int, field("cycles", "cycles of the dense layer on the same array and input vectors")]
Speedup = Annotated[float, field("x", "dense_cycles / cycles")]
EnergyPj = Annotated[float, field("pJ", "modelled energy of the packed layer (hw/energy.py)")]
DenseEnergyPj = Annotated[float, field("pJ", "modelled energy of the dense layer")]
EnergyGain = Annotated[float, field("x", "dense_energy_pj / energy_pj")]


class HardwareFigures(Result):
    """Cycles, utilization and energy of a packed layer (or of a sum of layers) on the array."""

    cycles: Cycles = None
    stall_cycles: int = optional(
        "cycles", "cycles added because a buffer's bandwidth (--arch) cannot feed the array; 0 by default"
    )
    dense_stall_cycles: int = optional("cycles", "the same for the dense layer")
    cc_stall_cycles: int = optional("cycles", "the same for the column-combining packing")
    dense_cycles: DenseCycles = None
    speedup: Speedup = None
    utilization_pe: float = optional("fraction 0-1", "useful MACs / (PEs x cycles)")
    dense_utilization_pe: float = optional(
        "fraction 0-1", "the same for the dense layer running every nonzero the method was given"
    )
    dense_useful_macs: int = optional("MACs", "useful MACs of the dense layer: the input's nonzeros x M")
    useful_macs: int = optional("MACs", "multiply-accumulates with a nonzero weight")
    pe_cycles: int = optional("PE-cycles", "PEs x cycles of the packed layer")
    dense_pe_cycles: int = optional("PE-cycles", "PEs x cycles of the dense layer")
    energy_pj: EnergyPj = None
    dense_energy_pj: DenseEnergyPj = None
    energy_gain: EnergyGain = None
    energy_breakdown_pj: dict[str, float] = optional(
        "pJ", "energy by part: mac, mux, weight_reg, act_forward, sram_*, dram_weights, dram_activations "
        "and dram_outputs (traffic of buffers too small, --arch; 0 by default)"
    )
    cc_cycles: int = optional("cycles", "cycles of the same layer packed by column combining (the baseline)")
    speedup_vs_cc: float = optional("x", "cc_cycles / cycles")
    cc_energy_pj: float = optional("pJ", "energy of the column-combining packing")
    energy_gain_vs_cc: float = optional("x", "cc_energy_pj / energy_pj")
    bitexact: bool = optional("-", "--check-bitexact: the int8 array simulation matched an exact matmul")
    dense_energy_breakdown_pj: dict[str, float] = optional(
        "pJ", "energy of the dense layer by part (as energy_breakdown_pj)"
    )
    cc_energy_breakdown_pj: dict[str, float] = optional(
        "pJ", "energy of the column-combining packing by part (as energy_breakdown_pj)"
    )
    cc_utilization_pe: float = optional("fraction 0-1", "PE utilization of the column-combining packing")
    cc_nnz: int = optional("weights", "nonzero weights given to column combining")
    cc_dropped_nnz: int = optional(
        "weights", "weights column combining prunes to reach its cycles and energy"
    )
    cc_dropped_magnitude_fraction: float = optional(
        "fraction 0-1", "their share of the |w| given to column combining"
    )
    cc_input_magnitude: float = optional("|w|", "summed |w| given to column combining")
    accesses: dict[str, float] = optional(
        "accesses", "memory accesses the energy model counts: sram_weight_reads, sram_index_reads, "
        "sram_activation_reads, sram_output_writes, sram_output_reads (partial sums), dram_weight_reads, "
        "and for buffers too small (--arch) dram_activation_reads, dram_partial_sum_writes, "
        "dram_partial_sum_reads, dram_output_writes"
    )


class HardwareLayer(HardwareFigures):
    """The hardware figures of one layer: its array, input vectors and folds too."""

    cc_pe_cycles: int = optional("PE-cycles", "PEs x cycles of the column-combining packing")
    cc_useful_macs: int = optional("MACs", "useful MACs of the column-combining packing")
    weight_bits: int = optional("bits", "subword layers: bits of a stored weight value on the array (4)")
    slot_extra_bits: int = optional("bits", "subword layers: bits per slot besides value and lane (shift)")
    array: ArrayShape = None
    m: Vectors = None
    passes: int = optional("passes", "array passes (groups of tiles loaded together)")
    folds: int = optional("folds", "row/column folds of the packed layer")
    dense_folds: int = optional("folds", "folds of the dense layer")
    min_folds: int = optional("folds", "the fewest folds the layer's passes can take: one per pass")
    at_min_folds: bool = optional(
        "-", "folds == min_folds: every pass fits in one fold of the array's rows, so a higher compression"
        " rate saves this layer's memory but not its cycles (why cycles stop falling)"
    )


class SimulateLayer(PackLayer, HardwareLayer):
    """One packed layer and its figures on the array."""

    array: ArrayShape
    m: Vectors
    cycles: Cycles
    dense_cycles: DenseCycles
    speedup: Speedup
    energy_pj: EnergyPj
    dense_energy_pj: DenseEnergyPj
    energy_gain: EnergyGain


class AreaTotals(Result):
    """--area: the throughput per area of the arrays synthesised."""

    area_mm2: float = optional("mm^2", "--area: cell area of the array that runs the network (hw/area.py)")
    dense_area_mm2: float = optional("mm^2", "--area: cell area of the dense array")
    cc_area_mm2: float = optional("mm^2", "--area: cell area of column combining's array (alpha lanes)")
    throughput_gmacs: float = optional(
        "GMAC/s", "--area: the network's MACs (nonzeros given x M) per second at the clock"
    )
    dense_throughput_gmacs: float = optional("GMAC/s", "--area: the same work on the dense array")
    cc_throughput_gmacs: float = optional("GMAC/s", "--area: the same work at column combining's cycles")
    throughput_gmacs_per_mm2: float = optional("GMAC/s/mm^2", "--area: throughput_gmacs / area_mm2")
    dense_throughput_gmacs_per_mm2: float = optional("GMAC/s/mm^2", "--area: the dense array's")
    cc_throughput_gmacs_per_mm2: float = optional("GMAC/s/mm^2", "--area: column combining's")
    throughput_per_area_gain: float = optional("x", "--area: throughput per mm^2 over the dense array's")
    throughput_per_area_gain_vs_cc: float = optional(
        "x", "--area: throughput per mm^2 over column combining's"
    )


class SimulateTotal(PackTotal, HardwareFigures, AreaTotals):
    """Sums over the layers; ratios over the sums."""

    cycles: Cycles
    dense_cycles: DenseCycles
    speedup: Speedup
    energy_pj: EnergyPj
    dense_energy_pj: DenseEnergyPj
    energy_gain: EnergyGain


class SimulateConfig(PackOptions):
    """The packing options, the array and the input vectors."""

    array: str = field("PEs", "--array rows x columns")
    m_source: str = field("-", "where M came from: topology, model, --vectors or assumed 1")
    packed_file: str = optional("-", "the packed input (its layers' options are in the layers)")
    arch: str = optional("file", "--arch: the architecture file")
    match: str | None = optional(
        "-", "--match dropped: each layer's height is the least whose dropped |w| is at most column "
        "combining's; null: the heights given"
    )


class SimulateArea(Result):
    """--area: the arrays synthesised (one PE for every layer: the widest multiplexer any layer needs)."""

    method: str = optional("-", "the PE's method (tight, nm, column-combining, dense, tight-subword)")
    lanes: int = optional("lanes", "the PE's LANES (G)")
    pe_area_um2: float = optional("um^2", "cell area of one PE")
    array_area_um2: float = optional("um^2", "cell area of the array")
    dense_pe_area_um2: float = optional("um^2", "the dense PE's")
    dense_array_area_um2: float = optional("um^2", "the dense array's")
    cc_alpha: int = optional("lanes", "column combining's alpha (its PE's lanes)")
    cc_pe_area_um2: float = optional("um^2", "column combining's PE")
    cc_array_area_um2: float = optional("um^2", "column combining's array")
    clock_mhz: float = optional("MHz", "the clock of the throughput figures (--arch)")
    library: str = optional("-", "the cell library of the areas")


class SimulateReport(Versioned):
    """`tightcompress simulate --json`: the pack report plus cycles, PE utilization and energy per layer on
    one array, against the dense layer and column combining."""

    schema_name = "simulate"

    config: SimulateConfig = field("-", "the packing options, the array and the input vectors")
    layers: list[SimulateLayer] = field("-", "one entry per packed layer, in model order")
    total: SimulateTotal = field("-", "sums over the layers; ratios over the sums")
    energy_table: ArchEnergy = field(
        "pJ", "the per-operation energies used (hw/energy.py EnergyTable: pJ per op or bit) and source"
    )
    weights: str = optional("-", "a topology alone: the seeded random weights used")
    architecture: ArchitectureReport = optional(
        "-", "the architecture simulated (--arch file or built-in; --array applied); unlimited as null"
    )
    area: SimulateArea = optional(
        "-", "--area: the arrays synthesised (one PE for every layer: the widest multiplexer any layer needs)"
    )
    notes: Notes = optional("-", "where the matrices came from, what was left out and why, and other remarks")
