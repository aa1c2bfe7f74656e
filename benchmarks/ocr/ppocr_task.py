"""PP-OCRv4's text recognition CNN (the `rapidocr_onnxruntime` 1.4.4 wheel) scored on rendered text lines.

The model is `models/ch_PP-OCRv4_rec_infer.onnx` inside the installed `rapidocr_onnxruntime` 1.4.4 wheel:
PaddleOCR's PP-OCRv4 recognition network (Chinese and Latin), exported by paddle2onnx, 2.69 M float32
weights all held in `Constant` nodes (no initializers). Input `x` (N, 3, 48, W), output `softmax_11.tmp_0`
(N, T, 6625): per-step class probabilities for CTC, index 0 the blank. The character list is in the model's
metadata (`character`, one per line); rapidocr prepends "blank" and appends " ".

Preprocessing and decoding are rapidocr's own `TextRecognizer` (read from
`rapidocr_onnxruntime/ch_ppocr_rec/text_recognize.py` and `utils.py`), reproduced with onnxruntime directly
so that a pruned copy of the model can be scored:
- the image is a BGR uint8 array, as `cv2.imread` gives it; lines are sorted by width/height and read in
  batches of `rec_batch_num` = 6; a batch's width is `int(48 * max(320 / 48, widest ratio in the batch))`;
- each image is resized with `cv2.resize` (bilinear) to height 48 and width `ceil(48 * w / h)` (at most the
  batch's width), scaled to `(x / 255 - 0.5) / 0.5`, channels first, and padded with zeros on the right;
- greedy CTC: argmax per step, repeats collapsed, the blank dropped, the rest mapped through the list.
The lines rendered here are never wider than 320 / 48, so every batch is 320 wide and the inputs do not
depend on how the lines are batched: the model input of a set is one (n, 3, 48, 320) array.
`tests/test_ppocr_task.py` checks that these predictions are the strings `TextRecognizer` itself returns.

The lines are cropped text lines as a text detector hands them to the recogniser: 2 to 4 words of 2 to 7
characters separated by single spaces, drawn with one of matplotlib's DejaVu and STIX faces (`FONT_FILES`:
the same pixels on every machine with the same matplotlib and Pillow), dark ink on a light background with
seeded variations (text height, margins, a rotation of at most 1.5 degrees, pixel noise, a slight blur).
The alphabet is digits, Latin letters and common punctuation less the characters whose glyph is another
character's or differs from it only by size in these fonts (0 O o, 1 I l |, c C, s S, u U, v V, w W, x X,
z Z, k K, p P, and ' ` " which are hard to tell apart): a line that a person cannot read unambiguously has no
ground truth. The model also knows full-width forms of ASCII punctuation (",", "，"); predictions are
compared after NFKC normalisation, which maps those to ASCII (the truths are ASCII already).

Metrics (both in percent, higher is better): exact-line accuracy, and character accuracy
`100 * max(0, 1 - sum(edit distance) / sum(len(truth)))`.

The evaluation set (400 lines, seed 0) and the rendering parameters were fixed on the dense model before any
pruned model was scored. The calibration lines come from another stream and never repeat an evaluation string.

    python benchmarks/ocr/ppocr_task.py                       # dense model: metrics as JSON
    python benchmarks/ocr/ppocr_task.py PRUNED.onnx           # any model with the same input and output
    python benchmarks/ocr/ppocr_task.py --check-rapidocr      # agreement with rapidocr's TextRecognizer
    python benchmarks/ocr/ppocr_task.py --write-calibration calib.npz --samples 128 --seed 1
    python benchmarks/ocr/ppocr_task.py --dump-images DIR --lines 20   # look at what is scored

As `--eval ppocr_task:evaluate` (with `benchmarks/ocr` on `PYTHONPATH`) it is the user's metric for
`tightcompress frontier --onnx "$(python benchmarks/ocr/ppocr_task.py --model-path)"`.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ocr_common import Line, collapse_ctc, disjoint_lines, font, score, write_npz

WHEEL = "rapidocr_onnxruntime"
WHEEL_VERSION = "1.4.4"
MODEL_FILE = "models/ch_PP-OCRv4_rec_infer.onnx"
INPUT_NAME = "x"
INPUT_HEIGHT = 48
MIN_WIDTH = 320  # rapidocr's rec_img_shape [3, 48, 320]: a batch is at least this wide
BATCH = 6  # rapidocr's rec_batch_num
MAX_RATIO = MIN_WIDTH / INPUT_HEIGHT
LETTERS = "ABDEFGHJLMNQRTYabdefghijmnqrty"
DIGITS = "23456789"
PUNCTUATION = "-.,:;!?()/%&+=#$@"
PLAIN = DIGITS + LETTERS
ALPHABET = PLAIN + PUNCTUATION
PUNCTUATION_SHARE = 0.15  # of the characters drawn; the others are digits and letters, uniformly
WORDS = (2, 3, 4)
WORD_LENGTHS = (2, 3, 4, 5, 6, 7)
EVAL_LINES = 400
EVAL_SEED = 0
CALIBRATION_SEED = 1
_EVAL_STREAM = 2310
_CALIBRATION_STREAM = 2311
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
)
TEXT_HEIGHTS = (14, 30)  # pixels, the font size's range (the canvas is resized to height 48 by the model)
MAX_ROTATION = 1.5  # degrees, the whole line
NOISE_SIGMA = (4.0, 14.0)
MAX_BLUR = 1.1


def model_path() -> Path:
    """PP-OCRv4's recognition model inside the installed rapidocr_onnxruntime wheel."""
    import importlib.util

    spec = importlib.util.find_spec(WHEEL)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{WHEEL} is not installed: pip install {WHEEL}=={WHEEL_VERSION}")
    path = Path(spec.origin).parent / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {WHEEL}")
    return path


