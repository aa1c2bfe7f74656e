"""An outside user's audit: absurd numeric flags, odd checkpoints and files, checked for right numbers."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import tightcompress as tc
from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError


def run(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and stderr of one command, whether argparse or the command refused it."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, word: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    assert word in lines[0], lines[0]


@pytest.fixture
def matrix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    W = np.random.default_rng(0).standard_normal((24, 16)).astype(np.float32)
    W[np.abs(W) < 1.0] = 0
    np.save("w.npy", W)
    return tmp_path


# ------------------------------------------------------------------- 1. absurd numeric flags, at the door
HUGE = "99999999999999999999"  # beyond int64
ABSURD_FLAGS = [
    ("simulate w.npy --vectors", HUGE),
    ("simulate w.npy --vectors", str(2**40 + 1)),
    ("simulate w.npy --batch", HUGE),
    ("simulate w.npy --array", "100000x32"),
    ("export p.safetensors --out-dir rtl --seed", HUGE),
    ("pack w.npy --json r.json --jobs", HUGE),
    ("pack w.npy --json r.json --iterations", str(10**12)),
    ("sweep w.npy --csv s.csv --iterations", str(10**10 + 1)),
    ("demo --rate", "inf"),
    ("demo --rate", "nan"),
    ("demo --lr", "nan"),
    ("demo --lr", "-1"),
    ("demo --seed", "-1"),
    ("demo --seed", HUGE),
    ("demo --prune-epochs", "nan"),
    ("demo --prune-epochs", "inf"),
    ("demo --finetune-epochs", "inf"),
    ("demo --dense-epochs", "-1"),
    ("demo --dense-epochs", "nan"),
    ("demo --prune-rounds", HUGE),
    ("demo --subword-bit-rate", "0.5"),
    ("demo --subword-bit-rate", "nan"),
    ("compress --out-dir o --workers", "-1"),
    ("compress --out-dir o --batch-size", "0"),
    ("compress --out-dir o --prune-steps", "-3"),
    ("compress --out-dir o --max-drop", "nan"),
    ("compress --out-dir o --bit-rate", "inf"),
    ("compress --out-dir o --group", HUGE),
    ("frontier --rates", "inf"),
    ("frontier --seeds", HUGE),
    ("frontier --jobs", "0"),
    ("frontier --lr", "inf"),
]


@pytest.mark.parametrize(("command", "value"), ABSURD_FLAGS, ids=lambda v: v)
def test_absurd_numeric_flags_are_one_line_usage_errors(matrix, capsys, command, value):
    flag = command.split()[-1]
    code, err = run(capsys, *command.split(), value)
    assert_one_line(code, err, flag.lstrip("-") if flag != "--array" else "array")
    assert sorted(p.name for p in matrix.iterdir()) == ["w.npy"]


def test_shared_validators_name_the_range():
    from tightcompress.cli.common import SEED, float_in, int_in

    assert int_in(1, 10)("10") == 10 and float_in(0, 1)("1") == 1.0 and SEED(str(2**32 - 1)) == 2**32 - 1
    assert float_in(1, zero=True)("0") == 0.0
    for parse, text, message in [
        (int_in(1, 2**40), "0", "[1, 2**40]"),
        (SEED, str(2**32), "[0, 2**32 - 1]"),
        (float_in(0, 10, low_open=True), "0", "(0, 10]"),
        (float_in(1), "inf", "[1, inf)"),
        (float_in(1, zero=True), "0.5", "or 0"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            parse(text)


def test_vectors_limit_is_the_cycle_models():
    from tightcompress.cli.common import MAX_VECTORS
    from tightcompress.hw.cycles import MAX_VECTORS as HW_MAX_VECTORS

    assert MAX_VECTORS == HW_MAX_VECTORS


def test_python_api_refuses_absurd_m_and_array():
    from tightcompress.hw import packed_cycles, parse_array

    packed = tc.pack(np.eye(8, dtype=np.float32), method="dense", tile=8)
    assert packed_cycles(packed, (8, 8), m=2**40).cycles > 2**40
    for m in (0, 2**40 + 1, 10**20, 2.5, True):
        with pytest.raises(TightCompressError, match="input vectors"):
            packed_cycles(packed, (8, 8), m=m)
    with pytest.raises(TightCompressError, match="65536"):
        parse_array("100000x8")


@pytest.mark.parametrize(
    "options",
    [{"lr": math.nan}, {"lr": 0.0}, {"prune_epochs": math.inf}, {"finetune_epochs": math.nan}, {"seed": -1}],
    ids=str,
)
def test_pipeline_configs_refuse_non_finite_budgets(options):
    from tightcompress.pipeline.config import CompressConfig, DemoConfig

    with pytest.raises(TightCompressError, match=next(iter(options))):
        CompressConfig(**options)
    with pytest.raises(TightCompressError, match="dense_epochs"):
        DemoConfig(dense_epochs=math.inf)
    with pytest.raises(TightCompressError, match="rate"):
        DemoConfig(rate=math.nan)


# ------------------------------------------------------------ 2. demo --json and --out-dir: all or none
def _fake_demo(good: bool) -> dict:
    from types import SimpleNamespace

    import torch

    from tightcompress.pipeline.demo import row

    packed = tc.pack(np.eye(8, dtype=np.float32), method="dense", tile=8, name="l")
    report = json.loads((Path(__file__).parent / "data" / "outputs_v0" / "compress-word.json").read_text())
    results = {  # a compress report of the right shape (the writer types it)
        method: SimpleNamespace(model=torch.nn.Linear(8, 8), packed={"l": packed}, report=report)
        for method in ("tight", "nm")
    }
    if not good:
        results["nm"].packed = {"l": "not a packed matrix"}  # fails while writing the second method
    dense = row("dense", 1.0, 90.0, 90.0, bit_rate=1.0, speedup=1.0, energy_gain=1.0)
    return {
        "rows": [dense],
        "tight_vs_column_combining": None,
        "unstructured": {"accuracy": 90.0, "sparsity": 0.9},
        "reports": {m: r.report for m, r in results.items()},
        "results": results,
        "seconds": 1.0,
    }


@pytest.mark.parametrize("good", [True, False])
def test_demo_writes_json_and_out_dir_all_or_none(tmp_path, monkeypatch, capsys, good):
    import tightcompress.pipeline.demo as demo_module

    monkeypatch.setattr(demo_module, "run_demo", lambda *a, **k: _fake_demo(good))
    monkeypatch.setenv("TIGHTCOMPRESS_DEBUG", "")
    argv = ["demo", "--json", str(tmp_path / "d.json"), "--out-dir", str(tmp_path / "out"), "--quiet"]
    code, err = run(capsys, *argv)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    if good:
        assert code == 0, err
        expected = [
            f"out/{m}/{f}" for m in ("nm", "tight") for f in ("model.pt", "packed.safetensors", "report.json")
        ]
        assert files == sorted(["d.json", *expected])
        assert set(json.loads((tmp_path / "d.json").read_text())) == {
            "rows", "tight_vs_column_combining", "unstructured", "seconds"
        }  # fmt: skip
        assert tc.load_packed(tmp_path / "out" / "tight" / "packed.safetensors")["l"].K == 8
    else:
        assert code == 1 and files == [], (code, files, err)


# ---------------------------------------------- 3. one layer name: `conv1` and `conv1.weight` both select it
def test_a_layer_is_selected_by_its_module_path_or_its_weight_key(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 8)
    )
    torch.save(model.state_dict(), "m.pt")
    argv = ["pack", "m.pt", "--sparsity", "0.7", "--iterations", "300", "--json", "r.json", "--out", "p.st"]
    assert main([*argv, "--quiet"]) == 0
    assert (
        main(["unpack", "p.st", "a.npy", "--layer", "0"]) == 0
    )  # the module path, as report/topology name it
    assert main(["unpack", "p.st", "b.npy", "--layer", "0.weight"]) == 0
    assert np.array_equal(np.load("a.npy"), np.load("b.npy")) and np.load("a.npy").shape == (27, 16)
    assert main(["export", "p.st", "--out-dir", "rtl", "--layer", "3", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    assert [layer["name"] for layer in manifest["layers"]] == ["3.weight"]
    capsys.readouterr()
    code, err = run(capsys, "export", "p.st", "--out-dir", "rtl2", "--layer", "conv9")
    assert_one_line(code, err, "no layer 'conv9'")


def test_numba_is_not_loaded_by_the_hardware_package():
    import subprocess
    import sys

    code = "import sys, tightcompress.hw as hw; hw.parse_array('8x8'); print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout


# ----------------------------------------- 4. pack --model keeps every tensor's saved dtype (int8, mixed too)
NET_PY = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 16, 3, groups=2)
        self.fc = nn.Linear(16, 8)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
"""


