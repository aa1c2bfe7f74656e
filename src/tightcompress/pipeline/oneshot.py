"""One-shot pruning of a whole pretrained model (no fine-tuning), calibrated or not, for every method alike.

    report = prune_onnx("model.onnx", "pruned.onnx", method="tight", rate=2.0, calibration={"x": X})
    report = prune_module(model, method="nm", rate=2.0, calibration=loader)

Per layer, in graph order (the one rule for every method):
1. With calibration, the layer's inputs on the calibration samples, in the model pruned so far (`X_p`) and
   in the dense model (`X_d`), as Gram matrices (`prune.reconstruct.GramStats`).
2. What is kept: the layer's saliency `|w_ij| * ||x_i||` (Wanda; `|w|` without calibration) is packed by the
   method as if it were the weights, so every method's search (tight's and the permuted N:M's permutation
   search, column combining's merges, N:M's choice per group) maximises the same saliency. The kept
   positions are the packed saliency's.
3. Reconstruction (with calibration): the kept weights minimise `||X_p W' - X_d W||^2` (dampened least
   squares, `prune.reconstruct.reconstruct`), and the new weights go into the pruned model before the next
   layer's inputs are taken.
4. The packed layer holds the new kept values in the same arrangement (`pipeline.fit.repack`).

`rate` -> per-layer options, one allocation rule for every method: the per-layer choice reaching
`sum(K*N) / sum(slots) >= rate` with the least summed dropped fraction of each layer's saliency (of `|w|`
without calibration, as in `compress`), every layer counting alike (`pipeline.fit.choose_options`).
- The formats: each layer's candidate options are packed (`plan_rate_sampled`) and chosen among. When the
  coarse candidates overshoot the rate (a layer has no option between dense and 2x, and one large layer
  dominates the model), the options next to the choice are refined (heights, or column combining's gamma,
  bisected) and the choice made again, until the planned rate is within `RATE_TOLERANCE` of the target.
- `unstructured` (the reference): the same objective over its own options, any number of kept weights per
  layer. The greedy of `choose_options` on those options is exact (each layer's dropped fraction is convex
  in the weights it drops) and amounts to keeping the weights of largest `s_ij / sum(s of the layer)` over
  the whole model (`plan_unstructured`), so the rate is met exactly.
- `unstructured-uniform` (a second reference, the rule of Wanda and SparseGPT): the `1/rate` most salient
  weights of every layer.
`allocation="uniform"` instead gives every layer the rate itself (Wanda's and SparseGPT's rule): each
layer takes its least lossy option at `>= rate` (its fewest slots when none reaches it), and unstructured
keeps the `1/rate` most salient weights of every layer. Neither rule wins everywhere: on PP-OCRv4's
recognizer the planned one packs the 120 x 6625 classifier 8.5x, leaves 22 of 33 layers dense and reads
a quarter of the lines the uniform one reads (BENCHMARKS.md); for unstructured on the digits MLP and on
ddddocr it is ahead.
`allocation="sensitivity"` (the default of calibrated runs) weighs each layer by
how its error reaches the model output (`output_curves`): each layer alone is pruned in the dense model at
`sensitivity_rates` (R, 2R, 4R), the squared relative error of the model's outputs (of the logits when the
graph ends in Softmax) on `SENSITIVITY_SAMPLES` calibration samples gives a convex curve of that layer's
dropped saliency fraction, and the planner minimises the summed curves instead of the summed fractions. On
PP-OCRv4 it keeps the classifier near 2x and reads more lines than either other rule (nm: 80.25 % against
74.5 % uniform and 17.75 % planned; it ties the planned rule on the digits CNN and ddddocr unstructured).
Without calibration there is nothing to measure on: the run is planned, the report says so (`allocation`,
and `notes.messages` when sensitivity was asked for).
The report's `allocation` says which rule a run used ("planned", "uniform", "sensitivity" or "fixed" for one
config).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from tightcompress.api import PackConfig, check_field_types, pack
from tightcompress.errors import TightCompressError
from tightcompress.format.dtypes import store_dtype
from tightcompress.format.packed import PackedMatrix
from tightcompress.pipeline.config import PERMUTED_NM
from tightcompress.prune.reconstruct import (
    DAMPING,
    GramStats,
    relative_error,
    saliency,
    validated_reconstruct,
)
from tightcompress.prune.subword_pack import SUBWORD_METHOD
from tightcompress.readers.matrices import (
    LayerWeight,
    gemm_matrices,
    gemm_name,
    weight_from_groups,
    weight_source,
)

log = logging.getLogger("tightcompress.oneshot")

UNSTRUCTURED = "unstructured"
UNSTRUCTURED_UNIFORM = "unstructured-uniform"
UNSTRUCTURED_METHODS = (UNSTRUCTURED, UNSTRUCTURED_UNIFORM)  # no packed format: the pruned weights only
SENSITIVITY = "sensitivity"
ALLOCATIONS = ("planned", "uniform", SENSITIVITY)  # how a whole-model rate is shared out between the layers
# calibration samples on which each layer's output gain is measured (the sensitivity allocation)
SENSITIVITY_SAMPLES = 8
ONE_SHOT_METHODS = ("tight", SUBWORD_METHOD, "nm", PERMUTED_NM, "column-combining", *UNSTRUCTURED_METHODS)
PLAN_COLUMNS = 512  # columns of a wide layer on which its candidate options are evaluated
# The planned rate may exceed the target by this fraction before the options around the choice are refined
# (and the measured rate by twice that before the run warns); at most REFINE_ROUNDS refinements.
RATE_TOLERANCE = 0.01
REFINE_ROUNDS = 6
# A candidate is skipped by the uniform rule's bound only when its floor exceeds the best dropped fraction by
# more than this relative margin (far above the rounding of the two sums), so a tie is always searched.
FLOOR_MARGIN = 1e-9


@dataclass(frozen=True)
class OneShotOptions:
    """The settings of a one-shot run, validated on construction (an error names the parameter)."""

    method: str
    rate: float | None = None
    seed: int = 0
    tile: int = 32
    damping: float = DAMPING
    # annealing moves when the candidate options are evaluated, and for the chosen option (the pipeline's
    # 30k / 300k cost 25 min on a 22-layer model on a busy 2-core machine; 5k moves drop within 0.1 % of
    # the |w| 30k moves drop on a 144 x 32 layer; PP-OCRv4 rec at rate 2 with 128 calibration samples:
    # 1.5k moves give the same 33 options, output error and exact lines as 5k, at 25 instead of 68 CPU s)
    plan_iterations: int | None = 1_500
    final_iterations: int | None = 50_000
    allocation: str | None = None  # None: sensitivity when calibrated, else planned (`default_allocation`)

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.method not in ONE_SHOT_METHODS:
            raise TightCompressError(
                f"unknown method {self.method!r}; choose one of {', '.join(ONE_SHOT_METHODS)}"
            )
        if self.allocation is not None and self.allocation not in ALLOCATIONS:
            raise TightCompressError(
                f"unknown allocation {self.allocation!r}; choose one of {', '.join(ALLOCATIONS)}"
            )
        if self.rate is not None and not self.rate >= 1.0:
            raise TightCompressError(f"rate must be a number >= 1, got {self.rate!r}")
        if not 0.0 <= self.damping <= 1.0:
            raise TightCompressError(f"damping must be in [0, 1], got {self.damping!r}")
        if not 0 <= self.seed <= 2**32 - 1:
            raise TightCompressError(f"seed must be an integer in [0, 2**32 - 1], got {self.seed!r}")


@dataclass
class OneShotResult:
    """What a one-shot run gives: the report, the packed layers (GEMM names) and each layer's new weight
    (PyTorch layout, by layer name)."""

    report: dict[str, Any]
    packed: dict[str, PackedMatrix]
    weights: dict[str, np.ndarray]


# ------------------------------------------------------------------------------------------ public API
def prune_onnx(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    method: str,
    rate: float | None,
    calibration: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    config: PackConfig | None = None,
    allocation: str | None = None,
) -> dict:
    """Prune every packable layer of the ONNX model one-shot at `rate`, write the pruned model (same graph,
    names and dtypes; each packed weight replaced by its kept values) to `out_path`; return the report.

    `calibration` maps the model's input names to arrays whose first axis is the samples; without it,
    what is kept is chosen by `|w|` and the kept weights are not changed. `config` (with `rate=None`) packs
    every layer with that one `PackConfig` instead of planning per-layer options for `rate`."""
    return prune_onnx_packed(
        onnx_path,
        out_path,
        method=method,
        rate=rate,
        calibration=calibration,
        seed=seed,
        config=config,
        allocation=allocation,
    ).report


def prune_onnx_packed(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    method: str,
    rate: float | None,
    calibration: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    config: PackConfig | None = None,
    allocation: str | None = None,
) -> OneShotResult:
    """`prune_onnx`, returning the whole result: the report, the packed matrices and the new weights (the
    frontier simulates the packed matrices for its hardware figures)."""
    from tightcompress.readers.onnx import read_onnx

    options = OneShotOptions(method=method, rate=rate, seed=seed, allocation=allocation)
    graph = read_onnx(onnx_path)
    result = one_shot_onnx(graph, options, calibration=calibration, config=config)
    write_pruned_onnx(graph, result.weights, out_path)
    return result


def prune_module(
    model: Any,
    *,
    method: str,
    rate: float | None,
    calibration: Any = None,
    seed: int = 0,
    config: PackConfig | None = None,
    allocation: str | None = None,
) -> dict:
    """The same for a PyTorch model, in place: its `nn.Linear`, `nn.Conv1d` and `nn.Conv2d` layers keep their
    class and hold the kept values (zeros elsewhere). `calibration`: a tensor (first axis samples) or a
    DataLoader of the model's inputs; `config` as for `prune_onnx`."""
    return prune_module_packed(
        model,
        method=method,
        rate=rate,
        calibration=calibration,
        seed=seed,
        config=config,
        allocation=allocation,
    ).report


