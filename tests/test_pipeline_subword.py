"""Subword pipeline: the QAT projection and its STE, global subword pruning, and a tiny end-to-end run
(weights = scale * packed int8, bit rate reached, nothing dropped, resume, CLI outputs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from test_pipeline_cli import TINY
from tightcompress.cli.main import main
from tightcompress.errors import TightCompressError
from tightcompress.format.io import load_packed
from tightcompress.pipeline.compress import CompressConfig, compress_model, snapshot
from tightcompress.pipeline.data import Dataset
from tightcompress.pipeline.demo import run_subword_row
from tightcompress.pipeline.models import gemm_layers
from tightcompress.pipeline.subword import (
    SubwordQuant,
    attach,
    global_subword_prune,
    int_matrix,
    subword_sparsity_of,
)
from tightcompress.prune.subword import (
    channel_scales_torch,
    kept_value,
    subword_importance,
    subword_matrix,
)
from tightcompress.prune.subword_pack import SubwordPacked
from tightcompress.readers.matrices import weight_to_matrix


class Small(nn.Module):
    """Two convs and a head on 8x8 single-channel images."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c2(torch.relu(self.bn(self.c1(x)))))
        return self.fc(h.mean(dim=(2, 3)))


def tiny_data(n: int = 192, seed: int = 0) -> Dataset:
    """Three classes told apart by where a bright blob sits."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    for i, label in enumerate(y.tolist()):
        r = 1 + 2 * label
        x[i, 0, r : r + 2, 2:6] += 2.0
    cut = n * 3 // 4
    return Dataset(x[:cut], y[:cut], x[cut:], y[cut:], ["a", "b", "c"], "synthetic")


FAST = dict(
    tile=8,
    prune_rounds=2,
    prune_epochs=1.0,
    finetune_epochs=1.0,
    batch_size=32,
    plan_iterations=200,
    final_iterations=1000,
)


def SubwordConfig(**fields) -> CompressConfig:
    """The one pipeline config at subword granularity."""
    return CompressConfig(granularity="subword", rate=fields.pop("rate", 24.0), **fields)


def test_config_validation() -> None:
    assert SubwordConfig(rate=8.0).target_sparsity() == pytest.approx(1 - 1 / 8)
    assert SubwordConfig(sparsity=0.5).target_sparsity() == 0.5
    bads = ({"rate": 0.5}, {"sparsity": 1.0}, {"prune_rounds": 0}, {"tile": 0}, {"prune_epochs": -1})
    bads += ({"method": "nm"}, {"rate": None, "group": 8, "height": 2}, {"format_start_rate": 0.5})
    for bad in (*bads, {"distill": 1.5}, {"distill": -0.1}, {"distill_temperature": 0.0}):
        with pytest.raises(TightCompressError):
            SubwordConfig(**bad)
    with pytest.raises(TightCompressError, match="granularity"):
        CompressConfig(granularity="bit")
    assert SubwordConfig(seed=1).fit_key() != SubwordConfig(seed=2).fit_key()
    assert SubwordConfig(distill=0.0).prune_key() != SubwordConfig().prune_key()  # no stale resume
    assert SubwordConfig(rate=16.0).prune_key() != CompressConfig(rate=16.0).prune_key()


def test_training_projection_is_the_subword_arithmetic() -> None:
    """The quantized layer's forward value is `scale * kept_value` of its int8 (one arithmetic)."""
    rng = np.random.default_rng(0)
    q = rng.integers(-119, 120, size=(40, 6))
    mh, ml = rng.random(q.shape) < 0.6, rng.random(q.shape) < 0.6
    scale = torch.full((40, 1), 0.01, dtype=torch.float64)
    w = torch.from_numpy(q.astype(np.float64)) * scale
    got = SubwordQuant(scale, torch.from_numpy(mh), torch.from_numpy(ml))(w).detach() / scale
    np.testing.assert_allclose(got.numpy(), kept_value(q, mh, ml), atol=1e-9)
    low_only = ml & ~mh & (np.abs(q) > 7)
    np.testing.assert_array_equal(np.rint(got.numpy())[low_only], np.clip(q, -8, 7)[low_only])


