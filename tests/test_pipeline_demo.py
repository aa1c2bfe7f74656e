"""The demo's table helpers, and (slow) a tiny-budget `tightcompress demo --json` run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.pipeline.data import Dataset
from tightcompress.pipeline.demo import DemoConfig, format_table, row


def test_row_and_table() -> None:
    r = row("tight", 16.2, 96.5, 97.0, speedup=3.0)
    assert r == {
        "method": "tight",
        "compression_rate": 16.2,
        "accuracy": 96.5,
        "accuracy_drop": 0.5,
        "speedup": 3.0,
    }
    text = format_table([row("dense", 1.0, 97.0, 97.0), r])
    assert "tight" in text and "16.20x" in text and "+0.50" in text


def test_demo_widths_are_validated_and_build_the_model() -> None:
    with pytest.raises(TightCompressError, match="widths"):
        DemoConfig(widths=(16, 0))
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--widths", "16,x"])
    assert exit_info.value.code == 2
    data = Dataset(*(torch.zeros(1),) * 4, classes=[str(c) for c in range(10)], source="test")
    model = DemoConfig(widths=(8, 12)).model(data)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 12] and model.head.in_features == 12


@pytest.mark.slow
def test_demo_json_schema(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    args = [
        "demo",
        "--workdir",
        str(tmp_path / "cache"),
        "--json",
        str(out),
        "--quiet",
        "--dense-epochs",
        "0.3",
        "--widths",
        "8,16,32,32",
    ]
    args += ["--prune-rounds", "1", "--prune-epochs", "0.1", "--finetune-epochs", "0.1"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    methods = ["dense", "tight", "column-combining", "nm", "nm-permuted", "tight-subword"]
    assert [r["method"] for r in rows] == methods
    subword = rows[-1]
    assert subword["bit_rate"] >= 24.0 and subword["bit_rate_with_index"] < subword["bit_rate"]
    assert subword["speedup"] > 1.0 and subword["energy_gain"] > 1.0
    for r in rows[1:-1]:
        assert r["compression_rate"] >= 16.0
        assert r["accuracy_drop"] == pytest.approx(rows[0]["accuracy"] - r["accuracy"])
        assert r["bit_rate"] == pytest.approx(r["compression_rate"])
        assert r["speedup"] > 1.0 and r["energy_gain"] > 1.0  # packed layers beat dense on the array
    versus = result["tight_vs_column_combining"]
    assert versus["array"] == "32x32"
    assert [layer["name"] for layer in versus["layers"]] == [
        "features.0",
        "features.3",
        "features.6",
        "features.9",
        "head",
    ]
    assert versus["total"]["throughput_gain"] > 0 and versus["total"]["energy_gain"] > 0
    assert list((tmp_path / "cache").glob("dense-*.pt"))  # the trained model is cached
