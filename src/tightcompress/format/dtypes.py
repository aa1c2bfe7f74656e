"""Weight dtypes: search in float32, store the kept values in the input's dtype (issue 12 section 5).

The permutation search and slot filling are compiled for float32/float64; fp16, bf16 and integer weights
are searched on an exact float32 copy, and the packed `values` go back to the input dtype. NumPy has no
bfloat16 or fp8, so bf16 and fp8 (`float8_e4m3fn`, `float8_e5m2`, ...) values stay float32 (every one is
exactly a float32) and `info["dtype"]` names the stored type; the PyTorch side (`tightcompress.nn`, `unpack`
to .pt/.safetensors) casts them back. fp8 weights are packed as their stored values: a per-tensor or
per-block scale saved beside them (`weight_scale_inv`) is carried through untouched, not applied.
"""

from __future__ import annotations

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import PackedMatrix

SEARCH_DTYPES = (np.float32, np.float64)


def search_copy(weights: np.ndarray) -> np.ndarray:
    """`weights` as float32 unless already float32/float64 (exact for fp16, bf16-as-float32 and int8/16)."""
    return weights if weights.dtype in SEARCH_DTYPES else weights.astype(np.float32)


# Stored types NumPy lacks -> the NumPy type that holds every one of their values exactly.
WIDENED = {
    "bfloat16": "float32",
    "float8_e4m3fn": "float32",
    "float8_e4m3fnuz": "float32",
    "float8_e5m2": "float32",
    "float8_e5m2fnuz": "float32",
    "float8_e8m0fnu": "float32",
    "complex32": "complex64",
}


def store_dtype(packed: PackedMatrix, dtype: str) -> PackedMatrix:
    """Cast the packed values to `dtype` (a NumPy dtype name, or a `WIDENED` one, kept in its exact wider
    type) and record it in the info."""
    if dtype in WIDENED:
        if packed.values.dtype != np.dtype(WIDENED[dtype]):
            packed.values = packed.values.astype(WIDENED[dtype])
    else:
        try:
            target = np.dtype(dtype)
        except TypeError:
            raise TightCompressError(f"unsupported weight dtype {dtype!r}") from None
        if packed.values.dtype != target:
            packed.values = packed.values.astype(target)
    packed.info["dtype"] = dtype
    return packed
