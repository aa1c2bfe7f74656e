"""`tightcompress frontier`: accuracy against rate for every method over rates and seeds, on the embedded
demo or on the user's own model (`--onnx M.onnx` or `--model file.py:Class --checkpoint C`, scored by
`--eval module:function`); the rate each method keeps at equal accuracy and tight over column combining
there (F.json)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from tightcompress.cli.common import (
    JOBS,
    MAX_EPOCHS,
    SEED,
    add_methods,
    add_quiet,
    compile_kernels_once,
    declare_paths,
    float_in,
)
from tightcompress.cli.compress import add_budget_options, setup_logging
from tightcompress.cli.demo import add_widths_option, budget_config
from tightcompress.errors import TightCompressError
from tightcompress.pipeline.config import (
    DEFAULT_RATES,
    DEFAULT_SEEDS,
    FRONTIER_METHODS,
    ONESHOT_METHODS,
    DemoConfig,
)
from tightcompress.pipeline.iso_accuracy import TOLERANCES
from tightcompress.pipeline.oneshot import ALLOCATIONS
from tightcompress.results import FrontierReport
from tightcompress.utils.atomic import output_group, write_json_atomic

if TYPE_CHECKING:
    from tightcompress.pipeline.frontier import FrontierConfig, ModelKind

ALL_METHODS = tuple(dict.fromkeys((*FRONTIER_METHODS, *ONESHOT_METHODS)))
MODES = ("one-shot", "fine-tune")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `frontier`."""
    parser = subparsers.add_parser(
        "frontier", help="accuracy vs rate for every method over rates and seeds; rates at equal accuracy"
    )
    add_methods(parser, ALL_METHODS, [], "methods (default: every method of the model's kind)")
    parser.add_argument(
        "--rates", nargs="+", type=float_in(1), default=list(DEFAULT_RATES), metavar="R", help="target rates"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=SEED, default=list(DEFAULT_SEEDS), metavar="S", help="demo seeds"
    )
    outside = parser.add_argument_group(
        "your own model (default: the embedded demo)",
        "one-shot: every point prunes the model without training (calibrated with --calibration) and "
        "scores it with --eval; fine-tune: the compress pipeline on --data (PyTorch models)",
    )
    outside.add_argument("--onnx", metavar="M.onnx", help="an ONNX model")
    outside.add_argument("--model", metavar="file.py:Class|module:Class", help="a PyTorch model class")
    outside.add_argument("--checkpoint", metavar="C.pt", help="its trained state_dict (with --model)")
    outside.add_argument(
        "--model-args", metavar="JSON", default="{}", help="keyword arguments of the model's constructor"
    )
    outside.add_argument(
        "--eval",
        metavar="module:function",
        help="your metric, higher is better: function(pruned ONNX path | PyTorch model) -> number "
        "(also file.py:function)",
    )
    outside.add_argument(
        "--calibration",
        metavar="FILE",
        help="model inputs for calibrated pruning: .npz by input name (ONNX), .pt/.npy tensor (PyTorch)",
    )
    outside.add_argument(
        "--allocation",
        choices=ALLOCATIONS,
        help="one-shot: how each point's rate is shared out between the layers, as `pack --allocation` "
        "(default planned; uniform: every layer at the rate itself)",
    )
    outside.add_argument(
        "--mode", choices=MODES, help="one-shot (default for your model) or fine-tune (PyTorch, with --data)"
    )
    outside.add_argument("--data", metavar="DIR", help="fine-tune: ImageFolder tree ROOT/CLASS/*.png")
    parser.add_argument(
        "--tolerances",
        nargs="+",
        type=float_in(0),
        default=list(TOLERANCES),
        metavar="T",
        help="allowed drops below dense for the iso-accuracy rates, in the metric's units (default 0.5 1)",
    )
    add_widths_option(parser)
    parser.add_argument("--json", metavar="F.json", help="write the frontier here (atomically)")
    parser.add_argument("--plot", metavar="F.png", help="also draw accuracy against rate to this PNG")
    parser.add_argument("--workdir", metavar="DIR", help="points and stages (default: the demo's cache)")
    parser.add_argument("--resume", action="store_true", help="reuse every finished point in --workdir")
    parser.add_argument(
        "--jobs", type=JOBS, metavar="N", help="points run at once on this machine (default: the cores)"
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run every point as a task on a Ray cluster (HOST:PORT, ray://HOST:PORT, auto, local)",
    )
    budget = parser.add_argument_group("budget (default: the demo's)")
    demo = DemoConfig()
    budget.add_argument("--dense-epochs", type=float_in(0, MAX_EPOCHS), default=demo.dense_epochs)
    add_budget_options(budget, rounds_help="cubic rounds to the lowest rate")
    add_quiet(parser)
    parser.set_defaults(func=run)
    declare_paths(
        parser,
        inputs=("onnx", "checkpoint", "calibration"),
        outputs=("json", "plot"),
        output_dirs=("workdir",),
    )


def config_from_args(args: argparse.Namespace) -> FrontierConfig:
    """The frontier settings of the command line: the grid, and the model kind its flags name."""
    from tightcompress.pipeline.frontier import FrontierConfig, parse_methods

    model = model_from_args(args)
    methods = parse_methods(args.methods, allowed=model.methods) if args.methods else None
    return FrontierConfig(
        methods=methods,
        rates=tuple(args.rates),
        seeds=tuple(args.seeds),
        model=model,
        tolerances=tuple(args.tolerances),
    )


def model_from_args(args: argparse.Namespace) -> ModelKind:
    """The model kind of the flags: the demo, an ONNX file or a PyTorch model (one-shot or fine-tuned)."""
    from tightcompress.cli.compress import _model_args
    from tightcompress.pipeline.frontier import DemoKind
    from tightcompress.pipeline.frontier.kinds.metric import Metric, metric_spec

    if args.onnx is None and args.model is None:
        for flag in ("eval", "calibration", "allocation", "mode", "data", "checkpoint"):
            if getattr(args, flag) is not None:
                raise TightCompressError(f"--{flag} applies to your own model (--onnx or --model)")
        compress = budget_config(args)
        return DemoKind(DemoConfig(widths=args.widths, dense_epochs=args.dense_epochs, compress=compress))
    if args.onnx is not None and args.model is not None:
        raise TightCompressError("give --onnx or --model, not both")
    if args.eval is None:
        raise TightCompressError("give --eval module:function: your metric, higher is better")
    metric = Metric(metric_spec(args.eval))
    mode = args.mode or "one-shot"
    allocation = args.allocation or "planned"
    if args.onnx is not None:
        if mode != "one-shot":
            raise TightCompressError("--mode fine-tune needs a PyTorch model (--model and --checkpoint)")
        if args.checkpoint is not None or args.data is not None:
            raise TightCompressError("--checkpoint and --data apply to --model, not --onnx")
        from tightcompress.pipeline.frontier.kinds.onnx import OnnxKind

        calibration = None if args.calibration is None else Path(args.calibration)
        return OnnxKind(Path(args.onnx), metric, calibration, allocation=allocation)
    if args.checkpoint is None:
        raise TightCompressError("give --checkpoint with --model")
    kwargs = _model_args(args.model_args)
    if mode == "fine-tune":
        from tightcompress.pipeline.frontier.kinds.finetune import FineTuneKind

        if args.calibration is not None:
            raise TightCompressError("--calibration is for one-shot; fine-tune trains on --data")
        if args.allocation is not None:
            raise TightCompressError(
                "--allocation is for one-shot; fine-tune shares the rate out by its own schedule"
            )
        return FineTuneKind(
            args.model,
            Path(args.checkpoint),
            metric,
            data=args.data,
            model_args=kwargs,
            compress=budget_config(args),
        )
    if args.data is not None:
        raise TightCompressError("--data is for --mode fine-tune")
    from tightcompress.pipeline.frontier.kinds.pytorch import TorchKind

    calibration = None if args.calibration is None else Path(args.calibration)
    return TorchKind(
        args.model, Path(args.checkpoint), metric, calibration, model_args=kwargs, allocation=allocation
    )


def _gain(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def format_summary(result: dict) -> str:
    """Mean accuracy per method and rate, then the iso-accuracy rates and tight / column combining."""
    dense = result["dense"]
    metric = result.get("config", {}).get("metric")
    unit, drop = ("", "") if metric else ("%", " pp")
    score = "score" if metric else "accuracy"
    lines = [
        f"dense {dense['accuracy_mean']:.2f}{unit} (std {dense['accuracy_std']:.2f}) "
        f"over {len(dense['per_seed'])} seed(s)" + (f", metric {metric}" if metric else ""),
        f"{'method':<18} {'target':>7} {'rate':>7} {score:>9} {'std':>5} {'speedup':>8} {'energy':>7}",
    ]
    for row in result["summary"]:
        lines.append(
            f"{row['method']:<18} {row['target_rate']:>6g}x {row['compression_rate_mean']:>6.2f}x "
            f"{row['accuracy_mean']:>8.2f}{unit or ' '} {row['accuracy_std']:>5.2f} "
            f"{_gain(row['speedup_mean']):>8} {_gain(row['energy_gain_mean']):>7}"
        )
    for tolerance, rates in result["iso_accuracy"].items():
        text = ", ".join(f"{m} {'-' if r is None else f'{r:.2f}x'}" for m, r in rates.items())
        lines.append(f"highest rate within {tolerance}{drop} of dense: {text}")
        ratio = result["ratios"][tolerance]
        if ratio["rate_tight_over_cc"] is not None:
            lines.append(
                f"  tight / column combining there: rate {ratio['rate_tight_over_cc']:.2f}x, "
                f"throughput {_gain(ratio['throughput_tight_over_cc'])}, "
                f"energy efficiency {_gain(ratio['energy_tight_over_cc'])}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the frontier, print the summary, write F.json and the plot."""
    from tightcompress.pipeline.frontier import run_frontier

    setup_logging(args.quiet)
    logging.getLogger("tightcompress.pipeline").setLevel(logging.WARNING)  # the bar tells the progress
    config = config_from_args(args)
    compile_kernels_once(args)
    with tqdm(total=0, desc="frontier", unit="step", disable=args.quiet, file=sys.stderr) as bar:

        def on_total(total: int) -> None:
            bar.reset(total=total)

        def progress(label: str) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update()

        result = run_frontier(
            config,
            workdir=args.workdir,
            resume=args.resume,
            jobs=args.jobs,
            ray_address=args.ray,
            progress=progress,
            on_total=on_total,
        )
    print(format_summary(result))
    with output_group() as stage:  # the JSON and the plot are written all or none
        if args.json:
            write_json_atomic(stage(args.json), FrontierReport.dump(result))
        if args.plot:
            from tightcompress.viz.frontier_plot import write_frontier_png

            write_frontier_png(result, stage(args.plot))
    if not args.quiet:
        print(f"{len(result['points'])} point(s) in {result['seconds']:.0f} s", file=sys.stderr)
    return 0
