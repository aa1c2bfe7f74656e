"""Paths checked before any work: no output may be an input or another output, every output writable.

Inputs and outputs that are FIFOs, devices, sockets or symlink loops are refused (reading one would hang or
never end; an atomic write would replace the node with a regular file), except `/dev/null` itself as an
output, which is written through. No option reads standard input, so `-` is an ordinary file name.

Two paths are the same file when they resolve to the same place (symlinks followed) or, when both exist,
name the same inode (hard links). Commands declare their inputs and outputs (`cli.common.declare_paths`);
the CLI checks them with `check_paths` before running anything, so a mistake costs nothing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
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
        return ("path", os.path.realpath(path))


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """What `path` is when it is not a regular file, a folder or nothing: `a FIFO (named pipe)`, `a
    character device`, `a block device`, `a socket`, or `a symlink loop`; None otherwise (symlinks are
    followed). Reading one would hang (a FIFO nobody writes), never end (`/dev/zero`) or fail later."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return "a symlink loop" if exc.errno == errno.ELOOP else None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None


def is_null_device(path: str | os.PathLike[str]) -> bool:
    """True when `path` is this system's `/dev/null` itself (the same inode, not any node with its
    numbers): an output there is written through, as a shell redirection would, and nothing is kept."""
    try:
        return os.path.samefile(path, os.devnull)
    except OSError:
        return False


def refuse_special_input(path: str | os.PathLike[str], what: str = "input") -> None:
    """A one-line error for an input that is a FIFO, device, socket or symlink loop (see `special_kind`)."""
    kind = special_kind(path)
    if kind is not None:
        raise TightCompressError(f"{what} {path} is {kind}, not a regular file")


def refuse_special_output(path: str | os.PathLike[str], what: str = "output") -> None:
    """A one-line error for an output that exists as a FIFO, device, socket or symlink loop: an atomic
    write would replace the node with a regular file. `/dev/null` itself is allowed (written through)."""
    kind = special_kind(path)
    if kind is not None and not is_null_device(path):
        raise TightCompressError(
            f"{what} {path} is {kind}; tightcompress writes regular files only (it would be replaced)"
        )


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.realpath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable_location(path: Path, is_dir: bool) -> None:
    """An output can be created: it is not a folder (or not a file, for a folder output), and the nearest
    existing folder above it accepts a new file (probed with a temporary file, which is removed)."""
    if is_dir:
        refuse_special_output(path, "output folder")
    else:
        refuse_special_output(path)
        if is_null_device(path):
            return  # written through to /dev/null (see `utils.atomic`): nothing to create beside it
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
    for path in inputs:
        refuse_special_input(path)
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
        root = Path(os.path.realpath(folder))
        for path in inputs:
            if root in Path(os.path.realpath(path)).parents:
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
