"""Store packed matrices as safetensors: arrays per layer, scalars and the report in the metadata.

One file may hold several layers (a whole checkpoint); tensors are named `LAYER/ARRAY`. The file carries a
format version so that a reader from another version fails with a clear message instead of misreading.

Nothing read back is trusted: the metadata holds a SHA-256 of every tensor (over dtype, shape and bytes)
and of the layer metadata, and `load_packed` checks them, the set of tensors, every scalar's type and
bounds and every array's shape before building a layer, then `PackedMatrix.validate()`. A damaged or edited
file is a one-line `TightCompressError`, never a wrong matrix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError, missing_file
from tightcompress.format.metadata import STATE_PREFIX, jsonable
from tightcompress.format.packed import FORMAT_VERSION, PackedMatrix
from tightcompress.utils.atomic import atomic_path

PACKED_FORMAT = "tightcompress.packed"
# Every file format whose layers `load_packed` reads: this one, and release 0.1.0's `save_model` files.
PACKED_FILE_FORMATS = (PACKED_FORMAT, "tightcompress.model")
_ARRAYS = ("group_offsets", "row_perm", "col_perm", "heights", "values", "lanes")
_INT_ARRAYS = {"group_offsets": np.int64, "row_perm": np.int32, "col_perm": np.int32, "heights": np.int32}
_ARRAY_NDIM = {"group_offsets": 1, "row_perm": 2, "col_perm": 1, "heights": 2, "values": 2, "lanes": 2}
_MAX_DIM = 2**31 - 1  # K, N, tile and group beyond this are not a real layer


def tensor_sha256(array: np.ndarray) -> str:
    """SHA-256 over an array's dtype, shape and bytes (so a changed shape or dtype is caught too)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _layer_tensors(name: str, packed: PackedMatrix) -> dict[str, np.ndarray]:
    tensors = {}
    for array in _ARRAYS:
        data = getattr(packed, array)
        data = data.astype(_INT_ARRAYS[array]) if array in _INT_ARRAYS else data
        tensors[f"{name}/{array}"] = np.ascontiguousarray(data)
    return tensors


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
        if not isinstance(name, str) or "/" in name or name == STATE_PREFIX.rstrip("/"):
            raise TightCompressError(
                f"layer name {name!r} must be a string without '/', and not {STATE_PREFIX[:-1]!r}"
            )
        tensors.update(_layer_tensors(name, packed))
        layer_meta[name] = {
            "K": packed.K,
            "N": packed.N,
            "group": packed.group,
            "tile": packed.tile,
            "method": packed.method,
            "height_cap": packed.height_cap,
            "info": jsonable(packed.info),
        }
    for name, array in (state or {}).items():
        tensors[STATE_PREFIX + name] = np.array(array, order="C")  # keeps 0-d tensors 0-d
    state_json = None
    if state:
        dtypes = {name: (state_dtypes or {}).get(name, str(a.dtype)) for name, a in state.items()}
        state_json = json.dumps(dtypes)
    write_signed(path, tensors, json.dumps(layer_meta), state_json)


def write_signed(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    layers_json: str,
    state_json: str | None = None,
) -> None:
    """Write `tensors` and the layer metadata (and the dtype table of `@state/` tensors) with the checksums
    `load_packed` verifies, atomically."""
    from safetensors.numpy import save_file

    checksums = json.dumps({key: tensor_sha256(value) for key, value in sorted(tensors.items())})
    metadata = {
        "format": PACKED_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "layers": layers_json,
        "tensor_sha256": checksums,
        "metadata_sha256": _metadata_sha256(layers_json, checksums, state_json),
    }
    if state_json is not None:
        metadata["state"] = state_json
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(dict(tensors), str(tmp), metadata=metadata)


def _metadata_sha256(layers_json: str, checksums: str, state_json: str | None = None) -> str:
    signed = f"{len(layers_json)}|{layers_json}|{checksums}"
    if state_json is not None:  # files without `@state/` tensors keep the digest they always had
        signed += f"|state|{state_json}"
    return hashlib.sha256(signed.encode()).hexdigest()


def load_packed(path: str | os.PathLike[str]) -> dict[str, PackedMatrix]:
    """Read every packed layer of a file written by `save_packed` (`pack --out`, `compress`, `save_model`),
    checking version, checksums, structure; release 0.1.0's `save_model` files are read too."""
    path = os.fspath(path)
    layer_meta, _state_dtypes, tensors = _read_verified(path)
    return {name: _build_layer(path, name, meta, tensors) for name, meta in layer_meta.items()}