@pytest.mark.parametrize("case", ["int8", "mixed"])
def test_pack_with_model_class_gives_back_every_saved_dtype(tmp_path, monkeypatch, case):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(NET_PY)
    torch.manual_seed(0)
    state = {
        "conv.weight": torch.randn(16, 2, 3, 3),
        "conv.bias": torch.randn(16),
        "fc.weight": torch.randn(8, 16),
        "fc.bias": torch.randn(8),
    }
    if case == "int8":
        state = {k: (v * 40).round().clamp(-127, 127).to(torch.int8) for k, v in state.items()}
    else:  # fp16 conv, fp32 linear: no single dtype to cast the model to
        state = {k: v.half() if k.startswith("conv") else v for k, v in state.items()}
    torch.save(state, "c.pt")
    argv = ["pack", "c.pt", "--model", "net.py:Net", "--sparsity", "0.5", "--iterations", "300"]
    assert main([*argv, "--json", "r.json", "--out", "p.st", "--quiet"]) == 0
    assert main(["unpack", "p.st", "back.pt"]) == 0
    back = torch.load("back.pt")
    assert {k: v.dtype for k, v in back.items()} == {k: v.dtype for k, v in state.items()}
    for name, tensor in state.items():
        kept = back[name] != 0
        assert torch.equal(back[name][kept], tensor[kept]), name  # every survivor exact
        if name.endswith("bias"):
            assert torch.equal(back[name], tensor), name
        else:
            assert kept.float().mean().item() == pytest.approx(0.5, abs=0.01), name


