"""Per-layer and total hardware figures of packed layers: cycles, PE utilization, energy, gains over dense.

The dense baseline of a layer is the same (kept) `K x N` matrix packed by method dense with the array's
column count as tile, run on the same array with the same M; optionally column combining is a second
baseline (`cc_baseline`), giving `speedup_vs_cc` and `energy_gain_vs_cc`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tightcompress.baselines import pack_dense
from tightcompress.format.packed import PackedMatrix
from tightcompress.hw.cycles import CycleReport, bandwidth_stalls, packed_cycles, parse_array
from tightcompress.hw.energy import DEFAULT_ENERGY, EnergyTable, packed_energy

if TYPE_CHECKING:
    from tightcompress.hw.arch import Architecture


def dense_baseline(packed: PackedMatrix, array: tuple[int, int] = (32, 32)) -> PackedMatrix:
    """The kept weights of `packed` packed dense, one tile per array width."""
    return pack_dense(packed.to_dense(), tile=parse_array(array)[1])


def layer_cycles(
    packed: PackedMatrix,
    array: tuple[int, int],
    m: int,
    *,
    trim: bool = False,
    arch: Architecture | None = None,
    weight_bits: int = 8,
    slot_extra_bits: int = 0,
) -> CycleReport:
    """`packed_cycles` plus the stalls of `arch`'s buffer bandwidths (none for the built-in one)."""
    cyc = packed_cycles(packed, array, m, trim=trim)
    if arch is None or arch.unlimited_bandwidth:
        return cyc
    stalls = bandwidth_stalls(
        packed,
        array,
        m,
        act_bits=arch.act_bits,
        slot_bits=weight_bits + slot_extra_bits + packed.index_bits,
        acc_bits=arch.acc_bits,
        act_bandwidth=arch.activations.bandwidth_bits_per_cycle,
        weight_bandwidth=arch.weights.bandwidth_bits_per_cycle,
        out_bandwidth=arch.outputs.bandwidth_bits_per_cycle,
        trim=trim,
    )["total"]
    cycles = cyc.cycles + stalls
    pe_cycles = cycles * array[0] * array[1]
    return replace(
        cyc,
        cycles=cycles,
        pe_cycles=pe_cycles,
        utilization_pe=cyc.useful_macs / pe_cycles if pe_cycles else 0.0,
        stall_cycles=stalls,
    )


