"""Area of a PE and of an R x C array for each packing method, from Yosys synthesis of the exported Verilog.

Each method runs on the same array (`tc_array`, `hw.synth`) with a different PE:

    dense               tc_pe, LANES = 1 (no multiplexer; a 1-bit lane register that holds nothing)
    tight, nm           tc_pe, LANES = G (a G:1 multiplexer, a ceil(log2 G)-bit lane index; N:M: G = M)
    column-combining    tc_pe, LANES = alpha (each PE picks one of the alpha combined columns' inputs)
    tight-subword       tc_pe_subword, LANES = G, 4-bit weights and a shift bit

Widths (activation, weight, accumulator bits) come from the architecture (`hw.arch`, 8/8/32 built in; the
subword PE keeps 4-bit weights). The area is the cell area of the synthesised netlist in the Nangate45
table of `hw.cells` (its docstring says what that leaves out: wires, sizing, clock tree). The PE figures are
those of the PE module inside the synthesised array, so `array = R x C x PE + skew/deskew registers`
holds exactly; the array's own wiring is free in a cell-area model.

In this RTL every PE forwards the whole group bus (LANES x A_BITS bits) to its right-hand neighbour, so a
PE's area grows with G through its forwarding registers as well as through its multiplexer.
"""

from __future__ import annotations

from typing import Any

from tightcompress.errors import TightCompressError
from tightcompress.hw.arch import DEFAULT_ARCH, Architecture
from tightcompress.hw.cells import ABC_GATES, LIBRARY, area_um2, cell_table, gate_type
from tightcompress.hw.cycles import parse_array

METHODS = ("dense", "tight", "nm", "column-combining", "tight-subword")
SUBWORD_WEIGHT_BITS = 4
MAX_LANES = 256


def pe_parameters(
    method: str, *, group: int | None = None, alpha: int | None = None, arch: Architecture | None = None
) -> dict[str, int]:
    """The Verilog parameters of the PE a method needs (see the module docstring)."""
    arch = arch or DEFAULT_ARCH
    if method not in METHODS:
        raise TightCompressError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "dense":
        lanes = 1
    elif method == "column-combining":
        lanes = 8 if alpha is None else alpha
    else:
        if group is None:
            raise TightCompressError(f"--method {method} needs --group G (the lanes of its multiplexer)")
        lanes = group
    what = "--alpha" if method == "column-combining" else "--group"
    if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= MAX_LANES:
        raise TightCompressError(f"{what} must be an integer in [1, {MAX_LANES}], got {lanes!r}")
    subword = method == "tight-subword"
    return {
        "LANES": lanes,
        "A_BITS": arch.act_bits,
        "W_BITS": SUBWORD_WEIGHT_BITS if subword else arch.weight_bits,
        "ACC_BITS": arch.acc_bits,
        "SUBWORD": int(subword),
    }


def _by_gate(cells: dict[str, int]) -> dict[str, int]:
    """Yosys cell types -> the cell table's gate types."""
    out: dict[str, int] = {}
    for name, n in cells.items():
        gate = gate_type(name)
        out[gate] = out.get(gate, 0) + n
    return dict(sorted(out.items()))


