"""The model-level API, in the style of torchao's `sparsify_`: pack a user's `nn.Module` in place, save and
load it, and pack one PyTorch-layout weight.

    report = tightcompress.sparsify_(model, method="tight", group=32, height=3, tile=32, sparsity=0.9)
    tightcompress.save_model(model, "packed.safetensors")
    tightcompress.load_model_(fresh_dense_model, "packed.safetensors")
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from tightcompress.api import PackConfig, pack
from tightcompress.errors import TightCompressError
from tightcompress.format.dtypes import store_dtype
from tightcompress.format.io import jsonable
from tightcompress.format.packed import PackedMatrix
from tightcompress.nn.modules import PackedConv2d, PackedLinear, PackedWeight, conv_geometry
from tightcompress.parallel import pack_layers
from tightcompress.readers import gemm_matrices, module_layers
from tightcompress.readers.checkpoint import tensor_to_numpy
from tightcompress.readers.matrices import gemm_name, layer_weight
from tightcompress.report import build_report
from tightcompress.utils.atomic import atomic_path

MODEL_FORMAT = "tightcompress.model"
MODEL_FORMAT_VERSION = 1
FilterFn = Callable[[nn.Module, str], bool]
FITTED_SESSION = "_tightcompress_session"  # set by `tightcompress.prepare_` (pipeline.user_loop)


def pack_weight(
    weight: Any,
    config: PackConfig | None = None,
    *,
    groups: int = 1,
    name: str = "weight",
    calibration: Any = None,
    **options,
) -> PackedMatrix | list[PackedMatrix]:
    """Pack a PyTorch-layout weight: Linear `(out, in)` or Conv `(out, in/groups, kh, kw)`, a tensor of any
    dtype on any device (with or without grad) or a NumPy array. A grouped conv (`groups > 1`) gives one
    `PackedMatrix` per group; a depthwise weight is refused (it is left dense).

    `calibration`: the layer's inputs as rows `(M, in)` (a conv's im2col rows, `(M, in * kh * kw)`): what
    is kept is then chosen by `|w| x ||x||` and the kept weights are solved again to reproduce `x @ W` on
    them (`pipeline.oneshot`)."""
    config = _config(config, options)
    if calibration is not None:
        from tightcompress.pipeline.oneshot import pack_weight_calibrated

        return pack_weight_calibrated(weight, config, calibration, groups=groups, name=name)
    if isinstance(weight, torch.Tensor):
        array, dtype = tensor_to_numpy(weight)
    else:
        array = np.asarray(weight)
        dtype = str(array.dtype)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise TightCompressError(f"groups must be an integer >= 1, got {groups!r}")
    layer = layer_weight(name, array, dtype, groups=groups, source=name)
    if layer.depthwise:
        raise TightCompressError(
            f"{name}: a depthwise convolution (one input channel per group) is left dense"
        )
    matrices, _ = gemm_matrices([layer], source=name)
    packed = [store_dtype(pack(m.matrix, config, name=m.name), m.dtype) for m in matrices.values()]
    return packed[0] if groups == 1 else packed


def sparsify_(
    model: nn.Module,
    config: PackConfig | None = None,
    *,
    filter_fn: FilterFn | None = None,
    jobs: int | None = 1,
    calibration: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Pack the model's `nn.Linear` and `nn.Conv2d` layers in place (`PackedLinear` / `PackedConv2d`).

    `config` or `options` are `pack`'s (`method`, `group`, `height`, `tile`, `sparsity`, ...);
    `filter_fn(module, fqn) -> bool` picks layers (default: all the format can hold; depthwise convs are
    left dense and listed in `notes.skipped_layers`). Returns the `pack --json` report, names = module paths.
    A model that went through `tightcompress.prepare_` and `fit_` is packed in the arrangement `fit_` found
    (its masks folded, no new search; then no packing options are taken).
    `jobs` packs layers in parallel processes (default 1: in this process).
    `calibration` (a tensor of inputs, first axis samples, or a DataLoader): calibrated one-shot packing,
    layer by layer in model order: kept by `|w| x ||x||`, kept weights solved again to reproduce the dense
    model's layer outputs (`pipeline.oneshot`); the report adds relative output errors.
    """
    if not isinstance(model, nn.Module):
        raise TightCompressError(f"sparsify_ takes an nn.Module, got {type(model).__name__}")
    fitted = getattr(model, FITTED_SESSION, None)
    if fitted is not None:  # packed as `tightcompress.fit_` arranged it, not searched again
        if config is not None or options:
            raise TightCompressError(
                "this model was fitted by tightcompress.fit_: sparsify_(model) packs it in that arrangement "
                "and takes no packing options"
            )
        fitted_packed, report_config = fitted.final_packed()
    else:
        config = _config(config, options)
        report_config = vars(config)
    found = [
        (fqn, module, layer)
        for fqn, module, layer in module_layers(model, filter_fn)
        if isinstance(module, nn.Linear | nn.Conv2d)
    ]
    if not found:
        raise TightCompressError(f"{type(model).__name__}: no nn.Linear or nn.Conv2d layer to pack")
    if any(fqn == "" for fqn, _, _ in found):
        raise TightCompressError(
            "sparsify_ replaces layers inside a model; wrap a bare layer in nn.Sequential"
        )
    matrices, skipped = gemm_matrices([layer for _, _, layer in found], source=type(model).__name__)
    if fitted is None and calibration is not None:
        from tightcompress.pipeline.oneshot import pack_module_calibrated

        packed, calibrated = pack_module_calibrated(model, found, config, calibration)
    elif fitted is None:
        packed = pack_layers({name: m.matrix for name, m in matrices.items()}, config, jobs=jobs)
    else:
        packed = _fitted_layers(fitted_packed, matrices)
    for name, p in packed.items():
        store_dtype(p, matrices[name].dtype)
    for fqn, module, layer in found:
        if layer.depthwise:
            continue
        names = [gemm_name(fqn, None if layer.groups == 1 else g) for g in range(layer.groups)]
        weight = module.weight
        blocks = [PackedWeight(packed[n], dtype=weight.dtype, device=weight.device) for n in names]
        if isinstance(module, nn.Linear):
            new: nn.Module = PackedLinear(module.in_features, module.out_features, blocks[0], module.bias)
        else:
            new = PackedConv2d.from_conv(module, blocks)
        new.train(module.training)
        model.set_submodule(fqn, new)
    report = build_report([p.report() for p in packed.values()], config=report_config)
    report["notes"] = {"skipped_layers": skipped}
    if fitted is None and calibration is not None:  # the one-shot report's layers and output errors
        report = {**calibrated, "notes": report["notes"]}
    return report


