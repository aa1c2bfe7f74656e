"""A real pretrained CNN with a metric that has ground truth: ddddocr's recognition model on rendered lines.

The model is `common.onnx` from the `ddddocr` 1.6.1 wheel (`ddddocr.DdddOcr(beta=True)`): a float32 ONNX file
exported by PyTorch 1.9, 13.5 M weights: 21 `Conv` (batch norm folded in, 0.93 M weights), one bidirectional
`LSTM` (hidden 512, 4.2 M) and the classifier `Gemm` (8210 x 1024, 8.4 M), CTC over 8210 classes (index 0 is
the blank). The wheel's other recognition model, `common_old.onnx` (the default `DdddOcr()`), is the same
network dynamically quantised to int8 (`ConvInteger`, `DynamicQuantizeLSTM`): there are no float weights to
prune in it, so the float one is the model here.

Preprocessing and decoding are ddddocr's own (read from `ddddocr/core/ocr_engine.py`), reproduced with
onnxruntime directly so that a pruned copy of the model can be scored fast:
- the image is resized to height 64, width `int(w * (64 / h))`, with `Image.LANCZOS`, *then* converted to
  grayscale (`convert("L")`), divided by 255 (no mean or std), shape (1, 1, 64, W);
- the output is time-major logits (T, 1, 8210); greedy CTC: argmax per step, repeated indices collapsed,
  index 0 (blank) dropped, the rest mapped through ddddocr's beta charset.
`tests/test_ocr_task.py` checks that these predictions are the strings `DdddOcr(beta=True).classification`
returns for the same PNG bytes.

The lines are rendered here with PIL from the DejaVu fonts that matplotlib ships (so every machine with the
same matplotlib and Pillow renders the same pixels), captcha-like as the model is trained for: 4 to 6
characters on a fixed 150 x 50 canvas, light seeded distortions (font and size, per-character rotation and
offsets, text and background colours, pixel noise, two thin noise lines, a slight blur). The alphabet is
the 62 letters and digits less the characters whose glyph is another character's or differs from it only
by size in these fonts (0 O o, 1 I l, c C, s S, u U, v V, w W, x X, z Z, k K, p P): a line that a person
cannot read unambiguously has no ground truth. Every line draws its own generator from (stream, seed,
index), so a set's first lines do not depend on its size.

Metrics (both in percent, higher is better):
- exact-line accuracy: the share of lines whose prediction equals the rendered string;
- character accuracy: `100 * max(0, 1 - sum(edit distance) / sum(len(truth)))` over the set, with the
  Levenshtein distance (insertions, deletions and substitutions count one each).

The evaluation set (400 lines, seed 0) was fixed on the dense model before any pruned model was scored.
The calibration lines come from another stream and never repeat an evaluation string.

    python benchmarks/ocr/ddddocr_task.py                     # dense model: metrics as JSON
    python benchmarks/ocr/ddddocr_task.py PRUNED.onnx         # any model with the same input and output
    python benchmarks/ocr/ddddocr_task.py --check-ddddocr     # agreement with DdddOcr(beta=True) itself
    python benchmarks/ocr/ddddocr_task.py --write-calibration calib.npz --samples 128 --seed 1
    python benchmarks/ocr/ddddocr_task.py --dump-images DIR --lines 20   # look at what is scored

As `--eval ddddocr_task:evaluate` (with `benchmarks/ocr` on `PYTHONPATH`) it is the user's metric for
`tightcompress frontier --onnx "$(python benchmarks/ocr/ddddocr_task.py --model-path)"`.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ocr_common import Line, collapse_ctc, disjoint_lines, edit_distance, font, score, write_npz

__all__ = ["Line", "edit_distance", "score"]  # shared with ppocr_task.py (ocr_common.py), re-exported

MODEL_FILE = "common.onnx"
INPUT_NAME = "input1"
INPUT_HEIGHT = 64
CANVAS_SIZE = (150, 50)  # width, height of a rendered line, before ddddocr's resize to height 64
ALPHABET = "23456789ABDEFGHJLMNQRTYabdefghijmnqrty"
LINE_LENGTHS = (4, 5, 6)
EVAL_LINES = 400
EVAL_SEED = 0
CALIBRATION_SEED = 1
_EVAL_STREAM = 2300
_CALIBRATION_STREAM = 2301
FONT_FILES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)
DEFAULT_BATCH = 50
BICUBIC = Image.Resampling.BICUBIC
MAX_ROTATION = 10.0  # degrees, per character
MAX_SHIFT = 2.0  # pixels, per character, up or down


def model_path() -> Path:
    """The float recognition model inside the installed ddddocr wheel (what `DdddOcr(beta=True)` loads)."""
    import importlib.util

    spec = importlib.util.find_spec("ddddocr")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("ddddocr is not installed: pip install ddddocr==1.6.1")
    path = Path(spec.origin).parent / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed ddddocr")
    return path


@functools.lru_cache(maxsize=1)
def charset() -> tuple[str, ...]:
    """ddddocr's beta charset (8210 entries, index 0 the CTC blank ''), the classes of `common.onnx`."""
    from ddddocr.models.charset_manager import CharsetManager

    manager = CharsetManager()
    manager.load_default_charset(beta=True)
    return tuple(manager.get_charset())


