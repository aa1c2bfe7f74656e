"""ONNX models -> layer weights, and back (optional extra `tightcompress[onnx]`, the `onnx` package).

Read: the constant weights of `Conv` (input 1, `(C_out, C_in/group, k...)`, 1-D or 2-D kernels, with its
`group`), `Gemm` (input B: `(N, K)` with `transB=1`, else `(K, N)`; `transA` is about the activations) and
`MatMul` (a 2-D constant on the right, `x @ B` with B `(K, N)`, or on the left, `B @ x` with B `(N, K)`).
A weight is constant when it is an initializer or the `value` of a `Constant` node (paddle2onnx and tf2onnx
write weights so), directly or through a chain of `Identity` / `Cast` nodes. A weight several nodes use
(shared weights) is one layer, packed once; it is packed only when every node that reads it is such a layer
in the same layout. Every weight is given in PyTorch layout, so the one rule of `readers.matrices` applies.
Layers are named by node name; a node without one, or with a scope path as `torch.onnx.export` writes
(`/conv1/Conv`, which a packed file cannot hold), by its weight's name (PyTorch's parameter name,
`conv1.weight`, as in a checkpoint), else `op_type_index`. Everything not packed is listed with its reason.

Write (`write_onnx_weights`): the same model with chosen layers' weights replaced, at their source (the
initializer or the Constant node), in the source's dtype and layout: the graph, names and every other
tensor untouched.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError, missing_file
from tightcompress.readers.matrices import LayerWeight, layer_weight

# Ops whose weights are not GEMMs the format packs, listed in the skipped layers with this reason.
_NOT_PACKED_OPS = {
    "LSTM": "recurrent LSTM weights are not packed (gates of a recurrence, not one GEMM)",
    "GRU": "recurrent GRU weights are not packed (gates of a recurrence, not one GEMM)",
    "RNN": "recurrent RNN weights are not packed",
    "ConvTranspose": "transposed convolution is not packed",
    "ConvInteger": "already-quantized integer convolution is not packed",
    "MatMulInteger": "already-quantized integer matmul is not packed",
    "QLinearConv": "already-quantized integer convolution is not packed",
    "QLinearMatMul": "already-quantized integer matmul is not packed",
}
_PASS_THROUGH = ("Identity", "Cast")


@dataclass
class OnnxUse:
    """One node that computes with a packed weight: how its activation input becomes rows of `X` (`K` wide).

    `kind`: `conv` (im2col by the node's attributes), `rows` (features on the last axis: Gemm, MatMul with
    the weight on the right), `rows_t` (Gemm with transA: features on the first axis), `cols` (MatMul with
    the weight on the left: features on the second-to-last axis).
    """

    node_index: int
    node_name: str
    activation: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OnnxWeight:
    """One packable weight of an ONNX graph: the `LayerWeight` (PyTorch layout), where it is stored and how
    the stored tensor maps to PyTorch layout (`transposed`), and the nodes that use it, in graph order."""

    layer: LayerWeight
    tensor: str  # the initializer's name, or the Constant node's output
    constant_node: str | None  # the Constant node's name (None: an initializer)
    transposed: bool  # stored as (in, out): Gemm without transB, MatMul with the weight on the right
    uses: list[OnnxUse]


@dataclass
class OnnxGraph:
    """What `read_onnx` found: the model proto, the file's SHA-256, the packable weights and the skipped."""

    path: str
    model: Any
    sha256: str
    weights: list[OnnxWeight]
    skipped: list[dict]

    def by_name(self) -> dict[str, OnnxWeight]:
        return {w.layer.name: w for w in self.weights}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex (what `pack` records and `unpack --onnx` checks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - the extra is installed in CI
        raise TightCompressError(
            "reading .onnx needs the onnx package: pip install 'tightcompress[onnx]'"
        ) from None
    return onnx


def load_onnx_model(path: str | os.PathLike[str]) -> Any:
    """The ONNX model proto of `path`, or a one-line error."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise missing_file("input file", path)
    try:
        return onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError... for a bad file
        raise TightCompressError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None


def read_onnx_layers(path: str | os.PathLike[str]) -> tuple[list[LayerWeight], list[dict]]:
    """`(layers, skipped)`: the Conv / Gemm / MatMul weights of an ONNX file, in graph order."""
    graph = read_onnx(path)
    return [w.layer for w in graph.weights], graph.skipped


def read_onnx(path: str | os.PathLike[str]) -> OnnxGraph:
    """Every packable weight of an ONNX file with its source and uses, and what is not packed, with why."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = load_onnx_model(path)
    source = str(path)
    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    graph_outputs = {o.name for o in graph.output}

    def resolve(name: str) -> tuple[str, str | None, list[Any]] | None:
        """`(source tensor, Constant node name or None, Cast nodes from source to use)` of a constant."""
        chain = []
        for _ in range(len(graph.node) + 1):
            if name in init:
                return name, None, chain[::-1]
            node = producers.get(name)
            if node is None:
                return None
            if node.op_type == "Constant":
                if any(a.name == "value" for a in node.attribute):
                    return name, node.name or name, chain[::-1]
                return None
            if node.op_type not in _PASS_THROUGH or not node.input:
                return None
            if node.op_type == "Cast":
                chain.append(node)
            name = node.input[0]
        return None

    def source_array(tensor: str, constant: str | None) -> tuple[np.ndarray, int]:
        if constant is None:
            proto = init[tensor]
        else:
            node = producers[tensor]
            proto = next(a.t for a in node.attribute if a.name == "value")
        return numpy_helper.to_array(proto), int(proto.data_type)

    def terminal_uses(tensor: str) -> list[int]:
        """Nodes that read `tensor` or an Identity/Cast of it (the pass-through nodes themselves excluded)."""
        found, todo, seen = [], [tensor], set()
        while todo:
            name = todo.pop()
            for index in consumers.get(name, []):
                node = graph.node[index]
                if node.op_type in _PASS_THROUGH:
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            todo.append(out)
                elif index not in found:
                    found.append(index)
        return sorted(found)

    candidates: dict[str, dict[str, Any]] = {}  # by source tensor, in graph order of first use
    skipped: list[dict] = []
    names: set[str] = set()
    for index, node in enumerate(graph.node):
        op = node.op_type
        if op in _NOT_PACKED_OPS:
            skipped.append({"name": node.name or f"{op}_{index}", "kind": op, "reason": _NOT_PACKED_OPS[op]})
            continue
        if op not in ("Conv", "Gemm", "MatMul"):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        label = node.name or f"{op}_{index}"
        if len(node.input) < 2:
            skipped.append({"name": label, "kind": op, "reason": "fewer than two inputs"})
            continue
        weight_slot, transposed, kind = 1, False, "rows"
        found = resolve(node.input[1])
        if op == "MatMul":
            left = resolve(node.input[0])
            if found is not None and left is not None:
                skipped.append({"name": label, "kind": op, "reason": "both operands are constants"})
                continue
            if found is None and left is not None:
                found, weight_slot, kind = left, 0, "cols"
            transposed = weight_slot == 1
        elif op == "Gemm":
            transposed = not int(attrs.get("transB", 0))
            kind = "rows_t" if int(attrs.get("transA", 0)) else "rows"
        else:
            kind = "conv"
        if found is None:
            skipped.append({"name": label, "kind": op, "reason": "weight is computed, not a constant"})
            continue
        tensor, constant, casts = found
        array, _ = source_array(tensor, constant)
        if op == "Conv" and array.ndim not in (3, 4):
            skipped.append({"name": label, "kind": op, "reason": f"{array.ndim}-D kernel"})
            continue
        if op == "Gemm" and array.ndim != 2:
            raise TightCompressError(f"{source}: Gemm {label!r} has a {array.ndim}-D B")
        if op == "MatMul" and array.ndim != 2:
            skipped.append({"name": label, "kind": op, "reason": f"{array.ndim}-D constant operand"})
            continue
        activation = node.input[1 - weight_slot] if op == "MatMul" else node.input[0]
        use = OnnxUse(index, label, activation, kind, attrs)
        entry = candidates.get(tensor)
        groups = int(attrs.get("group", 1)) if op == "Conv" else 1
        if entry is None:
            name = _layer_name(node, index, node.input[weight_slot], names)
            if name in names:
                raise TightCompressError(f"{source}: two nodes are named {name!r}")
            names.add(name)
            candidates[tensor] = {
                "name": name, "constant": constant, "casts": casts, "transposed": transposed,
                "groups": groups, "op": op, "uses": [use], "array": array,
            }  # fmt: skip
        elif (
            (entry["op"] == "Conv") != (op == "Conv")
            or entry["transposed"] != transposed
            or (entry["groups"] != groups)
        ):
            entry["conflict"] = f"also used by {label} ({op}) in another layout"
        else:
            entry["uses"].append(use)

    weights: list[OnnxWeight] = []
    for tensor, entry in candidates.items():
        name, op = entry["name"], entry["op"]
        packed_nodes = {use.node_index for use in entry["uses"]}
        others = [i for i in terminal_uses(tensor) if i not in packed_nodes]
        reason = entry.get("conflict")
        if reason is None and others:
            other = graph.node[others[0]]
            reason = (
                f"the weight is also read by {other.name or other.op_type} ({other.op_type}), not a layer"
            )
        if reason is None and tensor in graph_outputs:
            reason = "the weight is also a graph output"
        if reason is not None:
            skipped.append({"name": name, "kind": op, "reason": reason})
            continue
        array = entry["array"]
        dtype = _onnx_dtype(int(_source_type(init, producers, tensor, entry["constant"])), array)
        if dtype == "bfloat16":
            array = array.astype(np.float32)
        weight = array.T if entry["transposed"] else array
        layer = layer_weight(name, np.ascontiguousarray(weight), dtype, groups=entry["groups"], source=source)
        weights.append(OnnxWeight(layer, tensor, entry["constant"], entry["transposed"], entry["uses"]))
    if not weights:
        raise TightCompressError(f"{source}: no Conv, Gemm or MatMul with a constant weight found")
    return OnnxGraph(source, model, file_sha256(path), weights, skipped)


def _source_type(init: dict, producers: dict, tensor: str, constant: str | None) -> int:
    if constant is None:
        return init[tensor].data_type
    return next(a.t for a in producers[tensor].attribute if a.name == "value").data_type


def write_onnx_weights(model: Any, weights: dict[str, np.ndarray], graph: OnnxGraph) -> Any:
    """A copy of `model` with the named layers' weights (PyTorch layout) written at their sources, in each
    source's layout and dtype; every other tensor and node untouched."""
    from onnx import TensorProto, helper, numpy_helper

    out = type(model)()
    out.CopyFrom(model)
    init = {t.name: t for t in out.graph.initializer}
    producers = {o: node for node in out.graph.node for o in node.output}
    by_name = graph.by_name()
    for name, weight in weights.items():
        found = by_name.get(name)
        if found is None:
            raise TightCompressError(f"{graph.path}: no packable layer named {name!r}")
        array = np.asarray(weight)
        array = array.T if found.transposed else array
        if found.constant_node is None:
            proto = init[found.tensor]
        else:
            proto = next(a.t for a in producers[found.tensor].attribute if a.name == "value")
        if tuple(proto.dims) != array.shape:
            raise TightCompressError(
                f"{name}: the weight has shape {array.shape}, the model's tensor {tuple(proto.dims)}"
            )
        if proto.data_type == TensorProto.BFLOAT16:
            new = helper.make_tensor(proto.name, TensorProto.BFLOAT16, array.shape, array.astype(np.float32))
        else:
            target = helper.tensor_dtype_to_np_dtype(proto.data_type)
            new = numpy_helper.from_array(np.ascontiguousarray(array.astype(target)), proto.name)
        proto.CopyFrom(new)
    return out


def _layer_name(node: object, index: int, weight: str, taken: set[str]) -> str:
    """The node's name; for none or a scope path (`/layer1/conv1/Conv`), its weight's name, else
    `Op_index`."""
    name = node.name  # type: ignore[attr-defined]
    if name and "/" not in name and name != "@state":
        return name
    if weight and "/" not in weight and weight != "@state" and weight not in taken:
        return weight
    return f"{node.op_type}_{index}"  # type: ignore[attr-defined]


def _onnx_dtype(data_type: int, array: np.ndarray) -> str:
    from onnx import TensorProto

    return "bfloat16" if data_type == TensorProto.BFLOAT16 else str(array.dtype)
