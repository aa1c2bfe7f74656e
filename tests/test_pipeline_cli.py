"""`tightcompress compress` end to end on a tiny model and image folder, and its bad-input errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from test_pipeline_data import make_folder
from tightcompress.cli.main import main
from tightcompress.format.io import load_packed
from tightcompress.readers.matrices import weight_to_matrix

TINY = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.pool(torch.relu(self.conv(x)))).flatten(1))


class Other(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
"""

FAST = ["--prune-rounds", "1", "--prune-epochs", "1", "--finetune-epochs", "1", "--tile", "8", "--quiet"]
FAST += ["--max-drop", "100"]  # a tiny model on 12 images: accuracy is not what these tests check
FAST += ["--batch-size", "2"]  # three batches or more per epoch: no small-data warning

MYNET = """
import torch
from torch import nn


class MyNet(nn.Module):
    def __init__(self, width, n_classes=2):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
"""


def _user_model(root: Path, monkeypatch, *, train_steps: int = 0) -> Path:
    """`mynet.py` (a class with a constructor argument) and `mynet.pt` in `root`, the current directory."""
    monkeypatch.chdir(root)
    monkeypatch.delitem(sys.modules, "mynet", raising=False)
    (root / "mynet.py").write_text(MYNET)
    namespace: dict = {}
    exec(MYNET, namespace)
    torch.manual_seed(0)
    model = namespace["MyNet"](width=6)
    data = make_folder(root / "digits", n_per_class=12)
    if train_steps:  # a dense model that is right on this data, so compression has accuracy to lose
        from tightcompress.pipeline.data import ImageFolderData
        from tightcompress.pipeline.train import train

        train(model, ImageFolderData(data), epochs=train_steps, lr=0.05, batch_size=8, quiet=True)
    torch.save(model.state_dict(), root / "mynet.pt")
    return data


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    model_file = tmp_path / "tiny_model.py"
    model_file.write_text(TINY)
    namespace: dict = {}
    exec(TINY, namespace)
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(namespace["Tiny"]().state_dict(), checkpoint)
    return {"model": model_file, "ckpt": checkpoint, "data": make_folder(tmp_path / "imgs"), "root": tmp_path}


def _args(s: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "compress",
        "--checkpoint",
        str(s["ckpt"]),
        "--model",
        f"{s['model']}:Tiny",
        "--data",
        str(s["data"]),
        "--out",
        str(out),
        *FAST,
        *extra,
    ]


