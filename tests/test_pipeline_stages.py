"""The shared stage plumbing (`pipeline.stages`): seeding, distillation arguments, checkpoint names and
resume of the gradual-prune loop, the fit/fine-tune/repack loop's stopping rule, the rate schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import tightcompress.pipeline.stages as stages
from tightcompress.errors import TightCompressError
from tightcompress.pipeline.data import Dataset
from tightcompress.pipeline.stages import (
    StageResult,
    Trainer,
    fit_finetune_repack,
    gradual_prune,
    rising_rates,
)


def _data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return Dataset(x[:30], y[:30], x[30:], y[30:], ["neg", "pos"], "synthetic")


@pytest.fixture
def training_calls(monkeypatch) -> list[dict]:
    """Replace training by a recorder of its keyword arguments."""
    calls: list[dict] = []
    monkeypatch.setattr(stages, "train", lambda *a, **k: calls.append(k) or 0.0)
    return calls


def test_trainer_passes_distillation_only_with_a_teacher(training_calls: list[dict]) -> None:
    model, teacher = nn.Linear(4, 2), nn.Linear(4, 2)
    Trainer(_data(), 1e-3, 8, teacher=teacher, distill=0.5, temperature=3.0).train(
        model, epochs=1.0, seed=7, desc="x"
    )
    Trainer(_data(), 1e-3, 8, teacher=teacher, distill=0.0).train(model, epochs=1.0, seed=7, desc="x")
    Trainer(_data(), 1e-3, 8, distill=0.5).train(model, epochs=1.0, seed=7, desc="x")
    first, *rest = training_calls
    assert first["teacher"] is teacher and first["distill"] == 0.5 and first["temperature"] == 3.0
    assert first["seed"] == 7 and first["lr"] == 1e-3 and first["batch_size"] == 8
    assert all("teacher" not in call for call in rest)


def _prune_loop(model: nn.Linear, workdir: Path, pruned: list[float], resume: bool) -> StageResult:
    def prune(sparsity: float) -> None:
        pruned.append(sparsity)
        with torch.no_grad():
            model.weight.mul_(0.5)

    def snapshot(accuracy: float) -> StageResult:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        return StageResult(state, {}, accuracy, {"sparsity": pruned[-1]})

    return gradual_prune(
        model,
        Trainer(_data(), 1e-3, 8),
        [0.25, 0.5, 0.75],
        prune=prune,
        snapshot=snapshot,
        restore=lambda stage: model.load_state_dict(stage.state),
        epochs=1.0,
        seed=10,
        name="prune",
        stage_prefix="unit-key",
        workdir=workdir,
        resume=resume,
    )


def test_gradual_prune_seeds_saves_and_resumes(tmp_path: Path, training_calls: list[dict]) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    pruned: list[float] = []
    final = _prune_loop(model, tmp_path, pruned, resume=False)
    assert pruned == [0.25, 0.5, 0.75]
    assert [call["seed"] for call in training_calls] == [10, 11, 12]
    assert training_calls[0]["desc"] == "prune 1/3 (25.0%)"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"unit-key-r{i}.pt" for i in (1, 2, 3)]
    assert final.meta == {"sparsity": 0.75}

    (tmp_path / "unit-key-r3.pt").unlink()  # interrupted during the last round
    training_calls.clear()
    pruned.clear()
    again = nn.Linear(4, 2)
    resumed = _prune_loop(again, tmp_path, pruned, resume=True)
    assert pruned == [0.75] and [call["seed"] for call in training_calls] == [12]
    assert torch.equal(resumed.state["weight"], final.state["weight"])

    training_calls.clear()
    pruned.clear()
    done = _prune_loop(nn.Linear(4, 2), tmp_path, pruned, resume=True)  # all rounds saved: nothing runs
    assert pruned == [] and training_calls == []
    assert torch.equal(done.state["weight"], final.state["weight"])


def _fit_loop(dropped_per_round: list[int], rounds: int, require_fit: bool):
    applied: list[dict[str, int]] = []
    sequence = iter(dropped_per_round)
    return applied, fit_finetune_repack(
        nn.Linear(4, 2),
        Trainer(_data(), 1e-3, 8),
        {"layer": -1},
        apply_kept=lambda packed: applied.append(dict(packed)),
        repack=lambda packed: {"layer": next(sequence)},
        count_dropped=lambda value: value,
        epochs=1.0,
        seed=100,
        rounds=rounds,
        name="unit",
        require_fit=require_fit,
    )


def test_fit_loop_stops_when_nothing_is_dropped(training_calls: list[dict]) -> None:
    applied, outcome = _fit_loop([3, 0, 5], rounds=3, require_fit=True)
    assert applied == [{"layer": -1}, {"layer": 3}]  # each round prunes what the last repack kept
    assert [call["seed"] for call in training_calls] == [100, 101]
    assert outcome.packed == {"layer": 0} and outcome.dropped == 0
    assert 0.0 <= outcome.prune_to_fit_accuracy <= 100.0


def test_fit_loop_overflow_raises_only_when_the_fit_is_required(training_calls: list[dict]) -> None:
    with pytest.raises(TightCompressError, match="unit: layers still overflow the format after 2 rounds"):
        _fit_loop([3, 2], rounds=2, require_fit=True)
    _, outcome = _fit_loop([3], rounds=1, require_fit=False)
    assert outcome.dropped == 3 and outcome.packed == {"layer": 3}


def test_rising_rates_end_exactly_at_the_target() -> None:
    assert rising_rates(4.0, 24.0, 1) == [24.0]
    rates = rising_rates(4.0, 24.0, 2)
    assert rates[-1] == 24.0 and rates[0] == pytest.approx((4.0 * 24.0) ** 0.5)
    assert rising_rates(4.0, 16.0, 3) == sorted(rising_rates(4.0, 16.0, 3))
