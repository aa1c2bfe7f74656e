"""`tightcompress verify DIR`: run the Verilog testbenches of `export --hdl` in Icarus Verilog or Verilator.

One line per layer (vectors matched, simulated cycles, the cycle model's cycles) and a summary line. Exit
0 only when every layer matches bit for bit with the model's cycle count; 3 when a layer does not; 2 when
the folder is not an `--hdl` export or no simulator is installed (the line says how to install one).
"""

from __future__ import annotations

import argparse

from tightcompress.cli.common import add_quiet, declare_paths


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `verify`."""
    parser = subparsers.add_parser(
        "verify",
        help="simulate the Verilog of an `export --hdl` folder and compare outputs and cycles",
        description="Run every layer's testbench of an `export --hdl` folder in Icarus Verilog (or "
        "Verilator); exit 0 only if every layer reproduces y.hex with the cycle model's cycle count, "
        "3 if one does not.",
    )
    parser.add_argument("dir", metavar="DIR", help="folder written by `export --out-dir DIR --hdl`")
    parser.add_argument("--layer", action="append", help="verify only this layer (repeatable)")
    parser.add_argument(
        "--simulator",
        choices=["iverilog", "verilator"],
        help="simulator to run (default: iverilog if installed, else verilator)",
    )
    add_quiet(parser)
    parser.set_defaults(func=run)
    declare_paths(parser, inputs=("dir",))


def run(args: argparse.Namespace) -> int:
    """Simulate every layer, print one line each and a summary; 3 when a layer fails."""
    import shutil

    from tightcompress.errors import TightCompressError
    from tightcompress.export.verify import INSTALL_HINT, find_simulator, verdict_line, verify_export

    simulator = args.simulator or find_simulator()
    if simulator is None or not shutil.which(simulator):
        raise TightCompressError(INSTALL_HINT if args.simulator is None else f"{simulator} is not installed")
    verdicts = verify_export(args.dir, simulator, args.layer)
    for verdict in verdicts:
        print(verdict_line(verdict), flush=True)
    failed = [v.name for v in verdicts if not v.ok]
    print(
        f"{len(verdicts) - len(failed)} of {len(verdicts)} layer(s) verified in {simulator}"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return 3 if failed else 0
