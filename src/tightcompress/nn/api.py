"""The model-level API, in the style of torchao's `sparsify_`: pack a user's `nn.Module` in place, and pack
one PyTorch-layout weight (saving and loading the model: `nn.model_file`).

    report = tightcompress.sparsify_(model, method="tight", group=32, height=3, tile=32, sparsity=0.9)
    tightcompress.save_model(model, "packed.safetensors")
    tightcompress.load_model_(fresh_dense_model, "packed.safetensors")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from tightcompress.api import PackConfig, pack
from tightcompress.errors import TightCompressError
from tightcompress.format.dtypes import store_dtype
from tightcompress.format.packed import PackedMatrix
from tightcompress.nn.modules import PackedConv2d, PackedLinear, PackedWeight
from tightcompress.parallel import pack_layers
from tightcompress.readers import gemm_matrices, module_layers
from tightcompress.readers.checkpoint import tensor_to_numpy
from tightcompress.readers.matrices import gemm_name, layer_weight
from tightcompress.report import build_report

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
