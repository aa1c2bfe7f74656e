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

STATE_PREFIX = "@state/"
_ARRAYS = ("group_offsets", "row_perm", "col_perm", "heights", "values", "lanes")
_INT_ARRAYS = {"group_offsets": np.int64, "row_perm": np.int32, "col_perm": np.int32, "heights": np.int32}


def save_packed(
    path: str | os.PathLike[str],
    layers: Mapping[str, PackedMatrix],
    state: Mapping[str, np.ndarray] | None = None,
    state_dtypes: Mapping[str, str] | None = None,
) -> None:
    """Write named packed layers to one safetensors file, atomically.

    `state` (optional) carries the checkpoint's other tensors (biases, normalisation, layers left dense) as
    `@state/NAME`, with their dtypes in `state_dtypes` (bf16 is stored as float32), so that `unpack` gives
    back a whole PyTorch state_dict; `load_packed` ignores them.
    """
    tensors: dict[str, np.ndarray] = {}
    layer_meta: dict[str, dict] = {}
    for name, packed in layers.items():
        if "/" in name or name == STATE_PREFIX.rstrip("/"):
            raise TightCompressError(f"layer name {name!r} must not contain '/' or be {STATE_PREFIX[:-1]!r}")
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
    for name, array in (state or {}).items():
        tensors[STATE_PREFIX + name] = np.array(array, order="C")  # keeps 0-d tensors 0-d
    metadata = {
        "format": "tightcompress.packed",
        "format_version": str(FORMAT_VERSION),
        "layers": json.dumps(layer_meta),
    }
    if state:
        metadata["state"] = json.dumps(
            {name: (state_dtypes or {}).get(name, str(a.dtype)) for name, a in state.items()}
        )
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


def load_packed_state(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`(tensors, dtypes)`: the checkpoint tensors a packed file carries beside its layers (maybe none)."""
    path = os.fspath(path)
    try:
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as handle:
            metadata = handle.metadata() or {}
            names = [k for k in handle.keys() if k.startswith(STATE_PREFIX)]
            tensors = {k[len(STATE_PREFIX) :]: handle.get_tensor(k) for k in names}
        dtypes = json.loads(metadata.get("state", "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise TightCompressError(f"{path} is not a readable packed file ({exc})") from None
    if not isinstance(dtypes, dict) or set(dtypes) != set(tensors):
        raise TightCompressError(f"{path}: the stored checkpoint tensors do not match their dtype table")
    return tensors, dtypes


def _jsonable(value):
    """Plain-JSON copy of an info dict (NumPy scalars become Python numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