def layer_energy(
    packed: PackedMatrix,
    array: tuple[int, int],
    m: int,
    *,
    table: EnergyTable | None = None,
    arch: Architecture | None = None,
    input_features: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """`packed_energy` with `arch`'s activation/accumulator widths and buffer sizes (unlimited without)."""
    if arch is not None:
        options.update(
            act_bits=arch.act_bits,
            acc_bits=arch.acc_bits,
            act_buffer_bits=arch.activations.size_bits,
            out_buffer_bits=arch.outputs.size_bits,
        )
    return packed_energy(
        packed, array, m, table=table or DEFAULT_ENERGY, input_features=input_features, **options
    )


def simulate_packed(
    packed: PackedMatrix,
    *,
    array: tuple[int, int] = (32, 32),
    m: int = 1,
    energy: EnergyTable | None = None,
    weight_bits: int = 8,
    slot_extra_bits: int = 0,
    gate_zeros: bool = False,
    trim: bool = False,
    dense: PackedMatrix | None = None,
    cc_baseline: PackedMatrix | None = None,
    arch: Architecture | None = None,
    input_features: int | None = None,
) -> dict[str, Any]:
    """Hardware figures of one packed layer on an `R x C` array with M input vectors (see module doc).

    Fields: cycles, dense_cycles, speedup, utilization_pe, dense_utilization_pe, energy_pj,
    dense_energy_pj, energy_gain, energy_breakdown_pj, and more; `*_vs_cc` ones with `cc_baseline`.
    `min_folds` is the fewest folds the layer's passes can take (one each: a pass needs at least one load
    of the array, whatever its height); `at_min_folds` says every pass already fits in one fold of `R`
    rows, so a higher compression rate saves slots but no more cycles on this array.
    `arch` (`hw.arch`) adds its buffers' DRAM traffic and bandwidth stalls to the layer and its baselines;
    `energy` overrides its energy table. `input_features`: see `hw.energy.packed_energy`.
    """
    array = parse_array(array)
    table = energy or (arch.energy if arch is not None else DEFAULT_ENERGY)
    options = {"weight_bits": weight_bits, "slot_extra_bits": slot_extra_bits, "gate_zeros": gate_zeros}
    dense = dense if dense is not None else dense_baseline(packed, array)
    cyc = layer_cycles(
        packed, array, m, trim=trim, arch=arch, weight_bits=weight_bits, slot_extra_bits=slot_extra_bits
    )
    dense_cyc = layer_cycles(dense, array, m, trim=trim, arch=arch, weight_bits=weight_bits)
    dense_useful = packed.input_nnz * int(m)
    en = layer_energy(packed, array, m, table=table, arch=arch, input_features=input_features, **options)
    # The dense baseline is the conventional 8-bit array: same operand widths, no mux, no index.
    dense_en = layer_energy(
        dense,
        array,
        m,
        table=table,
        arch=arch,
        input_features=input_features,
        weight_bits=weight_bits,
        gate_zeros=gate_zeros,
    )
    result: dict[str, Any] = {
        "array": f"{array[0]}x{array[1]}",
        "m": int(m),
        "cycles": cyc.cycles,
        "dense_cycles": dense_cyc.cycles,
        "speedup": dense_cyc.cycles / cyc.cycles if cyc.cycles else 0.0,
        "utilization_pe": cyc.utilization_pe,
        # The dense array runs the layer as given: every nonzero the method was handed, also those it dropped,
        # so the dense baseline is the same whatever the method.
        "dense_utilization_pe": dense_useful / dense_cyc.pe_cycles if dense_cyc.pe_cycles else 0.0,
        "dense_useful_macs": dense_useful,
        "passes": cyc.passes,
        "folds": cyc.folds,
        "min_folds": cyc.passes,
        "at_min_folds": cyc.folds <= cyc.passes,
        "dense_folds": dense_cyc.folds,
        "useful_macs": cyc.useful_macs,
        "pe_cycles": cyc.pe_cycles,
        "dense_pe_cycles": dense_cyc.pe_cycles,
        "energy_pj": en["energy_pj"],
        "dense_energy_pj": dense_en["energy_pj"],
        "energy_gain": dense_en["energy_pj"] / en["energy_pj"] if en["energy_pj"] else 0.0,
        "energy_breakdown_pj": en["breakdown_pj"],
        "dense_energy_breakdown_pj": dense_en["breakdown_pj"],
        "accesses": en["accesses"],
        "stall_cycles": cyc.stall_cycles,
        "dense_stall_cycles": dense_cyc.stall_cycles,
    }
    if cc_baseline is not None:
        result.update(
            versus_cc(
                result,
                cc_baseline,
                array,
                m,
                table=table,
                weight_bits=weight_bits,
                gate_zeros=gate_zeros,
                trim=trim,
                arch=arch,
                input_features=input_features,
            )
        )
    return result


def versus_cc(
    result: dict[str, Any],
    cc_baseline: PackedMatrix,
    array: tuple[int, int],
    m: int,
    *,
    table: EnergyTable | None = None,
    weight_bits: int = 8,
    gate_zeros: bool = False,
    trim: bool = False,
    arch: Architecture | None = None,
    input_features: int | None = None,
) -> dict[str, Any]:
    """The `*_vs_cc` fields of a layer's `result`: column combining's `cc_baseline` on the same array with
    `weight_bits`-bit weights (8 for a subword layer's baseline, whose own slots hold 4 bits)."""
    cc_cyc = layer_cycles(cc_baseline, array, m, trim=trim, arch=arch, weight_bits=weight_bits)
    cc_en = layer_energy(
        cc_baseline,
        array,
        m,
        table=table,
        arch=arch,
        input_features=input_features,
        weight_bits=weight_bits,
        gate_zeros=gate_zeros,
    )
    cycles, energy = result["cycles"], result["energy_pj"]
    return {
        "cc_cycles": cc_cyc.cycles,
        "speedup_vs_cc": cc_cyc.cycles / cycles if cycles else 0.0,
        "cc_utilization_pe": cc_cyc.utilization_pe,
        "cc_pe_cycles": cc_cyc.pe_cycles,
        "cc_useful_macs": cc_cyc.useful_macs,
        "cc_energy_pj": cc_en["energy_pj"],
        "cc_energy_breakdown_pj": cc_en["breakdown_pj"],
        "energy_gain_vs_cc": cc_en["energy_pj"] / energy if energy else 0.0,
        "cc_stall_cycles": cc_cyc.stall_cycles,
    }


def total_simulation(layers: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-layer hardware figures; speed-up, utilization and gains are taken over the sums."""
    layers = list(layers)
    keys = (
        "cycles",
        "dense_cycles",
        "useful_macs",
        "pe_cycles",
        "dense_pe_cycles",
        "energy_pj",
        "dense_energy_pj",
    )
    total: dict[str, Any] = {key: sum(layer[key] for layer in layers) for key in keys}
    for key in ("stall_cycles", "dense_stall_cycles", "cc_stall_cycles"):
        if layers and all(key in layer for layer in layers):
            total[key] = sum(layer[key] for layer in layers)
    dense_useful = sum(layer.get("dense_useful_macs", layer["useful_macs"]) for layer in layers)
    total["speedup"] = total["dense_cycles"] / total["cycles"] if total["cycles"] else 0.0
    total["utilization_pe"] = total["useful_macs"] / total["pe_cycles"] if total["pe_cycles"] else 0.0
    total["dense_useful_macs"] = dense_useful
    total["dense_utilization_pe"] = (
        dense_useful / total["dense_pe_cycles"] if total["dense_pe_cycles"] else 0.0
    )
    total["energy_gain"] = total["dense_energy_pj"] / total["energy_pj"] if total["energy_pj"] else 0.0
    for key in ("energy_breakdown_pj", "dense_energy_breakdown_pj", "accesses"):
        if layers and all(key in layer for layer in layers):
            total[key] = _sum_parts(layer[key] for layer in layers)
    if layers and all("cc_cycles" in layer for layer in layers):
        cc_cycles = sum(layer["cc_cycles"] for layer in layers)
        cc_energy = sum(layer["cc_energy_pj"] for layer in layers)
        total.update(
            {
                "cc_cycles": cc_cycles,
                "speedup_vs_cc": cc_cycles / total["cycles"] if total["cycles"] else 0.0,
                "cc_energy_pj": cc_energy,
                "energy_gain_vs_cc": cc_energy / total["energy_pj"] if total["energy_pj"] else 0.0,
            }
        )
        if all("cc_pe_cycles" in layer for layer in layers):
            cc_pe = sum(layer["cc_pe_cycles"] for layer in layers)
            total["cc_utilization_pe"] = (
                sum(layer["cc_useful_macs"] for layer in layers) / cc_pe if cc_pe else 0.0
            )
            total["cc_energy_breakdown_pj"] = _sum_parts(layer["cc_energy_breakdown_pj"] for layer in layers)
    return total


def _sum_parts(parts: Iterable[dict[str, float]]) -> dict[str, float]:
    """Sum dicts of figures key by key (energy breakdowns, access counts)."""
    total: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total
