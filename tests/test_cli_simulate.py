"""`tightcompress simulate` on packed files, checkpoints and topologies, with M from each source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tightcompress.cli.main import main
from tightcompress.format.io import load_packed
from tightcompress.hw.cycles import dense_gemm_cycles, packed_cycles
from tightcompress.hw.simulate import simulate_packed
from tightcompress.readers.topology import read_topology, write_topology, zoo_topology
from tightcompress.zoo import zoo_layers

FAST = ["--iterations", "3000", "--jobs", "1", "--quiet"]


@pytest.fixture(scope="module")
def demo_packed(tmp_path_factory):
    """The demo CNN's layers (seeded init), pruned to 80 % and packed tight (tile 16), plus its topology."""
    folder = tmp_path_factory.mktemp("demo")
    packed, topology = folder / "p.safetensors", folder / "net.csv"
    report = str(folder / "pack.json")
    argv = ["pack", "--zoo", "demo", "--sparsity", "0.8", "--tile", "16", "--out", str(packed)]
    code = main([*argv, "--json", report, *FAST])
    assert code == 0
    write_topology(topology, zoo_topology("demo"))
    return packed, topology


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # a usage error caught by argparse (the process exits 2 alike)
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_packed_file_with_topology(demo_packed, tmp_path, capsys) -> None:
    packed, topology = demo_packed
    out = tmp_path / "s.json"
    argv = ["simulate", str(packed), "--topology", str(topology), "--array", "16x16", "--json", str(out)]
    code, stdout, _ = _run([*argv, "--check-bitexact", "--jobs", "1", "--quiet"], capsys)
    assert code == 0
    report = json.loads(out.read_text())
    layers = load_packed(packed)
    pixels = {layer.name: layer.out_pixels for layer in zoo_layers("demo")}
    assert [layer["name"] for layer in report["layers"]] == list(layers)
    for row in report["layers"]:
        layer = layers[row["name"]]
        assert row["m"] == pixels[row["name"]]
        assert row["cycles"] == packed_cycles(layer, (16, 16), row["m"]).cycles
        assert row["dense_cycles"] == dense_gemm_cycles(layer.K, layer.N, row["m"], (16, 16))
        assert row["method"] == "tight" and row["tile"] == min(16, layer.N)  # a narrower layer: its width
        for key in ("energy_breakdown_pj", "dense_energy_breakdown_pj", "cc_energy_breakdown_pj"):
            assert set(row[key]) >= {"mac", "sram_outputs", "dram_weights"}
        assert abs(sum(row["energy_breakdown_pj"].values()) - row["energy_pj"]) < 1e-6 * row["energy_pj"]
        for key in ("speedup", "speedup_vs_cc", "energy_gain", "energy_gain_vs_cc", "utilization_pe"):
            assert row[key] > 0
    total = report["total"]
    assert total["cycles"] == sum(row["cycles"] for row in report["layers"])
    for key in ("speedup_vs_cc", "energy_gain_vs_cc", "cc_utilization_pe", "cc_energy_breakdown_pj"):
        assert key in total
    assert total["bitexact"] is True
    assert report["config"]["m_source"] == f"topology {topology}"
    # stdout: one row per layer, a total row, the energy components and the summary line.
    for name in layers:
        assert name in stdout
    assert "total" in stdout and "energy by component" in stdout and "M from topology" in stdout
    assert "M = 1 assumed" not in stdout


def test_packed_file_refuses_packing_options_but_configures_the_cc_baseline(demo_packed, capsys) -> None:
    packed, _ = demo_packed
    code, _, err = _run(["simulate", str(packed), "--tile", "32", "--group", "4"], capsys)
    assert code == 2 and "packed already" in err and "--group, --tile" in err
    code, stdout, _ = _run(["simulate", str(packed), "--alpha", "4", "--array", "16x16", "--quiet"], capsys)
    assert code == 0 and "M = 1 assumed for every layer" in stdout


def test_tile_different_from_the_array_prints_its_cost(demo_packed, capsys) -> None:
    packed, _ = demo_packed
    code, stdout, _ = _run(["simulate", str(packed), "--array", "64x64", "--vectors", "8", "--quiet"], capsys)
    assert code == 0
    # the 10-output head's tile is its own width: not a tile choice, so only the 16-wide tiles are noted
    note = [line for line in stdout.splitlines() if line.startswith("note: tile 16 on a 64-column array")]
    assert len(note) == 1 and "--tile 64" in note[0]


