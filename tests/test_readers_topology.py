"""SCALE-Sim topology CSVs: reading, writing, matching layers by name, and the zoo's topologies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tightcompress.errors import TightCompressError
from tightcompress.readers.topology import (
    TopologyLayer,
    conv_layer,
    format_topology,
    match_topology,
    read_topology,
    topology_name,
    write_topology,
    zoo_topology,
)
from tightcompress.zoo import ZOO, zoo_layers

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "resnet18_topology.csv"


def test_gemm_shape_follows_scalesim_arithmetic() -> None:
    # SCALE-Sim: ofmap side = ceil((H - F + S) / S); K = Fh * Fw * C; N = filters.
    row = TopologyLayer("conv", 230, 230, 7, 7, 3, 64, 2)
    assert (row.ofmap_height, row.m, row.k, row.n) == (113, 113 * 113, 147, 64)
    assert TopologyLayer("fc", 1, 1, 1, 1, 512, 1000, 1).m == 1
    gemm = TopologyLayer.from_gemm("g", 49, 576, 128)
    assert (gemm.m, gemm.k, gemm.n) == (49, 576, 128)
    # The IFMAP written for a conv is what the windows read: PyTorch's floor and SCALE-Sim's ceil agree.
    assert conv_layer("c", (112, 112), (7, 7), 3, 64, 2).ifmap_height == 229
    assert conv_layer("c", (112, 112), (7, 7), 3, 64, 2).m == 112 * 112


@pytest.mark.parametrize("model", sorted(ZOO))
def test_zoo_topologies_match_the_zoo_shapes(model: str) -> None:
    layers = [layer for layer in zoo_layers(model) if layer.packable]
    rows = zoo_topology(model)
    assert [row.name for row in rows] == [topology_name(layer.name) for layer in layers]
    assert [(row.m, row.k, row.n) for row in rows] == [(lay.out_pixels, lay.K, lay.N) for lay in layers]


def test_example_resnet18_topology_is_the_zoos() -> None:
    assert EXAMPLE.read_text() == format_topology(zoo_topology("resnet18"))
    assert read_topology(EXAMPLE) == zoo_topology("resnet18")


def test_write_read_round_trip_and_scalesim_trailing_comma(tmp_path) -> None:
    rows = [TopologyLayer("a", 58, 58, 3, 3, 64, 64, 1), TopologyLayer.from_gemm("b", 10, 20, 30)]
    path = tmp_path / "net.csv"
    write_topology(path, rows)
    assert all(line.endswith(",") for line in path.read_text().splitlines())  # SCALE-Sim drops the last cell
    assert read_topology(path) == rows
    path.write_text("Layer name, H, W, FH, FW, C, N, S\na, 58, 58, 3, 3, 64, 64, 1\n")  # no trailing comma
    assert read_topology(path) == rows[:1]
    path.write_text("Layer, M, N, K,\nb, 10, 30, 20,\n")  # SCALE-Sim's GEMM form: M, N, K
    assert read_topology(path) == rows[1:]


@pytest.mark.parametrize(
    "text,message",
    [
        ("a, 8, 8, 3, 3, 4, 4, 1,\n", "header"),
        ("h\na, 8, 8, 3, 3, 4,\n", "expected"),
        ("h\na, 8, 8, 3, x, 4, 4, 1,\n", "not an integer"),
        ("h\na, 2, 2, 3, 3, 4, 4, 1,\n", "larger than the IFMAP"),
        ("h\na, 8, 8, 3, 3, 4, 4, 1, 2:4,\n", "sparsity ratio"),
        ("h\na, 8, 8, 3, 3, 4, 4, 1,\na, 8, 8, 3, 3, 4, 4, 1,\n", "twice"),
        ("h\na, 8, 8, 3, 3, 0, 4, 1,\n", ">= 1"),
        ("h\n", "no layer rows"),
    ],
)
def test_bad_topologies_are_one_line_errors(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TightCompressError, match=message) as info:
        read_topology(path)
    assert "\n" not in str(info.value)


def test_match_by_name_with_or_without_weight_suffix() -> None:
    rows = [TopologyLayer("conv1", 10, 10, 3, 3, 2, 4, 1), TopologyLayer("fc.weight", 1, 1, 1, 1, 8, 3, 1)]
    matched = match_topology({"conv1.weight": (18, 4), "fc.weight": (8, 3)}, rows)
    assert matched["conv1.weight"].m == 64 and matched["fc.weight"].m == 1
    with pytest.raises(TightCompressError, match=r"2 layer\(s\).*: head.weight, extra") as info:
        match_topology({"conv1.weight": (18, 4), "head.weight": (8, 3), "extra": (1, 1)}, rows)
    assert "\n" not in str(info.value)
    with pytest.raises(TightCompressError, match=r"layer conv1\.weight is 18 x 5"):
        match_topology({"conv1.weight": (18, 5)}, rows)


def test_depthwise_names_are_refused_on_write() -> None:
    row = TopologyLayer("blockDP1", 10, 10, 3, 3, 2, 4, 1)
    assert row.depthwise
    with pytest.raises(TightCompressError, match="depthwise"):
        format_topology([row])
