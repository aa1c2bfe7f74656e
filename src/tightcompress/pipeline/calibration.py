"""Layer inputs of a model on calibration samples, in the dense model and in the model pruned so far.

One interface (`CalibratedModel`) with one implementation per kind of model: `OnnxCalibration` runs the ONNX
graph with onnxruntime (the packable weights turned into graph inputs, so the dense and the pruned weights
are fed to the same session; each layer's activation input a graph output of a session cut to what it
needs), `TorchCalibration` runs a PyTorch model and a dense copy with forward pre-hooks. Each yields the
layer's calibration rows `X` (`(M, K)` per GEMM: im2col for convolutions, one block per group) for the
pruned and the dense model, from the same samples, so the one-shot driver (`pipeline.oneshot`) accumulates
`X_p^T X_p`, `X_p^T X_d` and `X_d^T X_d` without holding every activation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tightcompress.errors import TightCompressError
from tightcompress.readers.matrices import LayerWeight

SAMPLES_PER_RUN = 16  # samples fed to one session run when the model's batch axis is free


@dataclass
class CalibrationLayer:
    """One packable layer as the driver sees it: its name and weight (PyTorch layout, with groups)."""

    name: str
    layer: LayerWeight


class CalibratedModel(Protocol):
    """A model whose layers the one-shot driver prunes in graph order."""

    def layers(self) -> list[CalibrationLayer]:
        """The packable layers in graph order."""

    def input_rows(self, name: str) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
        """Per batch of calibration samples: the layer's rows per group, pruned model then dense model."""

    def set_weight(self, name: str, weight: np.ndarray) -> None:
        """Put a layer's new weight (PyTorch layout) into the pruned model."""

    def output_error(self) -> float:
        """`||f_p - f_d|| / ||f_d||` of the model outputs over the calibration samples."""

    def output_errors(self, weights: dict[str, list[np.ndarray]], samples: int) -> dict[str, list[float]]:
        """Per layer of `weights` and per weight given for it (PyTorch layout), `||f - f_d|| / ||f_d||` of the
        dense model with that one layer's weight replaced, on the first `samples` calibration samples
        (`pipeline.oneshot`'s sensitivity allocation)."""


# ------------------------------------------------------------------------------------ shared: im2col
def conv_rows(
    x: np.ndarray,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    pads: tuple[int, ...],
    groups: int,
) -> list[np.ndarray]:
    """im2col of a conv input `(n, C, *spatial)` (1-D or 2-D), `pads` as ONNX writes them (all begins, then
    all ends): per group a `(n * positions, C/groups * prod(kernel))` block, columns in the weight's order."""
    if all(int(k) == 1 for k in kernel) and not any(pads):
        # a pointwise conv: its rows are the input's channel vectors (no im2col copy through torch)
        x = np.asarray(x, dtype=np.float32)
        x = x[(slice(None), slice(None), *(slice(None, None, int(s)) for s in strides))]
        rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
        per_group = rows.shape[1] // groups
        return [rows[:, g * per_group : (g + 1) * per_group] for g in range(groups)]
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if t.ndim == 3:  # conv1d as a conv2d of height 1
        t = t[:, :, None, :]
        kernel, strides, dilations = (1, *kernel), (1, *strides), (1, *dilations)
        pads = (0, pads[0], 0, pads[1])
    rank = len(kernel)
    begins, ends = pads[:rank], pads[rank:]
    torch_pads = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        torch_pads += [int(b), int(e)]
    if any(torch_pads):
        t = F.pad(t, torch_pads)
    cols = F.unfold(t, kernel_size=kernel, dilation=dilations, stride=strides)  # (n, C*prod(k), L)
    rows = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()
    per_group = rows.shape[1] // groups
    return [rows[:, g * per_group : (g + 1) * per_group] for g in range(groups)]


def conv_square_sums(
    x: np.ndarray,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    pads: tuple[int, ...],
    groups: int,
) -> list[np.ndarray]:
    """Per group, the summed squares of every column of `conv_rows(x, ...)` (float64), without building
    the rows: one strided sum of the padded `x**2` per kernel offset."""
    x2 = np.square(np.asarray(x), dtype=np.float64)
    if x2.ndim == 3:
        x2 = x2[:, :, None, :]
        kernel, strides, dilations = (1, *kernel), (1, *strides), (1, *dilations)
        pads = (0, pads[0], 0, pads[1])
    rank = len(kernel)
    x2 = np.pad(x2, [(0, 0), (0, 0), *((int(pads[a]), int(pads[a + rank])) for a in range(rank))])
    out = [(x2.shape[2 + a] - dilations[a] * (kernel[a] - 1) - 1) // strides[a] + 1 for a in range(rank)]
    sums = np.zeros((x2.shape[1], *kernel), dtype=np.float64)
    for offset in np.ndindex(*kernel):
        window = tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, dilations, strides, out, strict=True)
        )
        sums[(slice(None), *offset)] = x2[(slice(None), slice(None), *window)].sum(axis=(0, 2, 3))
    flat = sums.reshape(-1)
    per_group = flat.size // groups
    return [flat[g * per_group : (g + 1) * per_group] for g in range(groups)]


