"""PyTorch in, PyTorch out (issue 11): sparsify_, the packed modules, save/load, pack_weight, fp16/bf16."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

import tightcompress as tc
from tightcompress.nn import PackedConv2d, PackedLinear
from tightcompress.prune import magnitude_prune
from tightcompress.readers.matrices import weight_to_matrix
from tightcompress.zoo import resnet18
from torch_models import (
    CNN_BN_LAYERS,
    GROUPED_PACKED,
    GROUPED_SKIPPED,
    ResNet18,
    assert_outputs_match,
    cnn_bn,
    grouped_depthwise,
    masked_dense,
    randomize_bn,
)

FAST = {"method": "tight", "group": 8, "height": 2, "tile": 8, "sparsity": 0.6, "iterations": 3000}


def _packed_names(model: nn.Module) -> set[str]:
    return {fqn for fqn, m in model.named_modules() if isinstance(m, PackedLinear | PackedConv2d)}


def _check_kept_weights(original: nn.Module, packed_model: nn.Module, sparsity: float) -> None:
    """Every kept weight is an original weight that survived the magnitude pruning, at its own place."""
    for fqn, module in packed_model.named_modules():
        if not isinstance(module, PackedLinear | PackedConv2d):
            continue
        views = module.packed if isinstance(module.packed, list) else [module.packed]
        weight = original.get_submodule(fqn).weight.detach().float().numpy()
        per_group = weight.shape[0] // len(views)
        for g, view in enumerate(views):
            matrix = weight_to_matrix(weight[g * per_group : (g + 1) * per_group])
            pruned = magnitude_prune(matrix, sparsity)
            dense = view.to_dense().astype(np.float32)
            kept = dense != 0
            assert np.array_equal(dense[kept], matrix[kept]) and not np.any(kept & (pruned == 0))


@pytest.mark.parametrize(
    ("build", "packed", "skipped"),
    [(cnn_bn, CNN_BN_LAYERS, set()), (grouped_depthwise, GROUPED_PACKED, GROUPED_SKIPPED)],
    ids=["cnn-bn", "grouped-depthwise"],
)
def test_sparsify_finds_the_layers_and_keeps_the_outputs(build, packed, skipped):
    torch.manual_seed(0)
    model = randomize_bn(build()).eval()
    original = copy.deepcopy(model)
    report = tc.sparsify_(model, **FAST)
    assert {layer["name"] for layer in report["layers"]} == packed
    assert {s["name"] for s in report["notes"]["skipped_layers"]} == skipped
    assert all("depthwise" in s["reason"] for s in report["notes"]["skipped_layers"])
    assert _packed_names(model) == {name.split("[")[0] for name in packed}
    for name in skipped:
        assert type(model.get_submodule(name)) is nn.Conv2d  # left dense
    _check_kept_weights(original, model, FAST["sparsity"])
    x = torch.randn(3, 3 if build is cnn_bn else 4, 12, 12)
    with torch.no_grad():
        assert_outputs_match(model(x), masked_dense(original, model)(x))


def test_the_array_dataflow_agrees_with_the_module():
    """`PackedMatrix.matmul` (slot by slot, lane-selected inputs) equals the packed Linear's forward."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(40, 24))
    tc.sparsify_(model, **FAST)
    x = torch.randn(5, 40)
    with torch.no_grad():
        expected = model[0].packed.matmul(x.numpy().astype(np.float64)) + model[0].bias.numpy()
        assert_outputs_match(model(x).double(), torch.from_numpy(expected))


@pytest.mark.slow
def test_resnet18_at_90_percent_equals_the_masked_dense_model_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(ResNet18()).eval()
    expected_layers = {layer.name.removesuffix(".weight") for layer in resnet18()}
    original = copy.deepcopy(model)
    report = tc.sparsify_(
        model, method="tight", group=32, height=3, tile=32, sparsity=0.9, iterations=2000, jobs=2
    )
    assert {layer["name"] for layer in report["layers"]} == expected_layers
    shapes = {layer.name.removesuffix(".weight"): (layer.K, layer.N) for layer in resnet18()}
    assert {layer["name"]: (layer["K"], layer["N"]) for layer in report["layers"]} == shapes
    assert report["total"]["compression_rate"] > 5
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert_outputs_match(out, masked_dense(original, model)(x))
    tc.save_model(model, tmp_path / "r18.safetensors")
    fresh = ResNet18().eval()
    tc.load_model_(fresh, tmp_path / "r18.safetensors")
    assert _packed_names(fresh) == expected_layers
    with torch.no_grad():
        assert torch.equal(fresh(x), out)


def test_save_and_load_round_trip_is_identical_and_checks_the_model(tmp_path):
    torch.manual_seed(2)
    model = randomize_bn(grouped_depthwise()).eval()
    tc.sparsify_(model, **FAST)
    path = tmp_path / "m.safetensors"
    tc.save_model(model, path)
    fresh = grouped_depthwise().eval()
    assert tc.load_model_(fresh, path) is fresh
    x = torch.randn(2, 4, 10, 10)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert torch.equal(fresh[1].blocks[2].lanes, model[1].blocks[2].lanes)
    with pytest.raises(tc.TightCompressError, match="does not match"):
        tc.load_model_(cnn_bn(), path)
    with pytest.raises(tc.TightCompressError, match="no packed module"):
        tc.save_model(cnn_bn(), tmp_path / "x.safetensors")


