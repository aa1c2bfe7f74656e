"""`tightcompress frontier` on the user's own model (issue 23, item 4): an ONNX file or a PyTorch model,
scored by the user's `--eval module:function`, pruned one-shot (`pipeline.oneshot`) or fine-tuned.

The models and the metric are made here: a tiny conv net (`tinynet.py`, written to a temporary folder with
its weights, calibration inputs and labels), whose metric is the percentage of fixed inputs on which the
model agrees with the dense model's class (so dense scores exactly 100). The driver's tests run with a
stand-in for `pipeline.oneshot` (per-layer magnitude pruning to `1 - 1/rate`, written back into the ONNX
file or the module, the same for every method), so that what the driver does with the user's metric is
checked exactly: dense, points, iso-accuracy, resume. The tests of the real one-shot API end to end need
`pipeline.oneshot` and are skipped without it.
"""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from tightcompress.cli.main import main
from tightcompress.pipeline.iso_accuracy import summarize
from tightcompress.schemas import load_schema

TINYNET = """
import numpy as np
import torch
from pathlib import Path
from torch import nn

HERE = Path(__file__).resolve().parent


class TinyNet(nn.Module):
    def __init__(self, width=12):
        super().__init__()
        self.conv = nn.Conv2d(2, width, 3, padding=1)
        self.fc = nn.Linear(width * 6 * 6, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def inputs():
    return np.load(HERE / "inputs.npy")


def _agreement(logits):
    labels = np.load(HERE / "labels.npy")
    return float(100.0 * np.mean(np.argmax(logits, axis=1) == labels))


def evaluate(model):
    with torch.no_grad():
        return _agreement(model(torch.from_numpy(inputs())).numpy())


def evaluate_onnx(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _agreement(session.run(None, {"x": inputs()})[0])


def as_text(target):
    return "high"


def as_nan(target):
    return float("nan")


def raises(target):
    raise ValueError("no test images")


NOT_A_FUNCTION = 3
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A folder with tinynet.py, its checkpoint, its ONNX export, inputs, labels and calibration files."""
    folder = tmp_path_factory.mktemp("tinynet")
    (folder / "tinynet.py").write_text(textwrap.dedent(TINYNET))
    sys.path.insert(0, str(folder))
    try:
        import tinynet
    finally:
        sys.path.remove(str(folder))
    torch.manual_seed(0)
    model = tinynet.TinyNet().eval()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 2, 6, 6)).astype(np.float32)
    np.save(folder / "inputs.npy", x)
    with torch.no_grad():
        np.save(folder / "labels.npy", model(torch.from_numpy(x)).argmax(1).numpy())
    torch.save(model.state_dict(), folder / "tiny.pt")
    axes = {"x": {0: "n"}, "y": {0: "n"}}
    sample = (torch.from_numpy(x[:1]),)
    names = {"input_names": ["x"], "output_names": ["y"], "dynamic_axes": axes}
    torch.onnx.export(model, sample, str(folder / "tiny.onnx"), **names, dynamo=False)
    calibration = rng.standard_normal((32, 2, 6, 6)).astype(np.float32)
    np.savez(folder / "calib.npz", x=calibration)
    torch.save(torch.from_numpy(calibration), folder / "calib.pt")
    sys.modules.pop("tinynet", None)
    return folder


# ------------------------------------------------------------------------------ the one-shot stand-in
def _keep_largest(weight: np.ndarray, rate: float) -> np.ndarray:
    keep = max(1, round(weight.size / rate))
    threshold = np.sort(np.abs(weight).ravel())[::-1][keep - 1]
    return np.where(np.abs(weight) >= threshold, weight, 0).astype(weight.dtype)


def _result(rate: float) -> types.SimpleNamespace:
    """A `pipeline.oneshot.OneShotResult` without packed matrices (so no hardware figures)."""
    report = {"compression_rate": float(rate), "layers": [], "relative_output_error": None}
    return types.SimpleNamespace(report=report, packed={}, weights={})


