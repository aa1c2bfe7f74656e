"""The packed data structure, how weights are placed into it, and how it is stored.

Names are imported on first use (PEP 562): reading a packed file does not load numba (used by `build`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tightcompress.utils.lazy import lazy_getattr

_LAZY = {
    "FORMAT_VERSION": "tightcompress.format.packed",
    "PackedMatrix": "tightcompress.format.packed",
    "build_packed": "tightcompress.format.build",
    "identity_col_perm": "tightcompress.format.build",
    "uniform_group_offsets": "tightcompress.format.build",
    "load_packed": "tightcompress.format.io",
    "save_packed": "tightcompress.format.io",
}

__all__ = [
    "FORMAT_VERSION",
    "PackedMatrix",
    "build_packed",
    "identity_col_perm",
    "load_packed",
    "save_packed",
    "uniform_group_offsets",
]

if TYPE_CHECKING:
    from tightcompress.format.build import build_packed, identity_col_perm, uniform_group_offsets
    from tightcompress.format.io import load_packed, save_packed
    from tightcompress.format.packed import FORMAT_VERSION, PackedMatrix


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
