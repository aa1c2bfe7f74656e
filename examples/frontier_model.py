"""Your own model on the frontier: a small digits CNN, its checkpoint, its ONNX export, calibration inputs
and the metrics `tightcompress frontier --eval` calls (higher is better).

    python examples/frontier_model.py OUT          # trains 300 steps, writes OUT/digits.pt, .onnx, calib
    tightcompress frontier --onnx OUT/digits.onnx --eval examples/frontier_model.py:evaluate_onnx \
        --calibration OUT/calib.npz --rates 2 4 --seeds 0 --json F.json
    tightcompress frontier --model examples/frontier_model.py:DigitsNet --checkpoint OUT/digits.pt \
        --eval examples/frontier_model.py:evaluate --mode fine-tune --rates 2 4 --seeds 0 --json F.json

The data are the bundled digits (`tightcompress.pipeline.data.load_mnist`); the metric is the top-1
accuracy in percent on the test split of seed 0, which no seed-0 training step sees (use `--seeds 0` with
`--mode fine-tune`: other seeds split the images differently).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tightcompress.pipeline.data import load_mnist


class DigitsNet(nn.Module):
    """Conv 1 -> 8 (3x3, stride 2), ReLU, linear 1352 -> 10, for 1 x 28 x 28 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=2)
        self.fc = nn.Linear(8 * 13 * 13, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _test_set() -> tuple[np.ndarray, np.ndarray]:
    batches = list(load_mnist(seed=0).test_batches(10_000))
    return torch.cat([x for x, _ in batches]).numpy(), torch.cat([y for _, y in batches]).numpy()


def evaluate(model: nn.Module) -> float:
    """Top-1 accuracy (%) of a PyTorch model on the seed-0 test split."""
    x, y = _test_set()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(1).numpy()
    return float(100.0 * np.mean(predicted == y))


def evaluate_onnx(path: str) -> float:
    """Top-1 accuracy (%) of an ONNX file (input `x`) on the seed-0 test split, with onnxruntime."""
    import onnxruntime

    x, y = _test_set()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(100.0 * np.mean(session.run(None, {"x": x})[0].argmax(1) == y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for digits.pt, digits.onnx, calib.npz, calib.pt")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    data = load_mnist(seed=0)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for x, y in itertools.islice(data.train_batches(128, seed=0), args.steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    torch.save(model.state_dict(), args.out / "digits.pt")
    sample = (data.sample(1),)
    axes = {"x": {0: "n"}, "y": {0: "n"}}
    onnx_path = args.out / "digits.onnx"
    names = {"input_names": ["x"], "output_names": ["y"], "dynamic_axes": axes}
    torch.onnx.export(model, sample, str(onnx_path), **names, dynamo=False)
    calibration = next(iter(data.train_batches(128, seed=1)))[0]  # training images, not the test split
    np.savez(args.out / "calib.npz", x=calibration.numpy())
    torch.save(calibration, args.out / "calib.pt")
    print(f"dense: {evaluate(model):.2f}% (PyTorch), {evaluate_onnx(str(onnx_path)):.2f}% (ONNX)")


if __name__ == "__main__":
    main()
