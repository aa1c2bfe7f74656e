"""One-shot pruning of a real pretrained CNN: ddddocr's recognition model, every method at 1.33x, 2x and 4x.

Each cell prunes the dense model once with `tightcompress.pipeline.oneshot.prune_onnx` (no fine-tuning),
without calibration (|w|) and with 128 calibration samples (saliency |w| x ||x|| and layer-by-layer
reconstruction, every method alike), writes the pruned ONNX file, and scores it on the 400 rendered lines
of `benchmarks/ocr/ddddocr_task.py`: exact-line accuracy and character accuracy (1 - total edit distance /
total characters), both in percent. It records the wall time of `prune_onnx` (one run per cell: the table
has 37 cells and the machine is shared; the load average is written next to each) and the time to score.

Cells are run in priority order (dense; tight, nm and unstructured at 2x with and without calibration;
then the rest) and written to the JSON after each one, so `--resume` picks up where a run stopped.

    nice python benchmarks/bench_ocr_oneshot.py --json ocr_oneshot.json            # the whole table
    nice python benchmarks/bench_ocr_oneshot.py --json ocr_oneshot.json --resume   # what is missing
    python benchmarks/bench_ocr_oneshot.py --table ocr_oneshot.json                # Markdown from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "ocr"))
import ddddocr_task  # the task: model, evaluation lines, calibration

METHODS = ("tight", "tight-subword", "nm", "nm-permuted", "column-combining", "unstructured")
RATES = {"1.33x": 4.0 / 3.0, "2x": 2.0, "4x": 4.0}
FIRST = [(m, "2x", c) for m in ("tight", "nm", "unstructured") for c in (True, False)]


def machine() -> str:
    """One line naming the CPU, the cores this process may use and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


def cell_key(method: str, rate: str, calibrated: bool) -> str:
    """The cell's name in the JSON: 'dense' or 'METHOD@RATE/calibrated|magnitude'."""
    if method == "dense":
        return "dense"
    return f"{method}@{rate}/{'calibrated' if calibrated else 'magnitude'}"


def cells(methods: Sequence[str], rates: Sequence[str], modes: Sequence[bool]) -> list[tuple[str, str, bool]]:
    """Every requested cell, the most important first (see the module docstring)."""
    wanted = [(m, r, c) for m in methods for r in rates for c in modes]
    first = [cell for cell in FIRST if cell in wanted]
    return [("dense", "1x", False), *first, *[cell for cell in wanted if cell not in first]]


def run_cell(
    method: str, rate: str, calibrated: bool, calibration: dict, seed: int, threads: int, workdir: Path
) -> dict:
    """Prune (unless dense), score, and return the cell's record."""
    dense = ddddocr_task.model_path()
    load_before = os.getloadavg()[0]
    record: dict = {"method": method, "rate": rate, "calibrated": calibrated}
    if method == "dense":
        path = dense
    else:
        from tightcompress.pipeline.oneshot import prune_onnx

        path = workdir / f"{method}_{rate}_{int(calibrated)}.onnx"
        start = time.perf_counter()
        report = prune_onnx(
            dense,
            path,
            method=method,
            rate=RATES[rate],
            calibration=calibration if calibrated else None,
            seed=seed,
        )
        record["prune_seconds"] = time.perf_counter() - start
        record["compression_rate"] = report.get("compression_rate")
        record["relative_output_error"] = report.get("relative_output_error")
        layers = report.get("layers") or []
        record["layers"] = len(layers)
        record["dropped_weight_fraction"] = _mean_dropped(layers)
    start = time.perf_counter()
    metrics = ddddocr_task.evaluate_metrics(path, threads=threads)
    record["score_seconds"] = time.perf_counter() - start
    record["load_average"] = [load_before, os.getloadavg()[0]]
    record.update(metrics)
    if path != dense:
        path.unlink(missing_ok=True)
    return record


