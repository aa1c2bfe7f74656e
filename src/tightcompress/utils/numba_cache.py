"""Where numba caches compiled kernels, chosen before numba is imported.

numba caches `cache=True` kernels beside the source (`__pycache__`) or in the user's cache folder
(`~/.cache/numba`); when neither can be written (a read-only install and a read-only home) it refuses to
decorate the kernels and `import tightcompress` fails. Here: if `NUMBA_CACHE_DIR` is unset and neither
default is writable, use a per-user folder in the temporary directory; if even that fails, run uncached
(compile on every start) with a one-line note on stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _writable(folder: Path) -> bool:
    """`folder` exists (or can be made) and accepts a new file: numba's own test of a cache location."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "numba"


def ensure_numba_cache_dir() -> str:
    """Make sure numba has a writable cache location; what was chosen: `default`, `user`, `tmp`, `none`."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return "user"
    if _writable(_PACKAGE_DIR / "__pycache__") or _writable(_user_cache_dir()):
        return "default"
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    fallback = Path(tempfile.gettempdir()) / f"tightcompress-numba-cache-{uid}"
    if _writable(fallback):
        os.environ["NUMBA_CACHE_DIR"] = str(fallback)
        return "tmp"
    _disable_numba_cache()
    print(
        "tightcompress: note: no writable numba cache folder (package, home, temp); compiling uncached",
        file=sys.stderr,
    )
    return "none"


def _disable_numba_cache() -> None:
    """Let `@njit(cache=True)` kernels run uncached instead of failing to decorate."""
    from numba.core.dispatcher import Dispatcher

    Dispatcher.enable_caching = lambda self: None
