"""One-shot pruning of a pretrained OCR CNN: every method at 1.33x, 2x and 4x, with and without calibration.

`--task ppocr` (the default): PP-OCRv4's recognition CNN from the `rapidocr_onnxruntime` 1.4.4 wheel, weights
in `Constant` nodes, scored by `benchmarks/ocr/ppocr_task.py`. `--task ddddocr`: ddddocr 1.6.1's
`common.onnx`, scored by `benchmarks/ocr/ddddocr_task.py`. Both score 400 rendered lines with known strings:
exact-line accuracy and character accuracy (1 - total edit distance / total characters), both in percent.

Each cell prunes the dense model once with `tightcompress.pipeline.oneshot.prune_onnx(..., rate=R,
allocation=A)` (no fine-tuning; `--allocation planned`, the default, plans per-layer options for the whole
model's rate, `--allocation uniform` gives every layer the rate itself, Wanda's and SparseGPT's rule, under
which unstructured keeps the `1/R` most salient weights of each layer), without calibration (|w|) and with 128
calibration samples (saliency |w| x ||x|| and layer-by-layer reconstruction, every method alike), writes the
pruned ONNX file, and scores it. It records the measured rate, the relative error of the model's output on
the calibration samples (measured here for every cell; the report's own is kept when calibrated), the wall
time of `prune_onnx` including the model load (one run per cell: the machine is shared; the load average
before and after is written next to each) and the time to score.

Cells are run in priority order (dense; tight and nm at 2x calibrated; tight and nm at 2x without; the other
methods at 2x calibrated; then 1.33x and 4x) and written to the JSON after each one, so `--resume` picks up
where a run stopped. A cell that fails is recorded under `failed` with its error and retried on `--resume`.

    nice python benchmarks/bench_ocr_oneshot.py --task ppocr --json ppocr.json            # the whole table
    nice python benchmarks/bench_ocr_oneshot.py --task ppocr --json ppocr.json --resume   # what is missing
    nice python benchmarks/bench_ocr_oneshot.py --allocation uniform --json ppocr.json --resume
    python benchmarks/bench_ocr_oneshot.py --table ppocr.json                     # Markdown from the JSON
    python benchmarks/bench_ocr_oneshot.py --table ppocr.json --allocation uniform --compact

One JSON holds cells of several allocations: each cell records its `allocation` and is keyed by it
(`METHOD@RATE/calibrated|magnitude/ALLOCATION`; cells of files written before the option are `planned`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent / "ocr"))
from ocr_common import machine

from tightcompress.pipeline.oneshot import ALLOCATIONS

TASKS = {"ppocr": "ppocr_task", "ddddocr": "ddddocr_task"}  # --task -> module in benchmarks/ocr

# unstructured: kept counts from the formats' allocation; unstructured-uniform: floor(size / rate) each
METHODS = (
    "tight",
    "tight-subword",
    "nm",
    "nm-permuted",
    "column-combining",
    "unstructured",
    "unstructured-uniform",
)
RATES = {"1.33x": 4.0 / 3.0, "2x": 2.0, "4x": 4.0}
LAYER_FIELDS = (
    "name",
    "K",
    "N",
    "compression_rate",
    "kept_nnz",
    "dropped_weight_fraction",
    "relative_output_error",
    "option",
)
FIRST = [
    *[(m, "2x", True) for m in ("tight", "nm")],
    *[(m, "2x", False) for m in ("tight", "nm")],
    *[(m, "2x", True) for m in ("unstructured", "nm-permuted", "tight-subword", "column-combining")],
    *[(m, "2x", False) for m in ("unstructured", "nm-permuted", "tight-subword", "column-combining")],
    *[(m, r, True) for r in ("1.33x", "4x") for m in ("tight", "nm", "unstructured")],
]


def code_version() -> str:
    """The commit of the tightcompress being measured (`git describe --always --dirty`), or "unknown"."""
    import subprocess

    import tightcompress

    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(tightcompress.__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_task(name: str) -> ModuleType:
    """The task module for `--task` (model path, evaluation, calibration)."""
    return importlib.import_module(TASKS[name])


def task_of(data: dict) -> str | None:
    """The task a results JSON was measured on (older ddddocr files record only the model path)."""
    if "task" in data:
        return data["task"]
    model = str(data.get("model", ""))
    return "ddddocr" if "ddddocr" in model else ("ppocr" if "rapidocr" in model else None)


def cell_key(method: str, rate: str, calibrated: bool, allocation: str) -> str:
    """The cell's name in the JSON: 'dense' or 'METHOD@RATE/calibrated|magnitude/ALLOCATION'."""
    if method == "dense":
        return "dense"
    return f"{method}@{rate}/{'calibrated' if calibrated else 'magnitude'}/{allocation}"