def _same_pads(spatial: tuple[int, ...], kernel, strides, dilations, upper: bool) -> tuple[int, ...]:
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begins.append(small if upper else total - small)
        ends.append(total - small if upper else small)
    return (*begins, *ends)


def split_groups(rows: np.ndarray, groups: int) -> list[np.ndarray]:
    if groups == 1:
        return [rows]
    per_group = rows.shape[1] // groups
    return [rows[:, g * per_group : (g + 1) * per_group] for g in range(groups)]


def check_finite(rows: list[np.ndarray], name: str, which: str) -> None:
    """One line when a layer's calibration input holds NaN or infinity."""
    for block in rows:
        if not np.all(np.isfinite(block)):
            bad = int(np.size(block) - np.count_nonzero(np.isfinite(block)))
            raise TightCompressError(
                f"calibration: non-finite activations at the input of layer {name!r} in the {which} model "
                f"({bad} of {np.size(block)} values); check the calibration inputs' scale and preprocessing"
            )


# -------------------------------------------------------------------------------------------- ONNX
class OnnxCalibration:
    """An ONNX model run by onnxruntime on calibration inputs keyed by input name (first axis: samples)."""

    def __init__(self, graph: Any, calibration: Mapping[str, np.ndarray], threads: int | None = None) -> None:
        from onnx import helper

        self.graph = graph
        self.weights = {w.layer.name: w for w in graph.weights}
        self.samples = check_onnx_calibration(graph.model, calibration)
        self.calibration = {name: np.asarray(array) for name, array in calibration.items()}
        self.threads = threads
        model = graph.model
        init = {t.name: t for t in model.graph.initializer}
        # the packable weights become graph inputs (fed dense or pruned); the rest of the model unchanged
        runnable = type(model)()
        runnable.CopyFrom(model)
        sources = {w.tensor for w in graph.weights}
        self.dense_feed: dict[str, np.ndarray] = {}
        from onnx import numpy_helper

        kept_init = [t for t in runnable.graph.initializer if t.name not in sources]
        kept_nodes = []
        for node in runnable.graph.node:
            if node.op_type == "Constant" and node.output[0] in sources:
                proto = next(a.t for a in node.attribute if a.name == "value")
                self.dense_feed[node.output[0]] = numpy_helper.to_array(proto)
                runnable.graph.input.append(
                    helper.make_tensor_value_info(node.output[0], proto.data_type, list(proto.dims))
                )
                continue
            kept_nodes.append(node)
        existing_inputs = {i.name for i in runnable.graph.input}
        for name in sources:
            if name in init:
                proto = init[name]
                self.dense_feed[name] = numpy_helper.to_array(proto)
                if name not in existing_inputs:
                    runnable.graph.input.append(
                        helper.make_tensor_value_info(name, proto.data_type, list(proto.dims))
                    )
        del runnable.graph.initializer[:]
        runnable.graph.initializer.extend(kept_init)
        del runnable.graph.node[:]
        runnable.graph.node.extend(kept_nodes)
        self.runnable = runnable
        self.pruned_feed = dict(self.dense_feed)
        self._types = _value_types(runnable)
        self._stages = StagedGraph(
            runnable, list(self._batches()), set(self.dense_feed), self._types, self._open, self._run
        )

    def layers(self) -> list[CalibrationLayer]:
        return [CalibrationLayer(w.layer.name, w.layer) for w in self.graph.weights]

    def set_weight(self, name: str, weight: np.ndarray) -> None:
        found = self.weights[name]
        array = np.asarray(weight).T if found.transposed else np.asarray(weight)
        dense = self.dense_feed[found.tensor]
        self.pruned_feed[found.tensor] = np.ascontiguousarray(array.astype(dense.dtype))
        self._stages.weight_changed("pruned", found.tensor)

    def _session(self, outputs: list[str]) -> Any:
        from onnx import helper

        return self._open(_cut(self.runnable, outputs, self._types, helper))

    def _open(self, model: Any) -> Any:
        """An onnxruntime session of `model` (a part of the runnable graph), or a one-line error."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            return ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own error types
            raise TightCompressError(
                f"{self.graph.path}: onnxruntime cannot run the model ({str(exc).splitlines()[0][:200]})"
            ) from None

    def _per_run(self) -> int:
        """Samples per session run: `SAMPLES_PER_RUN` when every input's batch axis is free, else 1."""
        free = all(_free_batch(shape) for shape in graph_inputs(self.graph.model).values())
        return SAMPLES_PER_RUN if free else 1

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        model_inputs = graph_inputs(self.graph.model)
        per_run = self._per_run()
        for start in range(0, self.samples, per_run):
            feed = {}
            for name, shape in model_inputs.items():
                array = self.calibration[name]
                if array.ndim == len(shape) + 1:  # each sample carries the model's batch axis
                    feed[name] = array[start]
                else:
                    feed[name] = array[start : start + per_run]
                feed[name] = feed[name].astype(_input_dtype(self.graph.model, name), copy=False)
            yield feed

    def _run(self, session: Any, feed: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> list:
        names = {i.name for i in session.get_inputs()}
        full = {k: v for k, v in {**feed, **weights}.items() if k in names}
        try:
            return session.run(None, full)
        except Exception as exc:  # onnxruntime's own error types
            raise TightCompressError(
                f"{self.graph.path}: onnxruntime failed on the calibration inputs "
                f"({str(exc).splitlines()[0][:200]})"
            ) from None

    def input_rows(self, name: str) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
        found = self.weights[name]
        activations = list(dict.fromkeys(use.activation for use in found.uses))
        pruned = self._stages.advance("pruned", activations, self.pruned_feed)
        dense = self._stages.advance("dense", activations, self.dense_feed)
        for batch_p, batch_d in zip(pruned, dense, strict=True):
            rows_p, rows_d = [], []
            for use in found.uses:
                rows_p.append(_use_rows(use, batch_p[use.activation], found.layer))
                rows_d.append(_use_rows(use, batch_d[use.activation], found.layer))
            groups = found.layer.groups
            yield _join_uses(rows_p, groups), _join_uses(rows_d, groups)

    def dense_input_norms(self) -> dict[str, np.ndarray]:
        """`||x_i||` of every GEMM's inputs in the dense model (one pass), by GEMM name."""
        activations = list(
            dict.fromkeys(u.activation for w in self.graph.weights if not w.layer.depthwise for u in w.uses)
        )
        session = self._session(activations)
        sums: dict[str, np.ndarray] = {}
        for feed in self._batches():
            values = dict(zip(activations, self._run(session, feed, self.dense_feed), strict=True))
            for found in self.graph.weights:
                if found.layer.depthwise:  # left dense: no saliency needed
                    continue
                for use in found.uses:
                    x = values[use.activation]
                    check_finite([x], found.layer.name, "dense")
                    _add_square_sums(sums, found.layer, _use_square_sums(use, x, found.layer))
        return {name: np.sqrt(total) for name, total in sums.items()}

    def output_error(self) -> float:
        outputs = [o.name for o in self.runnable.graph.output]
        pruned = self._stages.advance("pruned", outputs, self.pruned_feed)
        dense = self._stages.advance("dense", outputs, self.dense_feed)
        diff = ref = 0.0
        for batch_p, batch_d in zip(pruned, dense, strict=True):
            for name in outputs:
                p, d = np.asarray(batch_p[name]), np.asarray(batch_d[name])
                if np.issubdtype(d.dtype, np.floating):
                    diff += float(np.sum((p.astype(np.float64) - d.astype(np.float64)) ** 2))
                    ref += float(np.sum(d.astype(np.float64) ** 2))
        return float(np.sqrt(diff / ref)) if ref > 0 else 0.0

    def output_errors(self, weights: dict[str, list[np.ndarray]], samples: int) -> dict[str, list[float]]:
        """`CalibratedModel.output_errors`: a staged run of the dense model on the first `samples` samples
        (whole batches); each layer's variant reruns only the nodes from the weight's first reader on."""
        batches, taken = [], 0
        for feed in self._batches():
            if taken >= samples:
                break
            size = len(next(iter(feed.values())))
            if self._per_run() > 1 and taken + size > samples:  # cut the last batch at `samples`
                feed = {name: array[: samples - taken] for name, array in feed.items()}
                size = samples - taken
            batches.append(feed)
            taken += size
        stages = StagedGraph(self.runnable, batches, set(self.dense_feed), self._types, self._open, self._run)
        perturbed = {}
        for name, values in weights.items():
            found = self.weights[name]
            dense = self.dense_feed[found.tensor]
            perturbed[found.tensor] = [
                np.ascontiguousarray(
                    (np.asarray(w).T if found.transposed else np.asarray(w)).astype(dense.dtype)
                )
                for w in values
            ]
        errors = stages.output_errors(perturbed, self.dense_feed)
        return {name: errors[self.weights[name].tensor] for name in weights}


class StagedGraph:
    """The ONNX graph run forward stage by stage over the calibration batches, once per variant of the
    weights (`dense`, `pruned`): each stage runs only the nodes between the last stage's end and the
    producers of the values asked for, and keeps (per batch) every value a later node still reads. A
    layer's input used to be computed from the model's input for every layer, both variants: on PP-OCRv4's
    recognizer (33 layers) that was about 16 forward passes of the calibration set instead of 2.

    The nodes run in the graph's (topological) order. A kept value of the pruned variant records the
    packable weights it depends on; when one of them changes (`weight_changed`) after the value was
    computed (a weight shared by nodes in several places), the variant starts again from the model's
    inputs, so every value is always the one the full graph computes with the current weights."""

    def __init__(
        self,
        model: Any,
        batches: list[dict[str, np.ndarray]],
        weight_names: set[str],
        types: dict[str, int],
        open_session: Any,
        run: Any,
    ) -> None:
        from onnx import helper

        self.batches = batches
        self.types = types
        self.open_session = open_session
        self.run_session = run
        graph = model.graph
        self.nodes = list(graph.node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.outputs = [o.name for o in graph.output]
        self.reads: list[list[str]] = []
        self.producer: dict[str, int] = {}
        bits = {name: 1 << index for index, name in enumerate(sorted(weight_names))}
        self.weight_bit = bits
        self.depends: dict[str, int] = {}  # value -> bitmask of the packable weights it depends on
        self.last_read: dict[str, int] = {}
        for index, node in enumerate(self.nodes):
            names = [n for n in node.input if n]
            for attr in node.attribute:  # values a subgraph (If, Loop, Scan) reads from the outer scope
                for sub in [attr.g, *attr.graphs]:
                    for sub_node in sub.node:
                        names.extend(n for n in sub_node.input if n)
            names = list(dict.fromkeys(names))
            self.reads.append(names)
            mask = 0
            for name in names:
                mask |= self.depends.get(name, 0) | bits.get(name, 0)
                self.last_read[name] = index
            for out in node.output:
                if out:
                    self.producer[out] = index
                    self.depends[out] = mask
        shell = type(model)()
        shell.CopyFrom(model)
        for part in ("node", "input", "output", "initializer", "value_info"):
            del getattr(shell.graph, part)[:]
        self.shell = shell
        self.helper = helper
        self.state = {variant: _Stage() for variant in ("dense", "pruned")}

    def weight_changed(self, variant: str, weight: str) -> None:
        """A weight of `variant` changed: drop the kept values computed with its former value."""
        state = self.state[variant]
        bit = self.weight_bit.get(weight, 0)
        if any(self.depends.get(name, 0) & bit for name in state.values):
            self.state[variant] = _Stage()

    def advance(
        self, variant: str, targets: list[str], weights: dict[str, np.ndarray]
    ) -> list[dict[str, np.ndarray]]:
        """Per batch, the values `targets` (graph values or inputs) with `weights` fed."""
        state = self.state[variant]
        produced = [t for t in targets if t in self.producer]
        if any(self.producer[t] < state.position and t not in state.values for t in produced):
            state = self.state[variant] = _Stage()  # a value already dropped: start again
        end = max([self.producer[t] + 1 for t in produced], default=state.position)
        end = max(end, state.position)
        if end > state.position:
            self._run(state, end, set(targets), weights)
        out = []
        for index, feed in enumerate(self.batches):
            values = {}
            for t in targets:
                values[t] = state.values[t][index] if t in state.values else feed[t]
            out.append(values)
        return out

    def output_errors(
        self, perturbed: dict[str, list[np.ndarray]], weights: dict[str, np.ndarray]
    ) -> dict[str, list[float]]:
        """Per weight of `perturbed` and per value given for it, `||f - f_ref|| / ||f_ref||` of the graph's
        float outputs over every batch, where `f_ref` runs with `weights` and `f` with that one weight
        replaced by the value. The reference run advances in stages to each weight's first reader; from
        there one session of the rest of the graph runs every value, so each variant reruns only the nodes
        downstream of the weight (in the graph's order); the stages are left as they were."""
        state = _Stage()
        targets = self.scored_outputs()
        reference = self._outputs_from(state, [weights], targets)[0]
        first = {}
        for name in perturbed:
            readers = [index for index, names in enumerate(self.reads) if name in names]
            if not readers:
                raise ValueError(f"{name}: no node reads this weight")
            first[name] = readers[0]
        errors = {}
        for name in sorted(perturbed, key=first.__getitem__):
            if state.position > first[name]:
                state = _Stage()
            if first[name] > state.position:
                self._run(state, first[name], set(targets), weights)
            variants = [{**weights, name: value} for value in perturbed[name]]
            errors[name] = [_relative(out, reference) for out in self._outputs_from(state, variants, targets)]
        return errors

    def scored_outputs(self) -> list[str]:
        """The values `output_errors` compares: the graph's outputs, a `Softmax`/`LogSoftmax` output by its
        input (the logits: an error there is what moves the decision, where probabilities near 0 and 1
        hide it)."""
        scored = []
        for name in self.outputs:
            node = self.nodes[self.producer[name]] if name in self.producer else None
            if (
                node is not None
                and node.op_type in ("Softmax", "LogSoftmax")
                and node.input[0] in self.producer
            ):
                name = node.input[0]
            scored.append(name)
        return list(dict.fromkeys(scored))

    def _outputs_from(
        self, state: _Stage, variants: list[dict[str, np.ndarray]], targets: list[str]
    ) -> list[list[dict[str, np.ndarray]]]:
        """Per variant of the weights, per batch, the values `targets` run on from `state` (one session)."""
        outputs = [
            name for name in targets if name in self.producer and self.producer[name] >= state.position
        ]
        end = max((self.producer[name] + 1 for name in outputs), default=state.position)
        session = self.open_session(self._cut(state, end, outputs, variants[0])) if outputs else None
        out = []
        for weights in variants:
            values = self._values(session, state, outputs, weights) if session is not None else {}
            out.append([
                {name: np.asarray(values[name][index] if name in values
                                  else state.values[name][index] if name in state.values else feed[name])
                 for name in targets}
                for index, feed in enumerate(self.batches)
            ])  # fmt: skip
        return out

    def _run(self, state: _Stage, end: int, targets: set[str], weights: dict[str, np.ndarray]) -> None:
        made = [out for node in self.nodes[state.position : end] for out in node.output if out]
        wanted = set(self.outputs) | targets

        def live(name: str) -> bool:
            return name in wanted or self.last_read.get(name, -1) >= end

        keep_made = [name for name in made if live(name)]
        values = {name: arrays for name, arrays in state.values.items() if live(name)}
        if keep_made:
            session = self.open_session(self._cut(state, end, keep_made, weights))
            values.update(self._values(session, state, keep_made, weights))
        state.values = values
        state.position = end

    def _cut(self, state: _Stage, end: int, outputs: list[str], weights: dict[str, np.ndarray]) -> Any:
        """The model of nodes `state.position` to `end`, reading the kept values, the weights and the
        batches' inputs, giving `outputs`."""
        helper = self.helper
        nodes = self.nodes[state.position : end]
        made_set = {out for node in nodes for out in node.output if out}
        inputs: list[str] = []
        for index in range(state.position, end):
            for name in self.reads[index]:
                if name not in made_set:
                    inputs.append(name)
        inputs = list(dict.fromkeys(inputs))
        feed0 = self.batches[0]
        infos, inits = [], []
        for name in inputs:
            if name in self.initializers:
                inits.append(self.initializers[name])
                continue
            if name in state.values:
                array = state.values[name][0]
            elif name in weights:
                array = weights[name]
            elif name in feed0:
                array = feed0[name]
            else:  # read by a subgraph from its own scope, or an optional input left empty
                continue
            elem = helper.np_dtype_to_tensor_dtype(np.asarray(array).dtype)
            infos.append(helper.make_tensor_value_info(name, elem, None))
        cut = type(self.shell)()
        cut.CopyFrom(self.shell)
        cut.graph.node.extend(nodes)
        cut.graph.input.extend(infos)
        cut.graph.initializer.extend(inits)
        for name in outputs:
            cut.graph.output.append(helper.make_tensor_value_info(name, self.types.get(name) or 1, None))
        return cut

    def _values(
        self, session: Any, state: _Stage, outputs: list[str], weights: dict[str, np.ndarray]
    ) -> dict[str, list[np.ndarray]]:
        """Per name of `outputs`, its value per batch: `session` (a `_cut` from `state`) run on each batch."""
        names = {i.name for i in session.get_inputs()}
        results: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        for index, feed in enumerate(self.batches):
            full = {n: feed[n] for n in names if n in feed}
            full.update({n: weights[n] for n in names if n in weights})
            full.update({n: state.values[n][index] for n in names if n in state.values})
            for name, value in zip(outputs, self.run_session(session, full, {}), strict=True):
                results[name].append(value)
        return results


def _relative(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> float:
    """`||got - want|| / ||want||` over every batch's floating-point outputs."""
    diff = ref = 0.0
    for batch_got, batch_want in zip(got, want, strict=True):
        for key, d in batch_want.items():
            if np.issubdtype(d.dtype, np.floating):
                d64 = d.astype(np.float64)
                diff += float(np.sum((batch_got[key].astype(np.float64) - d64) ** 2))
                ref += float(np.sum(d64**2))
    return float(np.sqrt(diff / ref)) if ref > 0 else 0.0


@dataclass
class _Stage:
    """How far one variant has run (`position` nodes) and the values it keeps, per batch."""

    position: int = 0
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)


def _join_uses(rows: list[list[np.ndarray]], groups: int) -> list[np.ndarray]:
    """Per group, the rows of every node using the weight, stacked (no copy for one node)."""
    if len(rows) == 1:
        return rows[0]
    return [np.concatenate([r[g] for r in rows]) for g in range(groups)]


def _add_square_sums(sums: dict[str, np.ndarray], layer: LayerWeight, columns: list[np.ndarray]) -> None:
    """Add each group's summed squares per input column to `sums` (by GEMM name)."""
    from tightcompress.readers.matrices import gemm_name

    for g, column in enumerate(columns):
        name = gemm_name(layer.name, None if layer.groups == 1 else g)
        sums[name] = sums[name] + column if name in sums else column


def _use_rows(use: Any, x: np.ndarray, layer: LayerWeight) -> list[np.ndarray]:
    """One node's activation input -> rows per group."""
    K = layer.weight.shape[1] if layer.weight.ndim == 2 else None
    if use.kind == "conv":
        return conv_rows(x, *_conv_geometry(use, x, layer), layer.groups)
    if use.kind == "rows":
        return [np.asarray(x).reshape(-1, K)]
    if use.kind == "rows_t":
        return [np.asarray(x).T.reshape(-1, K)]
    return [np.swapaxes(np.asarray(x), -1, -2).reshape(-1, K)]  # cols: B @ x


def _use_square_sums(use: Any, x: np.ndarray, layer: LayerWeight) -> list[np.ndarray]:
    """Per group, the summed squares of each column of `_use_rows` (a conv's without im2col)."""
    if use.kind == "conv":
        return conv_square_sums(x, *_conv_geometry(use, x, layer), layer.groups)
    return [np.square(block, dtype=np.float64).sum(axis=0) for block in _use_rows(use, x, layer)]


def _conv_geometry(use: Any, x: np.ndarray, layer: LayerWeight) -> tuple[tuple[int, ...], ...]:
    """`(kernel, strides, dilations, pads)` of a Conv node on input `x`, pads as ONNX writes them."""
    attrs = use.attrs
    kernel = tuple(int(k) for k in layer.weight.shape[2:])
    rank = len(kernel)
    strides = tuple(int(s) for s in attrs.get("strides", [1] * rank))
    dilations = tuple(int(d) for d in attrs.get("dilations", [1] * rank))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(tuple(x.shape[2:]), kernel, strides, dilations, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = (0,) * (2 * rank)
    else:
        pads = tuple(int(p) for p in attrs.get("pads", [0] * (2 * rank)))
    return kernel, strides, dilations, pads


def _value_types(model: Any) -> dict[str, int]:
    """Element type of every value the graph computes (shape inference), for outputs added by name."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a best effort; unknown types default to float below
        inferred = model
    types = {}
    for info in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        types[info.name] = info.type.tensor_type.elem_type
    return types


def _cut(model: Any, outputs: list[str], types: dict[str, int], helper: Any) -> Any:
    """The part of `model` that computes `outputs` (nodes in their order, all inputs kept)."""
    producers = {out: index for index, node in enumerate(model.graph.node) for out in node.output}
    needed, todo = set(), list(outputs)
    while todo:
        name = todo.pop()
        index = producers.get(name)
        if index is None or index in needed:
            continue
        needed.add(index)
        node = model.graph.node[index]
        todo.extend(node.input)
        for attr in node.attribute:  # names a subgraph (If, Loop, Scan) reads from the outer scope
            for sub in [attr.g, *attr.graphs]:
                for sub_node in sub.node:
                    todo.extend(sub_node.input)
    cut = type(model)()
    cut.CopyFrom(model)
    del cut.graph.node[:]
    cut.graph.node.extend(node for index, node in enumerate(model.graph.node) if index in needed)
    existing = {o.name: o for o in model.graph.output}
    del cut.graph.output[:]
    for name in outputs:
        if name in existing:
            cut.graph.output.append(existing[name])
        else:
            cut.graph.output.append(helper.make_tensor_value_info(name, types.get(name) or 1, None))
    return cut


def graph_inputs(model: Any) -> dict[str, tuple]:
    """The model's real inputs (not initializer defaults) and their shapes (`None` or a name where free)."""
    init = {t.name for t in model.graph.initializer}
    shapes = {}
    for info in model.graph.input:
        if info.name in init:
            continue
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims
        )
    return shapes


def _free_batch(shape: tuple) -> bool:
    return bool(shape) and not isinstance(shape[0], int)


def _input_dtype(model: Any, name: str) -> Any:
    from onnx import helper

    for info in model.graph.input:
        if info.name == name:
            return helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
    return np.float32


def describe_inputs(shapes: Mapping[str, tuple]) -> str:
    """`x of shape (n, 4, 10), ...` as the model declares its inputs."""
    return ", ".join(
        f"{name} of shape ({', '.join(str(d) if d is not None else '?' for d in shape)})"
        for name, shape in shapes.items()
    )


def check_onnx_calibration(model: Any, calibration: Mapping[str, Any]) -> int:
    """The number of samples, or one line naming the expected inputs and shapes."""
    expected = graph_inputs(model)
    want = f"expected {describe_inputs(expected)}, first axis the samples"
    if not isinstance(calibration, Mapping):
        raise TightCompressError(f"calibration must map input names to arrays; {want}")
    names = set(calibration)
    if names != set(expected):
        got = ", ".join(sorted(names)) or "nothing"
        raise TightCompressError(f"calibration: got inputs {got}; {want}")
    samples = None
    for name, shape in expected.items():
        array = np.asarray(calibration[name])
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TightCompressError(f"calibration: input {name} is not numeric ({array.dtype}); {want}")
        if array.ndim == len(shape) + 1:
            sample_shape = array.shape[1:]
        elif array.ndim == len(shape):
            sample_shape = array.shape[1:]
            shape = shape[1:]
        else:
            raise TightCompressError(f"calibration: input {name} has shape {array.shape}; {want}")
        if any(isinstance(d, int) and d > 0 and d != s for d, s in zip(shape, sample_shape, strict=True)):
            raise TightCompressError(f"calibration: input {name} has shape {array.shape}; {want}")
        if samples is not None and array.shape[0] != samples:
            raise TightCompressError(
                f"calibration: inputs have different sample counts ({samples} and {array.shape[0]}); {want}"
            )
        samples = int(array.shape[0])
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise TightCompressError(f"calibration: input {name} holds NaN or infinite values")
    if not samples:
        raise TightCompressError(f"calibration: no samples; {want}")
    return samples


def read_calibration_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of a calibration `.npz` (no pickles), or a one-line error."""
    import os
    import zipfile

    if not os.path.isfile(path):
        from tightcompress.errors import missing_file

        raise missing_file("calibration file", path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TightCompressError(
            f"{path}: not a readable .npz of calibration inputs ({type(exc).__name__})"
        ) from None


# ----------------------------------------------------------------------------------------- PyTorch
class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted layer input is captured."""


class TorchCalibration:
    """A PyTorch model pruned in place; a deep copy keeps the dense weights. Calibration is a tensor
    (first axis: samples, fed in batches) or a DataLoader (its batches, the first element of a tuple)."""

    def __init__(self, model: Any, calibration: Any, found: list[tuple[str, Any, LayerWeight]]) -> None:
        import copy

        import torch

        self.model = model
        self.dense = copy.deepcopy(model)
        self.found = {fqn: (module, layer) for fqn, module, layer in found}
        self.dense_modules = dict(self.dense.named_modules())
        if isinstance(calibration, torch.Tensor):
            if calibration.ndim < 1 or calibration.shape[0] == 0:
                raise TightCompressError("calibration: the tensor holds no samples (first axis)")
            self.batches = list(torch.split(calibration, SAMPLES_PER_RUN))
        elif isinstance(calibration, torch.utils.data.DataLoader):
            self.batches = [b[0] if isinstance(b, list | tuple) else b for b in calibration]
            if not self.batches:
                raise TightCompressError("calibration: the DataLoader yields no batch")
        else:
            raise TightCompressError(
                f"calibration must be a torch.Tensor or a DataLoader, got {type(calibration).__name__}"
            )
        for batch in self.batches:
            if not isinstance(batch, torch.Tensor):
                raise TightCompressError(f"calibration: a batch is a {type(batch).__name__}, not a tensor")
            if batch.is_floating_point() and not bool(torch.isfinite(batch).all()):
                raise TightCompressError("calibration: the inputs hold NaN or infinite values")
        self.samples = int(sum(len(b) for b in self.batches))
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def layers(self) -> list[CalibrationLayer]:
        return [CalibrationLayer(fqn, layer) for fqn, (_, layer) in self.found.items()]

    def set_weight(self, name: str, weight: np.ndarray) -> None:
        import torch

        module, _ = self.found[name]
        target = module.weight_orig if hasattr(module, "weight_orig") else module.weight
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)).to(target.dtype))
            if hasattr(module, "weight_mask"):
                module.weight_mask.copy_((target != 0).to(module.weight_mask.dtype))

    def _capture(self, model: Any, module: Any, batch: Any) -> np.ndarray:
        import torch

        captured = []

        def hook(_module: Any, args: tuple) -> None:
            captured.append(args[0].detach().float().cpu())
            raise _Stop

        handle = module.register_forward_pre_hook(hook)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(batch.to(self.device))
        except _Stop:
            pass
        finally:
            handle.remove()
            model.train(was_training)
        if not captured:
            raise TightCompressError("calibration: the layer was not called in the model's forward pass")
        return captured[0].numpy()

    def input_rows(self, name: str) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
        module, layer = self.found[name]
        dense_module = self.dense_modules[name]
        for batch in self.batches:
            x_p = self._capture(self.model, module, batch)
            x_d = self._capture(self.dense, dense_module, batch)
            yield _torch_rows(module, x_p, layer), _torch_rows(module, x_d, layer)

    def dense_input_norms(self) -> dict[str, np.ndarray]:
        """`||x_i||` of every GEMM's inputs in the dense model (one pass), by GEMM name."""
        import torch

        sums: dict[str, np.ndarray] = {}
        handles = []
        for fqn, (module, layer) in self.found.items():
            if layer.depthwise:  # left dense: no saliency needed
                continue

            def hook(_module: Any, args: tuple, module=module, layer=layer) -> None:
                x = args[0].detach().float().cpu().numpy()
                blocks = _torch_rows(module, x, layer)
                check_finite(blocks, layer.name, "dense")
                _add_square_sums(sums, layer, [np.square(b, dtype=np.float64).sum(axis=0) for b in blocks])

            handles.append(self.dense_modules[fqn].register_forward_pre_hook(hook))
        self.dense.eval()
        try:
            with torch.no_grad():
                for batch in self.batches:
                    self.dense(batch.to(self.device))
        finally:
            for handle in handles:
                handle.remove()
        return {name: np.sqrt(total) for name, total in sums.items()}

    def output_error(self) -> float:
        import torch

        diff = ref = 0.0
        for model in (self.model, self.dense):
            model.eval()
        with torch.no_grad():
            for batch in self.batches:
                p = self.model(batch.to(self.device))
                d = self.dense(batch.to(self.device))
                if isinstance(p, torch.Tensor) and p.is_floating_point():
                    diff += float(((p.double() - d.double()) ** 2).sum())
                    ref += float((d.double() ** 2).sum())
        return float(np.sqrt(diff / ref)) if ref > 0 else 0.0

    def output_errors(self, weights: dict[str, list[np.ndarray]], samples: int) -> dict[str, list[float]]:
        """`CalibratedModel.output_errors`: the dense copy run on the first batches (at least `samples`
        samples) once per layer, that layer's weight swapped in and then restored."""
        import torch

        batches, taken = [], 0
        for batch in self.batches:
            if taken >= samples:
                break
            batches.append(batch[: samples - taken].to(self.device))
            taken += len(batches[-1])
        self.dense.eval()
        with torch.no_grad():
            reference = [_float_outputs(self.dense(batch)) for batch in batches]
            errors = {}
            for name, values in weights.items():
                module = self.dense_modules[name]
                target = module.weight_orig if hasattr(module, "weight_orig") else module.weight
                saved = target.detach().clone()
                errors[name] = []
                try:
                    for weight in values:
                        target.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)).to(target.dtype))
                        diff = ref = 0.0
                        for batch, want in zip(batches, reference, strict=True):
                            for got, d in zip(_float_outputs(self.dense(batch)), want, strict=True):
                                diff += float(((got - d) ** 2).sum())
                                ref += float((d**2).sum())
                        errors[name].append(float(np.sqrt(diff / ref)) if ref > 0 else 0.0)
                finally:
                    target.copy_(saved)
        return errors


