"""Checkpoints as people save them -> one flat PyTorch state_dict (`.pt`, `.pth`, `.safetensors`).

- The state_dict may be nested under any key at any depth (`state_dict`, `model`, `model_state_dict`, `ema`,
  Lightning's `state_dict`, ...). A candidate is a dict of tensors with at least one `weight` of two or more
  dimensions (so an optimizer's per-parameter state is not one). With several candidates the reader stops
  with a one-line error listing them; `key="model/ema"` (CLI `--key PATH`) chooses one.
- `module.` prefixes of DataParallel / DistributedDataParallel are stripped from the names.
- `torch.nn.utils.prune` pairs `X_orig` / `X_mask` become `X = X_orig * X_mask` (the weight the layer
  computes with), named `X`.
- Tensors keep their dtype (fp16, bf16, integer); readers convert where they need to.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError, missing_file

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
_DDP_PREFIX = "module."


def read_state_dict(path: str | os.PathLike[str], key: str | None = None) -> dict[str, Any]:
    """The flat state_dict (torch tensors, in file order) of a checkpoint file; see the module docstring."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise missing_file("checkpoint", path)
    suffix = path.suffix.lower()
    from tightcompress.utils.memory import check_memory, file_size

    check_memory(file_size(path), f"reading {path}")  # every tensor is loaded into memory
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as handle:
                written_by = (handle.metadata() or {}).get("format", "")
            loaded: Any = dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise TightCompressError(
                f"{path}: not a readable safetensors file ({_first_line(exc)})"
            ) from None
        if written_by.startswith("tightcompress."):  # its tensors are packed slots, not layer weights
            raise TightCompressError(
                f"{path} is a tightcompress packed file, not a checkpoint: simulate, unpack, export and "
                f"report --packed read it; `tightcompress unpack {path} OUT.pt` gives its state_dict"
            )
        if key is None:
            _refuse_prefixed_copies(loaded, str(path))
        else:
            loaded = _unflatten_safetensors(loaded)
    elif suffix in (".pt", ".pth"):
        try:
            with warnings.catch_warnings():  # torch's warnings (TorchScript archive, TypedStorage,
                warnings.simplefilter("ignore")  # ComplexHalf, quantized tensors) are not for our user
                loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        except (
            RuntimeError,
            pickle.UnpicklingError,
            zipfile.BadZipFile,
            EOFError,
            OSError,
            ValueError,
        ) as exc:
            if "TorchScript" in str(exc):
                raise TightCompressError(
                    f"{path} is a TorchScript archive (torch.jit.save), not a state_dict of tensors: save "
                    "model.state_dict() with torch.save instead"
                ) from None
            if "Weights only load failed" in str(exc) and zipfile.is_zipfile(path):
                raise TightCompressError(
                    f"{path} holds pickled objects (a whole model?), not a state_dict of tensors: save "
                    "model.state_dict() instead (tightcompress does not run pickled code)"
                ) from None
            reason = "not a torch.save file of tensors" if "Weights only" in str(exc) else _first_line(exc)
            raise TightCompressError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    else:
        raise TightCompressError(
            f"{path}: unsupported input type {suffix!r} (use .npy, .pt, .pth, .safetensors or .onnx)"
        )
    return normalize_state_dict(find_state_dict(loaded, key=key, source=str(path)), source=str(path))


def find_state_dict(obj: Any, key: str | None = None, source: str = "checkpoint") -> dict[str, Any]:
    """The state_dict inside a loaded checkpoint: the only candidate at any depth, or the one at `key`."""
    if key is not None:
        found = _at_path(obj, key)
        if found is None:
            raise TightCompressError(
                f"{source}: no entry at --key {key!r}; state_dicts found: {_candidate_list(obj)}"
            )
        if not _is_state_dict(found):
            raise TightCompressError(f"{source}: the entry at --key {key!r} is not a state_dict of tensors")
        return found
    candidates = list(_candidates(obj, ""))
    if not candidates:
        raise TightCompressError(f"{source}: no state_dict with conv or linear weights found")
    if len(candidates) > 1:
        listed = ", ".join(p or "<top>" for p, _ in candidates)
        raise TightCompressError(
            f"{source} holds {len(candidates)} state_dicts ({listed}); choose one with --key PATH"
        )
    return candidates[0][1]


