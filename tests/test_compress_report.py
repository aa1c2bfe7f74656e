"""`compress`'s report: layers left dense (depthwise) are listed and counted (rate, cycles, energy), every
packed layer's format and minimum folds, the training budget; its summary lines say the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from test_pipeline_data import make_folder
from tightcompress.baselines import pack_dense
from tightcompress.cli.main import main
from tightcompress.hw import simulate_packed
from tightcompress.pipeline.hardware import simulate_dense_layers
from tightcompress.readers.matrices import weight_to_matrix

DWNET = """
import torch
from torch import nn


class DWNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        x = torch.relu(self.pw(torch.relu(self.dw(torch.relu(self.conv(x))))))
        return self.fc(x.mean(dim=(2, 3)))
"""

FAST = ["--prune-rounds", "1", "--prune-steps", "2", "--finetune-steps", "2", "--tile", "8"]
FAST += ["--batch-size", "2", "--max-drop", "100", "--rate", "2"]


def _dwnet() -> nn.Module:
    namespace: dict = {}
    exec(DWNET, namespace)
    torch.manual_seed(0)
    return namespace["DWNet"]()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str, Path]:
    root = tmp_path_factory.mktemp("dw")
    (root / "dwnet.py").write_text(DWNET)
    torch.save(_dwnet().state_dict(), root / "dw.pt")
    make_folder(root / "imgs", n_per_class=12)
    args = ["compress", "--checkpoint", str(root / "dw.pt"), "--model", f"{root / 'dwnet.py'}:DWNet"]
    args += ["--data", str(root / "imgs"), "--out-dir", str(root / "out"), *FAST]
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    return json.loads((root / "out" / "report.json").read_text()), stdout.getvalue(), root / "out"


def test_depthwise_layer_is_listed_like_pack_does(run) -> None:
    import jsonschema

    from tightcompress.schemas import load_schema

    report, _, _ = run
    jsonschema.validate(report, load_schema("compress"))
    skipped = report["notes"]["skipped_layers"]
    assert [(s["name"], s["kind"], s["shape"]) for s in skipped] == [("dw", "depthwise", [8, 1, 3, 3])]
    assert "left dense" in skipped[0]["reason"]
    assert [layer["name"] for layer in report["layers"]] == ["conv", "pw", "fc"]
    (dense,) = report["dense_layers"]
    assert dense["name"] == "dw" and dense["groups"] == 8 and dense["m"] == 64  # 8x8 output pixels
    assert dense["mapping"] == "block-diagonal"  # 3 folds of a 72 x 8 GEMM, not 8 passes
    assert dense["cycles"] == dense["dense_cycles"] > 0 and dense["speedup"] == 1.0


def test_totals_count_the_dense_layer_at_its_dense_cost(run) -> None:
    report, _, _ = run
    hw, (dense,) = report["hardware"], report["dense_layers"]
    for key in ("cycles", "dense_cycles", "energy_pj", "dense_energy_pj"):
        packed = sum(layer[key] for layer in report["layers"])
        assert hw[key] == pytest.approx(packed + dense[key]), key
    assert hw["speedup"] == pytest.approx(hw["dense_cycles"] / hw["cycles"])


def test_rate_counts_every_weight_with_the_packed_rate_beside_it(run) -> None:
    report, stdout, _ = run
    weights = report["model_weights"]
    assert weights == {**weights, "total": 72 + 72 + 128 + 32, "packed": 72 + 128 + 32, "left_dense": 72}
    packed_rate = report["packed_compression_rate"]
    assert packed_rate == report["total"]["compression_rate"] >= 2.0
    stored = weights["packed"] / packed_rate + weights["left_dense"]
    assert report["compression_rate"] == pytest.approx(weights["total"] / stored)
    assert report["compression_rate"] < packed_rate  # the dense layer's weights are stored whole
    assert "rate {:.2f}x".format(report["compression_rate"]) in stdout
    assert "left dense (dw: depthwise, 72 weights)" in stdout
    assert f"{packed_rate:.2f}x over the packed layers alone" in stdout


def test_budget_and_minimum_folds_are_reported(run) -> None:
    report, stdout, _ = run
    budget = report["budget"]
    assert budget["train_images"] == 19 and budget["test_images"] == 5 and budget["batch_size"] == 2
    assert budget["steps_per_epoch"] == 10 and budget["prune_steps_per_round"] == 2
    assert budget["finetune_steps_per_round"] == max(1, round(2 / budget["format_rounds"]))
    for layer in report["layers"]:
        assert layer["min_folds"] == layer["passes"]
        assert layer["at_min_folds"] == (layer["folds"] == layer["passes"])
    assert report["hardware"]["layers_at_min_folds"] == sum(lay["at_min_folds"] for lay in report["layers"])
    if report["hardware"]["layers_at_min_folds"]:
        assert "at the minimum folds on the 32x32 array" in stdout


def _per_group_and_block_diagonal(weight, m: int) -> tuple[dict, dict]:
    """Both mappings of a depthwise weight simulated in full: every group alone (summed), and the one
    block-diagonal GEMM."""
    import numpy as np

    groups = weight.shape[0]
    sims = [simulate_packed(p, array=(32, 32), m=m, dense=p) for p in
            (pack_dense(weight_to_matrix(weight[g : g + 1]), tile=32) for g in range(groups))]  # fmt: skip
    summed = {
        key: sum(s[key] for s in sims) for key in ("cycles", "pe_cycles", "energy_pj", "folds", "passes")
    }
    k = weight[0].size
    matrix = np.zeros((k * groups, groups), dtype=np.float32)
    for g in range(groups):
        matrix[g * k : (g + 1) * k, g] = weight[g].reshape(-1)
    block = pack_dense(matrix, tile=32)
    return summed, simulate_packed(block, array=(32, 32), m=m, dense=block)


def test_dense_layer_cost_is_the_cheaper_mapping() -> None:
    """8 channels: one block-diagonal GEMM (3 folds) beats 8 passes; 128 channels: 128 passes beat the
    block-diagonal GEMM's 36 x 4 folds. The per-group shortcut (one group simulated, scaled) is exact."""
    model = _dwnet()
    with torch.no_grad():
        model.dw.weight[3] = 0.0  # a group of zeros: useful MACs count the real nonzeros
    (entry,) = simulate_dense_layers(model, torch.zeros(1, 1, 8, 8))
    weight = model.dw.weight.detach().numpy()
    per_group, block = _per_group_and_block_diagonal(weight, 64)
    assert entry["mapping"] == "block-diagonal" and block["cycles"] < per_group["cycles"]
    for key in ("cycles", "pe_cycles", "energy_pj", "folds", "passes"):
        assert entry[key] == pytest.approx(block[key]), key
    assert entry["useful_macs"] == 7 * 9 * 64

    wide = nn.Sequential(nn.Conv2d(1, 128, 1), nn.Conv2d(128, 128, 3, padding=1, groups=128))
    (entry,) = simulate_dense_layers(wide, torch.zeros(1, 1, 4, 4))
    per_group, block = _per_group_and_block_diagonal(wide[1].weight.detach().numpy(), 16)
    assert entry["name"] == "1" and entry["mapping"] == "per group"
    assert per_group["cycles"] < block["cycles"] and per_group["folds"] == 128
    for key in ("cycles", "pe_cycles", "energy_pj", "folds", "passes"):
        assert entry[key] == pytest.approx(per_group[key]), key