def test_topology_alone_dense_and_random_sparse(tmp_path, capsys) -> None:
    topology = tmp_path / "net.csv"
    write_topology(topology, zoo_topology("demo"))
    out = tmp_path / "s.json"
    code, stdout, _ = _run(
        ["simulate", str(topology), "--method", "dense", "--array", "8x8", "--json", str(out), "--quiet"],
        capsys,
    )
    assert code == 0
    report = json.loads(out.read_text())
    for row, topo in zip(report["layers"], read_topology(topology), strict=True):
        assert row["name"] == topo.name and row["m"] == topo.m
        assert row["cycles"] == dense_gemm_cycles(topo.k, topo.n, topo.m, (8, 8))
    assert "random dense weights" in report["weights"] and "weights: random dense" in stdout

    code, _, err = _run(["simulate", str(topology), "--method", "tight"], capsys)
    assert code == 2 and "--sparsity" in err

    code, stdout, _ = _run(
        ["simulate", str(topology), "--sparsity", "0.9", "--array", "16x16", "--json", str(out), *FAST],
        capsys,
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert {row["method"] for row in report["layers"]} == {"tight"}
    assert "sparsity 0.9" in report["weights"] and "not a trained network" in stdout
    assert report["total"]["speedup"] > 1
    code, _, err = _run(["simulate", str(topology), "--vectors", "4"], capsys)
    assert code == 2 and "one source of M" in err


def test_checkpoint_with_vectors_batch_alias_and_emit_topology(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    state = {
        "conv.weight": torch.tensor(rng.normal(size=(16, 4, 3, 3)) * (rng.random((16, 4, 3, 3)) < 0.3)),
        "fc.weight": torch.tensor(rng.normal(size=(5, 16)), dtype=torch.float32),
    }
    checkpoint = tmp_path / "net.pt"
    torch.save({k: v.float() for k, v in state.items()}, checkpoint)
    out, emitted = tmp_path / "s.json", tmp_path / "emitted.csv"
    argv = ["simulate", str(checkpoint), "--array", "16x16", "--json", str(out), *FAST]
    code, stdout, err = _run([*argv, "--batch", "20", "--emit-topology", str(emitted)], capsys)
    assert code == 0
    assert err == ""  # --batch is an alias of --vectors; its deprecation line is silenced by --quiet
    report = json.loads(out.read_text())
    assert [row["m"] for row in report["layers"]] == [20, 20]
    assert report["layers"][0]["tile"] == 16  # the tile follows the array
    assert "note: tile" not in stdout
    rows = read_topology(emitted)
    assert [(r.name, r.m, r.k, r.n) for r in rows] == [("conv", 20, 36, 16), ("fc", 20, 16, 5)]
    # The emitted topology gives the same M back, matched by name.
    code, _, _ = _run([*argv, "--topology", str(emitted)], capsys)
    assert code == 0 and [row["m"] for row in json.loads(out.read_text())["layers"]] == [20, 20]
    code, _, err = _run([*argv, "--vectors", "0"], capsys)
    assert code == 2


def test_unmatched_topology_names_are_listed(tmp_path, capsys) -> None:
    matrix = tmp_path / "w.npy"
    np.save(matrix, np.random.default_rng(1).normal(size=(18, 8)).astype(np.float32))
    topology = tmp_path / "net.csv"
    topology.write_text("Layer name, H, W, FH, FW, C, N, S,\nother, 6, 6, 3, 3, 2, 8, 1,\n")
    code, _, err = _run(["simulate", str(matrix), "--topology", str(topology), "--quiet"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "no row for 1 layer(s)" in err and err.strip().endswith(": w")


MODEL = """
from torch import nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 5)
    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))
"""


def test_model_forward_pass_gives_m_and_conv_geometry(tmp_path, capsys) -> None:
    model_file = tmp_path / "net.py"
    model_file.write_text(MODEL)
    rng = np.random.default_rng(0)
    checkpoint = tmp_path / "net.pt"
    torch.save(
        {
            "conv.weight": torch.tensor(rng.normal(size=(16, 4, 3, 3)), dtype=torch.float32),
            "conv.bias": torch.zeros(16),
            "fc.weight": torch.tensor(rng.normal(size=(5, 1024)), dtype=torch.float32),
            "fc.bias": torch.zeros(5),
        },
        checkpoint,
    )
    out, emitted = tmp_path / "s.json", tmp_path / "t.csv"
    argv = [
        "simulate",
        str(checkpoint),
        "--method",
        "dense",
        "--model",
        f"{model_file}:Net",
        "--json",
        str(out),
    ]
    code, stdout, _ = _run(
        [*argv, "--input-shape", "1x4x16x16", "--emit-topology", str(emitted), *FAST], capsys
    )
    assert code == 0, stdout
    report = json.loads(out.read_text())
    assert [row["m"] for row in report["layers"]] == [64, 1]
    conv, fc = read_topology(emitted)
    assert (conv.ifmap_height, conv.filter_height, conv.channels, conv.filters, conv.stride) == (
        17,
        3,
        4,
        16,
        2,
    )
    assert (fc.ifmap_height, fc.channels, fc.filters) == (1, 1024, 5)
    code, _, _ = _run([*argv, "--input-shape", "3x4x16x16", *FAST], capsys)  # a batch of 3
    assert code == 0 and [row["m"] for row in json.loads(out.read_text())["layers"]] == [192, 3]
    code, _, _ = _run([*argv, *FAST], capsys)  # --model alone: conv groups from the class, M = 1
    assert code == 0 and [row["m"] for row in json.loads(out.read_text())["layers"]] == [1, 1]
    code, _, err = _run([*argv, "--input-shape", "1x3x16x16", *FAST], capsys)
    assert code == 2 and "does not run on input 1x3x16x16" in err


def test_simulate_matches_the_python_api(tmp_path, capsys) -> None:
    rng = np.random.default_rng(3)
    w = (rng.normal(size=(72, 40)) * (rng.random((72, 40)) < 0.2)).astype(np.float32)
    matrix = tmp_path / "w.npy"
    np.save(matrix, w)
    out = tmp_path / "s.json"
    code = main(["simulate", str(matrix), "--array", "8x8", "--vectors", "9", "--json", str(out), *FAST])
    assert code == 0
    row = json.loads(out.read_text())["layers"][0]
    from tightcompress.api import pack

    packed = pack(w, method="tight", tile=8, iterations=3000)
    cc = pack(w, method="column-combining", tile=8)
    api = simulate_packed(packed, array=(8, 8), m=9, cc_baseline=cc)
    for key in ("cycles", "dense_cycles", "cc_cycles", "energy_pj", "cc_energy_pj", "utilization_pe"):
        assert row[key] == pytest.approx(api[key])
    capsys.readouterr()


GROUPED_MODEL = """
import torch
from torch import nn
class GroupedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc = nn.Linear(32, 10)
    def forward(self, x):
        return self.fc(self.dw(self.grouped(self.conv1(x))).mean((2, 3)))
"""


def test_model_forward_pass_counts_m_per_group_of_a_grouped_conv(tmp_path, capsys, monkeypatch) -> None:
    """A grouped conv is packed as `grouped.weight[g]`; M from a forward pass reaches every group."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gnet.py").write_text(GROUPED_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    from gnet import GroupedNet

    torch.manual_seed(0)
    torch.save(GroupedNet().state_dict(), tmp_path / "g.pt")
    packed, out = tmp_path / "p.safetensors", tmp_path / "s.json"
    pack = ["pack", "g.pt", "--model", "gnet:GroupedNet", "--sparsity", "0.8", "--json", "p.json"]
    assert _run([*pack, "--out", str(packed), *FAST], capsys)[0] == 0
    argv = ["simulate", str(packed), "--model", "gnet:GroupedNet", "--input-shape", "1x3x8x8"]
    code, stdout, _ = _run([*argv, "--json", str(out), "--quiet"], capsys)
    assert code == 0, stdout
    m = {row["name"]: row["m"] for row in json.loads(out.read_text())["layers"]}
    assert m == {"conv1.weight": 64, "grouped.weight[0]": 64, "grouped.weight[1]": 64, "fc.weight": 1}
