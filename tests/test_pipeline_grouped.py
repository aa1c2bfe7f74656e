"""Grouped convolutions through the fine-tuning pipeline (`compress_model`, `prepare_`/`fit_`, `compress`):
one packed GEMM per group, named `name[g]` as `pack` names them, at word and subword granularity."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tightcompress as tc
from test_pipeline_data import make_folder
from tightcompress.cli.main import main
from tightcompress.format.io import load_packed
from tightcompress.nn import PackedConv2d, PackedLinear
from tightcompress.nn.modules import PackedWeight
from tightcompress.pipeline.compress import GRANULARITY_CLASSES, CompressConfig, compress_model, write_outputs
from tightcompress.pipeline.data import Dataset
from tightcompress.pipeline.masks import effective_weight
from tightcompress.pipeline.models import gemm_layers
from tightcompress.pipeline.subword import effective_int
from tightcompress.prune.subword_pack import SubwordPacked
from tightcompress.readers import model_weights
from tightcompress.readers.matrices import matrix_to_weight, weight_to_matrix

GROUPED_NET = """
import torch
from torch import nn


class Net(nn.Module):
    '''A dense stem, a conv with groups=2, a depthwise conv, a 1x1 conv with groups=4 and a linear head.'''

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.g2 = nn.Conv2d(8, 16, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.g4 = nn.Conv2d(16, 16, 1, groups=4)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(self.g4(torch.relu(self.dw(torch.relu(self.g2(h))))))
        return self.fc(h.mean(dim=(2, 3)))
"""
_namespace: dict = {}
exec(GROUPED_NET, _namespace)
Net = _namespace["Net"]

GROUPS = {"stem": 1, "g2": 2, "g4": 4, "fc": 1}
PACKED_NAMES = {"stem", "g2[0]", "g2[1]", "g4[0]", "g4[1]", "g4[2]", "g4[3]", "fc"}
FAST = dict(
    tile=8,
    prune_rounds=1,
    prune_epochs=1.0,
    finetune_epochs=1.0,
    format_rounds=1,
    batch_size=16,
    plan_iterations=200,
    final_iterations=1000,
)


def tiny_data(n: int = 64, seed: int = 0) -> Dataset:
    """Three classes told apart by where a bright blob sits, on 8x8 one-channel images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    for i, label in enumerate(y.tolist()):
        x[i, 0, 1 + 2 * label : 3 + 2 * label, 2:6] += 2.0
    cut = n * 3 // 4
    return Dataset(x[:cut], y[:cut], x[cut:], y[cut:], ["a", "b", "c"], "synthetic")


def group_slice(weight: torch.Tensor, groups: int, g: int) -> np.ndarray:
    """Group `g`'s `K x N` matrix of a layer weight, written out here independently of the library's rule."""
    rows = weight.shape[0] // groups
    return weight_to_matrix(weight[g * rows : (g + 1) * rows].detach().double().numpy())


def rebuilt_weight(parts: list[np.ndarray], shape: tuple[int, ...]) -> torch.Tensor:
    """A layer weight put back together from its groups' `K x N` matrices (group g -> output rows g*N...)."""
    part_shape = (shape[0] // len(parts), *shape[1:])
    return torch.cat([torch.from_numpy(matrix_to_weight(p, part_shape)) for p in parts])


def names_of(layer: str) -> list[str]:
    groups = GROUPS[layer]
    return [layer] if groups == 1 else [f"{layer}[{g}]" for g in range(groups)]


def test_the_check_fails_on_wrongly_sliced_groups() -> None:
    """`group_slice` tells groups apart: a grouped weight with distinct per-group values."""
    weight = torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).reshape(4, 2, 3, 3)
    assert not np.array_equal(group_slice(weight, 2, 0), group_slice(weight, 2, 1))
    parts = [group_slice(weight, 2, g) for g in range(2)]
    assert torch.equal(rebuilt_weight(parts, (4, 2, 3, 3)), weight.double())


@pytest.mark.parametrize("granularity", ["word", "subword"])
def test_compress_packs_a_grouped_conv_per_group(granularity: str, tmp_path: Path, monkeypatch) -> None:
    level = GRANULARITY_CLASSES[granularity]
    repack, dropped = level.repack, []

    def recording_repack(self, packed):
        out = repack(self, packed)
        dropped.append(sum(self.count_dropped(p) for p in out.values()))
        return out

    monkeypatch.setattr(level, "repack", recording_repack)
    data = tiny_data()
    torch.manual_seed(0)
    model = Net()
    dw_before = model.dw.weight.detach().clone()
    config = CompressConfig(rate=4.0, granularity=granularity, **FAST)
    result = compress_model(model, data, config, quiet=True)
    # prune to fit made each layer's mask its groups' kept positions: the first repack drops nothing
    assert dropped and dropped[0] == 0
    packed = result.packed
    assert set(packed) == PACKED_NAMES
    assert {layer["name"] for layer in result.report["layers"]} == PACKED_NAMES
    assert set(result.report["choices"]) == PACKED_NAMES
    assert result.report["total"]["dropped_nnz"] == 0
    assert set(gemm_layers(result.model)) == set(GROUPS)  # the depthwise conv is left out, dense
    assert torch.count_nonzero(result.model.dw.weight) == dw_before.numel()

    rebuilt = copy.deepcopy(result.model)
    for layer, groups in GROUPS.items():
        weight = getattr(result.model, layer).weight
        parts = []
        for g, name in enumerate(names_of(layer)):
            if granularity == "word":
                kept = packed[name].to_dense().astype(np.float64)
            else:
                sp = SubwordPacked.from_packed(packed[name])
                sp.validate()
                kept = sp.to_int8_dense().astype(np.float64) * np.asarray(packed[name].info["scales"])
            # the packed group is that group of the model's final weights, zero outside the kept positions
            np.testing.assert_allclose(kept, group_slice(weight, groups, g), rtol=1e-6, atol=0)
            assert packed[name].N == weight.shape[0] // groups
            parts.append(kept)
        with torch.no_grad():
            getattr(rebuilt, layer).weight.copy_(rebuilt_weight(parts, tuple(weight.shape)))
    x = data.x_test[:8]
    result.model.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), result.model(x), rtol=1e-5, atol=1e-6)
    assert set(result.report["accuracy"]) >= {"dense", "prune_to_fit", "packed_finetuned"}
    for layer in result.report["layers"]:
        assert layer["cycles"] > 0

    # the written file reads back under the same names, as `pack` of the compressed model names its GEMMs
    paths = write_outputs(result, tmp_path / "out")
    loaded = load_packed(paths["packed"])
    assert set(loaded) == PACKED_NAMES
    pack_names = {name.replace(".weight", "") for name in model_weights(result.model).matrices}
    assert pack_names == PACKED_NAMES
    for name, layer in loaded.items():
        np.testing.assert_array_equal(layer.to_dense(), packed[name].to_dense())


