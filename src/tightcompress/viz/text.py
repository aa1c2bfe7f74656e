"""Text that matplotlib draws: plain, as given (names come from users' files and layers)."""

from __future__ import annotations

import contextlib


def plain_text() -> contextlib.AbstractContextManager:
    """A context in which matplotlib draws every string as it is: no mathtext (`$x$` in a layer or file
    name crashed the mathtext parser), no TeX. Figures are made and saved inside it; the user's own
    matplotlib settings are left as they were."""
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False, "text.usetex": False})