def stand_in(calls: list, allocations: list | None = None) -> types.ModuleType:
    """`pipeline.oneshot`'s two entry points the frontier calls: per-layer magnitude pruning to 1/rate.
    Each call is appended to `calls`, and the allocation it was given to `allocations`."""
    allocations = [] if allocations is None else allocations
    module = types.ModuleType("tightcompress.pipeline.oneshot")
    module.ALLOCATIONS = ("planned", "uniform")

    def prune_onnx_packed(
        onnx_path, out_path, *, method, rate, calibration=None, seed=0, allocation="planned"
    ):
        import onnx
        from onnx import numpy_helper

        calls.append(("onnx", method, rate, seed, None if calibration is None else sorted(calibration)))
        allocations.append(allocation)
        model = onnx.load(str(onnx_path))
        for index, init in enumerate(model.graph.initializer):
            array = numpy_helper.to_array(init)
            if array.ndim >= 2:
                pruned = numpy_helper.from_array(_keep_largest(array, rate), init.name)
                model.graph.initializer[index].CopyFrom(pruned)
        onnx.save(model, str(out_path))
        return _result(rate)

    def prune_module_packed(model, *, method, rate, calibration=None, seed=0, allocation="planned"):
        calls.append(
            ("pytorch", method, rate, seed, None if calibration is None else tuple(calibration.shape))
        )
        allocations.append(allocation)
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, torch.nn.Conv2d | torch.nn.Linear):
                    layer.weight.copy_(torch.from_numpy(_keep_largest(layer.weight.numpy(), rate)))
        return _result(rate)

    module.prune_onnx_packed, module.prune_module_packed = prune_onnx_packed, prune_module_packed
    return module


