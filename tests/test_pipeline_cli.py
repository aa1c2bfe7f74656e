"""`tightcompress compress` end to end on a tiny model and image folder, and its bad-input errors."""

from __future__ import annotations

import json
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
        (["--model", f"{setup['model']}:Nope"], "not a torch.nn.Module class"),
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
