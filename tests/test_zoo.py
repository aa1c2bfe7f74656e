"""The model zoo: layer shapes against published multiply-add counts, the demo CNN, seeding, `pack --zoo`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.zoo import ZOO, init_weight, zoo_layers, zoo_matrices

# Multiply-adds per 224x224 image as published by torchvision's model docs (GFLOPS column = GMACs).
PUBLISHED_GMACS = {"vgg16": 15.47, "resnet18": 1.81, "resnet50": 4.09, "mobilenetv2": 0.30}
# Weights (conv + linear, no biases / batch norm) of the torchvision models.
PUBLISHED_WEIGHTS = {"resnet18": 11_678_912, "resnet50": 25_502_912, "vgg16": 138_344_128}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_zoo_macs_match_published(name):
    layers = zoo_layers(name)
    gmacs = sum(layer.macs for layer in layers) / 1e9
    assert gmacs == pytest.approx(PUBLISHED_GMACS[name], abs=0.01)
    if name in PUBLISHED_WEIGHTS:
        assert sum(int(np.prod(layer.shape)) for layer in layers) == PUBLISHED_WEIGHTS[name]


def test_layer_counts_and_kinds():
    assert len(zoo_layers("resnet50", "conv")) == 53
    assert len(zoo_layers("vgg16", "conv")) == 13
    mobilenet = zoo_layers("mobilenetv2")
    assert sum(layer.kind == "depthwise" for layer in mobilenet) == 17
    assert all(not layer.packable for layer in mobilenet if layer.kind == "depthwise")
    assert zoo_layers("resnet50")[0].out_pixels == 112 * 112
    assert zoo_layers("resnet50")[-1].out_pixels == 1


def test_demo_matches_pipeline_model():
    models = pytest.importorskip("tightcompress.pipeline.models")
    state = models.DemoCNN().state_dict()
    weights = {k: tuple(v.shape) for k, v in state.items() if k.endswith("weight") and v.ndim > 1}
    assert weights == {layer.name: layer.shape for layer in zoo_layers("demo")}


def test_unknown_zoo_name_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(TightCompressError, match="unknown zoo model"):
        zoo_layers("resnet51")
    out = tmp_path / "r.json"
    assert main(["pack", "--zoo", "resnet51", "--json", str(out)]) == 2
    assert "unknown zoo model 'resnet51'" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_seeded_init_is_deterministic_and_per_layer():
    layer = zoo_layers("resnet18")[3]
    a, b = init_weight(layer, seed=1, index=3), init_weight(layer, seed=1, index=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, init_weight(layer, seed=2, index=3))
    fan_out = layer.shape[0] * layer.shape[2] * layer.shape[3]
    assert a.std() == pytest.approx(np.sqrt(2 / fan_out), rel=0.05)


def test_checkpoint_loads_by_name_and_shape(tmp_path):
    models = pytest.importorskip("tightcompress.pipeline.models")
    torch.manual_seed(0)
    state = models.DemoCNN().state_dict()
    path = tmp_path / "demo.pt"
    torch.save(state, path)
    matrices, layers, skipped = zoo_matrices("demo", checkpoint=path)
    assert not skipped and len(layers) == 5
    w = state["features.3.weight"].numpy()
    assert np.array_equal(matrices["features.3.weight"], w.reshape(w.shape[0], -1).T)
    with pytest.raises(TightCompressError, match=r"no weight 'conv1.weight'"):
        zoo_matrices("resnet18", checkpoint=path)
    state["head.weight"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(TightCompressError, match=r"head.weight has shape"):
        zoo_matrices("demo", checkpoint=path)


def test_pack_zoo_demo_cli(tmp_path):
    out = tmp_path / "r.json"
    argv = ["pack", "--zoo", "demo", "--sparsity", "0.8", "--group", "8", "--height", "2", "--tile", "16"]
    assert main([*argv, "--iterations", "2000", "--jobs", "1", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert [layer["name"] for layer in report["layers"]] == [layer.name for layer in zoo_layers("demo")]
    assert report["layers"][0]["out_pixels"] == 14 * 14 and report["layers"][-1]["kind"] == "linear"
    assert report["notes"]["zoo"] == "demo" and report["notes"]["skipped_layers"] == []
    assert all(layer["compression_rate"] > 1 for layer in report["layers"])


def test_mobilenet_depthwise_skipped_with_note():
    matrices, layers, skipped = zoo_matrices("mobilenetv2", kinds="conv")
    assert len(skipped) == 17 and all(layer.kind == "depthwise" for layer in skipped)
    assert len(matrices) == len(layers) == 35 and all(m.shape[0] > 9 for m in matrices.values())


def test_zoo_input_exclusive(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["pack", "--json", str(out)]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert set(ZOO) == {"vgg16", "resnet18", "resnet50", "mobilenetv2", "demo"}
