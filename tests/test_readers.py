"""Checkpoints as people save them, ONNX, and the grouped/depthwise rule in `pack`, `simulate`, `unpack`,
`export` and `compress`'s model loading (issue 11, items 3-6; issue 12 section 5 for fp16/bf16)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as prune
from safetensors.torch import save_file
from torch import nn

import tightcompress as tc
from tightcompress.cli.main import main
from tightcompress.format.io import load_packed
from tightcompress.pipeline.models import DemoCNN, gemm_layers, join_gemms, load_model, split_gemms
from tightcompress.readers import model_weights, read_model
from tightcompress.readers.checkpoint import read_state_dict
from tightcompress.readers.matrices import weight_to_matrix
from torch_models import (
    CNN_BN_LAYERS,
    GroupedNet,
    ResNet18,
    assert_outputs_match,
    cnn_bn,
    grouped_depthwise,
    randomize_bn,
)

CNN_WEIGHTS = {f"{name}.weight" for name in CNN_BN_LAYERS}
PACK = ["--group", "8", "--height", "auto", "--tile", "8", "--iterations", "2000", "--jobs", "1", "--quiet"]


def _run(*argv) -> int:
    return main([str(a) for a in argv])


def _pruned_model() -> tuple[nn.Module, nn.Module]:
    """`(model with torch.nn.utils.prune on two layers, the same model with the masks folded in)`."""
    torch.manual_seed(0)
    model = randomize_bn(cnn_bn()).eval()
    masked = copy.deepcopy(model)
    prune.l1_unstructured(model[0], "weight", amount=0.6)
    prune.l1_unstructured(model[8], "weight", amount=0.4)
    with torch.no_grad():
        for index in (0, 8):
            masked[index].weight.copy_(model[index].weight)
    return model, masked


def _save(state: dict, path, variant: str) -> None:
    if variant == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


VARIANTS = {
    # name: (file suffix, dtype, nest under "model", DDP prefix)
    "prune-plain": (".pt", None, False, False),
    "fp16-nested-ddp": (".pt", torch.float16, True, True),
    "bf16-nested-ddp": (".pt", torch.bfloat16, True, True),
    "fp16-safetensors": (".safetensors", torch.float16, False, True),
    "bf16-safetensors": (".safetensors", torch.bfloat16, False, False),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pack_reads_checkpoints_as_saved_and_unpack_gives_a_loadable_state_dict(tmp_path, variant):
    suffix, dtype, nested, ddp = VARIANTS[variant]
    model, masked = _pruned_model()
    state = model.state_dict()
    assert "0.weight_orig" in state and "0.weight_mask" in state and "0.weight" not in state
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        masked = masked.to(dtype)
    if ddp:
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / f"ckpt{suffix}"
    _save({"model": state, "epoch": 3} if nested else state, path, "safetensors" if suffix != ".pt" else "pt")
    report_path, packed_path = tmp_path / "r.json", tmp_path / "p.safetensors"
    assert _run("pack", path, *PACK, "--json", report_path, "--out", packed_path) == 0
    layers = json.loads(report_path.read_text())["layers"]
    assert {layer["name"] for layer in layers} == CNN_WEIGHTS  # every conv and linear, pruned ones too
    nnz = {layer["name"]: layer["nnz"] for layer in layers}
    assert nnz["0.weight"] == int((masked[0].weight != 0).sum())
    expected_dtype = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    assert {p.info["dtype"] for p in load_packed(packed_path).values()} == {expected_dtype}
    for out in ("back.pt", "back.safetensors"):
        assert _run("unpack", packed_path, tmp_path / out) == 0
        back = read_state_dict(tmp_path / out)
        assert back["0.weight"].shape == (16, 3, 3, 3) and back["0.bias"].shape == (16,)
        assert back["0.weight"].dtype == masked[0].weight.dtype
        fresh = cnn_bn().to(masked[0].weight.dtype).eval()
        fresh.load_state_dict(back, strict=True)  # loads into the original model
        x = torch.randn(2, 3, 8, 8, dtype=masked[0].weight.dtype)
        with torch.no_grad():
            assert torch.equal(fresh(x), masked(x))  # lossless (height auto): the masked dense model
    # sparsify_ on the model loaded from the same checkpoint keeps the masked dense model's outputs
    loaded = cnn_bn().to(masked[0].weight.dtype).eval()
    loaded.load_state_dict(read_state_dict(path))
    report = tc.sparsify_(loaded, method="tight", group=8, height="auto", tile=8, iterations=2000)
    assert {layer["name"] for layer in report["layers"]} == CNN_BN_LAYERS
    x = torch.randn(2, 3, 8, 8, dtype=masked[0].weight.dtype)
    with torch.no_grad():
        assert_outputs_match(loaded(x), masked(x), rel=1e-5 if dtype is None else 1e-2)


def test_int8_weights_are_searched_in_float_and_stored_as_int8(tmp_path):
    torch.manual_seed(1)
    state = {
        "conv.weight": torch.randint(-20, 20, (16, 4, 3, 3), dtype=torch.int8),
        "fc.weight": torch.randint(-5, 5, (10, 16), dtype=torch.int8),
    }
    torch.save(state, tmp_path / "q.pt")
    assert (
        _run(
            "pack",
            tmp_path / "q.pt",
            *PACK,
            "--json",
            tmp_path / "r.json",
            "--out",
            tmp_path / "p.safetensors",
        )
        == 0
    )
    packed = load_packed(tmp_path / "p.safetensors")
    assert packed["conv.weight"].values.dtype == np.int8
    assert np.array_equal(packed["conv.weight"].to_dense(), weight_to_matrix(state["conv.weight"].numpy()))
    assert _run("unpack", tmp_path / "p.safetensors", tmp_path / "back.pt") == 0
    assert torch.equal(torch.load(tmp_path / "back.pt")["conv.weight"], state["conv.weight"])


def test_several_state_dicts_need_key(tmp_path, capsys):
    state = cnn_bn().state_dict()
    torch.save(
        {"model": state, "ema": {"model": state}, "optimizer": {"state": {}, "param_groups": []}},
        tmp_path / "c.pt",
    )
    report = tmp_path / "r.json"
    assert _run("pack", tmp_path / "c.pt", *PACK, "--json", report) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model, ema/model" in err and "--key" in err
    assert not report.exists()
    assert _run("pack", tmp_path / "c.pt", "--key", "ema/model", *PACK, "--json", report) == 0
    assert _run("pack", tmp_path / "c.pt", "--key", "nope", *PACK, "--json", report) == 2
    assert "state_dicts found: model, ema/model" in capsys.readouterr().err


def test_depthwise_in_a_state_dict_is_left_dense_and_listed(tmp_path):
    torch.manual_seed(2)
    model = grouped_depthwise()
    torch.save(model.state_dict(), tmp_path / "g.pt")
    found = read_model(tmp_path / "g.pt")
    assert [s["name"] for s in found.skipped] == ["2.weight"]
    assert "depthwise" in found.skipped[0]["reason"] and "groups" in found.notes["groups_from"]
    report = tmp_path / "r.json"
    assert _run("pack", tmp_path / "g.pt", *PACK, "--json", report) == 0
    notes = json.loads(report.read_text())["notes"]
    assert [s["name"] for s in notes["skipped_layers"]] == ["2.weight"]


def test_pack_with_the_model_class_packs_grouped_convs_per_group(tmp_path):
    torch.manual_seed(4)
    model = randomize_bn(GroupedNet()).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "g.pt")
    spec = f"{Path(__file__).with_name('torch_models.py')}:GroupedNet"
    report, packed = tmp_path / "r.json", tmp_path / "p.safetensors"
    assert _run("pack", tmp_path / "g.pt", "--model", spec, *PACK, "--json", report, "--out", packed) == 0
    result = json.loads(report.read_text())
    expected = {"0.weight", "3.weight", "6.weight"} | {f"1.weight[{g}]" for g in range(4)}
    assert {layer["name"] for layer in result["layers"]} == expected
    assert [s["name"] for s in result["notes"]["skipped_layers"]] == ["2.weight"]
    assert "GroupedNet" in result["notes"]["groups_from"]
    assert {(layer["K"], layer["N"]) for layer in result["layers"] if layer["name"].startswith("1.")} == {
        (36, 8)
    }
    assert _run("unpack", packed, tmp_path / "back.pt") == 0
    fresh = GroupedNet().eval()
    fresh.load_state_dict(torch.load(tmp_path / "back.pt"), strict=True)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))  # lossless, depthwise passed through dense
    sim = tmp_path / "s.json"
    assert _run("simulate", tmp_path / "g.pt", "--model", spec, "--no-vs-cc", "--quiet", "--json", sim) == 0
    assert "1.weight[3]" in {layer["name"] for layer in json.loads(sim.read_text())["layers"]}
    # without the class the groups are unknown: the report says so
    assert _run("pack", tmp_path / "g.pt", *PACK, "--json", report) == 0
    assert "--model" in json.loads(report.read_text())["notes"]["groups_from"]


def test_compress_loads_checkpoints_as_saved(tmp_path):
    torch.manual_seed(3)
    model = DemoCNN()
    prune.l1_unstructured(model.features[0], "weight", amount=0.5)
    state = {f"module.{k}": v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "c.pt")
    loaded = load_model("tightcompress.pipeline.models:DemoCNN", tmp_path / "c.pt")
    expected = model.features[0].weight.half().float()
    assert torch.equal(loaded.features[0].weight, expected)
    torch.save(
        {"a": DemoCNN().state_dict(), "b": DemoCNN(widths=(8, 8, 8, 8)).state_dict()}, tmp_path / "two.pt"
    )
    with pytest.raises(tc.TightCompressError, match="choose one with --key"):
        load_model("tightcompress.pipeline.models:DemoCNN", tmp_path / "two.pt")
    with pytest.raises(tc.TightCompressError, match="size mismatch") as info:
        load_model("tightcompress.pipeline.models:DemoCNN", tmp_path / "two.pt", key="b")
    assert "\n" not in str(info.value)


def test_compress_leaves_depthwise_dense_and_splits_grouped_convs_as_the_readers_do():
    layers = gemm_layers(nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 4, 1)))
    assert set(layers) == {"0", "2"}
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 8, 3, groups=8), nn.Linear(3, 5))
    layers = gemm_layers(model)
    assert set(layers) == {"0", "2"}
    weights = {name: m.weight.detach().numpy() for name, m in layers.items()}
    split = split_gemms(layers, weights)
    # `pack --model` names the same GEMMs `fqn.weight[g]` and cuts the same matrices
    found = {name.replace(".weight", ""): m.matrix for name, m in model_weights(model).matrices.items()}
    assert list(split) == ["0[0]", "0[1]", "2"] == list(found)
    assert all(np.array_equal(split[name], found[name]) for name in split)
    assert np.array_equal(split["0[1]"], weight_to_matrix(weights["0"][4:]))
    joined = join_gemms(layers, split)
    assert all(np.array_equal(joined[name], weights[name]) for name in layers)


# ------------------------------------------------------------------------------------------------- ONNX
def _onnx_model(path) -> dict[str, np.ndarray]:
    """A graph with a Conv, a grouped Conv (group=2), a depthwise Conv, Gemm with and without transB and a
    MatMul; returns the expected `K x N` matrix of each packed layer."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def sparse(*shape):
        w = rng.standard_normal(shape).astype(np.float32)
        w[np.abs(w) < 0.8] = 0
        return w

    w = {
        "conv": sparse(8, 3, 3, 3),
        "gconv": sparse(16, 4, 3, 3),
        "dw": sparse(16, 1, 3, 3),
        "gemm_t": sparse(12, 16 * 4 * 4),  # transB=1: (N, K)
        "gemm_n": sparse(12, 10),  # transB=0: (K, N)
        "mm": sparse(10, 6),  # (K, N)
    }
    inits = [numpy_helper.from_array(v, name=f"{k}_w") for k, v in w.items()]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["a"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "gconv_w"], ["b"], name="gconv", group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "dw_w"], ["c"], name="dw", group=16, pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["d"], name="flat"),
        helper.make_node("Gemm", ["d", "gemm_t_w"], ["e"], name="gemm_t", transB=1),
        helper.make_node("Gemm", ["e", "gemm_n_w"], ["f"], name="gemm_n"),
        helper.make_node("MatMul", ["f", "mm_w"], ["y"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes,
        "user_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        inits,
    )
    model = helper.make_model(graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    g = w["gconv"]
    return {
        "conv": weight_to_matrix(w["conv"]),
        "gconv[0]": weight_to_matrix(g[:8]),
        "gconv[1]": weight_to_matrix(g[8:]),
        "gemm_t": w["gemm_t"].T,
        "gemm_n": w["gemm_n"],
        "mm": w["mm"],
    }


def test_onnx_model_packs_by_node_name_with_groups_and_transb(tmp_path):
    expected = _onnx_model(tmp_path / "m.onnx")
    report, packed = tmp_path / "r.json", tmp_path / "p.safetensors"
    assert _run("pack", tmp_path / "m.onnx", *PACK, "--json", report, "--out", packed) == 0
    result = json.loads(report.read_text())
    assert {layer["name"]: (layer["K"], layer["N"]) for layer in result["layers"]} == {
        name: m.shape for name, m in expected.items()
    }
    assert [s["name"] for s in result["notes"]["skipped_layers"]] == ["dw"]
    assert _run("unpack", packed, tmp_path / "all.npz") == 0
    back = np.load(tmp_path / "all.npz")
    for name, matrix in expected.items():
        assert np.array_equal(back[name], matrix), name
    sim = tmp_path / "s.json"
    assert (
        _run("simulate", tmp_path / "m.onnx", "--array", "8x8", "--no-vs-cc", "--json", sim, "--quiet") == 0
    )
    assert {layer["name"] for layer in json.loads(sim.read_text())["layers"]} == set(expected)
    assert _run("export", packed, "--rtl", tmp_path / "rtl", "--vectors", "2") == 0
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    assert {entry["name"] for entry in manifest["layers"]} == set(expected)


def test_onnx_fp16_initializers_keep_their_dtype(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float16)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="head")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 16])],
        [numpy_helper.from_array(w, name="w")],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "h.onnx"))
    assert (
        _run(
            "pack",
            tmp_path / "h.onnx",
            *PACK,
            "--json",
            tmp_path / "r.json",
            "--out",
            tmp_path / "p.safetensors",
        )
        == 0
    )
    packed = load_packed(tmp_path / "p.safetensors")["head"]
    assert packed.values.dtype == np.float16 and np.array_equal(packed.to_dense(), w)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sweep_takes_fp16_and_bf16_checkpoints(tmp_path, dtype):
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in cnn_bn().state_dict().items()}
    torch.save(state, tmp_path / "c.pt")
    csv = tmp_path / "s.csv"
    argv = ["sweep", tmp_path / "c.pt", "--groups", "4,8", "--tile", "8", "--iterations", "500"]
    assert _run(*argv, "--per-layer", "--jobs", "1", "--quiet", "--csv", csv) == 0
    layers = {line.split(",")[5] for line in csv.read_text().splitlines()[1:]}
    assert layers == CNN_WEIGHTS | {"TOTAL"}