def rekeyed(data: dict) -> dict:
    """`data` with every cell (and failed cell) keyed by `cell_key` and recording its allocation: files
    written before `--allocation` hold planned cells keyed 'METHOD@RATE/MODE'."""
    for section in ("cells", "failed"):
        records = data.get(section)
        if not records:
            continue
        new = {}
        for key, record in records.items():
            if key == "dense":
                new[key] = record
                continue
            allocation = record.setdefault("allocation", "planned")
            new[cell_key(record["method"], record["rate"], record["calibrated"], allocation)] = record
        data[section] = new
    return data


def cells(methods: Sequence[str], rates: Sequence[str], modes: Sequence[bool]) -> list[tuple[str, str, bool]]:
    """Every requested cell, the most important first (see the module docstring)."""
    wanted = [(m, r, c) for m in methods for r in rates for c in modes]
    first = [cell for cell in FIRST if cell in wanted]
    return [("dense", "1x", False), *first, *[cell for cell in wanted if cell not in first]]


def run_cell(
    task: ModuleType,
    method: str,
    rate: str,
    calibrated: bool,
    allocation: str,
    calibration: dict,
    seed: int,
    threads: int,
    workdir: Path,
) -> dict:
    """Prune (unless dense), score, and return the cell's record."""
    dense = task.model_path()
    load_before = os.getloadavg()[0]
    record: dict = {"method": method, "rate": rate, "calibrated": calibrated, "code": code_version()}
    if method != "dense":
        record["allocation"] = allocation
    if method == "dense":
        path = dense
    else:
        from tightcompress.pipeline.oneshot import prune_onnx

        path = workdir / f"{method}_{rate}_{int(calibrated)}_{allocation}.onnx"
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        report = prune_onnx(
            dense,
            path,
            method=method,
            rate=RATES[rate],
            calibration=calibration if calibrated else None,
            seed=seed,
            allocation=allocation,
        )
        record["prune_seconds"] = time.perf_counter() - start
        record["prune_cpu_seconds"] = _cpu_seconds() - cpu_start
        record["compression_rate"] = report.get("compression_rate")
        record["report_allocation"] = report.get("allocation")
        record["relative_output_error"] = report.get("relative_output_error")
        total = report.get("total") or {}
        record["dropped_weight_fraction"] = total.get("dropped_magnitude_fraction")
        record["skipped_layers"] = len((report.get("notes") or {}).get("skipped_layers") or [])
        layers = report.get("layers") or []
        record["layers"] = [{key: layer[key] for key in LAYER_FIELDS if key in layer} for layer in layers]
    if path != dense:
        record["output_error_measured"] = output_error(dense, path, calibration)
    start = time.perf_counter()
    metrics = task.evaluate_metrics(path, threads=threads)
    record["score_seconds"] = time.perf_counter() - start
    record["load_average"] = [load_before, os.getloadavg()[0]]
    record.update(metrics)
    if path != dense:
        path.unlink(missing_ok=True)
    return record


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, all its threads."""
    times = os.times()
    return times.user + times.system


def output_error(dense: Path, pruned: Path, inputs: dict, batch: int = 32) -> float:
    """`||Y_pruned - Y_dense|| / ||Y_dense||` of the models' first outputs on `inputs` (the calibration set).

    Measured here for every cell alike (the report gives it only when calibrated). One sample at a time when
    the model refuses a batch (ddddocr's declares batch 1)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in (dense, pruned)
    ]
    n = len(next(iter(inputs.values())))
    diff = ref = 0.0
    for begin in range(0, n, batch):
        feed = {name: array[begin : begin + batch] for name, array in inputs.items()}
        try:
            outputs = [s.run(None, feed)[0].astype(np.float64) for s in sessions]
        except Exception:  # a refused batch (ddddocr: batch 1, time-major outputs (T, 1, C))
            rows = range(len(next(iter(feed.values()))))
            outputs = [
                np.concatenate(
                    [s.run(None, {k: v[i : i + 1] for k, v in feed.items()})[0] for i in rows], axis=1
                ).astype(np.float64)
                for s in sessions
            ]
        diff += float(((outputs[1] - outputs[0]) ** 2).sum())
        ref += float((outputs[0] ** 2).sum())
    return (diff / ref) ** 0.5


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _row(method: str, mode: str, rate: str, cell: dict | None, failed: dict | None) -> str:
    if cell is None:
        why = f"failed: {failed['error'][:80]}" if failed else "not run"
        return f"| {method} | {mode} | {rate} | {why} | | | | |"
    achieved = cell.get("compression_rate")
    error = cell.get("output_error_measured", cell.get("relative_output_error"))
    seconds = cell.get("prune_seconds")
    cpu = cell.get("prune_cpu_seconds")
    load = cell.get("load_average") or []
    load_note = f" (load {load[0]:.1f}-{load[1]:.1f})" if len(load) == 2 else ""
    cpu_note = f" / {cpu:.0f}" if cpu is not None else ""
    return (
        f"| {method} | {mode} | {rate} | {achieved:.2f}x | {cell['exact_line_accuracy']:.2f} "
        f"({cell['exact_lines']}/{cell['lines']}) | {cell['character_accuracy']:.2f} | "
        + (f"{error:.4f}" if error is not None else "-")
        + " | "
        + (f"{seconds:.0f}{cpu_note}{load_note}" if seconds is not None else "-")
        + " |"
    )


