"""The one-time numba compilation: detect a cold kernel cache, say so in one line, compile everything at once.

Every kernel is `@njit(cache=True)`: compiled machine code is cached on disk (next to the module in
`__pycache__`, or under `NUMBA_CACHE_DIR`) and reused by later runs. A fresh install, a new numba, or an
edited kernel source starts cold: the first command then compiles for tens of seconds before its progress
bar moves.
`prepare_kernels` announces that once on stderr and compiles every kernel the commands use by packing a tiny
matrix with each method, so the cache is warm for all of them afterwards (and parallel workers never each
compile their own copy).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

# Typical one-time cost, measured with `NUMBA_CACHE_DIR` pointed at an empty folder (BENCHMARKS.md).
TYPICAL_COMPILE = "about 30-60 s"


def _kernels() -> dict[str, object]:
    """The cached entry-point kernels (inline helpers are compiled into their callers, not cached alone)."""
    from tightcompress.baselines import column_combining
    from tightcompress.format import build
    from tightcompress.permute import channel_swap, kernels

    found = {}
    for module in (kernels, channel_swap, build, column_combining):
        for name, value in vars(module).items():
            options = getattr(value, "targetoptions", None)
            cached = type(getattr(value, "_cache", None)).__name__ == "FunctionCache"  # njit(cache=True)
            if options is None or not cached or options.get("inline") == "always":
                continue
            found[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] = value
    return found


def cold_kernels() -> list[str] | None:
    """Names of the kernels with no fresh on-disk cache entry; None when numba's cache cannot be inspected."""
    try:
        cold = []
        for name, dispatcher in _kernels().items():
            cache = dispatcher._cache  # numba's FunctionCache of a cache=True dispatcher
            if not cache._cache_file._load_index():  # missing, other numba version, or stale source stamp
                cold.append(name)
        return cold
    except Exception:  # numba internals moved: say nothing rather than guess
        return None


def warm_up() -> None:
    """Compile (or load) every cached kernel by packing a tiny matrix with every method and height mode."""
    import numpy as np

    from tightcompress.api import PackConfig, pack

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((24, 16)).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.7] = 0.0
    configs = [
        PackConfig(method="tight", group=8, tile=8, iterations=200),
        PackConfig(method="tight", group=8, height=1, tile=8, iterations=200),
        PackConfig(method="nm", group=4, height=2, tile=8),
        PackConfig(method="nm", group=4, height=2, tile=8, permute=True, iterations=200),
        PackConfig(method="column-combining", tile=8),
        PackConfig(method="column-combining", tile=8, merge="least-overlap"),
        PackConfig(method="dense", tile=8),
    ]
    for config in configs:
        pack(matrix, config)


def prepare_kernels(*, quiet: bool = False, stream: TextIO | None = None,
                    warm: Callable[[], None] | None = None) -> float | None:  # fmt: skip
    """When the kernel cache is cold: one line on stderr (unless `quiet`), then compile everything once.

    Returns the seconds spent compiling, or None when the cache was warm (nothing printed, nothing done).
    """
    cold = cold_kernels()
    if not cold:
        return None
    if not quiet:
        print(
            f"tightcompress: first run: compiling {len(cold)} numba kernels once ({TYPICAL_COMPILE} on"
            " 2 cores; cached for later runs)",
            file=stream or sys.stderr,
            flush=True,
        )
    start = time.perf_counter()
    (warm or warm_up)()
    return time.perf_counter() - start