@pytest.mark.parametrize("method", ["tight", "nm", "column-combining", "dense"])
def test_fp16_matrix_through_pack_and_simulate(tmp_path, method):
    W = np.random.default_rng(3).standard_normal((64, 24)).astype(np.float16)
    W[np.abs(W) < 1.0] = 0
    np.save(tmp_path / "h.npy", W)
    extra = ["--height", "2"] if method == "nm" else []
    argv = ["--method", method, "--group", "8", "--tile", "8", "--iterations", "500", *extra, "--quiet"]
    assert _run("pack", tmp_path / "h.npy", *argv, "--jobs", "1", "--json", tmp_path / "r.json",
                "--out", tmp_path / "p.safetensors") == 0  # fmt: skip
    packed = load_packed(tmp_path / "p.safetensors")["h"]
    assert packed.values.dtype == np.float16
    sim = tmp_path / "s.json"
    assert _run("simulate", tmp_path / "h.npy", *argv, "--check-bitexact", "--json", sim) == 0
    assert json.loads(sim.read_text())["total"]["bitexact"] is True


def test_safetensors_with_prefixed_copies_needs_key_and_no_false_alarm(tmp_path, capsys):
    state = cnn_bn().state_dict()
    two = {**{f"model.{k}": v for k, v in state.items()}, **{f"ema.{k}": v.clone() for k, v in state.items()}}
    save_file(two, str(tmp_path / "two.safetensors"))
    report = tmp_path / "r.json"
    assert _run("pack", tmp_path / "two.safetensors", *PACK, "--json", report) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(ema, model)" in err and "--key" in err
    assert _run("pack", tmp_path / "two.safetensors", "--key", "ema", *PACK, "--json", report) == 0
    assert {layer["name"] for layer in json.loads(report.read_text())["layers"]} == CNN_WEIGHTS
    # repeated identical layers and a ResNet's same-named stages are not copies
    twins = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16))

    class Attention(nn.Module):  # top-level layers of one shape each: q.weight, k.weight, v.weight
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v = (nn.Linear(16, 16, bias=False) for _ in range(3))

    models = {"twins": twins, "qkv": Attention(), "resnet": ResNet18(num_classes=10)}
    for name, model in models.items():
        save_file(dict(model.state_dict()), str(tmp_path / f"{name}.safetensors"))
        assert len(read_model(tmp_path / f"{name}.safetensors").matrices) == len(
            [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        )


def test_a_pickled_model_is_refused_with_a_hint(tmp_path, capsys):
    torch.save(cnn_bn(), tmp_path / "whole.pt")
    assert _run("pack", tmp_path / "whole.pt", *PACK, "--json", tmp_path / "r.json") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "state_dict()" in err


def test_model_class_keeps_the_checkpoint_dtype_through_pack_and_unpack(tmp_path, capsys, monkeypatch):
    """`--model` loads the checkpoint into the class (for conv groups); an fp16 checkpoint still comes back
    fp16 and exact from `unpack`, grouped conv put back together."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gnet16.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(4, 16, 3)\n"
        "        self.grouped = nn.Conv2d(16, 32, 3, groups=2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from gnet16 import Net

    torch.manual_seed(0)
    model = Net()
    for module in (model.conv, model.grouped):
        prune.l1_unstructured(module, "weight", amount=0.8)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "ck.pt")
    pack = ["pack", "ck.pt", "--model", "gnet16:Net", "--group", "8", "--json", "r.json"]
    assert _run(*pack, "--out", "p.safetensors") == 0
    assert _run("unpack", "p.safetensors", "back.pt") == 0
    back = torch.load(tmp_path / "back.pt")
    assert back["grouped.weight"].dtype == torch.float16
    expected = (model.grouped.weight_orig * model.grouped.weight_mask).half()
    assert torch.equal(back["grouped.weight"], expected)
    Net().load_state_dict(back)  # loads into a fresh model