def prune_module_packed(
    model: Any,
    *,
    method: str,
    rate: float | None,
    calibration: Any = None,
    seed: int = 0,
    config: PackConfig | None = None,
    allocation: str | None = None,
) -> OneShotResult:
    """`prune_module`, returning the whole result (report, packed matrices, new weights)."""
    from torch import nn

    from tightcompress.readers import module_layers

    if not isinstance(model, nn.Module):
        raise TightCompressError(f"prune_module takes an nn.Module, got {type(model).__name__}")
    options = OneShotOptions(method=method, rate=rate, seed=seed, allocation=allocation)
    found = module_layers(model)
    if not found:
        raise TightCompressError(f"{type(model).__name__}: no conv or linear layer to prune")
    layers = [lw for _, _, lw in found]
    runner = None
    if calibration is not None:
        from tightcompress.pipeline.calibration import TorchCalibration

        runner = TorchCalibration(model, calibration, found)
    result = one_shot(layers, runner, options, config=config, source=type(model).__name__)
    if runner is None:
        import torch

        modules = {fqn: module for fqn, module, _ in found}
        for name, weight in result.weights.items():
            module = modules[name]
            target = module.weight_orig if hasattr(module, "weight_orig") else module.weight
            with torch.no_grad():
                target.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)).to(target.dtype))
    return result


# --------------------------------------------------------------------------------------------- drivers
def one_shot_onnx(
    graph: Any,
    options: OneShotOptions,
    *,
    calibration: Mapping[str, np.ndarray] | None,
    config: PackConfig | None = None,
    quiet: bool = True,
) -> OneShotResult:
    """`one_shot` on a read ONNX graph (`readers.onnx.read_onnx`), calibrated by onnxruntime when given."""
    runner = None
    if calibration is not None:
        from tightcompress.pipeline.calibration import OnnxCalibration

        runner = OnnxCalibration(graph, calibration)
    result = one_shot(
        [w.layer for w in graph.weights], runner, options, config=config, source=graph.path, quiet=quiet
    )
    for packed in result.packed.values():
        packed.info["source"]["onnx_sha256"] = graph.sha256
    skipped = result.report.setdefault("notes", {}).setdefault("skipped_layers", [])
    skipped[:0] = graph.skipped
    return result


def write_pruned_onnx(graph: Any, weights: dict[str, np.ndarray], out_path: str | os.PathLike[str]) -> None:
    """Write `graph`'s model with the new weights, atomically."""
    import onnx

    from tightcompress.readers.onnx import write_onnx_weights
    from tightcompress.utils.atomic import atomic_path

    model = write_onnx_weights(graph.model, weights, graph)
    with atomic_path(out_path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))


