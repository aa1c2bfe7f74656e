"""The README's user-loop example (`prepare_`, your training, `fit_`, fine-tuning) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text[text.index("### In your own training loop") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_user_loop_example_runs(capsys) -> None:
    code = _example()
    assert len(code.splitlines()) <= 35
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    rate, accuracy = map(float, re.findall(r"([\d.]+)", printed)[:2])
    assert rate >= 8 and accuracy >= 80.0, printed


def test_fit_before_prepare_and_twice_prepared_are_errors() -> None:
    import torch.nn as nn

    import tightcompress
    from tightcompress.errors import TightCompressError

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(TightCompressError, match="prepare_"):
        tightcompress.fit_(model)
    tightcompress.prepare_(model, rate=2, total_steps=4, tile=8)
    with pytest.raises(TightCompressError, match="already"):
        tightcompress.prepare_(model, rate=2, total_steps=4)


def _toy(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    x = torch.randn(128, 1, 6, 6)
    y = (x[:, 0, :, :3].mean(dim=(1, 2)) > 0).long()
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 2))
    return model, x, y


def _steps(model, optimizer, x, y, n: int) -> None:
    import torch

    for _ in range(n):
        index = torch.randint(0, len(x), (32,))
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_masks_hold_with_an_optimizer_made_before_prepare() -> None:
    """The user's optimizer, built on the dense model, keeps training the pruned parameters."""
    import torch

    import tightcompress

    model, x, y = _toy()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tightcompress.prepare_(model, rate=4, total_steps=8, rounds=2, tile=8)
    _steps(model, optimizer, x, y, 8)
    weights = torch.cat([model[0].weight.flatten(), model[3].weight.flatten()])
    assert float((weights == 0).float().mean()) >= 0.74  # both rounds ran (global target 1 - 1/4)
    packed = tightcompress.fit_(model)
    _steps(model, optimizer, x, y, 5)
    for name, p in packed.items():
        layer = dict(model.named_modules())[name]
        assert int((layer.weight != 0).sum()) <= int((p.to_dense() != 0).sum())


def test_subword_granularity_through_the_user_loop() -> None:
    import torch

    import tightcompress
    from tightcompress.prune.subword_pack import SubwordPacked

    model, x, y = _toy(1)
    tightcompress.prepare_(model, rate=4, granularity="subword", total_steps=6, rounds=2, tile=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _steps(model, optimizer, x, y, 6)
    packed = tightcompress.fit_(model)
    _steps(model, optimizer, x, y, 3)
    bits = sum(8 * p.K // 2 * p.N for p in packed.values()) / sum(4 * p.packed_slots for p in packed.values())
    assert bits >= 4
    for p in packed.values():
        SubwordPacked.from_packed(p).validate()


@pytest.mark.parametrize("grouped", [False, True])
def test_sparsify_after_fit_packs_in_fits_arrangement(grouped: bool) -> None:
    """The third call: packed modules that compute what the masked model computed, no new search."""
    import torch
    from torch import nn

    import tightcompress
    from tightcompress.errors import TightCompressError
    from tightcompress.nn import PackedConv2d, PackedLinear

    model, x, y = _toy(2)
    if grouped:  # a grouped conv in the middle: fit_ and sparsify_ both name its groups `1[g]`
        model[1] = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    tightcompress.prepare_(model, rate=4, total_steps=4, rounds=2, tile=8)
    _steps(model, optimizer, x, y, 4)
    with pytest.raises(TightCompressError, match="fit_"):
        tightcompress.sparsify_(model)
    packed = tightcompress.fit_(model)
    _steps(model, optimizer, x, y, 3)
    with pytest.raises(TightCompressError, match="no packing options"):
        tightcompress.sparsify_(model, group=8)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    report = tightcompress.sparsify_(model)
    assert isinstance(model[0], PackedConv2d) and isinstance(model[3], PackedLinear)
    if grouped:
        assert isinstance(model[1][0], PackedConv2d) and {"1.0[0]", "1.0[1]"} <= set(packed)
    assert not hasattr(model, "_tightcompress_session")
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-5)
    # the arrangement is fit_'s: the same tiles, groups and heights, so the same slots and rate
    assert [row["packed_slots"] for row in report["layers"]] == [p.packed_slots for p in packed.values()]


def test_sparsify_after_a_subword_fit_is_a_clear_error() -> None:
    import torch

    import tightcompress
    from tightcompress.errors import TightCompressError

    model, x, y = _toy(3)
    tightcompress.prepare_(model, rate=4, granularity="subword", total_steps=2, rounds=1, tile=8)
    _steps(model, torch.optim.Adam(model.parameters(), lr=1e-3), x, y, 2)
    tightcompress.fit_(model)
    with pytest.raises(TightCompressError, match="word-level"):
        tightcompress.sparsify_(model)
