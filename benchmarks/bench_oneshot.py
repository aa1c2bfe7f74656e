"""Speed and memory of calibrated one-shot pruning (issue 23): calibration plus reconstruction.

- speed, the issue's 2.7 M model: PaddleOCR's PP-OCRv4 recognizer (`ch_PP-OCRv4_rec_infer.onnx` from the
  `rapidocr_onnxruntime` wheel; 2.69 M weights in 33 packed layers) pruned by `prune_onnx` at rate 2 with
  128 calibration samples (`--calibration NPZ`, key `x`, e.g. h23ppocr's `benchmarks/ocr/ppocr_task.py
  --write-calibration`; without it a seeded stand-in of the same shape (N, 3, 48, 320) in [-1, 1]), each of
  `--methods` under each of `--allocations` (the rule sharing the rate out between the layers; `nm-8:16` is
  one fixed config on every layer), median of `--repeats` runs, wall and CPU (user + sys) seconds with the
  load average, and the output error (the same for every repeat: the runs are seeded). Without the wheel,
  the synthetic CNN below (`--model cnn`).
- speed, synthetic: a 2.7 M-weight CNN (7 convs and 2 linears, 32 x 32 input, seeded weights) pruned by
  `prune_module` at 2x with 128 calibration samples, N:M 8:16 on every layer (a fixed config, so the time
  is the calibration and the reconstruction, not the option search), median of `--repeats` runs; plus one
  run of tight at rate 2 (options planned per layer) to show what the search adds.
- memory: a ResNet-50-sized model (torchvision's layer shapes, 25.5 M weights, 224 x 224 input) pruned the
  same way (N:M 8:16 on every layer, calibrated, validated solves) with `--resnet-samples` samples; peak
  resident memory of the process (`ru_maxrss`; issue 23's bar: 2 GiB), wall and CPU seconds.

    python benchmarks/bench_oneshot.py --repeats 3 --calibration ppocr_calib128.npz   # PP-OCRv4 rec
    python benchmarks/bench_oneshot.py --repeats 1 --calibration ppocr_calib128.npz --methods tight \
        --allocations uniform,planned                                                 # issue 23's 60 s
    python benchmarks/bench_oneshot.py --model cnn --repeats 3
    python benchmarks/bench_oneshot.py --skip-speed --resnet   # the memory figure (slow: minutes)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from tightcompress.api import PackConfig
from tightcompress.pipeline.oneshot import prune_module


def cnn_2_7m() -> nn.Module:
    """7 conv 3x3 (32-64-128-128-256-256-256) with pooling, then 4096 -> 256 -> 10: 2.71 M weights."""
    widths = [3, 32, 64, 128, 128, 256, 256, 256]
    layers: list[nn.Module] = []
    for index, (cin, cout) in enumerate(itertools.pairwise(widths)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
        if index in (1, 3, 5):
            layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(256 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, 10)]
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet50() -> nn.Module:
    """ResNet-50's layers (bottlenecks [3, 4, 6, 3], stride on the 3x3 conv, as torchvision)."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]  # fmt: skip
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for index in range(blocks):
            layers.append(Bottleneck(cin, width, stride if index == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers).eval()


def weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))


def run(model_fn, samples: int, size: int, method: str, config: PackConfig | None, rate: float | None):
    torch.manual_seed(0)
    model = model_fn()
    x = torch.randn(samples, 3, size, size)
    start = time.perf_counter()
    report = prune_module(model, method=method, rate=rate, calibration=x, config=config)
    return time.perf_counter() - start, report


def ppocr_path() -> str | None:
    """The PP-OCRv4 recognizer inside the installed `rapidocr_onnxruntime` wheel, or None."""
    try:
        import rapidocr_onnxruntime
    except ImportError:
        return None
    path = os.path.join(
        os.path.dirname(rapidocr_onnxruntime.__file__), "models", "ch_PP-OCRv4_rec_infer.onnx"
    )
    return path if os.path.isfile(path) else None


def ppocr_calibration(path: str | None, samples: int) -> tuple[np.ndarray, str]:
    """`(x, what)`: the calibration inputs from `path` (key `x`), else a seeded stand-in of their shape."""
    if path:
        with np.load(path) as data:
            return data["x"][:samples].astype(np.float32), path
    x = np.random.default_rng(0).uniform(-1, 1, size=(samples, 3, 48, 320)).astype(np.float32)
    return x, "stand-in: seeded uniform [-1, 1], shape (N, 3, 48, 320)"


