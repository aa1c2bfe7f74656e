"""One packed-file story (issue 27): `save_model` writes the format `pack --out` writes, so `unpack`,
`simulate`, `export` and `report --packed` read a saved model with every layer; the `save_model` files of
release 0.1.0 (kept in `tests/data/release_0_1_0/`, written by its `make.py`) are read whole by every
command and by `load_model_`; a packed file given where a checkpoint goes is a one-line error."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import tightcompress as tc
from tightcompress.cli.main import main
from tightcompress.format.io import load_packed
from tightcompress.nn import PackedConv2d, PackedLinear
from torch_models import MIXED_PACKED, MixedLayers, masked_dense, randomize_bn

RELEASE = Path(__file__).resolve().parent / "data" / "release_0_1_0"
OPTIONS = {"method": "tight", "group": 8, "height": 2, "tile": 8, "sparsity": 0.6, "iterations": 2000}
# sparsify_'s report names: a grouped conv is packed per group
MIXED_LAYERS = {"stem", "grouped[0]", "grouped[1]", "grouped[2]", "pw", "hidden", "head"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, tuple[torch.nn.Module, torch.nn.Module]]:
    """A MixedLayers packed by `sparsify_` and written by today's `save_model`, with its original."""
    torch.manual_seed(0)
    original = randomize_bn(MixedLayers()).eval()
    model = copy.deepcopy(original)
    report = tc.sparsify_(model, **OPTIONS)
    assert {layer["name"] for layer in report["layers"]} == MIXED_LAYERS
    path = tmp_path_factory.mktemp("saved") / "model.packed.safetensors"
    tc.save_model(model, path)
    return path, (original, model)


def _run(*argv) -> int:
    return main([str(a) for a in argv])


def _format(path: Path) -> str:
    with safe_open(str(path), framework="numpy") as handle:
        return (handle.metadata() or {})["format"]


def test_save_model_writes_the_signed_packed_format(saved):
    path, (_, model) = saved
    assert _format(path) == "tightcompress.packed"
    layers = load_packed(path)  # checksums and every layer's structure verified
    assert set(layers) == MIXED_LAYERS
    assert layers["grouped[1]"].info["source"] == {
        "weight": "grouped.weight", "shape": [24, 4, 3, 3], "groups": 3, "group_index": 1,
    }  # fmt: skip
    assert (layers["hidden"].to_dense() == model.hidden.packed.to_dense()).all()


@pytest.mark.parametrize("which", ["today", "release-0.1.0"])
def test_every_command_reads_a_saved_model_whole(saved, tmp_path, capsys, which):
    """`simulate` simulates every packed layer, `unpack` gives a state_dict that loads into the dense class
    and computes what the packed model does, `export` writes every layer, `report --packed` draws one."""
    if which == "today":
        path, (_, model) = saved
    else:
        path = RELEASE / "save_model_mixed.safetensors"
        model = tc.load_model_(MixedLayers().eval(), path)
    simulated = tmp_path / "sim.json"
    assert _run("simulate", path, "--vectors", "4", "--no-vs-cc", "--json", simulated, "--quiet") == 0
    report = json.loads(simulated.read_text())
    assert {layer["name"] for layer in report["layers"]} == MIXED_LAYERS
    (depthwise,) = report["notes"]["skipped_layers"]  # left dense by sparsify_: said, not silently dropped
    assert depthwise["name"] == "dw.weight" and "not simulated" in depthwise["reason"]
    out = capsys.readouterr().out
    assert "7 layer(s)" in out and "skipped dw.weight" in out

    assert _run("unpack", path, tmp_path / "back.pt", "--quiet") == 0
    dense = MixedLayers().eval()
    dense.load_state_dict(torch.load(tmp_path / "back.pt"), strict=True)
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(dense(x), model(x))

    assert _run("export", path, "--out-dir", tmp_path / "rtl", "--vectors", "2", "--quiet") == 0
    manifest = json.loads((tmp_path / "rtl" / "manifest.json").read_text())
    assert len(manifest["layers"]) == len(MIXED_LAYERS)

    argv = ("report", simulated, "--packed", path, "--layer", "grouped[2]", "--html", tmp_path / "r.html")
    assert _run(*argv, "--quiet") == 0


@pytest.mark.parametrize("name", ["save_model_mixed", "save_model_mixed_bf16"])
def test_release_0_1_0_files_load_and_compute_what_they_did(tmp_path, name):
    """`load_model_` reads the files of the previous release bit for bit; saved again they are today's
    format and load to the same model."""
    expected = torch.load(RELEASE / "mixed_outputs.pt")
    dtype = torch.bfloat16 if name.endswith("bf16") else torch.float32
    model = tc.load_model_(MixedLayers().eval().to(dtype), RELEASE / f"{name}.safetensors")
    packed = {fqn for fqn, m in model.named_modules() if isinstance(m, PackedLinear | PackedConv2d)}
    assert packed == MIXED_PACKED
    with torch.no_grad():
        assert torch.equal(model(expected["x"].to(dtype)), expected[name])
    tc.save_model(model, tmp_path / "again.safetensors")
    assert _format(tmp_path / "again.safetensors") == "tightcompress.packed"
    again = tc.load_model_(MixedLayers().eval().to(dtype), tmp_path / "again.safetensors")
    with torch.no_grad():
        assert torch.equal(again(expected["x"].to(dtype)), expected[name])


def test_load_model_reads_a_pack_out_file_of_the_models_checkpoint(tmp_path):
    """A `pack --out` file (release 0.1.0's, of `mixed_dense.pt`) goes into the model with each layer's own
    geometry, and computes what its unpacked state_dict computes in the dense model."""
    path = RELEASE / "pack_mixed.safetensors"
    model = tc.load_model_(MixedLayers().eval(), path)
    assert {fqn for fqn, m in model.named_modules() if isinstance(m, PackedLinear | PackedConv2d)} == (
        MIXED_PACKED
    )
    assert _run("unpack", path, tmp_path / "back.pt", "--quiet") == 0
    dense = MixedLayers().eval()
    dense.load_state_dict(torch.load(tmp_path / "back.pt"), strict=True)
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x), dense(x))


def test_save_load_round_trip_equals_the_masked_dense_model(saved):
    path, (original, model) = saved
    fresh = tc.load_model_(MixedLayers().eval(), path)
    x = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
        assert torch.equal(fresh(x), masked_dense(original, model)(x))
    assert fresh.stem.padding_mode == "reflect" and fresh.stem.dilation == (2, 2)


@pytest.mark.parametrize("source", ["today", "release-0.1.0", "pack-out"])
def test_a_packed_file_where_a_checkpoint_goes_is_a_one_line_error(saved, tmp_path, capsys, source):
    """`pack` read a saved model as a checkpoint of one dense layer and exited 0; now it says what the file
    is and what reads it, writes nothing."""
    path = {
        "today": saved[0],
        "release-0.1.0": RELEASE / "save_model_mixed.safetensors",
        "pack-out": RELEASE / "pack_mixed.safetensors",
    }[source]
    local = tmp_path / path.name
    shutil.copy(path, local)
    out = tmp_path / "r.json"
    code = _run("pack", local, "--json", out, "--quiet")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "is a tightcompress packed file" in lines[0] and "unpack" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [local.name]


def test_load_model_refuses_a_file_of_another_model(saved):
    path, _ = saved
    with pytest.raises(tc.TightCompressError, match="the model has no layer 'stem'"):
        tc.load_model_(torch.nn.Sequential(torch.nn.Linear(16, 20)), path)