def _float_outputs(output: Any) -> list[Any]:
    """The floating-point tensors of a model's output (a tensor, or tuples, lists and dicts of them), as
    float64."""
    import torch

    if isinstance(output, torch.Tensor):
        return [output.double()] if output.is_floating_point() else []
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, list | tuple):
        return [t for item in output for t in _float_outputs(item)]
    return []


def _torch_rows(module: Any, x: np.ndarray, layer: LayerWeight) -> list[np.ndarray]:
    """A torch layer's input -> rows per group (Linear: last axis; Conv1d/2d: im2col)."""
    from torch import nn

    if isinstance(module, nn.Linear):
        return [x.reshape(-1, layer.weight.shape[1])]
    kernel = tuple(int(k) for k in module.kernel_size)
    rank = len(kernel)
    strides, dilations = tuple(module.stride), tuple(module.dilation)
    if module.padding_mode != "zeros":
        import torch
        import torch.nn.functional as F

        x = F.pad(
            torch.from_numpy(x), module._reversed_padding_repeated_twice, mode=module.padding_mode
        ).numpy()
        pads = (0,) * (2 * rank)
    elif module.padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilations, strict=True)]
        pads = (*(t // 2 for t in totals), *(t - t // 2 for t in totals))
    elif module.padding == "valid":
        pads = (0,) * (2 * rank)
    else:
        pads = (*module.padding, *module.padding)
    return conv_rows(x, kernel, strides, dilations, pads, layer.groups)
