"""The energy table's multiplexer and register entries, from the synthesised PE and Nangate45 cell energies.

They replace two assumptions of the first energy model ("a 2:1 mux bit is half an adder bit", "a
flip-flop bit is an adder bit") by cell counts of the synthesised PE (`hw.synth`, the exported `tc_pe`)
times per-cell energies of the same library as the area (`hw.cells`, Nangate45 typical, 1.1 V):

- **Multiplexer.** The G:1 multiplexer of a PE is the logic between its lane register and bus input and its
  `a_sel` wire (`hw.synth.CONE`). Synthesised for G = 2, 4, ..., 64 (8-bit activations), it is exactly
  `(G - 1) x 8` MUX2 cells up to G = 8 and an ABC mix of MUX2 and AOI/OAI/NAND cells above
  (`MUX_CONE_CELLS`, measured with Yosys 0.70; `tests/test_hw_netlist_energy.py` re-synthesises them).
  One selection costs `MUX_ACTIVITY x sum(cells x toggle energy)`: every cell of the tree toggles with
  probability 1/2 on random data (the first model charged the whole tree switching, an upper bound).
  Divided by the `(G - 1) x 8` 2:1-mux bits of the table's formula, this is 2.20 fJ per bit at G <= 8 and
  2.38-2.66 fJ above; `mux2_pj_per_bit` is the mean over the six G, so the formula `(G - 1) x act_bits x
  mux2_pj_per_bit` stays within -7 % / +12 % of each measured G.
- **Register.** Every register bit of the PE is one DFF_X1 (the flip-flop count of the netlist equals the
  bits the Verilog declares: weight, lane, forwarded bus, valid, partial sum; the load-enabled weight and
  lane bits add a MUX2 that holds the value and does not switch between loads). One bit per cycle costs
  the flip-flop's clock energy plus `REG_ACTIVITY` (1/2, random data) of its output toggle energy. The
  model charges it for the stationary weight and lane bits too, whose data do not toggle between loads:
  an upper bound, against the methods with lane indices.

Both are scaled from the library's 1.1 V to the 0.9 V of Horowitz's table by `(0.9 / 1.1)^2`, the
dynamic energy's V^2, so one table stays at one supply. Everything else of the energy model is unchanged.
"""

from __future__ import annotations

from typing import Any

from tightcompress.hw.cells import NANGATE45, VOLTAGE, gate_type

TABLE_VOLTAGE = 0.9  # Horowitz's table (ISSCC 2014, 45 nm)
VOLTAGE_SCALE = (TABLE_VOLTAGE / VOLTAGE) ** 2
MUX_ACTIVITY = 0.5
REG_ACTIVITY = 0.5
ACT_BITS = 8
# Cells of the G:1 multiplexer of `tc_pe` (8-bit activations), Yosys 0.70 `abc -g` (hw.synth.CONE).
MUX_CONE_CELLS: dict[int, dict[str, int]] = {
    2: {"MUX": 8},
    4: {"MUX": 24},
    8: {"MUX": 56},
    16: {"AND": 1, "AOI3": 30, "AOI4": 14, "MUX": 74, "NAND": 29, "NOR": 1, "NOT": 5, "OAI3": 1, "OAI4": 1},
    32: {
        "AND": 10, "AOI3": 56, "AOI4": 26, "MUX": 106, "NAND": 9, "NOR": 27, "NOT": 50, "OAI3": 46,
        "OAI4": 22, "OR": 32,
    },
    64: {
        "AND": 14, "AOI3": 65, "AOI4": 35, "MUX": 237, "NAND": 44, "NOR": 85, "NOT": 70, "OAI3": 102,
        "OAI4": 64, "OR": 27,
    },
}  # fmt: skip


def mux_selection_fj(cells: dict[str, int], table: dict[str, dict[str, Any]] | None = None) -> float:
    """Energy (fJ, library voltage) of one selection by a multiplexer made of `cells` (gate type: count)."""
    table = table or NANGATE45
    return MUX_ACTIVITY * sum(table[gate]["toggle_fj"] * n for gate, n in cells.items())


def mux_bit_fj_by_group(
    cones: dict[int, dict[str, int]] | None = None, table: dict[str, dict[str, Any]] | None = None
) -> dict[int, float]:
    """Per G: one selection's energy over the `(G - 1) x 8` 2:1-mux bits of the model (fJ, library V)."""
    cones = cones or MUX_CONE_CELLS
    return {g: mux_selection_fj(cells, table) / ((g - 1) * ACT_BITS) for g, cells in cones.items()}


def derived_entries(
    table: dict[str, dict[str, Any]] | None = None, cones: dict[int, dict[str, int]] | None = None
) -> dict[str, float]:
    """`mux2_pj_per_bit` and `reg_pj_per_bit` of the energy table (pJ, at 0.9 V; see the module doc)."""
    table = table or NANGATE45
    per_bit = mux_bit_fj_by_group(cones, table)
    mux = sum(per_bit.values()) / len(per_bit)
    dff = table["DFF"]
    reg = dff["clock_fj"] + REG_ACTIVITY * dff["toggle_fj"]
    return {"mux2_pj_per_bit": mux * VOLTAGE_SCALE / 1000, "reg_pj_per_bit": reg * VOLTAGE_SCALE / 1000}


def measure_mux_cones(groups: tuple[int, ...] = tuple(MUX_CONE_CELLS)) -> dict[int, dict[str, int]]:
    """Synthesise `tc_pe` at each G (8-bit activations) and count its multiplexer's cells by gate type."""
    from tightcompress.hw.synth import synthesize

    out = {}
    for g in groups:
        cone = synthesize("tc_pe", {"LANES": g, "A_BITS": ACT_BITS}, mux_cone=True)["mux_cone"]
        counts: dict[str, int] = {}
        for name, n in cone.items():
            counts[gate_type(name)] = counts.get(gate_type(name), 0) + n
        out[g] = dict(sorted(counts.items()))
    return out
