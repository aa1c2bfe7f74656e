"""The hardware figures of a measured point: the packed model's speed-up and energy gain over dense on
the project's reference array (`pipeline.hardware.HW_ARRAY`, 32x32), per input sample.

The trained kinds take them from the pipeline's report (`compress_model` simulates every packed layer). A
one-shot kind simulates the packed matrices its pruning returns (`pipeline.oneshot.prune_*_packed`), each
layer streaming its own number of input vectors per sample (`vectors`: output positions of a conv, 1 for a
linear layer), counted on one calibration sample: with forward hooks for PyTorch
(`pipeline.hardware.vectors_per_layer`), with onnxruntime for ONNX (`onnx_vectors`; without calibration on
an all-zeros sample when the model fixes its input sizes). When a method has no packed word-level format
to simulate (the unstructured reference) or the vectors are unknown (no sample), the figures are None
rather than a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tightcompress.format.packed import PackedMatrix
from tightcompress.pipeline.config import SUBWORD_METHOD
from tightcompress.pipeline.hardware import HW_ARRAY, simulate_model
from tightcompress.readers.matrices import gemm_name

log = logging.getLogger("tightcompress.frontier")

WORD_METHODS = ("tight", "nm", "nm-permuted", "column-combining")  # simulated on the word-level array


def packed_gains(
    method: str, packed: Mapping[str, Any] | None, vectors: Mapping[str, int] | None
) -> dict[str, float | None]:
    """`{"speedup", "energy_gain"}` of the packed layers over dense, or None each when not simulable."""
    unknown: dict[str, float | None] = {"speedup": None, "energy_gain": None}
    if method not in (*WORD_METHODS, SUBWORD_METHOD) or not packed or vectors is None:
        return unknown
    if not all(isinstance(p, PackedMatrix) and name in vectors for name, p in packed.items()):
        return unknown
    if method == SUBWORD_METHOD:  # the 4-bit subword array against dense int8 (`hw.subword_sim`)
        from tightcompress.hw import total_simulation
        from tightcompress.hw.subword_sim import simulate_subword
        from tightcompress.prune.subword_pack import SubwordPacked

        layers = [
            simulate_subword(SubwordPacked.from_packed(p), array=HW_ARRAY, m=vectors[name])
            for name, p in packed.items()
        ]
        total = total_simulation(layers)
        return {"speedup": float(total["speedup"]), "energy_gain": float(total["energy_gain"])}
    _, total = simulate_model(dict(packed), dict(vectors), array=HW_ARRAY)
    return {"speedup": float(total["speedup"]), "energy_gain": float(total["energy_gain"])}


def onnx_vectors(onnx_path: str | Path, feed: Mapping[str, np.ndarray]) -> dict[str, int] | None:
    """Input vectors per sample of every packable GEMM of an ONNX model (`readers.onnx` names), from one
    onnxruntime run on `feed` (one sample per input): each using node's output positions (a conv's
    `numel / channels`, a Gemm's or MatMul's `numel / features`), summed over the nodes sharing a weight.
    None (with a warning) when the model cannot be run so."""
    import onnx
    import onnxruntime

    from tightcompress.readers.onnx import read_onnx

    graph = read_onnx(onnx_path)
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    outputs = {
        id(use): model.graph.node[use.node_index].output[0] for weight in graph.weights for use in weight.uses
    }
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    except Exception:  # shape inference is a convenience: float is the default
        types = {}
    present = {o.name for o in model.graph.output}
    for name in dict.fromkeys(outputs.values()):
        if name not in present:
            elem = types.get(name) or onnx.TensorProto.FLOAT
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    names = list(dict.fromkeys(outputs.values()))
    try:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        arrays = dict(zip(names, session.run(names, dict(feed)), strict=True))
    except Exception as exc:
        log.warning("hardware figures left out: the ONNX model did not run on one sample (%s)", exc)
        return None
    vectors: dict[str, int] = {}
    for weight in graph.weights:
        m = 0
        for use in weight.uses:
            out = arrays[outputs[id(use)]]
            axis = 1 if use.kind == "conv" else (-2 if use.kind == "cols" else -1)
            m += int(out.size // out.shape[axis])
        groups = weight.layer.groups
        for g in range(groups):
            vectors[gemm_name(weight.layer.name, None if groups == 1 else g)] = m
    return vectors


def onnx_zero_sample(onnx_path: str | Path) -> dict[str, np.ndarray] | None:
    """One all-zeros sample of every input, when the model fixes every input's size but the batch (the
    output positions depend only on sizes); None when a size is free (then the sizes must come from a
    calibration sample)."""
    import onnx

    from tightcompress.pipeline.calibration import graph_inputs

    model = onnx.load(str(onnx_path), load_external_data=False)
    feed = {}
    for name, shape in graph_inputs(model).items():
        rest = shape[1:]
        if not shape or not all(isinstance(d, int) and d > 0 for d in rest):
            return None
        info = next(i for i in model.graph.input if i.name == name)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        feed[name] = np.zeros((1, *rest), dtype=dtype)
    return feed
