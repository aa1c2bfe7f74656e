"""The sensitivity allocation (issue 23): each layer's share of a whole-model rate chosen by how its error
reaches the model output, measured on the calibration samples (`pipeline.oneshot.output_curves`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from tightcompress.cli.main import main  # noqa: E402
from tightcompress.pipeline.fit import Option, choose_options  # noqa: E402
from tightcompress.pipeline.oneshot import (  # noqa: E402
    ALLOCATIONS,
    ErrorCurve,
    plan_unstructured,
    prune_module,
)


class Amplified(nn.Module):
    """Two parallel branches; the output is `[100 * a(x), b(x)]`, so an error of `a` reaches the output
    100x larger than the same error of `b`. Counting every layer alike, the planned rule takes the rate
    from the big layer `a` (N:M has no option between dense and 2x: `b` dense, `a` at 2.67x)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(64, 256)
        self.b = nn.Linear(64, 64)

    def forward(self, x):
        return torch.cat([100.0 * self.a(x), self.b(x)], dim=1)


def calibration() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).normal(size=(256, 64)).astype(np.float32))


def rates(report: dict) -> dict[str, float]:
    return {layer["name"]: layer["compression_rate"] for layer in report["layers"]}


@pytest.mark.parametrize("method", ["nm", "unstructured"])
def test_a_layer_whose_error_is_amplified_downstream_stays_nearer_dense(method):
    x = calibration()
    planned = prune_module(Amplified(), method=method, rate=2.0, calibration=x, allocation="planned")
    sensitive = prune_module(Amplified(), method=method, rate=2.0, calibration=x, allocation="sensitivity")
    assert (planned["allocation"], sensitive["allocation"]) == ("planned", "sensitivity")
    before, after = rates(planned), rates(sensitive)
    assert after["a"] < before["a"] - 0.2 and after["b"] > before["b"] + 0.2, (before, after)
    for report in (planned, sensitive):  # the rate target is met either way
        assert 2.0 - 1e-9 <= report["compression_rate"] <= 2.0 * 1.02
    assert sensitive["relative_output_error"] < planned["relative_output_error"]
    estimated = {layer["name"]: layer["estimated_output_error"] for layer in sensitive["layers"]}
    assert estimated["a"] > 0 and estimated["b"] > 0


def test_without_calibration_the_sensitivity_rule_falls_back_to_planned_and_says_so():
    with pytest.warns(UserWarning, match="without --calibration the planned rule"):
        report = prune_module(Amplified(), method="nm", rate=2.0, allocation="sensitivity")
    planned = prune_module(Amplified(), method="nm", rate=2.0)
    assert report["allocation"] == "planned" and rates(report) == rates(planned)
    assert any("planned rule" in message for message in report["notes"]["messages"])


def test_the_default_rule_is_sensitivity_when_calibrated_and_planned_without():
    x = calibration()
    calibrated = prune_module(Amplified(), method="nm", rate=2.0, calibration=x)
    plain = prune_module(Amplified(), method="nm", rate=2.0)
    assert calibrated["allocation"] == "sensitivity" and calibrated["config"]["one_shot"]["allocation"] == (
        "sensitivity"
    )
    assert plain["allocation"] == "planned" and "messages" not in plain["notes"]  # no note when not asked
    explicit = prune_module(Amplified(), method="nm", rate=2.0, calibration=x, allocation="sensitivity")
    assert rates(calibrated) == rates(explicit)


def test_the_error_curve_is_the_lower_convex_hull_through_the_origin():
    curve = ErrorCurve.hull([(0.1, 0.05), (0.2, 0.02), (0.4, 0.2), (0.6, 0.25)])
    assert curve.fractions[0] == 0.0 and curve.errors[0] == 0.0
    xs = np.linspace(0, 1, 101)
    ys = curve(xs)
    assert np.all(np.diff(ys) >= -1e-15) and np.all(np.diff(ys, 2) >= -1e-12)  # rising and convex
    for d, e in [(0.1, 0.05), (0.2, 0.02), (0.4, 0.2), (0.6, 0.25)]:
        assert curve(d) <= e + 1e-12  # below every measured point
    assert curve(0.8) > curve(0.6)  # the last slope carries on beyond the last point


