"""The one exception type the package raises for bad input, so the CLI can print it as one line."""


class TightCompressError(ValueError):
    """Bad input or an impossible request; the message names the problem in one line."""
