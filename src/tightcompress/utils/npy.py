"""Read a `.npy` file only after checking its header against the file: no EOFError, no huge allocation."""

from __future__ import annotations

import math
import os

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.utils.memory import check_memory

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def read_npy(path: str | os.PathLike[str], work_bytes_per_element: int = 0, doing: str = "") -> np.ndarray:
    """The array in a `.npy` file, or a one-line error: empty, not .npy, object dtype, or a header that
    promises more bytes than the file holds (checked before any array memory is allocated). The array comes
    back in native byte order, whatever order the file stores, so every later step sees the same values.
    Before anything is allocated, the memory of reading it, plus `work_bytes_per_element` per element for
    what the caller will do (`doing`, e.g. packing), is checked against what is available
    (`utils.memory`)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            if size == 0:
                raise TightCompressError(f"{path}: the file is empty")
            try:
                version = np.lib.format.read_magic(handle)
                reader = _HEADER_READERS.get(version)
                if reader is None:  # version 3.0 (utf-8 field names): same layout as 2.0
                    reader = np.lib.format.read_array_header_2_0
                shape, _fortran_order, dtype = reader(handle)
            except (ValueError, EOFError, SyntaxError, TypeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TightCompressError(f"{path}: not a readable .npy file ({first})") from None
            if dtype.hasobject:
                raise TightCompressError(f"{path}: holds Python objects (dtype {dtype}), not numbers")
            need = math.prod(shape) * dtype.itemsize
            have = size - handle.tell()
            if need > have:
                raise TightCompressError(
                    f"{path}: the header promises shape {shape} of {dtype} ({need} bytes), "
                    f"the file holds {have} bytes (truncated or corrupt)"
                )
            native = 1 if dtype.isnative or dtype.itemsize == 1 else 2  # a byte-swapped copy on the way
            check_memory(
                need * native + work_bytes_per_element * math.prod(shape),
                f"{path}: {doing or 'reading'} the {'x'.join(map(str, shape))} {dtype.name} matrix",
            )
            handle.seek(0)
            array = np.lib.format.read_array(handle, allow_pickle=False)
            if not array.dtype.isnative:  # big-endian data (`x.astype(">f4")`): the same values, native order
                array = array.astype(array.dtype.newbyteorder("="))
            return array
    except TightCompressError:
        raise
    except OSError as exc:
        raise TightCompressError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise TightCompressError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0]})") from None
