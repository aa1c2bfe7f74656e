"""Energy model: table and derivations, a hand-counted dense layer, overrides, gains, totals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tightcompress.api import pack
from tightcompress.errors import TightCompressError
from tightcompress.hw import (
    DEFAULT_ENERGY,
    EnergyTable,
    load_energy_table,
    packed_energy,
    simulate_packed,
    total_simulation,
)


def sparse_matrix(k: int, n: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, n)) * (rng.random((k, n)) < density)
    w[0, 0] = 1.0
    return w


def test_table_is_horowitz_and_derivations() -> None:
    t = DEFAULT_ENERGY
    assert (t.add8_pj, t.mult8_pj, t.add32_pj, t.mult32_pj) == (0.03, 0.2, 0.1, 3.1)
    assert t.sram_weight_pj_per_bit * 64 == pytest.approx(20.0)
    assert 1300 <= t.dram_pj_per_bit * 64 <= 2600
    assert t.mac_pj(8, 8) == pytest.approx(0.3)
    assert t.mac_pj(4, 8) == pytest.approx(0.1 + 0.1)  # 4 x 8 multiplier: half the 8 x 8 one
    assert t.mux_pj(1) == 0.0
    assert t.mux_pj(8) == pytest.approx(7 * 8 * t.mux2_pj_per_bit)
    # from the synthesised PE and Nangate45 cell energies (tests/test_hw_netlist_energy.py), not assumed
    assert t.mux2_pj_per_bit == pytest.approx(0.0015826, rel=1e-4)
    assert t.reg_pj_per_bit == pytest.approx(0.0071980, rel=1e-4)
    assert "Horowitz" in t.source and "Nangate45" in t.source


def test_dense_single_fold_hand_count() -> None:
    k = n = 8
    m = 5
    w = np.ones((k, n))
    packed = pack(w, method="dense", tile=8)
    t = DEFAULT_ENERGY
    result = packed_energy(packed, (8, 8), m)
    parts = result["breakdown_pj"]
    assert parts["mac"] == pytest.approx(k * n * m * 0.3)
    assert parts["mux"] == 0.0 and parts["sram_indices"] == 0.0
    assert parts["weight_reg"] == pytest.approx(k * n * m * 8 * t.reg_pj_per_bit)
    assert parts["act_forward"] == pytest.approx(k * n * m * 8 * t.reg_pj_per_bit)
    assert parts["sram_weights"] == pytest.approx(k * n * 8 * t.sram_weight_pj_per_bit)
    assert parts["sram_activations"] == pytest.approx(k * m * 8 * t.sram_act_pj_per_bit)
    assert parts["sram_outputs"] == pytest.approx(n * m * 32 * t.sram_out_pj_per_bit)  # one fold: no re-reads
    assert parts["dram_weights"] == pytest.approx(k * n * 8 * t.dram_pj_per_bit)
    assert result["energy_pj"] == pytest.approx(sum(parts.values()))


def test_row_folds_reread_partial_sums() -> None:
    packed = pack(np.ones((24, 8)), method="dense", tile=8)  # 3 row folds on an 8 x 8 array
    parts = packed_energy(packed, (8, 8), 4)["breakdown_pj"]
    assert parts["sram_outputs"] == pytest.approx((3 + 2) * 8 * 4 * 32 * DEFAULT_ENERGY.sram_out_pj_per_bit)


def test_overrides_from_toml_json_and_keywords(tmp_path) -> None:
    toml = tmp_path / "e.toml"
    toml.write_text("mult8_pj = 0.4\nsram_act_pj_per_bit = 1.0\n")
    table = load_energy_table(toml)
    assert table.mult8_pj == 0.4 and table.sram_act_pj_per_bit == 1.0 and table.add32_pj == 0.1
    assert str(toml) in table.source
    js = tmp_path / "e.json"
    js.write_text(json.dumps({"dram_pj_per_bit": 0.0}))
    assert load_energy_table(js, add32_pj=0.2).add32_pj == 0.2
    for bad in ({"nope": 1}, {"mult8_pj": -1}, {"mult8_pj": "x"}):
        js.write_text(json.dumps(bad))
        with pytest.raises(TightCompressError):
            load_energy_table(js)
    with pytest.raises(TightCompressError):
        load_energy_table(tmp_path / "missing.toml")


def test_energy_is_linear_in_the_table() -> None:
    packed = pack(sparse_matrix(64, 40, 0.2, 0), method="tight", group=8, tile=16)
    base = packed_energy(packed, (16, 16), 10)
    doubled = EnergyTable(**{k: 2 * v for k, v in DEFAULT_ENERGY.to_dict().items() if k != "source"})
    assert packed_energy(packed, (16, 16), 10, table=doubled)["energy_pj"] == pytest.approx(
        2 * base["energy_pj"]
    )


def test_gains_subword_and_gating() -> None:
    w = sparse_matrix(128, 64, 0.1, 1)
    packed = pack(w, method="tight", group=8, tile=32)
    hw = simulate_packed(
        packed, array=(32, 32), m=49, cc_baseline=pack(w, method="column-combining", tile=32)
    )
    assert hw["energy_gain"] > 1 and hw["energy_gain"] == pytest.approx(
        hw["dense_energy_pj"] / hw["energy_pj"]
    )
    assert hw["energy_gain_vs_cc"] == pytest.approx(hw["cc_energy_pj"] / hw["energy_pj"])
    gated = packed_energy(packed, (32, 32), 49, gate_zeros=True)
    assert gated["energy_pj"] < packed_energy(packed, (32, 32), 49)["energy_pj"]
    four = packed_energy(packed, (32, 32), 49, weight_bits=4, slot_extra_bits=1)
    eight = packed_energy(packed, (32, 32), 49)
    assert four["breakdown_pj"]["mac"] < eight["breakdown_pj"]["mac"]
    assert four["breakdown_pj"]["dram_weights"] < eight["breakdown_pj"]["dram_weights"]


def test_total_aggregates_over_layers() -> None:
    layers = []
    for seed, (k, n, m) in enumerate([(64, 32, 10), (96, 48, 3)]):
        layers.append(
            simulate_packed(
                pack(sparse_matrix(k, n, 0.2, seed), method="tight", tile=16), array=(16, 16), m=m
            )
        )
    total = total_simulation(layers)
    assert total["cycles"] == sum(layer["cycles"] for layer in layers)
    assert total["energy_pj"] == pytest.approx(sum(layer["energy_pj"] for layer in layers))
    assert total["speedup"] == pytest.approx(total["dense_cycles"] / total["cycles"])
    assert total["energy_gain"] == pytest.approx(total["dense_energy_pj"] / total["energy_pj"])
    assert total["utilization_pe"] == pytest.approx(total["useful_macs"] / total["pe_cycles"])
    assert "cc_cycles" not in total
