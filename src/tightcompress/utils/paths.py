"""Paths checked before any work: no output may be an input or another output, every output writable.

Two paths are the same file when they resolve to the same place (symlinks followed) or, when both exist,
name the same inode (hard links). Commands declare their inputs and outputs (`cli.common.declare_paths`);
the CLI checks them with `check_paths` before running anything, so a mistake costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tightcompress.errors import TightCompressError

_MAX_NAME = 120  # bytes of a file name made from a layer name (file systems allow 255)


def _identity(path: Path) -> tuple:
    """What makes two paths the same file: the inode when it exists, else the resolved path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", str(path.resolve()))


def _nearest_existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_location(path: Path, is_dir: bool) -> None:
    """An output can be created: it is not a folder (or not a file, for a folder output), and the nearest
    existing folder above it accepts a new file (probed with a temporary file, which is removed)."""
    if path.exists():
        if is_dir and not path.is_dir():
            raise TightCompressError(f"output folder {path} exists and is not a folder")
        if not is_dir and path.is_dir():
            raise TightCompressError(f"output {path} is a folder, expected a file name")
    probe_dir = path if is_dir and path.is_dir() else _nearest_existing(path.parent)
    if not probe_dir.is_dir():
        raise TightCompressError(f"cannot write {path}: {probe_dir} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tightcompress-probe.", dir=probe_dir)
    except OSError as exc:
        raise TightCompressError(
            f"cannot write {path}: {probe_dir} is not writable ({exc.strerror})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_paths(
    inputs: Iterable[str | os.PathLike[str]] = (),
    outputs: Iterable[str | os.PathLike[str]] = (),
    output_dirs: Iterable[str | os.PathLike[str]] = (),
) -> None:
    """Refuse, before any work, an output that is an input or another output, or that cannot be written.

    `output_dirs` are folders a command writes into: an input inside one is refused too.
    """
    inputs = [Path(p) for p in inputs if p is not None]
    outputs = [Path(p) for p in outputs if p is not None]
    output_dirs = [Path(p) for p in output_dirs if p is not None]
    seen: dict[tuple, tuple[str, Path]] = {}
    for role, path in [("input", p) for p in inputs]:
        seen.setdefault(_identity(path), (role, path))
    for path in outputs + output_dirs:
        key = _identity(path)
        if key in seen:
            role, other = seen[key]
            what = "the input" if role == "input" else "another output"
            same = "" if str(other) == str(path) else f" ({other})"
            raise TightCompressError(f"output {path} is {what}{same}; choose another output path")
        seen[key] = ("output", path)
    for folder in output_dirs:
        root = folder.resolve()
        for path in inputs:
            if root in path.resolve().parents:
                raise TightCompressError(
                    f"input {path} is inside the output folder {folder}; move it or write elsewhere"
                )
    for path in outputs:
        _check_writable_location(path, is_dir=False)
    for folder in output_dirs:
        _check_writable_location(folder, is_dir=True)


def safe_name(name: str, fallback: str = "layer") -> str:
    """A file or folder name made from `name` (e.g. a layer name): only letters, digits, `._-`, no leading
    dot (so never `.` or `..`), never empty, at most 120 bytes (a long name keeps a hash of the whole)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).lstrip(".")
    if not safe:
        safe = fallback
    if len(safe) > _MAX_NAME:
        digest = hashlib.sha256(str(name).encode()).hexdigest()[:12]
        safe = f"{safe[: _MAX_NAME - 13]}-{digest}"
    return safe