def model_classes(onnx_path: str | os.PathLike) -> tuple[str, ...]:
    """The CTC classes as rapidocr builds them: "blank", the metadata's `character` lines, then " "."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    if "character" not in metadata:
        raise ValueError(f"{onnx_path}: no 'character' list in the model's metadata")
    return ("blank", *metadata["character"].splitlines(), " ")


def _text(rng: np.random.Generator) -> str:
    words = []
    for _ in range(int(rng.choice(WORDS))):
        length = int(rng.choice(WORD_LENGTHS))
        marks = rng.random(length) < PUNCTUATION_SHARE
        plain = rng.integers(0, len(PLAIN), size=length)
        signs = rng.integers(0, len(PUNCTUATION), size=length)
        chars = [PUNCTUATION[s] if m else PLAIN[p] for m, p, s in zip(marks, plain, signs, strict=True)]
        words.append("".join(chars))
    return " ".join(words)


def render_line(text: str, rng: np.random.Generator) -> Image.Image:
    """Draw `text` as a cropped text line (RGB); every random choice comes from `rng`.

    The canvas is the text's box plus seeded margins, made taller when needed so that its width / height
    never exceeds 320 / 48 (rapidocr's batch width then never grows past 320).
    """
    face = FONT_FILES[int(rng.integers(len(FONT_FILES)))]
    size = int(rng.integers(TEXT_HEIGHTS[0], TEXT_HEIGHTS[1] + 1))
    typeface = font(face, size)
    left, _, right, _ = typeface.getbbox(text)
    ascent, descent = typeface.getmetrics()
    margin_x = int(rng.integers(2, max(3, size // 2)))
    margin_top = int(rng.integers(1, max(2, size // 4)))
    margin_bottom = int(rng.integers(1, max(2, size // 4)))
    width = (right - left) + 2 * margin_x
    height = ascent + descent + margin_top + margin_bottom
    extra = max(0, math.ceil(width / (MAX_RATIO - 0.05)) - height)
    pad_top = extra // 2
    height += extra
    background = tuple(int(v) for v in rng.integers(190, 256, size=3))
    ink = tuple(int(v) for v in rng.integers(0, 100, size=3))
    image = Image.new("RGB", (width, height), background)
    ImageDraw.Draw(image).text((margin_x - left, margin_top + pad_top), text, font=typeface, fill=ink)
    angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=background)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, float(rng.uniform(*NOISE_SIGMA)), size=pixels.shape)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, MAX_BLUR))))


def _line(stream: int, seed: int, index: int) -> Line:
    rng = np.random.default_rng([stream, seed, index])
    text = _text(rng)
    return Line(text, render_line(text, rng))


@functools.lru_cache(maxsize=4)
def evaluation_lines(n: int = EVAL_LINES, seed: int = EVAL_SEED) -> tuple[Line, ...]:
    """The evaluation set: `n` lines from the evaluation stream (deterministic)."""
    return tuple(_line(_EVAL_STREAM, seed, i) for i in range(n))


def calibration_lines(n: int = 128, seed: int = CALIBRATION_SEED) -> tuple[Line, ...]:
    """`n` lines from the calibration stream whose strings are none of the evaluation set's."""
    taken = {line.text for line in evaluation_lines()}
    return disjoint_lines(n, lambda index: _line(_CALIBRATION_STREAM, seed, index), taken)


def bgr(image: Image.Image) -> np.ndarray:
    """The image as `cv2.imread` returns it for a PNG of it: (H, W, 3) uint8, blue first."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def resize_norm(image: np.ndarray, max_ratio: float) -> np.ndarray:
    """rapidocr's `TextRecognizer.resize_norm_img`: (3, 48, int(48 * max_ratio)) float32 in [-1, 1].

    Resized (bilinear) to height 48 keeping the aspect ratio, then padded with zeros on the right.
    """
    import cv2

    width = int(INPUT_HEIGHT * max_ratio)
    h, w = image.shape[:2]
    resized_w = min(width, math.ceil(INPUT_HEIGHT * (w / float(h))))
    resized = cv2.resize(image, (resized_w, INPUT_HEIGHT)).astype("float32")
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    padded = np.zeros((3, INPUT_HEIGHT, width), dtype=np.float32)
    padded[:, :, :resized_w] = resized
    return padded


def batches(images: Sequence[np.ndarray], batch: int = BATCH) -> list[tuple[np.ndarray, np.ndarray]]:
    """rapidocr's batching: (indices, model input) per batch of `batch` images sorted by width / height."""
    ratios = np.array([img.shape[1] / float(img.shape[0]) for img in images])
    order = np.argsort(ratios)
    out = []
    for begin in range(0, len(images), batch):
        chosen = order[begin : begin + batch]
        max_ratio = max(MAX_RATIO, float(ratios[chosen].max()))
        out.append((chosen, np.stack([resize_norm(images[i], max_ratio) for i in chosen])))
    return out


def preprocess_lines(lines: Sequence[Line]) -> np.ndarray:
    """The model input for `lines` in their order: (len(lines), 3, 48, 320) float32.

    Equal to what rapidocr's batches hold, because no rendered line is wider than 320 / 48.
    """
    images = [bgr(line.image) for line in lines]
    for line, image in zip(lines, images, strict=True):
        if image.shape[1] / image.shape[0] > MAX_RATIO:
            raise ValueError(f"line {line.text!r} is wider than {MIN_WIDTH} / {INPUT_HEIGHT}")
    return np.stack([resize_norm(image, MAX_RATIO) for image in images])


def normalise(text: str) -> str:
    """What is compared: NFKC (full-width forms become ASCII), spaces removed (PaddleOCR's `ignore_space`)."""
    return unicodedata.normalize("NFKC", text).replace(" ", "")


class Recognizer:
    """An onnxruntime session on a PP-OCRv4-shaped model, decoding with the model's own character list."""

    def __init__(self, onnx_path: str | os.PathLike, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.session.get_inputs()]
        if INPUT_NAME not in names:
            raise ValueError(f"{onnx_path}: no input named {INPUT_NAME!r} (inputs: {names})")
        self.classes = model_classes(onnx_path)

    def probabilities(self, inputs: np.ndarray, batch: int = 50) -> np.ndarray:
        """The model's output (N, T, C) for inputs (N, 3, 48, W), read `batch` at a time."""
        run = self.session.run
        parts = [run(None, {INPUT_NAME: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
        return np.concatenate(parts)

    def read(self, inputs: np.ndarray, batch: int = 50) -> list[str]:
        """The strings read from inputs (N, 3, 48, W), decoded as rapidocr does (not normalised)."""
        return collapse_ctc(self.probabilities(inputs, batch).argmax(axis=2), self.classes)


@functools.lru_cache(maxsize=4)
def _evaluation_inputs(n: int, seed: int) -> tuple[np.ndarray, tuple[str, ...]]:
    lines = evaluation_lines(n, seed)
    inputs = preprocess_lines(lines)
    inputs.setflags(write=False)
    return inputs, tuple(line.text for line in lines)


def evaluate_metrics(
    onnx_path: str | os.PathLike, *, lines: int = EVAL_LINES, seed: int = EVAL_SEED, threads: int = 1
) -> dict:
    """Exact-line and character accuracy (percent) of the model at `onnx_path` on the evaluation set."""
    inputs, truths = _evaluation_inputs(lines, seed)
    predictions = [normalise(p) for p in Recognizer(onnx_path, threads=threads).read(inputs)]
    return score(predictions, [normalise(t) for t in truths])


def evaluate(onnx_path: str | os.PathLike) -> float:
    """Exact-line accuracy in percent on the 400-line evaluation set (the frontier's `--eval`)."""
    return float(evaluate_metrics(onnx_path)["exact_line_accuracy"])


def calibration(n: int = 128, seed: int = CALIBRATION_SEED) -> dict[str, np.ndarray]:
    """Model inputs for calibration, keyed by input name: {'x': (n, 3, 48, 320) float32}."""
    return {INPUT_NAME: preprocess_lines(calibration_lines(n, seed))}


def write_calibration(path: str | os.PathLike, n: int = 128, seed: int = CALIBRATION_SEED) -> Path:
    """Write `calibration(n, seed)` as an `.npz` at `path` atomically; return the path."""
    if Path(path).suffix != ".npz":
        raise ValueError(f"{path}: the calibration file must end in .npz")
    return write_npz(path, calibration(n, seed))


def rapidocr_predictions(lines: Sequence[Line], onnx_path: str | os.PathLike | None = None) -> list[str]:
    """What rapidocr's own `TextRecognizer` reads for each line's BGR image (its config, 1 thread)."""
    from rapidocr_onnxruntime.ch_ppocr_rec.text_recognize import TextRecognizer

    config = {
        "intra_op_num_threads": 1,
        "inter_op_num_threads": 1,
        "use_cuda": False,
        "use_dml": False,
        "model_path": str(onnx_path or model_path()),
        "rec_img_shape": [3, INPUT_HEIGHT, MIN_WIDTH],
        "rec_batch_num": BATCH,
    }
    results, _ = TextRecognizer(config)([bgr(line.image) for line in lines])
    return [text for text, _ in results]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score a model, check agreement with rapidocr, write calibration or example images."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", nargs="?", help="model to score (default: the dense PP-OCRv4 model)")
    parser.add_argument("--lines", type=int, default=EVAL_LINES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-path", action="store_true", help="print the dense model's path and exit")
    parser.add_argument("--check-rapidocr", action="store_true", help="compare with TextRecognizer")
    parser.add_argument("--write-calibration", metavar="NPZ")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    parser.add_argument("--dump-images", metavar="DIR")
    parser.add_argument("--errors", action="store_true", help="list the lines read wrong")
    args = parser.parse_args(argv)
    try:
        if args.model_path:
            print(model_path())
            return 0
        if args.write_calibration:
            path = write_calibration(args.write_calibration, args.samples, args.seed)
            shape = (args.samples, 3, INPUT_HEIGHT, MIN_WIDTH)
            print(f"wrote {path}: {INPUT_NAME} of shape {shape}, seed {args.seed}")
            return 0
        if args.dump_images:
            out = Path(args.dump_images)
            out.mkdir(parents=True, exist_ok=True)
            truths = []
            for i, line in enumerate(evaluation_lines(args.lines)):
                line.image.save(out / f"{i:04d}.png")
                truths.append(f"{i:04d}\t{line.text}\n")
            (out / "truths.txt").write_text("".join(truths))
            print(f"wrote {args.lines} images to {out}")
            return 0
        onnx_path = args.onnx or model_path()
        metrics = evaluate_metrics(onnx_path, lines=args.lines, threads=args.threads)
        lines = evaluation_lines(args.lines)
        if args.errors or args.check_rapidocr:
            inputs = _evaluation_inputs(args.lines, EVAL_SEED)[0]
            ours = Recognizer(onnx_path, threads=args.threads).read(inputs)
        if args.errors:
            pairs = [(line.text, normalise(p)) for line, p in zip(lines, ours, strict=True)]
            metrics["errors"] = [(t, p) for t, p in pairs if p != normalise(t)]
        if args.check_rapidocr:
            theirs = rapidocr_predictions(lines, onnx_path)
            disagree = [(line.text, a, b) for line, a, b in zip(lines, ours, theirs, strict=True) if a != b]
            metrics["rapidocr_agreement"] = 100.0 * (1 - len(disagree) / len(lines))
            metrics["rapidocr_disagreements"] = disagree[:20]
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"model": str(onnx_path), **metrics}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