def one_shot(
    layers: list[LayerWeight],
    runner: Any,
    options: OneShotOptions,
    *,
    config: PackConfig | None = None,
    source: str = "model",
    quiet: bool = True,
) -> OneShotResult:
    """Prune `layers` one-shot in their order (see the module docstring). `runner` is a
    `pipeline.calibration.CalibratedModel` (None: no calibration). `config` fixes one packing config for
    every layer instead of planning per-layer options for `options.rate`."""
    start = time.perf_counter()
    if options.allocation is None:
        options = replace(
            options, allocation=default_allocation(runner is not None and config is None, options.method)
        )
    matrices, skipped = gemm_matrices(layers, source=source)
    if config is None and options.rate is None:
        raise TightCompressError("give a rate or a packing config")
    if config is not None:
        named = PERMUTED_NM if config.permute else config.method
        if options.method == SUBWORD_METHOD and named in ("tight", "dense"):
            named = SUBWORD_METHOD  # a subword layer is packed by tight (G, h count subword rows)
        if named != options.method:
            raise TightCompressError(f"method {options.method!r} but the packing config is {named!r}")
    norms = runner.dense_input_norms() if runner is not None and config is None else None
    curves = None
    messages = []
    if config is None and _allocation(options) == SENSITIVITY:
        if runner is None:
            messages.append(
                "the sensitivity allocation measures each layer's effect on the model output on calibration "
                "samples; without --calibration the planned rule was used"
            )
        else:
            curves = output_curves(runner, matrices, norms, float(options.rate))  # type: ignore[arg-type]
    plan = _plan(matrices, options, config, norms, quiet=quiet, curves=curves)
    packed: dict[str, PackedMatrix] = {}
    weights: dict[str, np.ndarray] = {}
    layer_reports: list[dict[str, Any]] = []
    for layer in tqdm(
        layers, desc=f"one-shot {options.method}", unit="layer", disable=quiet, file=sys.stderr
    ):
        names = [gemm_name(layer.name, None if layer.groups == 1 else g) for g in range(layer.groups)]
        if not all(name in matrices for name in names):
            continue  # depthwise: left dense, in `skipped`
        stats = _layer_stats(runner, layer, names, matrices) if runner is not None else [None] * len(names)
        parts = []
        for name, stat in zip(names, stats, strict=True):
            gemm = matrices[name]
            layer_start = time.perf_counter()
            kept, pm, facts = _prune_gemm(gemm.matrix, stat, plan[name], options, name)
            if curves is not None:
                facts["estimated_output_error"] = math.sqrt(curves[name](facts["dropped_saliency_fraction"]))
            parts.append(kept)
            if pm is not None:
                if pm.method != SUBWORD_METHOD:  # a subword layer's values are its int8 4-bit subwords
                    store_dtype(pm, gemm.dtype)
                pm.info["source"] = weight_source(
                    layer.name, layer.weight.shape, layer.groups, gemm.group_index
                )
                pm.info["seconds"] = time.perf_counter() - layer_start
                packed[name] = pm
            layer_reports.append(
                _layer_report(
                    name,
                    gemm.matrix,
                    kept,
                    pm,
                    facts,
                    time.perf_counter() - layer_start,
                    method=options.method,
                )
            )
        del stats, stat  # freed before the next layer's sums are taken (a K x K float64 matrix or more)
        new_weight = weight_from_groups([p.astype(np.float32) for p in parts], layer.weight.shape)
        weights[layer.name] = new_weight
        if runner is not None:
            runner.set_weight(layer.name, new_weight)
    from tightcompress.report import build_report

    report = build_report(layer_reports, config=_config_dict(options, config))
    report["method"] = options.method
    if options.method == SUBWORD_METHOD:
        _subword_totals(report, packed)
    report["compression_rate"] = report["total"]["compression_rate"]
    report["target_rate"] = options.rate if config is None else None
    allocation = _allocation(options)
    if allocation == SENSITIVITY and curves is None:
        allocation = "planned"  # no calibration samples to measure the curves on
    report["allocation"] = "fixed" if config is not None else allocation
    report["calibrated"] = runner is not None
    report["calibration_samples"] = getattr(runner, "samples", None) if runner is not None else None
    report["relative_output_error"] = runner.output_error() if runner is not None else None
    report["seconds"] = time.perf_counter() - start
    report["notes"] = {"skipped_layers": skipped}
    missed = rate_note(report["compression_rate"], report["target_rate"])
    if missed is not None:
        messages.append(missed)
    for message in messages:
        warnings.warn(message, stacklevel=2)
    if messages:
        report["notes"]["messages"] = messages
    return OneShotResult(report, packed, weights)


def default_allocation(calibrated: bool, method: str) -> str:
    """The allocation rule when none is asked: `sensitivity` with calibration samples, for every method
    (on PP-OCRv4 at 2x it read the most lines for tight, nm, nm-permuted, unstructured and tight-subword,
    dense-level lines on ddddocr, and made the planned rule's choice on the digits CNN; BENCHMARKS.md),
    `planned` without (nothing to measure the layers' output errors on). For tight-subword the curves are
    of weight saliency while its options drop subword saliency, a proxy; it still read 86.75 % against the
    planned rule's 80.5 %."""
    del method  # one rule for every method: the comparison between methods stays fair
    return SENSITIVITY if calibrated else "planned"


def rate_note(measured: float, target: float | None) -> str | None:
    """The line saying that the measured rate is not the target's (None when it is, within twice
    `RATE_TOLERANCE` above, or when no rate was asked): tables compare methods at the same rate."""
    if target is None or target * (1 - 1e-9) <= measured <= target * (1 + 2 * RATE_TOLERANCE):
        return None
    why = (
        "the candidate options allow no allocation closer to it"
        if measured > target
        else "the rate planned on sampled columns was not met in full"
    )
    return f"rate {measured:.3f}x measured for the {target:g}x asked: {why} (compare at measured rates)"


