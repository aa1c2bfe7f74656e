"""`tightcompress report REPORT.json [...] --html OUT.html`: a static HTML report with embedded plots."""

from __future__ import annotations

import argparse
import sys

from tightcompress.errors import TightCompressError
from tightcompress.format.io import load_packed
from tightcompress.sweep import read_sweep_csv
from tightcompress.viz.frontier_plot import is_frontier
from tightcompress.viz.report_html import load_report_json, write_html


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `report`."""
    parser = subparsers.add_parser("report", help="render report JSON(s) as a static HTML page with plots")
    parser.add_argument(
        "reports", nargs="+", metavar="REPORT.json", help="pack/simulate reports, demo or frontier JSON"
    )
    parser.add_argument("--html", required=True, metavar="OUT.html", help="write the page here")
    parser.add_argument("--sweep", metavar="SWEEP.csv", help="a `tightcompress sweep` CSV to plot")
    parser.add_argument("--packed", metavar="PACKED.safetensors", help="packed file for the nonzero heat map")
    parser.add_argument("--layer", help="which layer of --packed to draw (default: the largest)")
    parser.add_argument("--title", default="tightcompress report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read and check every input first, then render and write the page atomically."""
    loaded = [load_report_json(path) for path in args.reports]
    reports = [data for data in loaded if "layers" in data]
    frontiers = [data for data in loaded if is_frontier(data)]
    demo_rows = [row for data in loaded for row in data.get("rows", [])]
    sweep_rows = []
    if args.sweep:
        try:
            sweep_rows = read_sweep_csv(args.sweep)
        except OSError as exc:
            raise TightCompressError(f"cannot read sweep CSV {args.sweep} ({exc})") from None
    packed = None
    if args.packed:
        layers = load_packed(args.packed)
        if args.layer is None:
            packed = max(layers.values(), key=lambda p: p.K * p.N)
        elif args.layer in layers:
            packed = layers[args.layer]
        else:
            raise TightCompressError(f"no layer {args.layer!r} in {args.packed}; it has {', '.join(layers)}")
    elif args.layer:
        raise TightCompressError("--layer needs --packed")
    write_html(
        args.html,
        reports,
        demo_rows=demo_rows,
        sweep_rows=sweep_rows,
        packed=packed,
        title=args.title,
        frontiers=frontiers,
    )
    print(f"report -> {args.html}", file=sys.stderr)
    return 0
