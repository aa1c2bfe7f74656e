"""ONNX in and out, and calibrated one-shot pruning (issue 23): small ONNX models built with onnx.helper."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tightcompress.cli.main import main  # noqa: E402
from tightcompress.errors import TightCompressError  # noqa: E402
from tightcompress.prune.reconstruct import GramStats, reconstruct, relative_error  # noqa: E402
from tightcompress.readers.onnx import read_onnx, write_onnx_weights  # noqa: E402


def _constant(name: str, array: np.ndarray) -> object:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_value"))


def build_model(path, seed: int = 0) -> dict[str, np.ndarray]:
    """x (n, 4, 10) -> Conv1d (fp16 Constant weight through Cast) -> Relu -> Transpose (n, 10, 8)
    -> MatMul by a Constant through Identity (8 x 6) -> MatMul by a shared initializer (6 x 6), twice
    -> MatMul with a constant on the left (5 x 10) -> Flatten -> Gemm transB=1 (7 x 30) -> y (n, 7).
    Returns the weights in PyTorch layout by expected layer name."""
    rng = np.random.default_rng(seed)
    conv = rng.normal(size=(8, 4, 3)).astype(np.float16)
    right = rng.normal(size=(8, 6)).astype(np.float32)
    shared = (rng.normal(size=(6, 6)) / 2).astype(np.float32)
    left = rng.normal(size=(5, 10)).astype(np.float32)
    gemm = rng.normal(size=(7, 30)).astype(np.float32)
    nodes = [
        _constant("conv_w16", conv),
        helper.make_node("Cast", ["conv_w16"], ["conv_w"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "conv_w"], ["c"], name="conv1d", pads=[1, 1], kernel_shape=[3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
        _constant("right_raw", right),
        helper.make_node("Identity", ["right_raw"], ["right_w"]),
        helper.make_node("MatMul", ["t", "right_w"], ["m1"], name="right"),
        helper.make_node("MatMul", ["m1", "shared_w"], ["m2"], name="shared_a"),
        helper.make_node("Relu", ["m2"], ["m2r"]),
        helper.make_node("MatMul", ["m2r", "shared_w"], ["m3"], name="shared_b"),
        _constant("left_w", left),
        helper.make_node("MatMul", ["left_w", "m3"], ["m4"], name="left"),
        helper.make_node("Flatten", ["m4"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "gemm_w", "gemm_b"], ["y"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "oneshot_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 7])],
        initializer=[
            numpy_helper.from_array(shared, "shared_w"),
            numpy_helper.from_array(gemm, "gemm_w"),
            numpy_helper.from_array(np.zeros(7, np.float32), "gemm_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"conv1d": conv, "right": right.T, "shared_a": shared.T, "left": left, "head": gemm}


def _run(path, x: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    for name in outputs or []:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"x": x}), strict=True))


def test_reader_finds_constant_cast_identity_shared_conv1d_and_both_matmul_sides(tmp_path):
    expected = build_model(tmp_path / "m.onnx")
    graph = read_onnx(tmp_path / "m.onnx")
    found = {w.layer.name: w for w in graph.weights}
    assert list(found) == ["conv1d", "right", "shared_a", "left", "head"]  # the shared weight once
    for name, weight in expected.items():
        assert np.array_equal(found[name].layer.weight, weight), name
    assert found["conv1d"].layer.dtype == "float16" and found["conv1d"].constant_node is not None
    assert [u.node_name for u in found["shared_a"].uses] == ["shared_a", "shared_b"]
    assert found["left"].uses[0].kind == "cols" and not found["left"].transposed
    assert found["right"].transposed and found["right"].constant_node is not None
    assert graph.skipped == []


def test_reader_lists_what_it_does_not_pack(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    w = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
        helper.make_node("Add", ["a", "w"], ["b"], name="add"),  # the weight is read by a non-layer too
        helper.make_node("MatMul", ["b", "b"], ["c"], name="computed"),
        helper.make_node("MatMul", ["c", "v"], ["y"], name="ok"),
    ]
    v = numpy_helper.from_array(np.ones((3, 2), np.float32), "v")
    graph = helper.make_graph(
        nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [w, v]
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "s.onnx"))
    found = read_onnx(tmp_path / "s.onnx")
    assert [w.layer.name for w in found.weights] == ["ok"]
    reasons = {s["name"]: s["reason"] for s in found.skipped}
    assert "computed" in reasons["computed"] and "add" in reasons["mm"]


def test_write_back_replaces_weights_at_their_sources(tmp_path):
    build_model(tmp_path / "m.onnx")
    graph = read_onnx(tmp_path / "m.onnx")
    new = {w.layer.name: np.full(w.layer.weight.shape, 0.5, np.float32) for w in graph.weights}
    model = write_onnx_weights(graph.model, new, graph)
    onnx.save(model, str(tmp_path / "w.onnx"))
    again = read_onnx(tmp_path / "w.onnx")
    assert [w.layer.name for w in again.weights] == list(new)
    for w in again.weights:
        assert np.all(w.layer.weight == 0.5) and w.layer.dtype == graph.by_name()[w.layer.name].layer.dtype
    # nothing else changed: same nodes, names, initializers other than the weights
    assert [n.name for n in model.graph.node] == [n.name for n in graph.model.graph.node]
    assert np.array_equal(numpy_helper.to_array(model.graph.initializer[2]), np.zeros(7, np.float32))


def test_exact_reconstruction_is_least_squares_and_beats_masking():
    rng = np.random.default_rng(1)
    K, N, M = 24, 10, 400
    X_d = rng.normal(size=(M, K)) @ rng.normal(size=(K, K))
    X_p = X_d + 0.1 * rng.normal(size=(M, K))  # upstream pruning moved the inputs
    W = rng.normal(size=(K, N))
    stats = GramStats(W)
    stats.add(X_p, X_d)
    mask = rng.random((K, N)) < 0.5
    solved, solver = reconstruct(W, mask, stats, damping=0.0)
    assert solver == "exact"
    for j in range(N):
        k = mask[:, j]
        expected = np.linalg.lstsq(X_p[:, k], X_d @ W[:, j], rcond=None)[0]
        np.testing.assert_allclose(solved[k, j], expected, rtol=1e-3, atol=1e-4)
    assert np.all(solved[~mask] == 0)
    sweep, solver = reconstruct(W, mask, stats, damping=0.0, exact_flops=0)
    assert solver == "obs-sweep" and np.all(sweep[~mask] == 0)
    masked = relative_error(W * mask, W, stats)
    exact = relative_error(solved, W, stats)
    assert exact < masked and exact <= relative_error(sweep, W, stats)
    direct = np.linalg.norm(X_p @ solved - X_d @ W) / np.linalg.norm(X_d @ W)
    assert exact == pytest.approx(direct, rel=1e-3)


@pytest.mark.parametrize("method", ["tight", "nm", "nm-permuted", "column-combining", "unstructured"])
def test_prune_onnx_calibrated_every_method(tmp_path, method):
    from tightcompress.pipeline.oneshot import prune_onnx

    build_model(tmp_path / "m.onnx")
    x = np.random.default_rng(2).normal(size=(64, 4, 10)).astype(np.float32)
    plain = prune_onnx(tmp_path / "m.onnx", tmp_path / "p.onnx", method=method, rate=1.6)
    report = prune_onnx(
        tmp_path / "m.onnx", tmp_path / "c.onnx", method=method, rate=1.6, calibration={"x": x}
    )
    assert report["compression_rate"] >= 1.6 - 1e-9 and plain["relative_output_error"] is None
    dense = _run(tmp_path / "m.onnx", x)["y"]
    errors = {}
    for name in ("p", "c"):
        y = _run(tmp_path / f"{name}.onnx", x)["y"]
        errors[name] = np.linalg.norm(y - dense) / np.linalg.norm(dense)
    assert report["relative_output_error"] == pytest.approx(errors["c"], rel=1e-3, abs=1e-6)
    assert errors["c"] < errors["p"]  # calibration + reconstruction beat |w| alone
    for layer in report["layers"]:
        assert layer["relative_output_error"] <= layer["relative_output_error_unreconstructed"] + 1e-12


def test_prune_module_in_place_keeps_classes():
    torch = pytest.importorskip("torch")
    from torch import nn

    from tightcompress.pipeline.oneshot import prune_module

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    dense = nn.Sequential(*[m for m in model])  # same modules: compare against a deep copy below
    import copy

    dense = copy.deepcopy(model)
    x = torch.randn(48, 3, 6, 6)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=16)
    report = prune_module(model, method="nm", rate=1.5, calibration=loader)
    assert type(model[0]) is nn.Conv2d and type(model[3]) is nn.Linear
    with torch.no_grad():
        err = float((model(x) - dense(x)).norm() / dense(x).norm())
    assert report["relative_output_error"] == pytest.approx(err, rel=1e-3)
    assert report["compression_rate"] >= 1.5 - 1e-9
    kept = sum(int((m.weight != 0).sum()) for m in (model[0], model[3]))
    assert kept < sum(m.weight.numel() for m in (dense[0], dense[3]))


def test_pack_calibration_then_unpack_onnx_matches_to_dense(tmp_path, monkeypatch, capsys):
    import tightcompress as tc

    monkeypatch.chdir(tmp_path)
    build_model(tmp_path / "m.onnx")
    x = np.random.default_rng(3).normal(size=(32, 4, 10)).astype(np.float32)
    np.savez("calib.npz", x=x)
    options = ["--method", "nm", "--group", "4", "--height", "2", "--tile", "8"]
    assert (
        main(["pack", "m.onnx", *options, "--calibration", "calib.npz", "--json", "r.json", "--out", "p.st"])
        == 0
    )
    report = json.loads(open("r.json").read())
    assert report["relative_output_error"] is not None and report["calibration_samples"] == 32
    assert main(["unpack", "p.st", "out.onnx", "--onnx", "m.onnx"]) == 0
    packed = tc.load_packed("p.st")
    graph = read_onnx("out.onnx")
    uses = {w.layer.name: w.uses for w in graph.weights}
    activations = {u.activation for us in uses.values() for u in us}
    nodes = {n.name: n for n in graph.model.graph.node}
    values = _run("out.onnx", x, outputs=[*activations, *(nodes[n].output[0] for n in nodes if n)])
    from tightcompress.pipeline.calibration import _use_rows

    for w in graph.weights:
        for use in w.uses:
            rows = _use_rows(use, values[use.activation], w.layer)[0]
            out = rows @ packed[w.layer.name].to_dense().astype(np.float32)
            got = values[nodes[use.node_name].output[0]]
            if use.kind == "conv":
                got = got.transpose(0, 2, 1).reshape(-1, got.shape[1])
            elif use.kind == "cols":
                got = np.swapaxes(got, -1, -2).reshape(-1, got.shape[-2])
            else:
                got = got.reshape(-1, got.shape[-1])
            np.testing.assert_allclose(got, out, rtol=1e-3, atol=1e-3)
    # another file (same graph, other weights) is refused in one line, nothing written
    build_model(tmp_path / "other.onnx", seed=9)
    capsys.readouterr()
    assert main(["unpack", "p.st", "o2.onnx", "--onnx", "other.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the file that was packed" in err[0]
    assert not (tmp_path / "o2.onnx").exists()


def test_calibration_with_wrong_names_or_shapes_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    build_model(tmp_path / "m.onnx")
    for bad in ({"input": np.zeros((4, 4, 10), np.float32)}, {"x": np.zeros((4, 5, 10), np.float32)}):
        np.savez("bad.npz", **bad)
        capsys.readouterr()
        code = main(
            [
                "pack",
                "m.onnx",
                "--method",
                "nm",
                "--height",
                "4",
                "--calibration",
                "bad.npz",
                "--json",
                "r.json",
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "expected x of shape (n, 4, 10)" in err[0]
        assert not (tmp_path / "r.json").exists()


def test_non_finite_activations_are_one_line(tmp_path):
    from tightcompress.pipeline.oneshot import prune_onnx

    build_model(tmp_path / "m.onnx")
    x = np.full((4, 4, 10), 3e38, np.float32)  # finite inputs, the activations overflow
    with pytest.raises(TightCompressError, match="non-finite activations"):
        prune_onnx(tmp_path / "m.onnx", tmp_path / "p.onnx", method="nm", rate=1.5, calibration={"x": x})
    assert not (tmp_path / "p.onnx").exists()


def test_sparsify_and_pack_weight_take_calibration():
    torch = pytest.importorskip("torch")
    import copy

    from torch import nn

    import tightcompress as tc

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 16))
    dense = copy.deepcopy(model)
    x = torch.randn(40, 3, 6, 6)
    options = {"method": "nm", "group": 4, "height": 2, "tile": 8}
    report = tc.sparsify_(model, calibration=x, **options)
    assert report["relative_output_error"] is not None and len(report["layers"]) == 2
    with torch.no_grad():
        err = float((model(x) - dense(x)).norm() / dense(x).norm())
    assert err == pytest.approx(report["relative_output_error"], rel=1e-3)
    plain = copy.deepcopy(dense)
    tc.sparsify_(plain, **options)
    with torch.no_grad():
        assert err < float((plain(x) - dense(x)).norm() / dense(x).norm())
    # one layer: its input rows
    rows = torch.randn(200, 12) @ torch.randn(12, 12)
    weight = torch.randn(5, 12)
    packed = tc.pack_weight(weight, calibration=rows, **options)
    kept = torch.from_numpy(packed.to_dense())
    target = rows @ weight.T
    assert float((rows @ kept - target).norm()) < float((rows @ (weight.T * (kept != 0)) - target).norm())
    with pytest.raises(TightCompressError, match=r"input rows \(M, 12\)"):
        tc.pack_weight(weight, calibration=rows[:, :5], **options)


def test_pack_without_calibration_unpacks_to_onnx_too(tmp_path, monkeypatch, capsys):
    import tightcompress as tc

    monkeypatch.chdir(tmp_path)
    build_model(tmp_path / "m.onnx")
    options = ["--method", "nm", "--group", "4", "--height", "2", "--tile", "8"]
    assert main(["pack", "m.onnx", *options, "--json", "r.json", "--out", "p.st"]) == 0
    assert main(["unpack", "p.st", "out.onnx", "--onnx", "m.onnx"]) == 0
    packed = tc.load_packed("p.st")
    for w in read_onnx("out.onnx").weights:
        expected = packed[w.layer.name].to_dense().T.reshape(w.layer.weight.shape)
        assert np.array_equal(w.layer.weight.astype(np.float32), expected.astype(np.float32)), w.layer.name
    np.save("w.npy", np.ones((4, 3), np.float32))
    assert main(["pack", "w.npy", *options, "--json", "r2.json", "--out", "q.st"]) == 0
    capsys.readouterr()
    assert main(["unpack", "q.st", "o.onnx", "--onnx", "m.onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not packed from an ONNX file" in err[0]


def _correlated_rows(K: int, M: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibration rows and 500 new rows of one correlated input distribution."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((K, K)) / np.sqrt(K) + np.eye(K)
    return (rng.standard_normal((M, K)) @ mix).astype(np.float32), rng.standard_normal((500, K)) @ mix


def test_the_solve_is_validated_on_held_out_rows_and_never_overfits():
    """With fewer calibration rows than inputs the plain solve fits the rows and not the layer (worse than
    no solve on new inputs); the validated one keeps the weights as they are there, solves where the rows
    determine the layer, and its held-out error predicts the error on new inputs."""
    from tightcompress.prune.reconstruct import GramStats, reconstruct, relative_error, validated_reconstruct

    rng = np.random.default_rng(0)
    for K, M, underdetermined in [(256, 64, True), (256, 2000, False)]:
        rows, new = _correlated_rows(K, M, seed=K + M)
        W = rng.standard_normal((K, 16))
        mask = rng.random(W.shape) < 0.5
        stats = GramStats(W)
        for start in range(0, M, 37):  # batches of any size: one row in five is held out
            stats.add(rows[start : start + 37], rows[start : start + 37])
        assert stats.heldout is not None and stats.heldout.rows == M // 5

        def new_error(kept: np.ndarray, new: np.ndarray = new, W: np.ndarray = W) -> float:
            return float(np.linalg.norm(new @ kept - new @ W) / np.linalg.norm(new @ W))

        plain, _ = reconstruct(W, mask, stats)
        kept, solver, heldout = validated_reconstruct(W, mask, stats)
        masked = W * mask
        if underdetermined:
            assert relative_error(plain, W, stats) < 0.5 * new_error(plain)  # it fits the rows only
            assert new_error(plain) > new_error(masked)
            assert solver.startswith("none") and np.array_equal(kept, masked)
        else:
            assert solver.startswith("exact") and new_error(kept) < 0.9 * new_error(masked)
            assert heldout == pytest.approx(new_error(kept), rel=0.1)
