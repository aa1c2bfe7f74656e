"""Ctrl-C during the search: the compiled annealing runs in chunks, so SIGINT stops `pack` within a second
(exit 130, one line, no output file); and chunking never changes a result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tightcompress.format.build import uniform_group_offsets
from tightcompress.permute import AnnealConfig, search_permutation
from tightcompress.prune import magnitude_prune


def _matrix(K: int = 576, N: int = 64, sparsity: float = 0.95, seed: int = 0) -> np.ndarray:
    return magnitude_prune(np.random.default_rng(seed).standard_normal((K, N)), sparsity)


@pytest.mark.parametrize("height", [2, None])  # capped and lossless kernels
@pytest.mark.parametrize("tile", [32, 64])  # several tiles (column moves) and one
def test_chunked_equals_unchunked_bit_for_bit(height: int | None, tile: int) -> None:
    W = _matrix()
    runs = [
        search_permutation(
            W,
            group_offsets=uniform_group_offsets(576, 32),
            tile=tile,
            height_cap=height,
            config=AnnealConfig(iterations=20_000, seed=5),
            chunk_moves=chunk,
        )
        for chunk in (20_000, 1, 997, None)  # one chunk, one move per chunk, odd chunks, adaptive chunks
    ]
    whole = runs[0]
    for run in runs[1:]:
        assert np.array_equal(run.row_perm, whole.row_perm) and np.array_equal(run.col_perm, whole.col_perm)
        assert (run.initial_cost, run.final_cost, run.iterations, run.accepted) == (
            whole.initial_cost,
            whole.final_cost,
            whole.iterations,
            whole.accepted,
        )


def _start_pack(tmp_path: Path, inputs: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    )
    # The console script's own code (`sys.exit(main())`), saying when the imports are done: SIGINT is then
    # sent into the search, not into start-up (seconds on a loaded machine).
    entry = (
        "import sys; from tightcompress.cli.main import main; print('ready', flush=True); sys.exit(main())"
    )
    command = [sys.executable, "-c", entry, "pack", str(inputs), "--method", "tight"]
    command += ["--group", "32", "--height", "2", "--tile", "16", "--iterations", "2000000000", "--quiet"]
    command += ["--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "p.safetensors"), *extra]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _interrupt(process: subprocess.Popen, *, whole_group: bool) -> tuple[int, str, float]:
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    time.sleep(3.0)  # the JIT cache load and the greedy start; the search then runs for hours
    assert process.poll() is None, process.communicate()
    sent = time.perf_counter()
    if whole_group:  # a terminal's Ctrl-C: every process of the foreground group
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, stderr, time.perf_counter() - sent


@pytest.mark.slow
def test_sigint_stops_a_long_pack_within_a_second(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", _matrix(1152, 128, 0.9).astype(np.float32))
    code, stderr, seconds = _interrupt(_start_pack(tmp_path, tmp_path / "w.npy"), whole_group=False)
    assert code == 130
    assert stderr == "tightcompress pack: interrupted\n"
    assert seconds < 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npy"]  # no report, no packed file, no temp file


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [False, True])
def test_sigint_stops_a_parallel_pack_and_its_workers(tmp_path: Path, whole_group: bool) -> None:
    from safetensors.numpy import save_file

    layers = {f"layer{i}.weight": _matrix(1152, 128, 0.9, seed=i).astype(np.float32) for i in range(3)}
    save_file(layers, str(tmp_path / "m.safetensors"))
    process = _start_pack(tmp_path, tmp_path / "m.safetensors", "--jobs", "2")
    code, stderr, seconds = _interrupt(process, whole_group=whole_group)
    assert code == 130
    assert stderr == "tightcompress pack: interrupted\n"
    assert seconds < 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    with pytest.raises(ProcessLookupError):  # the workers are gone with the session's leader
        os.killpg(process.pid, 0)