def test_the_packed_groups_compute_the_model(tmp_path: Path) -> None:
    """Word level: the model's forward equals one through packed modules built from the packed groups."""
    data = tiny_data()
    torch.manual_seed(1)
    result = compress_model(Net(), data, CompressConfig(rate=4.0, **FAST), quiet=True)
    packed_model = copy.deepcopy(result.model)
    for layer in GROUPS:
        module = getattr(result.model, layer)
        blocks = [PackedWeight(result.packed[name]) for name in names_of(layer)]
        if isinstance(module, nn.Linear):
            new = PackedLinear(module.in_features, module.out_features, blocks[0], module.bias)
        else:
            new = PackedConv2d.from_conv(module, blocks)
        packed_model.set_submodule(layer, new)
    assert isinstance(packed_model.g4, PackedConv2d) and packed_model.g4.groups == 4
    x = data.x_test[:8]
    result.model.eval()
    packed_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(packed_model(x), result.model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("granularity", ["word", "subword"])
def test_prepare_and_fit_on_a_grouped_conv(granularity: str) -> None:
    data = tiny_data()
    torch.manual_seed(0)
    model = Net()
    tc.prepare_(model, rate=4.0, granularity=granularity, total_steps=4, rounds=2, tile=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(4):
        x, y = data.x_train[8 * step : 8 * step + 8], data.y_train[8 * step : 8 * step + 8]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    packed = tc.fit_(model)
    assert set(packed) == PACKED_NAMES
    for layer, groups in GROUPS.items():
        module = getattr(model, layer)
        for g, name in enumerate(names_of(layer)):
            if granularity == "word":
                kept = packed[name].to_dense().astype(np.float64)
                now = group_slice(effective_weight(module), groups, g)
            else:
                kept = SubwordPacked.from_packed(packed[name]).to_int8_dense().astype(np.float64)
                now = group_slice(effective_int(module), groups, g)
            np.testing.assert_array_equal(now, kept)  # the layer's mask is its groups' kept positions
    for _ in range(2):  # fine-tuning keeps the masks
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data.x_train[:8]), data.y_train[:8]).backward()
        optimizer.step()
    if granularity == "word":
        for layer, groups in GROUPS.items():
            for g, name in enumerate(names_of(layer)):
                outside = packed[name].to_dense() == 0
                assert not group_slice(effective_weight(getattr(model, layer)), groups, g)[outside].any()


