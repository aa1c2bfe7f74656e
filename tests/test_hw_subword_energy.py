"""Cycles and energy of packed subword layers with 4-bit multipliers, against the dense int8 array."""

from __future__ import annotations

import numpy as np
import pytest

from tightcompress.baselines import pack_dense
from tightcompress.hw import DEFAULT_ENERGY, packed_energy
from tightcompress.hw.cycles import packed_cycles
from tightcompress.hw.energy import EnergyTable
from tightcompress.hw.subword_sim import simulate_subword
from tightcompress.prune.subword import prune_subwords, quantize_for_subwords
from tightcompress.subword_packer import pack_subwords


def layer(seed: int, K: int, N: int, word_density: float, subword_sparsity: float):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(K, N)) * (rng.random((K, N)) < word_density)
    w[0, :] += 1.0  # no empty column
    q, scales = quantize_for_subwords(w)
    masks = prune_subwords(q, subword_sparsity, scales=scales)
    return pack_subwords(q, masks, group=8, tile=8, seed=seed, iterations=2000)


@pytest.mark.parametrize("m", [1, 5])
def test_figures_are_the_models_with_4_bit_weights_and_int8_dense(m: int) -> None:
    sp = layer(0, 64, 24, 0.3, 0.9)
    res = simulate_subword(sp, array=(16, 8), m=m)
    cyc = packed_cycles(sp.packed, (16, 8), m)
    en = packed_energy(sp.packed, (16, 8), m, weight_bits=4, slot_extra_bits=1)
    dense = pack_dense(sp.to_int8_dense().astype(np.float32), tile=8)
    dense_cyc = packed_cycles(dense, (16, 8), m)
    dense_en = packed_energy(dense, (16, 8), m, weight_bits=8)
    assert res["cycles"] == cyc.cycles and res["dense_cycles"] == dense_cyc.cycles
    assert res["speedup"] == pytest.approx(dense_cyc.cycles / cyc.cycles)
    assert res["energy_pj"] == pytest.approx(en["energy_pj"])
    assert res["dense_energy_pj"] == pytest.approx(dense_en["energy_pj"])
    assert res["energy_gain"] == pytest.approx(dense_en["energy_pj"] / en["energy_pj"])
    assert res["utilization_pe"] == pytest.approx(cyc.utilization_pe)
    assert res["weight_bits"] == 4 and res["slot_extra_bits"] == 1
    # the MACs are 4 x 8-bit: charged per occupied slot at the 4-bit price, the dense ones at 8 x 8
    slots = sp.packed_slots
    assert res["energy_breakdown_pj"]["mac"] == pytest.approx(slots * m * DEFAULT_ENERGY.mac_pj(4, 8))
    assert res["dense_energy_breakdown_pj"]["mac"] == pytest.approx(
        sp.K * sp.N * m * DEFAULT_ENERGY.mac_pj(8, 8)
    )
    assert DEFAULT_ENERGY.mac_pj(4, 8) < DEFAULT_ENERGY.mac_pj(8, 8)


def test_more_subword_pruning_costs_less() -> None:
    loose = simulate_subword(layer(1, 128, 32, 0.5, 0.80), array=(32, 32))
    tight = simulate_subword(layer(1, 128, 32, 0.5, 0.97), array=(32, 32))
    assert tight["cycles"] <= loose["cycles"]
    assert tight["energy_pj"] < loose["energy_pj"]
    assert tight["dense_cycles"] == loose["dense_cycles"]  # the same K x N dense array
    assert tight["energy_gain"] > loose["energy_gain"]
    assert tight["speedup"] >= loose["speedup"]


def test_unpruned_subwords_are_slower_than_dense() -> None:
    # every weight large: both subwords kept, twice the rows of the dense array
    rng = np.random.default_rng(2)
    q = (rng.integers(2, 7, size=(64, 32)) * 16 + 3) * rng.choice([-1, 1], size=(64, 32))
    sp = pack_subwords(q.astype(np.int64), group=8, tile=32, iterations=500)
    res = simulate_subword(sp, array=(32, 32))
    assert res["speedup"] < 1.0


def test_energy_table_override_is_used() -> None:
    sp = layer(3, 32, 16, 0.4, 0.9)
    base = simulate_subword(sp, array=(8, 8))
    dearer = simulate_subword(sp, array=(8, 8), energy=EnergyTable(mult8_pj=2.0))
    assert dearer["energy_pj"] > base["energy_pj"]
    assert dearer["dense_energy_pj"] > base["dense_energy_pj"]
    assert dearer["cycles"] == base["cycles"]
