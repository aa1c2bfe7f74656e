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
