"""`tightcompress` command line: one subcommand per module, one grammar (`cli.common`), documented exit codes.

Exit status: 0 success, 1 internal error (one line; `TIGHTCOMPRESS_DEBUG=1` for the traceback), 2 bad input or
usage (one line naming the problem), 130 interrupted (SIGINT), 143 terminated (SIGTERM), 129 hung up (SIGHUP).

Start-up imports only the module of the command asked for (`--version` imports none), so a command that
needs no torch or numba does not pay for them. Ctrl-C at any point, start-up included, prints one
"interrupted" line and exits 130. SIGTERM (what `timeout`, CI runners and job schedulers send) and SIGHUP
(the terminal went away) end the run the same way: worker processes are terminated, temporary files and
staging folders removed, one line, and the exit status is 128 + the signal's number as a shell reports it
(143, 129), so a caller can tell which signal ended the run.
"""

from __future__ import annotations

import argparse
import contextlib
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


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, so every cleanup written for Ctrl-C (workers
    terminated, temporaries and staging folders removed) runs for them too. `signum` is the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _SigintSeen:
    """Records that Ctrl-C (or SIGTERM / SIGHUP) arrived. A signal inside a C extension's import (numpy,
    torch) can surface as that library's ImportError instead of KeyboardInterrupt; after one, any failure is
    "interrupted"."""

    seen = 0  # the signal's number, 0 before any

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        cls.seen = signum
        if signum == _SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)


_SIGINT = 2


def _watch_signals() -> dict[int, object]:
    """Handle SIGINT, SIGTERM and SIGHUP in the main thread; a handler a caller set (or `nohup`'s ignored
    SIGHUP) is left as it is. Returns the handlers replaced, for `main` to put back when it returns."""
    import signal
    import threading

    replaced: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return replaced
    for signum, default in (
        (signal.SIGINT, signal.default_int_handler),
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGHUP, signal.SIG_DFL),
    ):
        if signal.getsignal(signum) == default:
            replaced[signum] = signal.signal(signum, _SigintSeen.handler)
    return replaced


def _signal_exit(exc: BaseException | None, command: str) -> int:
    """Print the one line for the signal that ended the run; its exit status (130, 143 or 129)."""
    signum = getattr(exc, "signum", None) or _SigintSeen.seen or _SIGINT
    what = {_SIGINT: "interrupted", 15: "terminated (SIGTERM)", 1: "hung up (SIGHUP)"}.get(
        signum, f"stopped by signal {signum}"
    )
    print(f"{f'tightcompress {command}'.strip()}: {what}", file=sys.stderr)
    return 128 + signum


def _printable_streams() -> None:
    """stdout and stderr never fail on a character their encoding lacks (`PYTHONIOENCODING=ascii`, a C
    locale): it is written escaped (`\\u00fc`). A summary line naming a non-ASCII output must not turn a
    finished run into an error after its files are written."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="backslashreplace")


def _world_size() -> int:
    """`WORLD_SIZE` as torchrun sets it (1 when unset); anything but a positive integer: one-line error."""
    from tightcompress.errors import TightCompressError

    text = os.environ.get("WORLD_SIZE", "").strip() or "1"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise TightCompressError(f"WORLD_SIZE must be a positive integer (as torchrun sets it), got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (see the module docstring)."""
    replaced = _watch_signals()
    try:
        return _main(argv)
    finally:
        import signal

        for signum, handler in replaced.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def _main(argv: Sequence[str] | None) -> int:
    _SigintSeen.seen = 0
    own_command_line = argv is None
    if own_command_line:
        _printable_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    try:
        from tightcompress.cli.common import cap_jobs, check_declared_paths
        from tightcompress.errors import TightCompressError

        args = build_parser(_modules_for(argv)).parse_args(argv)
        command = args.command
        if not getattr(args, "quiet", False):
            for note in getattr(args, "deprecations", None) or []:
                print(f"tightcompress {command}: {note}", file=sys.stderr)
        try:
            several = _world_size() > 1
            if several and not getattr(args, "runs_distributed", False):
                raise TightCompressError(  # every process would do the whole work and write the same files
                    f"only `compress` runs on several processes (torchrun); run `{command}` as one process"
                )
            check_declared_paths(args)
            cap_jobs(args, lambda note: print(f"tightcompress {command}: {note}", file=sys.stderr))
            try:
                return int(args.func(args) or 0)
            except SystemExit as exc:  # our commands never exit this way: the user's code (a --model
                # module, a --transforms function) called sys.exit(); exit 0 with no output would be a lie
                raise TightCompressError(
                    f"the user's code called sys.exit({exc.code!r}) while {command} ran; nothing was written"
                ) from None
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
    except KeyboardInterrupt as exc:
        code = _signal_exit(exc, command)
        if own_command_line:  # the process's own command line: outputs are already cleaned up, so skip the
            with contextlib.suppress(Exception):  # interpreter's teardown (1.6 s with torch loaded) and stop
                sys.stdout.flush()  # within a second (a closed pipe must not turn this into a traceback)
                sys.stderr.flush()
            os._exit(code)
        return code
    except Exception as exc:  # a bug: one line, the traceback on request
        if _SigintSeen.seen:  # the signal turned into another exception on its way up
            return _signal_exit(None, command)
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