# -------------------------------------------------------------------------------------------- helpers
def _config_dict(options: OneShotOptions, config: PackConfig | None) -> dict[str, Any]:
    out: dict[str, Any] = {"method": options.method, "one_shot": vars(options).copy()}
    if config is not None:
        out.update(vars(config))
    return out


def _layer_stats(
    runner: Any, layer: LayerWeight, names: list[str], matrices: dict[str, Any]
) -> list[GramStats]:
    """The Gram statistics of each of the layer's GEMMs over the calibration samples."""
    from tightcompress.pipeline.calibration import check_finite

    stats = None
    for rows_p, rows_d in runner.input_rows(layer.name):
        check_finite(rows_p, layer.name, "pruned")
        check_finite(rows_d, layer.name, "dense")
        if stats is None:  # each GEMM's sums are taken against its dense weights (the target X_d W)
            stats = [GramStats(matrices[name].matrix) for name in names]
        for stat, p, d in zip(stats, rows_p, rows_d, strict=True):
            stat.add(p, d)
    if stats is None:
        raise TightCompressError("calibration: no samples")
    for name, stat in zip(names, stats, strict=True):
        if stat.rows < stat.K:
            warnings.warn(
                f"{name}: {stat.rows} calibration rows for {stat.K} inputs; the least-squares solve is "
                f"underdetermined and relies on its damping ({DAMPING:.0%} of the mean input energy), so its "
                "error on the calibration samples understates the error on new inputs: give more samples",
                stacklevel=2,
            )
    return stats


def _plan(
    matrices: dict[str, Any],
    options: OneShotOptions,
    config: PackConfig | None,
    norms: dict[str, np.ndarray] | None,
    *,
    quiet: bool,
    curves: dict[str, ErrorCurve] | None = None,
) -> dict[str, PackConfig | int]:
    """Per GEMM: its packing config (or, for the unstructured methods, how many weights it keeps).
    `curves` (the sensitivity allocation, by GEMM): the cost of each layer's dropped fraction."""
    if options.method in UNSTRUCTURED_METHODS:
        if config is not None:
            raise TightCompressError(f"{options.method} takes a rate, not a packing config")
        rate = float(options.rate)  # type: ignore[arg-type]
        if _allocation(options) == "uniform":
            return {name: max(1, math.floor(g.matrix.size / rate + 1e-9)) for name, g in matrices.items()}
        return plan_unstructured(_planning_saliency(matrices, norms), rate, curves=curves)
    if config is not None:
        return {name: config for name in matrices}
    if options.method == SUBWORD_METHOD:  # 2K x N subword saliencies packed by tight: sizes 2KN, bit rate
        salient, method = _subword_planning_matrices(matrices, norms), "tight"
    else:
        salient, method = _planning_saliency(matrices, norms), options.method
    chosen = plan_rate_sampled(
        salient, method, float(options.rate), tile=options.tile, seed=options.seed,
        plan_iterations=options.plan_iterations, quiet=quiet, uniform=options.allocation == "uniform",
        curves=curves,
    )  # fmt: skip
    return {name: option.config for name, option in chosen.items()}


def _allocation(options: OneShotOptions) -> str:
    """The rule a rate is shared out by: `unstructured-uniform` is unstructured under the uniform rule."""
    return "uniform" if options.method == UNSTRUCTURED_UNIFORM else options.allocation


