"""Fine-tuning on several processes (`pipeline.distributed`): real `torchrun --nproc_per_node 2` runs on
CPU (gloo) of the rules, of `tightcompress compress`, and of the README's DDP user loop; and the data
shards, which need no process group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_pipeline_data import make_folder
from tightcompress.format.io import load_packed
from tightcompress.pipeline.data import shard
from tightcompress.readers.matrices import weight_to_matrix

ROOT = Path(__file__).resolve().parents[1]


def torchrun(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 ARGS` with this checkout's code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_shards_are_equal_disjoint_and_cover_a_pass() -> None:
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    parts = [shard(order, rank, 3) for rank in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # padded with the pass's head to 12
    assert sorted(set(torch.cat(parts).tolist())) == list(range(11))
    assert torch.equal(shard(order, 0, 1), order)


@pytest.mark.slow
def test_rules_hold_on_a_real_process_group(tmp_path: Path) -> None:
    out = tmp_path / "found.json"
    torchrun(str(ROOT / "tests" / "distributed_worker.py"), str(out), cwd=tmp_path)
    found = json.loads(out.read_text())
    assert found["world_size"] == 2
    assert found["masks_agree"] and found["packed_agree"] and found["weights_agree"], found
    assert found["searches_per_rank"] == [1, 0], found  # the search ran on rank 0 only
    assert found["check_in_step_passes_when_equal"], found
    assert found["check_in_step_caught_drift"] and found["drift_caught_on_every_rank"], found
    assert found["accuracy"] == pytest.approx(found["accuracy_one_process"]), found
    assert found["shard_sizes"] == [10, 10] and found["shards_cover_split"] and found["shards_disjoint"], (
        found
    )
    assert found["error_reached"] and found["error_reached_every_rank"], found
    assert found["subword_user_loop_ran"], found
    assert found["group_threads_after_shutdown"] == [], found


TINY = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)  # its running statistics differ per rank after a step
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3)))
"""


@pytest.mark.slow
def test_compress_under_torchrun_writes_one_fitting_result(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY)
    namespace: dict = {}
    exec(TINY, namespace)
    torch.manual_seed(0)
    torch.save(namespace["Tiny"]().state_dict(), tmp_path / "tiny.pt")
    make_folder(tmp_path / "imgs", n_per_class=12)
    done = torchrun(
        "-m",
        "tightcompress.cli.main",
        "compress",
        "--checkpoint",
        "tiny.pt",
        "--model",
        "tiny:Tiny",
        "--data",
        "imgs",
        "--out-dir",
        "out",
        "--rate",
        "3",
        "--prune-rounds",
        "1",
        "--prune-steps",
        "3",
        "--finetune-steps",
        "4",
        "--tile",
        "8",
        "--batch-size",
        "2",
        "--max-drop",
        "100",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert done.stdout.count("tight: rate") == 1  # rank 0 prints; the other rank is silent
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["world_size"] == 2 and report["config"]["device"] == "cpu"
    assert report["compression_rate"] >= 3
    state = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    packed = load_packed(tmp_path / "out" / "packed.safetensors")
    for name in ("conv", "fc"):
        dense = packed[name].to_dense()
        assert (weight_to_matrix(state[f"{name}.weight"].numpy()) == dense).all()


@pytest.mark.slow
def test_readme_ddp_user_loop_example(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    torchrun(str(ROOT / "examples" / "ddp_user_loop.py"), "--json", str(out), "--steps", "150", cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["ranks_agree"], result
    assert result["rate"] >= 8 and result["accuracy"] >= result["dense_accuracy"] - 3, result


def test_other_commands_refuse_torchrun(monkeypatch, capsys) -> None:
    """Under torchrun every process would run the whole command and write the same files."""
    from tightcompress.cli.main import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["report", "missing.json", "--html", "out.html"]) == 2
    assert "only `compress` runs on several processes" in capsys.readouterr().err