def normalize_state_dict(state: dict[str, Any], source: str = "checkpoint") -> dict[str, Any]:
    """Strip `module.` prefixes and fold `torch.nn.utils.prune` pairs (`X_orig * X_mask` -> `X`)."""
    import torch

    flat: dict[str, Any] = {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        short = name
        while short.startswith(_DDP_PREFIX):
            short = short[len(_DDP_PREFIX) :]
        if short in flat:
            raise TightCompressError(f"{source}: {name!r} and another tensor both become {short!r}")
        flat[short] = tensor
    out: dict[str, Any] = {}
    for name, tensor in flat.items():
        if name.endswith("_mask") and name[: -len("_mask")] + "_orig" in flat:
            continue  # folded into its `_orig` partner below
        if name.endswith("_orig") and name[: -len("_orig")] + "_mask" in flat:
            base = name[: -len("_orig")]
            mask = flat[base + "_mask"]
            if mask.shape != tensor.shape:
                raise TightCompressError(
                    f"{source}: {base}_mask has shape {tuple(mask.shape)}, {name} {tuple(tensor.shape)}"
                )
            if base in flat:
                raise TightCompressError(f"{source}: both {base!r} and the pruning pair {name!r} are present")
            out[base] = (tensor * mask.to(tensor.dtype)).to(tensor.dtype)
            continue
        out[name] = tensor
    return out


def tensor_to_numpy(tensor: Any) -> tuple[np.ndarray, str]:
    """`(array, dtype name)` of a torch tensor. Types NumPy lacks are widened exactly (bfloat16 and fp8 to
    float32, complex32 to complex64; `format.dtypes.WIDENED`) and keep their name; a sparse tensor is made
    dense. A quantized tensor (`qint8`, ...) is a one-line `TightCompressError`: its values mean nothing
    without its scale and zero point (readers list it as skipped)."""
    import torch

    from tightcompress.format.dtypes import WIDENED

    dtype = str(tensor.dtype).removeprefix("torch.")
    tensor = tensor.detach().cpu()
    if tensor.is_quantized:
        raise TightCompressError(f"quantized tensor ({dtype}): dequantize it before packing")
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    if dtype in WIDENED:
        tensor = tensor.to(getattr(torch, WIDENED[dtype]))
    try:
        return tensor.numpy(), dtype
    except (TypeError, RuntimeError) as exc:
        raise TightCompressError(f"dtype {dtype} has no NumPy equivalent ({_first_line(exc)})") from None


def _is_state_dict(obj: Any) -> bool:
    """A dict of tensors holding at least one layer weight (2+ dims, name ending in weight / weight_orig)."""
    import torch

    if not isinstance(obj, dict) or not obj:
        return False
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return False
    return any(v.ndim >= 2 and k.endswith(("weight", "weight_orig")) for k, v in obj.items())


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k), v
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield str(i), v


def _candidates(obj: Any, path: str) -> Iterator[tuple[str, dict]]:
    if _is_state_dict(obj):
        yield path, obj
        return
    for k, v in _children(obj):
        yield from _candidates(v, f"{path}/{k}" if path else k)


def _candidate_list(obj: Any) -> str:
    found = [p or "<top>" for p, _ in _candidates(obj, "")]
    return ", ".join(found) if found else "none"


def _at_path(obj: Any, path: str) -> Any:
    """The entry at `a/b/c` (or `a.b.c` when no part contains a dot that is a key itself)."""
    for parts in (path.split("/"), path.split(".")):
        node = obj
        for part in parts:
            children = dict(_children(node))
            if part not in children:
                node = None
                break
            node = children[part]
        if node is not None:
            return node
    return None


def _unflatten_safetensors(tensors: dict[str, Any]) -> dict[str, Any]:
    """A flat safetensors file with `--key`: names `model.conv.weight` viewed as `{model: {conv.weight}}`
    for every possible split point, so `--key model` selects the tensors under `model.`."""
    tree: dict[str, Any] = {"": tensors}
    prefixes = {name.rsplit(".", n)[0] for name in tensors for n in range(1, name.count(".") + 1)}
    for prefix in sorted(prefixes):
        sub = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        tree[prefix] = sub
    return tree


def _refuse_prefixed_copies(tensors: dict[str, Any], source: str) -> None:
    """A flat file holding the same state_dict two or more times under named first-level prefixes
    (`model.`, `ema.`; every tensor in one of them, the same names and shapes in each) is a nested
    checkpoint written flat: stop and list them, as for nested dicts, instead of packing every copy.
    `--key ""` takes the whole file (two identical branches of one model)."""
    layouts: dict[str, frozenset] = {}
    for prefix in {name.split(".", 1)[0] for name in tensors if "." in name}:
        if prefix.isdigit():  # nn.Sequential indices: repeated layers, not copies
            continue
        layouts[prefix] = frozenset(
            (n[len(prefix) + 1 :], tuple(t.shape)) for n, t in tensors.items() if n.startswith(prefix + ".")
        )
    copies = sorted(
        p
        for p, layout in layouts.items()
        if sum(other == layout for other in layouts.values()) > 1
        # a copy of a state_dict holds several layers; one layer per prefix (`fc1.weight`, `q.weight`, ...)
        # is a model's top-level layers, however alike their shapes
        and sum(n.endswith(("weight", "weight_orig")) and len(shape) >= 2 for n, shape in layout) >= 2
    )
    covered = sum(len(layouts[p]) for p in copies)
    if len(copies) > 1 and covered == len(tensors):
        raise TightCompressError(
            f"{source} holds {len(copies)} copies of a state_dict ({', '.join(copies)}); "
            'choose one with --key PATH (--key "" for the whole file)'
        )


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours some messages
    return text.splitlines()[0] if text else type(exc).__name__
