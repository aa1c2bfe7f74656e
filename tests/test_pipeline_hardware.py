"""Pipeline glue to the hardware model: input vectors per layer and the per-layer simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tightcompress as tc
from tightcompress.hw import simulate_packed
from tightcompress.pipeline.hardware import simulate_model, vectors_per_layer
from tightcompress.pipeline.models import DemoCNN
from tightcompress.readers.matrices import weight_to_matrix


def test_vectors_are_output_pixels_for_convs_and_samples_for_linear():
    assert vectors_per_layer(DemoCNN(), torch.zeros(1, 1, 28, 28)) == {
        "features.0": 14 * 14, "features.3": 7 * 7, "features.6": 4 * 4, "features.9": 4 * 4, "head": 1,
    }  # fmt: skip
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    assert vectors_per_layer(model, torch.zeros(5, 3, 8, 8)) == {"0": 36, "2": 1}


def test_simulate_model_sums_the_layers():
    torch.manual_seed(0)
    model = DemoCNN()
    packed = {
        name: tc.pack(
            weight_to_matrix(layer.weight.detach().numpy()),
            method="tight",
            group=8,
            height=2,
            tile=32,
            sparsity=0.9,
            iterations=1000,
        )
        for name, layer in [("features.3", model.features[3]), ("features.6", model.features[6])]
    }
    vectors = {"features.3": 49, "features.6": 16}
    layers, total = simulate_model(packed, vectors, (32, 32))
    for name, p in packed.items():
        assert layers[name]["cycles"] == simulate_packed(p, array=(32, 32), m=vectors[name])["cycles"]
    assert total["cycles"] == sum(layer["cycles"] for layer in layers.values())
    assert total["speedup"] == pytest.approx(total["dense_cycles"] / total["cycles"])
    assert np.isfinite(total["energy_gain"]) and total["energy_gain"] > 1.0


def test_model_topology_rows_reproduce_each_layers_gemm():
    from tightcompress.pipeline.hardware import model_topology

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # a SCALE-Sim conv row
        nn.Conv2d(8, 8, 3, dilation=2),  # dilation: the GEMM-equivalent row
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    )
    rows = model_topology(model, (1, 3, 16, 16))
    assert (rows["0"].ifmap_height, rows["0"].m, rows["0"].k, rows["0"].n) == (17, 64, 27, 8)
    assert (rows["1"].filter_height, rows["1"].m, rows["1"].k) == (1, 16, 72)  # M x K, filter 1 x K
    assert (rows["3"].m, rows["3"].channels, rows["3"].filters) == (1, 128, 5)
    assert {name: row.m for name, row in model_topology(model, (4, 3, 16, 16)).items()} == {
        "0": 256, "1": 64, "3": 4,
    }  # fmt: skip
    conv1d = model_topology(nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1)), (1, 3, 9))["0"]
    assert (conv1d.ifmap_height, conv1d.ifmap_width, conv1d.m, conv1d.k) == (1, 11, 5, 9)
