"""Cycle model: fold formula, dense folds, tight tiles cost like dense tiles of H_t rows, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tightcompress.api import pack
from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.hw import dense_gemm_cycles, packed_cycles, parse_array, pass_cycles, simulate_packed


def sparse_matrix(k: int, n: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, n)) * (rng.random((k, n)) < density)
    w[0, 0] = 1.0
    return w


def event_fold_cycles(rows: int, cols: int, m: int) -> int:
    """Independent timing of one WS fold: weights shift in one row per cycle (R cycles); input vector v
    enters row i at cycle R + v + i and reaches PE (i, j) at R + v + i + j; the partial sum of column j for
    vector v leaves the bottom PE (R-1, j) at that cycle. The fold ends after the last one leaves."""
    last = 0
    for v in (0, m - 1):
        for j in (0, cols - 1):
            last = max(last, rows + v + (rows - 1) + j)
    return last + 1


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 300))
@settings(max_examples=60, deadline=None)
def test_fold_formula_matches_event_timing(rows: int, cols: int, m: int) -> None:
    assert pass_cycles(rows, cols, m, (rows, cols)) == event_fold_cycles(rows, cols, m)


@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 200), st.integers(1, 64), st.integers(1, 64))
@settings(max_examples=80, deadline=None)
def test_dense_gemm_is_folds_times_fold(k: int, n: int, m: int, rows: int, cols: int) -> None:
    folds = math.ceil(k / rows) * math.ceil(n / cols)
    assert dense_gemm_cycles(k, n, m, (rows, cols)) == folds * (2 * rows + cols + m - 2)
    assert dense_gemm_cycles(k, n, m, (rows, cols), trim=True) <= dense_gemm_cycles(k, n, m, (rows, cols))


@pytest.mark.parametrize("tile", [4, 8, 16, 32, 40])
def test_packed_dense_equals_dense_gemm_for_any_tile(tile: int) -> None:
    w = sparse_matrix(70, 50, 0.3, 1)
    packed = pack(w, method="dense", tile=tile)
    if 16 % tile == 0 or tile % 16 == 0:  # tiles share passes or split evenly: exactly the dense schedule
        assert packed_cycles(packed, (16, 16), 9).cycles == dense_gemm_cycles(70, 50, 9, (16, 16))
    else:
        assert packed_cycles(packed, (16, 16), 9).cycles >= dense_gemm_cycles(70, 50, 9, (16, 16))


@pytest.mark.parametrize(
    "method,options",
    [
        ("tight", {"group": 8}),
        ("nm", {"group": 4, "height": 2}),
        ("column-combining", {}),
        ("tight", {"group": 4, "height": 2}),
    ],
)
def test_packed_tile_costs_like_dense_tile_of_its_height(method: str, options: dict) -> None:
    w = sparse_matrix(96, 64, 0.2, 2)
    packed = pack(w, method=method, tile=16, **options)
    array, m = (16, 16), 37
    expected = sum(dense_gemm_cycles(int(h), 16, m, array) for h in packed.tile_rows)
    report = packed_cycles(packed, array, m)
    assert report.cycles == expected
    assert report.useful_macs == packed.nnz * m
    assert 0 < report.utilization_pe <= 1
    assert report.occupied_macs == packed.packed_slots * m


def test_lossless_tight_is_never_slower_than_dense() -> None:
    for seed in range(3):
        w = sparse_matrix(128, 96, 0.1 + 0.2 * seed, seed)
        packed = pack(w, method="tight", group=8, tile=32)
        hw = simulate_packed(packed, array=(32, 32), m=64)
        assert hw["cycles"] <= hw["dense_cycles"]
        assert hw["speedup"] == pytest.approx(hw["dense_cycles"] / hw["cycles"])
        assert hw["utilization_pe"] >= hw["dense_utilization_pe"]
    very_sparse = simulate_packed(
        pack(sparse_matrix(128, 96, 0.05, 7), method="tight", group=8, tile=32), array=(32, 32), m=64
    )
    assert very_sparse["speedup"] > 2


def test_parse_array() -> None:
    assert parse_array("32x16") == (32, 16)
    assert parse_array((8, 4)) == (8, 4)
    for bad in ("32", "0x4", "axb", "4x4x4"):
        with pytest.raises(TightCompressError):
            parse_array(bad)


def test_simulate_cli(tmp_path, capsys) -> None:
    matrix = tmp_path / "w.npy"
    np.save(matrix, sparse_matrix(80, 48, 0.15, 3).astype(np.float32))
    out = tmp_path / "report.json"
    code = main(
        [
            "simulate",
            str(matrix),
            "--array",
            "16x16",
            "--vectors",
            "20",
            "--json",
            str(out),
            "--check-bitexact",
            "--quiet",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    layer, total = report["layers"][0], report["total"]
    for key in (
        "cycles",
        "dense_cycles",
        "speedup",
        "utilization_pe",
        "energy_pj",
        "dense_energy_pj",
        "energy_gain",
        "cc_cycles",
        "energy_gain_vs_cc",
    ):
        assert key in layer and key in total
    assert layer["tile"] == 16 and layer["array"] == "16x16" and layer["m"] == 20
    assert layer["dense_cycles"] == dense_gemm_cycles(80, 48, 20, (16, 16))
    assert total["bitexact"] is True
    assert main(["simulate", str(matrix), "--array", "16", "--json", str(out)]) == 2
    assert "ROWSxCOLS" in capsys.readouterr().err
