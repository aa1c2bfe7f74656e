"""`export --rtl`: hex files parse back to the same packed layer, and the test vectors are bit-exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tightcompress.api import pack
from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.export.rtl import export_rtl, load_rtl, pack_words, unpack_words
from tightcompress.format.io import save_packed
from tightcompress.hw.bitexact import quantize_packed, run_packed_int8
from tightcompress.quant import quantize_columns

_STRUCTURE = ("group_offsets", "row_perm", "col_perm", "heights", "lanes")


@pytest.fixture
def packed_file(tmp_path):
    rng = np.random.default_rng(5)
    a = pack(rng.standard_normal((70, 45)).astype(np.float32), method="tight", group=8, height=2, tile=16,
             sparsity=0.85, iterations=3000, name="a")  # fmt: skip
    b = pack(
        rng.standard_normal((20, 12)).astype(np.float32), method="nm", group=4, height=2, tile=8, name="b"
    )
    path = tmp_path / "p.safetensors"
    save_packed(path, {"a": a, "b": b})
    return path, {"a": a, "b": b}


def test_words_round_trip_and_bit_layout():
    fields = np.array([[1, -1, 5], [-128, 127, 0]])
    words = pack_words(fields, 8)
    assert words == ["05ff01", "007f80"]  # column 0 is the least significant byte
    assert np.array_equal(unpack_words(words, 3, 8, signed=True), fields)
    assert np.array_equal(unpack_words(pack_words(np.array([[3, 0, 2]]), 2), 3, 2, False), [[3, 0, 2]])


def test_export_round_trip_and_vectors(tmp_path, packed_file):
    path, layers = packed_file
    out = tmp_path / "rtl"
    assert main(["export", str(path), "--rtl", str(out), "--vectors", "3", "--seed", "7"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["name"] for entry in manifest["layers"]] == ["a", "b"]
    parsed = load_rtl(out)
    for name, original in layers.items():
        layer = parsed[name]
        for array in _STRUCTURE:
            assert np.array_equal(getattr(layer.packed, array), getattr(original, array)), (name, array)
        q_values, scales = quantize_packed(original)
        assert np.array_equal(layer.packed.values, q_values)
        assert np.allclose(layer.scales, scales)
        assert layer.x.shape == (3, original.K) and layer.x.dtype == np.int8
        # Expected outputs: the bit-exact array and an exact matmul of the quantized kept matrix.
        assert np.array_equal(layer.y, run_packed_int8(layer.packed, layer.x, layer.packed.values))
        w_q, _ = quantize_columns(original.to_dense())
        assert np.array_equal(layer.y, (layer.x.astype(np.int64) @ w_q.astype(np.int64)).astype(np.int32))
        assert np.any(layer.y)
    tile0 = manifest["layers"][0]["tiles"][0]
    weights = (out / "a" / tile0["files"]["weights"]).read_text().splitlines()
    assert len(weights) == tile0["rows"] and all(len(w) == 16 * 2 for w in weights)


def test_subword_layer_exports_shifts(tmp_path):
    subword = pytest.importorskip("tightcompress.subword_packer")
    q = np.random.default_rng(2).integers(-119, 120, size=(24, 10)).astype(np.int8)
    q[np.abs(q) < 40] = 0
    sp = subword.pack_subwords(q, group=8, height="auto", tile=8, iterations=2000, name="s")
    out = tmp_path / "rtl"
    export_rtl({"s": sp.packed}, out, m=2)
    layer = load_rtl(out)["s"]
    assert np.array_equal(layer.shifts, sp.shifts)
    assert np.array_equal(layer.packed.values, sp.packed.values)
    assert layer.x.shape == (2, 24)
    assert np.array_equal(layer.y, (layer.x.astype(np.int64) @ q.astype(np.int64)).astype(np.int32))


def test_bad_targets_leave_nothing(tmp_path, packed_file, capsys):
    path, _ = packed_file
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert main(["export", str(path), "--rtl", str(occupied)]) == 2
    assert "not a previous RTL export" in capsys.readouterr().err
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    assert main(["export", str(path), "--rtl", str(tmp_path / "x"), "--layer", "zz"]) == 2
    assert "no layer 'zz'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied", "p.safetensors"]


def test_reexport_replaces_previous(tmp_path, packed_file):
    path, _ = packed_file
    out = tmp_path / "rtl"
    assert main(["export", str(path), "--rtl", str(out), "--layer", "b"]) == 0
    assert main(["export", str(path), "--rtl", str(out), "--layer", "a"]) == 0
    assert list(load_rtl(out)) == ["a"] and not (out / "b").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TightCompressError, match="version 99"):
        load_rtl(out)
