"""The user's data checked against the model before any work (`pipeline.checks`, `pipeline.data`):
a `train/` + `val/` folder is the split, the class count equals the model's outputs, both splits name the
same classes, and a dense model at chance level stops the run. Every case is one stderr line and exit 2,
nothing written; the good case reports the dense accuracy the model really has."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.pipeline.checks import chance_bound, check_above_chance
from tightcompress.pipeline.data import ImageFolderData, split_layout

QUADNET = """
import torch
from torch import nn


class QuadNet(nn.Module):
    \"\"\"Class c = the bright quadrant c of an 8x8 image (0 top left, 1 top right, 2, 3 below).\"\"\"

    def __init__(self, n_classes=4, constant=False):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.pool(torch.relu(self.conv(x)))).flatten(1))
"""


def quadnet_state(n_classes: int = 4, *, constant: bool = False) -> dict[str, torch.Tensor]:
    """Weights that classify the quadrant images exactly (or, `constant`, always answer class 0)."""
    conv = torch.zeros(8, 1, 3, 3)
    conv[:, 0, 1, 1] = 1.0  # every channel copies the (normalised) image
    fc = torch.zeros(n_classes, 32)
    bias = torch.zeros(n_classes)
    if constant:
        bias[0] = 1.0
    else:
        for c in range(min(n_classes, 4)):
            fc[c, c::4] = 1.0  # sum over channels of quadrant c's mean
    return {"conv.weight": conv, "conv.bias": torch.zeros(8), "fc.weight": fc, "fc.bias": bias}


def quadrant_images(folder: Path, c: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = rng.integers(0, 60, size=(8, 8)).astype(np.uint8)
        r, q = divmod(c % 4, 2)
        image[4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 150
        Image.fromarray(image, mode="L").save(folder / f"{i}.png")


def split_tree(root: Path, classes: list[str], *, n: int = 10, val: str = "val", val_classes=None) -> Path:
    """`root/train/CLASS/*.png` and `root/{val}/CLASS/*.png`; class i's images are bright in quadrant i."""
    for split, names, seed in (("train", classes, 0), (val, val_classes or classes, 1)):
        for c, name in enumerate(names):
            quadrant_images(root / split / name, c, n, seed * 100 + c)
    return root


CLASSES = ["q0", "q1", "q2", "q3"]


