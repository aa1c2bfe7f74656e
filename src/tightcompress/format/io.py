"""Store packed matrices as safetensors: arrays per layer, scalars and the report in the metadata.

One file may hold several layers (a whole checkpoint); tensors are named `LAYER/ARRAY`. The file carries a
format version so that a reader from another version fails with a clear message instead of misreading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from tightcompress.errors import TightCompressError
from tightcompress.format.packed import FORMAT_VERSION, PackedMatrix
from tightcompress.utils.atomic import atomic_path

_ARRAYS = ("group_offsets", "row_perm", "col_perm", "heights", "values", "lanes")
_INT_ARRAYS = {"group_offsets": np.int64, "row_perm": np.int32, "col_perm": np.int32, "heights": np.int32}


def save_packed(path: str | os.PathLike[str], layers: Mapping[str, PackedMatrix]) -> None:
    """Write named packed layers to one safetensors file, atomically."""
    tensors: dict[str, np.ndarray] = {}
    layer_meta: dict[str, dict] = {}
    for name, packed in layers.items():
        if "/" in name:
            raise TightCompressError(f"layer name {name!r} must not contain '/'")
        for array in _ARRAYS:
            data = getattr(packed, array)
            data = data.astype(_INT_ARRAYS[array]) if array in _INT_ARRAYS else data
            tensors[f"{name}/{array}"] = np.ascontiguousarray(data)
        layer_meta[name] = {
            "K": packed.K,
            "N": packed.N,
            "group": packed.group,
            "tile": packed.tile,
            "method": packed.method,
            "height_cap": packed.height_cap,
            "info": _jsonable(packed.info),
        }
    metadata = {
        "format": "tightcompress.packed",
        "format_version": str(FORMAT_VERSION),
        "layers": json.dumps(layer_meta),
    }
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_packed(path: str | os.PathLike[str]) -> dict[str, PackedMatrix]:
    """Read every packed layer of a file written by `save_packed`, checking the format version."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TightCompressError(f"packed file not found: {path}")
    try:
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise TightCompressError(f"{path} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != "tightcompress.packed":
        raise TightCompressError(f"{path} is not a tightcompress packed file")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise TightCompressError(
            f"{path} has packed-format version {metadata.get('format_version')}, "
            f"this tightcompress reads version {FORMAT_VERSION}"
        )
    layers = {}
    for name, meta in json.loads(metadata["layers"]).items():
        arrays = {array: tensors[f"{name}/{array}"] for array in _ARRAYS}
        for array in _INT_ARRAYS:
            arrays[array] = arrays[array].astype(np.int64)
        layers[name] = PackedMatrix(
            K=int(meta["K"]),
            N=int(meta["N"]),
            group=int(meta["group"]),
            tile=int(meta["tile"]),
            method=meta["method"],
            height_cap=meta["height_cap"],
            info=meta.get("info", {}),
            **arrays,
        )
    return layers


def _jsonable(value):
    """Plain-JSON copy of an info dict (NumPy scalars become Python numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