@pytest.fixture
def oneshot(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setitem(sys.modules, "tightcompress.pipeline.oneshot", stand_in(calls))
    return calls


def _load_tinynet(tiny: Path):
    sys.path.insert(0, str(tiny))
    try:
        import tinynet

        return tinynet
    finally:
        sys.path.remove(str(tiny))
        sys.modules.pop("tinynet", None)


def _validate(result: dict) -> None:
    jsonschema.Draft202012Validator(load_schema("frontier")).validate(result)


GRID = ["--methods", "tight,column-combining,unstructured", "--rates", "2", "4", "--seeds", "0", "1"]


# ----------------------------------------------------------------------------------------------- ONNX
def test_onnx_frontier_scores_every_pruned_file_with_the_users_metric(tiny, oneshot, tmp_path, capsys):
    out = tmp_path / "F.json"
    argv = ["frontier", "--onnx", tiny / "tiny.onnx", "--eval", f"{tiny / 'tinynet.py'}:evaluate_onnx",
            "--calibration", tiny / "calib.npz", *GRID, "--jobs", "1", "--workdir", tmp_path / "w",
            "--json", out, "--plot", tmp_path / "F.png", "--tolerances", "0.5", "40", "--quiet"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    result = json.loads(out.read_text())
    _validate(result)
    assert result["dense"] == {
        "accuracy_mean": 100.0,
        "accuracy_std": 0.0,
        "per_seed": {"0": 100.0, "1": 100.0},
    }
    assert [(p["method"], p["target_rate"], p["seed"]) for p in result["points"]] == [
        (m, r, s) for m in ("tight", "column-combining", "unstructured") for r in (2.0, 4.0) for s in (0, 1)
    ]
    # Each point is the metric of the pruned file it was given (the stand-in prunes alike for every seed).
    tinynet = _load_tinynet(tiny)
    expected = {}
    for rate in (2.0, 4.0):
        pruned = tmp_path / f"expected-{rate:g}.onnx"
        stand_in([]).prune_onnx_packed(tiny / "tiny.onnx", pruned, method="tight", rate=rate)
        expected[rate] = tinynet.evaluate_onnx(pruned)
    assert expected[4.0] < 100.0  # the metric sees the pruning
    for point in result["points"]:
        assert point["accuracy"] == expected[point["target_rate"]]
        assert point["compression_rate"] == point["target_rate"]
        assert point["speedup"] is None and point["energy_gain"] is None  # no packed matrices to simulate
    assert {call[4] == ["x"] for call in oneshot} == {True}  # calibration by input name, every point
    assert sorted({call[3] for call in oneshot}) == [0, 1]
    _, iso, ratios = summarize(result["points"], 100.0, (0.5, 40.0))
    assert (iso, ratios) == (result["iso_accuracy"], result["ratios"])
    assert expected[2.0] >= 60.0 > expected[4.0]  # within 40 of dense at 2x only, for every method alike
    assert iso["40.0"] == {"tight": 2.0, "column-combining": 2.0, "unstructured": 2.0}
    assert iso["0.5"] == {"tight": None, "column-combining": None, "unstructured": None}
    assert ratios["40.0"] == {
        "rate_tight_over_cc": 1.0, "throughput_tight_over_cc": None, "energy_tight_over_cc": None
    }  # fmt: skip
    config = result["config"]
    assert config["mode"] == "one-shot" and config["metric"].endswith("tinynet.py:evaluate_onnx")
    assert config["model"]["kind"] == "onnx" and len(config["model"]["sha256"]) == 64
    assert (tmp_path / "F.png").read_bytes()[:4] == b"\x89PNG"
    assert "metric" in capsys.readouterr().out


def test_onnx_frontier_resumes_without_pruning_or_scoring_again(tiny, oneshot, tmp_path, monkeypatch):
    argv = ["frontier", "--onnx", str(tiny / "tiny.onnx"), "--eval", f"{tiny / 'tinynet.py'}:evaluate_onnx",
            *GRID, "--jobs", "1", "--workdir", str(tmp_path / "w"), "--quiet"]  # fmt: skip
    assert main([*argv, "--json", str(tmp_path / "a.json")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    done = len(oneshot)
    assert main([*argv, "--resume", "--json", str(tmp_path / "b.json")]) == 0
    again = json.loads((tmp_path / "b.json").read_text())
    assert len(oneshot) == done  # nothing pruned again
    assert (again["points"], again["dense"], again["iso_accuracy"]) == (
        first["points"], first["dense"], first["iso_accuracy"]
    )  # fmt: skip
    # One point lost: only it runs again; a changed model file is measured anew (its hash names the files).
    next((tmp_path / "w" / "frontier").glob("point-tight-4x-s1-*.json")).unlink()
    assert main([*argv, "--resume", "--json", str(tmp_path / "c.json")]) == 0
    assert oneshot[done:] == [("onnx", "tight", 4.0, 1, None)]
    assert json.loads((tmp_path / "c.json").read_text())["points"] == first["points"]


# -------------------------------------------------------------------------------------------- PyTorch
def test_pytorch_frontier_gives_the_metric_the_pruned_model(tiny, oneshot, tmp_path):
    out = tmp_path / "F.json"
    argv = ["frontier", "--model", f"{tiny / 'tinynet.py'}:TinyNet", "--checkpoint", tiny / "tiny.pt",
            "--eval", f"{tiny / 'tinynet.py'}:evaluate", "--calibration", tiny / "calib.pt",
            "--methods", "tight", "--rates", "2", "4", "--seeds", "0", "--jobs", "1",
            "--workdir", tmp_path / "w", "--json", out, "--quiet"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    result = json.loads(out.read_text())
    _validate(result)
    tinynet = _load_tinynet(tiny)
    for point in result["points"]:
        model = tinynet.TinyNet()
        model.load_state_dict(torch.load(tiny / "tiny.pt"))
        stand_in([]).prune_module_packed(model, method="tight", rate=point["target_rate"])
        assert point["accuracy"] == tinynet.evaluate(model.eval())
    assert result["dense"]["accuracy_mean"] == 100.0
    assert oneshot == [
        ("pytorch", "tight", 2.0, 0, (32, 2, 6, 6)),
        ("pytorch", "tight", 4.0, 0, (32, 2, 6, 6)),
    ]
    assert result["config"]["model"]["kind"] == "pytorch"


# --------------------------------------------------------------------------------------- --allocation
def test_allocation_reaches_every_pruning_call_and_is_kept_apart_on_resume(tiny, tmp_path, monkeypatch):
    calls: list = []
    allocations: list = []
    monkeypatch.setitem(sys.modules, "tightcompress.pipeline.oneshot", stand_in(calls, allocations))
    argv = ["frontier", "--onnx", str(tiny / "tiny.onnx"), "--eval", f"{tiny / 'tinynet.py'}:evaluate_onnx",
            "--methods", "tight", "--rates", "2", "4", "--seeds", "0", "--jobs", "1",
            "--workdir", str(tmp_path / "w"), "--quiet"]  # fmt: skip
    assert main([*argv, "--allocation", "uniform", "--json", str(tmp_path / "u.json")]) == 0
    assert allocations == ["uniform", "uniform"] and len(calls) == 2
    assert json.loads((tmp_path / "u.json").read_text())["config"]["allocation"] == "uniform"
    # The default (planned) does not reuse the uniform points; each resumes its own.
    assert main([*argv, "--resume", "--json", str(tmp_path / "p.json")]) == 0
    assert allocations[2:] == ["planned", "planned"]
    planned = json.loads((tmp_path / "p.json").read_text())
    _validate(planned)
    assert planned["config"]["allocation"] == "planned"
    assert main([*argv, "--allocation", "uniform", "--resume", "--json", str(tmp_path / "u2.json")]) == 0
    assert main([*argv, "--allocation", "planned", "--resume", "--json", str(tmp_path / "p2.json")]) == 0
    assert len(allocations) == 4  # nothing pruned again
    # PyTorch models too.
    argv = ["frontier", "--model", f"{tiny / 'tinynet.py'}:TinyNet", "--checkpoint", str(tiny / "tiny.pt"),
            "--eval", f"{tiny / 'tinynet.py'}:evaluate", "--methods", "nm", "--rates", "2", "--seeds", "0",
            "--jobs", "1", "--workdir", str(tmp_path / "w"), "--allocation", "uniform",
            "--json", str(tmp_path / "t.json"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert calls[-1][:3] == ("pytorch", "nm", 2.0) and allocations[-1] == "uniform"


def _kind(*flags: str):
    from tightcompress.cli.frontier import model_from_args
    from tightcompress.cli.main import build_parser

    return model_from_args(build_parser().parse_args(["frontier", *flags]))


@pytest.mark.parametrize("model", ["onnx", "pytorch"])
def test_the_allocation_changes_the_real_per_layer_rates(tiny, model):
    """Through the command line's flags and the real `pipeline.oneshot`: unstructured at 2x keeps half of
    each layer under `uniform`; under `planned` the small conv stays nearly dense (about 1.04x here)."""
    if model == "onnx":
        flags = ["--onnx", str(tiny / "tiny.onnx"), "--eval", f"{tiny / 'tinynet.py'}:evaluate_onnx"]
    else:
        flags = ["--model", f"{tiny / 'tinynet.py'}:TinyNet", "--checkpoint", str(tiny / "tiny.pt"),
                 "--eval", f"{tiny / 'tinynet.py'}:evaluate"]  # fmt: skip
    rates = {}
    for allocation in ("planned", "uniform"):
        kind = _kind(*flags, "--allocation", allocation)
        assert kind.allocation == allocation and kind.describe()["allocation"] == allocation
        result, score, _ = kind.prune_and_score("unstructured", 2.0, 0)
        assert result.report["allocation"] == allocation and 0.0 <= score <= 100.0
        rates[allocation] = [round(layer["compression_rate"], 2) for layer in result.report["layers"]]
    assert len(rates["uniform"]) == 2 and rates["uniform"] == [2.0, 2.0]
    assert max(abs(a - b) for a, b in zip(rates["planned"], rates["uniform"], strict=True)) > 0.5
    assert _kind(*flags).allocation == "planned"  # the default


# ----------------------------------------------------------------------------------- bad input: one line
def _one_line(capsys, argv, *words) -> None:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("metric", "words"),
    [
        ("nosuchmodule_h23:evaluate", ["cannot import", "nosuchmodule_h23"]),
        ("{tiny}/tinynet.py:missing", ["has no 'missing'"]),
        ("{tiny}/nofile.py:evaluate", ["not found"]),
        ("{tiny}/tinynet.py:NOT_A_FUNCTION", ["not callable"]),
        ("{tiny}/tinynet.py:as_text", ["returned str, not a number"]),
        ("{tiny}/tinynet.py:as_nan", ["returned nan, not a finite number"]),
        ("{tiny}/tinynet.py:raises", ["failed on the dense model", "ValueError: no test images"]),
        ("evaluate", ["module:function"]),
    ],
)
def test_a_bad_metric_is_one_line_and_writes_nothing(tiny, oneshot, tmp_path, capsys, metric, words):
    out = tmp_path / "F.json"
    argv = ["frontier", "--onnx", tiny / "tiny.onnx", "--eval", metric.format(tiny=tiny),
            "--methods", "tight", "--rates", "2", "--seeds", "0", "--jobs", "1",
            "--workdir", tmp_path / "w", "--json", out, "--quiet"]  # fmt: skip
    _one_line(capsys, argv, *words)
    assert not out.exists() and oneshot == []


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--onnx", "{tiny}/tiny.onnx"], ["give --eval"]),
        (["--eval", "m:f"], ["--eval applies to your own model"]),
        (["--onnx", "{tiny}/tiny.onnx", "--model", "{tiny}/tinynet.py:TinyNet", "--eval", "m:f"],
         ["not both"]),
        (["--onnx", "{tiny}/tiny.onnx", "--eval", "m:f", "--mode", "fine-tune"], ["needs a PyTorch model"]),
        (["--model", "{tiny}/tinynet.py:TinyNet", "--eval", "m:f"], ["give --checkpoint"]),
        (["--onnx", "{tiny}/missing.onnx", "--eval", "m:f"], ["missing.onnx"]),
        (["--onnx", "{tiny}/tiny.onnx", "--eval", "m:f", "--calibration", "{tiny}/x.npz"], ["x.npz"]),
        (["--methods", "unstructured"], ["unknown method 'unstructured'"]),  # the demo has no such method
        (["--allocation", "uniform"], ["--allocation applies to your own model"]),
        (["--model", "{tiny}/tinynet.py:TinyNet", "--checkpoint", "{tiny}/tiny.pt", "--eval", "m:f",
          "--mode", "fine-tune", "--allocation", "uniform"], ["--allocation is for one-shot"]),
        (["--onnx", "{tiny}/tiny.onnx", "--eval", "m:f", "--allocation", "even"],
         ["--allocation", "invalid choice"]),
    ],
)  # fmt: skip
def test_model_flags_are_checked_in_one_line(tiny, tmp_path, capsys, flags, words):
    argv = ["frontier", *[f.format(tiny=tiny) for f in flags], "--rates", "2", "--seeds", "0",
            "--workdir", tmp_path / "w", "--json", tmp_path / "F.json", "--quiet"]  # fmt: skip
    _one_line(capsys, argv, *words)
    assert not (tmp_path / "F.json").exists()


# ----------------------------------------------------------------------- the real one-shot API, end to end
@pytest.mark.slow
def test_real_one_shot_onnx_frontier(tiny, tmp_path):
    pytest.importorskip("tightcompress.pipeline.oneshot")
    out = tmp_path / "F.json"
    argv = ["frontier", "--onnx", tiny / "tiny.onnx", "--eval", f"{tiny / 'tinynet.py'}:evaluate_onnx",
            "--calibration", tiny / "calib.npz", "--methods", "tight,nm,unstructured,tight-subword",
            "--rates", "2", "--seeds", "0", "--jobs", "1", "--workdir", tmp_path / "w", "--json", out,
            "--quiet"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    result = json.loads(out.read_text())
    _validate(result)
    assert result["dense"]["accuracy_mean"] == 100.0
    for point in result["points"]:
        assert point["compression_rate"] >= 2.0 - 1e-9 and 0.0 <= point["accuracy"] <= 100.0
        if point["method"] == "unstructured":  # no packed format: not simulated
            assert point["speedup"] is None and point["energy_gain"] is None
        else:  # packed layers, vectors counted on one calibration sample with onnxruntime
            assert point["speedup"] > 0 and point["energy_gain"] > 0
    # The same pruning and score as calling the API and the metric by hand.
    from tightcompress.pipeline.calibration import read_calibration_npz
    from tightcompress.pipeline.oneshot import prune_onnx

    calibration = read_calibration_npz(str(tiny / "calib.npz"))
    prune_onnx(tiny / "tiny.onnx", tmp_path / "nm.onnx", method="nm", rate=2.0, calibration=calibration)
    (nm,) = [p for p in result["points"] if p["method"] == "nm"]
    assert nm["accuracy"] == _load_tinynet(tiny).evaluate_onnx(tmp_path / "nm.onnx")


def test_onnx_vectors_count_output_positions(tiny):
    """A conv streams one vector per output pixel (6 x 6 here), a Gemm one per sample."""
    from tightcompress.pipeline.frontier.hardware import onnx_vectors, onnx_zero_sample

    vectors = onnx_vectors(tiny / "tiny.onnx", {"x": np.load(tiny / "inputs.npy")[:1]})
    assert sorted(vectors.values()) == [1, 36] and len(vectors) == 2
    zeros = onnx_zero_sample(tiny / "tiny.onnx")  # the batch is free, the 2 x 6 x 6 size fixed
    assert zeros["x"].shape == (1, 2, 6, 6) and onnx_vectors(tiny / "tiny.onnx", zeros) == vectors


@pytest.mark.slow
def test_real_one_shot_pytorch_frontier(tiny, tmp_path):
    pytest.importorskip("tightcompress.pipeline.oneshot")
    out = tmp_path / "F.json"
    argv = ["frontier", "--model", f"{tiny / 'tinynet.py'}:TinyNet", "--checkpoint", tiny / "tiny.pt",
            "--eval", f"{tiny / 'tinynet.py'}:evaluate", "--calibration", tiny / "calib.pt",
            "--methods", "tight,column-combining", "--rates", "2", "--seeds", "0", "--jobs", "1",
            "--workdir", tmp_path / "w", "--json", out, "--quiet"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    result = json.loads(out.read_text())
    _validate(result)
    for point in result["points"]:
        assert point["compression_rate"] >= 2.0 - 1e-9 and 0.0 <= point["accuracy"] <= 100.0
        assert point["speedup"] > 0 and point["energy_gain"] > 0  # vectors counted with forward hooks


# ---------------------------------------------------------------------------------------- fine-tune mode
DIGITSNET = """
import torch
from torch import nn


class DigitsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=2)
        self.fc = nn.Linear(8 * 13 * 13, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def evaluate(model):
    from tightcompress.pipeline.data import load_mnist

    correct = total = 0
    with torch.no_grad():
        for x, y in load_mnist(seed=0).test_batches(500):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / total
"""


@pytest.mark.slow
def test_fine_tune_mode_runs_the_pipeline_and_scores_with_the_users_metric(tmp_path, monkeypatch):
    """`--mode fine-tune` on a small digits CNN (the bundled digits; no --data): the pipeline's points,
    scored by the user's metric (here the seed-0 test accuracy, so it equals the pipeline's own figure)."""
    import itertools

    from tightcompress.pipeline.data import load_mnist

    (tmp_path / "digitsnet.py").write_text(textwrap.dedent(DIGITSNET))
    monkeypatch.syspath_prepend(str(tmp_path))
    import digitsnet

    torch.manual_seed(0)
    model = digitsnet.DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for x, y in itertools.islice(load_mnist(seed=0).train_batches(128, seed=0), 200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.save(model.state_dict(), tmp_path / "digits.pt")
    dense = digitsnet.evaluate(model.eval())
    out = tmp_path / "F.json"
    argv = ["frontier", "--model", f"{tmp_path / 'digitsnet.py'}:DigitsNet",
            "--checkpoint", tmp_path / "digits.pt", "--eval", f"{tmp_path / 'digitsnet.py'}:evaluate",
            "--mode", "fine-tune", "--methods", "tight",
            "--rates", "2", "--seeds", "0", "--prune-rounds", "1", "--prune-epochs", "0.05",
            "--finetune-epochs", "0.05", "--format-rounds", "1", "--jobs", "1",
            "--workdir", tmp_path / "w", "--json", out, "--quiet"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    result = json.loads(out.read_text())
    _validate(result)
    assert result["dense"]["accuracy_mean"] == dense > 80.0
    (point,) = result["points"]
    assert point["compression_rate"] >= 2.0 and point["speedup"] > 1.0 and point["energy_gain"] > 0
    assert 50.0 < point["accuracy"] <= 100.0
    assert result["config"]["mode"] == "fine-tune" and result["config"]["compress"]["prune_rounds"] == 1
    sys.modules.pop("digitsnet", None)
