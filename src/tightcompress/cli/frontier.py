"""`tightcompress frontier`: accuracy against rate for every method over rates and seeds on the embedded
demo; the rate each method keeps at equal accuracy and tight over column combining there (F.json)."""

from __future__ import annotations

import argparse
import logging
import sys
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
from tightcompress.pipeline.config import (
    DEFAULT_RATES,
    DEFAULT_SEEDS,
    FRONTIER_METHODS,
    DemoConfig,
)
from tightcompress.utils.atomic import output_group, write_json_atomic

if TYPE_CHECKING:
    from tightcompress.pipeline.frontier import FrontierConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `frontier`."""
    parser = subparsers.add_parser(
        "frontier", help="accuracy vs rate for every method over rates and seeds; rates at equal accuracy"
    )
    add_methods(parser, FRONTIER_METHODS, list(FRONTIER_METHODS), "methods")
    parser.add_argument(
        "--rates", nargs="+", type=float_in(1), default=list(DEFAULT_RATES), metavar="R", help="target rates"
    )
    parser.add_argument(
        "--seeds", nargs="+", type=SEED, default=list(DEFAULT_SEEDS), metavar="S", help="demo seeds"
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
    declare_paths(parser, outputs=("json", "plot"), output_dirs=("workdir",))


def config_from_args(args: argparse.Namespace) -> FrontierConfig:
    """The frontier settings of the command line."""
    from tightcompress.pipeline.frontier import DemoKind, FrontierConfig, parse_methods

    compress = budget_config(args)
    demo = DemoConfig(widths=args.widths, dense_epochs=args.dense_epochs, compress=compress)
    return FrontierConfig(
        methods=parse_methods(args.methods),
        rates=tuple(args.rates),
        seeds=tuple(args.seeds),
        model=DemoKind(demo),
    )


def format_summary(result: dict) -> str:
    """Mean accuracy per method and rate, then the iso-accuracy rates and tight / column combining."""
    dense = result["dense"]
    lines = [
        f"dense {dense['accuracy_mean']:.2f}% (std {dense['accuracy_std']:.2f}) "
        f"over {len(dense['per_seed'])} seed(s)",
        f"{'method':<18} {'target':>7} {'rate':>7} {'accuracy':>9} {'std':>5} {'speedup':>8} {'energy':>7}",
    ]
    for row in result["summary"]:
        lines.append(
            f"{row['method']:<18} {row['target_rate']:>6g}x {row['compression_rate_mean']:>6.2f}x "
            f"{row['accuracy_mean']:>8.2f}% {row['accuracy_std']:>5.2f} {row['speedup_mean']:>7.2f}x "
            f"{row['energy_gain_mean']:>6.2f}x"
        )
    for tolerance, rates in result["iso_accuracy"].items():
        text = ", ".join(f"{m} {'-' if r is None else f'{r:.2f}x'}" for m, r in rates.items())
        lines.append(f"highest rate within {tolerance} pp of dense: {text}")
        ratio = result["ratios"][tolerance]
        if ratio["rate_tight_over_cc"] is not None:
            lines.append(
                f"  tight / column combining there: rate {ratio['rate_tight_over_cc']:.2f}x, "
                f"throughput {ratio['throughput_tight_over_cc']:.2f}x, "
                f"energy efficiency {ratio['energy_tight_over_cc']:.2f}x"
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
            write_json_atomic(stage(args.json), result)
        if args.plot:
            from tightcompress.viz.frontier_plot import write_frontier_png

            write_frontier_png(result, stage(args.plot))
    if not args.quiet:
        print(f"{len(result['points'])} point(s) in {result['seconds']:.0f} s", file=sys.stderr)
    return 0