def test_packed_modules_follow_dtype_and_work_under_autograd():
    torch.manual_seed(3)
    model = randomize_bn(cnn_bn()).eval()
    tc.sparsify_(model, **FAST)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        reference = model(x)
    half = copy.deepcopy(model).half()
    assert half[0].blocks[0].values.dtype == torch.float16
    assert half[0].blocks[0].lanes.dtype == torch.int16  # index buffers keep their type
    with torch.no_grad():
        assert torch.allclose(half(x.half()).float(), reference, atol=2e-2, rtol=2e-2)
    moved = copy.deepcopy(model).to("cpu", torch.float64)
    with torch.no_grad():
        assert_outputs_match(moved(x.double()), reference, rel=1e-5)
    model.zero_grad()
    model(x).square().sum().backward()
    values = model[0].blocks[0].values
    assert values.grad is not None
    assert torch.all(values.grad[values == 0] == 0)  # unused slots never come to life
    assert torch.any(values.grad[values != 0] != 0)  # the kept weights learn
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = (values != 0).clone()
    optimizer.step()
    assert torch.equal(values != 0, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sparsify_keeps_the_input_dtype(dtype):
    torch.manual_seed(4)
    model = randomize_bn(cnn_bn()).eval().to(dtype)
    original = copy.deepcopy(model)
    report = tc.sparsify_(model, **FAST)
    assert {layer["name"] for layer in report["layers"]} == CNN_BN_LAYERS
    assert model[0].blocks[0].values.dtype == dtype
    assert model[0].packed.info["dtype"] == str(dtype).removeprefix("torch.")
    x = torch.randn(2, 3, 8, 8, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(model(x), masked_dense(original, model)(x))


def test_sparsify_on_a_pruned_model_packs_the_masked_weights():
    torch.manual_seed(5)
    model = randomize_bn(cnn_bn()).eval()
    masked = copy.deepcopy(model)
    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prune.random_unstructured(model[8], "weight", amount=0.3)
    with torch.no_grad():
        for index in (0, 8):
            masked[index].weight.copy_(model[index].weight)
    tc.sparsify_(model, method="tight", group=8, height="auto", tile=8, iterations=2000)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert_outputs_match(model(x), masked(x))  # lossless: exactly the pruned model


def test_filter_fn_picks_layers_by_module_and_name():
    model = cnn_bn()
    report = tc.sparsify_(model, filter_fn=lambda m, fqn: isinstance(m, nn.Conv2d), **FAST)
    assert {layer["name"] for layer in report["layers"]} == {"0", "3"}
    assert isinstance(model[8], nn.Linear) and not isinstance(model[8], PackedLinear)


def test_sparsify_bad_input_is_our_error():
    with pytest.raises(tc.TightCompressError, match=r"bad packing options.*grup"):
        tc.sparsify_(cnn_bn(), grup=8)
    with pytest.raises(tc.TightCompressError, match=r"no nn\.Linear or nn\.Conv2d"):
        tc.sparsify_(nn.Sequential(nn.ReLU()))
    with pytest.raises(tc.TightCompressError, match="PackConfig or keyword"):
        tc.sparsify_(cnn_bn(), tc.PackConfig(), group=4)


# ------------------------------------------------------------------------------------------- pack_weight
def test_pack_refuses_a_tensor_and_pack_weight_takes_pytorch_layout():
    torch.manual_seed(6)
    linear = nn.Linear(48, 16)
    with pytest.raises(tc.TightCompressError, match="pack_weight") as info:
        tc.pack(linear.weight)
    assert "K x N" in str(info.value) and "\n" not in str(info.value)
    packed = tc.pack_weight(linear.weight, group=8, tile=8)  # requires grad: fine
    assert (packed.K, packed.N) == (48, 16)
    assert np.array_equal(packed.to_dense(), linear.weight.detach().numpy().T)
    assert "K x N" in tc.pack.__doc__ and "pack_weight" in tc.pack.__doc__


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int8])
def test_pack_weight_any_dtype_stores_the_input_dtype(dtype):
    torch.manual_seed(7)
    weight = (torch.randn(16, 8, 3, 3) * 20).to(dtype)
    packed = tc.pack_weight(weight, group=8, tile=8)
    assert packed.info["dtype"] == str(dtype).removeprefix("torch.")
    assert (packed.K, packed.N) == (72, 16)
    dense = packed.to_dense().astype(np.float32)
    assert np.array_equal(dense, weight_to_matrix(weight.float().numpy()))


def test_pack_weight_grouped_and_depthwise():
    weight = torch.randn(32, 4, 3, 3)
    parts = tc.pack_weight(weight, groups=4, group=8, tile=8)
    assert [(p.K, p.N) for p in parts] == [(36, 8)] * 4
    with pytest.raises(tc.TightCompressError, match="depthwise"):
        tc.pack_weight(torch.randn(16, 1, 3, 3), groups=16)


def test_fp16_npy_matrix_packs_and_keeps_its_dtype():
    W = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float16)
    W[np.abs(W) < 1] = 0
    packed = tc.pack(W, group=8, tile=8)
    assert packed.values.dtype == np.float16 and np.array_equal(packed.to_dense(), W)


# ---------------------------------------------------------------------------------------------- README
def test_readme_your_own_model_example_runs(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(8)
    model = randomize_bn(cnn_bn()).eval()
    namespace = {"model": model, "MyNet": cnn_bn}
    exec(compile(code, "README.md", "exec"), namespace)
    assert _packed_names(model) == CNN_BN_LAYERS
    loaded = namespace["model"]  # the README's last line: a fresh MyNet with the packed layers loaded
    assert loaded is not model and _packed_names(loaded) == CNN_BN_LAYERS
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))