@pytest.mark.parametrize("method", ["tight", "nm", "column-combining"])
def test_compress_writes_fitting_outputs(setup: dict[str, Path], method: str) -> None:
    out = setup["root"] / f"out-{method}"
    assert main(_args(setup, out, "--method", method, "--rate", "3")) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["compression_rate"] >= 3.0
    assert report["total"]["dropped_nnz"] == 0
    assert set(report["accuracy"]) == {"dense", "unstructured", "prune_to_fit", "packed_finetuned"}
    packed = load_packed(out / "packed.safetensors")
    state = torch.load(out / "model.pt", weights_only=True)
    assert "conv.weight_orig" not in state  # masks folded in
    for name, layer in packed.items():
        kept = layer.to_dense()
        assert (kept != 0).sum() == (weight_to_matrix(state[f"{name}.weight"].numpy()) != 0).sum()
        assert torch.allclose(
            torch.from_numpy(kept), torch.from_numpy(weight_to_matrix(state[f"{name}.weight"].numpy()))
        )
    # unpack gives back the whole state_dict (weights from the slots, biases carried in the file)
    assert main(["unpack", str(out / "packed.safetensors"), str(out / "back.pt")]) == 0
    back = torch.load(out / "back.pt", weights_only=True)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_unreachable_rate_is_one_line_and_writes_nothing(setup: dict[str, Path], capsys) -> None:
    out = setup["root"] / "never"
    assert main(_args(setup, out, "--rate", "1000")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best reachable" in err[0]
    assert not (out / "report.json").exists() and not (out / "model.pt").exists()


def test_bad_checkpoints_and_classes(setup: dict[str, Path], capsys) -> None:
    out = setup["root"] / "bad"
    bad = setup["root"] / "corrupt.pt"
    bad.write_bytes(b"garbage")
    cases = [
        (["--checkpoint", str(setup["root"] / "missing.pt")], "checkpoint not found"),
        (["--checkpoint", str(bad)], "not a readable PyTorch checkpoint"),
        (["--model", f"{setup['model']}:Other"], "does not fit"),
        (["--model", f"{setup['model']}:Nope"], "has no 'Nope'"),
        (["--model", f"{setup['model']}:torch"], "not a torch.nn.Module class"),
        (["--data", str(setup["root"] / "nodata")], "image folder not found"),
    ]
    for override, message in cases:
        args = _args(setup, out, "--rate", "2")
        for key, value in zip(override[::2], override[1::2], strict=True):
            args[args.index(key) + 1] = value
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not out.exists() or not any(out.glob("*.json"))


def test_resume_reuses_finished_stages(setup: dict[str, Path]) -> None:
    out = setup["root"] / "res"
    assert main(_args(setup, out, "--rate", "2")) == 0
    first = json.loads((out / "report.json").read_text())
    stages = sorted(p.name for p in (out / ".stages").iterdir())
    assert any(s.startswith("unstructured-") for s in stages) and any(
        s.startswith("fit-tight") for s in stages
    )
    (out / "report.json").unlink()
    assert main([*_args(setup, out, "--rate", "2"), "--resume"]) == 0
    assert json.loads((out / "report.json").read_text())["accuracy"] == first["accuracy"]


def test_interrupt_leaves_stages_and_resume_finishes(setup: dict[str, Path], monkeypatch, capsys) -> None:
    import tightcompress.pipeline.compress as pipeline
    import tightcompress.pipeline.stages as stages

    out = setup["root"] / "interrupted"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    real = pipeline.format_stage
    monkeypatch.setattr(pipeline, "format_stage", boom)
    assert main(_args(setup, out, "--rate", "2")) == 130
    assert not (out / "report.json").exists() and not (out / "model.pt").exists()
    assert list((out / ".stages").glob("unstructured-*.pt"))
    assert not list((out / ".stages").glob("*.tmp"))
    monkeypatch.setattr(pipeline, "format_stage", real)
    calls = []
    monkeypatch.setattr(stages, "train", lambda *a, **k: calls.append(k["desc"]) or 0.0)
    assert main([*_args(setup, out, "--rate", "2"), "--resume"]) == 0
    assert (out / "report.json").exists()
    assert calls and not any(d.startswith("prune") for d in calls)  # step 1 was not redone, step 2 was


def test_user_model_by_module_name_from_the_current_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    """`--model mynet:MyNet` finds ./mynet.py, `--model-args` builds it; steps budget; small-data warning."""
    _user_model(tmp_path, monkeypatch)
    args = ["compress", "--checkpoint", "mynet.pt", "--model", "mynet:MyNet", "--model-args", '{"width": 6}']
    args += ["--data", "digits", "--out", "OUT", "--rate", "2", "--batch-size", "8", "--device", "auto"]
    args += ["--prune-steps", "2", "--finetune-steps", "3", *FAST[:-2]]  # FAST without its batch size
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "tight: rate" in captured.out
    assert "fewer than 3 batches of 8" in captured.err  # 19 training images
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    assert report["config"]["batch_size"] == 8 and report["compression_rate"] >= 2
    assert report["config"]["finetune_epochs"] == 3 / 3  # 3 steps of ceil(19 / 8) = 3 per epoch
    assert main([*args[:6], "{oops", *args[7:]]) == 2
    assert "--model-args is not JSON" in capsys.readouterr().err
    assert main([*args[:4], "nomodule:MyNet", *args[5:]]) == 2
    assert "cannot import 'nomodule'" in capsys.readouterr().err


def test_too_small_budget_exits_nonzero_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """One fine-tuning step at 8x loses the trained model's accuracy: report written, exit 3, one line."""
    _user_model(tmp_path, monkeypatch, train_steps=40)
    args = [
        "compress",
        "--checkpoint",
        "mynet.pt",
        "--model",
        "mynet.py:MyNet",
        "--model-args",
        '{"width": 6}',
    ]
    args += ["--data", "digits", "--out", "OUT", "--rate", "8", "--tile", "8", "--batch-size", "2", "--quiet"]
    args += ["--prune-rounds", "1", "--prune-steps", "1", "--finetune-steps", "1", "--format-rounds", "1"]
    assert main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "more than --max-drop 5" in err[0] and "--finetune-steps" in err[0], err
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    assert report["accuracy"]["dense"] - report["accuracy"]["packed_finetuned"] > 5


def test_log_lines_go_to_the_current_stderr(capsys) -> None:
    """The handler follows sys.stderr: a later capture (another test, a redirect) gets the lines, and a
    stderr closed since is never written to."""
    import io
    import logging

    from tightcompress.cli.compress import setup_logging

    first = io.StringIO()
    sys.stderr, saved = first, sys.stderr
    try:
        setup_logging(False)
        first.close()  # the stream of the day the handler was made is gone
        sys.stderr = io.StringIO()
        logging.getLogger("tightcompress").warning("a line")  # (frontier sets its children's levels)
        assert sys.stderr.getvalue() == "a line\n"
    finally:
        sys.stderr = saved
