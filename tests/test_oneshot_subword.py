"""Calibrated one-shot pruning at subword granularity (issue 23, tight-subword like every other method)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_oneshot import _run, build_model  # noqa: E402
from tightcompress.api import PackConfig, pack  # noqa: E402
from tightcompress.prune.reconstruct import GramStats, relative_error  # noqa: E402
from tightcompress.prune.subword import SubwordMasks, quantize_for_subwords, recompose  # noqa: E402
from tightcompress.prune.subword_reconstruct import (  # noqa: E402
    allowed_round,
    column_sweep_solve,
    dequantize,
    float_round_solve,
    masks_of,
    representable,
    subword_saliency,
    sweep_solve,
    unreconstructed,
    validated_subword_reconstruct,
)


def test_allowed_round_is_the_nearest_value_the_kept_subwords_hold():
    """Brute force: every value two signed 4-bit subwords write (16*a + b in int8), restricted to the kept
    ones; `allowed_round` is the nearest of them (ties: either neighbour)."""
    steps = np.linspace(-140.0, 130.0, 2161)
    for keep_high, keep_low in itertools.product((False, True), repeat=2):
        highs = range(-8, 8) if keep_high else [0]
        lows = range(-8, 8) if keep_low else [0]
        allowed = np.array(sorted({16 * a + b for a in highs for b in lows if -128 <= 16 * a + b <= 119}))
        got = allowed_round(steps, np.full(steps.shape, keep_high), np.full(steps.shape, keep_low))
        assert np.all(np.isin(got, allowed))
        best = np.min(np.abs(steps[:, None] - allowed[None, :]), axis=1)
        np.testing.assert_allclose(np.abs(steps - got), best, atol=1e-9)


def _correlated_layer(K: int, N: int, M: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, calibration rows and new rows of inputs with strongly correlated features (rank 8 + noise,
    as a trained network's activations are)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(8, K))
    rows = rng.normal(size=(M, 8)) @ basis + 0.3 * rng.normal(size=(M, K))
    new = rng.normal(size=(1000, 8)) @ basis + 0.3 * rng.normal(size=(1000, K))
    return rng.normal(size=(K, N)).astype(np.float32), rows.astype(np.float32), new


@pytest.mark.slow
def test_reconstruction_under_the_format_beats_none_and_stays_representable():
    """On correlated inputs the solve under the format lowers the output error on new inputs well below the
    kept subwords as they are, the GPTQ column sweep beats solving in float then rounding, every solved
    weight is one its kept subwords hold, and the held-out error predicts the error on new inputs."""
    K, N = 96, 64
    W, rows, new = _correlated_layer(K, N, 3000, seed=0)
    stats = GramStats(W)
    for start in range(0, len(rows), 250):
        stats.add(rows[start : start + 250], rows[start : start + 250])
    q, scales = quantize_for_subwords(W)
    S = subword_saliency(q, scales, stats)
    arrangement = pack(S, PackConfig(method="tight", group=32, height=8, tile=32, iterations=2000, seed=0))
    masks = masks_of(arrangement.to_dense() != 0)
    assert 0.3 < masks.high.mean() + masks.low.mean() < 1.2  # about half of the subwords are gone

    def new_error(qq: np.ndarray) -> float:
        out = new @ dequantize(qq, scales)
        return float(np.linalg.norm(out - new @ W) / np.linalg.norm(new @ W))

    none = unreconstructed(q, masks)
    rounded = float_round_solve(W, masks, scales, stats)
    swept = sweep_solve(W, masks, scales, stats)
    columns = column_sweep_solve(W, masks, scales, stats)
    solved, solver, heldout, scores = validated_subword_reconstruct(W, q, masks, scales, stats)
    for candidate in (none, rounded, swept, columns, solved):
        assert representable(candidate, masks)
    assert new_error(columns) < 0.8 * new_error(rounded) and new_error(rounded) < 0.5 * new_error(none)
    assert new_error(swept) < new_error(none)
    assert solver.startswith("column-sweep") and new_error(solved) < 0.3 * new_error(none)
    assert heldout == pytest.approx(new_error(solved), rel=0.15)
    assert set(scores) >= {"none", "float-round, damping 0.01", "column-sweep, damping 0.01"}
    # the error is counted against the float weights: quantization alone is not free
    assert relative_error(dequantize(q, scales), W, stats) > 0


def test_without_a_useful_solve_the_kept_subwords_stay_as_they_are():
    """Fewer calibration rows than inputs (an underdetermined solve): validation keeps no solve when none
    generalises, exactly `kept_value` of the quantized weights."""
    K, N = 128, 16
    rng = np.random.default_rng(1)
    W = rng.normal(size=(K, N)).astype(np.float32)
    rows = rng.normal(size=(40, K)).astype(np.float32)
    stats = GramStats(W)
    stats.add(rows, rows)
    q, scales = quantize_for_subwords(W)
    masks = SubwordMasks(rng.random((K, N)) < 0.6, rng.random((K, N)) < 0.6)
    solved, solver, _, scores = validated_subword_reconstruct(W, q, masks, scales, stats)
    assert representable(solved, masks)
    if solver.startswith("none"):
        assert np.array_equal(solved, unreconstructed(q, masks))
    else:  # a solve won on the held-out rows: it must have beaten no solve there
        assert min(v for k, v in scores.items() if k != "none") < scores["none"]


@pytest.mark.slow
def test_prune_onnx_tight_subword_end_to_end(tmp_path, monkeypatch):
    """A small ONNX model at 2x in bits, with and without calibration: the reported output error is the one
    onnxruntime measures on the written model, calibration lowers it, every layer's packed subwords
    recompose exactly the weights written back, and the rate is the bit rate of the packed slots."""
    from tightcompress.pipeline.oneshot import prune_onnx_packed
    from tightcompress.prune.subword_pack import SubwordPacked, weight_matrix
    from tightcompress.readers.matrices import gemm_matrices
    from tightcompress.readers.onnx import read_onnx

    build_model(tmp_path / "m.onnx")
    x = np.random.default_rng(2).normal(size=(64, 4, 10)).astype(np.float32)
    dense = _run(tmp_path / "m.onnx", x)["y"]
    measured, reports = {}, {}
    for tag, calibration in (("p", None), ("c", {"x": x})):
        out = tmp_path / f"{tag}.onnx"
        result = prune_onnx_packed(
            tmp_path / "m.onnx", out, method="tight-subword", rate=2.0, calibration=calibration
        )
        report = reports[tag] = result.report
        y = _run(out, x)["y"]
        measured[tag] = float(np.linalg.norm(y - dense) / np.linalg.norm(dense))
        written, _ = gemm_matrices([w.layer for w in read_onnx(out).weights], source=str(out))
        slots = dense_bits = 0
        for name, packed in result.packed.items():
            sub = SubwordPacked.from_packed(packed)
            sub.validate()
            assert packed.method == "tight-subword" and packed.K == 2 * written[name].matrix.shape[0]
            stored = written[name].matrix  # in the source's dtype: conv1d's is float16
            np.testing.assert_array_equal(weight_matrix(packed).astype(stored.dtype), stored)
            q = recompose(packed.to_dense().astype(np.int8))
            scales = np.asarray(packed.info["scales"], dtype=np.float32)
            np.testing.assert_array_equal((q.astype(np.float32) * scales).astype(stored.dtype), stored)
            if stored.dtype == np.float32:
                np.testing.assert_array_equal(weight_matrix(packed), stored)
            slots += sub.packed_slots
            dense_bits += sub.dense_bits
        assert report["bit_rate"] == pytest.approx(dense_bits / (4 * slots))
        assert report["compression_rate"] == report["bit_rate"] >= 2.0 - 1e-9
        assert report["total"]["bit_rate_with_index"] < report["bit_rate"]
        json.dumps(report)
    # the packed file, read back, writes the same ONNX model (`unpack --onnx`)
    import tightcompress as tc
    from tightcompress.cli.main import main

    monkeypatch.chdir(tmp_path)
    tc.save_packed("c.safetensors", result.packed)
    assert main(["unpack", "c.safetensors", "u.onnx", "--onnx", "m.onnx"]) == 0
    unpacked = onnx.load("u.onnx")
    pruned = onnx.load("c.onnx")
    assert unpacked.graph == pruned.graph
    assert _run(tmp_path / "u.onnx", x)["y"] == pytest.approx(_run(tmp_path / "c.onnx", x)["y"])
    assert reports["p"]["relative_output_error"] is None
    assert reports["c"]["relative_output_error"] == pytest.approx(measured["c"], rel=1e-3, abs=1e-6)
    assert measured["c"] < measured["p"]
    for layer in reports["c"]["layers"]:
        assert layer["relative_output_error"] <= layer["relative_output_error_unreconstructed"] + 1e-12
        assert layer["bit_rate"] >= 1.0 and layer["granularity"] == "subword"


def test_one_shot_subword_is_no_longer_refused():
    from tightcompress.pipeline.oneshot import ONE_SHOT_METHODS, OneShotOptions

    assert "tight-subword" in ONE_SHOT_METHODS
    assert OneShotOptions(method="tight-subword", rate=2.0).method == "tight-subword"


def test_one_packing_config_for_every_subword_layer(tmp_path):
    """`config=`: one tight config whose G and h count subword rows; another method's config is refused."""
    from tightcompress.errors import TightCompressError
    from tightcompress.pipeline.oneshot import prune_onnx

    build_model(tmp_path / "m.onnx")
    config = PackConfig(method="tight", group=8, height=2, tile=8, iterations=500)
    report = prune_onnx(
        tmp_path / "m.onnx", tmp_path / "p.onnx", method="tight-subword", rate=None, config=config
    )
    assert {layer["option"] for layer in report["layers"]} == {"tight-subword G=8 h=2"}
    assert all(layer["group"] == 8 and layer["height"] == 2 for layer in report["layers"])
    assert report["bit_rate"] == pytest.approx(report["total"]["bit_rate"]) and report["bit_rate"] > 2.0
    with pytest.raises(TightCompressError, match="packing config is 'nm'"):
        prune_onnx(
            tmp_path / "m.onnx", tmp_path / "q.onnx", method="tight-subword", rate=None,
            config=PackConfig(method="nm", group=8, height=2, tile=8),
        )  # fmt: skip
    assert not (tmp_path / "q.onnx").exists()


