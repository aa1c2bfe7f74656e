"""Atomic file writes: write to a temporary file beside the target, then rename over it.

An output that is a symlink is written through: the file it points to is replaced atomically and the link
stays a link. An output that is `/dev/null` is written (to a temporary file, removed) and discarded, as a
shell redirection would; other special files are refused before any work (`utils.paths.check_paths`), and
here again, so no device node or FIFO is ever replaced by a regular file.

A new output gets the mode the user's umask gives an ordinary new file (`0666 & ~umask`, not `mkstemp`'s
0600); a replaced file keeps its mode. `output_group` writes several outputs of one command all or none.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(target: str | os.PathLike[str]) -> int:
    """The mode `target` should get: its own when it exists (a replaced file keeps its mode), else umask's."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The mode a new folder gets under the user's umask (`mkdtemp` makes 0700)."""
    return 0o777 & ~current_umask()


def write_target(target: str | os.PathLike[str]) -> Path:
    """Where an output at `target` really goes: the file a symlink points to (so the link stays), else
    `target`; a FIFO, device or socket (other than `/dev/null`) is refused."""
    from tightcompress.utils.paths import refuse_special_output

    target = Path(target)
    refuse_special_output(target)
    if target.is_symlink():
        return Path(os.path.realpath(target))
    return target


def _discarded(target: Path) -> bool:
    from tightcompress.utils.paths import is_null_device

    return is_null_device(target)


def _temporary_beside(target: Path, suffix: str) -> Path:
    if _discarded(target):  # /dev/null: written in the temporary folder, then removed
        fd, tmp_name = tempfile.mkstemp(prefix=".tightcompress-null.", suffix=suffix + ".tmp")
        os.close(fd)
        return Path(tmp_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp_name)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` only if the block succeeds.

    A failure (or Ctrl-C) inside the block removes the temporary file, so no partial output is ever left.
    """
    target = write_target(target)
    tmp = _temporary_beside(target, suffix)
    try:
        yield tmp
        if _discarded(target):
            tmp.unlink()
            return
        os.chmod(tmp, new_file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def output_group() -> Iterator[Callable[[str | os.PathLike[str]], Path]]:
    """Write several outputs all or none: `with output_group() as stage: write(stage(target), ...)`.

    `stage(target)` returns a temporary path beside `target`. When the block succeeds every temporary file
    is renamed onto its target; if the block or a rename fails, the targets renamed so far get their old
    content back (or are removed when they were new) and every temporary file is deleted.
    """
    staged: list[tuple[Path, Path]] = []

    def stage(target: str | os.PathLike[str]) -> Path:
        target = write_target(target)
        tmp = _temporary_beside(target, target.suffix)
        staged.append((tmp, target))
        return tmp

    try:
        yield stage
        _commit(staged)
    finally:
        for tmp, _target in staged:
            tmp.unlink(missing_ok=True)


def _commit(staged: list[tuple[Path, Path]]) -> None:
    """Rename every `(tmp, target)`; on a failure restore the targets already replaced, then re-raise."""
    done: list[list[Any]] = []  # [target, backup or None, replaced]
    try:
        for tmp, target in staged:
            if _discarded(target):
                continue  # /dev/null: nothing to keep (the temporary file is removed by `output_group`)
            backup = None
            if target.exists():
                backup = target.with_name(f".{target.name}.{os.getpid()}.backup")
                backup.unlink(missing_ok=True)
                os.link(target, backup)  # the old content stays reachable until every rename succeeded
            done.append([target, backup, False])
            os.chmod(tmp, new_file_mode(target))
            os.replace(tmp, target)
            done[-1][2] = True
    except BaseException:
        for target, backup, replaced in reversed(done):
            if replaced and backup is not None:
                os.replace(backup, target)
            elif replaced:
                target.unlink(missing_ok=True)
        raise
    finally:
        for _target, backup, _replaced in done:
            if backup is not None:
                backup.unlink(missing_ok=True)


def non_finite_field(payload: Any, where: str = "") -> str | None:
    """The path (`layers[0].energy_pj`) of the first NaN or infinite number in `payload`, else None."""
    if isinstance(payload, float):
        return None if math.isfinite(payload) else (where or "<top>")
    if isinstance(payload, dict):
        items: Any = ((f"{where}.{k}" if where else str(k), v) for k, v in payload.items())
    elif isinstance(payload, list | tuple):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(payload))
    else:
        return None
    for path, value in items:
        found = non_finite_field(value, path)
        if found is not None:
            return found
    return None


def json_text(payload: Any) -> str:
    """`payload` as indented, strict JSON. A NaN or infinity (which `json.dumps` would write as the invalid
    `NaN` / `Infinity`) is a one-line error naming the field, raised before anything is written."""
    try:
        return json.dumps(payload, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError:
        field = non_finite_field(payload)
        if field is None:
            raise
        from tightcompress.errors import TightCompressError

        raise TightCompressError(
            f"the result's {field} is NaN or infinite (the input's values or the settings overflow); "
            "nothing written"
        ) from None


def write_json_atomic(target: str | os.PathLike[str], payload: Any) -> None:
    """Write `payload` as indented, strict JSON (no NaN or Infinity: `json_text`) to `target` atomically."""
    text = json_text(payload)
    with atomic_path(target, suffix=".json") as tmp:
        tmp.write_text(text)
