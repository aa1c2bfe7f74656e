"""Argument types and options shared by several subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping

# ------------------------------------------------------------------- numeric flags, checked at the door
INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy's legacy seeding and torch.manual_seed both take this range
MAX_VECTORS = 2**40  # = hw.cycles.MAX_VECTORS (not imported here: start-up stays free of numpy)
MAX_JOBS = 1024  # worker processes on one machine
MAX_ROUNDS = 1000  # pruning / format rounds
MAX_EPOCHS = 10_000.0
MAX_STEPS = 10**9
MAX_ITERATIONS = 10**10  # annealing moves per layer: hours (about 1e6 moves/s on a 64 x 32 matrix)


def _bound_text(value: float) -> str:
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    if isinstance(value, int) and value >= 2**16 and (value + 1) & value == 0:
        return f"2**{value.bit_length()} - 1"
    return f"{value:g}" if isinstance(value, float) else str(value)


def int_in(low: int, high: int = INT64_MAX) -> Callable[[str], int]:
    """An argparse `type`: an integer in `[low, high]`, else a one-line usage error naming the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be an integer in [{_bound_text(low)}, {_bound_text(high)}], got {text}"
            )
        return value

    parse.__name__ = "integer"
    return parse


def float_in(
    low: float, high: float = math.inf, *, low_open: bool = False, zero: bool = False
) -> Callable[[str], float]:
    """An argparse `type`: a finite number in `[low, high]` (`(low, high]` with `low_open`; `zero` also
    accepts 0, for flags where 0 switches something off), else a one-line usage error naming the range."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (low < value if low_open else low <= value) and value <= high
        if not (math.isfinite(value) and (inside or (zero and value == 0))):
            left = "(" if low_open else "["
            right = "]" if math.isfinite(high) else ")"
            also = " or 0" if zero else ""
            raise argparse.ArgumentTypeError(
                f"must be a finite number in {left}{_bound_text(low)}, {_bound_text(high)}{right}{also}, "
                f"got {text}"
            )
        return value

    parse.__name__ = "number"
    return parse


SEED = int_in(0, SEED_MAX)
JOBS = int_in(1, MAX_JOBS)


def height_arg(text: str) -> int | str:
    """`--height`: a positive integer or `auto`."""
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None
    return value


def compile_kernels_once(args: argparse.Namespace) -> None:
    """Before the first kernel call, after the input is checked: announce and fill a cold kernel cache."""
    from tightcompress.utils.jit import prepare_kernels

    prepare_kernels(quiet=getattr(args, "quiet", False))


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars, log lines or warnings on stderr (errors still)",
    )


# ------------------------------------------------------------------------------ one command-line grammar
EXIT_CODES = """exit status:
  0    success
  1    internal error (a bug): one line on stderr; TIGHTCOMPRESS_DEBUG=1 shows the traceback
  2    bad input or usage (a one-line message naming the problem)
  3    the result missed a bar the command was given (compress --max-drop: the report is still written;
       verify: a layer's simulated outputs or cycles differ)
  130  interrupted (Ctrl-C)

output: results and summary lines go to stdout; progress bars, logs and warnings go to stderr
(--quiet silences stderr except errors)."""


def _default_text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless the text already gives one); epilogs keep layout."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None:  # argparse prints no help line, hence no default, for options without help
            action.help = ""
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        shown = _default_text(default).replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def apply_grammar(parser: argparse.ArgumentParser) -> None:
    """The shared help layout and exit-code epilog, for the top-level parser and every subcommand;
    a usage error is one line (exit 2) pointing at `--help`, like every other bad input."""
    parser.formatter_class = HelpFormatter
    parser.epilog = EXIT_CODES if not parser.epilog else f"{parser.epilog}\n\n{EXIT_CODES}"

    def error(message: str) -> None:
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    parser.error = error  # type: ignore[method-assign]


class _DeprecatedOption(argparse.Action):
    """An old spelling: stores into the new dest, queues one deprecation line (printed by `main`)."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        notes = getattr(namespace, "deprecations", None) or []
        notes.append(f"{option_string} is deprecated and will be removed; use {self.new}")
        namespace.deprecations = notes


def add_alias(parser, old: str, new: str, **kwargs) -> None:
    """Keep `old` working as a hidden, deprecated spelling of option `new` (same dest, same type)."""
    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=_DeprecatedOption, new=new, help=argparse.SUPPRESS, **kwargs)


class _MethodsAction(argparse.Action):
    """`--methods tight nm`, `--methods tight,nm` or a mix: one flat list, each name checked."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        names = [name.strip() for value in values for name in value.split(",") if name.strip()]
        unknown = [name for name in names if self.choices_list and name not in self.choices_list]
        if unknown or not names:
            allowed = ", ".join(self.choices_list)
            parser.error(
                f"argument {option_string}: invalid choice {(unknown or [''])[0]!r} (choose from {allowed})"
            )
        setattr(namespace, self.dest, list(dict.fromkeys(names)))

    choices_list: tuple[str, ...] = ()


def add_methods(
    parser: argparse.ArgumentParser, choices: tuple[str, ...], default: list[str], help: str
) -> None:
    """`--methods`: separated by spaces or commas in every command."""
    action = parser.add_argument(
        "--methods", nargs="+", action=_MethodsAction, default=list(default), metavar="METHOD",
        help=f"{help}, separated by spaces or commas; from {', '.join(choices)}",
    )  # fmt: skip
    action.choices_list = tuple(choices)


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


def find_layer(layers: Mapping[str, object], name: str, source: object) -> str:
    """The key of the layer a user named: the key itself (`conv1.weight`) or its module path (`conv1`, as the
    report, compress and SCALE-Sim topologies name it); else a one-line error listing the layers."""
    from tightcompress.errors import TightCompressError
    from tightcompress.readers.topology import topology_name

    if name in layers:
        return name
    matches = [key for key in layers if topology_name(key) == topology_name(name)]
    if len(matches) == 1:
        return matches[0]
    raise TightCompressError(f"no layer {name!r} in {source}; it has {', '.join(layers)}")


def add_skip_bad_layers(parser: argparse.ArgumentParser) -> None:
    """`--skip-bad-layers`: pack the other layers when one is all zero or not finite, and list it."""
    parser.add_argument(
        "--skip-bad-layers",
        action="store_true",
        help="skip all-zero or NaN/inf layers (listed with the reason in the report) instead of failing",
    )
