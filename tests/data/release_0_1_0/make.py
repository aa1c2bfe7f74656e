"""How the packed files in this folder were written: by tightcompress 0.1.0 (commit 6e56bae, before issue 27
made `save_model` write the `pack --out` format), kept so that tests read files of that release.

    PYTHONPATH=src:tests python tests/data/release_0_1_0/make.py   # on that commit only
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import tightcompress as tc
from torch_models import MixedLayers, randomize_bn

HERE = Path(__file__).resolve().parent
OPTIONS = {"method": "tight", "group": 8, "height": 2, "tile": 8, "sparsity": 0.6, "iterations": 2000}


def main() -> None:
    torch.manual_seed(0)
    dense = randomize_bn(MixedLayers()).eval()
    torch.save(dense.state_dict(), HERE / "mixed_dense.pt")
    x = torch.randn(2, 3, 17, 17)
    outputs = {"x": x}
    for dtype in (torch.float32, torch.bfloat16):
        model = MixedLayers().eval()
        model.load_state_dict(dense.state_dict())
        model.to(dtype)
        tc.sparsify_(model, **OPTIONS)
        name = "save_model_mixed" + ("" if dtype == torch.float32 else "_bf16")
        tc.save_model(model, HERE / f"{name}.safetensors")
        with torch.no_grad():
            outputs[name] = model(x.to(dtype))
    torch.save(outputs, HERE / "mixed_outputs.pt")
    cli = "import sys; from tightcompress.cli.main import main; sys.exit(main())"
    options = "--group 8 --height 2 --tile 8 --sparsity 0.6 --iterations 2000 --jobs 1".split()
    command = [sys.executable, "-c", cli, "pack", str(HERE / "mixed_dense.pt"), "--model"]
    command += ["torch_models.py:MixedLayers", *options, "--json", "/tmp/pack_mixed.json"]
    command += ["--out", str(HERE / "pack_mixed.safetensors")]
    subprocess.run(command, check=True, cwd=HERE.parents[1])


if __name__ == "__main__":
    main()