def test_simulate_says_which_layers_are_at_their_minimum_folds(tmp_path, capsys) -> None:
    """A 20-row layer packs into one fold of 32 rows (at the floor); a 200-row one 90% dense does not."""
    import numpy as np

    rng = np.random.default_rng(0)
    state = {
        "small.weight": torch.from_numpy(rng.standard_normal((16, 20)).astype(np.float32)),
        "big.weight": torch.from_numpy(rng.standard_normal((16, 200)).astype(np.float32)),
    }
    torch.save(state, tmp_path / "two.pt")
    argv = ["simulate", str(tmp_path / "two.pt"), "--sparsity", "0.1", "--group", "8", "--quiet"]
    assert main([*argv, "--json", str(tmp_path / "sim.json")]) == 0
    out = capsys.readouterr().out
    layers = {layer["name"]: layer for layer in json.loads((tmp_path / "sim.json").read_text())["layers"]}
    assert layers["small.weight"]["at_min_folds"] and not layers["big.weight"]["at_min_folds"]
    assert layers["big.weight"]["folds"] > layers["big.weight"]["min_folds"] == layers["big.weight"]["passes"]
    note = "note: 1 of 2 layers are at the minimum folds on the 32x32 array (one fold per pass: small.weight)"
    assert note in out


def _text(page: str) -> str:
    """The page's visible text, one space between cells."""
    page = re.sub(r'src="data:[^"]+"', "", page)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)).replace("&#x27;", "'")


def test_html_report_of_a_compress_run(run, tmp_path) -> None:
    """Each layer's (G, h), the accuracy after every stage, the layer left dense, why cycles stop falling,
    the budget and wall time, and the packed grid beside the scatter."""
    report, _, out = run
    html_path = tmp_path / "r.html"
    argv = ["report", str(out / "report.json"), "--packed", str(out / "packed.safetensors")]
    assert main([*argv, "--layer", "pw", "--html", str(html_path)]) == 0
    text = _text(html_path.read_text())
    for lay in report["layers"]:
        assert f"{lay['name']} {lay['K']} x {lay['N']} tight G={lay['group']} h={lay['height']}" in text
    acc = report["accuracy"]
    for label, key in [("dense (the incoming model)", "dense"), ("unstructured pruning", "unstructured"),
                       ("pruned to fit the format, before fine-tuning", "prune_to_fit"),
                       ("packed and fine-tuned (final)", "packed_finetuned")]:  # fmt: skip
        assert f"{label} {acc[key]:.2f}%" in text
    assert "dw 8x1x3x3 left dense (depthwise, block-diagonal) 1.00×" in text
    assert "Not packed: dw: depthwise convolution" in text
    assert f"Compression rate {report['compression_rate']:.2f}× over all 304 conv/linear weights" in text
    if report["hardware"]["layers_at_min_folds"]:
        assert "Why cycles stop falling:" in text and "at the minimum folds on the 32x32 array" in text
    assert "Budget: 19 training images in batches of 2 (10 steps an epoch)" in text
    assert f"Wall time {report['seconds']:.1f} s on cpu" in text
    assert "packed grid" in text and "each coloured by its lane" in text


def test_packed_grid_holds_each_slots_lane() -> None:
    import numpy as np

    from tightcompress import api
    from tightcompress.viz.report_html import packed_grid

    rng = np.random.default_rng(1)
    weights = rng.standard_normal((24, 12)) * (rng.random((24, 12)) < 0.3)
    packed = api.pack(weights, method="tight", group=8, tile=4, iterations=200)
    grid = packed_grid(packed)
    assert grid.shape == (int(packed.tile_rows.sum()), 4)
    assert ((grid >= 0) == (packed.values != 0)).all() and grid.max() < 8
    assert (grid[grid >= 0] == packed.lanes[packed.values != 0]).all()
