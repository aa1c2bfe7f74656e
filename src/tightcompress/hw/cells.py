"""Standard-cell table of the area and netlist-energy models: Nangate45 (FreePDK45) X1 cells.

Yosys maps the PE and the array onto a small gate set (`abc -g` below, flip-flops by `dfflegalize`); each
gate type is charged the area and energy of the Nangate Open Cell Library cell of the same function at X1
drive. Source: NangateOpenCellLibrary_typical.lib (revision 1.0, 2011-02-10; FreePDK45, typical corner
TypTyp, 1.1 V, 25 C), as shipped by The-OpenROAD-Project/OpenSTA (`examples/nangate45_typ.lib.gz`). The
numbers below were read from it by `scripts/cells_from_liberty.py` (run it on the file to repeat them):

- `area_um2`: the cell's Liberty `area` (um^2; Nangate's 1.4 um rows by 0.19 um sites);
- `toggle_fj`: energy of one output transition: the mean internal energy of the output's arcs, rise and
  fall, at 20 ps input slew and 2 fF load, plus that load's `C V^2 / 2`;
- `clock_fj` (flip-flops): energy of one clock cycle with unchanged data (clock pin internal energy, rise
  plus fall, and the clock pin's capacitance charged once).

What the mapping leaves out, and so what an area from this table is: cell area only, X1 drive everywhere
(no sizing for timing), no wires, no placement utilisation, no clock tree. Yosys's `ANDNOT`/`ORNOT`
gates are not in the set because Nangate has no such cell; `abc` builds them from the gates that exist.
A Nangate library compiled by a synthesis tool with timing constraints gives larger numbers; this is the
floor of the same logic, good for comparing PEs with each other, not for a tape-out estimate.
"""

from __future__ import annotations

import math
from typing import Any

from tightcompress.errors import TightCompressError

LIBRARY = (
    "Nangate Open Cell Library (FreePDK45), NangateOpenCellLibrary_typical.lib rev 1.0 (2011-02-10), "
    "typical corner 1.1 V 25 C, X1 cells; read by scripts/cells_from_liberty.py"
)
VOLTAGE = 1.1  # the library's nominal supply (V)
ABC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,MUX,AOI3,OAI3,AOI4,OAI4"  # `abc -g`: gates Nangate has 1:1

# Yosys gate type -> the Nangate cell it is charged as, and that cell's figures.
NANGATE45: dict[str, dict[str, Any]] = {
    "NOT": {"cell": "INV_X1", "area_um2": 0.532, "toggle_fj": 2.197},
    "BUF": {"cell": "BUF_X1", "area_um2": 0.798, "toggle_fj": 3.507},
    "AND": {"cell": "AND2_X1", "area_um2": 1.064, "toggle_fj": 3.701},
    "NAND": {"cell": "NAND2_X1", "area_um2": 0.798, "toggle_fj": 2.569},
    "OR": {"cell": "OR2_X1", "area_um2": 1.064, "toggle_fj": 3.663},
    "NOR": {"cell": "NOR2_X1", "area_um2": 0.798, "toggle_fj": 2.583},
    "XOR": {"cell": "XOR2_X1", "area_um2": 1.596, "toggle_fj": 4.172},
    "XNOR": {"cell": "XNOR2_X1", "area_um2": 1.596, "toggle_fj": 4.115},
    "MUX": {"cell": "MUX2_X1", "area_um2": 1.862, "toggle_fj": 4.407},
    "AOI3": {"cell": "AOI21_X1", "area_um2": 1.064, "toggle_fj": 3.280},
    "OAI3": {"cell": "OAI21_X1", "area_um2": 1.064, "toggle_fj": 3.188},
    "AOI4": {"cell": "AOI22_X1", "area_um2": 1.330, "toggle_fj": 3.427},
    "OAI4": {"cell": "OAI22_X1", "area_um2": 1.330, "toggle_fj": 3.409},
    "DFF": {"cell": "DFF_X1", "area_um2": 4.522, "toggle_fj": 5.391, "clock_fj": 8.057},
    "DFFR": {"cell": "DFFR_X1", "area_um2": 5.320, "toggle_fj": 4.045, "clock_fj": 8.305},
}
SEQUENTIAL = ("DFF", "DFFR")
FIELDS = ("area_um2", "toggle_fj", "clock_fj")


def gate_type(yosys_cell: str) -> str:
    """Yosys's internal cell name (`$_NAND_`, `$_DFF_P_`, `$_DFF_PN0_`) -> the table's gate type."""
    name = yosys_cell.strip("$_")
    if name.startswith("DFF_"):
        kind = name[4:]
        return "DFF" if len(kind) == 1 else "DFFR"
    if name not in NANGATE45:
        raise TightCompressError(f"synthesis produced a {yosys_cell} cell, which the cell table does not map")
    return name


def cell_table(overrides: dict[str, dict[str, float]] | None = None) -> dict[str, dict[str, Any]]:
    """The Nangate45 table with an architecture file's `[cells]` overrides applied."""
    table = {gate: dict(entry) for gate, entry in NANGATE45.items()}
    for gate, entry in (overrides or {}).items():
        table[gate].update(entry)
        table[gate]["cell"] = f"{table[gate]['cell']} (overridden)"
    return table


def check_cell_overrides(data: dict[str, Any], where: str) -> dict[str, dict[str, float]]:
    """Validate an architecture file's `[cells]` section: `GATE = {area_um2 = ..., toggle_fj = ...}`."""
    out: dict[str, dict[str, float]] = {}
    for gate, entry in data.items():
        if gate not in NANGATE45:
            raise TightCompressError(f"{where}: unknown key cells.{gate} (known: {', '.join(NANGATE45)})")
        if not isinstance(entry, dict):
            raise TightCompressError(f"{where}: cells.{gate} must be a table of {', '.join(FIELDS)}")
        for key, value in entry.items():
            allowed = FIELDS if gate in SEQUENTIAL else FIELDS[:2]
            if key not in allowed:
                raise TightCompressError(
                    f"{where}: unknown key cells.{gate}.{key} (known: {', '.join(allowed)})"
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise TightCompressError(f"{where}: cells.{gate}.{key} must be a number >= 0, got {value!r}")
        out[gate] = {key: float(value) for key, value in entry.items()}
    return out


def area_um2(counts: dict[str, int], table: dict[str, dict[str, Any]] | None = None) -> float:
    """Cell area of a netlist given as `{gate type: count}`."""
    table = table or NANGATE45
    return float(sum(table[gate]["area_um2"] * n for gate, n in counts.items()))
