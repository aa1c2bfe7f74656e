"""The one exception type the package raises for bad input, so the CLI can print it as one line."""


class TightCompressError(ValueError):
    """Bad input or an impossible request; the message names the problem in one line."""


def missing_file(what: str, path: object) -> TightCompressError:
    """The error for an input file that is not there: a folder given where a file belongs says so."""
    import os

    if os.path.isdir(str(path)):
        return TightCompressError(f"{what} {path} is a folder, expected a file")
    return TightCompressError(f"{what} not found: {path}")
