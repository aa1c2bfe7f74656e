"""Derive the standard-cell table of `tightcompress.hw.cells` from a Liberty file (Nangate45 typical).

    python scripts/cells_from_liberty.py NangateOpenCellLibrary_typical.lib   # prints the table

The package ships only the derived numbers (`hw/cells.py`); this script shows, and repeats, where they come
from. The Liberty file is the Nangate Open Cell Library (FreePDK45), typical corner (TypTyp, 1.1 V, 25 C),
e.g. `examples/nangate45_typ.lib.gz` of The-OpenROAD-Project/OpenSTA.

For each cell of the gate set Yosys maps onto (`hw.cells.NANGATE45`):
- `area_um2`: the cell's `area`;
- `toggle_fj`: internal energy of one output transition, the mean over the output pin's `internal_power`
  arcs and over rise and fall, read at an input slew of 20 ps and an output load of 2 fF (bilinear
  interpolation in the characterisation table; about two X1 inputs), plus the load's own switching energy
  `C V^2 / 2` with C = 2 fF;
- `clock_fj` (flip-flops only): energy of one clock cycle with the data unchanged, the clock pin's
  internal energy at 20 ps slew, rise plus fall, averaged over the states where D equals Q, plus the clock
  pin's capacitance charged once, `C_ck V^2`.
Liberty energies are in the library's units, capacitance (fF) x voltage (V) squared: fJ.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

SLEW_NS = 0.02
LOAD_FF = 2.0
CELLS = {  # Yosys internal gate -> Nangate cell (X1 drive)
    "NOT": "INV_X1",
    "BUF": "BUF_X1",
    "AND": "AND2_X1",
    "NAND": "NAND2_X1",
    "OR": "OR2_X1",
    "NOR": "NOR2_X1",
    "XOR": "XOR2_X1",
    "XNOR": "XNOR2_X1",
    "MUX": "MUX2_X1",
    "AOI3": "AOI21_X1",
    "OAI3": "OAI21_X1",
    "AOI4": "AOI22_X1",
    "OAI4": "OAI22_X1",
    "DFF": "DFF_X1",
    "DFFR": "DFFR_X1",
}


def block(text: str, start: int) -> tuple[str, int]:
    """The `{ ... }` block opening at or after `start`: (its inside, index after it)."""
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j], j + 1
    raise ValueError("unbalanced braces")


def groups(text: str, kind: str) -> list[tuple[str, str]]:
    """Top-level `kind (name) { ... }` groups of `text`: (name, inside)."""
    out = []
    pattern = re.compile(rf"\b{kind}\s*\(([^)]*)\)\s*\{{")
    pos = 0
    while True:
        found = pattern.search(text, pos)
        if not found:
            return out
        inside, pos = block(text, found.start())
        out.append((found.group(1).strip().strip('"'), inside))


def numbers(text: str, key: str) -> list[float]:
    found = re.search(rf"\b{key}\s*\(\s*((?:\"[^\"]*\"\s*,?\s*\\?\s*)+)\)", text)
    if not found:
        return []
    return [float(v) for v in re.findall(r"[-+0-9.eE]+", found.group(1).replace('"', " ").replace(",", " "))]


def attribute(text: str, key: str) -> str | None:
    found = re.search(rf"\b{key}\s*:\s*\"?([^;\"]+)\"?\s*;", text)
    return found.group(1).strip() if found else None


def lookup(table: str, slew: float, load: float) -> float:
    """Bilinear interpolation of a 1-D (slew) or 2-D (slew x load) Liberty table."""
    values = numbers(table, "values")
    i1 = numbers(table, "index_1")
    i2 = numbers(table, "index_2")
    if not i1:
        return values[0]

    def weights(axis: list[float], x: float) -> tuple[int, float]:
        k = max(0, min(len(axis) - 2, sum(1 for v in axis if v <= x) - 1))
        return k, (x - axis[k]) / (axis[k + 1] - axis[k])

    a, fa = weights(i1, slew)
    if not i2:
        return values[a] * (1 - fa) + values[a + 1] * fa
    b, fb = weights(i2, load)
    n = len(i2)

    def v(r: int, c: int) -> float:
        return values[r * n + c]

    return (v(a, b) * (1 - fa) + v(a + 1, b) * fa) * (1 - fb) + (
        v(a, b + 1) * (1 - fa) + v(a + 1, b + 1) * fa
    ) * fb


def power_tables(inside: str) -> list[float]:
    out = []
    for kind in ("rise_power", "fall_power"):
        for _, table in groups(inside, kind):
            out.append(lookup(table, SLEW_NS, LOAD_FF))
    return out


def cell_entry(inside: str, voltage: float) -> dict[str, float]:
    entry = {"area_um2": float(attribute(inside, "area") or "nan")}
    pins = dict(groups(inside, "pin"))
    outputs = [p for p, body in pins.items() if attribute(body, "direction") == "output"]
    main = outputs[0]
    energies = [e for _, ip in groups(pins[main], "internal_power") for e in power_tables(ip)]
    entry["toggle_fj"] = sum(energies) / len(energies) + 0.5 * LOAD_FF * voltage**2
    clock = [p for p, body in pins.items() if attribute(body, "clock") == "true"]
    if clock:
        body = pins[clock[0]]
        per_cycle = []
        for _, ip in groups(body, "internal_power"):
            literals = set((attribute(ip, "when") or "").replace(" ", "").split("&"))
            holds = ("D" in literals and "Q" in literals) or ("!D" in literals and "!Q" in literals)
            if holds and "!RN" not in literals:  # data equal to the state, not in reset
                per_cycle.append(sum(power_tables(ip)))
        cap = float(attribute(body, "capacitance") or 0.0)
        entry["clock_fj"] = sum(per_cycle) / len(per_cycle) + cap * voltage**2
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("liberty", type=Path, help="NangateOpenCellLibrary_typical.lib (or .lib.gz)")
    args = parser.parse_args(argv)
    raw = args.liberty.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", "replace")
    voltage = float(attribute(text, "nom_voltage") or "1.1")
    library = dict(groups(text, "cell"))
    print(f"# {attribute(text, 'comment')}; nom_voltage {voltage} V; slew {SLEW_NS} ns, load {LOAD_FF} fF")
    for gate, cell in CELLS.items():
        entry = cell_entry(library[cell], voltage)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in entry.items())
        print(f"{gate:5s} {cell:9s} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
