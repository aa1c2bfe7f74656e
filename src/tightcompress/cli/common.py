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
