"""`tightcompress sweep`: run `pack` over a grid of methods, G, h and sparsity and write one CSV."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from tightcompress.api import METHODS
from tightcompress.cli.common import (
    MAX_ITERATIONS,
    add_methods,
    add_quiet,
    compile_kernels_once,
    declare_paths,
    height_arg,
    int_in,
)
from tightcompress.cli.pack import (
    add_cc_variant_options,
    add_key_option,
    add_parallel_options,
    matrices_from_args,
)
from tightcompress.errors import TightCompressError
from tightcompress.readers import INPUT_HELP
from tightcompress.sweep import grid_configs, run_sweep, write_csv_atomic
from tightcompress.zoo import ZOO


def _list(kind):
    """argparse type: a comma-separated list of `kind`."""

    def parse(text: str) -> list:
        try:
            return [kind(item.strip()) for item in text.split(",") if item.strip()]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(f"bad list {text!r}: {exc}") from None

    return parse


def _sparsity(text: str) -> float | None:
    return None if text == "none" else float(text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `sweep`."""
    parser = subparsers.add_parser("sweep", help="pack over a grid of methods, G, h, sparsity; write a CSV")
    parser.add_argument("input", nargs="?", help=f"{INPUT_HELP} (or --zoo)")
    add_key_option(parser)
    parser.add_argument("--zoo", metavar="NAME", help=f"a zoo model instead of a file: {', '.join(ZOO)}")
    parser.add_argument("--checkpoint", metavar="STATE.pt", help="with --zoo: weights of that architecture")
    parser.add_argument(
        "--zoo-layers", choices=("all", "conv"), default="all", help="with --zoo: which layers"
    )
    add_methods(parser, METHODS, ["tight"], "packing methods")
    parser.add_argument("--groups", type=_list(int), default=[8], metavar="G,G,..", help="lane widths G")
    parser.add_argument(
        "--heights", type=_list(height_arg), default=["auto"], metavar="h,h,..|auto", help="height caps"
    )
    parser.add_argument(
        "--sparsities",
        type=_list(_sparsity),
        default=[None],
        metavar="S,S,..",
        help="sparsity targets; 'none' keeps each matrix as given (default: none)",
    )
    parser.add_argument("--tile", type=int, default=32, metavar="C", help="array columns per tile")
    parser.add_argument("--alpha", type=int, default=8, help="column combining: rows per group at most")
    parser.add_argument("--gamma", type=float, default=0.5, help="column combining: conflicts allowed")
    add_cc_variant_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutation search")
    parser.add_argument(
        "--iterations", type=int_in(0, MAX_ITERATIONS), help="annealing moves per layer (default: scaled)"
    )
    parser.add_argument("--per-layer", action="store_true", help="also write one row per layer per point")
    parser.add_argument("--csv", required=True, metavar="OUT.csv", help="write the sweep here (atomically)")
    add_parallel_options(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)
    declare_paths(parser, inputs=("input", "checkpoint"), outputs=("csv",))


def run(args: argparse.Namespace) -> int:
    """Build the grid, pack every (point, layer) pair, write the CSV."""
    configs = grid_configs(
        args.methods,
        args.groups,
        args.heights,
        args.sparsities,
        tile=args.tile,
        seed=args.seed,
        iterations=args.iterations,
        alpha=args.alpha,
        gamma=args.gamma,
        merge=args.merge,
        section=args.section,
    )
    matrices, _notes, _zoo, _found = matrices_from_args(args)
    if not matrices:
        raise TightCompressError("no layers to sweep")
    compile_kernels_once(args)
    total = len(configs) * len(matrices)
    with tqdm(total=total, desc="sweep", unit="pack", disable=args.quiet, file=sys.stderr) as bar:
        rows = run_sweep(
            matrices,
            configs,
            jobs=args.jobs,
            ray_address=args.ray,
            per_layer=args.per_layer,
            progress=lambda _name: bar.update(),
        )
    write_csv_atomic(args.csv, rows)
    print(f"{len(configs)} operating point(s) x {len(matrices)} layer(s) -> {args.csv}")
    return 0
