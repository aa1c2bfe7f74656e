"""Weight dtypes: search in float32, store the kept values in the input's dtype (issue 12 section 5).

The permutation search and slot filling are compiled for float32/float64; fp16, bf16 and integer weights
are searched on an exact float32 copy, and the packed `values` go back to the input dtype. NumPy has no
bfloat16, so bf16 values stay float32 (every bf16 value is exactly a float32) and `info["dtype"]` says
`bfloat16`; the PyTorch side (`tightcompress.nn`, `unpack` to .pt/.safetensors) casts them back.
"""

from __future__ import annotations

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix

SEARCH_DTYPES = (np.float32, np.float64)


def search_copy(weights: np.ndarray) -> np.ndarray:
    """`weights` as float32 unless already float32/float64 (exact for fp16, bf16-as-float32 and int8/16)."""
    return weights if weights.dtype in SEARCH_DTYPES else weights.astype(np.float32)


def store_dtype(packed: PackedMatrix, dtype: str) -> PackedMatrix:
    """Cast the packed values to `dtype` (a NumPy dtype name or `bfloat16`) and record it in the info."""
    if dtype != "bfloat16":
        try:
            target = np.dtype(dtype)
        except TypeError:
            raise TightCompressError(f"unsupported weight dtype {dtype!r}") from None
        if packed.values.dtype != target:
            packed.values = packed.values.astype(target)
    packed.info["dtype"] = dtype
    return packed
