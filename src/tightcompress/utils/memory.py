"""Memory estimated before a layer is loaded or packed: a request the machine cannot hold is one line naming
what it would need and what is available, instead of growing by 20 GB until the kernel kills the process.

`available_memory()` is what Linux reports as available (`MemAvailable`), lowered to the room left under
this process's cgroup limit when there is one; elsewhere it is unknown and nothing is refused.

`PACK_BYTES_PER_WEIGHT`: peak resident memory of packing one `K x N` matrix, per weight, measured with
`/usr/bin/time -f %M tightcompress pack sq{3000,6000}.npy --method M --iterations 1000 --json o.json --out
o.st` on float32 matrices (2 cores, load about 9): tight grew 602 MB from 9e6 to 3.6e7 weights (22 bytes
each), column combining 24, dense 28 (its float64 copies). 32 covers each with room for the input itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tightcompress.errors import TightCompressError

PACK_BYTES_PER_WEIGHT = 32


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2 `memory.max`, v1 `limit_in_bytes`)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit_file, usage_file = folder / "memory.max", folder / "memory.current"
        elif "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit_file, usage_file = folder / "memory.limit_in_bytes", folder / "memory.usage_in_bytes"
        else:
            continue
        try:
            limit_text = limit_file.read_text().strip()
            if limit_text == "max" or int(limit_text) >= 2**60:
                return None
            return max(0, int(limit_text) - int(usage_file.read_text().strip()))
        except (OSError, ValueError):
            return None
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping, or None when the system does not say."""
    known = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    return min(known) if known else None


def format_bytes(count: float) -> str:
    """`1.5 GiB`-style text."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} PiB"  # pragma: no cover


def check_memory(need: int, doing: str, hint: str = "") -> None:
    """A one-line error when `doing` (e.g. `packing 3 layers`) needs more memory than is available; `hint`
    (e.g. `fewer --jobs`) is added in parentheses."""
    available = available_memory()
    if available is not None and need > available:
        raise TightCompressError(
            f"{doing} needs about {format_bytes(need)} of memory; {format_bytes(available)} is available"
            + (f" ({hint})" if hint else "")
        )


def pack_memory(sizes: Iterable[int], workers: int) -> int:
    """Peak bytes of packing matrices of `sizes` weights with `workers` at once: the largest run together."""
    largest = sorted((int(s) for s in sizes), reverse=True)[: max(1, workers)]
    return PACK_BYTES_PER_WEIGHT * sum(largest)


def file_size(path: str | os.PathLike[str]) -> int:
    """The size of `path` in bytes (0 when it cannot be read; the reader then names the problem)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
