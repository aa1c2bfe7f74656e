"""The PP-OCRv4 benchmark's task (benchmarks/ocr/ppocr_task.py): rendering, preprocessing, decoding, scoring.

The first tests need NumPy, Pillow, matplotlib's fonts, OpenCV (rapidocr's resize; skipped without it) and
onnx/onnxruntime for a stand-in model. The `slow` ones need the `rapidocr_onnxruntime` 1.4.4 wheel (the
benchmark's model, not a dependency of the tool; CI does not install it) and skip without it: they check that
the harness reads exactly what rapidocr's own `TextRecognizer` reads, and the dense model's score.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "ocr"))
import ppocr_task as task

needs_rapidocr = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr_onnxruntime 1.4.4 is not installed",
)


def test_lines_are_seeded_independent_of_the_set_size_and_never_wider_than_320_by_48():
    first = task._line(task._EVAL_STREAM, 0, 3)
    again = task._line(task._EVAL_STREAM, 0, 3)
    other_seed = task._line(task._EVAL_STREAM, 1, 3)
    assert first.text == again.text
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert first.text != other_seed.text
    for line in task.evaluation_lines(60):
        width, height = line.image.size
        assert width / height <= task.MAX_RATIO and line.image.mode == "RGB"
        words = line.text.split(" ")
        assert len(words) in task.WORDS and all(len(w) in task.WORD_LENGTHS for w in words)
        assert set(line.text.replace(" ", "")) <= set(task.ALPHABET)
    assert task.evaluation_lines(60) == task.evaluation_lines(task.EVAL_LINES)[:60]


def test_alphabet_leaves_out_look_alike_characters():
    assert not set(task.ALPHABET) & set("0Oo1Il|" + "cCsSuUvVwWxXzZkKpP" + "'`\"")
    assert len(set(task.ALPHABET)) == len(task.ALPHABET)


def test_calibration_is_disjoint_from_the_evaluation_set_and_written_atomically(tmp_path):
    pytest.importorskip("cv2")
    evaluation = {line.text for line in task.evaluation_lines()}
    assert not {line.text for line in task.calibration_lines(64, seed=0)} & evaluation
    arrays = task.calibration(4, seed=1)
    assert list(arrays) == [task.INPUT_NAME]
    x = arrays[task.INPUT_NAME]
    assert x.shape == (4, 3, 48, 320) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    path = task.write_calibration(tmp_path / "calib.npz", 4, seed=1)
    with np.load(path) as stored:
        assert list(stored) == ["x"] and np.array_equal(stored["x"], x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz"]
    with pytest.raises(ValueError, match=r"\.npz"):
        task.write_calibration(tmp_path / "calib.bin", 4)
    with pytest.raises(ValueError, match="at least one"):
        task.calibration(0)


def test_resize_norm_is_rapidocrs_resize_scale_and_right_padding():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(24, 100, 3), dtype=np.uint8)
    image[:, :, 0] = 255  # blue channel first, as cv2.imread gives it: stays channel 0
    out = task.resize_norm(image, task.MAX_RATIO)
    width = math.ceil(48 * 100 / 24)  # 200
    assert out.shape == (3, 48, 320) and out.dtype == np.float32
    expected = (cv2.resize(image, (width, 48)).astype(np.float32).transpose(2, 0, 1) / 255 - 0.5) / 0.5
    assert np.array_equal(out[:, :, :width], expected)
    assert np.all(out[0, :, :width] == 1.0)
    assert np.all(out[:, :, width:] == 0.0)
    wide = task.resize_norm(rng.integers(0, 256, size=(10, 200, 3), dtype=np.uint8), 10.0)
    assert wide.shape == (3, 48, 480) and not np.all(wide[:, :, 479] == 0.0)


def test_batches_follow_rapidocr_and_the_rendered_lines_do_not_depend_on_them():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(32, w, 3), dtype=np.uint8) for w in (300, 50, 100, 400, 80, 60, 70)]
    batches = task.batches(images, batch=3)
    assert [list(idx) for idx, _ in batches] == [[1, 5, 6], [4, 2, 0], [3]]
    assert [x.shape[-1] for _, x in batches] == [
        320,
        int(48 * 300 / 32),
        int(48 * 400 / 32),
    ]  # wide lines widen a batch
    lines = task.evaluation_lines(13)
    whole = task.preprocess_lines(lines)
    for indices, x in task.batches([task.bgr(line.image) for line in lines]):
        assert np.array_equal(whole[indices], x)


def test_ctc_collapse_normalise_and_score():
    classes = ("blank", "a", "b", "，", " ")
    indices = np.array([[1, 1, 0, 1, 2, 2, 4, 3], [0, 0, 0, 0, 0, 0, 0, 0]])
    assert task.collapse_ctc(indices, classes) == ["aab ，", ""]
    assert task.normalise("a b，c！") == "ab,c!"
    metrics = task.score(["ab", "ac"], ["ab", "ab"])
    assert metrics["exact_line_accuracy"] == 50.0 and metrics["character_accuracy"] == 75.0


def _stand_in(path: Path, characters: str) -> Path:
    """A model with rapidocr's input and output names: probabilities (N, T=320, C=48) = x[:, 0] transposed."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Gather", ["x", "zero"], ["first"], axis=1),
        helper.make_node("Transpose", ["first"], ["softmax_11.tmp_0"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "stand_in",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 48, "w"])],
        [helper.make_tensor_value_info("softmax_11.tmp_0", TensorProto.FLOAT, ["n", "w", 48])],
        [helper.make_tensor("zero", TensorProto.INT64, [], [0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    helper.set_model_props(model, {"character": "\n".join(characters)})
    onnx.save(model, str(path))
    return path


def test_recognizer_decodes_with_the_models_own_character_list(tmp_path):
    characters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrst"  # 46: classes blank + 46 + " " = 48
    path = _stand_in(tmp_path / "stand_in.onnx", characters)
    classes = task.model_classes(path)
    assert classes[0] == "blank" and classes[-1] == " " and len(classes) == 48
    x = np.zeros((3, 3, 48, 320), dtype=np.float32)
    for sample, steps in enumerate([[1, 1, 2, 0, 2, 47, 3], [], [46]]):
        for t, c in enumerate(steps):
            x[sample, 0, c, t] = 1.0  # class c wins at step t; elsewhere the blank (index 0) ties and wins
    reader = task.Recognizer(path)
    assert reader.read(x, batch=2) == ["ABB C", "", "t"]
    with pytest.raises(ValueError, match="no input named 'x'"):
        bad = tmp_path / "bad.onnx"
        import onnx

        model = onnx.load(str(path))
        model.graph.input[0].name = "image"
        model.graph.node[0].input[0] = "image"
        onnx.save(model, str(bad))
        task.Recognizer(bad)


def test_missing_wheel_is_one_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == task.WHEEL else real(name, *a)
    )
    with pytest.raises(FileNotFoundError, match=r"pip install rapidocr_onnxruntime==1\.4\.4"):
        task.model_path()
    assert task.main(["--model-path"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rapidocr_onnxruntime is not installed" in err


@pytest.mark.slow
@needs_rapidocr
def test_predictions_are_rapidocrs_own_text_recognizer():
    lines = task.evaluation_lines(40)
    ours = task.Recognizer(task.model_path()).read(task.preprocess_lines(lines))
    assert ours == task.rapidocr_predictions(lines)
    assert (
        sum(task.normalise(p) == task.normalise(line.text) for p, line in zip(ours, lines, strict=True)) >= 28
    )


@pytest.mark.slow
@needs_rapidocr
def test_dense_score_is_in_its_band():
    metrics = task.evaluate_metrics(task.model_path())
    assert metrics["lines"] == 400
    assert 83.0 <= metrics["exact_line_accuracy"] <= 91.0
    assert 97.0 <= metrics["character_accuracy"] <= 99.8