def test_ste_gradient_is_gated_by_liveness() -> None:
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    scale = channel_scales_torch(w, 0)
    mh = torch.tensor([[1, 0, 0]] * 4, dtype=torch.bool)
    ml = torch.tensor([[1, 1, 0]] * 4, dtype=torch.bool)
    out = SubwordQuant(scale, mh, ml)(w)
    (out * torch.arange(12.0, dtype=torch.float64).reshape(4, 3)).sum().backward()
    expected = torch.arange(12.0, dtype=torch.float64).reshape(4, 3) * (mh | ml)
    torch.testing.assert_close(w.grad, expected)
    assert torch.all(out[:, 2] == 0)


def test_global_pruning_is_by_importance_over_layers() -> None:
    torch.manual_seed(0)
    model = Small()
    layers = gemm_layers(model)
    scales = {n: channel_scales_torch(m.weight.detach(), 0) for n, m in layers.items()}
    attach(layers, scales, {n: (torch.ones_like(m.weight, dtype=torch.bool),) * 2 for n, m in layers.items()})
    masks = global_subword_prune(layers, 0.7)
    attach(layers, scales, masks)
    assert subword_sparsity_of(layers) == pytest.approx(
        0.7, abs=2 / sum(2 * m.weight.numel() for m in layers.values())
    )
    # every kept subword is at least as important as every pruned nonzero one
    attach(layers, scales, {n: (torch.ones_like(m.weight, dtype=torch.bool),) * 2 for n, m in layers.items()})
    kept_min, pruned_max = np.inf, -np.inf
    for name, module in layers.items():
        q = int_matrix(module)
        high, low = subword_importance(q, scales[name].numpy().reshape(-1))
        for imp, mask in ((high, masks[name][0]), (low, masks[name][1])):
            keep = weight_to_matrix(mask.numpy())
            live = imp > 0
            if (keep & live).any():
                kept_min = min(kept_min, imp[keep & live].min())
            if (~keep & live).any():
                pruned_max = max(pruned_max, imp[~keep & live].max())
    assert pruned_max <= kept_min
    # monotone: pruning further never revives a subword
    attach(layers, scales, masks)
    more = global_subword_prune(layers, 0.8)
    for name in masks:
        assert not torch.any(more[name][0] & ~masks[name][0])
        assert not torch.any(more[name][1] & ~masks[name][1])


def _check_result(result, config: CompressConfig) -> None:
    rep = result.report
    assert rep["bit_rate"] >= config.rate - 1e-9
    assert rep["bit_rate"] == pytest.approx(rep["compression_rate"])
    assert rep["bit_rate_with_index"] < rep["bit_rate"]
    assert rep["total"]["dropped_nnz"] == 0
    dense_bits = sum(8 * layer["K"] * layer["N"] for layer in rep["layers"])
    slots = sum(layer["packed_slots"] for layer in rep["layers"])
    assert rep["bit_rate"] == pytest.approx(dense_bits / (4 * slots))
    layers = gemm_layers(result.model)
    for name, module in layers.items():
        assert not hasattr(module, "parametrizations")
        sp = SubwordPacked.from_packed(result.packed[name])
        sp.validate()
        q = sp.to_int8_dense().astype(np.float64)
        scales = np.asarray(result.packed[name].info["scales"])
        w = weight_to_matrix(module.weight.detach().double().numpy())
        np.testing.assert_allclose(w, q * scales, rtol=1e-6, atol=0)
        assert np.count_nonzero(subword_matrix(sp.to_int8_dense())) == np.count_nonzero(sp.packed.values)
    for key in ("dense", "quantized", "subword_pruned", "prune_to_fit", "packed_finetuned"):
        assert 0.0 <= rep["accuracy"][key] <= 100.0


