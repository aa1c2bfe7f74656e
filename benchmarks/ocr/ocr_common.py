"""What the OCR tasks share (ddddocr_task.py and ppocr_task.py): fonts, lines, CTC collapse, scores, files.

Both tasks score a recognition model on text lines rendered here with known strings. The fonts are the ones
matplotlib ships (DejaVu and STIX), so every machine with the same matplotlib and Pillow renders the same
pixels, whatever fonts the system has.
"""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFont


@dataclass(frozen=True)
class Line:
    """One rendered line: the string drawn and the RGB image it was drawn on."""

    text: str
    image: Image.Image


def disjoint_lines(n: int, line_at: Callable[[int], Line], taken: Collection[str]) -> tuple[Line, ...]:
    """The first `n` lines `line_at(0), line_at(1), ...` whose strings are not in `taken` (the calibration
    stream, kept apart from the evaluation set)."""
    if n < 1:
        raise ValueError(f"calibration needs at least one sample, got n={n}")
    lines: list[Line] = []
    index = 0
    while len(lines) < n:
        line = line_at(index)
        index += 1
        if line.text not in taken:
            lines.append(line)
    return tuple(lines)


@functools.lru_cache(maxsize=1)
def fonts_dir() -> Path:
    """matplotlib's bundled TrueType fonts (DejaVu, STIX, Computer Modern)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=256)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """The font file `name` from `fonts_dir()` at `size` pixels."""
    return ImageFont.truetype(str(fonts_dir() / name), size)


def collapse_ctc(indices: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Greedy CTC on best-class indices (N, T): collapse repeats, drop the blank 0, map through `classes`."""
    if indices.ndim != 2:
        raise ValueError(f"expected best-class indices (N, T), got shape {indices.shape}")
    texts = []
    for row in indices:
        keep = np.ones(row.shape, dtype=bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != 0
        texts.append("".join(classes[i] for i in row[keep] if 0 <= i < len(classes)))
    return texts


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit costs) between two strings."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def score(predictions: Sequence[str], truths: Sequence[str]) -> dict:
    """Exact-line and character accuracy (percent) of `predictions` against `truths`.

    Character accuracy is `100 * max(0, 1 - sum(edit distance) / sum(len(truth)))` over the set.
    """
    if len(predictions) != len(truths) or not truths:
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} truths")
    exact = sum(p == t for p, t in zip(predictions, truths, strict=True))
    edits = sum(edit_distance(p, t) for p, t in zip(predictions, truths, strict=True))
    chars = sum(len(t) for t in truths)
    return {
        "exact_line_accuracy": 100.0 * exact / len(truths),
        "character_accuracy": 100.0 * max(0.0, 1.0 - edits / chars),
        "lines": len(truths),
        "exact_lines": exact,
        "edits": edits,
        "characters": chars,
    }


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` as an uncompressed `.npz` at `path` atomically (never half-written); return the path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the calibration file must end in .npz")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def machine() -> str:
    """One line naming the CPU, the cores this process may use and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"