def run_ppocr(
    path: str, x: np.ndarray, method: str, allocation: str = "planned"
) -> tuple[float, float, dict]:
    """`(wall s, CPU s, report)` of one `prune_onnx` run at rate 2 under `allocation` (`nm-8:16`: one config,
    every layer)."""
    from tightcompress.pipeline.oneshot import prune_onnx

    config = None
    rate: float | None = 2.0
    if method == "nm-8:16":
        method, config, rate = "nm", PackConfig(method="nm", group=16, height=8, tile=32), None
    with tempfile.TemporaryDirectory() as tmp:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        report = prune_onnx(
            path,
            os.path.join(tmp, "out.onnx"),
            method=method,
            rate=rate,
            calibration={"x": x},
            config=config,
            allocation=allocation,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return wall, cpu, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        choices=("ppocr", "cnn"),
        default=None,
        help="ppocr (default when rapidocr_onnxruntime is installed) or the synthetic cnn",
    )
    parser.add_argument("--calibration", default=None, help="PP-OCRv4 calibration .npz (key x)")
    parser.add_argument("--methods", default="tight,nm,nm-8:16", help="PP-OCRv4: comma-separated methods")
    parser.add_argument(
        "--allocations",
        default="uniform,planned",
        help="PP-OCRv4: comma-separated allocation rules (pipeline.oneshot.ALLOCATIONS) for the rate methods",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--resnet", action="store_true", help="also the ResNet-50 memory run")
    parser.add_argument("--resnet-samples", type=int, default=16)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    out: dict = {"load_before": os.getloadavg()}
    nm = PackConfig(method="nm", group=16, height=8, tile=32)
    model = args.model or ("ppocr" if ppocr_path() else "cnn")
    if model == "ppocr" and not args.skip_speed:
        path = ppocr_path()
        if path is None:
            parser.error("--model ppocr needs rapidocr_onnxruntime==1.4.4 (the ocr-bench extra)")
        x, what = ppocr_calibration(args.calibration, args.samples)
        out["model"] = "PP-OCRv4 rec (rapidocr_onnxruntime)"
        out["calibration"] = what
        out["samples"] = int(x.shape[0])
        from tightcompress.pipeline.oneshot import ALLOCATIONS

        allocations = args.allocations.split(",")
        unknown = sorted(set(allocations) - set(ALLOCATIONS))
        if unknown:
            parser.error(f"unknown allocation {unknown[0]!r}; choose from {', '.join(ALLOCATIONS)}")
        for method in args.methods.split(","):
            for allocation in ["fixed"] if method == "nm-8:16" else allocations:
                runs = []
                for _ in range(args.repeats):
                    load = os.getloadavg()
                    wall, cpu, report = run_ppocr(
                        path, x, method, "planned" if allocation == "fixed" else allocation
                    )
                    runs.append({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_before": load})
                    print(method, allocation, runs[-1], file=sys.stderr)
                out[method if allocation == "fixed" else f"{method}/{allocation}"] = {
                    "runs": runs,
                    "median_wall_s": statistics.median(r["wall_s"] for r in runs),
                    "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
                    "rate": report["compression_rate"],
                    "relative_output_error": report["relative_output_error"],
                }
    if model == "cnn" and not args.skip_speed:
        print(f"2.7M CNN: {weights(cnn_2_7m())} weights", file=sys.stderr)
        times = []
        for _ in range(args.repeats):
            seconds, report = run(cnn_2_7m, args.samples, 32, "nm", nm, None)
            times.append(seconds)
        out["cnn_nm_8_16_seconds"] = times
        out["cnn_nm_8_16_median_s"] = statistics.median(times)
        out["cnn_nm_8_16_rate"] = report["compression_rate"]
        out["cnn_nm_8_16_relative_output_error"] = report["relative_output_error"]
        seconds, report = run(cnn_2_7m, args.samples, 32, "tight", None, 2.0)
        out["cnn_tight_rate2_seconds"] = seconds
        out["cnn_tight_rate2_rate"] = report["compression_rate"]
        out["cnn_tight_rate2_relative_output_error"] = report["relative_output_error"]
    if args.resnet:
        print(f"ResNet-50: {weights(resnet50())} weights", file=sys.stderr)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        seconds, report = run(resnet50, args.resnet_samples, 224, "nm", nm, None)
        after = resource.getrusage(resource.RUSAGE_SELF)
        out["resnet50_seconds"] = seconds
        out["resnet50_cpu_s"] = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        out["resnet50_relative_output_error"] = report["relative_output_error"]
        out["resnet50_solvers"] = sorted({layer.get("solver", "") for layer in report["layers"]})
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