@pytest.mark.parametrize("rate", [1.5, 2.0, 3.0])
def test_unstructured_plan_under_curves_is_choose_options_over_every_kept_count(rate):
    """With each layer's cost its convex curve of the dropped fraction, the global threshold of
    `plan_unstructured` is still what the formats' greedy picks over every kept count."""
    rng = np.random.default_rng(2)
    salient = {"a": np.abs(rng.normal(size=(6, 4))), "b": np.abs(rng.normal(size=(10, 9)))}
    curves = {"a": ErrorCurve.hull([(0.2, 0.5), (0.5, 3.0)]), "b": ErrorCurve.hull([(0.3, 0.1), (0.6, 0.3)])}
    options = {}
    for name, s in salient.items():
        ordered = np.sort(s.ravel())[::-1]
        kept = np.cumsum(ordered) / ordered.sum()
        options[name] = [Option(None, k, float(curves[name](1 - kept[k - 1]))) for k in range(1, s.size + 1)]  # type: ignore[arg-type]
    sizes = {name: s.size for name, s in salient.items()}
    greedy = {name: option.slots for name, option in choose_options(options, sizes, rate).items()}
    assert plan_unstructured(salient, rate, curves=curves) == greedy
    assert plan_unstructured(salient, rate, curves=curves) != plan_unstructured(salient, rate)


# ------------------------------------------------------------------------ ONNX: staged runs, logits, CLI
def build_onnx(path: Path, softmax: bool = True) -> None:
    """x (n, 16) -> MatMul a -> Relu -> MatMul b -> (x 100 on the first 4 columns) -> [Softmax] -> y."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.normal(size=(16, 32)) / 4).astype(np.float32), "a_w"),
        numpy_helper.from_array((rng.normal(size=(32, 8)) / 6).astype(np.float32), "b_w"),
        numpy_helper.from_array(np.array([10.0] * 4 + [1.0] * 4, np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "a_w"], ["h"], name="a"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "b_w"], ["z"], name="b"),
        helper.make_node("Mul", ["z", "scale"], ["logits"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    graph = helper.make_graph(
        nodes,
        "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y" if softmax else "logits", TensorProto.FLOAT, ["n", 8])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_staged_output_errors_equal_a_full_run_of_the_changed_model_on_the_logits(tmp_path):
    """Each layer's variants rerun only downstream of it, from the reference run's kept values; the figures
    equal onnxruntime on the whole model with that weight replaced, compared before the final Softmax."""
    from tightcompress.pipeline.calibration import OnnxCalibration
    from tightcompress.readers.onnx import read_onnx

    build_onnx(tmp_path / "m.onnx")
    x = np.random.default_rng(4).normal(size=(40, 16)).astype(np.float32)
    graph = read_onnx(tmp_path / "m.onnx")
    runner = OnnxCalibration(graph, {"x": x})
    rng = np.random.default_rng(5)
    weights = {w.layer.name: w for w in graph.weights}
    variants = {name: [w.layer.weight * (rng.random(w.layer.weight.shape) > p) for p in (0.3, 0.7)]
                for name, w in weights.items()}  # fmt: skip
    got = runner.output_errors(variants, samples=24)
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    model = onnx.load(str(tmp_path / "m.onnx"))
    model.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, None))

    def logits(tensors: dict[str, np.ndarray]) -> np.ndarray:
        changed = type(model)()
        changed.CopyFrom(model)
        for t in changed.graph.initializer:
            t.CopyFrom(numpy_helper.from_array(tensors[t.name], t.name))
        session = ort.InferenceSession(changed.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"x": x[:24]})[0].astype(np.float64)  # the first 24 samples

    reference = logits(init)
    for name, found in weights.items():
        for variant, error in zip(variants[name], got[name], strict=True):
            value = variant.T if found.transposed else variant
            want = np.linalg.norm(logits({**init, found.tensor: value.astype(np.float32)}) - reference)
            assert math.isclose(error, want / np.linalg.norm(reference), rel_tol=1e-5), (name, error)
            assert error > 0


def test_pack_allocation_sensitivity_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    build_onnx(tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(3).normal(size=(64, 16)).astype(np.float32))
    argv = ["pack", "m.onnx", "--rate", "2", "--method", "nm", "--calibration", "c.npz",
            "--allocation", "sensitivity", "--pruned", "p.onnx", "--json", "r.json", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["allocation"] == "sensitivity" and report["compression_rate"] >= 2.0 - 1e-9
    assert all(layer["estimated_output_error"] >= 0 for layer in report["layers"])
    assert "sensitivity per layer" in capsys.readouterr().out
    assert "sensitivity" in ALLOCATIONS


def test_an_unknown_allocation_lists_every_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    build_onnx(tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as exc:
        main(["pack", "m.onnx", "--rate", "2", "--allocation", "output", "--json", "r.json", "--quiet"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exc.value.code == 2 and len(lines) == 1
    assert all(choice in lines[0] for choice in ALLOCATIONS), lines[0]
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
