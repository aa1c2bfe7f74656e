"""`tightcompress` command line: one subcommand per module, bad input as a one-line error and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tightcompress import __version__
from tightcompress.cli import compress as compress_cmd
from tightcompress.cli import demo as demo_cmd
from tightcompress.cli import export as export_cmd
from tightcompress.cli import frontier as frontier_cmd
from tightcompress.cli import pack as pack_cmd
from tightcompress.cli import report as report_cmd
from tightcompress.cli import simulate as simulate_cmd
from tightcompress.cli import sweep as sweep_cmd
from tightcompress.errors import TightCompressError

# Each module has `add_parser(subparsers)`, which registers its subcommand and sets `func(args) -> int`.
SUBCOMMANDS = [
    pack_cmd,
    compress_cmd,
    demo_cmd,
    frontier_cmd,
    simulate_cmd,
    sweep_cmd,
    export_cmd,
    report_cmd,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tightcompress",
        description="Pack pruned CNN weights tightly for weight-stationary systolic arrays.",
    )
    parser.add_argument("--version", action="version", version=f"tightcompress {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TightCompressError as exc:
        print(f"tightcompress {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tightcompress {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
