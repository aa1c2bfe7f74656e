"""`tightcompress area --json`: cells and area of one PE and of the array."""

from __future__ import annotations

from tightcompress.results.base import Versioned, field, optional


class AreaReport(Versioned):
    """`tightcompress area --json`: cells and area of one PE and of the R x C array for a method,
    synthesised by Yosys from the exported Verilog and charged Nangate45 cell areas (hw/area.py,
    hw/cells.py), against the dense PE and array."""

    schema_name = "area"

    method: str = field("-", "packing method: dense, tight, nm, column-combining, tight-subword")
    array: str = field("PEs", "array rows x columns")
    lanes: int = optional("lanes", "LANES of the PE: G, alpha for column combining, 1 for dense")
    group: int | None = optional("rows", "--group G (tight, nm, tight-subword)")
    alpha: int | None = optional("columns", "--alpha (column combining)")
    parameters: dict[str, int] = optional(
        "-", "the Verilog parameters synthesised: LANES, A_BITS, W_BITS, ACC_BITS, SUBWORD"
    )
    pe_module: str = optional("-", "the PE module: tc_pe or tc_pe_subword")
    pe_cells: int = field("cells", "standard cells of one PE")
    pe_cells_by_type: dict[str, int] = field(
        "cells", "cells of one PE by gate type (hw/cells.py maps each to a Nangate45 cell)"
    )
    pe_flip_flops: int = optional("cells", "flip-flops of one PE")
    pe_area_um2: float = field("um^2", "cell area of one PE")
    array_cells: int = field("cells", "standard cells of the whole array (R x C PEs and the skew)")
    array_cells_by_type: dict[str, int] = optional("cells", "cells of the whole array by gate type")
    array_area_um2: float = field("um^2", "cell area of the whole array")
    array_area_mm2: float = optional("mm^2", "the same in mm^2")
    array_parts_um2: dict[str, float] = optional(
        "um^2", "the array's area by part: pes, skew_deskew (input skew and output deskew registers), "
        "other (top-level logic)"
    )
    dense_pe_area_um2: float = field("um^2", "cell area of the dense PE (LANES = 1) on the same widths")
    dense_array_area_um2: float = optional("um^2", "cell area of the dense array of the same size")
    pe_area_vs_dense: float = optional("x", "pe_area_um2 / dense_pe_area_um2")
    array_area_vs_dense: float = optional("x", "array_area_um2 / dense_array_area_um2")
    library: str = field("-", "the cell library and file the areas come from")
    gate_set: str = optional("-", "the gates ABC maps onto (abc -g)")
    yosys: str = optional("-", "the Yosys that synthesised")
    cached: bool = optional("-", "the synthesis result came from the cache")
    arch: str = optional("file", "--arch: the architecture file")
