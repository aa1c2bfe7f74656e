"""The `pack`/`unpack` command contract: report fields, round trip, and one-line errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tightcompress.cli.main import main
from tightcompress.format.io import load_packed, save_packed

REPORT_FIELDS = {
    "name", "K", "N", "nnz", "method", "group", "height", "tile", "packed_slots", "compression_rate",
    "utilization", "dropped_nnz", "dropped_magnitude_fraction", "lower_bound_slots", "seconds",
}  # fmt: skip


@pytest.fixture
def matrix_file(tmp_path):
    W = np.random.default_rng(0).standard_normal((96, 24)).astype(np.float32)
    W[np.abs(W) < 1.6] = 0
    path = tmp_path / "w.npy"
    np.save(path, W)
    return path, W


def _run(*argv):
    return main([str(a) for a in argv])


def test_pack_writes_report_and_unpack_round_trips(tmp_path, matrix_file):
    path, W = matrix_file
    report_path, packed_path, out = tmp_path / "r.json", tmp_path / "p.safetensors", tmp_path / "back.npy"
    argv = ["pack", path, "--method", "tight", "--group", "8", "--height", "auto", "--tile", "8"]
    assert _run(*argv, "--json", report_path, "--out", packed_path, "--quiet") == 0
    report = json.loads(report_path.read_text())
    layer = report["layers"][0]
    assert REPORT_FIELDS <= set(layer)
    assert layer["dropped_nnz"] == 0 and layer["K"] == 96 and layer["N"] == 24
    assert report["total"]["packed_slots"] == layer["packed_slots"]
    assert report["total"]["compression_rate"] == pytest.approx(layer["compression_rate"])
    assert _run("unpack", packed_path, out) == 0
    assert np.array_equal(np.load(out), W)


@pytest.mark.parametrize("method", ["dense", "nm", "column-combining"])
def test_baselines_through_the_cli(tmp_path, matrix_file, method):
    path, _ = matrix_file
    report_path = tmp_path / "r.json"
    extra = ["--height", "2"] if method == "nm" else []
    assert (
        _run("pack", path, "--method", method, "--tile", "8", *extra, "--json", report_path, "--quiet") == 0
    )
    assert json.loads(report_path.read_text())["layers"][0]["method"] == method


def test_column_combining_variant_flags_reach_the_report(tmp_path, matrix_file):
    path, _ = matrix_file
    report_path = tmp_path / "r.json"
    variant = {"merge": "least-overlap", "section": 32, "alpha": 4, "gamma": 0.25}
    flags = [item for key, value in variant.items() for item in (f"--{key}", value)]
    assert (
        _run("pack", path, "--method", "column-combining", *flags, "--tile", "8", "--json", report_path) == 0
    )
    layer = json.loads(report_path.read_text())["layers"][0]
    assert {key: layer[key] for key in variant} == variant
    assert _run("pack", path, "--method", "column-combining", "--json", report_path, "--quiet") == 0
    assert json.loads(report_path.read_text())["layers"][0]["merge"] == "authors"


def test_checkpoint_packs_every_conv_and_linear(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(), torch.nn.Linear(8, 4)
    )
    ckpt = tmp_path / "model.pt"
    torch.save(model.state_dict(), ckpt)
    report_path = tmp_path / "r.json"
    assert _run("pack", ckpt, "--tile", "4", "--json", report_path, "--out", tmp_path / "p.safetensors") == 0
    layers = json.loads(report_path.read_text())["layers"]
    assert [(layer["name"], layer["K"], layer["N"]) for layer in layers] == [
        ("0.weight", 27, 8),
        ("3.weight", 8, 4),
    ]
    assert set(load_packed(tmp_path / "p.safetensors")) == {"0.weight", "3.weight"}


def _bad_inputs(tmp_path):
    nan = np.ones((4, 4))
    nan[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "cube.npy", np.ones((2, 2, 2)))
    np.save(tmp_path / "zeros.npy", np.zeros((4, 4)))
    torch.save({"conv3d.weight": torch.ones(2, 2, 2, 2, 2)}, tmp_path / "conv3d.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    good = tmp_path / "good.npy"
    np.save(good, np.eye(4))
    return {
        "missing": ([tmp_path / "nope.npy"], "not found"),
        "not 2-D": ([tmp_path / "cube.npy"], "2-D"),
        "nan": ([tmp_path / "nan.npy"], "NaN"),
        "all zero": ([tmp_path / "zeros.npy"], "all zeros"),
        "h > G": ([good, "--group", "2", "--height", "3"], "exceeds group"),
        "G < 1": ([good, "--group", "0"], "group G"),
        "unknown layer": ([tmp_path / "conv3d.pt"], "unknown layer type"),
        "corrupt": ([tmp_path / "corrupt.pt"], "not a readable PyTorch checkpoint"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "not 2-D", "nan", "all zero", "h > G", "G < 1", "unknown layer", "corrupt"]
)
def test_bad_input_is_one_line_error_and_no_output(tmp_path, capsys, case):
    argv, expected = _bad_inputs(tmp_path)[case]
    report_path, packed_path = tmp_path / "out" / "r.json", tmp_path / "out" / "p.safetensors"
    assert _run("pack", *argv, "--json", report_path, "--out", packed_path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not report_path.exists() and not packed_path.exists()
    assert not list(report_path.parent.glob("*")) if report_path.parent.exists() else True


def test_packed_file_version_is_checked(tmp_path, matrix_file, capsys):
    import tightcompress as tc

    _, W = matrix_file
    path = tmp_path / "p.safetensors"
    save_packed(path, {"w": tc.pack(W, method="dense", tile=8)})
    from safetensors.numpy import load_file, save_file

    save_file(
        load_file(str(path)), str(path), metadata={"format": "tightcompress.packed", "format_version": "999"}
    )
    assert _run("unpack", path, tmp_path / "o.npy") == 2
    assert "version 999" in capsys.readouterr().err
