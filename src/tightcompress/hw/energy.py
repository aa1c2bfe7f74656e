"""Energy model of one GEMM layer on a weight-stationary array, from per-operation energies.

Source of the base energies: M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, 45 nm at 0.9 V: 8-bit integer add 0.03 pJ, 8-bit multiply 0.2 pJ, 32-bit add 0.1 pJ, 32-bit
multiply 3.1 pJ; a 64-bit read from an 8 KB / 32 KB / 1 MB SRAM 10 / 20 / 100 pJ; a 64-bit DRAM read
1.3-2.6 nJ. What the table does not give is derived, and each assumption is named here:

- MAC (`b_w`-bit weight x `b_a`-bit activation, int32 accumulate) = `mult8 * (b_w * b_a) / 64 + add32`:
  an array multiplier's partial-product array grows with the product of the operand widths (ASSUMPTION
  "multiplier energy ~ b_w * b_a", i.e. bit-width squared for equal widths), so a 4 x 8-bit multiply
  costs half an 8 x 8 one; the accumulator is a 32-bit add.
- a G:1 multiplexer of `b_a`-bit activations is charged as `G - 1` 2:1-mux bits per activation bit, and
  a register bit read or written (stationary weight and lane index read each MAC; activation lanes
  forwarded PE to PE each cycle) as one register bit: `mux2_pj_per_bit` and `reg_pj_per_bit` come from
  the synthesised PE's cells times Nangate45 cell energies, scaled to 0.9 V (`hw.netlist_energy` says
  how; 0.00158 and 0.00720 pJ). They replace the first model's assumptions "a 2:1 mux bit is half an
  adder bit" (`add8 / 16` = 0.001875 pJ, the whole tree switching) and "a flip-flop bit is an adder bit"
  (`add8 / 8` = 0.00375 pJ): the mux is 16 % cheaper, a register bit 1.9x dearer.
- all on-chip buffers default to 32 KB SRAMs (20 pJ per 64 bits); DRAM is the middle of Horowitz's range,
  1.95 nJ per 64 bits.

What is counted per layer (no zero-skipping by default: a weight-stationary PE multiplies whatever weight it
holds; `gate_zeros=True` charges MACs, muxes and register reads only for nonzero slots):
- `mac`, `mux`, `weight_reg`: once per occupied slot per input vector;
- `act_forward`: each pass forwards, per column and input vector, the lanes of each non-empty group
  (G activations shared by that group's rows; one per row for dense);
- `sram_weights` / `sram_indices`: each slot's weight / lane index read once (M is streamed per fold);
- `sram_activations`: per pass, the inputs its groups read, once per input vector;
- `sram_outputs`: per fold, one `acc_bits` write per column and input vector, and for every fold after the
  first of a pass a read of the partial sums it accumulates onto;
- `dram_weights`: the packed weights and indices brought in once;
- `dram_activations`, `dram_outputs`: off-chip traffic of activations and outputs that do not fit their
  buffers (`act_buffer_bits`, `out_buffer_bits`; unlimited by default, which keeps them on chip):
  - a layer whose input (`input_features x M` activations of `act_bits`) does not fit the activation
    buffer reads, every pass, the activations that pass streams from DRAM (no reuse across passes);
  - a pass whose partial sums (`width x M` of `acc_bits`) do not fit the output buffer writes every fold's
    partial sums to DRAM and reads them back for the next fold (what SCALE-Sim's DRAM OFMAP counts);
  - a layer whose outputs (`N x M`, requantized to `act_bits` for the next layer) do not fit the output
    buffer writes them to DRAM once.
  The SRAM traffic is unchanged (spilled data still passes through the buffer).

`accesses` gives the SRAM and DRAM traffic in elements (one weight, index, activation or partial sum
each). Against SCALE-Sim v3 on dense layers (`tests/test_hw_scalesim.py`): its SRAM IFMAP reads, Filter
reads and OFMAP writes equal `sram_activation_reads`, `sram_weight_reads` and `sram_output_writes`
exactly. SCALE-Sim counts no partial-sum reads (its OFMAP SRAM only takes writes), where this model reads
the partial sums every fold after the first accumulates onto (`sram_output_reads`,
`(ceil(K/R) - 1) * N * M` for a dense layer); and it counts DRAM traffic for activations and outputs
(IFMAP reads of the padded input, OFMAP writes of every fold's partial sums), which this model counts only
for buffers too small to hold them (the default buffers are unlimited: activations and outputs stay on
chip between layers, only weights come from DRAM; `hw.arch` sets finite sizes).

`weight_bits=4` (and `slot_extra_bits=1` for a shift bit) is the hook for the 4-bit subword mode.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from tightcompress.errors import TightCompressError, missing_file
from tightcompress.format.packed import PackedMatrix
from tightcompress.hw.cycles import array_passes, check_vectors, parse_array
from tightcompress.hw.netlist_energy import derived_entries

SOURCE = (
    "Horowitz, ISSCC 2014, 45 nm, 0.9 V (derived entries: see tightcompress.hw.energy); mux2 and reg: "
    "synthesised PE x Nangate45 cell energies at 0.9 V (tightcompress.hw.netlist_energy)"
)
_NETLIST = derived_entries()


# The largest per-operation (or per-bit) energy accepted: a millijoule, ten orders above a DRAM bit (about
# 30 pJ); larger values are typos (1e308 overflowed the totals to infinity and wrote invalid JSON).
MAX_ENERGY_PJ = 1e9


@dataclass(frozen=True)
class EnergyTable:
    """Per-operation energies in pJ (bit-level entries per bit). Defaults: Horowitz ISSCC 2014, 45 nm."""

    add8_pj: float = 0.03
    mult8_pj: float = 0.2
    add32_pj: float = 0.1
    mult32_pj: float = 3.1
    mux2_pj_per_bit: float = _NETLIST["mux2_pj_per_bit"]
    reg_pj_per_bit: float = _NETLIST["reg_pj_per_bit"]
    sram_weight_pj_per_bit: float = 20.0 / 64
    sram_index_pj_per_bit: float = 20.0 / 64
    sram_act_pj_per_bit: float = 20.0 / 64
    sram_out_pj_per_bit: float = 20.0 / 64
    dram_pj_per_bit: float = 1950.0 / 64
    source: str = SOURCE

    def mac_pj(self, weight_bits: int = 8, act_bits: int = 8) -> float:
        """One multiply (scaled by `weight_bits * act_bits / 64`) plus a 32-bit accumulate."""
        return self.mult8_pj * weight_bits * act_bits / 64 + self.add32_pj

    def mux_pj(self, group: int, act_bits: int = 8) -> float:
        """One G:1 selection of a `act_bits` activation: `(G - 1) * act_bits` 2:1 mux bits; 0 for G = 1."""
        return max(group - 1, 0) * act_bits * self.mux2_pj_per_bit

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON fields."""
        return asdict(self)