def test_cli_compress_and_simulate_a_grouped_conv(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(GROUPED_NET)
    torch.manual_seed(0)
    torch.save(Net().state_dict(), tmp_path / "m.pt")
    images = make_folder(tmp_path / "imgs", n_per_class=8, classes=3)  # the model has 3 outputs
    args = ["compress", "--checkpoint", "m.pt", "--model", "mynet.py:Net", "--data", str(images)]
    args += ["--rate", "4", "--finetune-steps", "2", "--prune-steps", "1", "--out-dir", "OUT"]
    args += ["--max-drop", "100", "--tile", "8", "--prune-rounds", "1", "--batch-size", "4", "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    assert {layer["name"] for layer in report["layers"]} == PACKED_NAMES
    packed = load_packed(tmp_path / "OUT" / "packed.safetensors")
    assert set(packed) == PACKED_NAMES
    state = torch.load(tmp_path / "OUT" / "model.pt", weights_only=True)
    for layer, groups in GROUPS.items():
        for g, name in enumerate(names_of(layer)):
            np.testing.assert_allclose(
                packed[name].to_dense(), group_slice(state[f"{layer}.weight"], groups, g), rtol=1e-6, atol=0
            )
    # `pack --model` on the compressed checkpoint cuts and names the same GEMMs (`fqn.weight[g]`)
    pack = ["pack", "OUT/model.pt", "--model", "mynet.py:Net", "--method", "dense", "--tile", "8"]
    assert main([*pack, "--json", "pack.json", "--out", "pack.safetensors", "--quiet"]) == 0
    repacked = {n.replace(".weight", ""): m for n, m in load_packed(tmp_path / "pack.safetensors").items()}
    assert set(repacked) == PACKED_NAMES
    for name, layer in repacked.items():
        np.testing.assert_array_equal(layer.to_dense(), packed[name].to_dense())
    capsys.readouterr()
    # `simulate` on the written file, M per group counted from the model class by the same names
    simulate = ["simulate", "OUT/packed.safetensors", "--model", "mynet.py:Net", "--input-shape", "1x1x8x8"]
    assert main([*simulate, "--json", "sim.json", "--no-vs-cc"]) == 0
    sim = json.loads((tmp_path / "sim.json").read_text())
    by_name = {layer["name"]: layer for layer in sim["layers"]}
    assert set(by_name) == PACKED_NAMES
    assert by_name["g4[3]"]["m"] == 64 and by_name["fc"]["m"] == 1
