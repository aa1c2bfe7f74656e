"""Atomic file writes: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` only if the block succeeds.

    A failure (or Ctrl-C) inside the block removes the temporary file, so no partial output is ever left.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(target: str | os.PathLike[str], payload: Any) -> None:
    """Write `payload` as indented JSON to `target` atomically."""
    with atomic_path(target, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