def _fitted_layers(fitted: dict[str, PackedMatrix], matrices: dict[str, Any]) -> dict[str, PackedMatrix]:
    """`fit_`'s packed layers of the modules `sparsify_` replaces, checked against the model's weights."""
    missing = [name for name in matrices if name not in fitted]
    if missing:
        raise TightCompressError(f"fit_ packed no layer named {', '.join(missing)}")
    for name, matrix in matrices.items():
        if not np.array_equal(fitted[name].to_dense(), matrix.matrix.astype(np.float32)):
            raise TightCompressError(f"{name}: the weights no longer match fit_'s packed layer")
    return {name: fitted[name] for name in matrices}


def save_model(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write the model's whole state (the packed buffers of every packed module included) and what rebuilds
    the packed modules to one `.safetensors` file, atomically."""
    from safetensors.torch import save_file

    specs = {
        fqn: _module_spec(m) for fqn, m in model.named_modules() if isinstance(m, PackedLinear | PackedConv2d)
    }
    if not specs:
        raise TightCompressError(
            f"{type(model).__name__} has no packed module: run tightcompress.sparsify_ first"
        )
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": MODEL_FORMAT,
        "format_version": str(MODEL_FORMAT_VERSION),
        "packed_modules": json.dumps(specs),
    }
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_model_(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Put the packed modules of a `save_model` file into a freshly built dense model of the same class and
    load the whole state; returns the model (changed in place, on its device, in its dtype)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TightCompressError(f"packed model file not found: {path}")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise TightCompressError(f"{path} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != MODEL_FORMAT:
        raise TightCompressError(f"{path} is not a tightcompress packed model (written by save_model)")
    if metadata.get("format_version") != str(MODEL_FORMAT_VERSION):
        raise TightCompressError(
            f"{path} has model-format version {metadata.get('format_version')}, "
            f"this tightcompress reads version {MODEL_FORMAT_VERSION}"
        )
    try:
        specs = json.loads(metadata["packed_modules"])
    except (KeyError, ValueError):
        raise TightCompressError(f"{path}: the packed-module table is missing or not JSON") from None
    for fqn, spec in specs.items():
        model.set_submodule(fqn, _shell(model, fqn, spec, tensors, path))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        raise TightCompressError(f"{path} does not fit {type(model).__name__}: {text[:300]}") from None
    return model


# ------------------------------------------------------------------------------------------------ helpers
def _config(config: PackConfig | None, options: dict[str, Any]) -> PackConfig:
    if config is None:
        try:
            return PackConfig(**options)
        except TypeError as exc:  # an unknown keyword (or a wrong type PackConfig does not check yet)
            raise TightCompressError(f"bad packing options: {exc}") from None
    if options:
        raise TightCompressError("give either a PackConfig or keyword options, not both")
    if not isinstance(config, PackConfig):
        raise TightCompressError(f"config must be a PackConfig, got {type(config).__name__}")
    return config


def _module_spec(module: PackedLinear | PackedConv2d) -> dict[str, Any]:
    return {
        "class": type(module).__name__,
        "geometry": module.geometry(),
        "blocks": [jsonable(block.meta()) for block in module.blocks],
    }


def _shell(model: nn.Module, fqn: str, spec: dict, tensors: dict, path: str) -> nn.Module:
    """An empty packed module for `fqn`, shaped by the file, in the dtype and device of the model's layer."""
    try:
        original = model.get_submodule(fqn)
    except AttributeError:
        raise TightCompressError(f"{path}: the model has no layer {fqn!r}") from None
    geometry = spec.get("geometry", {})
    kind = spec.get("class")
    if isinstance(original, PackedLinear | PackedConv2d):
        reference = original.blocks[0].values
    elif isinstance(original, nn.Linear | nn.Conv2d):
        reference = original.weight
    else:
        raise TightCompressError(
            f"{path}: {fqn!r} is a {type(original).__name__}, not a conv or linear layer"
        )
    if kind == "PackedLinear":
        ok = isinstance(original, nn.Linear | PackedLinear) and (
            original.in_features,
            original.out_features,
        ) == (geometry.get("in_features"), geometry.get("out_features"))
    elif kind == "PackedConv2d":
        here = conv_geometry(original) if isinstance(original, nn.Conv2d) else original.geometry()
        ok = isinstance(original, nn.Conv2d | PackedConv2d) and here == geometry
    else:
        raise TightCompressError(f"{path}: unknown packed module class {kind!r} for {fqn!r}")
    if not ok:
        raise TightCompressError(
            f"{path}: layer {fqn!r} of the model does not match the saved {kind} {geometry}"
        )
    blocks = []
    for index, meta in enumerate(spec.get("blocks", [])):
        prefix = f"{fqn}.blocks.{index}."
        shapes = {k[len(prefix) :]: tuple(v.shape) for k, v in tensors.items() if k.startswith(prefix)}
        try:
            blocks.append(PackedWeight.empty(meta, shapes, dtype=reference.dtype))
        except (KeyError, TypeError, ValueError):
            raise TightCompressError(f"{path}: packed matrix {index} of {fqn!r} is incomplete") from None
    bias = torch.zeros(int(geometry.get("out_features", geometry.get("out_channels", 0))))
    bias = bias if geometry.get("bias") else None
    if kind == "PackedLinear":
        if len(blocks) != 1:
            raise TightCompressError(f"{path}: {fqn!r} must hold one packed matrix")
        shell: nn.Module = PackedLinear(geometry["in_features"], geometry["out_features"], blocks[0], bias)
    else:
        shell = PackedConv2d(geometry, blocks, bias)
    return (
        shell.to(device=reference.device, dtype=reference.dtype) if reference.is_floating_point() else shell
    )
