"""`sweep`: the grid (no duplicates, no impossible points), the CSV contents, atomic writes, bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tightcompress.api import pack
from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.sweep import CSV_FIELDS, grid_configs, read_sweep_csv


def test_grid_dedupes_and_skips_impossible_points():
    configs = grid_configs(["tight", "nm", "dense"], [4, 8], [2, 6, "auto"], [0.5, 0.9])
    keys = [(c.method, c.group, c.height, c.sparsity) for c in configs]
    assert len(keys) == len(set(keys))
    assert ("nm", 4, 6, 0.5) not in keys and ("tight", 4, 6, 0.5) not in keys  # h > G
    assert not any(m == "nm" and h == "auto" for m, _, h, _ in keys)
    assert sum(m == "dense" for m, *_ in keys) == 2  # one per sparsity, G and h ignored
    assert ("tight", 8, 6, 0.9) in keys and ("tight", 4, "auto", 0.5) in keys
    with pytest.raises(TightCompressError, match="unknown method"):
        grid_configs(["magic"], [8], [2], [None])


@pytest.fixture
def matrix_file(tmp_path):
    W = np.random.default_rng(1).standard_normal((64, 40)).astype(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, W)
    return path, W


def test_sweep_csv_matches_pack(tmp_path, matrix_file):
    path, W = matrix_file
    out = tmp_path / "s.csv"
    argv = ["sweep", path, "--methods", "tight,nm,dense", "--groups", "8", "--heights", "2,auto"]
    argv += ["--sparsities", "0.8,0.9", "--tile", "16", "--iterations", "1500", "--jobs", "1", "--per-layer"]
    assert main([str(a) for a in [*argv, "--csv", out, "--quiet"]]) == 0
    rows = read_sweep_csv(out)
    with open(out, newline="") as handle:
        assert tuple(next(csv.reader(handle))) == CSV_FIELDS
    totals = [r for r in rows if r["layer"] == "TOTAL"]
    assert len(totals) == 2 * 2 + 2 + 2  # tight x h x S, nm h=2 x S, dense x S
    row = next(r for r in totals if r["method"] == "tight" and r["height"] == "2" and r["sparsity"] == "0.9")
    expected = pack(W, method="tight", group=8, height=2, tile=16, sparsity=0.9, iterations=1500)
    assert float(row["compression_rate"]) == pytest.approx(expected.compression_rate, rel=1e-5)
    assert int(row["packed_slots"]) == expected.packed_slots
    dense = [r for r in totals if r["method"] == "dense"]
    dense_rate = pack(W, method="dense", tile=16).compression_rate  # 40 columns in 3 tiles of 16
    assert all(float(r["compression_rate"]) == pytest.approx(dense_rate, rel=1e-5) for r in dense)
    assert all(r["group"] == "" for r in dense)
    assert len(rows) == 2 * len(totals)  # one layer: a per-layer row per point


def test_sweep_bad_input_writes_nothing(tmp_path, matrix_file, capsys):
    path, _ = matrix_file
    out = tmp_path / "s.csv"
    assert main(["sweep", str(path), "--methods", "nm", "--heights", "auto", "--csv", str(out)]) == 2
    assert "no valid point" in capsys.readouterr().err
    assert main(["sweep", "--zoo", "alexnet", "--csv", str(out)]) == 2
    assert "unknown zoo model" in capsys.readouterr().err
    assert not out.exists()


def test_sweep_over_zoo_model(tmp_path):
    out = tmp_path / "s.csv"
    argv = ["sweep", "--zoo", "demo", "--methods", "tight,dense", "--groups", "8", "--heights", "2"]
    argv += ["--sparsities", "0.8", "--iterations", "500", "--jobs", "1", "--csv", str(out), "--quiet"]
    assert main(argv) == 0
    rows = read_sweep_csv(out)
    assert [(r["method"], r["layer"]) for r in rows] == [("tight", "TOTAL"), ("dense", "TOTAL")]
    tight, dense = (float(r["compression_rate"]) for r in rows)
    assert tight > 2 * dense
