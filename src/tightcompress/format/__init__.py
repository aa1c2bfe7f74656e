"""The packed data structure, how weights are placed into it, and how it is stored."""

from tightcompress.format.build import build_packed, identity_col_perm, uniform_group_offsets
from tightcompress.format.io import load_packed, save_packed
from tightcompress.format.packed import FORMAT_VERSION, PackedMatrix

__all__ = [
    "FORMAT_VERSION",
    "PackedMatrix",
    "build_packed",
    "identity_col_perm",
    "load_packed",
    "save_packed",
    "uniform_group_offsets",
]