def load_packed_state(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`(tensors, dtypes)`: the checkpoint tensors a packed file carries beside its layers (maybe none),
    verified against their checksums like the layers."""
    path = os.fspath(path)
    _layer_meta, state_dtypes, tensors = _read_verified(path)
    state = {name: tensors[STATE_PREFIX + name] for name in state_dtypes}
    return state, state_dtypes


def _read_verified(path: str) -> tuple[dict[str, Any], dict[str, str], dict[str, np.ndarray]]:
    """`(layer metadata, state dtype table, tensors)` of a packed file whose version, checksums and tensor
    set were all checked."""
    if not os.path.isfile(path):
        raise missing_file("packed file", path)
    if packed_file_format(path) == "tightcompress.model":
        from tightcompress.format.legacy_model import read_legacy_model_file

        return read_legacy_model_file(path, _read_metadata(path))
    metadata, tensors = _read_safetensors(path)
    if metadata.get("format") != PACKED_FORMAT:
        raise TightCompressError(
            f"{path} is not a tightcompress packed file (written by `pack --out`, `compress` or `save_model`)"
        )
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise TightCompressError(
            f"{path} has packed-format version {metadata.get('format_version')}, "
            f"this tightcompress reads version {FORMAT_VERSION}"
        )
    layers_json, checksums_json = metadata.get("layers"), metadata.get("tensor_sha256")
    state_json = metadata.get("state")
    if not isinstance(layers_json, str) or not isinstance(checksums_json, str):
        raise TightCompressError(f"{path}: the metadata lacks its 'layers' or 'tensor_sha256' entry")
    if metadata.get("metadata_sha256") != _metadata_sha256(layers_json, checksums_json, state_json):
        raise TightCompressError(f"{path}: the metadata does not match its checksum (the file was changed)")
    checksums = _json_object(checksums_json, path, "tensor_sha256")
    layer_meta = _json_object(layers_json, path, "layers")
    state_dtypes = _json_object(state_json, path, "state") if state_json is not None else {}
    if not all(isinstance(dtype, str) for dtype in state_dtypes.values()):
        raise TightCompressError(f"{path}: metadata 'state' must map tensor names to dtype names")
    expected = {f"{name}/{array}" for name in layer_meta for array in _ARRAYS}
    expected |= {STATE_PREFIX + name for name in state_dtypes}
    if set(tensors) != expected or set(checksums) != expected:
        missing = sorted(expected - set(tensors))
        extra = sorted(set(tensors) - expected)
        what = (
            f"tensor {missing[0]!r} is missing" if missing else f"unexpected tensor {(extra or ['?'])[0]!r}"
        )
        raise TightCompressError(f"{path}: {what} (the file does not match its layer list)")
    for key, array in tensors.items():
        if checksums[key] != tensor_sha256(array):
            raise TightCompressError(
                f"{path}: tensor {key!r} does not match its checksum (the file is damaged)"
            )
    return layer_meta, state_dtypes, tensors


def packed_file_format(path: str | os.PathLike[str]) -> str | None:
    """The format of a file `load_packed` reads (one of `PACKED_FILE_FORMATS`), or None for anything else
    (another safetensors file, a checkpoint, a file that is not safetensors at all). Reads the header only."""
    try:
        metadata = _read_metadata(os.fspath(path))
    except TightCompressError:
        return None
    found = metadata.get("format")
    return found if found in PACKED_FILE_FORMATS else None


def _read_metadata(path: str) -> dict[str, str]:
    """The metadata of a safetensors file (header only); any failure is one line naming the file."""
    try:
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TightCompressError(f"{path} is not a readable safetensors file ({first})") from None
    except BaseException as exc:  # a Rust panic in the reader (pyo3 PanicException)
        if type(exc).__name__ != "PanicException":
            raise
        raise TightCompressError(f"{path} is not a readable safetensors file (reader failed)") from None


def _read_safetensors(path: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Metadata and tensors of a safetensors file; any failure of the reader is one line naming the file."""
    try:
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # the reader raises several types (SafetensorError, OSError, ValueError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TightCompressError(f"{path} is not a readable safetensors file ({first})") from None
    except BaseException as exc:  # a Rust panic in the reader is a BaseException (pyo3 PanicException)
        if type(exc).__name__ != "PanicException":
            raise
        raise TightCompressError(f"{path} is not a readable safetensors file (reader failed)") from None
    return metadata, tensors


def _json_object(text: str, path: str, key: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise TightCompressError(f"{path}: metadata {key!r} is not valid JSON") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TightCompressError(f"{path}: metadata {key!r} must be a JSON object")
    return value


def _int_field(meta: dict, key: str, where: str, low: int = 1, high: int = _MAX_DIM) -> int:
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TightCompressError(f"{where}: {key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _build_layer(path: str, name: str, meta: object, tensors: Mapping[str, np.ndarray]) -> PackedMatrix:
    """One layer from its metadata and tensors, every bound checked before anything is computed."""
    where = f"{path}: layer {name!r}"
    if not isinstance(meta, dict):
        raise TightCompressError(f"{where}: metadata must be an object, got {type(meta).__name__}")
    K, N = _int_field(meta, "K", where), _int_field(meta, "N", where)
    group, tile = _int_field(meta, "group", where), _int_field(meta, "tile", where)
    method, height_cap, info = meta.get("method"), meta.get("height_cap"), meta.get("info", {})
    if not isinstance(method, str) or not method:
        raise TightCompressError(f"{where}: method must be a non-empty string, got {method!r}")
    if height_cap is not None:
        height_cap = _int_field(meta, "height_cap", where)
    if not isinstance(info, dict):
        raise TightCompressError(f"{where}: info must be an object")
    _check_info(info, K // 2 if method == _SUBWORD_METHOD else K, N, where)  # 2 subwords per weight
    arrays = {array: tensors[f"{name}/{array}"] for array in _ARRAYS}
    for array, data in arrays.items():
        if data.ndim != _ARRAY_NDIM[array]:
            raise TightCompressError(
                f"{where}: {array} must be {_ARRAY_NDIM[array]}-D, got shape {data.shape}"
            )
        if array in _INT_ARRAYS or array == "lanes":
            if not np.issubdtype(data.dtype, np.integer):
                raise TightCompressError(f"{where}: {array} must hold integers, got {data.dtype}")
        elif not (np.issubdtype(data.dtype, np.number) and np.all(np.isfinite(data))):
            raise TightCompressError(f"{where}: values must be finite numbers")
    n_tiles = math.ceil(N / tile)
    expected_shapes = {
        "row_perm": (n_tiles, K),
        "col_perm": (n_tiles * tile,),
        "heights": (arrays["group_offsets"].shape[0] - 1, n_tiles),
    }
    for array, shape in expected_shapes.items():
        if arrays[array].shape != shape:
            raise TightCompressError(f"{where}: {array} has shape {arrays[array].shape}, expected {shape}")
    if arrays["values"].shape[1] != tile or arrays["lanes"].shape != arrays["values"].shape:
        raise TightCompressError(f"{where}: values and lanes must both be (rows, {tile})")
    for array in _INT_ARRAYS:
        arrays[array] = arrays[array].astype(np.int64)
    packed = PackedMatrix(
        K=K, N=N, group=group, tile=tile, method=method, height_cap=height_cap, info=info, **arrays
    )
    try:
        packed.validate()
    except TightCompressError as exc:
        raise TightCompressError(f"{where}: {exc}") from None
    except (IndexError, ValueError) as exc:
        raise TightCompressError(f"{where}: inconsistent arrays ({exc})") from None
    return packed


_SUBWORD_METHOD = "tight-subword"  # = prune.subword_pack.SUBWORD_METHOD (format does not import prune)


def _check_info(info: dict, K: int, N: int, where: str) -> None:
    """The info fields that `unpack` acts on, checked like the arrays (the checksums cover the tensors,
    not a hand-edited header): `dtype` a weight type name, `source` a weight shape that holds this
    `K x N` matrix (one group of it for a grouped conv)."""
    from tightcompress.format.dtypes import WIDENED

    dtype = info.get("dtype")
    if dtype is not None:
        try:
            known = dtype in WIDENED or (
                isinstance(dtype, str)
                and np.issubdtype(np.dtype(dtype), np.number)
                and np.dtype(dtype).name == dtype
            )
        except TypeError:
            known = False
        if not known:
            raise TightCompressError(f"{where}: info dtype {dtype!r} is not a weight type")
    source = info.get("source")
    if source is None:
        return
    if not isinstance(source, dict):
        raise TightCompressError(f"{where}: info source must be an object")
    shape, groups, index = source.get("shape"), source.get("groups", 1), source.get("group_index")
    whole = isinstance(shape, list) and 2 <= len(shape) <= 4 and all(_positive_int(d) for d in shape)
    if not (isinstance(source.get("weight"), str) and whole and _positive_int(groups)):
        raise TightCompressError(f"{where}: info source must name a weight and its 2-D to 4-D shape")
    if index is not None and not (_int_like(index) and 0 <= index < groups):
        raise TightCompressError(f"{where}: info source group_index {index!r} is not one of {groups} groups")
    if shape[0] % groups or shape[0] // groups != N or math.prod(shape[1:]) != K:
        raise TightCompressError(
            f"{where}: info source shape {shape} (groups {groups}) does not hold the {K} x {N} matrix"
        )


def _int_like(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: object) -> bool:
    return _int_like(value) and value >= 1  # type: ignore[operator]
