"""The cycle model against SCALE-Sim v3 (weight-stationary), when its environment is set up.

Set up with `bash scripts/setup_scalesim_env.sh` (or point TIGHTCOMPRESS_SCALESIM_PYTHON at an interpreter
that has `scalesim==3.0.0` and `numpy<2`); otherwise these tests are skipped.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tightcompress.api import pack
from tightcompress.hw.cycles import dense_gemm_cycles, packed_cycles, scalesim_total_cycles
from tightcompress.hw.scalesim_ref import parse_compute_report, run_scalesim_gemm, scalesim_available

needs_scalesim = [
    pytest.mark.scalesim,
    pytest.mark.skipif(
        not scalesim_available(), reason="SCALE-Sim env missing (scripts/setup_scalesim_env.sh)"
    ),
]

# (M, K, N, R, C): M > R, K > R and N > C all occur, and a non-square array.
CASES = [(64, 64, 64, 16, 16), (200, 100, 50, 32, 32), (100, 300, 70, 32, 16), (49, 576, 128, 32, 32)]


@needs_scalesim[0]
@needs_scalesim[1]
@pytest.mark.parametrize("m,k,n,r,c", CASES)
def test_dense_cycles_agree_with_scalesim(m: int, k: int, n: int, r: int, c: int) -> None:
    ref = run_scalesim_gemm(m, k, n, rows=r, cols=c)
    model = dense_gemm_cycles(k, n, m, (r, c))
    assert ref.stall_cycles == 0
    assert abs(model - ref.total_cycles) / ref.total_cycles <= 0.02
    # SCALE-Sim reports the 0-based index of the last busy cycle; with that, the match is exact.
    assert scalesim_total_cycles(k, n, m, (r, c)) == ref.total_cycles
    start = time.perf_counter()
    for _ in range(100):
        dense_gemm_cycles(k, n, m, (r, c))
    model_seconds = (time.perf_counter() - start) / 100
    assert ref.seconds >= 100 * model_seconds


@needs_scalesim[0]
@needs_scalesim[1]
def test_tight_layer_agrees_with_scalesim_on_dense_tiles_of_its_height() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(192, 64)) * (rng.random((192, 64)) < 0.15)
    packed = pack(w, method="tight", group=8, tile=16)
    m, array = 40, (16, 16)
    model = packed_cycles(packed, array, m).cycles
    ref = sum(run_scalesim_gemm(m, int(h), 16, rows=16, cols=16).total_cycles + 1 for h in packed.tile_rows)
    assert abs(model - ref) / ref <= 0.02
    assert model == ref
    assert model < dense_gemm_cycles(192, 64, m, array)


def test_parse_compute_report(tmp_path) -> None:
    report = tmp_path / "COMPUTE_REPORT.csv"
    report.write_text(
        "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %, "
        "Mapping Efficiency %, Compute Util %,\n0, 900, 371, 0, 40.4, 62.5, 36.2,\n"
    )
    parsed = parse_compute_report(report)
    assert parsed.total_cycles == 371 and parsed.total_cycles_with_prefetch == 900
