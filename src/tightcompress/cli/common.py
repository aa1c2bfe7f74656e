"""Argument types and options shared by several subcommands."""

from __future__ import annotations

import argparse


def height_arg(text: str) -> int | str:
    """`--height`: a positive integer or `auto`."""
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None
    return value


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines on stderr")


def declare_paths(
    parser: argparse.ArgumentParser,
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    output_dirs: tuple[str, ...] = (),
) -> None:
    """Name the options (argparse dests) that are input files, output files and output folders.

    `main` checks them with `utils.paths.check_paths` before the command runs: no output may be an input or
    another output (links included), and every output must be writable.
    """
    parser.set_defaults(_paths=(tuple(inputs), tuple(outputs), tuple(output_dirs)))


def check_declared_paths(args: argparse.Namespace) -> None:
    """Check the paths a command declared with `declare_paths` (nothing when it declared none)."""
    from tightcompress.utils.paths import check_paths

    declared = getattr(args, "_paths", None)
    if declared is None:
        return

    def values(dests: tuple[str, ...]) -> list[str]:
        found: list[str] = []
        for dest in dests:
            value = getattr(args, dest, None)
            if isinstance(value, list | tuple):
                found.extend(v for v in value if v is not None)
            elif value is not None:
                found.append(value)
        return found

    inputs, outputs, output_dirs = declared
    check_paths(values(inputs), values(outputs), values(output_dirs))


def add_skip_bad_layers(parser: argparse.ArgumentParser) -> None:
    """`--skip-bad-layers`: pack the other layers when one is all zero or not finite, and list it."""
    parser.add_argument(
        "--skip-bad-layers",
        action="store_true",
        help="skip all-zero or NaN/inf layers (listed with the reason in the report) instead of failing",
    )
