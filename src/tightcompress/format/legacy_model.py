"""Read the `save_model` files of tightcompress 0.1.0 (format `tightcompress.model`, version 1) as packed
layers, so every reader of packed files (`load_packed`, hence `unpack`, `simulate`, `export`, `report
--packed` and `load_model_`) takes them whole.

That format was a PyTorch state_dict (`FQN.blocks.I.values`, `.lanes`, `.heights`, ...; biases and the other
tensors under their own names) with a JSON table of the packed modules (class, geometry, each block's
K, N, G, tile, method, height cap and info) in the metadata, and no checksums. Since 0.1.0 `save_model`
writes the signed `tightcompress.packed` format instead; this reader turns a version-1 file into what
`load_packed` reads from that format: layers named like `sparsify_`'s report (`FQN`, or `FQN[g]` for
group g of a grouped conv) whose info records the PyTorch weight (`source`) and module (`module`), and the
other tensors as the file's state. Each layer is then checked like any packed layer.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.format.metadata import STATE_PREFIX, jsonable

LEGACY_MODEL_FORMAT = "tightcompress.model"
LEGACY_MODEL_VERSION = "1"
_ARRAYS = ("group_offsets", "row_perm", "col_perm", "heights", "values", "lanes")


def read_legacy_model_file(
    path: str, metadata: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str], dict[str, np.ndarray]]:
    """`(layer metadata, state dtype table, tensors)` of a version-1 `save_model` file, in the layout of a
    `tightcompress.packed` file (`LAYER/ARRAY` and `@state/NAME` tensors)."""
    if metadata.get("format_version") != LEGACY_MODEL_VERSION:
        raise TightCompressError(
            f"{path} has model-format version {metadata.get('format_version')}, "
            f"this tightcompress reads version {LEGACY_MODEL_VERSION} of that format"
        )
    try:
        specs = json.loads(metadata["packed_modules"])
    except (KeyError, ValueError):
        raise TightCompressError(f"{path}: the packed-module table is missing or not JSON") from None
    if not isinstance(specs, dict) or not specs:
        raise TightCompressError(f"{path}: the packed-module table is empty or not an object")
    tensors, dtypes = _read_torch_tensors(path)
    layer_meta: dict[str, Any] = {}
    out: dict[str, np.ndarray] = {}
    claimed: set[str] = set()
    for fqn, spec in specs.items():
        where = f"{path}: packed module {fqn!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("blocks"), list) or not spec["blocks"]:
            raise TightCompressError(f"{where}: its entry must list its packed blocks")
        geometry, kind = spec.get("geometry"), spec.get("class")
        if kind not in ("PackedLinear", "PackedConv2d") or not isinstance(geometry, dict):
            raise TightCompressError(f"{where}: unknown packed module class {kind!r} or no geometry")
        shape = _weight_shape(kind, geometry, where)
        groups = len(spec["blocks"])
        for index, meta in enumerate(spec["blocks"]):
            if not isinstance(meta, dict):
                raise TightCompressError(f"{where}: block {index} must be an object")
            group_index = None if groups == 1 else index
            name = fqn if group_index is None else f"{fqn}[{group_index}]"
            info = dict(meta.get("info") or {})
            prefix = f"{fqn}.blocks.{index}."
            for array in _ARRAYS:
                key = prefix + array
                if key not in tensors:
                    raise TightCompressError(f"{where}: tensor {key!r} is missing")
                out[f"{name}/{array}"] = tensors[key]
                claimed.add(key)
            if dtypes[prefix + "values"] == "bfloat16":
                info["dtype"] = "bfloat16"
            info["source"] = {
                "weight": f"{fqn}.weight",
                "shape": shape,
                "groups": groups,
                "group_index": group_index,
            }
            info["module"] = {"path": fqn, "class": kind, "geometry": geometry, "block": index}
            layer_meta[name] = {**{k: meta.get(k) for k in ("K", "N", "group", "tile", "method")}}
            layer_meta[name].update(height_cap=meta.get("height_cap"), info=jsonable(info))
    state_dtypes = {}
    for key, array in tensors.items():
        if key not in claimed:
            out[STATE_PREFIX + key] = array
            state_dtypes[key] = dtypes[key]
    return layer_meta, state_dtypes, out


def _weight_shape(kind: str, geometry: dict[str, Any], where: str) -> list[int]:
    """The PyTorch weight shape of a packed module's dense layer, from its saved geometry."""
    try:
        if kind == "PackedLinear":
            return [int(geometry["out_features"]), int(geometry["in_features"])]
        per_group = int(geometry["in_channels"]) // int(geometry["groups"])
        return [int(geometry["out_channels"]), per_group, *(int(k) for k in geometry["kernel_size"])]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise TightCompressError(f"{where}: its geometry is incomplete") from None


def _read_torch_tensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of a torch-written safetensors file as NumPy (bfloat16 as float32, exactly), with the
    dtype names."""
    import torch
    from safetensors import safe_open

    tensors, dtypes = {}, {}
    try:
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_tensor(key)
                dtypes[key] = str(tensor.dtype).removeprefix("torch.")
                if tensor.dtype == torch.bfloat16:
                    tensor = tensor.float()
                tensors[key] = tensor.numpy()
    except Exception as exc:  # the reader raises several types (SafetensorError, OSError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TightCompressError(f"{path} is not a readable safetensors file ({first})") from None
    return tensors, dtypes
