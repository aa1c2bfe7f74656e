"""The faster paths of one-shot pruning (issue 23, speed and memory) give what the exact ones do."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from test_oneshot import build_model  # noqa: E402
from tightcompress.pipeline.calibration import OnnxCalibration, conv_rows  # noqa: E402
from tightcompress.readers.onnx import read_onnx  # noqa: E402


def _reference_rows(calibration: OnnxCalibration, name: str, feed: dict) -> list[list[np.ndarray]]:
    """The layer's rows as the graph cut at its inputs computes them from the model's inputs (the former
    path: every layer's input recomputed from scratch)."""
    from tightcompress.pipeline.calibration import _join_uses, _use_rows

    found = calibration.weights[name]
    activations = list(dict.fromkeys(use.activation for use in found.uses))
    session = calibration._session(activations)
    out = []
    for batch in calibration._batches():
        values = dict(zip(activations, calibration._run(session, batch, feed), strict=True))
        rows = [_use_rows(use, values[use.activation], found.layer) for use in found.uses]
        out.append(_join_uses(rows, found.layer.groups))
    return out


@pytest.mark.parametrize("samples", [5, 40])  # one batch; several batches with a short last one
def test_staged_activations_equal_the_full_graph_with_weights_changing(tmp_path, samples):
    """Every layer's pruned and dense inputs, and the output error, equal those of the whole graph run from
    the model's inputs, while the weights change layer by layer, including a weight shared by two nodes
    (its second node's input depends on the first's output: the pruned values must be recomputed)."""
    build_model(tmp_path / "m.onnx")
    graph = read_onnx(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(samples, 4, 10)).astype(np.float32)
    calibration = OnnxCalibration(graph, {"x": x})
    rng = np.random.default_rng(1)
    for found in graph.weights:
        name = found.layer.name
        want_p = _reference_rows(calibration, name, calibration.pruned_feed)
        want_d = _reference_rows(calibration, name, calibration.dense_feed)
        got = list(calibration.input_rows(name))
        assert len(got) == len(want_p)
        for (rows_p, rows_d), wp, wd in zip(got, want_p, want_d, strict=True):
            for a, b in [*zip(rows_p, wp, strict=True), *zip(rows_d, wd, strict=True)]:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        weight = found.layer.weight.astype(np.float32)
        calibration.set_weight(name, weight * (rng.random(weight.shape) < 0.5))
    outputs = [o.name for o in calibration.runnable.graph.output]
    session = calibration._session(outputs)
    diff = ref = 0.0
    for batch in calibration._batches():
        p = calibration._run(session, batch, calibration.pruned_feed)[0].astype(np.float64)
        d = calibration._run(session, batch, calibration.dense_feed)[0].astype(np.float64)
        diff, ref = diff + float(np.sum((p - d) ** 2)), ref + float(np.sum(d**2))
    assert calibration.output_error() == pytest.approx(np.sqrt(diff / ref), rel=1e-5)


def test_staged_run_runs_each_node_once_per_variant_without_shared_weights(tmp_path):
    """On a chain whose weights are all distinct, the stages together run every node once per variant."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for index in range(4):
        inits.append(numpy_helper.from_array(rng.normal(size=(6, 6)).astype(np.float32), f"w{index}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{index}"], [f"m{index}"], name=f"mm{index}"))
        nodes.append(helper.make_node("Relu", [f"m{index}"], [f"r{index}"]))
        current = f"r{index}"
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "chain",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
            [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["n", 6])],
            initializer=inits,
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "chain.onnx"))
    graph = read_onnx(tmp_path / "chain.onnx")
    calibration = OnnxCalibration(graph, {"x": rng.normal(size=(20, 6)).astype(np.float32)})
    ran = []
    original = calibration._stages._run

    def counting(state, end, targets, weights):
        ran.append(end - state.position)
        original(state, end, targets, weights)

    calibration._stages._run = counting
    for found in graph.weights:
        list(calibration.input_rows(found.layer.name))
        calibration.set_weight(found.layer.name, found.layer.weight * 0.5)
    calibration.output_error()
    assert sum(ran) == 2 * len(nodes)


@pytest.mark.parametrize(
    ("shape", "strides", "groups"),
    [((3, 6, 5, 7), (1, 1), 1), ((2, 6, 5, 7), (2, 1), 2), ((2, 4, 9, 8), (2, 3), 4), ((3, 4, 11), (2,), 1)],
)
def test_pointwise_conv_rows_equal_im2col(shape, strides, groups):
    """A 1x1 conv's rows taken straight from the input equal torch's im2col rows (strides, groups, 1-D)."""
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    kernel = (1,) * len(strides)
    got = conv_rows(x, kernel, strides, (1,) * len(strides), (0,) * (2 * len(strides)), groups)
    t = torch.from_numpy(x)
    if t.ndim == 3:
        t, kernel2, strides2 = t[:, :, None, :], (1, 1), (1, *strides)
    else:
        kernel2, strides2 = kernel, strides
    cols = F.unfold(t, kernel_size=kernel2, stride=strides2)
    rows = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()
    per_group = rows.shape[1] // groups
    assert len(got) == groups
    for g, block in enumerate(got):
        np.testing.assert_array_equal(block, rows[:, g * per_group : (g + 1) * per_group])


@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "dilations", "pads", "groups"),
    [
        ((3, 4, 9, 11), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
        ((2, 6, 9, 11), (1, 3), (2, 1), (1, 2), (0, 2, 1, 0), 2),
        ((2, 4, 8, 8), (5, 5), (2, 2), (1, 1), (2, 2, 2, 2), 4),
        ((3, 4, 13), (3,), (2,), (1,), (1, 0), 1),
        ((2, 5, 7, 7), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 1),
    ],
)
def test_conv_square_sums_equal_the_rows_squares(shape, kernel, strides, dilations, pads, groups):
    """The saliency's input norms of a conv, summed without im2col, equal the im2col rows' squares summed."""
    from tightcompress.pipeline.calibration import conv_square_sums

    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    rows = conv_rows(x, kernel, strides, dilations, pads, groups)
    sums = conv_square_sums(x, kernel, strides, dilations, pads, groups)
    assert len(sums) == groups
    for block, total in zip(rows, sums, strict=True):
        np.testing.assert_allclose(total, np.square(block, dtype=np.float64).sum(axis=0), rtol=1e-9)


@pytest.mark.parametrize("method", ["tight", "nm-permuted"])
def test_options_evaluated_on_threads_equal_one_thread(method):
    """Evaluating a layer's candidate options on several threads gives exactly the options of one thread
    (each search is seeded and runs whole on one thread), twice over (the same seed, the same result)."""
    from tightcompress.pipeline.fit import candidate_configs, evaluate_options

    rng = np.random.default_rng(0)
    matrix = (rng.normal(size=(96, 80)) * (rng.random((96, 80)) < 0.6)).astype(np.float32)
    configs = candidate_configs(method, 96, 16, seed=3, N=80)
    alone = evaluate_options(matrix, configs, plan_iterations=3_000, workers=1)
    for _ in range(2):
        assert evaluate_options(matrix, configs, plan_iterations=3_000, workers=3) == alone


def test_capacity_floors_equal_the_packers_floor():
    """`capacity_floor_fractions` (no search) equals the floor the packer reports for the same config, and
    never exceeds the fraction the search drops."""
    from tightcompress.api import pack
    from tightcompress.pipeline.fit import candidate_configs, capacity_floor_fractions

    rng = np.random.default_rng(5)
    matrix = np.abs(rng.normal(size=(120, 70)) * (rng.random((120, 70)) < 0.7)).astype(np.float32)
    configs = candidate_configs("tight", 120, 32, N=70)
    floors = capacity_floor_fractions(matrix, configs)
    assert floors[0] == 0.0  # dense: no bound
    assert max(floors) > 0.3
    for config, floor in zip(configs[1:], floors[1:], strict=True):
        report = pack(matrix, config.__class__(**{**vars(config), "iterations": 300})).report()
        assert floor == pytest.approx(report["lower_bound_dropped_magnitude_fraction"], rel=1e-9, abs=1e-12)
        assert floor <= report["dropped_magnitude_fraction"] + 1e-12


@pytest.mark.parametrize("rate", [2.0, 3.0, 40.0])  # 40x: no option reaches it, the fewest slots are taken
def test_uniform_bound_chooses_what_searching_every_candidate_chooses(monkeypatch, rate):
    """The uniform rule searches candidates in order of their floor and skips those that cannot win: the
    options chosen are those of a search of every candidate, and far fewer searches run."""
    from tightcompress.api import pack as real_pack
    from tightcompress.pipeline import fit, oneshot

    rng = np.random.default_rng(6)
    matrices = {
        f"layer{i}": np.abs(rng.normal(size=shape) * rng.random((shape[0], 1))).astype(np.float32)
        for i, shape in enumerate([(120, 40), (64, 600), (27, 16), (200, 96)])
    }
    searched = []

    def counting_pack(matrix, config, **kw):
        if fit.is_searched(config):
            searched.append(config)
        return real_pack(matrix, config, **kw)

    monkeypatch.setattr(fit, "pack", counting_pack)
    kwargs = dict(tile=32, seed=1, plan_iterations=800, quiet=True, uniform=True)
    bounded = oneshot.plan_rate_sampled(matrices, "tight", rate, **kwargs)
    n_bounded = len(searched)
    monkeypatch.setattr(fit, "capacity_floor_fractions", lambda matrix, configs: [0.0] * len(configs))
    searched.clear()
    full = oneshot.plan_rate_sampled(matrices, "tight", rate, **kwargs)
    assert bounded == full
    if rate < 40:
        assert n_bounded < len(searched) / 2
    else:
        assert n_bounded == len(searched)


def test_uniform_bound_choice_does_not_depend_on_the_search_threads(monkeypatch):
    """The bounded search runs in batches as wide as the search threads; the choice is the same for 1 and 3
    threads (a candidate is skipped only when it cannot win, whatever was searched before it)."""
    from tightcompress.pipeline import oneshot

    rng = np.random.default_rng(8)
    matrices = {
        f"layer{i}": np.abs(rng.normal(size=shape) * rng.random((shape[0], 1))).astype(np.float32)
        for i, shape in enumerate([(96, 80), (60, 300)])
    }
    chosen = []
    for threads in ("1", "3"):
        monkeypatch.setenv("TIGHTCOMPRESS_SEARCH_THREADS", threads)
        chosen.append(
            oneshot.plan_rate_sampled(
                matrices, "tight", 2.0, tile=32, seed=2, plan_iterations=600, quiet=True, uniform=True
            )
        )
    assert chosen[0] == chosen[1]