def table_methods(allocation: str) -> tuple[str, ...]:
    """The methods a table shows: under `uniform`, unstructured already keeps `1/rate` of each layer, so
    `unstructured-uniform` is the same cell and is left out."""
    return tuple(m for m in METHODS if not (allocation == "uniform" and m == "unstructured-uniform"))


def allocations_of(data: dict) -> list[str]:
    """The allocations a results JSON holds cells of, in `ALLOCATIONS` order."""
    found = {r.get("allocation", "planned") for k, r in {**data["cells"], **data.get("failed", {})}.items()
             if k != "dense"}  # fmt: skip
    return [a for a in ALLOCATIONS if a in found] + sorted(found - set(ALLOCATIONS))


def table(data: dict, allocation: str = "planned") -> str:
    """The Markdown table of a results JSON for one allocation: one row per method, calibration and rate,
    2x first.

    Columns: measured rate, exact lines (percent and count), characters (percent), the relative output error
    of the model's output on the calibration samples, and the wall seconds of `prune_onnx` with the model
    load / its process CPU seconds (user + sys), with the load average before and after. Cells not
    measured say "not run", failed ones "failed:" and the error."""
    data = rekeyed(data)
    results = data["cells"]
    failed = data.get("failed", {})
    samples = data.get("calibration_samples", 128)
    lines = [
        "| method | calibration | target | measured rate | exact lines % | characters % "
        "| rel. output error | prune wall s / CPU s (load) |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    dense = results.get("dense")
    if dense:
        lines.append(
            f"| dense | - | 1x | 1.00x | {dense['exact_line_accuracy']:.2f} ({dense['exact_lines']}/"
            f"{dense['lines']}) | {dense['character_accuracy']:.2f} | 0 | - |"
        )
    for rate in ("2x", "1.33x", "4x"):
        for method in table_methods(allocation):
            for calibrated in (True, False):
                key = cell_key(method, rate, calibrated, allocation)
                mode = f"{samples} samples" if calibrated else "none (\\|w\\|)"
                lines.append(_row(method, mode, rate, results.get(key), failed.get(key)))
    return "\n".join(lines)


def compact_table(data: dict, allocation: str = "planned") -> str:
    """One row per method and calibration, one column per rate: exact lines % (two decimals: 400 lines
    move it by 0.25) / characters % (measured rate); "not run" or "failed" where there is no measurement."""
    data = rekeyed(data)
    results = data["cells"]
    failed = data.get("failed", {})
    samples = data.get("calibration_samples", 128)
    rates = ("1.33x", "2x", "4x")
    lines = [
        "| method | calibration | " + " | ".join(rates) + " |",
        "|---|---|" + "---|" * len(rates),
    ]
    dense = results.get("dense")
    if dense:
        lines.append(
            f"| dense | - | {dense['exact_line_accuracy']:.2f} / {dense['character_accuracy']:.1f} (1x) |"
            + " - |" * (len(rates) - 1)
        )
    for method in table_methods(allocation):
        for calibrated in (False, True):
            mode = f"{samples} samples" if calibrated else "none (\\|w\\|)"
            row = f"| {method} | {mode} |"
            for rate in rates:
                key = cell_key(method, rate, calibrated, allocation)
                cell = results.get(key)
                if cell is not None:
                    row += (
                        f" {cell['exact_line_accuracy']:.2f} / {cell['character_accuracy']:.1f} "
                        f"({cell['compression_rate']:.2f}x) |"
                    )
                else:
                    row += " failed |" if key in failed else " not run |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the table (or print it from a JSON) and write the results after every cell."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--task", choices=list(TASKS), default="ppocr", help="model and metric (default: ppocr)"
    )
    parser.add_argument("--json", type=Path, help="results file, rewritten after each cell")
    parser.add_argument("--resume", action="store_true", help="skip the cells already in --json")
    parser.add_argument("--table", type=Path, metavar="JSON", help="print the table of a results JSON")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--rates", nargs="+", choices=list(RATES), default=list(RATES))
    parser.add_argument(
        "--modes", nargs="+", choices=("magnitude", "calibrated"), default=["magnitude", "calibrated"]
    )
    parser.add_argument(
        "--allocation",
        choices=list(ALLOCATIONS),
        help="how the rate is shared out between the layers (prune_onnx's allocation; default planned); "
        "with --table: the allocation to print (default: every one in the JSON)",
    )
    parser.add_argument(
        "--compact", action="store_true", help="with --table: one row per method, one column per rate"
    )
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads when scoring")
    args = parser.parse_args(argv)
    if args.table:
        results = rekeyed(json.loads(args.table.read_text()))
        render = compact_table if args.compact else table
        chosen = [args.allocation] if args.allocation else allocations_of(results) or ["planned"]
        print("\n\n".join(f"allocation {a}:\n\n{render(results, a)}" for a in chosen))
        return 0
    allocation = args.allocation or "planned"
    if args.json is None:
        parser.error("--json is required to run the table")
    task = load_task(args.task)
    data: dict = {"cells": {}}
    if args.resume and args.json.exists():
        data = rekeyed(json.loads(args.json.read_text()))
        if task_of(data) not in (None, args.task):
            parser.error(f"{args.json} holds --task {task_of(data)} results, not {args.task}")
        if data.get("calibration_samples", args.calibration_samples) != args.calibration_samples:
            parser.error(f"{args.json} was measured with {data['calibration_samples']} calibration samples")
    data.update(
        {
            "command": "python benchmarks/bench_ocr_oneshot.py " + " ".join(argv or sys.argv[1:]),  # the last
            "machine": machine(),
            "task": args.task,
            "model": str(task.model_path()),
            "evaluation_lines": task.EVAL_LINES,
            "calibration_samples": args.calibration_samples,
            "calibration_seed": task.CALIBRATION_SEED,
            "seed": args.seed,
        }
    )
    calibration = task.calibration(args.calibration_samples)
    modes = [mode == "calibrated" for mode in args.modes]
    command = "python benchmarks/bench_ocr_oneshot.py " + " ".join(argv or sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="ocr_oneshot_") as tmpdir:
        tmp = Path(tmpdir)
        for method, rate, calibrated in cells(args.methods, args.rates, modes):
            key = cell_key(method, rate, calibrated, allocation)
            if key in data["cells"]:
                continue
            try:
                record = run_cell(
                    task, method, rate, calibrated, allocation, calibration, args.seed, args.threads, tmp
                )
            except Exception as error:  # one failing cell must not lose the others; the JSON says why
                record = {
                    "method": method,
                    "rate": rate,
                    "calibrated": calibrated,
                    "allocation": allocation,
                    "error": repr(error),
                    "load_average": [os.getloadavg()[0]],
                }
                print(f"{key}: FAILED {error!r}", flush=True)
            else:
                print(
                    f"{key}: exact {record['exact_line_accuracy']:.1f} %, characters "
                    f"{record['character_accuracy']:.1f} %, "
                    f"rate {record.get('compression_rate') or 1.0:.2f}x, "
                    f"error {record.get('output_error_measured') or 0.0:.4f}, "
                    f"prune {record.get('prune_seconds', 0.0):.1f} s, load {record['load_average'][0]:.1f}",
                    flush=True,
                )
            record["command"] = command
            if "error" not in record:
                data["cells"][key] = record
                data.get("failed", {}).pop(key, None)
            else:
                data.setdefault("failed", {})[key] = record
            _write_json(args.json, data)
    print(table(data, allocation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