def test_compress_subword_end_to_end_and_resume(tmp_path: Path) -> None:
    data = tiny_data()
    torch.manual_seed(0)
    model = Small()
    config = SubwordConfig(rate=4.0, **FAST)
    result = compress_model(model, data, config, workdir=tmp_path, quiet=True)
    _check_result(result, config)
    torch.manual_seed(0)
    resumed = compress_model(Small(), data, config, workdir=tmp_path, resume=True, quiet=True)
    assert resumed.report == json.loads(json.dumps(result.report))
    for (ka, va), (kb, vb) in zip(
        sorted(resumed.model.state_dict().items()), sorted(result.model.state_dict().items()), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def test_run_subword_row_from_dense_and_unstructured(tmp_path: Path) -> None:
    data = tiny_data(seed=1)
    torch.manual_seed(1)
    model = Small()
    dense = snapshot(model, 50.0)
    with torch.no_grad():  # a sparse start: half the weights zero
        for m in gemm_layers(model).values():
            m.weight.mul_((torch.rand_like(m.weight) < 0.5).to(m.weight.dtype))
    unstructured = snapshot(model, 40.0)
    config = SubwordConfig(**FAST)
    row, result = run_subword_row(Small(), data, dense, unstructured, bit_rate=4.0, quiet=True, config=config)
    assert set(row) == {
        "method",
        "compression_rate",
        "bit_rate",
        "bit_rate_with_index",
        "accuracy",
        "accuracy_drop",
    }
    assert row["method"] == "tight-subword" and row["bit_rate"] >= 4.0
    assert row["accuracy_drop"] == pytest.approx(50.0 - row["accuracy"])
    _check_result(result, dataclasses.replace(config, rate=4.0))
    _, result2 = run_subword_row(
        Small(), data, dense, unstructured, bit_rate=4.0, quiet=True, config=config, from_unstructured=True
    )
    for name, module in gemm_layers(result2.model).items():  # weights zero at the start stay zero
        start = unstructured.state[f"{name}.weight"] == 0
        assert torch.all(module.weight.detach()[start] == 0)
    with pytest.raises(TightCompressError):
        run_subword_row(Small(), data, dense, None, bit_rate=4.0, from_unstructured=True, config=config)


def test_unreachable_bit_rate_fails_before_training() -> None:
    with pytest.raises(TightCompressError, match="cannot be reached"):
        compress_model(Small(), tiny_data(), SubwordConfig(rate=1000.0, **FAST), quiet=True)


def test_cli_granularity_subword(tmp_path: Path, capsys) -> None:
    from test_pipeline_data import make_folder

    (tmp_path / "tiny_sw_model.py").write_text(TINY)
    namespace: dict = {}
    exec(TINY, namespace)
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save(namespace["Tiny"]().state_dict(), ckpt)
    out = tmp_path / "out"
    args = ["compress", "--checkpoint", str(ckpt), "--model", f"{tmp_path / 'tiny_sw_model.py'}:Tiny"]
    args += ["--data", str(make_folder(tmp_path / "imgs")), "--out", str(out), "--granularity", "subword"]
    args += ["--bit-rate", "4", "--tile", "8", "--prune-rounds", "1", "--prune-epochs", "1"]
    args += ["--finetune-epochs", "1", "--quiet"]
    assert main(args) == 0
    assert "tight-subword: bit rate" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "tight-subword" and report["bit_rate"] >= 4.0
    packed = load_packed(out / "packed.safetensors")
    state = torch.load(out / "model.pt", weights_only=True)
    for name, p in packed.items():
        sp = SubwordPacked.from_packed(p)
        w = weight_to_matrix(state[f"{name}.weight"].double().numpy())
        np.testing.assert_allclose(w, sp.to_int8_dense() * np.asarray(p.info["scales"]), rtol=1e-6)
    assert main([*args[:-1], "--method", "nm", "--quiet"]) == 2
    assert "tight only" in capsys.readouterr().err


def _record_training(monkeypatch) -> list[dict]:
    """Make every pipeline training step record its keyword arguments (and still train)."""
    import tightcompress.pipeline.stages as stages

    calls: list[dict] = []
    real = stages.train

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "train", recording)
    return calls


