"""`tightcompress` command line: one subcommand per module, one grammar (`cli.common`), documented exit codes.

Exit status: 0 success, 1 internal error (one line; `TIGHTCOMPRESS_DEBUG=1` for the traceback), 2 bad input or
usage (one line naming the problem), 130 interrupted.

Start-up imports only the module of the command asked for (`--version` imports none), so a command that
needs no torch or numba does not pay for them. Ctrl-C at any point, start-up included, prints one
"interrupted" line and exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Each module has `add_parser(subparsers)`, which registers its subcommand(s) and sets `func(args) -> int`.
SUBCOMMANDS = [
    "tightcompress.cli.pack",
    "tightcompress.cli.compress",
    "tightcompress.cli.demo",
    "tightcompress.cli.frontier",
    "tightcompress.cli.simulate",
    "tightcompress.cli.sweep",
    "tightcompress.cli.export",
    "tightcompress.cli.verify",
    "tightcompress.cli.area",
    "tightcompress.cli.report",
]
# Commands registered by a module of another name; every other command `X` lives in `tightcompress.cli.X`.
_COMMAND_MODULE = {"unpack": "tightcompress.cli.pack"}


def _modules_for(argv: Sequence[str]) -> list[str]:
    """The subcommand modules needed to parse `argv`: the named command's, or all (for help and errors)."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command is None:
        return [] if any(arg == "--version" for arg in argv) else SUBCOMMANDS
    module = _COMMAND_MODULE.get(command, f"tightcompress.cli.{command}")
    return [module] if module in SUBCOMMANDS else SUBCOMMANDS


def build_parser(modules: Sequence[str] = tuple(SUBCOMMANDS)) -> argparse.ArgumentParser:
    """The argument parser with the subcommands of `modules` (default: every subcommand)."""
    from tightcompress import __version__
    from tightcompress.cli.common import apply_grammar

    parser = argparse.ArgumentParser(
        prog="tightcompress",
        description="Pack pruned CNN weights tightly for weight-stationary systolic arrays.",
    )
    parser.add_argument("--version", action="version", version=f"tightcompress {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).add_parser(subparsers)
    apply_grammar(parser)
    for subparser in subparsers.choices.values():
        apply_grammar(subparser)
    return parser


class _SigintSeen:
    """Records that Ctrl-C arrived. A SIGINT inside a C extension's import (numpy, torch) can surface as
    that library's ImportError instead of KeyboardInterrupt; after a SIGINT, any failure is "interrupted"."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        cls.seen = True
        raise KeyboardInterrupt


def _watch_sigint() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # leave a caller's own handler
            signal.signal(signal.SIGINT, _SigintSeen.handler)


def main(argv: Sequence[str] | None = None) -> int:
    _SigintSeen.seen = False
    _watch_sigint()
    own_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    try:
        from tightcompress.cli.common import check_declared_paths
        from tightcompress.errors import TightCompressError

        args = build_parser(_modules_for(argv)).parse_args(argv)
        command = args.command
        if not getattr(args, "quiet", False):
            for note in getattr(args, "deprecations", None) or []:
                print(f"tightcompress {command}: {note}", file=sys.stderr)
        try:
            several = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
            if several and not getattr(args, "runs_distributed", False):
                raise TightCompressError(  # every process would do the whole work and write the same files
                    f"only `compress` runs on several processes (torchrun); run `{command}` as one process"
                )
            check_declared_paths(args)
            return int(args.func(args) or 0)
        except TightCompressError as exc:
            print(f"tightcompress {command}: error: {exc}", file=sys.stderr)
            return 2
        except MemoryError:  # the machine, not the input: still one line, and nothing was written
            print(f"tightcompress {command}: error: out of memory", file=sys.stderr)
            return 1
        except OSError as exc:  # e.g. the disk filled up while writing: outputs are atomic, none is left
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"tightcompress {command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print(f"{f'tightcompress {command}'.strip()}: interrupted", file=sys.stderr)
        if own_command_line:  # the process's own command line: outputs are already cleaned up, so skip the
            sys.stdout.flush()  # interpreter's teardown (1.6 s with torch loaded) and stop within a second
            sys.stderr.flush()
            os._exit(130)
        return 130
    except Exception as exc:  # a bug: one line, the traceback on request
        if _SigintSeen.seen:  # Ctrl-C turned into another exception on its way up
            print(f"{f'tightcompress {command}'.strip()}: interrupted", file=sys.stderr)
            return 130
        if os.environ.get("TIGHTCOMPRESS_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"{f'tightcompress {command}'.strip()}: internal error: {type(exc).__name__}: {first} "
            "(a bug; rerun with TIGHTCOMPRESS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