DEFAULT_ENERGY = EnergyTable()


def load_energy_table(
    path: str | os.PathLike[str] | None = None, *, base: EnergyTable | None = None, **overrides: float
) -> EnergyTable:
    """The default table (or `base`), with fields overridden from a `.toml`/`.json` file (flat keys) and
    keywords."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise missing_file("energy table", path)
        try:
            if path.suffix.lower() == ".toml":
                values = tomllib.loads(path.read_text())
            else:
                values = json.loads(path.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise TightCompressError(f"{path}: not a readable energy table ({exc})") from None
        except RecursionError:  # nested deeper than Python's stack
            raise TightCompressError(f"{path}: not a readable energy table (nested too deeply)") from None
        if not isinstance(values, dict):
            raise TightCompressError(f"{path}: the energy table must be a flat mapping of field = value")
    values.update(overrides)
    known = {f.name for f in fields(EnergyTable)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TightCompressError(f"unknown energy table field(s): {', '.join(unknown)}")
    for key, value in values.items():
        if key == "source":
            continue
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not 0 <= value <= MAX_ENERGY_PJ
        ):
            raise TightCompressError(
                f"energy table field {key} must be a number in [0, {MAX_ENERGY_PJ:g}] pJ, got {value!r}"
            )
    base = base or DEFAULT_ENERGY
    if path is not None and "source" not in values:
        values["source"] = f"{base.source}; overridden by {path}"
    return replace(base, **values)


def packed_energy(
    packed: PackedMatrix,
    array: tuple[int, int] = (32, 32),
    m: int = 1,
    *,
    table: EnergyTable | None = None,
    weight_bits: int = 8,
    act_bits: int = 8,
    acc_bits: int = 32,
    slot_extra_bits: int = 0,
    gate_zeros: bool = False,
    act_buffer_bits: float = math.inf,
    out_buffer_bits: float = math.inf,
    input_features: int | None = None,
) -> dict[str, Any]:
    """Energy (pJ) of one packed layer with M input vectors: `energy_pj` and its `breakdown_pj` by part.

    `input_features` is the layer's distinct inputs per vector (default `packed.K`; a subword layer's 2K
    rows read K activations): with `act_buffer_bits` it decides whether the input fits on chip."""
    table = table or DEFAULT_ENERGY
    rows, cols = parse_array(array)
    m = check_vectors(m)
    index_bits = packed.index_bits
    plan = array_passes(packed, (rows, cols))
    slots = sum(p.height * p.width for p in plan)
    macs = (packed.nnz if gate_zeros else slots) * m
    folds = [math.ceil(p.height / rows) for p in plan]
    forwarded = sum(p.inputs * p.width for p in plan) * m * act_bits
    out_write_count = sum(f * p.width for f, p in zip(folds, plan, strict=True)) * m
    out_read_count = sum(max(f - 1, 0) * p.width for f, p in zip(folds, plan, strict=True)) * m
    out_writes, out_reads = out_write_count * acc_bits, out_read_count * acc_bits
    slot_bits = weight_bits + index_bits + slot_extra_bits
    act_reads = sum(p.inputs for p in plan) * m
    features = packed.K if input_features is None else input_features
    dram_act_reads = act_reads if features * m * act_bits > act_buffer_bits else 0
    psum_writes = psum_reads = final_writes = 0
    outputs_spill = packed.N * m * act_bits > out_buffer_bits
    for f, p in zip(folds, plan, strict=True):
        if f > 1 and p.width * m * acc_bits > out_buffer_bits:
            psum_writes += (f - 1) * p.width * m
            psum_reads += (f - 1) * p.width * m
        if outputs_spill:
            final_writes += p.width * m
    breakdown = {
        "mac": macs * table.mac_pj(weight_bits, act_bits),
        "mux": macs * table.mux_pj(packed.group, act_bits),
        "weight_reg": macs * slot_bits * table.reg_pj_per_bit,
        "act_forward": forwarded * table.reg_pj_per_bit,
        "sram_weights": slots * (weight_bits + slot_extra_bits) * table.sram_weight_pj_per_bit,
        "sram_indices": slots * index_bits * table.sram_index_pj_per_bit,
        "sram_activations": act_reads * act_bits * table.sram_act_pj_per_bit,
        "sram_outputs": (out_writes + out_reads) * table.sram_out_pj_per_bit,
        "dram_weights": slots * slot_bits * table.dram_pj_per_bit,
        "dram_activations": dram_act_reads * act_bits * table.dram_pj_per_bit,
        "dram_outputs": ((psum_writes + psum_reads) * acc_bits + final_writes * act_bits)
        * table.dram_pj_per_bit,
    }
    # The same traffic in operand elements (words), as SCALE-Sim counts its SRAM and DRAM accesses.
    accesses = {
        "sram_weight_reads": int(slots),
        "sram_index_reads": int(slots if index_bits else 0),
        "sram_activation_reads": int(act_reads),
        "sram_output_writes": int(out_write_count),
        "sram_output_reads": int(out_read_count),
        "dram_weight_reads": int(slots),
        "dram_activation_reads": int(dram_act_reads),
        "dram_partial_sum_writes": int(psum_writes),
        "dram_partial_sum_reads": int(psum_reads),
        "dram_output_writes": int(final_writes),
    }
    return {
        "energy_pj": float(sum(breakdown.values())),
        "breakdown_pj": {key: float(value) for key, value in breakdown.items()},
        "accesses": accesses,
        "macs": int(macs),
        "weight_bits": weight_bits,
        "act_bits": act_bits,
    }