def test_pack_rate_tight_subword_on_the_command_line(tmp_path, monkeypatch):
    """`pack --rate --method tight-subword --calibration` plans in bits, and the packed file unpacks to the
    same weights as the pruned ONNX the same run writes."""
    import onnx
    from onnx import numpy_helper

    from tightcompress.cli.main import main

    monkeypatch.chdir(tmp_path)
    build_model(tmp_path / "m.onnx")
    np.savez("calib.npz", x=np.random.default_rng(3).normal(size=(32, 4, 10)).astype(np.float32))
    argv = ["pack", "m.onnx", "--rate", "2", "--method", "tight-subword", "--calibration", "calib.npz",
            "--json", "r.json", "--out", "p.safetensors", "--pruned", "pruned.onnx", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["method"] == "tight-subword" and report["allocation"] == "sensitivity"
    assert report["bit_rate"] == report["compression_rate"] >= 2 - 1e-9
    assert main(["unpack", "p.safetensors", "out.onnx", "--onnx", "m.onnx", "--quiet"]) == 0

    def weights(path):  # initializers and Constant nodes alike (the model has both)
        graph = onnx.load(path).graph
        out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        return out

    unpacked, pruned = weights("out.onnx"), weights("pruned.onnx")
    assert unpacked.keys() == pruned.keys() and len(pruned) == 6
    original = weights("m.onnx")
    assert any(not np.array_equal(original[name], pruned[name]) for name in pruned)  # it was pruned
    for name in pruned:
        np.testing.assert_array_equal(unpacked[name], pruned[name], err_msg=name)
