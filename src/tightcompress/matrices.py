"""Model -> matrices: read the GEMM weight matrices (`K x N`, layer `y = x @ W`) out of input files.

Conventions: conv weight `(C_out, C_in, kh, kw)` -> `W = weight.reshape(C_out, -1).T` (K = C_in*kh*kw in
that order); linear `(out, in)` -> `W = weight.T`; conv1d `(C_out, C_in, k)` likewise.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from tightcompress.errors import TightCompressError

# Weight ranks that are GEMMs under the reshape convention, and what they are called in messages.
_LAYER_KIND = {2: "linear", 3: "conv1d", 4: "conv2d"}


def weight_to_matrix(weight: np.ndarray) -> np.ndarray:
    """Layer weight (out first) -> `K x N` matrix."""
    return np.ascontiguousarray(weight.reshape(weight.shape[0], -1).T)


def matrix_to_weight(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`K x N` matrix -> layer weight of `shape` (inverse of `weight_to_matrix`)."""
    return np.ascontiguousarray(matrix.T.reshape(shape))


def gemm_weights(state: dict[str, np.ndarray], source: str = "checkpoint") -> dict[str, np.ndarray]:
    """The conv and linear weights of a state dict as `K x N` matrices, in the dict's order.

    A tensor counts as a layer weight when its name ends in `weight` and it has more than one dimension;
    1-D weights (normalisation scales) are skipped. A weight of another rank is an unknown layer type.
    """
    matrices: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if not name.split(".")[-1].endswith("weight"):
            continue
        array = np.asarray(tensor)
        if array.ndim <= 1:
            continue
        if array.ndim not in _LAYER_KIND:
            raise TightCompressError(
                f"{source}: unknown layer type for {name!r}: a {array.ndim}-D weight {tuple(array.shape)} "
                "(supported: linear 2-D, conv1d 3-D, conv2d 4-D)"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise TightCompressError(f"{source}: weight {name!r} has non-float dtype {array.dtype}")
        matrices[name] = weight_to_matrix(array)
    if not matrices:
        raise TightCompressError(f"{source}: no conv or linear weights found")
    return matrices


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A `state_dict` from a `.pt`/`.pth` (plain, or under a `state_dict`/`model` key) or `.safetensors`."""
    path = Path(path)
    if not path.is_file():
        raise TightCompressError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise TightCompressError(f"{path}: not a readable safetensors file ({exc})") from None
    if suffix in (".pt", ".pth"):
        import torch

        try:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except (
            RuntimeError,
            pickle.UnpicklingError,
            zipfile.BadZipFile,
            EOFError,
            OSError,
            ValueError,
        ) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TightCompressError(f"{path}: not a readable PyTorch checkpoint ({first_line})") from None
        if isinstance(loaded, dict):
            for key in ("state_dict", "model_state_dict", "model"):
                if isinstance(loaded.get(key), dict):
                    loaded = loaded[key]
                    break
        if not isinstance(loaded, dict):
            raise TightCompressError(f"{path}: expected a state_dict, got {type(loaded).__name__}")
        return {k: v.detach().cpu().numpy() for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    raise TightCompressError(
        f"{path}: unsupported input type {suffix!r} (use .npy, .pt, .pth or .safetensors)"
    )


def load_matrices(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Named `K x N` matrices from a `.npy` matrix or a checkpoint (`.pt`, `.pth`, `.safetensors`)."""
    path = Path(path)
    if not path.is_file():
        raise TightCompressError(f"input file not found: {path}")
    if path.suffix.lower() == ".npy":
        from tightcompress.utils.npy import read_npy

        matrix = read_npy(path)  # checks the header against the file before allocating
        if matrix.ndim != 2:
            raise TightCompressError(f"{path}: expected a 2-D K x N matrix, got shape {matrix.shape}")
        return {path.stem: matrix}
    return gemm_weights(load_state_dict(path), source=str(path))
