"""A subword-packed file (`compress --granularity subword`) read back by `unpack` and `simulate`: the
weights and the hardware figures are the subword layers', not those of a 2K x N word matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_pipeline_cli import _args, setup  # noqa: F401  (the fixture)
from tightcompress.cli.main import main
from tightcompress.format.io import load_packed


@pytest.fixture
def subword_out(setup: dict[str, Path]) -> Path:  # noqa: F811
    out = setup["root"] / "out-subword"
    assert main(_args(setup, out, "--granularity", "subword", "--bit-rate", "3")) == 0
    assert all(p.method == "tight-subword" for p in load_packed(out / "packed.safetensors").values())
    return out


def test_unpack_gives_back_the_models_weights(setup: dict[str, Path], subword_out: Path) -> None:  # noqa: F811
    assert main(["unpack", str(subword_out / "packed.safetensors"), str(subword_out / "back.pt")]) == 0
    back = torch.load(subword_out / "back.pt", weights_only=True)
    state = torch.load(subword_out / "model.pt", weights_only=True)
    assert set(back) == set(state)
    for key, tensor in state.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key


def test_simulate_matches_the_compress_report(setup: dict[str, Path], subword_out: Path) -> None:  # noqa: F811
    report = json.loads((subword_out / "report.json").read_text())
    sim_path = subword_out / "sim.json"
    argv = ["simulate", str(subword_out / "packed.safetensors"), "--model", f"{setup['model']}:Tiny"]
    argv += ["--input-shape", "1x1x8x8", "--json", str(sim_path), "--check-bitexact", "--quiet"]
    assert main(argv) == 0
    simulated = json.loads(sim_path.read_text())
    for key in ("cycles", "dense_cycles", "energy_pj", "dense_energy_pj"):
        assert simulated["total"][key] == pytest.approx(report["hardware"][key]), key
    assert simulated["total"]["bitexact"] is True
    by_name = {layer["name"]: layer for layer in simulated["layers"]}
    for layer in report["layers"]:
        assert by_name[layer["name"]]["cycles"] == layer["cycles"]
        assert by_name[layer["name"]]["weight_bits"] == 4  # subword slots, not 8-bit words