# ----------------------------------------------------- 5. an ONNX file as torch.onnx.export writes it packs
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose
def test_torch_exported_onnx_packs_like_its_checkpoint(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(NET_PY)
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("net", None)  # another test's `net` module must not stand in for this one
    from net import Net  # type: ignore[import-not-found]

    sys.modules.pop("net", None)
    torch.manual_seed(0)
    model = Net().eval()
    torch.save(model.state_dict(), "c.pt")
    torch.onnx.export(model, (torch.randn(1, 4, 6, 6),), "net.onnx", dynamo=False)  # nodes named /conv/Conv
    options = ["--sparsity", "0.6", "--iterations", "300", "--quiet"]
    assert main(["pack", "net.onnx", *options, "--json", "o.json", "--out", "o.st"]) == 0
    assert main(["pack", "c.pt", "--model", "net.py:Net", *options, "--json", "c.json", "--out", "c.st"]) == 0
    from_onnx, from_checkpoint = tc.load_packed("o.st"), tc.load_packed("c.st")
    assert list(from_onnx) == list(from_checkpoint) == ["conv.weight[0]", "conv.weight[1]", "fc.weight"]
    for name in from_onnx:
        assert np.array_equal(from_onnx[name].to_dense(), from_checkpoint[name].to_dense()), name


# ---------------------------------------- 6. simulate and frontier: their two outputs are written all or none
def test_simulate_topology_and_json_are_written_all_or_none(matrix, monkeypatch, capsys):
    import tightcompress.cli.simulate as simulate_cmd

    def fail(*_args, **_kwargs):
        raise OSError(28, "No space left on device", "s.json")

    monkeypatch.setattr(simulate_cmd, "write_json_atomic", fail)
    argv = ["simulate", "w.npy", "--iterations", "200", "--no-vs-cc", "--vectors", "4"]
    code, err = run(capsys, *argv, "--emit-topology", "t.csv", "--json", "s.json", "--quiet")
    assert code == 1 and "No space left" in err
    assert sorted(p.name for p in matrix.iterdir()) == ["w.npy"]  # no topology without its report


def test_frontier_json_and_plot_are_written_all_or_none(tmp_path, monkeypatch, capsys):
    import tightcompress.cli.frontier as frontier_cmd
    import tightcompress.pipeline.frontier as frontier_module
    import tightcompress.viz.frontier_plot as plot_module

    payload = {"dense": {"accuracy_mean": 90.0}, "points": [], "seconds": 0.0}  # the smallest valid one
    monkeypatch.setattr(frontier_module, "run_frontier", lambda *a, **k: payload)
    monkeypatch.setattr(frontier_cmd, "format_summary", lambda result: "summary")

    def fail(result, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(plot_module, "write_frontier_png", fail)
    argv = ["frontier", "--workdir", str(tmp_path / "w"), "--json", str(tmp_path / "f.json")]
    code, err = run(capsys, *argv, "--plot", str(tmp_path / "f.png"), "--quiet")
    assert code == 1 and "No space left" in err
    assert not (tmp_path / "f.json").exists() and not (tmp_path / "f.png").exists()


# --------------------------------------------------------------- 7. a folder where a file belongs says so
@pytest.mark.parametrize(
    "command",
    [
        "pack adir --json o.json",
        "simulate adir",
        "unpack adir o.npy",
        "export adir --out-dir r",
        "simulate w.npy --topology adir",
        "simulate w.npy --energy-table adir",
    ],
)
def test_a_folder_given_as_an_input_file_is_named_as_a_folder(matrix, capsys, command):
    (matrix / "adir").mkdir()
    code, err = run(capsys, *command.split())
    assert_one_line(code, err, "adir is a folder, expected a file")


# ------------------------------------------------ 8. an int8 matrix is exported with its own integer weights
def test_int8_weights_are_exported_as_they_are(matrix, capsys):
    from tightcompress.export.rtl import load_rtl

    rng = np.random.default_rng(3)
    W = rng.integers(-100, 101, size=(40, 24)).astype(np.int8)
    W[rng.random(W.shape) < 0.8] = 0
    np.save("i8.npy", W)
    assert main(["pack", "i8.npy", "--iterations", "300", "--json", "r.json", "--out", "p.safetensors"]) == 0
    assert main(["export", "p.safetensors", "--out-dir", "rtl", "--vectors", "3", "--quiet"]) == 0
    layer = load_rtl("rtl")["i8"]
    assert np.array_equal(layer.scales, np.ones(24))
    assert np.array_equal(layer.packed.to_dense(), W)  # the hex words hold the checkpoint's int8 values
    assert np.array_equal(layer.y, layer.x.astype(np.int64) @ W.astype(np.int64))
    # float weights are still scaled so each column's largest |w| maps to 127
    from tightcompress.quant import column_scales, quantize_columns

    F = W.astype(np.float32) / 10
    assert np.allclose(column_scales(F), np.abs(F).max(axis=0) / 127)
    q, scales = quantize_columns(W)
    assert np.array_equal(q, W) and np.array_equal(scales, np.ones(24))


# ----------------------------- 9. unpack writes no state_dict it cannot rebuild (layers named by module path)
def test_unpack_refuses_a_state_dict_it_cannot_rebuild(matrix, capsys):
    W = np.load("w.npy")
    packed = tc.pack(W, method="dense", tile=8, name="features.0")
    tc.save_packed("modules.safetensors", {"features.0": packed})
    code, err = run(capsys, "unpack", "modules.safetensors", "back.pt")
    assert_one_line(code, err, "does not record its PyTorch weight")
    assert not (matrix / "back.pt").exists()
    assert main(["unpack", "modules.safetensors", "back.npz"]) == 0  # the matrices are still there
    assert np.array_equal(np.load("back.npz")["features.0"], W)
    # a layer named like a state_dict key is a Linear weight (N x K), as before
    tc.save_packed("keys.safetensors", {"fc.weight": tc.pack(W, method="dense", tile=8, name="fc.weight")})
    assert main(["unpack", "keys.safetensors", "keys.pt"]) == 0
    torch = pytest.importorskip("torch")
    assert torch.equal(torch.load("keys.pt")["fc.weight"], torch.from_numpy(W.T.copy()))


# --------------------------------- 10. a layer skipped by --skip-bad-layers comes back from unpack as it was
@pytest.mark.parametrize("bad", ["fc.weight", "conv.weight"])  # conv: one group of the grouped conv
def test_skipped_bad_layers_are_kept_in_the_unpacked_state_dict(tmp_path, monkeypatch, bad):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text(NET_PY)
    torch.manual_seed(0)
    state = {
        "conv.weight": torch.randn(16, 2, 3, 3),
        "conv.bias": torch.randn(16),
        "fc.weight": torch.randn(8, 16),
        "fc.bias": torch.randn(8),
    }
    state[bad].view(-1)[0] = float("nan")  # conv: only its first group has the NaN
    torch.save(state, "c.pt")
    argv = ["pack", "c.pt", "--model", "net.py:Net", "--sparsity", "0.5", "--iterations", "300"]
    assert main([*argv, "--skip-bad-layers", "--json", "r.json", "--out", "p.st", "--quiet"]) == 0
    assert main(["unpack", "p.st", "back.pt"]) == 0
    back = torch.load("back.pt")
    assert set(back) == set(state)
    assert torch.equal(back[bad].nan_to_num(nan=7.0), state[bad].nan_to_num(nan=7.0))  # left as it was
    good = "conv.weight" if bad == "fc.weight" else "fc.weight"
    assert 0 < int((back[good] != 0).sum()) < back[good].numel()  # the other layer is pruned and packed