def method_area(
    method: str,
    array: tuple[int, int] | str = (32, 32),
    *,
    group: int | None = None,
    alpha: int | None = None,
    arch: Architecture | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Cells and area of one PE and of the whole array for `method` (fields as `tightcompress area`)."""
    from tightcompress.hw.synth import synthesize

    arch = arch or DEFAULT_ARCH
    rows, cols = parse_array(array)
    params = pe_parameters(method, group=group, alpha=alpha, arch=arch)
    synth = synthesize("tc_array", {"ROWS": rows, "COLS": cols, **params}, use_cache=use_cache)
    table = cell_table(arch.cells)
    pe_name = next(name for name in synth["modules"] if name.split("#")[0] in ("tc_pe", "tc_pe_subword"))
    pe = synth["modules"][pe_name]
    pe_cells = _by_gate(pe["cells"])
    array_cells = _by_gate(synth["design"])
    delays = {name: info for name, info in synth["modules"].items() if name.split("#")[0] == "tc_delay"}
    skew_area = sum(area_um2(_by_gate(m["cells"]), table) * m["instances"] for m in delays.values())
    pe_area = area_um2(pe_cells, table)
    total = area_um2(array_cells, table)
    return {
        "method": method,
        "array": f"{rows}x{cols}",
        "lanes": params["LANES"],
        "group": group if method in ("tight", "nm", "tight-subword") else None,
        "alpha": params["LANES"] if method == "column-combining" else None,
        "parameters": params,
        "pe_module": pe_name.split("#")[0],
        "pe_cells": int(sum(pe_cells.values())),
        "pe_cells_by_type": pe_cells,
        "pe_flip_flops": int(sum(n for g, n in pe_cells.items() if g.startswith("DFF"))),
        "pe_area_um2": pe_area,
        "array_cells": int(sum(array_cells.values())),
        "array_cells_by_type": array_cells,
        "array_area_um2": total,
        "array_area_mm2": total / 1e6,
        "array_parts_um2": {
            "pes": pe_area * pe["instances"],
            "skew_deskew": skew_area,
            "other": total - pe_area * pe["instances"] - skew_area,
        },
        "library": LIBRARY,
        "gate_set": ABC_GATES,
        "yosys": synth["yosys"],
        "cached": synth["cached"],
    }


def pe_for_layers(packed: dict[str, Any]) -> tuple[str, int]:
    """`(method, lanes)` of the one PE that runs every packed layer: the widest multiplexer any layer needs
    (a file whose layers use different G runs on an array built for the largest); the subword PE when
    every layer is subword-packed. A mix of subword and word layers is refused (two different PEs)."""
    from tightcompress.prune.subword_pack import is_subword

    layers = list(packed.values())
    subword = [is_subword(p) for p in layers]
    if any(subword) and not all(subword):
        raise TightCompressError(
            "--area: subword and word layers need two different PEs; simulate them apart"
        )
    lanes = max(int(p.group) for p in layers)
    if all(subword):
        return "tight-subword", lanes
    methods = {p.method for p in layers}
    if lanes == 1:
        return "dense", 1
    if methods == {"column-combining"}:
        return "column-combining", lanes
    return ("nm" if methods == {"nm"} else "tight"), lanes


def throughput_per_area(
    total: dict[str, Any],
    packed: dict[str, Any],
    arch: Architecture,
    *,
    cc_alpha: int | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Area of the arrays that run the network (the method's, dense, column combining's) and the
    throughput per unit area of each: the network's MACs (every nonzero weight given to the packer x M,
    `dense_useful_macs`: the same work for all three) per second at `arch.clock_mhz`, over the array's
    cell area.

    Returns `(area block, total fields)` merged as one dict: `area` (what was synthesised) and the totals
    `area_mm2`, `dense_area_mm2`, `throughput_gmacs`, `throughput_gmacs_per_mm2`, the dense ones,
    `throughput_per_area_gain` (over dense) and, with `cc_alpha` and `cc_cycles` in `total`, the cc ones.
    """
    method, lanes = pe_for_layers(packed)
    options: dict[str, Any] = {"arch": arch, "use_cache": use_cache}
    if method == "column-combining":
        own = method_area(method, arch.array, alpha=lanes, **options)
    elif method == "dense":
        own = method_area(method, arch.array, **options)
    else:
        own = method_area(method, arch.array, group=lanes, **options)
    dense = method_area("dense", arch.array, **options)
    hertz = arch.clock_mhz * 1e6
    work = total.get("dense_useful_macs", total["useful_macs"])  # the network as given, for all three

    def gmacs(cycles: int) -> float:
        return work * hertz / cycles / 1e9 if cycles else 0.0

    out: dict[str, Any] = {
        "area_mm2": own["array_area_mm2"],
        "dense_area_mm2": dense["array_area_mm2"],
        "throughput_gmacs": gmacs(total["cycles"]),
        "dense_throughput_gmacs": gmacs(total["dense_cycles"]),
    }
    out["throughput_gmacs_per_mm2"] = out["throughput_gmacs"] / out["area_mm2"]
    out["dense_throughput_gmacs_per_mm2"] = out["dense_throughput_gmacs"] / out["dense_area_mm2"]
    out["throughput_per_area_gain"] = out["throughput_gmacs_per_mm2"] / out["dense_throughput_gmacs_per_mm2"]
    block = {
        "method": method,
        "lanes": lanes,
        "pe_area_um2": own["pe_area_um2"],
        "array_area_um2": own["array_area_um2"],
        "dense_pe_area_um2": dense["pe_area_um2"],
        "dense_array_area_um2": dense["array_area_um2"],
        "clock_mhz": arch.clock_mhz,
        "library": own["library"],
    }
    if cc_alpha is not None and "cc_cycles" in total:
        cc = method_area("column-combining", arch.array, alpha=cc_alpha, **options)
        out["cc_area_mm2"] = cc["array_area_mm2"]
        out["cc_throughput_gmacs"] = gmacs(total["cc_cycles"])
        out["cc_throughput_gmacs_per_mm2"] = out["cc_throughput_gmacs"] / out["cc_area_mm2"]
        out["throughput_per_area_gain_vs_cc"] = (
            out["throughput_gmacs_per_mm2"] / out["cc_throughput_gmacs_per_mm2"]
        )
        block.update(
            cc_alpha=cc_alpha, cc_pe_area_um2=cc["pe_area_um2"], cc_array_area_um2=cc["array_area_um2"]
        )
    return {"area": block, **out}