def test_subword_training_distils_from_the_dense_model(monkeypatch) -> None:
    """Every subword training step (pruning and fine-tuning) distils from a frozen copy of the dense model."""
    calls = _record_training(monkeypatch)
    data = tiny_data()
    torch.manual_seed(0)
    model = Small()
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    config = SubwordConfig(rate=4.0, **FAST)
    compress_model(model, data, config, quiet=True)
    steps = config.prune_rounds + config.format_rounds
    assert len(calls) >= steps
    teachers = {id(call.get("teacher")) for call in calls}
    assert len(teachers) == 1 and None not in {call.get("teacher") for call in calls}
    assert all(call["distill"] == 0.5 and call["temperature"] == 4.0 for call in calls)
    teacher = calls[0]["teacher"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():  # the dense weights, not quantized or pruned
        assert torch.equal(value, dense[key]), key

    calls.clear()
    torch.manual_seed(0)
    off = dataclasses.replace(config, distill=0.0)
    compress_model(Small(), data, off, quiet=True)
    assert len(calls) >= steps and all("teacher" not in call for call in calls)


def test_distillation_changes_the_subword_result() -> None:
    """The same run with distillation on and off ends at different weights (so the teacher is used)."""
    data = tiny_data(seed=2)
    finals = []
    for distill in (0.0, 0.5):
        torch.manual_seed(2)
        config = SubwordConfig(rate=4.0, seed=2, distill=distill, **FAST)
        result = compress_model(Small(), data, config, quiet=True)
        finals.append(torch.cat([m.weight.detach().flatten() for m in gemm_layers(result.model).values()]))
    assert not torch.equal(finals[0], finals[1])


def test_run_subword_row_teacher_is_the_dense_stage(monkeypatch) -> None:
    """From the unstructured start the teacher is still the dense model; an explicit teacher is used as is."""
    calls = _record_training(monkeypatch)
    data = tiny_data(seed=1)
    torch.manual_seed(1)
    model = Small()
    dense = snapshot(model, 50.0)
    with torch.no_grad():
        for m in gemm_layers(model).values():
            m.weight.mul_((torch.rand_like(m.weight) < 0.5).to(m.weight.dtype))
    unstructured = snapshot(model, 40.0)
    config = SubwordConfig(**FAST)
    run_subword_row(
        Small(), data, dense, unstructured, bit_rate=4.0, quiet=True, config=config, from_unstructured=True
    )
    teacher = calls[0]["teacher"]
    assert all(call["teacher"] is teacher for call in calls)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, dense.state[key]), key
    calls.clear()
    mine = Small()
    run_subword_row(Small(), data, dense, bit_rate=4.0, quiet=True, config=config, teacher=mine)
    assert calls and all(call["teacher"] is mine for call in calls)


def test_subword_prune_stage_resumes_after_the_last_saved_step(tmp_path: Path, monkeypatch) -> None:
    """A run stopped after its pruning steps resumes without retraining them, to the same final model."""
    data = tiny_data()
    config = SubwordConfig(rate=4.0, **FAST)
    torch.manual_seed(0)
    first = compress_model(Small(), data, config, workdir=tmp_path, quiet=True)
    for path in tmp_path.glob("fit-tight-subword-*"):
        path.unlink()  # only the pruning steps' files are left
    assert len(list(tmp_path.glob("subword-prune-*-r*.pt"))) == config.prune_rounds
    calls = _record_training(monkeypatch)
    torch.manual_seed(0)
    resumed = compress_model(Small(), data, config, workdir=tmp_path, resume=True, quiet=True)
    assert calls and not any(call["desc"].startswith("subword prune") for call in calls)
    assert resumed.report["accuracy"] == first.report["accuracy"]
    for (ka, va), (kb, vb) in zip(
        sorted(resumed.model.state_dict().items()), sorted(first.model.state_dict().items()), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def test_global_subword_pruning_never_empties_an_output_unit() -> None:
    torch.manual_seed(0)
    model = Small()
    layers = gemm_layers(model)
    first = next(iter(layers))
    with torch.no_grad():
        layers[first].weight.mul_(1e-4)  # its subwords are far less important than any other layer's
    scales = {n: channel_scales_torch(m.weight.detach(), 0) for n, m in layers.items()}
    attach(layers, scales, {n: (torch.ones_like(m.weight, dtype=torch.bool),) * 2 for n, m in layers.items()})
    masks = global_subword_prune(layers, 0.97)
    for name, (high, low) in masks.items():
        alive = (high | low).reshape(high.shape[0], -1)
        assert bool((alive.sum(dim=1) >= 1).all()), name
