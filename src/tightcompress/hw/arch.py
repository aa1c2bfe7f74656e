"""The architecture a layer is simulated on, read from a TOML file (`simulate --arch A.toml`).

One file holds what the cycle, energy and area models assume about the hardware:

    [array]              rows, cols (PEs), clock_mhz
    [bits]               weight, activation, accumulator (bits)
    [buffers.weights]    size_kb, bandwidth_bits_per_cycle   (and the same for activations, outputs)
    [energy]             per-operation energies, the fields of `hw.energy.EnergyTable` (pJ)
    [cells]              the standard-cell table of the area and netlist-energy models (`hw.cells`);
                         the energy table's mux2/reg entries follow it (`hw.netlist_energy`)

Every key is optional; a missing one keeps the built-in value, and the built-in values are exactly what
`simulate` assumes without `--arch` (a 32 x 32 array, 8-bit weights and activations, 32-bit accumulators,
Horowitz's 45 nm energies, and unlimited buffers: `size_kb = inf` keeps activations and outputs on chip,
`bandwidth_bits_per_cycle = inf` never stalls). `examples/arch.toml` is that default, commented.

What finite values change (`hw.energy.packed_energy`, `hw.cycles.bandwidth_stalls`):
- an activation buffer smaller than a layer's input, or an output buffer smaller than a pass's partial sums
  or a layer's output, sends that traffic to DRAM (counted in `accesses` and charged as DRAM energy);
- a buffer's bandwidth below what the array consumes per cycle (the G lanes of each group, the partial
  sums, a fold's weights) adds stall cycles.
The per-access SRAM energies stay the `[energy]` table's (`sram_*_pj_per_bit`): a buffer's size does not
change them; set both when you model a different SRAM.

The file is validated as it is read: an unknown section or key, or a value of the wrong type or range, is
one error naming the key.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tightcompress.errors import TightCompressError, missing_file
from tightcompress.hw.cycles import MAX_ARRAY_SIDE
from tightcompress.hw.energy import DEFAULT_ENERGY, EnergyTable

BUFFERS = ("weights", "activations", "outputs")
MAX_BITS = 64


@dataclass(frozen=True)
class Buffer:
    """One on-chip SRAM buffer: capacity in KiB and bits per cycle to/from the array (inf: unlimited)."""

    size_kb: float = math.inf
    bandwidth_bits_per_cycle: float = math.inf

    @property
    def size_bits(self) -> float:
        """Capacity in bits (inf when unlimited)."""
        return self.size_kb * 1024 * 8


@dataclass(frozen=True)
class Architecture:
    """The hardware the models assume; `Architecture()` is the built-in one (see the module docstring)."""

    rows: int = 32
    cols: int = 32
    clock_mhz: float = 1000.0
    weight_bits: int = 8
    act_bits: int = 8
    acc_bits: int = 32
    weights: Buffer = field(default_factory=Buffer)
    activations: Buffer = field(default_factory=Buffer)
    outputs: Buffer = field(default_factory=Buffer)
    energy: EnergyTable = DEFAULT_ENERGY
    cells: dict[str, dict[str, float]] = field(default_factory=dict)  # overrides of `hw.cells` entries
    source: str = "built-in"

    @property
    def array(self) -> tuple[int, int]:
        """`(rows, cols)`."""
        return self.rows, self.cols

    @property
    def unlimited_bandwidth(self) -> bool:
        """No buffer can stall the array."""
        return all(math.isinf(getattr(self, b).bandwidth_bits_per_cycle) for b in BUFFERS)

    def to_dict(self) -> dict[str, Any]:
        """The file's sections as plain JSON (unlimited sizes and bandwidths as null; the energy table and
        the file's path are reported beside it, so the default file and no file give the same dict)."""
        return {
            "array": {"rows": self.rows, "cols": self.cols, "clock_mhz": self.clock_mhz},
            "bits": {"weight": self.weight_bits, "activation": self.act_bits, "accumulator": self.acc_bits},
            "buffers": {
                name: {
                    "size_kb": _json_number(getattr(self, name).size_kb),
                    "bandwidth_bits_per_cycle": _json_number(getattr(self, name).bandwidth_bits_per_cycle),
                }
                for name in BUFFERS
            },
        }


DEFAULT_ARCH = Architecture()


def _json_number(value: float) -> float | None:
    return None if math.isinf(value) else value