def _text(rng: np.random.Generator) -> str:
    length = int(rng.choice(LINE_LENGTHS))
    return "".join(ALPHABET[i] for i in rng.integers(0, len(ALPHABET), size=length))


def render_line(text: str, rng: np.random.Generator) -> Image.Image:
    """Draw `text` captcha-like on a CANVAS_SIZE RGB image; every random choice comes from `rng`."""
    width, height = CANVAS_SIZE
    font_name = FONT_FILES[int(rng.integers(len(FONT_FILES)))]
    size = int(rng.integers(26, 33))
    background = tuple(int(v) for v in rng.integers(205, 256, size=3))
    ink = tuple(int(v) for v in rng.integers(0, 90, size=3))
    typeface = font(font_name, size)
    ascent, descent = typeface.getmetrics()
    glyphs = []
    for char in text:
        left, _, right, _ = typeface.getbbox(char)
        # Every patch spans the font's ascent and descent, so the characters share one baseline and keep
        # their relative heights (the only cue between, e.g., "Y" and "y").
        patch = Image.new("L", (right - left + 8, ascent + descent + 8), 0)
        ImageDraw.Draw(patch).text((4 - left, 4), char, font=typeface, fill=255)
        angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
        glyphs.append((patch.height, patch.rotate(angle, resample=BICUBIC, expand=True)))
    gaps = rng.integers(-3, 3, size=len(text))
    total = sum(g.width for _, g in glyphs) + int(gaps[:-1].sum())
    tallest = max(g.height for _, g in glyphs)
    scale = min(1.0, (width - 8) / total, height / tallest)
    if scale < 1.0:
        glyphs = [
            (h * scale, g.resize((max(1, round(g.width * scale)), max(1, round(g.height * scale))), BICUBIC))
            for h, g in glyphs
        ]
        gaps = np.round(gaps * scale).astype(int)
        total = sum(g.width for _, g in glyphs) + int(gaps[:-1].sum())
    image = Image.new("RGB", (width, height), background)
    x = int(rng.integers(2, max(3, width - total - 2)))
    line_height = max(h for h, _ in glyphs)
    base = (height - line_height) / 2 + float(rng.uniform(-3.0, 3.0))
    ink_layer = Image.new("RGB", (width, height), ink)
    for (unrotated, glyph), gap in zip(glyphs, gaps, strict=True):
        y = round(base - (glyph.height - unrotated) / 2 + float(rng.uniform(-MAX_SHIFT, MAX_SHIFT)))
        image.paste(ink_layer.crop((0, 0, glyph.width, glyph.height)), (x, y), glyph)
        x += glyph.width + int(gap)
    draw = ImageDraw.Draw(image)
    for _ in range(2):
        colour = tuple(int(v) for v in rng.integers(60, 180, size=3))
        points = [(0, int(rng.integers(0, height))), (width, int(rng.integers(0, height)))]
        draw.line(points, fill=colour, width=1)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, 10.0, size=pixels.shape)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 0.7))))


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


def preprocess(image: Image.Image) -> np.ndarray:
    """ddddocr's preprocessing of one image: (1, 64, W) float32 in [0, 1] (see the module docstring)."""
    width = int(image.size[0] * (INPUT_HEIGHT / image.size[1]))
    resized = image.resize((width, INPUT_HEIGHT), Image.LANCZOS).convert("L")
    return (np.asarray(resized).astype(np.float32) / 255.0)[None]


def preprocess_lines(lines: Sequence[Line]) -> np.ndarray:
    """The model input for `lines`: (len(lines), 1, 64, W) float32."""
    return np.stack([preprocess(line.image) for line in lines])


def ctc_greedy_decode(logits: np.ndarray, classes: Sequence[str]) -> list[str]:
    """ddddocr's decoding of time-major logits (T, N, C): argmax, collapse repeats, drop blank 0, map."""
    if logits.ndim != 3:
        raise ValueError(f"expected time-major logits (T, N, C), got shape {logits.shape}")
    return collapse_ctc(logits.argmax(axis=2).T, classes)


