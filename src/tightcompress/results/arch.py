"""An architecture file (`simulate --arch A.toml`, an input; hw/arch.py reads it) and the `architecture`
block `simulate` reports. Unknown keys are errors in both (`extra="forbid"`)."""

from __future__ import annotations

from pydantic import ConfigDict

from tightcompress.results.base import Result, optional

UNLIMITED = "a number, or inf in the TOML file (null in a report): unlimited"


class Closed(Result):
    """A section of the architecture: every key known."""

    model_config = ConfigDict(extra="forbid")


class ArchArray(Closed):
    """The PE array."""

    rows: int = optional("PEs", "PE rows R", ge=1)
    cols: int = optional("PEs", "PE columns C", ge=1)
    clock_mhz: float = optional("MHz", "clock frequency (cycles to seconds)", gt=0)


class ArchBits(Closed):
    """Operand widths."""

    weight: int = optional("bits", "weight bits of a word-level slot", ge=1)
    activation: int = optional("bits", "activation bits", ge=1)
    accumulator: int = optional("bits", "partial-sum bits", ge=1)


class ArchBuffer(Closed):
    """One SRAM buffer."""

    size_kb: float | None = optional("KiB", f"SRAM capacity ({UNLIMITED}: nothing spills to DRAM)")
    bandwidth_bits_per_cycle: float | None = optional(
        "bits/cycle", f"bits per cycle to or from the array ({UNLIMITED}: no stalls)"
    )


class ArchBuffers(Closed):
    """On-chip SRAM buffers."""

    weights: ArchBuffer = optional("-", "the weights buffer: packed weights and lane indices")
    activations: ArchBuffer = optional("-", "the activations buffer: the layer's inputs the feeder reads")
    outputs: ArchBuffer = optional("-", "the outputs buffer: partial sums and the layer's outputs")


class ArchitectureReport(Closed):
    """The architecture simulated (--arch file or built-in; --array applied); unlimited as null."""

    array: ArchArray = optional("-", "the PE array")
    bits: ArchBits = optional("-", "operand widths")
    buffers: ArchBuffers = optional("-", "on-chip SRAM buffers")


class ArchEnergy(Closed):
    """Per-operation energies overriding hw/energy.py EnergyTable: the fields of `energy_table` (pJ,
    *_per_bit per bit, >= 0) and `source`."""

    add8_pj: float = optional("pJ", "an 8-bit addition", ge=0)
    mult8_pj: float = optional("pJ", "an 8-bit multiplication", ge=0)
    add32_pj: float = optional("pJ", "a 32-bit addition", ge=0)
    mult32_pj: float = optional("pJ", "a 32-bit multiplication", ge=0)
    mux2_pj_per_bit: float = optional("pJ/bit", "a 2:1 multiplexer switching one bit", ge=0)
    reg_pj_per_bit: float = optional("pJ/bit", "a register bit written", ge=0)
    sram_weight_pj_per_bit: float = optional("pJ/bit", "a weight bit read from SRAM", ge=0)
    sram_index_pj_per_bit: float = optional("pJ/bit", "a lane-index bit read from SRAM", ge=0)
    sram_act_pj_per_bit: float = optional("pJ/bit", "an activation bit read from SRAM", ge=0)
    sram_out_pj_per_bit: float = optional("pJ/bit", "a partial-sum bit written to or read from SRAM", ge=0)
    dram_pj_per_bit: float = optional("pJ/bit", "a bit moved to or from DRAM", ge=0)
    source: str = optional("-", "where the numbers come from")


class CellFigures(Closed):
    """One gate type's standard-cell figures."""

    area_um2: float = optional("um^2", "cell area", ge=0)
    toggle_fj: float = optional("fJ", "energy of one output toggle", ge=0)
    clock_fj: float = optional("fJ", "flip-flops: clock energy per cycle", ge=0)


class ArchFile(ArchitectureReport):
    """An architecture file, `simulate --arch A.toml` (TOML; an input, described here like the outputs;
    hw/arch.py). Every key is optional and defaults to the built-in architecture (examples/arch.toml);
    unknown keys are errors. DRAM traffic and stalls: see the README."""

    schema_name = "arch"

    energy: ArchEnergy = optional(
        "pJ", "per-operation energies overriding hw/energy.py EnergyTable: the fields of `energy_table` (pJ, "
        "*_per_bit per bit, >= 0) and `source`"
    )
    cells: dict[str, CellFigures] = optional(
        "um^2, fJ", "standard-cell figures overriding hw/cells.py (Nangate45 X1) per gate type (NOT, NAND, "
        "MUX, DFF, ...): area_um2, toggle_fj, and clock_fj for flip-flops"
    )
