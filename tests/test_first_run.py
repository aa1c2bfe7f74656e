"""The one-time numba compilation is announced in one line when (and only when) the kernel cache is cold."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tightcompress.utils import jit

SRC = Path(__file__).resolve().parents[1] / "src"


def _cached_entry_points_in_source() -> set[str]:
    """`module.function` of every `@nb.njit(cache=True)` function in the package that is not inlined."""
    found = set()
    for path in (SRC / "tightcompress").rglob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"@nb\.njit\(([^)]*)\)\s*\ndef (\w+)", text):
            options, name = match.groups()
            if "cache=True" in options and "inline" not in options:
                found.add(f"{path.stem}.{name}")
    return found


def test_every_cached_kernel_is_inspected():
    """A kernel added anywhere in the package is seen by the cold-cache check (and so announced)."""
    names = set(jit._kernels())
    assert names == _cached_entry_points_in_source()
    # inline helpers are compiled into their callers, never cached alone
    assert not any("_drop_of" in n or "_absorb_row" in n for n in names)


def test_cold_cache_is_announced_once_then_compiled(monkeypatch):
    calls = []
    monkeypatch.setattr(jit, "cold_kernels", lambda: ["kernels.anneal_lossless"])
    out = io.StringIO()
    assert jit.prepare_kernels(stream=out, warm=lambda: calls.append(1)) is not None
    assert (
        calls == [1] and out.getvalue().count("\n") == 1 and "first run: compiling 1 numba" in out.getvalue()
    )
    out = io.StringIO()
    jit.prepare_kernels(stream=out, quiet=True, warm=lambda: calls.append(2))
    assert out.getvalue() == "" and calls == [1, 2]  # --quiet: no line, still compiled up front


def test_warm_cache_says_nothing(monkeypatch):
    monkeypatch.setattr(jit, "cold_kernels", lambda: [])
    out = io.StringIO()
    assert jit.prepare_kernels(stream=out, warm=lambda: pytest.fail("compiled a warm cache")) is None
    assert out.getvalue() == ""


def test_bad_input_fails_before_compiling(tmp_path, monkeypatch, capsys):
    """A cold cache is filled after the input is checked: a typo costs no compilation and one line."""
    from tightcompress.cli.main import main

    warmed = []
    monkeypatch.setattr(jit, "cold_kernels", lambda: ["kernels.anneal_lossless"])
    monkeypatch.setattr(jit, "warm_up", lambda: warmed.append(1))
    assert main(["pack", str(tmp_path / "missing.npy"), "--json", str(tmp_path / "r.json")]) == 2
    assert warmed == [] and len(capsys.readouterr().err.strip().splitlines()) == 1
    np.save(tmp_path / "w.npy", np.eye(8, dtype=np.float32))
    assert main(["pack", str(tmp_path / "w.npy"), "--json", str(tmp_path / "r.json")]) == 0
    err = capsys.readouterr().err
    assert warmed == [1] and err.count("first run: compiling 1 numba kernels once") == 1


@pytest.mark.slow
def test_first_run_from_an_empty_cache(tmp_path):
    """A real cold start (empty NUMBA_CACHE_DIR): one announcement, then a warm cache for every kernel."""
    np.save(tmp_path / "w.npy", np.random.default_rng(0).standard_normal((32, 24)).astype(np.float32))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PYTHONPATH": str(SRC)}
    argv = [
        sys.executable,
        "-m",
        "tightcompress.cli.main",
        "pack",
        str(tmp_path / "w.npy"),
        "--sparsity",
        "0.8",
    ]
    argv += ["--json", str(tmp_path / "r.json")]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=True)
    assert first.stderr.count("first run: compiling") == 1
    assert first.stderr.splitlines()[0].startswith("tightcompress: first run: compiling")
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=True)
    assert "first run" not in second.stderr and "rate" in second.stdout
    check = [sys.executable, "-c", "from tightcompress.utils.jit import cold_kernels; print(cold_kernels())"]
    assert subprocess.run(check, env=env, capture_output=True, text=True, check=True).stdout.strip() == "[]"