# ------------------------------------------------------------------------------------------ reading
def load_architecture(path: str | os.PathLike[str]) -> Architecture:
    """The architecture of a TOML file, every missing key at its built-in value; bad input is one error."""
    path = Path(path)
    if not path.is_file():
        raise missing_file("architecture file", path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TightCompressError(f"{path}: not a readable TOML architecture file ({exc})") from None
    except OSError as exc:
        raise TightCompressError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return architecture_from_dict(data, where=str(path))


def architecture_from_dict(data: dict[str, Any], *, where: str = "architecture") -> Architecture:
    """Build and validate an `Architecture` from the parsed file (`where` names it in errors)."""
    _keys(data, ("array", "bits", "buffers", "energy", "cells"), "", where)
    values: dict[str, Any] = {"source": where}
    array = _section(data, "array", where)
    _keys(array, ("rows", "cols", "clock_mhz"), "array.", where)
    for key in ("rows", "cols"):
        if key in array:
            values[key] = _integer(array[key], f"array.{key}", 1, MAX_ARRAY_SIDE, where)
    if "clock_mhz" in array:
        values["clock_mhz"] = _number(array["clock_mhz"], "array.clock_mhz", where, allow_inf=False)
    bits = _section(data, "bits", where)
    _keys(bits, ("weight", "activation", "accumulator"), "bits.", where)
    for key, name in (("weight", "weight_bits"), ("activation", "act_bits"), ("accumulator", "acc_bits")):
        if key in bits:
            values[name] = _integer(bits[key], f"bits.{key}", 1, MAX_BITS, where)
    buffers = _section(data, "buffers", where)
    _keys(buffers, BUFFERS, "buffers.", where)
    for name in BUFFERS:
        entry = _section(buffers, name, where, prefix="buffers.")
        _keys(entry, ("size_kb", "bandwidth_bits_per_cycle"), f"buffers.{name}.", where)
        values[name] = Buffer(
            **{
                key: _number(entry[key], f"buffers.{name}.{key}", where, allow_inf=True)
                for key in ("size_kb", "bandwidth_bits_per_cycle")
                if key in entry
            }
        )
    energy = _section(data, "energy", where)
    known = [f.name for f in fields(EnergyTable)]
    _keys(energy, known, "energy.", where)
    numbers = {}
    for key, value in energy.items():
        if key == "source":
            if not isinstance(value, str):
                raise TightCompressError(f"{where}: energy.source must be a string, got {value!r}")
            continue
        numbers[key] = _number(value, f"energy.{key}", where, allow_inf=False, allow_zero=True)
    if energy:
        changed = any(getattr(DEFAULT_ENERGY, key) != value for key, value in numbers.items())
        source = energy.get("source", f"{DEFAULT_ENERGY.source}; overridden by {where}")
        values["energy"] = replace(
            DEFAULT_ENERGY,
            **numbers,
            source=source if changed or "source" in energy else DEFAULT_ENERGY.source,
        )
    cells = _section(data, "cells", where)
    if cells:
        from tightcompress.hw.cells import cell_table, check_cell_overrides
        from tightcompress.hw.netlist_energy import derived_entries

        values["cells"] = check_cell_overrides(cells, where)
        # the netlist-derived entries follow the cells unless [energy] sets them
        derived = {k: v for k, v in derived_entries(cell_table(values["cells"])).items() if k not in energy}
        base = values.get("energy", DEFAULT_ENERGY)
        if any(getattr(base, k) != v for k, v in derived.items()):
            values["energy"] = replace(
                base, **derived, source=f"{base.source}; mux2/reg from the [cells] of {where}"
            )
    arch = Architecture(**values)
    if arch.acc_bits < arch.weight_bits + arch.act_bits:
        raise TightCompressError(
            f"{where}: bits.accumulator ({arch.acc_bits}) must hold a product of bits.weight + "
            f"bits.activation ({arch.weight_bits + arch.act_bits}) bits"
        )
    return arch


def _section(data: dict[str, Any], key: str, where: str, prefix: str = "") -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TightCompressError(f"{where}: {prefix}{key} must be a table ([{prefix}{key}]), got {value!r}")
    return value


def _keys(data: dict[str, Any], known: tuple[str, ...] | list[str], prefix: str, where: str) -> None:
    unknown = [key for key in data if key not in known]
    if unknown:
        raise TightCompressError(f"{where}: unknown key {prefix}{unknown[0]} (known: {', '.join(known)})")


def _integer(value: Any, key: str, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TightCompressError(f"{where}: {key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _number(value: Any, key: str, where: str, *, allow_inf: bool, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value >= 0 if allow_zero else value > 0) and (allow_inf or math.isfinite(value))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise TightCompressError(
            f"{where}: {key} must be a number {bound}{' or inf' if allow_inf else ''}, got {value!r}"
        )
    return float(value)
