"""ONNX models -> layer weights (optional extra `tightcompress[onnx]`, the `onnx` package).

Read: the weight initializers of `Conv` (input 1, `(C_out, C_in/group, kh, kw)`, with its `group`), `Gemm`
(input B: `(N, K)` with `transB=1`, else `(K, N)`; `transA` is about the activations) and `MatMul` (a 2-D
initializer as the second input, `(K, N)`). Every weight is given in PyTorch layout, so the one rule of
`readers.matrices` applies. Layers are named by node name; a node without one, or with a scope path as
`torch.onnx.export` writes (`/conv1/Conv`, which a packed file cannot hold), by its weight's initializer
name (PyTorch's parameter name, `conv1.weight`, as in a checkpoint), else `op_type_index`.
Weights that are computed (not initializers) are skipped and listed in the notes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tightcompress.errors import TightCompressError, missing_file
from tightcompress.readers.matrices import LayerWeight, layer_weight


def read_onnx_layers(path: str | os.PathLike[str]) -> tuple[list[LayerWeight], list[dict]]:
    """`(layers, skipped)`: the Conv / Gemm / MatMul weights of an ONNX file, in graph order."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - the extra is installed in CI
        raise TightCompressError(
            "reading .onnx needs the onnx package: pip install 'tightcompress[onnx]'"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise missing_file("input file", path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError... for a bad file
        raise TightCompressError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    init = {t.name: t for t in model.graph.initializer}
    layers: list[LayerWeight] = []
    skipped: list[dict] = []
    names: set[str] = set()
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        name = _layer_name(node, index, names)
        if name in names:
            raise TightCompressError(f"{path}: two nodes are named {name!r}")
        if len(node.input) < 2 or node.input[1] not in init:
            skipped.append({"name": name, "kind": node.op_type, "reason": "weight is not an initializer"})
            continue
        tensor = init[node.input[1]]
        try:  # a truncated or padded raw_data, or an external file that is not there
            array = numpy_helper.to_array(tensor, base_dir=str(path.parent))
        except (ValueError, TypeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TightCompressError(
                f"{path}: initializer {tensor.name!r} of {name!r} cannot be read ({first}): the file is "
                "damaged (truncated raw_data?)"
            ) from None
        dtype = _onnx_dtype(tensor.data_type, array)
        if dtype == "bfloat16":
            array = array.astype(np.float32)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        groups = 1
        if node.op_type == "Conv":
            groups = int(attrs.get("group", 1))
            if array.ndim not in (3, 4):
                skipped.append({"name": name, "kind": "Conv", "reason": f"{array.ndim}-D kernel"})
                continue
        elif node.op_type == "Gemm":
            if array.ndim != 2:
                raise TightCompressError(f"{path}: Gemm {name!r} has a {array.ndim}-D B")
            array = array if int(attrs.get("transB", 0)) else array.T  # -> (out, in)
        else:  # MatMul: y = x @ B with B (K, N)
            if array.ndim != 2:
                skipped.append({"name": name, "kind": "MatMul", "reason": f"{array.ndim}-D operand"})
                continue
            array = array.T
        layers.append(layer_weight(name, np.ascontiguousarray(array), dtype, groups=groups, source=str(path)))
        names.add(name)
    if not layers:
        raise TightCompressError(f"{path}: no Conv, Gemm or MatMul weight initializers found")
    return layers, skipped


def _layer_name(node: object, index: int, taken: set[str]) -> str:
    """The node's name; for none or a scope path (`/layer1/conv1/Conv`), its weight's name, else
    `Op_index`."""
    name = node.name  # type: ignore[attr-defined]
    if name and "/" not in name and name != "@state":
        return name
    weight = node.input[1] if len(node.input) > 1 else ""  # type: ignore[attr-defined]
    if weight and "/" not in weight and weight != "@state" and weight not in taken:
        return weight
    return f"{node.op_type}_{index}"  # type: ignore[attr-defined]


def _onnx_dtype(data_type: int, array: np.ndarray) -> str:
    from onnx import TensorProto

    return "bfloat16" if data_type == TensorProto.BFLOAT16 else str(array.dtype)
