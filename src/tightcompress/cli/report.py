"""`tightcompress report REPORT.json [...] --html OUT.html`: a static HTML report with embedded plots."""

from __future__ import annotations

import argparse
import csv

from tightcompress.cli.common import add_quiet, declare_paths, find_layer
from tightcompress.errors import TightCompressError
from tightcompress.format.io import load_packed
from tightcompress.sweep import read_sweep_csv
from tightcompress.viz.report_html import check_sweep_rows, write_html
from tightcompress.viz.runs import runs_from_files


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `report`."""
    parser = subparsers.add_parser("report", help="render report JSON(s) as a static HTML page with plots")
    parser.add_argument(
        "reports",
        nargs="+",
        metavar="REPORT.json",
        help="pack, simulate, compress, demo or frontier JSONs, any mix; each run gets its own label",
    )
    parser.add_argument("--html", required=True, metavar="OUT.html", help="write the page here")
    parser.add_argument("--sweep", metavar="SWEEP.csv", help="a `tightcompress sweep` CSV to plot")
    parser.add_argument("--packed", metavar="PACKED.safetensors", help="packed file for the nonzero heat map")
    parser.add_argument(
        "--layer", help="which layer of --packed to draw, `conv1` or `conv1.weight` (default: the largest)"
    )
    parser.add_argument("--title", default="tightcompress report", help="page title")
    add_quiet(parser)
    parser.set_defaults(func=run)
    declare_paths(parser, inputs=("reports", "sweep", "packed"), outputs=("html",))


def run(args: argparse.Namespace) -> int:
    """Read and check every input first, then render and write the page atomically."""
    runs, frontiers = runs_from_files(args.reports)
    sweep_rows = []
    if args.sweep:
        try:
            sweep_rows = check_sweep_rows(read_sweep_csv(args.sweep), args.sweep)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise TightCompressError(f"cannot read sweep CSV {args.sweep} ({exc})") from None
    packed = None
    if args.packed:
        layers = load_packed(args.packed)
        if args.layer is None:
            packed = max(layers.values(), key=lambda p: p.K * p.N)
        else:
            packed = layers[find_layer(layers, args.layer, args.packed)]
    elif args.layer:
        raise TightCompressError("--layer needs --packed")
    write_html(args.html, runs, frontiers=frontiers, sweep_rows=sweep_rows, packed=packed, title=args.title)
    print(f"{len(runs)} run(s), {len(frontiers)} frontier(s) -> {args.html}")
    return 0