def _mean_dropped(layers: list[dict]) -> float | None:
    values = [layer.get("dropped_weight_fraction") for layer in layers]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def table(data: dict) -> str:
    """The Markdown table of a results JSON: one row per method and mode, exact / character accuracy."""
    results = data["cells"]
    rates = [r for r in RATES if any(c["rate"] == r for c in results.values())]
    head = "| method | calibration | " + " | ".join(rates) + " | prune time (s) |"
    lines = [head, "|" + "---|" * (len(rates) + 3)]
    dense = results.get("dense")
    if dense:
        cell = f"{dense['exact_line_accuracy']:.1f} / {dense['character_accuracy']:.1f} (1x)"
        lines.append(f"| dense | - | {' | '.join([cell] + ['-'] * (len(rates) - 1))} | - |")
    for method in METHODS:
        for calibrated in (False, True):
            row, times = [], []
            for rate in rates:
                cell = results.get(cell_key(method, rate, calibrated))
                if cell is None:
                    row.append("not run")
                    continue
                achieved = cell.get("compression_rate")
                rate_note = f" ({achieved:.2f}x)" if achieved and abs(achieved - RATES[rate]) > 0.02 else ""
                row.append(f"{cell['exact_line_accuracy']:.1f} / {cell['character_accuracy']:.1f}{rate_note}")
                times.append(f"{cell['prune_seconds']:.0f}")
            if any(r != "not run" for r in row):
                mode = f"{data.get('calibration_samples', 128)} samples" if calibrated else "none (\\|w\\|)"
                lines.append(f"| {method} | {mode} | {' | '.join(row)} | {', '.join(times)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the table (or print it from a JSON) and write the results after every cell."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="results file, rewritten after each cell")
    parser.add_argument("--resume", action="store_true", help="skip the cells already in --json")
    parser.add_argument("--table", type=Path, metavar="JSON", help="print the table of a results JSON")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--rates", nargs="+", choices=list(RATES), default=list(RATES))
    parser.add_argument(
        "--modes", nargs="+", choices=("magnitude", "calibrated"), default=["magnitude", "calibrated"]
    )
    parser.add_argument("--calibration-samples", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads when scoring")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    if args.json is None:
        parser.error("--json is required to run the table")
    data: dict = {"cells": {}}
    if args.resume and args.json.exists():
        data = json.loads(args.json.read_text())
    data.update(
        {
            "command": "python benchmarks/bench_ocr_oneshot.py " + " ".join(argv or sys.argv[1:]),
            "machine": machine(),
            "model": str(ddddocr_task.model_path()),
            "evaluation_lines": ddddocr_task.EVAL_LINES,
            "calibration_samples": args.calibration_samples,
            "calibration_seed": ddddocr_task.CALIBRATION_SEED,
            "seed": args.seed,
        }
    )
    calibration = ddddocr_task.calibration(args.calibration_samples)
    modes = [mode == "calibrated" for mode in args.modes]
    with tempfile.TemporaryDirectory(prefix="ocr_oneshot_") as tmp:
        for method, rate, calibrated in cells(args.methods, args.rates, modes):
            key = cell_key(method, rate, calibrated)
            if key in data["cells"]:
                continue
            try:
                record = run_cell(method, rate, calibrated, calibration, args.seed, args.threads, Path(tmp))
            except Exception as error:  # one failing cell must not lose the others; the JSON says why
                record = {"method": method, "rate": rate, "calibrated": calibrated, "error": repr(error)}
                print(f"{key}: FAILED {error!r}", flush=True)
            else:
                print(
                    f"{key}: exact {record['exact_line_accuracy']:.1f} %, characters "
                    f"{record['character_accuracy']:.1f} %, prune {record.get('prune_seconds', 0.0):.1f} s, "
                    f"load {record['load_average'][0]:.1f}",
                    flush=True,
                )
            if "error" not in record:
                data["cells"][key] = record
            else:
                data.setdefault("failed", {})[key] = record
            _write_json(args.json, data)
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
