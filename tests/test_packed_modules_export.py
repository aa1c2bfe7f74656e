"""Packed modules outside eager PyTorch (issue 27): ONNX export with both exporters agrees with onnxruntime,
`torch.jit.script`, `torch.compile` in one graph without recompiles, and `unpack_` back to plain layers."""

from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import tightcompress as tc
from tightcompress.nn import PackedConv2d, PackedLinear
from torch_models import MIXED_PACKED, MixedLayers, masked_dense, randomize_bn

OPTIONS = {"method": "tight", "group": 8, "height": 2, "tile": 8, "sparsity": 0.6, "iterations": 2000}


@pytest.fixture(scope="module")
def packed_pair() -> tuple[nn.Module, nn.Module]:
    """`(original dense MixedLayers, the same packed)`, eval mode."""
    torch.manual_seed(0)
    original = randomize_bn(MixedLayers()).eval()
    model = copy.deepcopy(original)
    tc.sparsify_(model, **OPTIONS)
    return original, model


def _packed_names(model: nn.Module) -> set[str]:
    return {fqn for fqn, m in model.named_modules() if isinstance(m, PackedLinear | PackedConv2d)}


def _onnxruntime(path: str, x: torch.Tensor) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize(
    "dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["torchscript-exporter", "dynamo"]
)
def test_onnx_export_agrees_with_torch(packed_pair, tmp_path, dynamo):
    """Every packed layer kind (strided, dilated, reflect-padded, grouped, bias-free, Linear) exports, and
    onnxruntime's outputs equal torch's to 1e-4; the exporter warns of no duplicated scatter index."""
    if dynamo:
        pytest.importorskip("onnxscript")
    _, model = packed_pair
    assert _packed_names(model) == MIXED_PACKED
    x = torch.randn(3, 3, 17, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    path = str(tmp_path / "packed.onnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(copy.deepcopy(model), (x,), path, dynamo=dynamo)
    assert not [w for w in caught if "duplicated" in str(w.message)]
    actual = _onnxruntime(path, x)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= 1e-4, np.abs(actual - expected).max()


def test_torch_jit_script_runs_saves_and_loads(packed_pair):
    _, model = packed_pair
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(2))
    scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(scripted(x), expected)
        assert torch.equal(loaded(x), expected)


def test_torch_compile_one_graph_and_no_recompile(packed_pair):
    """The whole packed model is one graph (fullgraph), further calls and a `load_state_dict` (which rebuilds
    the slot index) recompile nothing, and the result is the eager one. (The 'eager' backend: the graph
    breaks and recompiles are dynamo's; inductor's code generation would only add minutes.)"""
    dynamo = pytest.importorskip("torch._dynamo")
    from torch._dynamo.utils import counters

    _, model = packed_pair
    model = copy.deepcopy(model)
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x)
    dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with dynamo.config.patch(error_on_recompile=True), torch.no_grad():
        for _ in range(3):
            assert torch.equal(compiled(x), expected)
        model.load_state_dict(copy.deepcopy(model.state_dict()))
        assert torch.equal(compiled(x), expected)
    assert counters["stats"]["unique_graphs"] == 1
    dynamo.reset()


def test_load_state_dict_rebuilds_the_slot_index():
    """A state with other kept weights (a slot emptied, another value changed) gives exactly the weights the
    NumPy format rebuilds from it: the index follows the loaded state, not the one it was built with."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(24, 16))
    tc.sparsify_(model, **OPTIONS)
    state = copy.deepcopy(model.state_dict())
    values = state["0.blocks.0.values"]
    used = torch.nonzero(values).tolist()
    values[tuple(used[0])] = 0.0
    values[tuple(used[1])] = 7.0
    model.load_state_dict(state)
    expected = model[0].packed.to_dense().T
    assert np.array_equal(model[0].weight.detach().numpy(), expected)
    assert model[0].weight[tuple(reversed(_source(model[0], used[1])))] == 7.0


def _source(module: PackedLinear, slot: list[int]) -> tuple[int, int]:
    rows, cols = module.packed.slot_sources()
    return int(rows[slot[0], slot[1]]), int(cols[slot[0], slot[1]])


# ---------------------------------------------------------------------------------------------- unpack_
def test_unpack_gives_plain_layers_with_the_kept_weights(packed_pair):
    original, packed = packed_pair
    model = copy.deepcopy(packed)
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = packed(x)
    assert tc.unpack_(model) is model
    assert not _packed_names(model)
    for name in MIXED_PACKED:
        layer, reference = model.get_submodule(name), original.get_submodule(name)
        assert type(layer) is type(reference)
        assert repr(layer) == repr(reference)  # same geometry (stride, dilation, padding mode, groups, bias)
        assert layer.weight.requires_grad and not layer.training
    with torch.no_grad():
        assert torch.equal(model(x), expected)
        assert torch.equal(model(x), masked_dense(original, packed)(x))
    fresh = MixedLayers().eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)


def test_unpack_keeps_dtype_and_refuses_what_it_cannot_do():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8, 3)).to(torch.float16)
    tc.sparsify_(model, **OPTIONS)
    tc.unpack_(model)
    assert model[0].weight.dtype == torch.float16 and type(model[0]) is nn.Conv2d
    with pytest.raises(tc.TightCompressError, match="no packed module"):
        tc.unpack_(model)
    with pytest.raises(tc.TightCompressError, match=r"nn\.Module"):
        tc.unpack_("model")