class Recognizer:
    """An onnxruntime session on a ddddocr-shaped model that reads whole batches.

    The model declares batch 1 (input (1, 1, 64, W)) and a wrong output shape ([1, seqlen]; it returns
    (T, N, 8210)). The session is built from a copy whose batch axis and output shapes are left free. The
    first call checks that a batch gives each sample's own logits (against one-at-a-time runs of its first
    two samples); a model that refuses a batch or mixes samples is then read one image at a time.
    """

    def __init__(self, onnx_path: str | os.PathLike, *, threads: int = 1) -> None:
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(onnx_path))
        inputs = [i for i in model.graph.input if i.name == INPUT_NAME]
        if not inputs:
            names = [i.name for i in model.graph.input]
            raise ValueError(f"{onnx_path}: no input named {INPUT_NAME!r} (inputs: {names})")
        inputs[0].type.tensor_type.shape.dim[0].dim_param = "batch"
        for output in model.graph.output:
            output.type.tensor_type.ClearField("shape")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.batched: bool | None = None  # unknown until the first call with more than one sample

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {INPUT_NAME: chunk})[0]
        if out.ndim != 3 or out.shape[1] != len(chunk):
            raise ValueError(f"expected time-major logits (T, {len(chunk)}, C), the model gave {out.shape}")
        return out

    def _batch_works(self, chunk: np.ndarray) -> bool:
        try:
            together = self._run(chunk)
        except Exception:
            return False
        alone = np.concatenate([self._run(chunk[i : i + 1]) for i in range(min(2, len(chunk)))], axis=1)
        scale = max(1.0, float(np.abs(alone).max()))
        return bool(np.allclose(together[:, : alone.shape[1]], alone, rtol=1e-4, atol=1e-4 * scale))

    def logits(self, inputs: np.ndarray, batch: int = DEFAULT_BATCH) -> np.ndarray:
        """Time-major logits (T, N, C) for inputs (N, 1, 64, W)."""
        if self.batched is None and len(inputs) > 1:
            self.batched = self._batch_works(inputs[: min(batch, len(inputs))])
        step = batch if self.batched else 1
        return np.concatenate(
            [self._run(inputs[start : start + step]) for start in range(0, len(inputs), step)], axis=1
        )

    def read(
        self, inputs: np.ndarray, batch: int = DEFAULT_BATCH, classes: Sequence[str] | None = None
    ) -> list[str]:
        """The strings read from inputs (N, 1, 64, W), decoded as ddddocr does (default: its charset)."""
        return ctc_greedy_decode(self.logits(inputs, batch), charset() if classes is None else classes)


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
    predictions = Recognizer(onnx_path, threads=threads).read(inputs)
    return score(predictions, truths)


def evaluate(onnx_path: str | os.PathLike) -> float:
    """Exact-line accuracy in percent on the 400-line evaluation set (the frontier's `--eval`)."""
    return float(evaluate_metrics(onnx_path)["exact_line_accuracy"])


def calibration(n: int = 128, seed: int = CALIBRATION_SEED) -> dict[str, np.ndarray]:
    """Model inputs for calibration, keyed by input name: {'input1': (n, 1, 64, W) float32}."""
    return {INPUT_NAME: preprocess_lines(calibration_lines(n, seed))}


def write_calibration(path: str | os.PathLike, n: int = 128, seed: int = CALIBRATION_SEED) -> Path:
    """Write `calibration(n, seed)` as an `.npz` at `path` atomically; return the path."""
    if Path(path).suffix != ".npz":
        raise ValueError(f"{path}: the calibration file must end in .npz")
    return write_npz(path, calibration(n, seed))


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes (lossless), as a user would hand a captcha to ddddocr."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ddddocr_predictions(lines: Sequence[Line]) -> list[str]:
    """What ddddocr itself reads: `DdddOcr(beta=True).classification(png)` for every line."""
    import contextlib

    import ddddocr

    with contextlib.redirect_stdout(io.StringIO()):
        reader = ddddocr.DdddOcr(beta=True, show_ad=False)
    return [reader.classification(png_bytes(line.image)) for line in lines]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score a model, check agreement with ddddocr, write calibration or example images."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", nargs="?", help="model to score (default: the dense ddddocr model)")
    parser.add_argument("--lines", type=int, default=EVAL_LINES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-path", action="store_true", help="print the dense model's path and exit")
    parser.add_argument("--check-ddddocr", action="store_true", help="compare with DdddOcr(beta=True)")
    parser.add_argument("--write-calibration", metavar="NPZ")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    parser.add_argument("--dump-images", metavar="DIR")
    args = parser.parse_args(argv)
    if args.model_path:
        print(model_path())
        return 0
    if args.write_calibration:
        path = write_calibration(args.write_calibration, args.samples, args.seed)
        print(f"wrote {path}: {INPUT_NAME} of {args.samples} samples, seed {args.seed}")
        return 0
    if args.dump_images:
        out = Path(args.dump_images)
        out.mkdir(parents=True, exist_ok=True)
        for i, line in enumerate(evaluation_lines(args.lines)):
            line.image.save(out / f"{i:04d}_{line.text}.png")
        print(f"wrote {args.lines} images to {out}")
        return 0
    onnx_path = args.onnx or model_path()
    metrics = evaluate_metrics(onnx_path, lines=args.lines, threads=args.threads)
    if args.check_ddddocr:
        if args.onnx:
            parser.error("--check-ddddocr compares the dense model only")
        lines = evaluation_lines(args.lines)
        ours = Recognizer(onnx_path, threads=args.threads).read(preprocess_lines(lines))
        theirs = ddddocr_predictions(lines)
        disagree = [(line.text, a, b) for line, a, b in zip(lines, ours, theirs, strict=True) if a != b]
        metrics["ddddocr_agreement"] = 100.0 * (1 - len(disagree) / len(lines))
        metrics["ddddocr_disagreements"] = disagree[:20]
    print(json.dumps({"model": str(onnx_path), **metrics}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
