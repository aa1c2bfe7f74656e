"""One small, seeded run of every command that writes a JSON (or CSV) output, for the compatibility test.

`make_outputs(tmp, kinds)` runs the commands in-process and returns `{file name: path}`. The same functions
wrote `tests/data/outputs_v0/` with the code from before the typed results (see its README.md); the test
`tests/test_output_compat.py` runs them again with today's code and compares the field sets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from test_pipeline_cli import TINY
from test_pipeline_data import make_folder
from tightcompress.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--sparsity", "0.8", "--group", "8", "--iterations", "300", "--quiet"]
FAST = ("pack", "oneshot", "simulate", "sweep", "export", "arch", "area")
SLOW = ("compress", "demo", "frontier")


def _net(tmp: Path) -> Path:
    path = tmp / "net.pt"
    if not path.exists():
        torch.manual_seed(0)
        torch.save({"conv1.weight": torch.randn(16, 4, 3, 3), "fc.weight": torch.randn(10, 16)}, path)
    return path


def _run(argv: list[str]) -> None:
    code = main(argv)
    assert code == 0, f"exit {code}: {' '.join(argv)}"


def pack(tmp: Path) -> dict[str, Path]:
    net = _net(tmp)
    np.save(tmp / "w.npy", np.random.default_rng(0).standard_normal((24, 16)).astype(np.float32))
    _run(["pack", str(net), *COMMON, "--json", str(tmp / "pack.json"), "--out", str(tmp / "p.safetensors")])
    _run(["pack", str(net), *COMMON, "--height", "2", "--json", str(tmp / "pack-capped.json")])
    _run(["pack", str(tmp / "w.npy"), "--method", "column-combining", "--quiet",
          "--json", str(tmp / "pack-cc.json")])  # fmt: skip
    _run(["pack", "--zoo", "mobilenetv2", "--zoo-layers", "conv", "--method", "dense", "--quiet",
          "--json", str(tmp / "pack-zoo.json")])  # fmt: skip
    return {n: tmp / n for n in ("pack.json", "pack-capped.json", "pack-cc.json", "pack-zoo.json")}


def oneshot(tmp: Path) -> dict[str, Path]:
    """`pack M.onnx --calibration C.npz`: the calibrated one-shot report (its per-layer solve fields)."""
    from test_oneshot import build_model

    build_model(tmp / "m.onnx")
    np.savez(tmp / "calib.npz", x=np.random.default_rng(3).normal(size=(32, 4, 10)).astype(np.float32))
    argv = ["pack", str(tmp / "m.onnx"), "--method", "nm", "--group", "4", "--height", "2", "--tile", "8"]
    argv += ["--calibration", str(tmp / "calib.npz"), "--quiet"]
    _run([*argv, "--json", str(tmp / "pack-oneshot.json")])
    return {"pack-oneshot.json": tmp / "pack-oneshot.json"}


def simulate(tmp: Path) -> dict[str, Path]:
    net = _net(tmp)
    out = {}
    for method in ("tight", "column-combining"):
        name = f"simulate-{method}.json"
        _run(["simulate", str(net), *COMMON, "--method", method, "--check-bitexact", "--vectors", "2",
              "--json", str(tmp / name)])  # fmt: skip
        out[name] = tmp / name
    return out


def sweep(tmp: Path) -> dict[str, Path]:
    argv = ["sweep", str(_net(tmp)), "--methods", "tight,nm,dense,column-combining", "--groups", "4"]
    argv += ["--heights", "2,auto", "--sparsities", "none,0.8", "--per-layer", "--iterations", "300"]
    _run([*argv, "--csv", str(tmp / "sweep.csv"), "--quiet", "--jobs", "1"])
    return {"sweep.csv": tmp / "sweep.csv"}


def export(tmp: Path) -> dict[str, Path]:
    if not (tmp / "p.safetensors").exists():
        pack(tmp)
    _run(["export", str(tmp / "p.safetensors"), "--out-dir", str(tmp / "rtl"), "--hdl", "--quiet"])
    shutil.copy(tmp / "rtl" / "manifest.json", tmp / "manifest.json")
    return {"manifest.json": tmp / "manifest.json"}


def arch(tmp: Path) -> dict[str, Path]:
    """The architecture file is an input (TOML): the shipped example stands for it."""
    shutil.copy(ROOT / "examples" / "arch_32kb.toml", tmp / "arch.toml")
    return {"arch.toml": tmp / "arch.toml"}


def area(tmp: Path) -> dict[str, Path]:
    _run(["area", "--array", "4x4", "--method", "tight", "--group", "4", "--quiet",
          "--json", str(tmp / "area.json")])  # fmt: skip
    return {"area.json": tmp / "area.json"}


def compress(tmp: Path) -> dict[str, Path]:
    (tmp / "tiny_model.py").write_text(TINY)
    namespace: dict = {}
    exec(TINY, namespace)
    torch.manual_seed(0)
    torch.save(namespace["Tiny"]().state_dict(), tmp / "tiny.pt")
    data = make_folder(tmp / "imgs")
    out = {}
    for granularity in ("word", "subword"):
        argv = ["compress", "--checkpoint", str(tmp / "tiny.pt"), "--model", f"{tmp / 'tiny_model.py'}:Tiny"]
        argv += ["--data", str(data), "--out-dir", str(tmp / f"c-{granularity}"), "--tile", "8", "--quiet"]
        argv += ["--prune-rounds", "1", "--prune-epochs", "1", "--finetune-epochs", "1", "--max-drop", "100"]
        argv += ["--rate", "3"] if granularity == "word" else ["--granularity", "subword", "--bit-rate", "4"]
        _run(argv)
        name = f"compress-{granularity}.json"
        shutil.copy(tmp / f"c-{granularity}" / "report.json", tmp / name)
        out[name] = tmp / name
    return out


def demo(tmp: Path) -> dict[str, Path]:
    argv = ["demo", "--workdir", str(tmp / "demo-cache"), "--json", str(tmp / "demo.json"), "--quiet"]
    argv += ["--dense-epochs", "0.3", "--widths", "8,16,32,32", "--methods", "tight,column-combining"]
    argv += ["--prune-rounds", "1", "--prune-epochs", "0.1", "--finetune-epochs", "0.1"]
    _run(argv)
    return {"demo.json": tmp / "demo.json"}


def frontier(tmp: Path) -> dict[str, Path]:
    tiny = ["--widths", "8,16", "--dense-epochs", "0.3", "--prune-rounds", "1", "--prune-epochs", "0.1",
            "--finetune-epochs", "0.1", "--format-rounds", "1", "--rates", "4", "--seeds", "0"]  # fmt: skip
    argv = ["frontier", *tiny, "--methods", "tight", "column-combining", "--jobs", "1", "--quiet"]
    _run([*argv, "--workdir", str(tmp / "frontier-work"), "--json", str(tmp / "frontier.json")])
    return {"frontier.json": tmp / "frontier.json"}


CASES = {
    "pack": pack, "oneshot": oneshot, "simulate": simulate, "sweep": sweep, "export": export, "arch": arch,
    "area": area, "compress": compress, "demo": demo, "frontier": frontier,
}  # fmt: skip


def make_outputs(tmp: Path, kinds: tuple[str, ...] = FAST + SLOW) -> dict[str, Path]:
    """Run each kind's commands in `tmp`; `{file name: path}` of every output written."""
    out: dict[str, Path] = {}
    for kind in kinds:
        out.update(CASES[kind](tmp))
    return out


if __name__ == "__main__":  # write the fixtures: python tests/output_cases.py DEST
    import sys
    import tempfile

    dest = Path(sys.argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for name, path in make_outputs(Path(work)).items():
            shutil.copy(path, dest / name)
            print(name, path.stat().st_size)
