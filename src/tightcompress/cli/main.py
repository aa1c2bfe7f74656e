"""`tightcompress` command line: one subcommand per module, one grammar (`cli.common`), documented exit codes.

Exit status: 0 success, 1 internal error (one line; `TIGHTCOMPRESS_DEBUG=1` for the traceback), 2 bad input or
usage (one line naming the problem), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tightcompress import __version__
from tightcompress.cli import compress as compress_cmd
from tightcompress.cli import demo as demo_cmd
from tightcompress.cli import export as export_cmd
from tightcompress.cli import pack as pack_cmd
from tightcompress.cli import report as report_cmd
from tightcompress.cli import simulate as simulate_cmd
from tightcompress.cli import sweep as sweep_cmd
from tightcompress.cli.common import apply_grammar
from tightcompress.errors import TightCompressError

# Each module has `add_parser(subparsers)`, which registers its subcommand and sets `func(args) -> int`.
SUBCOMMANDS = [pack_cmd, compress_cmd, demo_cmd, simulate_cmd, sweep_cmd, export_cmd, report_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tightcompress",
        description="Pack pruned CNN weights tightly for weight-stationary systolic arrays.",
    )
    parser.add_argument("--version", action="version", version=f"tightcompress {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    apply_grammar(parser)
    for subparser in subparsers.choices.values():
        apply_grammar(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "quiet", False):
        for note in getattr(args, "deprecations", None) or []:
            print(f"tightcompress {args.command}: {note}", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except TightCompressError as exc:
        print(f"tightcompress {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tightcompress {args.command}: interrupted", file=sys.stderr)
        if argv is None:  # the process's own command line: outputs are already cleaned up, so skip the
            sys.stdout.flush()  # interpreter's teardown (1.6 s with torch loaded) and stop within a second
            sys.stderr.flush()
            os._exit(130)
        return 130
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("TIGHTCOMPRESS_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"tightcompress {args.command}: internal error: {type(exc).__name__}: {first} "
            "(a bug; rerun with TIGHTCOMPRESS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