@pytest.fixture
def user(tmp_path: Path, monkeypatch) -> Path:
    """`quadnet.py`, the right checkpoint `quad.pt`, a constant one `const.pt`, in the current directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "quadnet", raising=False)
    (tmp_path / "quadnet.py").write_text(QUADNET)
    torch.save(quadnet_state(), tmp_path / "quad.pt")
    torch.save(quadnet_state(constant=True), tmp_path / "const.pt")
    return tmp_path


def compress_args(data: str, checkpoint: str = "quad.pt", out: str = "OUT", *extra: str) -> list[str]:
    args = ["compress", "--checkpoint", checkpoint, "--model", "quadnet:QuadNet", "--data", data]
    args += ["--out-dir", out, "--rate", "2", "--tile", "8", "--batch-size", "8", "--max-drop", "100"]
    args += ["--prune-rounds", "1", "--prune-steps", "2", "--finetune-steps", "2", "--quiet", *extra]
    return args


def test_train_val_folder_is_the_split(tmp_path: Path) -> None:
    """`ROOT/train/CLASS` + `ROOT/val/CLASS`: the classes are CLASS, train on train/, evaluate on val/
    (it used to be two classes, `train` and `val`, split 80/20)."""
    root = split_tree(tmp_path / "shapes_tv", CLASSES)
    data = ImageFolderData(root)
    assert data.classes == CLASSES
    assert (data.n_train, data.n_test) == (40, 40)
    assert (data.train_root, data.test_root) == (root / "train", root / "val")
    assert all(str(p).startswith(str(root / "val")) for p in data.test_files.paths)
    for held_out in ("valid", "validation", "test"):
        other = split_tree(tmp_path / held_out, CLASSES, n=2, val=held_out)
        assert ImageFolderData(other).test_root == other / held_out


def test_split_layout_edge_cases(tmp_path: Path) -> None:
    both = split_tree(tmp_path / "both", CLASSES, n=1)
    split_tree(both, CLASSES, n=1, val="test")
    assert split_layout(both) == (both / "train", both / "val")  # val is evaluated on, test left alone
    classes_named_like_splits = tmp_path / "named"
    quadrant_images(classes_named_like_splits / "train", 0, 2, 0)  # images, not class folders: a class
    quadrant_images(classes_named_like_splits / "test", 1, 2, 1)
    assert split_layout(classes_named_like_splits) is None
    assert ImageFolderData(classes_named_like_splits).classes == ["test", "train"]
    only_train = tmp_path / "only_train"
    quadrant_images(only_train / "train" / "a", 0, 2, 0)
    with pytest.raises(TightCompressError, match="no held-out folder"):
        split_layout(only_train)
    only_val = tmp_path / "only_val"
    quadrant_images(only_val / "val" / "a", 0, 2, 0)
    with pytest.raises(TightCompressError, match="no train/ folder"):
        split_layout(only_val)
    mixed = split_tree(tmp_path / "mixed", CLASSES, n=1)
    quadrant_images(mixed / "extra" / "a", 0, 1, 0)
    with pytest.raises(TightCompressError, match=r"beside other folders \(extra\)"):
        split_layout(mixed)


def test_compress_on_a_train_val_folder_reports_the_real_dense_accuracy(user: Path, capsys) -> None:
    split_tree(user / "shapes_tv", CLASSES)
    assert main(compress_args("shapes_tv")) == 0, capsys.readouterr().err
    report = json.loads((user / "OUT" / "report.json").read_text())
    assert report["accuracy"]["dense"] == 100.0  # the model is exact on these images


def _one_line_exit_2(args: list[str], capsys, *needles: str) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    assert not Path("OUT").exists() or not any(Path("OUT").iterdir())
    return err[0]


def test_class_count_must_equal_the_models_outputs(user: Path, capsys) -> None:
    split_tree(user / "three", CLASSES[:3])
    _one_line_exit_2(compress_args("three"), capsys, "4 outputs", "3 classes", "q0, q1, q2")


def test_train_and_val_class_names_must_agree(user: Path, capsys) -> None:
    split_tree(user / "renamed", CLASSES, val_classes=["q0", "q1", "q2", "q9"])
    _one_line_exit_2(compress_args("renamed"), capsys, "only in train/: q3", "only in val/: q9")


def test_dense_accuracy_at_chance_stops_the_run(user: Path, capsys) -> None:
    split_tree(user / "shapes_tv", CLASSES)
    line = _one_line_exit_2(compress_args("shapes_tv", "const.pt"), capsys, "25.00%", "at chance level")
    assert "transforms" in line and "split" in line and "checkpoint" in line
    assert main(compress_args("shapes_tv", "const.pt", "OUT", "--allow-chance-accuracy")) in (0, 3)
    assert (user / "OUT" / "report.json").exists()


def test_chance_bound_is_a_binomial_test() -> None:
    assert chance_bound(10, 400) == pytest.approx(100 * (0.1 + 3 * (0.09 / 400) ** 0.5))
    assert check_above_chance(50.0, n_classes=10, n_test=400, source="d") is True
    with pytest.raises(TightCompressError, match="at chance level"):
        check_above_chance(11.94, n_classes=10, n_test=400, source="d")  # the figure
    with pytest.raises(TightCompressError, match="at chance level"):
        check_above_chance(0.0, n_classes=10, n_test=400, source="d")  # below chance: labels mixed up
    assert check_above_chance(50.0, n_classes=2, n_test=3, source="d") is False  # too few to judge
