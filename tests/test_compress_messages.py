"""The smaller points of issue 27: `compress --help`'s example uses `--out-dir`, the exit-3 line names
the rate flag the run used, and the README's one-shot `sparsify_` example says it needs fine-tuning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_pipeline_cli import _user_model
from tightcompress.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_help_example_uses_out_dir(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "--out-dir OUT" in text and "--out OUT" not in text


@pytest.mark.slow
def test_exit_3_names_the_bit_rate_flag(tmp_path: Path, monkeypatch, capsys) -> None:
    """A subword run at --bit-rate 8 with one fine-tuning step loses accuracy: the advice is a lower
    --bit-rate, the flag given, not --rate."""
    _user_model(tmp_path, monkeypatch, train_steps=40)
    args = ["compress", "--checkpoint", "mynet.pt", "--model", "mynet:MyNet", "--model-args", '{"width": 6}']
    args += ["--data", "digits", "--out-dir", "OUT", "--granularity", "subword", "--bit-rate", "8"]
    args += ["--tile", "8", "--batch-size", "2", "--quiet", "--prune-rounds", "1", "--prune-steps", "1"]
    args += ["--finetune-steps", "1", "--format-rounds", "1", "--max-drop", "0"]
    assert main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a lower --bit-rate" in err[0], err
    assert "--rate" not in err[0].replace("--bit-rate", "")
    report = json.loads((tmp_path / "OUT" / "report.json").read_text())
    assert report["accuracy"]["dense"] > report["accuracy"]["packed_finetuned"]


def test_readme_one_shot_example_says_it_needs_fine_tuning() -> None:
    text = README.read_text()
    start = text.index("report = tightcompress.sparsify_(model, method=")
    after = re.sub(r"\s+", " ", text[start : start + 900])
    assert "sparsity=0.9" in after
    assert "Fine-tune it, or pass calibration data" in after