def _planning_saliency(
    matrices: dict[str, Any], norms: dict[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Each GEMM's saliency for planning: `|w_ij| * ||x_i||` on the dense model's inputs, else `|w|`."""
    salient = {}
    for name, gemm in matrices.items():
        magnitude = np.abs(gemm.matrix.astype(np.float32))
        if norms is not None and name in norms:
            stat = GramStats.__new__(GramStats)
            stat.H = np.diag(norms[name] ** 2)
            salient[name] = saliency(gemm.matrix, stat)
        else:
            salient[name] = magnitude
        if not np.any(salient[name]):
            salient[name] = magnitude
    return salient


@dataclass(frozen=True)
class ErrorCurve:
    """One layer's estimated share of the squared relative model output error as a function of the fraction
    of its saliency dropped: the lower convex hull of measured points `(dropped fraction, error^2)` with
    `(0, 0)`, linear between them, the last slope beyond. Convex, so the greedy choices stay exact."""

    fractions: tuple[float, ...]
    errors: tuple[float, ...]

    @classmethod
    def hull(cls, points: list[tuple[float, float]]) -> ErrorCurve:
        """The curve through the lower convex hull of `points` and the origin (non-decreasing)."""
        ordered = sorted({(0.0, 0.0), *((max(d, 0.0), max(e, 0.0)) for d, e in points)})
        hull: list[tuple[float, float]] = []
        for point in ordered:
            while len(hull) >= 2:
                (x1, y1), (x2, y2) = hull[-2], hull[-1]
                if (y2 - y1) * (point[0] - x1) >= (point[1] - y1) * (x2 - x1):  # hull[-1] is not below
                    hull.pop()
                else:
                    break
            if hull and point[0] == hull[-1][0]:
                continue
            hull.append(point)
        for index in range(1, len(hull)):  # an error cannot fall as more is dropped
            hull[index] = (hull[index][0], max(hull[index][1], hull[index - 1][1]))
        return cls(tuple(d for d, _ in hull), tuple(e for _, e in hull))

    def __call__(self, fraction: float | np.ndarray) -> Any:
        d, e = np.asarray(self.fractions), np.asarray(self.errors)
        value = np.interp(fraction, d, e)
        if len(d) >= 2:
            slope = (e[-1] - e[-2]) / (d[-1] - d[-2])
            value = np.where(
                np.asarray(fraction) > d[-1], e[-1] + slope * (np.asarray(fraction) - d[-1]), value
            )
        return value if np.ndim(value) else float(value)


def sensitivity_rates(rate: float) -> tuple[float, ...]:
    """The per-layer rates at which `output_curves` measures each layer: around the target and beyond it,
    where the planned rule puts the layers it prunes hardest (PP-OCRv4's classifier at 8.5x for 2x)."""
    return (rate, 2 * rate, 4 * rate)


def output_curves(
    runner: Any,
    matrices: dict[str, Any],
    norms: dict[str, np.ndarray] | None,
    rate: float,
    *,
    samples: int = SENSITIVITY_SAMPLES,
) -> dict[str, ErrorCurve]:
    """Per GEMM, what dropping its saliency costs at the model output: the sensitivity allocation's
    objective. Each layer alone is pruned in the dense model to `1/r` of its weights, its most salient
    kept (Wanda's per-layer rule), at each rate `r` of `sensitivity_rates(rate)`; the squared relative
    output error on the first `samples` calibration samples against the dropped fraction of the layer's
    saliency gives its `ErrorCurve`. Planning on the summed curves estimates the squared output error of
    all layers' errors together (taken as independent) instead of counting every layer's dropped fraction
    alike: a layer whose error the network absorbs may drop more, one whose error reaches the outputs
    unattenuated less. The GEMMs of a grouped conv share their layer's curve (each counts `1/groups` of it,
    at the mean fraction). ONNX runs rerun only the nodes downstream of each layer (`StagedGraph`)."""
    start = time.perf_counter()
    salient = _planning_saliency(matrices, norms)
    by_layer: dict[str, list[str]] = {}
    for name, gemm in matrices.items():
        by_layer.setdefault(gemm.layer.name, []).append(name)
    rates = sensitivity_rates(rate)
    perturbed: dict[str, list[np.ndarray]] = {}
    dropped: dict[str, list[float]] = {}
    for layer_name, names in by_layer.items():
        perturbed[layer_name], dropped[layer_name] = [], []
        for r in rates:
            parts, fraction = [], 0.0
            for name in names:
                W = np.asarray(matrices[name].matrix, dtype=np.float32)
                S = salient[name]
                keep = max(1, math.floor(S.size / r + 1e-9))
                mask = np.zeros(S.size, dtype=bool)
                mask[np.argsort(-S, axis=None, kind="stable")[:keep]] = True
                mask = mask.reshape(S.shape)
                parts.append(np.where(mask, W, 0.0).astype(np.float32))
                total = float(S.sum())
                fraction += float(S[~mask].sum()) / total if total > 0 else 0.0
            perturbed[layer_name].append(weight_from_groups(parts, matrices[names[0]].layer.weight.shape))
            dropped[layer_name].append(fraction / len(names))
    errors = runner.output_errors(perturbed, samples)
    curves = {}
    for layer_name, names in by_layer.items():
        points = [
            (d, e**2 / len(names)) for d, e in zip(dropped[layer_name], errors[layer_name], strict=True)
        ]
        curve = ErrorCurve.hull(points)
        for name in names:
            curves[name] = curve
    log.info("output error curves of %d layers in %.1f s", len(by_layer), time.perf_counter() - start)
    return curves


def plan_unstructured(
    salient: dict[str, np.ndarray], rate: float, *, curves: dict[str, ErrorCurve] | None = None
) -> dict[str, int]:
    """How many weights each layer keeps so that the whole model keeps `floor(sum(K*N) / rate)`, with the
    least summed dropped fraction of each layer's saliency (every layer counting alike): the objective
    `pipeline.fit.choose_options` minimises for the formats, over unstructured's own options (any count).

    Dropping a weight costs `s_ij / sum(s of its layer)`; each layer's cost is convex in the weights it
    drops (the least salient go first), so the greedy of `choose_options` on options at every count takes
    single weights in increasing cost over the model, and its result is this global threshold (exact; a
    test checks the two agree). Every layer keeps at least its most salient weight. `curves` (by layer,
    the sensitivity allocation): a weight's cost is what dropping it adds to the layer's `ErrorCurve` of
    the dropped fraction, the least salient first (convex curves keep the threshold exact)."""
    names = list(salient)
    sizes = np.array([salient[name].size for name in names], dtype=np.int64)
    total = int(sizes.sum())
    budget = min(total, max(len(names), math.floor(total / rate + 1e-9)))
    if budget == total:
        return {name: int(size) for name, size in zip(names, sizes, strict=True)}
    costs = []
    for name in names:
        flat = np.asarray(salient[name], dtype=np.float64).ravel()
        layer_total = flat.sum()
        cost = flat / layer_total if layer_total > 0 else np.zeros_like(flat)
        if curves is not None:
            order = np.argsort(flat, kind="stable")
            marginal = np.diff(curves[name](np.concatenate([[0.0], np.cumsum(cost[order])])))
            cost = np.empty_like(flat)
            cost[order] = marginal
        cost[int(np.argmax(flat))] = np.inf  # kept whatever the budget
        costs.append(cost)
    owner = np.repeat(np.arange(len(names)), sizes)
    kept = np.argpartition(-np.concatenate(costs), budget - 1)[:budget]
    counts = np.bincount(owner[kept], minlength=len(names))
    return {name: int(count) for name, count in zip(names, counts, strict=True)}


def plan_rate_sampled(
    matrices: dict[str, np.ndarray],
    method: str,
    rate: float,
    *,
    tile: int,
    seed: int,
    plan_iterations: int | None,
    quiet: bool,
    max_columns: int = PLAN_COLUMNS,
    uniform: bool = False,
    curves: dict[str, ErrorCurve] | None = None,
) -> dict[str, Any]:
    """`pipeline.fit.plan_rate`, with each candidate option of a wide layer evaluated on `max_columns` of
    its columns (seeded choice, whole tiles) and its slots scaled to the whole layer: the dropped fraction
    is an estimate, the allocation across layers the same rule. (A 1024 x 8210 classifier's 27 tight
    candidates take about 25 s each in full on a busy 2-core machine.)

    Then, while the planned rate exceeds `rate` by more than `RATE_TOLERANCE` (at most `REFINE_ROUNDS`
    times), each layer gets one more candidate between its chosen option and the next less lossy one
    (`pipeline.fit.refined_config`) and the choice is made again. The coarse grid has no option between
    dense and 2x per layer, nor between 2x and 2.67x; on a model whose classifier holds 90 % of the weights
    (ddddocr's) every method then landed far above low targets (1.82x for 1.33x, 2.29x for 2x).

    `uniform`: each layer on its own meets `rate` (`choose_uniform`) instead of the model as a whole.
    `curves`: each layer's cost of its dropped fraction in the choice (`choose_weighted`)."""
    from tightcompress.pipeline.fit import (
        Option,
        candidate_configs,
        capacity_floor_fractions,
        choose_options,
        evaluate_options,
        frontier,
        refined_config,
        search_workers,
    )

    rng = np.random.default_rng(seed)
    options: dict[str, list[Any]] = {}
    sizes, samples = {}, {}

    def evaluate(name: str, configs: list[PackConfig]) -> list[Any]:
        sample, scale = samples[name]
        evaluated = evaluate_options(sample, configs, plan_iterations=plan_iterations)
        return [Option(o.config, round(o.slots * scale), o.dropped_fraction) for o in evaluated]

    def evaluate_bounded(name: str, configs: list[PackConfig]) -> list[Any]:
        """The uniform rule's candidates, searched in order of their floor (`capacity_floor_fractions`,
        the least fraction any arrangement drops), stopping once every candidate left has a floor above
        the least dropped fraction found at the rate: those can neither be chosen nor sit on the less
        lossy side of the choice, the side a refinement reads, so the choice is the one a search of
        every candidate gives (`tests/test_oneshot_speed.py`). On PP-OCRv4 at 2x: 3-4 of 25 searched."""
        sample, _ = samples[name]
        floors = capacity_floor_fractions(sample, configs)
        order = sorted(range(len(configs)), key=lambda i: floors[i])
        budget = sizes[name] / rate + 1e-9
        found: dict[int, Any] = {}
        best = math.inf
        batch_size = max(2, search_workers())  # the result does not depend on it (see above)
        position = 0
        while position < len(order):
            batch = []
            while position < len(order) and len(batch) < batch_size:
                if floors[order[position]] > best * (1 + FLOOR_MARGIN):
                    position = len(order)  # sorted by floor: no candidate left can win
                    break
                batch.append(order[position])
                position += 1
            for index, option in zip(batch, evaluate(name, [configs[i] for i in batch]), strict=True):
                found[index] = option
                if option.slots <= budget:
                    best = min(best, option.dropped_fraction)
        return [found[index] for index in sorted(found)]

    for name, matrix in tqdm(
        matrices.items(), desc=f"plan {method}", unit="layer", disable=quiet, file=sys.stderr, leave=False
    ):
        K, N = matrix.shape
        sizes[name] = K * N
        sample = matrix
        if N > max_columns:
            sample = matrix[:, np.sort(rng.choice(N, size=max_columns, replace=False))]
        samples[name] = (sample, N / sample.shape[1])
        configs = candidate_configs(method, K, tile, seed, N=N)
        options[name] = evaluate_bounded(name, configs) if uniform else evaluate(name, configs)
    choose = choose_uniform if uniform else choose_options
    if curves is not None:

        def choose(options: dict[str, list[Any]], sizes: dict[str, int], rate: float) -> dict[str, Any]:
            return choose_weighted(options, sizes, rate, curves)

    chosen = choose(options, sizes, rate)
    dense = sum(sizes.values())
    for _ in range(REFINE_ROUNDS):
        planned = dense / sum(option.slots for option in chosen.values())
        if planned <= rate * (1 + RATE_TOLERANCE):
            break
        refined = 0
        for name in options:
            tried = [o.config for o in options[name]]
            config = refined_config(frontier(options[name]), chosen[name], tried, matrices[name].shape[0])
            if config is not None:
                options[name] += evaluate(name, [config])
                refined += 1
        if not refined:
            break
        log.info("planned %.3fx for %gx: refined the options of %d layers", planned, rate, refined)
        chosen = choose(options, sizes, rate)
    return chosen


def choose_weighted(
    options: dict[str, list[Any]], sizes: dict[str, int], rate: float, curves: dict[str, ErrorCurve]
) -> dict[str, Any]:
    """`pipeline.fit.choose_options` for the least `sum(gain(dropped fraction))`: each layer's options with
    their dropped fraction replaced by its cost on the layer's curve (returned as they were given)."""
    from tightcompress.pipeline.fit import choose_options

    original = {}
    scaled: dict[str, list[Any]] = {}
    for name, opts in options.items():
        scaled[name] = []
        for option in opts:
            weighted = replace(option, dropped_fraction=float(curves[name](option.dropped_fraction)))
            original[id(weighted)] = option
            scaled[name].append(weighted)
    chosen = choose_options(scaled, sizes, rate)
    return {name: original[id(option)] for name, option in chosen.items()}


def choose_uniform(options: dict[str, list[Any]], sizes: dict[str, int], rate: float) -> dict[str, Any]:
    """Per layer, on its own, the least lossy option with `K*N / slots >= rate` (`choose_options` on that
    layer alone), or its fewest slots when no option reaches the rate (a layer too small to pad to it)."""
    from tightcompress.pipeline.fit import choose_options

    chosen = {}
    for name, layer_options in options.items():
        fewest = min(layer_options, key=lambda option: (option.slots, option.dropped_fraction))
        if sizes[name] / max(fewest.slots, 1) < rate - 1e-9:
            chosen[name] = fewest
        else:
            chosen[name] = choose_options({name: layer_options}, {name: sizes[name]}, rate)[name]
    return chosen


def _prune_gemm(
    matrix: np.ndarray,
    stats: GramStats | None,
    choice: PackConfig | int,
    options: OneShotOptions,
    name: str,
) -> tuple[np.ndarray, PackedMatrix | None, dict[str, Any]]:
    """`(kept weights K x N, packed layer or None for unstructured, facts)` of one GEMM."""
    from tightcompress.pipeline.fit import repack

    W = np.asarray(matrix, dtype=np.float32)
    if not np.all(np.isfinite(W)):
        raise TightCompressError(f"{name}: the matrix has NaN or infinite weights")
    if options.method == SUBWORD_METHOD:
        return _prune_subword_gemm(W, stats, choice, options, name)
    S = saliency(W, stats)
    if not np.any(S):
        S = np.abs(W)
    facts: dict[str, Any] = {}
    arrangement = None
    if isinstance(choice, PackConfig):
        if not np.any(W):
            raise TightCompressError(f"{name}: the matrix is all zeros; there is nothing to pack")
        from tightcompress.pipeline.fit import is_searched

        if is_searched(choice) and choice.iterations is None and options.final_iterations is not None:
            choice = replace(choice, iterations=options.final_iterations)
        arrangement = pack(S, choice, name=name)
        mask = arrangement.to_dense() != 0
        facts["option"] = _describe(choice)
    else:
        keep = int(choice)
        order = np.argsort(-S, axis=None, kind="stable")[:keep]
        mask = np.zeros(W.size, dtype=bool)
        mask[order] = True
        mask = mask.reshape(W.shape) & (W != 0)
        facts["option"] = f"{options.method} keep {keep}/{W.size} ({keep / W.size:.1%})"
    masked = np.where(mask, W, 0.0).astype(np.float32)
    kept = masked
    if stats is not None:
        # the solve, at the damping that validates best on held-out calibration rows, or the kept weights as
        # they are when no solve generalises (fewer rows than inputs, or a dense first layer)
        solved, solver, heldout_error = validated_reconstruct(W, mask, stats, damping=options.damping)
        solved = solved.astype(np.float32)
        solved[~mask] = 0.0
        if not np.all(np.isfinite(solved)):
            raise TightCompressError(f"{name}: the reconstruction is not finite (calibration too degenerate)")
        kept = solved
        facts.update(
            solver=solver,
            calibration_rows=stats.rows,
            relative_output_error=relative_error(solved, W, stats),
            relative_output_error_unreconstructed=relative_error(masked, W, stats),
            relative_output_error_heldout=heldout_error,
        )
    total_saliency = float(S.sum())
    facts["dropped_saliency_fraction"] = float(S[~mask].sum() / total_saliency) if total_saliency else 0.0
    packed = None
    if arrangement is not None:
        packed = repack(kept, arrangement)
        packed.info["name"] = name
        if not np.array_equal(packed.to_dense(), kept):
            raise RuntimeError(f"{name}: the reconstructed weights do not fit the packed arrangement")
    return kept, packed, facts


# ------------------------------------------------------------------------------ tight-subword (h23subword)
def _subword_planning_matrices(
    matrices: dict[str, Any], norms: dict[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Per GEMM the `2K x N` subword saliency the planner packs (`prune.subword_reconstruct.subword_saliency`
    of the layer quantized as `_prune_subword_gemm` quantizes it, input norms of the dense model)."""
    from tightcompress.prune.subword import quantize_for_subwords
    from tightcompress.prune.subword_reconstruct import subword_saliency

    out = {}
    for name, gemm in matrices.items():
        q, scales = quantize_for_subwords(np.asarray(gemm.matrix, dtype=np.float32))
        stat = None
        if norms is not None and name in norms:
            stat = GramStats.__new__(GramStats)
            stat.H = np.diag(norms[name] ** 2)
        out[name] = subword_saliency(q, scales, stat)
        if not np.any(out[name]):
            out[name] = subword_saliency(q, scales, None)
    return out


def _prune_subword_gemm(
    W: np.ndarray, stats: GramStats | None, choice: PackConfig | float, options: OneShotOptions, name: str
) -> tuple[np.ndarray, PackedMatrix, dict[str, Any]]:
    """`_prune_gemm` at subword granularity (`prune.subword_reconstruct` says why and how): quantize to int8
    (per column, `max|w| / 119`), pack the `2K x N` subword saliency with tight, then (with calibration)
    solve the kept subwords' values under the format (the best of no solve, float-then-round and the GPTQ
    sweep on held-out rows). Returns the dequantized kept weights, which the packed layer reproduces
    exactly (`prune.subword_pack.weight_matrix`)."""
    from tightcompress.pipeline.fit import is_searched, repack
    from tightcompress.prune.subword import quantize_for_subwords, recompose, subword_contributions
    from tightcompress.prune.subword_pack import store_kept_values, weight_matrix
    from tightcompress.prune.subword_reconstruct import (
        dequantize,
        masks_of,
        representable,
        subword_saliency,
        unreconstructed,
        validated_subword_reconstruct,
    )

    if not isinstance(choice, PackConfig):
        raise TightCompressError(f"{name}: tight-subword packs with tight, not a keep fraction")
    if not np.any(W):
        raise TightCompressError(f"{name}: the matrix is all zeros; there is nothing to pack")
    q, scales = quantize_for_subwords(W)
    S = subword_saliency(q, scales, stats)
    if not np.any(S):
        S = subword_saliency(q, scales, None)
    if is_searched(choice) and choice.iterations is None and options.final_iterations is not None:
        choice = replace(choice, iterations=options.final_iterations)
    arrangement = pack(S, choice, name=name)
    placed = arrangement.to_dense() != 0
    masks = masks_of(placed)
    q_none = unreconstructed(q, masks)
    q_kept = q_none
    facts: dict[str, Any] = {"option": _describe(choice).replace("tight", SUBWORD_METHOD, 1)}
    if stats is not None:
        q_kept, solver, heldout_error, _ = validated_subword_reconstruct(
            W, q, masks, scales, stats, damping=options.damping
        )
        facts.update(
            solver=solver,
            calibration_rows=stats.rows,
            relative_output_error=relative_error(dequantize(q_kept, scales), W, stats),
            relative_output_error_unreconstructed=relative_error(dequantize(q_none, scales), W, stats),
            relative_output_error_heldout=heldout_error,
            relative_output_error_quantized=relative_error(dequantize(q, scales), W, stats),
        )
    if not representable(q_kept, masks):
        raise RuntimeError(f"{name}: a solved weight is not representable by its kept subwords")
    total_saliency = float(S.sum())
    facts["dropped_saliency_fraction"] = float(S[~placed].sum() / total_saliency) if total_saliency else 0.0
    q8 = q_kept.astype(np.int8)
    packed = repack(subword_contributions(q8).astype(np.float32), arrangement)
    store_kept_values(packed, q8)
    packed.info["name"] = name
    packed.info["scales"] = [float(s) for s in scales]
    kept = dequantize(q8, scales)
    if not (np.array_equal(recompose(packed.to_dense().astype(np.int8)), q8)
            and np.array_equal(weight_matrix(packed), kept)):  # fmt: skip
        raise RuntimeError(f"{name}: the solved subwords do not fit the packed arrangement")
    return kept, packed, facts


def _subword_totals(report: dict[str, Any], packed: dict[str, PackedMatrix]) -> None:
    """The whole-model totals of a tight-subword run in bits (as `compress --granularity subword`):
    `compression_rate` = `bit_rate` = `sum 8KN / sum 4 slots`, and `bit_rate_with_index`."""
    from tightcompress.prune.subword_pack import SubwordPacked

    layers = [SubwordPacked.from_packed(p) for p in packed.values()]
    dense_bits = sum(sp.dense_bits for sp in layers)
    slots = sum(sp.packed_slots for sp in layers)
    all_bits = sum(sp.slot_bits * sp.packed_slots for sp in layers)
    kept = sum(int(np.count_nonzero(sp.packed.values)) for sp in layers)
    bit_rate = dense_bits / max(4 * slots, 1)
    with_index = dense_bits / max(all_bits, 1)
    report["total"].update(
        dense_slots=sum(2 * sp.K * sp.N for sp in layers),  # one 4-bit slot per subword, dense
        compression_rate=bit_rate,
        utilization=kept / slots if slots else 0.0,
        storage_rate_bits=with_index,
        bit_rate=bit_rate,
        bit_rate_with_index=with_index,
        dense_bits=dense_bits,
        packed_bits=all_bits,
    )
    report["bit_rate"] = bit_rate
    report["bit_rate_with_index"] = with_index


def _describe(config: PackConfig) -> str:
    if config.method == "column-combining":
        return f"column-combining merge={config.merge} alpha={config.alpha} gamma={config.gamma:g}"
    if config.method == "dense":
        return "dense"
    return f"{PERMUTED_NM if config.permute else config.method} G={config.group} h={config.height}"


def _layer_report(
    name: str,
    W: np.ndarray,
    kept: np.ndarray,
    packed: PackedMatrix | None,
    facts: dict,
    seconds: float,
    *,
    method: str = UNSTRUCTURED,
) -> dict[str, Any]:
    """One layer's report: the packed layer's fields with the dropped figures of the original weights."""
    magnitude = float(np.abs(W).sum())
    dropped_fraction = float(np.abs(W[kept == 0]).sum() / magnitude) if magnitude else 0.0
    nnz, kept_nnz = int(np.count_nonzero(W)), int(np.count_nonzero(kept))
    if packed is not None and packed.method == SUBWORD_METHOD:
        from tightcompress.prune.subword_pack import SubwordPacked

        report = SubwordPacked.from_packed(packed).report()  # K x N weights, bit rates
        report.pop("scales", None)
    elif packed is not None:
        report = packed.report()
    else:  # unstructured: an ideal sparse store, one slot per kept weight, no index cost counted
        K, N = W.shape
        rate = K * N / max(kept_nnz, 1)
        report = {
            "name": name, "K": K, "N": N, "method": method, "group": None, "height": None, "tile": None,
            "n_tiles": None, "packed_rows": None, "packed_slots": kept_nnz, "compression_rate": rate,
            "utilization": 1.0, "index_bits": 0, "storage_rate_bits": rate, "lower_bound_slots": kept_nnz,
            "lower_bound_dropped_magnitude_fraction": dropped_fraction,
        }  # fmt: skip
    report.update(
        name=name,
        nnz=nnz,
        kept_nnz=kept_nnz,
        dropped_nnz=nnz - kept_nnz,
        input_magnitude=magnitude,
        dropped_magnitude_fraction=dropped_fraction,
        dropped_weight_fraction=dropped_fraction,
        seconds=seconds,
        relative_output_error=facts.pop("relative_output_error", None),
        **facts,
    )
    return report


def pack_module_calibrated(
    model: Any, found: list[tuple[str, Any, LayerWeight]], config: PackConfig, calibration: Any
) -> tuple[dict[str, PackedMatrix], dict[str, Any]]:
    """`sparsify_(..., calibration=)`: the model's `found` layers pruned one-shot in place with `config`
    (kept weights solved again), `(packed layers by GEMM name, the one-shot report)`."""
    from tightcompress.pipeline.calibration import TorchCalibration

    if config.method == "dense":
        raise TightCompressError("calibration prunes: choose tight, nm or column-combining")
    if config.sparsity is not None:
        raise TightCompressError("with calibration what is kept is chosen by saliency: drop sparsity")
    runner = TorchCalibration(model, calibration, found)
    method = PERMUTED_NM if config.permute else config.method
    result = one_shot(
        [lw for _, _, lw in found], runner, OneShotOptions(method=method, seed=config.seed), config=config
    )
    return result.packed, result.report


def pack_weight_calibrated(
    weight: Any, config: PackConfig, calibration: Any, *, groups: int, name: str
) -> PackedMatrix | list[PackedMatrix]:
    """`pack_weight(..., calibration=X)`: one layer pruned by saliency and solved again on its input rows
    `X` (`(M, in)`; a conv's im2col rows), which are both the pruned and the dense input here."""
    from tightcompress.readers.checkpoint import tensor_to_numpy
    from tightcompress.readers.matrices import layer_weight

    if config.method == "dense":
        raise TightCompressError("calibration prunes: choose tight, nm or column-combining")
    array, dtype = tensor_to_numpy(weight) if hasattr(weight, "detach") else (np.asarray(weight), None)
    layer = layer_weight(name, array, dtype or str(array.dtype), groups=groups, source=name)
    matrices, _ = gemm_matrices([layer], source=name)
    rows = calibration.detach().cpu().float().numpy() if hasattr(calibration, "detach") else calibration
    rows = np.asarray(rows, dtype=np.float32)
    K_total = int(np.prod(array.shape[1:])) * groups
    if rows.ndim != 2 or rows.shape[1] != K_total:
        raise TightCompressError(
            f"{name}: calibration must be the layer's input rows (M, {K_total}), got shape {rows.shape}"
        )
    if not np.all(np.isfinite(rows)):
        raise TightCompressError(f"{name}: the calibration rows hold NaN or infinite values")
    options = OneShotOptions(method=PERMUTED_NM if config.permute else config.method, seed=config.seed)
    out = []
    per_group = K_total // groups
    for g, gemm in enumerate(matrices.values()):
        block = rows[:, g * per_group : (g + 1) * per_group]
        stats = GramStats(gemm.matrix)
        stats.add(block, block)
        _, packed, facts = _prune_gemm(gemm.matrix, stats, config, options, gemm.name)
        assert packed is not None
        packed.info.setdefault("extra", {})["relative_output_error"] = facts["relative_output_error"]
        out.append(store_dtype(packed, gemm.dtype))
    return out[0] if groups == 1 else out
